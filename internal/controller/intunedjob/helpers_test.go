package intunedjob

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/intuned-operator/intuned-operator/internal/controller/controllertest"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/intuned"
	"github.com/intuned-operator/intuned-operator/internal/intunedsim"
	"github.com/intuned-operator/intuned-operator/internal/intunedsim/simtest"
	"github.com/intuned-operator/intuned-operator/internal/testutil/wireschema"
)

// testProject is the only project the simulator knows in these tests.
const testProject = "ecommerce-scraper"

// credsSecret is the credentials Secret every test job uses.
const credsSecret = "intuned-creds"

// ijFixture is one test's world: a namespace, a simulator over real HTTP, a
// credentials Secret pointing at it and a manager running the IntunedJob
// reconciler with the real Intuned client.
type ijFixture struct {
	t    *testing.T
	ns   string
	sim  *intunedsim.LoopbackServer
	api  intuned.API // reads the simulator as a user would
	poll time.Duration

	mu       sync.Mutex
	stop     func()
	rec      *Reconciler
	defaults intunedv1alpha1.DefaultCredentials // the manager's --default-credentials-*
	client   func(client.Client) client.Client
}

type fixtureOptions struct {
	sim  intunedsim.Options
	poll time.Duration // PollIntervalOverride; default 300ms
	// noManager: the test starts its own managers (shard_test.go).
	noManager bool
	// client, when set, wraps the manager's client the reconciler uses.
	client func(client.Client) client.Client
}

func newIJFixture(t *testing.T, o fixtureOptions) *ijFixture {
	t.Helper()
	if o.sim.RateLimit == 0 {
		o.sim.RateLimit = intunedsim.RateLimitOff
	}
	if o.sim.Projects == nil {
		o.sim.Projects = []string{testProject}
	}
	if o.poll == 0 {
		o.poll = 300 * time.Millisecond
	}
	f := &ijFixture{t: t, ns: controllertest.NewNamespace(t), poll: o.poll, client: o.client}
	if o.sim.Observe == nil {
		o.sim.Observe = checkWire(t)
	}
	f.sim = simtest.New(t, o.sim)
	api, err := intuned.New(intuned.Options{
		BaseURL: f.sim.APIBase, WorkspaceID: f.sim.WorkspaceID, APIKey: f.sim.APIKey,
		Pacer: intuned.NewPacer(intuned.PacerOptions{Disabled: true}),
		Retry: intuned.RetryOptions{MaxAttempts: 1},
	})
	if err != nil {
		t.Fatal(err)
	}
	f.api = api
	f.createSecret(credsSecret, f.credentialsData())
	// Runs after the manager stopped (cleanups run last-in first-out): the
	// objects go away so later tests' managers never see them.
	t.Cleanup(f.removeJobs)
	if !o.noManager {
		f.start()
	}
	return f
}

// credentialsData is a credentials Secret's data for the simulator.
func (f *ijFixture) credentialsData() map[string]string {
	return map[string]string{
		intunedv1alpha1.CredentialsKeyWorkspaceID: f.sim.WorkspaceID,
		intunedv1alpha1.CredentialsKeyAPIKey:      f.sim.APIKey,
		intunedv1alpha1.CredentialsKeyBaseURL:     f.sim.APIBase,
	}
}

// removeJobs deletes every IntunedJob of the namespace, finalizers and all.
func (f *ijFixture) removeJobs() {
	ctx := context.Background()
	var list intunedv1alpha1.IntunedJobList
	if err := controllertest.Client().List(ctx, &list, client.InNamespace(f.ns)); err != nil {
		f.t.Logf("cleanup: %v", err)
		return
	}
	for i := range list.Items {
		j := &list.Items[i]
		if len(j.Finalizers) > 0 {
			patch := client.MergeFrom(j.DeepCopy())
			j.Finalizers = nil
			_ = controllertest.Client().Patch(ctx, j, patch)
		}
		_ = client.IgnoreNotFound(controllertest.Client().Delete(ctx, j))
	}
}

// start (re)starts the manager with a fresh reconciler, as a new process would.
func (f *ijFixture) start() {
	f.t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stop = controllertest.StartManager(f.t, func(mgr ctrl.Manager) error {
		c := mgr.GetClient()
		if f.client != nil {
			c = f.client(c)
		}
		f.rec = &Reconciler{
			Client:   c,
			Scheme:   mgr.GetScheme(),
			Recorder: mgr.GetEventRecorder("intunedjob-controller"),
			Pacer:    intuned.NewPacer(intuned.PacerOptions{Disabled: true}),
			Retry:    intuned.RetryOptions{BaseDelay: 5 * time.Millisecond, MaxDelay: 50 * time.Millisecond},
			// Only this test's namespace matters; other tests' objects are
			// reconciled by their own managers.
			PollIntervalOverride: f.poll,
			DefaultCredentials:   f.defaults,
			// No receiver runs here: accounting finds it unreachable at
			// once, without a DNS query for its Service name.
			ReceiverAPIURL: func(*intunedv1alpha1.WebhookReceiver) string { return "http://127.0.0.1:1" },
		}
		return f.rec.SetupWithManager(mgr)
	})
}

// restart stops the manager and starts a new one.
func (f *ijFixture) restart() {
	f.t.Helper()
	f.stopManager()
	f.start()
}

func (f *ijFixture) stopManager() {
	f.mu.Lock()
	stop := f.stop
	f.mu.Unlock()
	stop()
}

func (f *ijFixture) createSecret(name string, data map[string]string) {
	f.t.Helper()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: name}, StringData: data}
	if err := controllertest.Client().Create(context.Background(), s); err != nil {
		f.t.Fatalf("create Secret %s: %v", name, err)
	}
}

// updateSecret replaces some keys of a Secret.
func (f *ijFixture) updateSecret(name string, data map[string]string) {
	f.t.Helper()
	f.mutateSecret(name, func(s *corev1.Secret) {
		for k, v := range data {
			s.Data[k] = []byte(v)
		}
	})
}

// mutateSecret changes a Secret as read now (retried on conflict) and
// returns it as written.
func (f *ijFixture) mutateSecret(name string, mutate func(*corev1.Secret)) *corev1.Secret {
	f.t.Helper()
	var s corev1.Secret
	f.retryOnConflict(func() error {
		if err := controllertest.Client().Get(context.Background(), types.NamespacedName{Namespace: f.ns, Name: name}, &s); err != nil {
			return err
		}
		mutate(&s)
		return controllertest.Client().Update(context.Background(), &s)
	})
	return &s
}

// newJob returns a minimal valid IntunedJob (one payload, webhook sink on a
// loopback URL) for mutate to adjust.
func (f *ijFixture) newJob(name string, mutate ...func(*intunedv1alpha1.IntunedJob)) *intunedv1alpha1.IntunedJob {
	j := &intunedv1alpha1.IntunedJob{
		ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: name},
		Spec: intunedv1alpha1.IntunedJobSpec{
			Project:        testProject,
			CredentialsRef: &intunedv1alpha1.LocalObjectReference{Name: credsSecret},
			Payload: []intunedv1alpha1.JobPayload{{
				APIName:    "list",
				Parameters: &apiextensionsv1.JSON{Raw: []byte(`{"category":"shoes","page":1}`)},
			}},
			Sink: &intunedv1alpha1.JobSink{Webhook: &intunedv1alpha1.WebhookSink{
				URL: "http://127.0.0.1:9/hooks/intuned",
			}},
		},
	}
	for _, m := range mutate {
		m(j)
	}
	return j
}

func (f *ijFixture) create(j *intunedv1alpha1.IntunedJob) {
	f.t.Helper()
	if err := controllertest.Client().Create(context.Background(), j); err != nil {
		f.t.Fatalf("create IntunedJob %s: %v", j.Name, err)
	}
}

func (f *ijFixture) get(name string) *intunedv1alpha1.IntunedJob {
	f.t.Helper()
	var j intunedv1alpha1.IntunedJob
	if err := controllertest.Client().Get(context.Background(), types.NamespacedName{Namespace: f.ns, Name: name}, &j); err != nil {
		f.t.Fatalf("get IntunedJob %s: %v", name, err)
	}
	return &j
}

// update changes an IntunedJob as a user would, retrying on conflicts.
func (f *ijFixture) update(name string, mutate func(*intunedv1alpha1.IntunedJob)) {
	f.t.Helper()
	f.retryOnConflict(func() error {
		var j intunedv1alpha1.IntunedJob
		if err := controllertest.Client().Get(context.Background(), types.NamespacedName{Namespace: f.ns, Name: name}, &j); err != nil {
			return err
		}
		mutate(&j)
		return controllertest.Client().Update(context.Background(), &j)
	})
}

func (f *ijFixture) retryOnConflict(fn func() error) {
	f.t.Helper()
	for i := 0; ; i++ {
		err := fn()
		if err == nil {
			return
		}
		if !apierrors.IsConflict(err) || i > 20 {
			f.t.Fatalf("update: %v", err)
		}
	}
}

func (f *ijFixture) eventually(timeout time.Duration, cond func() string) {
	f.t.Helper()
	controllertest.Eventually(f.t, timeout, cond)
}

// waitCondition waits until the job's condition has status and reason
// (reason "" matches any) for the current generation, and returns the job.
func (f *ijFixture) waitCondition(name, typ string, status metav1.ConditionStatus, reason string) *intunedv1alpha1.IntunedJob {
	f.t.Helper()
	var j *intunedv1alpha1.IntunedJob
	f.eventually(30*time.Second, func() string {
		j = f.get(name)
		c := meta.FindStatusCondition(j.Status.Conditions, typ)
		if c == nil {
			return fmt.Sprintf("%s: no %s condition yet; conditions %v", name, typ, j.Status.Conditions)
		}
		if c.Status != status || (reason != "" && c.Reason != reason) || c.ObservedGeneration != j.Generation {
			return fmt.Sprintf("%s: %s=%s reason %s (gen %d/%d): %s", name, typ, c.Status, c.Reason, c.ObservedGeneration, j.Generation, c.Message)
		}
		return ""
	})
	return j
}

func (f *ijFixture) waitReady(name string) *intunedv1alpha1.IntunedJob {
	f.t.Helper()
	return f.waitCondition(name, intunedv1alpha1.ConditionReady, metav1.ConditionTrue, intunedv1alpha1.ReasonSynced)
}

// simJob reads a Job from the simulator; nil when it does not exist.
func (f *ijFixture) simJob(id string) *intuned.Job {
	f.t.Helper()
	j, err := f.api.GetJob(context.Background(), testProject, id)
	if intuned.IsNotFound(err) {
		return nil
	}
	if err != nil {
		f.t.Fatalf("read Job %s from the simulator: %v", id, err)
	}
	return j
}

// simRuns lists all JobRuns of a Job on the simulator.
func (f *ijFixture) simRuns(id string) []intuned.JobRun {
	f.t.Helper()
	runs, err := f.api.ListJobRuns(context.Background(), testProject, id, intuned.ListRunsOptions{PageSize: 100})
	if err != nil {
		f.t.Fatalf("list runs of %s: %v", id, err)
	}
	return runs.JobRuns
}

// drift changes a Job on the simulator behind the operator's back.
func (f *ijFixture) drift(id, action, patch string) {
	f.t.Helper()
	d := intunedsim.DriftRequest{Project: testProject, JobID: id, Action: action}
	if patch != "" {
		d.Patch = json.RawMessage(patch)
	}
	if err := f.sim.Drift(d); err != nil {
		f.t.Fatalf("drift %s %s: %v", action, id, err)
	}
}

// callCount sums the simulator's counters whose key contains substr (e.g.
// "POST", "/trigger", "GET "+route).
func (f *ijFixture) callCount(method, routeSuffix string) int {
	n := 0
	for k, v := range f.sim.Calls() {
		m, route, _ := strings.Cut(k, " ")
		if (method == "" || m == method) && strings.HasSuffix(route, routeSuffix) {
			n += v
		}
	}
	return n
}

// waitPolls waits until the simulator has seen at least n more GetJob calls
// for id, i.e. n more reconciles (poll periods) of that job have happened.
func (f *ijFixture) waitPolls(n int) {
	f.t.Helper()
	start := f.callCount("GET", "/jobs/{jobId}")
	f.eventually(30*time.Second, func() string {
		if got := f.callCount("GET", "/jobs/{jobId}") - start; got < n {
			return fmt.Sprintf("%d of %d polls so far", got, n)
		}
		return ""
	})
}

// events returns the notes of the Events about an object, "reason: note".
func (f *ijFixture) events(name string) []string {
	f.t.Helper()
	var out []string
	for _, e := range controllertest.Events(f.t, f.ns, name) {
		out = append(out, e.Reason+": "+e.Note)
	}
	return out
}

// hasEvent reports whether an Event with reason exists for name.
func (f *ijFixture) hasEvent(name, reason string) bool {
	f.t.Helper()
	return controllertest.HasEvent(f.t, f.ns, name, reason)
}

// triggerRoute is the simulator's call-counter key (and fault match) of
// Intuned's trigger endpoint.
const triggerRoute = "POST " + intunedsim.APIPrefix + "/{ws}/projects/{p}/jobs/{jobId}/trigger"

// setTrigger sets the intuned.io/trigger annotation as a user would.
func (f *ijFixture) setTrigger(name, value string) {
	f.t.Helper()
	f.update(name, func(j *intunedv1alpha1.IntunedJob) {
		if j.Annotations == nil {
			j.Annotations = map[string]string{}
		}
		j.Annotations[intunedv1alpha1.AnnotationTrigger] = value
	})
}

// waitTriggerRecorded waits until trigger value is handled with a JobRun
// id recorded, and returns the job.
func (f *ijFixture) waitTriggerRecorded(name, value string) *intunedv1alpha1.IntunedJob {
	f.t.Helper()
	var j *intunedv1alpha1.IntunedJob
	f.eventually(30*time.Second, func() string {
		j = f.get(name)
		if j.Status.LastHandledTrigger != value || j.Status.LastTriggeredJobRunID == "" {
			return fmt.Sprintf("trigger %q not recorded: %+v", value, j.Status)
		}
		return ""
	})
	return j
}

// triggerProxy forwards every request to the simulator. After
// loseNextAnswer, the next trigger call still reaches the simulator (which
// starts the JobRun) but its answer is replaced by a 502: Intuned acted,
// the caller cannot know.
type triggerProxy struct {
	URL  string
	lose atomic.Bool
}

func newTriggerProxy(t *testing.T, target string) *triggerProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	forward := httputil.NewSingleHostReverseProxy(u)
	p := &triggerProxy{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/trigger") && p.lose.CompareAndSwap(true, false) {
			forward.ServeHTTP(httptest.NewRecorder(), r)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadGateway)
			_, _ = w.Write([]byte(`{"code":"bad-gateway","category":"internal","message":"answer lost","retirable":true}`))
			return
		}
		forward.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	p.URL = srv.URL
	return p
}

func (p *triggerProxy) loseNextAnswer() { p.lose.Store(true) }

// checkWire checks every create/update body the operator sends and the
// simulator accepts, and every answer, against the wire schemas
// (internal/testutil/wireschema), and fails the test at its end otherwise.
func checkWire(t *testing.T) func(intunedsim.Exchange) {
	var mu sync.Mutex
	var bad []string
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, b := range bad {
			t.Error(b)
		}
	})
	return func(x intunedsim.Exchange) {
		var errs []string
		if s := wireschema.Request(x.Method, x.Path); s != nil && x.Status >= 200 && x.Status < 300 {
			errs = append(errs, wireschema.Check(s, x.RequestBody)...)
		}
		if s := wireschema.Response(x.Method, x.Path, x.Status); s != nil {
			errs = append(errs, wireschema.Check(s, x.ResponseBody)...)
		}
		mu.Lock()
		defer mu.Unlock()
		for _, e := range errs {
			bad = append(bad, fmt.Sprintf("wire conformance: %s %s -> %d: %s", x.Method, x.Path, x.Status, e))
		}
	}
}
