package intunedjob

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/controller/controllertest"
	"github.com/intuned-operator/intuned-operator/internal/controller/sharding"
	"github.com/intuned-operator/intuned-operator/internal/intuned"
)

// These tests run two manager shards in one process against one API server
// and one intuned-sim: the default shard (objects without the
// sharding.intuned.io/key label) and shard "b". Every Intuned call is
// counted per shard and per job by a wrapper around each shard's real
// client, so "reconciled by exactly one shard" is observed where it
// matters: who talks to Intuned.

var shardB = mustShard("b")

func mustShard(name string) sharding.Shard {
	s, err := sharding.Parse(name)
	if err != nil {
		panic(err)
	}
	return s
}

// apiCall is one Intuned call of one shard for one job.
type apiCall struct{ shard, method, job string }

// writeMethods are the calls that change something on Intuned.
var writeMethods = []string{"CreateJob", "UpdateJob", "DeleteJob", "PauseJob", "ResumeJob", "TriggerJob"}

// callLog counts the calls of every shard and can hold one call until the
// test releases it (a call in flight at a chosen moment).
type callLog struct {
	mu    sync.Mutex
	n     map[apiCall]int
	holds map[apiCall]*heldCall
}

type heldCall struct {
	entered, release, returned chan struct{}
	once                       sync.Once
}

// let releases the held call (at most once; tests also register it as a
// cleanup, so a failed test never leaves a manager stuck in a call).
func (h *heldCall) let() { h.once.Do(func() { close(h.release) }) }

func newCallLog() *callLog {
	return &callLog{n: map[apiCall]int{}, holds: map[apiCall]*heldCall{}}
}

// hold makes the next call c wait, once entered, until release is closed;
// returned is closed when the call (through to the simulator) returned.
func (l *callLog) hold(c apiCall) *heldCall {
	h := &heldCall{entered: make(chan struct{}), release: make(chan struct{}), returned: make(chan struct{})}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.holds[c] = h
	return h
}

// record counts c and, if it is held, waits for its release. done is
// called when the call returned.
func (l *callLog) record(c apiCall) (done func()) {
	l.mu.Lock()
	l.n[c]++
	h := l.holds[c]
	delete(l.holds, c)
	l.mu.Unlock()
	if h == nil {
		return func() {}
	}
	close(h.entered)
	<-h.release
	return func() { close(h.returned) }
}

// count is the number of calls of shard (any: "") with method (any: "")
// for job.
func (l *callLog) count(shard, job string, methods ...string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for c, v := range l.n {
		if c.job == job && (shard == "" || c.shard == shard) && (len(methods) == 0 || slices.Contains(methods, c.method)) {
			n += v
		}
	}
	return n
}

func (l *callLog) snapshot() map[apiCall]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.n)
}

// since lists the calls made after snapshot before, as "shard method job ×n".
func (l *callLog) since(before map[apiCall]int, methods ...string) []string {
	var out []string
	for c, v := range l.snapshot() {
		if d := v - before[c]; d > 0 && (len(methods) == 0 || slices.Contains(methods, c.method)) {
			out = append(out, fmt.Sprintf("%s %s %s ×%d", c.shard, c.method, c.job, d))
		}
	}
	slices.Sort(out)
	return out
}

// countingAPI is a shard's real Intuned client, counting its calls.
type countingAPI struct {
	intuned.API
	shard string
	log   *callLog
}

func (a *countingAPI) GetJob(ctx context.Context, project, id string) (*intuned.Job, error) {
	defer a.log.record(apiCall{a.shard, "GetJob", id})()
	return a.API.GetJob(ctx, project, id)
}

func (a *countingAPI) CreateJob(ctx context.Context, project string, req intuned.CreateJobRequest) (*intuned.CreateJobResponse, error) {
	defer a.log.record(apiCall{a.shard, "CreateJob", req.ID})()
	return a.API.CreateJob(ctx, project, req)
}

func (a *countingAPI) UpdateJob(ctx context.Context, project, id string, req intuned.UpdateJobRequest) (*intuned.UpdateJobResponse, error) {
	defer a.log.record(apiCall{a.shard, "UpdateJob", id})()
	return a.API.UpdateJob(ctx, project, id, req)
}

func (a *countingAPI) DeleteJob(ctx context.Context, project, id string) error {
	defer a.log.record(apiCall{a.shard, "DeleteJob", id})()
	return a.API.DeleteJob(ctx, project, id)
}

func (a *countingAPI) PauseJob(ctx context.Context, project, id string) error {
	defer a.log.record(apiCall{a.shard, "PauseJob", id})()
	return a.API.PauseJob(ctx, project, id)
}

func (a *countingAPI) ResumeJob(ctx context.Context, project, id string) error {
	defer a.log.record(apiCall{a.shard, "ResumeJob", id})()
	return a.API.ResumeJob(ctx, project, id)
}

func (a *countingAPI) TriggerJob(ctx context.Context, project, id string) (*intuned.TriggerJobResponse, error) {
	defer a.log.record(apiCall{a.shard, "TriggerJob", id})()
	return a.API.TriggerJob(ctx, project, id)
}

func (a *countingAPI) ListJobRuns(ctx context.Context, project, id string, opts intuned.ListRunsOptions) (*intuned.JobRunList, error) {
	defer a.log.record(apiCall{a.shard, "ListJobRuns", id})()
	return a.API.ListJobRuns(ctx, project, id, opts)
}

// shardFixture is an ijFixture whose jobs are reconciled by two shards.
type shardFixture struct {
	*ijFixture
	calls *callLog
}

// newShardFixture starts the default shard and shard b, both polling every
// poll.
func newShardFixture(t *testing.T, poll time.Duration) *shardFixture {
	f := newIJFixture(t, fixtureOptions{poll: poll, noManager: true})
	sf := &shardFixture{ijFixture: f, calls: newCallLog()}
	for _, s := range []sharding.Shard{sharding.Default, shardB} {
		controllertest.StartShardManager(t, s, func(mgr ctrl.Manager) error {
			rec := &Reconciler{
				Client:               mgr.GetClient(),
				Scheme:               mgr.GetScheme(),
				Recorder:             mgr.GetEventRecorder("intunedjob-controller"),
				PollIntervalOverride: poll,
				ReceiverAPIURL:       func(*intunedv1alpha1.WebhookReceiver) string { return "http://127.0.0.1:1" },
				Shard:                s,
				NewClient: func(c Credentials) (intuned.API, error) {
					api, err := intuned.New(intuned.Options{
						BaseURL: c.BaseURL, WorkspaceID: c.WorkspaceID, APIKey: c.APIKey,
						Pacer: intuned.NewPacer(intuned.PacerOptions{Disabled: true}),
						Retry: intuned.RetryOptions{BaseDelay: 5 * time.Millisecond, MaxDelay: 50 * time.Millisecond},
					})
					return &countingAPI{API: api, shard: s.String(), log: sf.calls}, err
				},
			}
			return rec.SetupWithManager(mgr)
		})
	}
	return sf
}

// triggerWithHeldCall creates job name in the default shard and, once it
// is Ready, sets trigger t1 with the default shard's next call of method
// for it held: it returns when that call waits.
func (f *shardFixture) triggerWithHeldCall(name, method string) *heldCall {
	f.t.Helper()
	f.create(f.newJob(name))
	f.waitReady(name)
	held := f.calls.hold(apiCall{sharding.Default.String(), method, name})
	f.t.Cleanup(held.let)
	f.setTrigger(name, "t1")
	<-held.entered
	return held
}

// inShard labels a job for shard s.
func inShard(s sharding.Shard) func(*intunedv1alpha1.IntunedJob) {
	return func(j *intunedv1alpha1.IntunedJob) {
		if s.IsDefault() {
			delete(j.Labels, sharding.Label)
			return
		}
		if j.Labels == nil {
			j.Labels = map[string]string{}
		}
		j.Labels[sharding.Label] = s.Name()
	}
}

// statusWriters are the field managers that wrote the job's status.
func statusWriters(j *intunedv1alpha1.IntunedJob) []string {
	var out []string
	for _, m := range j.ManagedFields {
		if m.Subresource == "status" && !slices.Contains(out, m.Manager) {
			out = append(out, m.Manager)
		}
	}
	return out
}

// TestShardsReconcileOnlyTheirJobs: each job is reconciled by exactly one
// shard (every Intuned call for it, and every status write, comes from its
// shard); jobs without the label go to the default shard; a job labelled
// with a shard nobody runs is left alone. Without the cache's label
// selector both shards would call Intuned for every job.
func TestShardsReconcileOnlyTheirJobs(t *testing.T) {
	f := newShardFixture(t, 300*time.Millisecond)
	owner := map[string]sharding.Shard{}
	for i := range 3 {
		for _, s := range []sharding.Shard{sharding.Default, shardB} {
			name := fmt.Sprintf("shard-%s-%d", s, i)
			owner[name] = s
			f.create(f.newJob(name, inShard(s)))
		}
	}
	f.create(f.newJob("shard-nobody", inShard(mustShard("nobody"))))
	for name := range owner {
		f.waitReady(name)
	}
	f.waitPolls(6) // a few polls of every shard
	fieldOwnerB := shardB.FieldOwner()
	for name, s := range owner {
		other := shardB
		if s == shardB {
			other = sharding.Default
		}
		if n := f.calls.count(s.String(), name); n == 0 {
			t.Errorf("%s: no Intuned call from its shard %s", name, s)
		}
		if n := f.calls.count(other.String(), name); n != 0 {
			t.Errorf("%s (shard %s): %d Intuned calls from shard %s", name, s, n, other)
		}
		if n := f.calls.count("", name, "CreateJob"); n != 1 {
			t.Errorf("%s: %d creates; want 1", name, n)
		}
		writers := statusWriters(f.get(name))
		if byB := slices.Contains(writers, fieldOwnerB); byB != (s == shardB) || len(writers) != 1 {
			t.Errorf("%s (shard %s): status written by %q", name, s, writers)
		}
	}
	if n := f.calls.count("", "shard-nobody"); n != 0 {
		t.Errorf("a job of a shard nobody runs: %d Intuned calls", n)
	}
	if j := f.get("shard-nobody"); len(j.Finalizers) != 0 || len(j.Status.Conditions) != 0 {
		t.Errorf("a job of a shard nobody runs was reconciled: finalizers %v, status %+v", j.Finalizers, j.Status)
	}
}

// TestShardHandover moves a Ready, triggered job from the default shard to
// shard b: the default shard lets it go without a call (no deletion, no
// finalizer), shard b takes it over from status without a single write to
// Intuned (no create, no update, no trigger again), then owns it: a new
// trigger and the deletion are shard b's.
func TestShardHandover(t *testing.T) {
	f := newShardFixture(t, 300*time.Millisecond)
	const name = "shard-moving"
	f.create(f.newJob(name))
	f.waitReady(name)
	f.setTrigger(name, "t1")
	f.waitTriggerRecorded(name, "t1")

	before := f.calls.snapshot()
	f.update(name, inShard(shardB))
	waitShardPolls := func(n int) {
		start := f.calls.count(shardB.String(), name, "GetJob")
		f.eventually(30*time.Second, func() string {
			if got := f.calls.count(shardB.String(), name, "GetJob") - start; got < n {
				return fmt.Sprintf("shard b polled the Job %d of %d times", got, n)
			}
			return ""
		})
	}
	waitShardPolls(3)
	// A reconcile of the default shard in flight at the move has ended by
	// now; from here on it makes no call at all for the job.
	pickedUp := f.calls.snapshot()
	waitShardPolls(3)
	if w := f.calls.since(before, writeMethods...); len(w) != 0 {
		t.Errorf("Intuned writes caused by the move: %v", w)
	}
	if n := f.calls.count(sharding.Default.String(), name) - countOf(pickedUp, sharding.Default.String(), name); n != 0 {
		t.Errorf("the default shard made %d Intuned calls for the job after it moved away", n)
	}
	j := f.waitReady(name)
	if !slices.Contains(j.Finalizers, intunedv1alpha1.Finalizer) || f.simJob(name) == nil {
		t.Fatalf("the move ran deletion: finalizers %v, Job on Intuned %v", j.Finalizers, f.simJob(name) != nil)
	}
	if runs := f.simRuns(name); len(runs) != 1 {
		t.Errorf("%d JobRuns after the move; want the one of t1", len(runs))
	}

	// Shard b owns it now.
	f.setTrigger(name, "t2")
	f.waitTriggerRecorded(name, "t2")
	if n := f.calls.count(shardB.String(), name, "TriggerJob"); n != 1 {
		t.Errorf("shard b triggered %d times; want 1 (t2)", n)
	}
	if err := controllertest.Client().Delete(context.Background(), f.get(name)); err != nil {
		t.Fatal(err)
	}
	f.eventually(30*time.Second, func() string {
		if f.simJob(name) != nil {
			return "Job still on Intuned"
		}
		return ""
	})
	if d, b := f.calls.count(sharding.Default.String(), name, "DeleteJob"), f.calls.count(shardB.String(), name, "DeleteJob"); d != 0 || b != 1 {
		t.Errorf("DeleteJob calls: default shard %d, shard b %d; want 0 and 1", d, b)
	}
}

func countOf(snap map[apiCall]int, shard, job string) int {
	n := 0
	for c, v := range snap {
		if c.shard == shard && c.job == job {
			n += v
		}
	}
	return n
}

// TestShardHandoverTriggerInFlight: the default shard has claimed a trigger
// (status.lastHandledTrigger persisted) and its call is still on the way to
// Intuned when the job moves to shard b. Shard b finds the claim in status,
// looks for the claim's JobRun instead of triggering again, and records
// the one JobRun the default shard's call started. (Shard b would trigger
// again only if no JobRun appeared within triggerVerifyDelay of the claim:
// the call is released long before.)
func TestShardHandoverTriggerInFlight(t *testing.T) {
	f := newShardFixture(t, time.Hour) // only events and the trigger's own re-checks reconcile
	const name = "shard-inflight"
	held := f.triggerWithHeldCall(name, "TriggerJob") // the claim is persisted; the call waits
	if j := f.get(name); j.Status.LastHandledTrigger != "t1" || !triggerPending(j) {
		t.Fatalf("claim not persisted before the call: %+v", j.Status)
	}
	f.update(name, inShard(shardB))
	// Shard b sees the pending claim and looks for its JobRun (none yet).
	f.eventually(30*time.Second, func() string {
		if f.calls.count(shardB.String(), name, "ListJobRuns") == 0 {
			return "shard b has not looked for the trigger's JobRun"
		}
		return ""
	})
	held.let()
	<-held.returned

	j := f.waitTriggerRecorded(name, "t1")
	runs := f.simRuns(name)
	if len(runs) != 1 || runs[0].ID != j.Status.LastTriggeredJobRunID {
		t.Errorf("JobRuns %v; want exactly the one of the in-flight call, recorded (%s)", runIDs(runs), j.Status.LastTriggeredJobRunID)
	}
	if n := f.calls.count(shardB.String(), name, writeMethods...); n != 0 {
		t.Errorf("shard b made %d Intuned writes for a moved job", n)
	}
	if n := f.calls.count(sharding.Default.String(), name, "TriggerJob"); n != 1 {
		t.Errorf("default shard triggered %d times; want the one in flight", n)
	}
}

// TestShardHandoverMidReconcile: the default shard has read the job (with
// a new trigger) and is waiting on Intuned when the job moves to shard b,
// which triggers it. When the default shard goes on with its stale copy,
// its claim of the trigger fails on the object's resourceVersion (the
// intent is written with optimistic locking), so it never calls Intuned:
// one JobRun, started by shard b.
func TestShardHandoverMidReconcile(t *testing.T) {
	f := newShardFixture(t, time.Hour)
	const name = "shard-midway"
	held := f.triggerWithHeldCall(name, "GetJob") // the default shard read the job with t1, and waits in GetJob
	f.update(name, inShard(shardB))
	j := f.waitTriggerRecorded(name, "t1")
	held.let()
	<-held.returned
	// The default shard's stale reconcile runs to its end: its claim
	// conflicts, which it reports (SyncFailed) instead of calling Intuned.
	f.eventually(30*time.Second, func() string {
		for _, e := range f.events(name) {
			if strings.HasPrefix(e, intunedv1alpha1.ReasonSyncFailed+":") && strings.Contains(e, "modified") {
				return ""
			}
		}
		return fmt.Sprintf("no conflict reported by the default shard yet: %q", f.events(name))
	})
	if n := f.calls.count(sharding.Default.String(), name, "TriggerJob"); n != 0 {
		t.Errorf("the default shard triggered %d times after the job moved", n)
	}
	if n := f.calls.count(shardB.String(), name, "TriggerJob"); n != 1 {
		t.Errorf("shard b triggered %d times; want 1", n)
	}
	if runs := f.simRuns(name); len(runs) != 1 || runs[0].ID != j.Status.LastTriggeredJobRunID {
		t.Errorf("JobRuns %v; want exactly shard b's (%s)", runIDs(runs), j.Status.LastTriggeredJobRunID)
	}
}

func runIDs(runs []intuned.JobRun) []string {
	var ids []string
	for _, r := range runs {
		ids = append(ids, r.ID)
	}
	return ids
}

// TestShardReceiverInOtherShard: a job whose receiverRef names a
// WebhookReceiver of another shard says so (its shard cannot see that
// receiver) instead of claiming the receiver does not exist; once both are
// in one shard, the link resolves (here: to a receiver not Ready yet, as no
// WebhookReceiver controller runs).
func TestShardReceiverInOtherShard(t *testing.T) {
	f := newShardFixture(t, time.Hour)
	whr := &intunedv1alpha1.WebhookReceiver{ObjectMeta: metav1.ObjectMeta{
		Namespace: f.ns, Name: "hooks", Labels: map[string]string{sharding.Label: shardB.Name()}}}
	if err := controllertest.Client().Create(context.Background(), whr); err != nil {
		t.Fatal(err)
	}
	const name = "shard-linked"
	f.create(f.newJob(name, func(j *intunedv1alpha1.IntunedJob) {
		j.Spec.Sink.Webhook = &intunedv1alpha1.WebhookSink{ReceiverRef: &intunedv1alpha1.LocalObjectReference{Name: "hooks"}}
	}))
	j := f.waitCondition(name, intunedv1alpha1.ConditionReady, metav1.ConditionFalse, intunedv1alpha1.ReasonReceiverInOtherShard)
	if c := meta.FindStatusCondition(j.Status.Conditions, intunedv1alpha1.ConditionReady); !strings.Contains(c.Message, "shard b") {
		t.Errorf("message does not name the receiver's shard: %s", c.Message)
	}
	f.update(name, inShard(shardB))
	f.waitCondition(name, intunedv1alpha1.ConditionReady, metav1.ConditionFalse, intunedv1alpha1.ReasonReceiverNotReady)
	if n := f.calls.count("", name, writeMethods...); n != 0 {
		t.Errorf("%d Intuned writes for a job whose receiver is not usable", n)
	}
}
