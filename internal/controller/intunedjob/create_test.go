package intunedjob

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/intuned"
	"github.com/intuned-operator/intuned-operator/internal/intunedsim"
)

// createHangProxy forwards every request to the simulator except creates:
// a create is held — forwarded first (Intuned acts) or not at all (the
// request is lost on the way) — and its caller never gets an answer; the
// caller's going away (a manager stopping) ends it.
type createHangProxy struct {
	URL  string
	held chan struct{} // receives once per held create
	// hang: hold creates (else forward them as any request).
	hang     atomic.Bool
	released chan struct{}
}

// release forwards creates from now on and drops the held ones.
func (p *createHangProxy) release() {
	p.hang.Store(false)
	close(p.released)
}

func newCreateHangProxy(t *testing.T, target string, forward bool) *createHangProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	p := &createHangProxy{held: make(chan struct{}, 16), released: make(chan struct{})}
	p.hang.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/jobs") || !p.hang.Load() {
			rp.ServeHTTP(w, r)
			return
		}
		if forward {
			// Detached from the caller: Intuned completes the create
			// whatever happens to the operator.
			rp.ServeHTTP(httptest.NewRecorder(), r.Clone(context.Background()))
		}
		p.held <- struct{}{}
		select {
		case <-r.Context().Done():
		case <-p.released:
			panic(http.ErrAbortHandler) // the connection drops, unanswered
		}
	}))
	t.Cleanup(srv.Close)
	p.URL = srv.URL
	return p
}

// TestIntunedJobCreateIntentSurvivesRestart: the manager stops between a
// create request and its answer. Nothing is written before the call: the
// object's creation time, Intuned's created_at and the exact spec let the
// next manager (a fresh reconciler, nothing in memory) take the Job as its
// own without spec.adopt — but only the Job it asked for: a Job someone
// else created meanwhile with another spec is never taken.
func TestIntunedJobCreateIntentSurvivesRestart(t *testing.T) {
	tests := []struct {
		name string
		// forward: the create reached Intuned before the manager stopped.
		forward bool
		// meanwhile runs while no manager runs.
		meanwhile func(f *ijFixture, id string)
		wantOurs  bool
	}{
		{name: "create-reached-intuned", forward: true, wantOurs: true},
		{name: "create-lost-job-made-by-someone-else", forward: false, wantOurs: false,
			meanwhile: func(f *ijFixture, id string) {
				_, err := f.api.CreateJob(context.Background(), testProject, intuned.CreateJobRequest{
					ID:            id,
					Payload:       []intuned.PayloadItem{{APIName: "details", Parameters: json.RawMessage(`{}`)}},
					Configuration: intuned.Configuration{},
				})
				if err != nil {
					f.t.Fatal(err)
				}
			}},
		{name: "create-lost-then-sent-again", forward: false, wantOurs: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newIJFixture(t, fixtureOptions{})
			proxy := newCreateHangProxy(t, f.sim.URL, tc.forward)
			f.createSecret("proxied-creds", map[string]string{
				intunedv1alpha1.CredentialsKeyWorkspaceID: f.sim.WorkspaceID,
				intunedv1alpha1.CredentialsKeyAPIKey:      f.sim.APIKey,
				intunedv1alpha1.CredentialsKeyBaseURL:     proxy.URL + intunedsim.APIPrefix,
			})
			const name = "restart-job"
			f.create(f.newJob(name, func(j *intunedv1alpha1.IntunedJob) { j.Spec.CredentialsRef.Name = "proxied-creds" }))

			select {
			case <-proxy.held:
			case <-time.After(30 * time.Second):
				t.Fatal("no create request reached Intuned")
			}
			// No write precedes the call: the object is as the user
			// created it.
			j := f.get(name)
			if j.Status.Managed || j.Status.ObservedGeneration != 0 {
				t.Fatalf("while the create is outstanding: managed %v, observedGeneration %d; want no status written yet",
					j.Status.Managed, j.Status.ObservedGeneration)
			}
			f.stopManager()
			if tc.meanwhile != nil {
				tc.meanwhile(f, name)
			}
			proxy.release() // the next manager's creates are answered
			f.start()

			if !tc.wantOurs {
				j = f.waitCondition(name, intunedv1alpha1.ConditionReady, metav1.ConditionFalse, intunedv1alpha1.ReasonAlreadyExists)
				f.waitPolls(2)
				j = f.get(name)
				if j.Status.Managed {
					t.Error("took over a Job this object did not create")
				}
				if p := f.simJob(name).Payload; len(p) != 1 || p[0].APIName != "details" {
					t.Errorf("someone else's Job was overwritten: payload %+v", p)
				}
				return
			}
			j = f.waitReady(name)
			if !j.Status.Managed || j.Spec.Adopt {
				t.Errorf("managed %v, spec.adopt %v; want managed without adopt", j.Status.Managed, j.Spec.Adopt)
			}
			if f.hasEvent(name, "Adopted") {
				t.Error("the Job was adopted as someone else's; want it recognised as this object's own")
			}
			if p := f.simJob(name).Payload; len(p) != 1 || p[0].APIName != "list" {
				t.Errorf("payload on Intuned %+v, want the spec's", p)
			}
		})
	}
}
