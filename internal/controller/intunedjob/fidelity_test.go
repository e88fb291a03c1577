package intunedjob

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/intuned-operator/intuned-operator/internal/controller/controllertest"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/intuned"
	"github.com/intuned-operator/intuned-operator/internal/intunedsim"
)

// TestIntunedJobServerNormalises: a server that rewrites a field on every
// write never makes the operator write on every poll.
//
//   - A field rewritten when the Job is created costs one update at the
//     first poll (drift and normalisation look alike until then); Intuned's
//     answer is then remembered (status.lastApplied): the same answer for
//     the same spec is in sync, and polls make no writes.
//   - When writes stop changing anything (here: the Job was changed on
//     Intuned to exactly what the server normalises to), the operator
//     writes twice, then reports Synced=False, reason ServerNormalises,
//     with the field path, and makes no more writes.
//   - A spec change that matches what Intuned holds ends it.
func TestIntunedJobServerNormalises(t *testing.T) {
	rule, err := intunedsim.ParseNormaliseRule("configuration.requestTimeout=300")
	if err != nil {
		t.Fatal(err)
	}
	f := newIJFixture(t, fixtureOptions{sim: intunedsim.Options{Normalise: []intunedsim.NormaliseRule{rule}}})
	f.create(f.newJob("normalised-at-create"))
	f.waitReady("normalised-at-create")
	j := f.waitApplied("normalised-at-create")
	if a := j.Status.LastApplied; !slices.Equal(a.NormalisedFields, []string{"configuration.requestTimeout"}) || a.UnchangedWrites != 0 {
		t.Fatalf("status.lastApplied = %+v", a)
	}
	f.sim.ResetCalls()
	f.waitPolls(4)
	if w := f.sim.WriteCalls(); w != 0 {
		t.Fatalf("%d writes at rest (%v), want 0", w, f.sim.Calls())
	}
	c := j.Status.Conditions[slices.IndexFunc(j.Status.Conditions, func(c metav1.Condition) bool { return c.Type == intunedv1alpha1.ConditionSynced })]
	if !strings.Contains(c.Message, "configuration.requestTimeout") {
		t.Errorf("Synced message does not explain the rewritten field: %q", c.Message)
	}

	// The Job changes on Intuned to the normalised value itself: desired
	// differs from it, but no write can change it.
	f.sim.SetNormalise(nil)
	f.create(f.newJob("unchanged-by-writes"))
	f.waitReady("unchanged-by-writes")
	f.waitApplied("unchanged-by-writes") // the create's answer is known
	f.sim.SetNormalise([]intunedsim.NormaliseRule{rule})
	f.drift("unchanged-by-writes", "modify", `{"configuration":{"requestTimeout":300}}`)
	j = f.waitCondition("unchanged-by-writes", intunedv1alpha1.ConditionSynced, metav1.ConditionFalse, intunedv1alpha1.ReasonServerNormalises)
	f.waitCondition("unchanged-by-writes", intunedv1alpha1.ConditionStalled, metav1.ConditionTrue, intunedv1alpha1.ReasonServerNormalises)
	j = f.get("unchanged-by-writes")
	if a := j.Status.LastApplied; a == nil || a.UnchangedWrites != 2 || !slices.Equal(a.NormalisedFields, []string{"configuration.requestTimeout"}) {
		t.Fatalf("status.lastApplied = %+v", a)
	}
	if n := f.callCount("PUT", "/jobs/{jobId}"); n != 2 {
		t.Errorf("%d updates, want exactly 2 (one retry to rule out a race)", n)
	}
	f.sim.ResetCalls()
	f.waitPolls(4)
	if w := f.sim.WriteCalls(); w != 0 {
		t.Fatalf("%d writes after ServerNormalises (%v), want 0", w, f.sim.Calls())
	}

	// Spec set to what Intuned holds: in sync, without a write.
	f.update("unchanged-by-writes", func(j *intunedv1alpha1.IntunedJob) {
		j.Spec.Configuration.RequestTimeout = int32p(300)
	})
	f.waitReady("unchanged-by-writes")
	if w := f.sim.WriteCalls(); w != 0 {
		t.Errorf("%d writes for a spec equal to Intuned's Job", w)
	}
}

// TestIntunedJobRunOutcomes: every JobRun status the SDK knows, with its
// reason and error, reaches status.lastJobRun; a run that ends FAILURE or
// CANCELED gets one Warning Event carrying Intuned's message verbatim (a %
// in it is not a format verb).
func TestIntunedJobRunOutcomes(t *testing.T) {
	blocked := func(ctx context.Context, _ intunedsim.RunContext) intunedsim.RunResult {
		<-ctx.Done() // runs until the test forces an end
		return intunedsim.RunResult{Error: &intunedsim.RunError{Code: "job-run-terminated", Message: "stopped"}}
	}
	f := newIJFixture(t, fixtureOptions{sim: intunedsim.Options{Handlers: map[string]intunedsim.APIHandler{"list": blocked}}})
	f.create(f.newJob("run-outcomes"))
	f.waitReady("run-outcomes")
	f.setTrigger("run-outcomes", "1")
	runID := f.waitTriggerRecorded("run-outcomes", "1").Status.LastTriggeredJobRunID

	type reason = struct{ Type, Message string }
	type runErr = struct{ Code, Category, Message string }
	steps := []struct {
		status  string
		reason  *reason
		err     *runErr
		code    string
		message string
	}{
		{status: "PAUSING", reason: &reason{"user-request", "paused by user"}, message: "user-request: paused by user"},
		{status: "PAUSED", reason: &reason{"auth-session-invalid-mid-job", "session expired"}, message: "auth-session-invalid-mid-job: session expired"},
		{status: "RESUMING"},
		{status: "CANCELED", reason: &reason{"auth-session-validate-dependency-failed", "check failed 100%d of %s"}, message: "auth-session-validate-dependency-failed: check failed 100%d of %s"},
		{status: "FAILURE", err: &runErr{"insufficient-resource-credits", "billing", "credits at 100% used"}, code: "insufficient-resource-credits", message: "insufficient-resource-credits: credits at 100% used"},
		{status: "SUCCESS"},
		{status: "COMPLETED"},
		{status: "TERMINATED", reason: &reason{"terminated", "terminated by user"}, message: "terminated: terminated by user"},
	}
	prevTerminal := false
	for _, st := range steps {
		// An end moves the Job's last_run_time, which is how a poll
		// knows to read the JobRun again; status holds it to the second.
		// Real runs never go from one terminal state to another: here
		// the next end is made to fall in a later second.
		if prevTerminal {
			time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second)))
		}
		prevTerminal = intuned.JobRunStatus(st.status).Terminal()
		var s intunedsim.JobRunState
		s.Status = st.status
		if st.reason != nil {
			s.Reason = &struct {
				Type    string `json:"type"`
				Message string `json:"message"`
			}{st.reason.Type, st.reason.Message}
		}
		if st.err != nil {
			s.Error = &struct {
				Code     string `json:"code"`
				Category string `json:"category"`
				Message  string `json:"message"`
			}{st.err.Code, st.err.Category, st.err.Message}
		}
		if err := f.sim.SetJobRunState(runID, s); err != nil {
			t.Fatal(err)
		}
		f.eventually(20*time.Second, func() string {
			r := f.get("run-outcomes").Status.LastJobRun
			wantReason := ""
			if st.reason != nil {
				wantReason = st.reason.Type
			}
			if r == nil || r.ID != runID || r.Status != st.status || r.Reason != wantReason || r.ErrorCode != st.code || r.Message != st.message {
				return fmt.Sprintf("lastJobRun %+v, want status %s reason %q code %q message %q", r, st.status, wantReason, st.code, st.message)
			}
			return ""
		})
	}
	var failed []string
	for _, e := range f.events("run-outcomes") {
		if strings.HasPrefix(e, "JobRunFailed:") {
			failed = append(failed, e)
		}
	}
	want := []string{
		"JobRunFailed: JobRun " + runID + " of Job run-outcomes ended CANCELED (0 of 1 payloads failed): auth-session-validate-dependency-failed: check failed 100%d of %s",
		"JobRunFailed: JobRun " + runID + " of Job run-outcomes ended FAILURE (0 of 1 payloads failed): insufficient-resource-credits: credits at 100% used",
	}
	slices.Sort(failed)
	if !slices.Equal(failed, want) {
		t.Errorf("JobRunFailed events\n got %q\nwant %q", failed, want)
	}
	if err := f.sim.SetJobRunState(runID, intunedsim.JobRunState{Status: "RUNNING"}); err == nil {
		t.Error("the simulator accepted a status the SDK does not know")
	}
}

// TestIntunedJobDetailWithoutPayload: Get Job may leave payload out (it is
// optional in the SDK's schema); the controller reads it from Get Jobs and
// makes no write at rest.
func TestIntunedJobDetailWithoutPayload(t *testing.T) {
	f := newIJFixture(t, fixtureOptions{sim: intunedsim.Options{OmitDetailPayload: true}})
	f.create(f.newJob("no-detail-payload"))
	f.waitReady("no-detail-payload")
	j := f.waitApplied("no-detail-payload")
	if a := j.Status.LastApplied; len(a.NormalisedFields) != 0 {
		t.Errorf("status.lastApplied = %+v, want no normalised fields", a)
	}
	f.sim.ResetCalls()
	f.waitPolls(3)
	if w := f.sim.WriteCalls(); w != 0 {
		t.Fatalf("%d writes at rest (%v), want 0", w, f.sim.Calls())
	}
}

// TestIntunedJobManagedInCode: a Job defined in code (origin CODE) refuses
// update and delete through the API. The controller reports Synced=False,
// reason ManagedInCode, sends the refused update once per spec change (no
// loop), still pauses and triggers the Job, and deletion with
// deletionPolicy Delete ends with a DeleteRefused Event instead of hanging.
func TestIntunedJobManagedInCode(t *testing.T) {
	f := newIJFixture(t, fixtureOptions{})
	const name = "code-defined-job"
	f.create(f.newJob(name))
	f.waitReady(name)
	f.drift(name, "code", "")

	f.update(name, func(j *intunedv1alpha1.IntunedJob) {
		j.Spec.Configuration.MaxConcurrentRequests = int32p(2)
	})
	f.waitCondition(name, intunedv1alpha1.ConditionSynced, metav1.ConditionFalse, intunedv1alpha1.ReasonManagedInCode)
	f.waitCondition(name, intunedv1alpha1.ConditionStalled, metav1.ConditionTrue, intunedv1alpha1.ReasonManagedInCode)
	f.waitPolls(3)
	if n := f.callCount("PUT", "/jobs/{jobId}"); n != 1 {
		t.Fatalf("%d updates sent to a Job defined in code, want 1 (no retry loop)", n)
	}

	// What the API allows still works.
	f.update(name, func(j *intunedv1alpha1.IntunedJob) { j.Spec.Paused = true })
	f.eventually(20*time.Second, func() string {
		if j := f.simJob(name); j.State != "PAUSED" {
			return "not paused on Intuned: " + string(j.State)
		}
		return ""
	})
	f.setTrigger(name, "run-1")
	f.waitTriggerRecorded(name, "run-1")
	f.waitCondition(name, intunedv1alpha1.ConditionSynced, metav1.ConditionFalse, intunedv1alpha1.ReasonManagedInCode)
	if n := f.callCount("PUT", "/jobs/{jobId}"); n != 1 {
		t.Errorf("%d updates, want still 1: pausing and triggering change nothing Intuned refuses", n)
	}

	if err := controllertest.Client().Delete(context.Background(), f.get(name)); err != nil {
		t.Fatal(err)
	}
	f.eventually(20*time.Second, func() string {
		err := controllertest.Client().Get(context.Background(), types.NamespacedName{Namespace: f.ns, Name: name}, &intunedv1alpha1.IntunedJob{})
		if !apierrors.IsNotFound(err) {
			return "object still exists"
		}
		return ""
	})
	if f.simJob(name) == nil {
		t.Error("a Job defined in code was deleted")
	}
	if !f.hasEvent(name, "DeleteRefused") {
		t.Errorf("no DeleteRefused event: %v", f.events(name))
	}
}

// TestIntunedJobStepNeedsEnd: Intuned's schedule API holds a step only in
// {start, step, end}; the CRD refuses a step without end with a message
// that says what to do, for numbers, days and months.
func TestIntunedJobStepNeedsEnd(t *testing.T) {
	ns := controllertest.NewNamespace(t)
	tests := []struct {
		name string
		cal  intunedv1alpha1.ScheduleCalendar
		ok   bool
	}{
		{"minute-step-no-end", intunedv1alpha1.ScheduleCalendar{Minute: []intunedv1alpha1.CalendarRange{{Start: 0, Step: int32p(15)}}}, false},
		{"day-step-no-end", intunedv1alpha1.ScheduleCalendar{DayOfWeek: []intunedv1alpha1.DayOfWeekRange{{Start: "MONDAY", Step: int32p(2)}}}, false},
		{"month-step-no-end", intunedv1alpha1.ScheduleCalendar{Month: []intunedv1alpha1.MonthRange{{Start: "JANUARY", Step: int32p(3)}}}, false},
		{"minute-step-with-end", intunedv1alpha1.ScheduleCalendar{Minute: []intunedv1alpha1.CalendarRange{{Start: 0, End: int32p(45), Step: int32p(15)}}}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			j := &intunedv1alpha1.IntunedJob{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: tc.name},
				Spec: intunedv1alpha1.IntunedJobSpec{
					Project:  testProject,
					Suspend:  true, // only admission matters here
					Payload:  []intunedv1alpha1.JobPayload{{APIName: "list"}},
					Schedule: &intunedv1alpha1.JobSchedule{Calendars: []intunedv1alpha1.ScheduleCalendar{tc.cal}},
				},
			}
			err := controllertest.Client().Create(context.Background(), j)
			if tc.ok {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), "step needs end") {
				t.Fatalf("want a refusal saying step needs end, got %v", err)
			}
		})
	}
}

// waitApplied waits until status.lastApplied holds Intuned's answer (after
// a create it is read at the next poll) and returns the job.
func (f *ijFixture) waitApplied(name string) *intunedv1alpha1.IntunedJob {
	f.t.Helper()
	var j *intunedv1alpha1.IntunedJob
	f.eventually(20*time.Second, func() string {
		j = f.get(name)
		if a := j.Status.LastApplied; a == nil || a.ServerDigest == "" {
			return fmt.Sprintf("%s: Intuned's answer not recorded yet: %+v", name, a)
		}
		return ""
	})
	return j
}
