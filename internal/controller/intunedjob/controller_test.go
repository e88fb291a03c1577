package intunedjob

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/intuned-operator/intuned-operator/internal/controller/controllertest"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/intuned"
	"github.com/intuned-operator/intuned-operator/internal/intunedsim"
	"github.com/intuned-operator/intuned-operator/internal/token"
)

func int32p(v int32) *int32 { return &v }

// TestIntunedJobCreateUpdateSteadyState: a new IntunedJob becomes a Job on
// Intuned with one write, read back at once, the spec (schedule, headers from a Secret, retries)
// arrives as written, steady state makes no writes over several polls, and
// a spec change makes exactly one update.
func TestIntunedJobCreateUpdateSteadyState(t *testing.T) {
	f := newIJFixture(t, fixtureOptions{})
	f.createSecret("hook-auth", map[string]string{"value": "Bearer hook-secret"})
	f.create(f.newJob("daily-products", func(j *intunedv1alpha1.IntunedJob) {
		j.Spec.Configuration = &intunedv1alpha1.JobConfiguration{MaxConcurrentRequests: int32p(4)}
		j.Spec.Schedule = &intunedv1alpha1.JobSchedule{
			Intervals: []intunedv1alpha1.ScheduleInterval{{Every: "1h"}},
			Calendars: []intunedv1alpha1.ScheduleCalendar{{
				Hour:      []intunedv1alpha1.CalendarRange{{Start: 9}},
				DayOfWeek: []intunedv1alpha1.DayOfWeekRange{{Start: "MONDAY", End: "FRIDAY"}},
			}},
		}
		j.Spec.Sink.Webhook.Headers = map[string]string{"X-Team": "data"}
		j.Spec.Sink.Webhook.HeadersFrom = []intunedv1alpha1.HeaderFromSecret{{
			Name: "Authorization", SecretKeyRef: intunedv1alpha1.SecretKeyRef{Name: "hook-auth", Key: "value"},
		}}
	}))

	j := f.waitReady("daily-products")
	// A plain webhook URL: the operator does not hold the other end.
	wantCondition(t, j, intunedv1alpha1.ConditionDataComplete, metav1.ConditionUnknown, intunedv1alpha1.ReasonNotApplicable)
	// The create is read back at once: the status that first says Ready
	// already has the next run.
	if j.Status.NextRunTime == nil || j.Status.LastApplied == nil || j.Status.LastApplied.ServerDigest == "" {
		t.Errorf("first Ready status lacks what the read-back after the create gives: nextRunTime %v, lastApplied %+v",
			j.Status.NextRunTime, j.Status.LastApplied)
	}
	// The first sync is GetJob (404), CreateJob and the read-back GetJob;
	// later polls only read.
	if c, w := f.callCount("POST", "/jobs"), f.sim.WriteCalls(); c != 1 || w != 1 {
		t.Errorf("first sync made %d creates and %d writes (%v), want 1 and 1", c, w, f.sim.Calls())
	}
	if j.Status.JobID != "daily-products" || !j.Status.Managed || j.Status.WorkspaceID != f.sim.WorkspaceID {
		t.Errorf("status jobId=%q managed=%v workspace=%q", j.Status.JobID, j.Status.Managed, j.Status.WorkspaceID)
	}
	if j.Status.Sink == nil || j.Status.Sink.URL != "http://127.0.0.1:9/hooks/intuned" {
		t.Errorf("status.sink = %+v", j.Status.Sink)
	}
	if !f.hasEvent("daily-products", "Created") {
		t.Errorf("no Created event; events: %v", f.events("daily-products"))
	}
	got := f.simJob("daily-products")
	if got == nil {
		t.Fatal("Job not on the simulator")
	}
	w := got.Sink.Webhook
	if w == nil || w.Headers["Authorization"] != "Bearer hook-secret" || w.Headers["X-Team"] != "data" {
		t.Errorf("sink on Intuned = %+v", w)
	}
	if got.Configuration.MaxConcurrentRequests == nil || *got.Configuration.MaxConcurrentRequests != 4 {
		t.Errorf("configuration on Intuned = %+v", got.Configuration)
	}
	if got.Schedule == nil || len(got.Schedule.Intervals) != 1 || len(got.Schedule.Calendars) != 1 {
		t.Errorf("schedule on Intuned = %+v", got.Schedule)
	}
	var params map[string]any
	_ = json.Unmarshal(got.Payload[0].Parameters, &params)
	if params["category"] != "shoes" {
		t.Errorf("payload parameters on Intuned = %s", got.Payload[0].Parameters)
	}

	// Steady state: several polls (each a GetJob and a ListJobRuns), no writes.
	f.sim.ResetCalls()
	f.waitPolls(5)
	if w := f.sim.WriteCalls(); w != 0 {
		t.Errorf("steady state made %d write calls: %v", w, f.sim.Calls())
	}
	if j := f.get("daily-products"); j.Status.NextRunTime == nil {
		t.Errorf("status.nextRunTime not set for a scheduled job: %+v", j.Status)
	}

	// A spec change: exactly one update, then quiet again.
	f.sim.ResetCalls()
	f.update("daily-products", func(j *intunedv1alpha1.IntunedJob) {
		j.Spec.Configuration.MaxConcurrentRequests = int32p(2)
	})
	f.waitReady("daily-products")
	f.eventually(10*time.Second, func() string {
		if c := f.simJob("daily-products").Configuration.MaxConcurrentRequests; c == nil || *c != 2 {
			return "maxConcurrentRequests not updated on Intuned"
		}
		return ""
	})
	f.waitPolls(3)
	if n := f.callCount("PUT", "/jobs/{jobId}"); n != 1 || f.sim.WriteCalls() != 1 {
		t.Errorf("spec change made %d updates and %d writes, want 1 and 1: %v", n, f.sim.WriteCalls(), f.sim.Calls())
	}
	if !f.hasEvent("daily-products", "Updated") {
		t.Errorf("no Updated event; events: %v", f.events("daily-products"))
	}
}

// TestIntunedJobDrift: changes made on Intuned behind the operator's back
// are repaired on the next poll.
func TestIntunedJobDrift(t *testing.T) {
	f := newIJFixture(t, fixtureOptions{})
	tests := []struct {
		name, action, patch string
		check               func(j *intuned.Job) string
	}{
		{"deleted-job", "delete", "", func(j *intuned.Job) string {
			if j == nil {
				return "not recreated"
			}
			return ""
		}},
		{"modified-job", "modify", `{"configuration":{"maxConcurrentRequests":1},"sink":null}`, func(j *intuned.Job) string {
			if j == nil || j.Sink == nil || j.Configuration.MaxConcurrentRequests != nil {
				return fmt.Sprintf("not put back: %+v", j)
			}
			return ""
		}},
		{"paused-job", "pause", "", func(j *intuned.Job) string {
			if j == nil || j.State != intuned.JobStateActive {
				return "not resumed"
			}
			return ""
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f.create(f.newJob(tc.name))
			f.waitReady(tc.name)
			f.drift(tc.name, tc.action, tc.patch)
			f.eventually(20*time.Second, func() string { return tc.check(f.simJob(tc.name)) })
		})
	}
	if !f.hasEvent("deleted-job", "Recreated") {
		t.Errorf("no Recreated event: %v", f.events("deleted-job"))
	}
}

// TestIntunedJobRecreatedForgetsOldRun: a Job deleted on Intuned behind
// the operator's back is recreated, and status no longer shows the old
// Job's last run.
func TestIntunedJobRecreatedForgetsOldRun(t *testing.T) {
	// Polls longer than the test: only the reconciles the test causes run.
	f := newIJFixture(t, fixtureOptions{poll: time.Hour})
	f.create(f.newJob("recreated"))
	f.waitReady("recreated")
	f.setTrigger("recreated", "run-of-the-old-job")
	f.eventually(30*time.Second, func() string {
		if f.get("recreated").Status.LastJobRun == nil {
			return "no lastJobRun after the trigger"
		}
		return ""
	})
	f.drift("recreated", "delete", "")
	f.update("recreated", func(j *intunedv1alpha1.IntunedJob) { j.Annotations["example.com/touch"] = "reconcile now" })
	f.eventually(30*time.Second, func() string {
		if !f.hasEvent("recreated", "Recreated") {
			return "no Recreated event yet"
		}
		if r := f.get("recreated").Status.LastJobRun; r != nil {
			return fmt.Sprintf("status.lastJobRun still shows the deleted Job's run %s", r.ID)
		}
		return ""
	})
}

// TestIntunedJobPauseResume: spec.paused pauses and resumes the Job.
func TestIntunedJobPauseResume(t *testing.T) {
	f := newIJFixture(t, fixtureOptions{})
	f.create(f.newJob("pausable-job", func(j *intunedv1alpha1.IntunedJob) {
		j.Spec.Paused = true
		j.Spec.Schedule = &intunedv1alpha1.JobSchedule{Intervals: []intunedv1alpha1.ScheduleInterval{{Every: "1h"}}}
	}))
	f.waitReady("pausable-job")
	f.eventually(10*time.Second, func() string {
		if s := f.get("pausable-job").Status.JobState; s != intunedv1alpha1.JobStatePaused {
			return "status.jobState " + string(s)
		}
		if s := f.simJob("pausable-job").State; s != intuned.JobStatePaused {
			return "Intuned state " + string(s)
		}
		return ""
	})
	// A trigger while paused says the run waits for the resume.
	f.setTrigger("pausable-job", "while-paused")
	f.eventually(10*time.Second, func() string {
		for _, e := range f.events("pausable-job") {
			if strings.HasPrefix(e, "TriggeredWhilePaused:") && strings.Contains(e, "waits until it is resumed") {
				return ""
			}
		}
		return fmt.Sprintf("no TriggeredWhilePaused event: %v", f.events("pausable-job"))
	})
	f.update("pausable-job", func(j *intunedv1alpha1.IntunedJob) { j.Spec.Paused = false })
	// The resume is read back: the first Ready status of the new
	// generation already has the next run.
	if j := f.waitReady("pausable-job"); j.Status.JobState != intunedv1alpha1.JobStateActive || j.Status.NextRunTime == nil {
		t.Errorf("first status after the resume: jobState %s nextRunTime %v", j.Status.JobState, j.Status.NextRunTime)
	}
	f.eventually(10*time.Second, func() string {
		if s := f.simJob("pausable-job").State; s != intuned.JobStateActive {
			return "Intuned state " + string(s)
		}
		if j := f.get("pausable-job"); j.Status.JobState != intunedv1alpha1.JobStateActive || j.Status.NextRunTime == nil {
			return fmt.Sprintf("status.jobState %s nextRunTime %v", j.Status.JobState, j.Status.NextRunTime)
		}
		return ""
	})
	for _, reason := range []string{"Paused", "Resumed"} {
		if !f.hasEvent("pausable-job", reason) {
			t.Errorf("no %s event: %v", reason, f.events("pausable-job"))
		}
	}
}

// TestIntunedJobSuspend: a suspended job makes no Intuned calls at all, not
// even drift checks; unsuspending repairs what changed meanwhile.
func TestIntunedJobSuspend(t *testing.T) {
	f := newIJFixture(t, fixtureOptions{})
	f.create(f.newJob("suspended-new", func(j *intunedv1alpha1.IntunedJob) { j.Spec.Suspend = true }))
	f.waitCondition("suspended-new", intunedv1alpha1.ConditionSynced, metav1.ConditionUnknown, intunedv1alpha1.ReasonSuspended)

	f.create(f.newJob("suspended-later"))
	f.waitReady("suspended-later")
	f.update("suspended-later", func(j *intunedv1alpha1.IntunedJob) { j.Spec.Suspend = true })
	f.waitCondition("suspended-later", intunedv1alpha1.ConditionReady, metav1.ConditionTrue, intunedv1alpha1.ReasonSuspended)
	f.sim.ResetCalls()
	f.drift("suspended-later", "delete", "")
	// Touch the object and wait well past several poll intervals.
	f.update("suspended-later", func(j *intunedv1alpha1.IntunedJob) { j.Spec.Paused = true })
	f.waitCondition("suspended-later", intunedv1alpha1.ConditionReady, metav1.ConditionTrue, intunedv1alpha1.ReasonSuspended)
	deadline := time.Now().Add(10 * f.poll)
	for time.Now().Before(deadline) {
		if n := len(f.sim.Calls()); n != 0 {
			t.Fatalf("suspended jobs made Intuned calls: %v", f.sim.Calls())
		}
		time.Sleep(f.poll / 2)
	}
	if f.simJob("suspended-new") != nil {
		t.Error("a suspended new job was created on Intuned")
	}

	f.update("suspended-later", func(j *intunedv1alpha1.IntunedJob) { j.Spec.Suspend = false })
	f.waitReady("suspended-later")
	if j := f.simJob("suspended-later"); j == nil || j.State != intuned.JobStatePaused {
		t.Errorf("after unsuspend the Job is %+v, want it recreated and paused", j)
	}
}

// TestIntunedJobTriggerExactlyOnce: each new annotation value starts exactly
// one JobRun, also when the manager stops right after the trigger call
// reached Intuned and before the result was recorded (the run is then
// recovered, not triggered again); a repeated value and a restart start
// nothing.
func TestIntunedJobTriggerExactlyOnce(t *testing.T) {
	f := newIJFixture(t, fixtureOptions{})
	f.create(f.newJob("triggered-job"))
	f.waitReady("triggered-job")

	// 1. Normal trigger.
	f.setTrigger("triggered-job", "run-1")
	f.eventually(10*time.Second, func() string {
		j := f.get("triggered-job")
		if j.Status.LastHandledTrigger != "run-1" || j.Status.LastTriggeredJobRunID == "" || j.Status.LastJobRun == nil {
			return fmt.Sprintf("status %+v", j.Status)
		}
		return ""
	})
	if runs := f.simRuns("triggered-job"); len(runs) != 1 {
		t.Fatalf("%d JobRuns after one trigger, want 1", len(runs))
	}
	run1 := f.get("triggered-job").Status.LastTriggeredJobRunID
	if !f.hasEvent("triggered-job", "Triggered") {
		t.Errorf("no Triggered event: %v", f.events("triggered-job"))
	}

	// 2. Stop the manager as soon as the trigger call reached Intuned: the
	// handled value is persisted, the JobRun id perhaps not yet.
	before := f.callCount("POST", "/trigger")
	f.setTrigger("triggered-job", "run-2")
	f.eventually(10*time.Second, func() string {
		if f.callCount("POST", "/trigger") == before {
			return "trigger call not seen yet"
		}
		return ""
	})
	f.stopManager()
	if j := f.get("triggered-job"); j.Status.LastHandledTrigger != "run-2" || j.Status.LastTriggerTime == nil {
		t.Fatalf("trigger run-2 was not claimed before the trigger call: %+v", j.Status)
	}
	f.start()
	j := f.waitTriggerRecorded("triggered-job", "run-2")
	f.waitPolls(3)
	if n := f.callCount("POST", "/trigger"); n != before+1 {
		t.Errorf("%d trigger calls for run-2, want exactly 1", n-before)
	}
	runs := f.simRuns("triggered-job")
	if len(runs) != 2 {
		t.Fatalf("%d JobRuns after two trigger values and a restart, want 2", len(runs))
	}
	if id := j.Status.LastTriggeredJobRunID; id == run1 || !slices.ContainsFunc(runs, func(r intuned.JobRun) bool { return r.ID == id }) {
		t.Errorf("lastTriggeredJobRunId %q for run-2 is not the second JobRun: %+v", id, runs)
	}

	// 3. The same value again (another annotation touch) triggers nothing.
	f.update("triggered-job", func(j *intunedv1alpha1.IntunedJob) { j.Annotations["unrelated"] = "x" })
	f.restart()
	f.waitPolls(3)
	if runs := f.simRuns("triggered-job"); len(runs) != 2 {
		t.Errorf("%d JobRuns after a restart without a new value, want 2", len(runs))
	}
	if j := f.get("triggered-job"); j.Status.LastJobRun == nil || j.Status.LastJobRun.Type != "MANUAL" {
		t.Errorf("status.lastJobRun = %+v", j.Status.LastJobRun)
	}
}

// TestIntunedJobTriggerClaimedBeforeCrash: a manager that claimed a trigger
// value and stopped before calling Intuned left a pending trigger; the next
// manager finds no JobRun for it and triggers exactly once.
func TestIntunedJobTriggerClaimedBeforeCrash(t *testing.T) {
	const name = "crashed-trigger-job"
	f := newIJFixture(t, fixtureOptions{})
	f.create(f.newJob(name))
	f.waitReady(name)
	f.stopManager()

	f.setTrigger(name, "before-crash")
	j := f.get(name)
	patch := client.MergeFrom(j.DeepCopy())
	j.Status.LastHandledTrigger = "before-crash"
	j.Status.LastTriggerTime = &metav1.Time{Time: time.Now()}
	if err := controllertest.Client().Status().Patch(context.Background(), j, patch); err != nil {
		t.Fatal(err)
	}

	f.start()
	j = f.waitTriggerRecorded(name, "before-crash")
	f.waitPolls(3)
	runs := f.simRuns(name)
	if len(runs) != 1 || runs[0].ID != j.Status.LastTriggeredJobRunID || runs[0].Type != intuned.JobRunManual {
		t.Errorf("JobRuns %+v, want exactly one MANUAL run with id %q", runs, j.Status.LastTriggeredJobRunID)
	}
	if n := f.callCount("POST", "/trigger"); n != 1 {
		t.Errorf("%d trigger calls, want 1", n)
	}
}

// TestIntunedJobTriggerCancelledCallResent: the manager stops while the
// trigger call waits in the simulator, which cancels the call before
// Intuned acted. The next manager sees no JobRun for the pending value and
// sends it again: exactly one JobRun.
func TestIntunedJobTriggerCancelledCallResent(t *testing.T) {
	const name = "slow-trigger-job"
	f := newIJFixture(t, fixtureOptions{})
	f.create(f.newJob(name))
	f.waitReady(name)
	f.sim.SetFaults([]intunedsim.FaultRule{{Match: triggerRoute, LatencyMS: 5000}})
	f.setTrigger(name, "once")
	f.eventually(10*time.Second, func() string {
		if f.callCount("POST", "/trigger") == 0 {
			return "trigger call not seen yet"
		}
		return ""
	})
	f.stopManager()
	f.sim.SetFaults(nil)
	f.start()
	j := f.waitTriggerRecorded(name, "once")
	f.waitPolls(3)
	if n := f.callCount("POST", "/trigger"); n != 2 {
		t.Errorf("%d trigger calls, want 2 (the cancelled one, then one resend)", n)
	}
	if runs := f.simRuns(name); len(runs) != 1 || runs[0].ID != j.Status.LastTriggeredJobRunID {
		t.Errorf("JobRuns %+v, want exactly one, with id %q", runs, j.Status.LastTriggeredJobRunID)
	}
}

// TestIntunedJobTriggerOutcomes: a trigger call that fails ambiguously is
// verified against the JobRuns on Intuned and sent again only when it
// never took effect; a trigger Intuned refuses is not retried.
func TestIntunedJobTriggerOutcomes(t *testing.T) {
	f := newIJFixture(t, fixtureOptions{})
	proxy := newTriggerProxy(t, f.sim.URL)
	f.createSecret("proxied-creds", map[string]string{
		intunedv1alpha1.CredentialsKeyWorkspaceID: f.sim.WorkspaceID,
		intunedv1alpha1.CredentialsKeyAPIKey:      f.sim.APIKey,
		intunedv1alpha1.CredentialsKeyBaseURL:     proxy.URL + intunedsim.APIPrefix,
	})
	failNext := func(status int) func() {
		return func() { f.sim.SetFaults([]intunedsim.FaultRule{{Match: triggerRoute, Status: status, Times: 1}}) }
	}
	tests := []struct {
		name      string
		fail      func() // makes the next trigger call fail
		wantCalls int    // trigger calls Intuned saw
		wantRun   bool   // one JobRun, recorded; else none and not pending
		wantEvent string // a note fragment
	}{
		{"5xx-after-acting", proxy.loseNextAnswer, 1, true, "(recovered)"},
		{"5xx-before-acting", failNext(503), 2, true, "is unknown"},
		{"refused-400", failNext(400), 1, false, "will not be retried"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f.create(f.newJob(tc.name, func(j *intunedv1alpha1.IntunedJob) {
				j.Spec.CredentialsRef = &intunedv1alpha1.LocalObjectReference{Name: "proxied-creds"}
			}))
			f.waitReady(tc.name)
			before := f.callCount("POST", "/trigger")
			tc.fail()
			f.setTrigger(tc.name, "now")
			var j *intunedv1alpha1.IntunedJob
			f.eventually(30*time.Second, func() string {
				j = f.get(tc.name)
				if j.Status.LastHandledTrigger != "now" || triggerPending(j) {
					return fmt.Sprintf("trigger not settled: %+v", j.Status)
				}
				return ""
			})
			f.waitPolls(10) // several reconciles of every job in the namespace
			if n := f.callCount("POST", "/trigger") - before; n != tc.wantCalls {
				t.Errorf("%d trigger calls, want %d", n, tc.wantCalls)
			}
			runs := f.simRuns(tc.name)
			j = f.get(tc.name)
			switch {
			case tc.wantRun && (len(runs) != 1 || runs[0].ID != j.Status.LastTriggeredJobRunID):
				t.Errorf("JobRuns %+v, want exactly one, with id %q", runs, j.Status.LastTriggeredJobRunID)
			case !tc.wantRun && (len(runs) != 0 || j.Status.LastTriggeredJobRunID != "" || j.Status.LastTriggerTime != nil):
				t.Errorf("JobRuns %+v, status %+v; want no run and no pending trigger", runs, j.Status)
			}
			if !slices.ContainsFunc(f.events(tc.name), func(e string) bool { return strings.Contains(e, tc.wantEvent) }) {
				t.Errorf("no event with %q: %v", tc.wantEvent, f.events(tc.name))
			}
		})
	}
}

// TestIntunedJobDeletion: deletionPolicy Delete removes the Job on Intuned
// (also when it is already gone); Orphan leaves it.
func TestIntunedJobDeletion(t *testing.T) {
	f := newIJFixture(t, fixtureOptions{})
	tests := []struct {
		name          string
		policy        intunedv1alpha1.DeletionPolicy
		goneFirst     bool
		wantOnIntuned bool
	}{
		{"delete-policy", intunedv1alpha1.DeletionPolicyDelete, false, false},
		{"delete-already-gone", intunedv1alpha1.DeletionPolicyDelete, true, false},
		{"orphan-policy", intunedv1alpha1.DeletionPolicyOrphan, false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f.create(f.newJob(tc.name, func(j *intunedv1alpha1.IntunedJob) { j.Spec.DeletionPolicy = tc.policy }))
			j := f.waitReady(tc.name)
			if len(j.Finalizers) != 1 || j.Finalizers[0] != intunedv1alpha1.Finalizer {
				t.Fatalf("finalizers %v", j.Finalizers)
			}
			if tc.goneFirst {
				f.drift(tc.name, "delete", "")
			}
			if err := controllertest.Client().Delete(context.Background(), j); err != nil {
				t.Fatal(err)
			}
			f.eventually(20*time.Second, func() string {
				err := controllertest.Client().Get(context.Background(), types.NamespacedName{Namespace: f.ns, Name: tc.name}, &intunedv1alpha1.IntunedJob{})
				if !apierrors.IsNotFound(err) {
					return "object still exists"
				}
				return ""
			})
			if on := f.simJob(tc.name) != nil; on != tc.wantOnIntuned {
				t.Errorf("Job on Intuned after deletion: %v, want %v", on, tc.wantOnIntuned)
			}
		})
	}
}

// TestIntunedJobDeletionBlocked: an IntunedJob whose Job cannot be deleted
// on Intuned (credentials gone or rejected) is kept, says why and how to
// force it, and goes once the cause is fixed or deletionPolicy is Orphan.
func TestIntunedJobDeletionBlocked(t *testing.T) {
	f := newIJFixture(t, fixtureOptions{})
	ctx := context.Background()
	tests := []struct {
		name          string
		breakCreds    func(secret string)
		finish        func(job, secret string)
		wantOnIntuned bool
	}{
		{"secret-deleted-then-restored",
			func(secret string) {
				if err := controllertest.Client().Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: secret}}); err != nil {
					t.Fatal(err)
				}
			},
			func(_, secret string) { f.createSecret(secret, f.credentialsData()) },
			false},
		{"key-rejected-then-orphaned",
			func(secret string) {
				f.updateSecret(secret, map[string]string{intunedv1alpha1.CredentialsKeyAPIKey: "revoked-key"})
			},
			func(job, _ string) {
				f.update(job, func(j *intunedv1alpha1.IntunedJob) { j.Spec.DeletionPolicy = intunedv1alpha1.DeletionPolicyOrphan })
			},
			true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			secret := "creds-" + tc.name
			f.createSecret(secret, f.credentialsData())
			f.create(f.newJob(tc.name, func(j *intunedv1alpha1.IntunedJob) {
				j.Spec.CredentialsRef = &intunedv1alpha1.LocalObjectReference{Name: secret}
			}))
			f.waitReady(tc.name)
			tc.breakCreds(secret)
			if err := controllertest.Client().Delete(ctx, f.get(tc.name)); err != nil {
				t.Fatal(err)
			}
			j := f.waitCondition(tc.name, intunedv1alpha1.ConditionStalled, metav1.ConditionTrue, intunedv1alpha1.ReasonDeletionBlocked)
			msg := meta.FindStatusCondition(j.Status.Conditions, intunedv1alpha1.ConditionReady).Message
			for _, want := range []string{secret, `"deletionPolicy":"Orphan"`} {
				if !strings.Contains(msg, want) {
					t.Errorf("Ready message %q does not name %s", msg, want)
				}
			}
			if strings.Contains(msg, "revoked-key") || strings.Contains(msg, f.sim.APIKey) {
				t.Errorf("Ready message shows an API key: %q", msg)
			}
			if !f.hasEvent(tc.name, intunedv1alpha1.ReasonDeletionBlocked) {
				t.Errorf("no DeletionBlocked Event; events: %v", f.events(tc.name))
			}
			if f.simJob(tc.name) == nil {
				t.Fatal("the Job is gone from Intuned although its deletion was blocked")
			}

			tc.finish(tc.name, secret)
			f.eventually(20*time.Second, func() string {
				err := controllertest.Client().Get(ctx, types.NamespacedName{Namespace: f.ns, Name: tc.name}, &intunedv1alpha1.IntunedJob{})
				if !apierrors.IsNotFound(err) {
					return "object still exists"
				}
				return ""
			})
			if on := f.simJob(tc.name) != nil; on != tc.wantOnIntuned {
				t.Errorf("Job on Intuned after deletion: %v, want %v", on, tc.wantOnIntuned)
			}
		})
	}
}

// TestIntunedJobAdoption: a Job that exists on Intuned but was not created
// by the object is left alone (AlreadyExists, no writes) until spec.adopt.
func TestIntunedJobAdoption(t *testing.T) {
	f := newIJFixture(t, fixtureOptions{})
	_, err := f.api.CreateJob(context.Background(), testProject, intuned.CreateJobRequest{
		ID:            "hand-made-job",
		Payload:       []intuned.PayloadItem{{APIName: "details", Parameters: json.RawMessage(`{}`)}},
		Configuration: intuned.Configuration{},
	})
	if err != nil {
		t.Fatal(err)
	}
	f.sim.ResetCalls()
	f.create(f.newJob("hand-made-job"))
	j := f.waitCondition("hand-made-job", intunedv1alpha1.ConditionReady, metav1.ConditionFalse, intunedv1alpha1.ReasonAlreadyExists)
	f.waitCondition("hand-made-job", intunedv1alpha1.ConditionStalled, metav1.ConditionFalse, "")
	if j.Status.Managed {
		t.Error("status.managed is true for a Job we did not create")
	}
	f.waitPolls(2)
	if w := f.sim.WriteCalls(); w != 0 {
		t.Errorf("%d writes to someone else's Job: %v", w, f.sim.Calls())
	}
	if got := f.simJob("hand-made-job"); got.Payload[0].APIName != "details" {
		t.Errorf("someone else's Job was changed: %+v", got.Payload)
	}

	f.update("hand-made-job", func(j *intunedv1alpha1.IntunedJob) { j.Spec.Adopt = true })
	j = f.waitReady("hand-made-job")
	if !j.Status.Managed {
		t.Error("status.managed not set after adoption")
	}
	if got := f.simJob("hand-made-job"); got.Payload[0].APIName != "list" {
		t.Errorf("adopted Job not overwritten with the spec: %+v", got.Payload)
	}
	if !f.hasEvent("hand-made-job", "Adopted") {
		t.Errorf("no Adopted event: %v", f.events("hand-made-job"))
	}
}

// TestIntunedJobConflict: two objects claiming the same Intuned Job; the
// later one reports Conflict and writes nothing.
func TestIntunedJobConflict(t *testing.T) {
	f := newIJFixture(t, fixtureOptions{})
	f.create(f.newJob("first-claim", func(j *intunedv1alpha1.IntunedJob) { j.Spec.JobID = "shared-job-id" }))
	f.waitReady("first-claim")
	f.sim.ResetCalls()
	f.create(f.newJob("second-claim", func(j *intunedv1alpha1.IntunedJob) {
		j.Spec.JobID = "shared-job-id"
		j.Spec.Configuration = &intunedv1alpha1.JobConfiguration{MaxConcurrentRequests: int32p(1)}
		j.Spec.DeletionPolicy = intunedv1alpha1.DeletionPolicyDelete
	}))
	j := f.waitCondition("second-claim", intunedv1alpha1.ConditionStalled, metav1.ConditionTrue, intunedv1alpha1.ReasonConflict)
	if !strings.Contains(j.Status.Conditions[0].Message+j.Status.Conditions[1].Message, "first-claim") {
		t.Errorf("conflict message does not name the winner: %v", j.Status.Conditions)
	}
	f.waitPolls(3)
	if w := f.sim.WriteCalls(); w != 0 {
		t.Errorf("%d writes while in conflict: %v", w, f.sim.Calls())
	}
	if c := f.simJob("shared-job-id").Configuration.MaxConcurrentRequests; c != nil {
		t.Errorf("the loser changed the Job: maxConcurrentRequests %v", *c)
	}
	// Deleting the loser (policy Delete) must not delete the winner's Job.
	if err := controllertest.Client().Delete(context.Background(), f.get("second-claim")); err != nil {
		t.Fatal(err)
	}
	f.eventually(10*time.Second, func() string {
		err := controllertest.Client().Get(context.Background(), types.NamespacedName{Namespace: f.ns, Name: "second-claim"}, &intunedv1alpha1.IntunedJob{})
		if !apierrors.IsNotFound(err) {
			return "loser still exists"
		}
		return ""
	})
	if f.simJob("shared-job-id") == nil {
		t.Error("deleting the conflicting object deleted the winner's Job")
	}
}

// TestIntunedJobErrors: errors from Intuned and from missing references
// end in the documented conditions, with Intuned's message and without
// leaking secrets.
func TestIntunedJobErrors(t *testing.T) {
	f := newIJFixture(t, fixtureOptions{})
	f.createSecret("bad-proxy", map[string]string{"url": "not a proxy url"})
	f.createSecret("wrong-key", map[string]string{
		intunedv1alpha1.CredentialsKeyWorkspaceID: f.sim.WorkspaceID,
		intunedv1alpha1.CredentialsKeyAPIKey:      "definitely-wrong-key-123",
		intunedv1alpha1.CredentialsKeyBaseURL:     f.sim.APIBase,
	})
	tests := []struct {
		name, reason string
		stalled      bool
		mutate       func(*intunedv1alpha1.IntunedJob)
		wantInMsg    string
	}{
		{"invalid-proxy", intunedv1alpha1.ReasonInvalidSpec, true, func(j *intunedv1alpha1.IntunedJob) {
			j.Spec.ProxyFrom = &intunedv1alpha1.SecretKeyRef{Name: "bad-proxy", Key: "url"}
		}, "proxy must be a URL"},
		{"wrong-api-key", intunedv1alpha1.ReasonCredentialsInvalid, true, func(j *intunedv1alpha1.IntunedJob) {
			j.Spec.CredentialsRef.Name = "wrong-key"
		}, f.ns + "/wrong-key"},
		{"no-such-project", intunedv1alpha1.ReasonProjectNotFound, false, func(j *intunedv1alpha1.IntunedJob) {
			j.Spec.Project = "not-deployed"
		}, "not-deployed"},
		{"missing-credentials", intunedv1alpha1.ReasonCredentialsNotFound, false, func(j *intunedv1alpha1.IntunedJob) {
			j.Spec.CredentialsRef.Name = "nope"
		}, f.ns + "/nope"},
		{"missing-header-secret", intunedv1alpha1.ReasonSecretNotFound, false, func(j *intunedv1alpha1.IntunedJob) {
			j.Spec.Sink.Webhook.HeadersFrom = []intunedv1alpha1.HeaderFromSecret{{Name: "X-Key", SecretKeyRef: intunedv1alpha1.SecretKeyRef{Name: "absent", Key: "k"}}}
		}, "absent"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f.create(f.newJob(tc.name, tc.mutate))
			want := metav1.ConditionFalse
			if tc.stalled {
				want = metav1.ConditionTrue
			}
			j := f.waitCondition(tc.name, intunedv1alpha1.ConditionStalled, want, tc.reason)
			f.waitCondition(tc.name, intunedv1alpha1.ConditionReady, metav1.ConditionFalse, tc.reason)
			msg := ""
			for _, c := range j.Status.Conditions {
				msg += c.Message + "\n"
			}
			if !strings.Contains(msg, tc.wantInMsg) {
				t.Errorf("condition messages %q do not contain %q", msg, tc.wantInMsg)
			}
			raw, _ := json.Marshal(j.Status)
			for _, secret := range []string{"definitely-wrong-key-123", f.sim.APIKey, "not a proxy url"} {
				if strings.Contains(string(raw)+strings.Join(f.events(tc.name), "\n"), secret) {
					t.Errorf("a secret value appears in status or events")
				}
			}
		})
	}
	// A stalled job does not hammer Intuned: within a few polls, at most one
	// rejected write per poll interval, never a hot loop.
	f.sim.ResetCalls()
	time.Sleep(5 * f.poll)
	if n := f.callCount("POST", "/jobs"); n > 2*5*3 {
		t.Errorf("%d creates in 5 poll intervals from stalled jobs", n)
	}
}

// TestIntunedJobSecretRotation: changing a referenced Secret re-syncs the
// job through the Secret watch: a fixed API key recovers a CredentialsInvalid
// job; a new header value reaches Intuned.
func TestIntunedJobSecretRotation(t *testing.T) {
	f := newIJFixture(t, fixtureOptions{poll: time.Hour}) // only watches can re-sync
	f.createSecret("rotating-creds", map[string]string{
		intunedv1alpha1.CredentialsKeyWorkspaceID: f.sim.WorkspaceID,
		intunedv1alpha1.CredentialsKeyAPIKey:      "old-revoked-key",
		intunedv1alpha1.CredentialsKeyBaseURL:     f.sim.APIBase,
	})
	f.createSecret("hook-token", map[string]string{"v": "Bearer one"})
	f.create(f.newJob("rotation-job", func(j *intunedv1alpha1.IntunedJob) {
		j.Spec.CredentialsRef.Name = "rotating-creds"
		j.Spec.Sink.Webhook.HeadersFrom = []intunedv1alpha1.HeaderFromSecret{{
			Name: "Authorization", SecretKeyRef: intunedv1alpha1.SecretKeyRef{Name: "hook-token", Key: "v"}}}
	}))
	f.waitCondition("rotation-job", intunedv1alpha1.ConditionStalled, metav1.ConditionTrue, intunedv1alpha1.ReasonCredentialsInvalid)

	f.updateSecret("rotating-creds", map[string]string{intunedv1alpha1.CredentialsKeyAPIKey: f.sim.APIKey})
	f.waitReady("rotation-job")

	f.updateSecret("hook-token", map[string]string{"v": "Bearer two"})
	f.eventually(10*time.Second, func() string {
		if h := f.simJob("rotation-job").Sink.Webhook.Headers["Authorization"]; h != "Bearer two" {
			return "header on Intuned is still the old one"
		}
		return ""
	})
}

// TestIntunedJobReceiverLink: a webhook sink with receiverRef waits for the
// WebhookReceiver (not found, not ready), then gets its URL and token; a new
// URL or a rotated token re-syncs the job, and status.sink.tokenFingerprint
// follows what Intuned holds.
func TestIntunedJobReceiverLink(t *testing.T) {
	f := newIJFixture(t, fixtureOptions{poll: time.Hour}) // only watches can re-sync
	ctx := context.Background()
	f.create(f.newJob("linked-job", func(j *intunedv1alpha1.IntunedJob) {
		j.Spec.Sink.Webhook.URL = ""
		j.Spec.Sink.Webhook.ReceiverRef = &intunedv1alpha1.LocalObjectReference{Name: "results"}
		j.Spec.Sink.Webhook.Headers = map[string]string{"X-Team": "data"}
	}))
	f.waitCondition("linked-job", intunedv1alpha1.ConditionSynced, metav1.ConditionFalse, intunedv1alpha1.ReasonReceiverNotFound)

	whr := &intunedv1alpha1.WebhookReceiver{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "results"}}
	if err := controllertest.Client().Create(ctx, whr); err != nil {
		t.Fatalf("create WebhookReceiver: %v", err)
	}
	f.waitCondition("linked-job", intunedv1alpha1.ConditionSynced, metav1.ConditionFalse, intunedv1alpha1.ReasonReceiverNotReady)
	if f.simJob("linked-job") != nil {
		t.Fatal("Job pushed to Intuned before the receiver was ready")
	}

	// What the WebhookReceiver controller would do: token Secret, URL, Ready.
	f.createSecret("results-token", map[string]string{"token": "tok-1"})
	setReceiver := func(url string) {
		f.retryOnConflict(func() error {
			var w intunedv1alpha1.WebhookReceiver
			if err := controllertest.Client().Get(ctx, types.NamespacedName{Namespace: f.ns, Name: "results"}, &w); err != nil {
				return err
			}
			w.Status.URL = url
			w.Status.TokenSecretName = "results-token"
			w.Status.Conditions = []metav1.Condition{{Type: intunedv1alpha1.ConditionReady, Status: metav1.ConditionTrue,
				Reason: intunedv1alpha1.ReasonAvailable, LastTransitionTime: metav1.Now()}}
			return controllertest.Client().Status().Update(ctx, &w)
		})
	}
	setReceiver("https://hooks.example.com/results")
	j := f.waitReady("linked-job")
	if j.Status.Sink == nil || j.Status.Sink.URL != "https://hooks.example.com/results" || j.Status.Sink.TokenFingerprint != token.Fingerprint("tok-1") {
		t.Errorf("status.sink = %+v", j.Status.Sink)
	}
	// Accounting reaches the receiver's API (here: nothing listens) and
	// says so without touching Ready; no JobRun yet, so nothing to count.
	f.waitCondition("linked-job", intunedv1alpha1.ConditionDataComplete, metav1.ConditionUnknown, intunedv1alpha1.ReasonNoJobRun)
	w := f.simJob("linked-job").Sink.Webhook
	if w.URL != "https://hooks.example.com/results" || w.Headers["Authorization"] != "Bearer tok-1" || w.Headers["X-Team"] != "data" {
		t.Errorf("sink on Intuned = %+v", w)
	}

	// URL change.
	setReceiver("https://hooks2.example.com/results")
	f.eventually(10*time.Second, func() string {
		if u := f.simJob("linked-job").Sink.Webhook.URL; u != "https://hooks2.example.com/results" {
			return "URL on Intuned " + u
		}
		if u := f.get("linked-job").Status.Sink.URL; u != "https://hooks2.example.com/results" {
			return "status.sink.url " + u
		}
		return ""
	})

	// Token rotation: the Secret changes (the receiver keeps previous-token).
	f.updateSecret("results-token", map[string]string{"token": "tok-2", "previous-token": "tok-1"})
	f.eventually(10*time.Second, func() string {
		if h := f.simJob("linked-job").Sink.Webhook.Headers["Authorization"]; h != "Bearer tok-2" {
			return "Authorization on Intuned is still the old token"
		}
		if fp := f.get("linked-job").Status.Sink.TokenFingerprint; fp != token.Fingerprint("tok-2") {
			return "status.sink.tokenFingerprint not updated"
		}
		return ""
	})

	// Receiver deleted: the job reports it and keeps the Job on Intuned.
	if err := controllertest.Client().Delete(ctx, whr); err != nil {
		t.Fatal(err)
	}
	f.waitCondition("linked-job", intunedv1alpha1.ConditionSynced, metav1.ConditionFalse, intunedv1alpha1.ReasonReceiverNotFound)
}

// TestIntunedJobConvergesUnderFaults: 50 jobs with a trigger each converge
// while 30% of Intuned calls fail with 5xx or 429; every trigger value
// starts exactly one JobRun (failed trigger calls are verified, then resent).
func TestIntunedJobConvergesUnderFaults(t *testing.T) {
	f := newIJFixture(t, fixtureOptions{sim: intunedsim.Options{
		Faults: []intunedsim.FaultRule{
			{Match: "*", ErrorRate: 0.15, Status: 503},
			{Match: "*", ErrorRate: 0.15 / 0.85, Status: 429},
		},
	}, poll: 2 * time.Second})
	const n = 50
	for i := range n {
		f.create(f.newJob(fmt.Sprintf("faulty-job-%02d", i), func(j *intunedv1alpha1.IntunedJob) {
			j.Annotations = map[string]string{intunedv1alpha1.AnnotationTrigger: "first"}
		}))
	}
	f.eventually(3*time.Minute, func() string {
		var list intunedv1alpha1.IntunedJobList
		if err := controllertest.Client().List(context.Background(), &list, client.InNamespace(f.ns)); err != nil {
			return err.Error()
		}
		ready := 0
		for _, j := range list.Items {
			if c := meta.FindStatusCondition(j.Status.Conditions, intunedv1alpha1.ConditionReady); c != nil && c.Status == metav1.ConditionTrue &&
				j.Status.LastHandledTrigger == "first" && j.Status.LastTriggeredJobRunID != "" {
				ready++
			}
		}
		if ready < n {
			return fmt.Sprintf("%d of %d ready", ready, n)
		}
		return ""
	})
	f.sim.SetFaults(nil)
	for i := range n {
		id := fmt.Sprintf("faulty-job-%02d", i)
		runs := f.simRuns(id)
		if len(runs) != 1 || runs[0].ID != f.get(id).Status.LastTriggeredJobRunID {
			t.Errorf("%s: JobRuns %+v for one trigger value, want exactly the recorded one", id, runs)
		}
	}
	t.Logf("50 jobs converged under 30%% faults, one JobRun each; calls %v", f.sim.Calls())
}
