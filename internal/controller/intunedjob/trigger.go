package intunedjob

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/intuned-operator/intuned-operator/internal/controller/report"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/intuned"
)

// The trigger protocol: record intent → call → verify (see trigger).
const (
	// triggerVerifyDelay is how long a pending trigger waits after its claim
	// before a missing JobRun is taken to mean the call never reached
	// Intuned: a call that timed out may still be completing there.
	triggerVerifyDelay = 5 * time.Second
	// triggerClockSkew: lastTriggerTime is read from the operator's clock,
	// a JobRun's start_time from Intuned's. A run up to this much "before"
	// the claim still counts. The price: if two trigger values come within
	// this window and the second one's call is lost, the first one's run is
	// taken for it (that value is lost, never doubled).
	triggerClockSkew = 30 * time.Second
	// triggerRunsPage is how many of the newest JobRuns are searched for a
	// pending trigger's run; only runs since the claim can match.
	triggerRunsPage = 10
)

// trigger starts exactly one JobRun for each new value of the
// intuned.io/trigger annotation, crossplane-style: intent recorded, then
// verified.
//
//  1. Claim: status.lastHandledTrigger = value and lastTriggerTime = now are
//     persisted BEFORE the call, with optimistic locking, so a stale cached
//     object can never claim a value (or re-send it) twice.
//  2. Call TriggerJob once. Success records the JobRun id. A definite
//     refusal (400, 401, 404) clears lastTriggerTime: the value is handled,
//     not retried; the user sets a new one. Any other failure leaves the
//     trigger pending.
//  3. A pending trigger (claimed, no JobRun id, lastTriggerTime set: the
//     operator stopped during the call, or it failed ambiguously) is
//     verified on a later reconcile: a MANUAL JobRun started since the claim
//     is recorded as its run; only when none has appeared is it claimed and
//     called again.
func (x *executor) trigger(ctx context.Context) error {
	job := x.job
	want := job.Annotations[intunedv1alpha1.AnnotationTrigger]
	if err := writeTrigger(ctx, x.status, job, want, report.Now()); err != nil {
		return err // conflict: a newer object exists; retry reads it
	}

	id := job.EffectiveJobID()
	resp, err := x.api.TriggerJob(ctx, job.Spec.Project, id)
	switch {
	case err == nil:
		job.Status.LastTriggeredJobRunID = resp.JobRunID
		x.runStarted = true
		if job.Spec.Paused {
			x.r.event(job, "Normal", "TriggeredWhilePaused", "Trigger", fmt.Sprintf(
				"Triggered Job %s (trigger %q): JobRun %s; the Job is paused, so the run waits until it is resumed (spec.paused: false)",
				id, want, resp.JobRunID))
			return nil
		}
		x.r.event(job, "Normal", "Triggered", "Trigger", fmt.Sprintf("Triggered Job %s (trigger %q): JobRun %s", id, want, resp.JobRunID))
	case triggerRefused(err):
		if err := writeTrigger(ctx, x.status, job, want, nil); err != nil {
			return err // still pending: verified and sent again
		}
		x.r.event(job, "Warning", "TriggerFailed", "Trigger",
			fmt.Sprintf("Intuned refused trigger %q of Job %s; it will not be retried (set a new intuned.io/trigger value to try again): %v", want, id, err))
	default:
		x.r.event(job, "Warning", "TriggerUnknown", "Trigger",
			fmt.Sprintf("Outcome of trigger %q of Job %s is unknown; it will be verified and sent again only if no JobRun started: %v", want, id, err))
	}
	return nil
}

// writeTrigger sets the trigger fields of status (the handled value, no
// JobRun id, pending since at) and persists them at once, with optimistic
// locking, so a stale cached object can never claim a value twice.
func writeTrigger(ctx context.Context, status *report.StatusPatch, job *intunedv1alpha1.IntunedJob, value string, at *metav1.Time) error {
	job.Status.LastHandledTrigger = value
	job.Status.LastTriggeredJobRunID = ""
	job.Status.LastTriggerTime = at
	return status.Persist(ctx, job)
}

// triggerRefused reports whether Intuned answered the trigger with a
// definite client error (4xx other than 429): it certainly started nothing,
// and sending it again would fail the same way.
func triggerRefused(err error) bool {
	var apiErr *intuned.APIError
	return errors.As(err, &apiErr) && apiErr.StatusCode >= 400 && apiErr.StatusCode < 500 &&
		!intuned.IsRateLimited(err)
}

// findTriggeredRun looks for the JobRun of a pending trigger: the newest
// MANUAL JobRun that started at or after the trigger's claim (less
// triggerClockSkew). Found, it is recorded as the trigger's run.
func (x *executor) findTriggeredRun(ctx context.Context) error {
	job := x.job
	runs, err := x.api.ListJobRuns(ctx, job.Spec.Project, job.EffectiveJobID(),
		intuned.ListRunsOptions{PageSize: triggerRunsPage, SortBy: "start_time,desc"})
	if err != nil {
		return asTransient(err)
	}
	since := job.Status.LastTriggerTime.Add(-triggerClockSkew)
	for _, run := range runs.JobRuns {
		started := run.StartTime.Time
		if started.IsZero() {
			started = run.CreatedAt.Time
		}
		if run.Type == intuned.JobRunManual && !started.Before(since) {
			job.Status.LastTriggeredJobRunID = run.ID
			x.runStarted = true
			x.r.event(job, "Normal", "Triggered", "Trigger", fmt.Sprintf("Triggered Job %s (trigger %q): JobRun %s (recovered)",
				job.EffectiveJobID(), job.Status.LastHandledTrigger, run.ID))
			return nil
		}
	}
	return nil
}
