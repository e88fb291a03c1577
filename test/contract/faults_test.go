package contract

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/intuned-operator/intuned-operator/internal/intuned"
	"github.com/intuned-operator/intuned-operator/internal/intunedsim"
)

// The "done when": with 30% of answers 5xx, every call the caller
// retries still completes, and the non-idempotent ones (create, trigger)
// happen exactly as often as the caller meant. Two kinds of 5xx matter:
//   - the simulator's injected faults answer before acting: nothing happened;
//   - a gateway that loses the answer after Intuned acted (lossyProxy below):
//     something happened but the caller got a 502.
// The client alone cannot tell them apart (IsAmbiguous); the caller below
// re-observes before creating or triggering again.

// lossyProxy forwards to the simulator and replaces a share of its answers
// with a gateway's 502 page after the simulator has acted. The first create
// and the first trigger always lose their answer, so the ambiguous path of
// the caller runs on every test run.
type lossyProxy struct {
	*httptest.Server
	mu     sync.Mutex
	rng    *rand.Rand
	rate   float64
	forced map[string]bool // "create", "trigger" not yet forced
	lost   int
}

func newLossyProxy(t *testing.T, target string, rate float64) *lossyProxy {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	p := &lossyProxy{rng: rand.New(rand.NewPCG(11, 13)), rate: rate, forced: map[string]bool{"create": true, "trigger": true}}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		rp.ServeHTTP(rec, r)
		if p.lose(r) {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusBadGateway)
			_, _ = w.Write([]byte("<html><body><h1>502 Bad Gateway</h1></body></html>"))
			return
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
	}))
	t.Cleanup(p.Close)
	return p
}

func (p *lossyProxy) lose(r *http.Request) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	kind := ""
	switch {
	case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/jobs"):
		kind = "create"
	case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/trigger"):
		kind = "trigger"
	}
	lose := p.forced[kind] || p.rng.Float64() < p.rate
	delete(p.forced, kind)
	if lose {
		p.lost++
	}
	return lose
}

// caller is how the operator is expected to use the client: retry what the
// client gave up on when it is retriable, and re-observe Intuned after an
// ambiguous create or trigger instead of repeating it blindly.
type caller struct {
	c         intuned.API
	ambiguous int // ambiguous create/trigger answers seen
}

const callerAttempts = 100

// retry repeats an idempotent call until it succeeds or fails for good.
func (cl *caller) retry(ctx context.Context, f func() error) error {
	var err error
	for range callerAttempts {
		if err = f(); err == nil || !intuned.IsRetriable(err) || ctx.Err() != nil {
			return err
		}
	}
	return err
}

// ensureJob creates the Job exactly once.
func (cl *caller) ensureJob(ctx context.Context, req intuned.CreateJobRequest) error {
	for range callerAttempts {
		_, err := cl.c.CreateJob(ctx, project, req)
		switch {
		case err == nil:
			return nil
		case intuned.IsConflict(err):
			return nil // an earlier attempt whose answer was lost created it
		case intuned.IsAmbiguous(err):
			cl.ambiguous++
			var gerr error
			if gerr = cl.retry(ctx, func() error { _, e := cl.c.GetJob(ctx, project, req.ID); return e }); gerr == nil {
				return nil // it was created
			}
			if !intuned.IsNotFound(gerr) {
				return gerr
			}
			// Not there: the create did not happen; safe to send again.
		case intuned.IsRetriable(err):
			// Not sent or refused before acting (429): send again.
		default:
			return err
		}
	}
	return fmt.Errorf("CreateJob %s: gave up", req.ID)
}

// trigger starts exactly one JobRun and returns its id. known holds the
// JobRuns this caller already accounts for (no schedule runs in these tests).
func (cl *caller) trigger(ctx context.Context, jobID string, known map[string]bool) (string, error) {
	for range callerAttempts {
		tr, err := cl.c.TriggerJob(ctx, project, jobID)
		switch {
		case err == nil:
			known[tr.JobRunID] = true
			return tr.JobRunID, nil
		case intuned.IsAmbiguous(err):
			cl.ambiguous++
			var runs *intuned.JobRunList
			if err := cl.retry(ctx, func() (e error) {
				runs, e = cl.c.ListJobRuns(ctx, project, jobID, intuned.ListRunsOptions{PageSize: 100, SortBy: "created_at,desc"})
				return e
			}); err != nil {
				return "", err // never trigger again without having looked
			}
			for _, r := range runs.JobRuns {
				if !known[r.ID] {
					known[r.ID] = true
					return r.ID, nil // the lost trigger did happen
				}
			}
		case intuned.IsRetriable(err):
		default:
			return "", err
		}
	}
	return "", fmt.Errorf("TriggerJob %s: gave up", jobID)
}

func TestThirtyPercentFaults(t *testing.T) {
	// Three 5xx rules that together answer 30% of API requests:
	// 0.1 + 0.9*0.1111 + 0.8*0.125 = 0.3.
	simFaults := []intunedsim.FaultRule{
		{Match: "*", ErrorRate: 0.1, Status: 500},
		{Match: "*", ErrorRate: 0.1 / 0.9, Status: 502},
		{Match: "*", ErrorRate: 0.1 / 0.8, Status: 503},
	}
	cases := []struct {
		name      string
		simFaults []intunedsim.FaultRule
		lossRate  float64 // share of answers the proxy loses after the sim acted
	}{
		{"simulator 5xx before acting", simFaults, 0},
		{"answers lost after acting", nil, 0.3},
		{"both", simFaults, 0.3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			const triggers = 6
			sink := newSinkEndpoint(t)
			e := newEnv(t, intunedsim.Options{Seed: 42, Faults: tc.simFaults, Handlers: map[string]intunedsim.APIHandler{"noop": noop}},
				func(o *intuned.Options) { o.Retry.MaxAttempts = 4 })
			proxy := newLossyProxy(t, e.sim.URL, tc.lossRate)
			c, err := intuned.New(intuned.Options{
				BaseURL: proxy.URL + intunedsim.APIPrefix, WorkspaceID: e.sim.WorkspaceID, APIKey: e.sim.APIKey,
				Pacer: intuned.NewPacer(intuned.PacerOptions{Disabled: true}), RequestTimeout: 10 * time.Second,
				Retry: intuned.RetryOptions{MaxAttempts: 4, BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond},
			})
			if err != nil {
				t.Fatal(err)
			}
			cl := &caller{c: c}
			ctx := ctxT(t)

			req := noopJob("faulty-job")
			req.Payload = append(req.Payload, req.Payload[0])
			req.Sink = &intuned.Sink{Webhook: &intuned.WebhookSink{URL: sink.URL}}
			if err := cl.ensureJob(ctx, req); err != nil {
				t.Fatalf("ensureJob: %v", err)
			}
			desired := req.Spec()
			desired.Configuration.MaxConcurrentRequests = ptr(1.0)
			steps := []struct {
				name string
				f    func() error
			}{
				{"UpdateJob", func() error { _, err := c.UpdateJob(ctx, project, req.ID, desired); return err }},
				{"PauseJob", func() error { return c.PauseJob(ctx, project, req.ID) }},
				{"ResumeJob", func() error { return c.ResumeJob(ctx, project, req.ID) }},
				{"GetJob", func() error { _, err := c.GetJob(ctx, project, req.ID); return err }},
			}
			for _, st := range steps {
				if err := cl.retry(ctx, st.f); err != nil {
					t.Fatalf("%s: %v", st.name, err)
				}
			}

			known := map[string]bool{}
			var runIDs []string
			for range triggers {
				id, err := cl.trigger(ctx, req.ID, known)
				if err != nil {
					t.Fatalf("trigger: %v", err)
				}
				runIDs = append(runIDs, id)
			}
			for _, id := range runIDs {
				if jr := waitRunDone(t, c, req.ID, id).JobRun; jr.Status != intuned.JobRunCompleted || *jr.SuccessfulRuns != 2 {
					t.Errorf("run %s: %s, %d successful", id, jr.Status, *jr.SuccessfulRuns)
				}
			}

			// Exactly one Job, exactly `triggers` JobRuns, each delivered.
			var jobs []intuned.JobListItem
			if err := cl.retry(ctx, func() (e error) { jobs, e = c.ListJobs(ctx, project); return e }); err != nil {
				t.Fatal(err)
			}
			if len(jobs) != 1 || jobs[0].ID != req.ID || !intuned.SameSpec(desired, jobs[0].Spec()) {
				t.Errorf("jobs = %+v, want exactly %s with the updated spec", jobs, req.ID)
			}
			var runs *intuned.JobRunList
			if err := cl.retry(ctx, func() (e error) {
				runs, e = c.ListJobRuns(ctx, project, req.ID, intuned.ListRunsOptions{PageSize: 100})
				return e
			}); err != nil {
				t.Fatal(err)
			}
			if runs.TotalCount != triggers || len(known) != triggers {
				t.Errorf("%d JobRuns on Intuned, %d known to the caller, want %d", runs.TotalCount, len(known), triggers)
			}
			for _, r := range runs.JobRuns {
				if !known[r.ID] {
					t.Errorf("JobRun %s was started but the caller does not know it", r.ID)
				}
			}
			eventually(t, "deliveries", func() bool { return len(sink.received()) == 2*triggers })
			if n := len(e.sim.Deliveries()); n != 2*triggers {
				t.Errorf("%d deliveries, want %d", n, 2*triggers)
			}

			if err := cl.retry(ctx, func() error { return c.DeleteJob(ctx, project, req.ID) }); err != nil && !intuned.IsNotFound(err) {
				t.Fatalf("DeleteJob: %v", err) // 404 = an earlier attempt deleted it
			}
			if err := cl.retry(ctx, func() error { _, err := c.GetJob(ctx, project, req.ID); return err }); !intuned.IsNotFound(err) {
				t.Errorf("GetJob after delete: %v", err)
			}

			// The faults really happened.
			if cl.ambiguous == 0 {
				t.Error("no ambiguous create/trigger: the caller's re-observe path never ran")
			}
			t.Logf("requests %d, lost by proxy %d, ambiguous create/trigger %d", totalCalls(e.sim.Calls()), proxy.lost, cl.ambiguous)
		})
	}
}
