package intunedjob

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/intuned-operator/intuned-operator/internal/controller/report"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/intuned"
)

// The create protocol: record intent → call → verify. The fact "this object
// asked Intuned to create that Job" must outlive the process, or a create
// whose answer is lost (timeout, 5xx, a restart of the operator) leaves a
// Job nobody may touch without spec.adopt.
//
//  1. Record: status.createRequestedAt = now is persisted, with optimistic
//     locking, BEFORE CreateJob (with Reconciling=True: kstatus shows the
//     object InProgress while the answer is outstanding).
//  2. Call CreateJob once. Success, or a definite refusal, clears the
//     intent. A 409 means someone else's Job appeared since we looked:
//     the intent is cleared so it is never taken for ours.
//  3. Verify (planSync's actClaimCreated, on a later reconcile): a Job found while the
//     intent is set is ours only if Intuned created it at or after the
//     intent (less createClockSkew) and it holds exactly the spec we send.
//     Anything else is someone else's Job: AlreadyExists until spec.adopt.
//
// A Job whose spec Intuned normalises at create cannot be told apart from
// someone else's by its content; it reports AlreadyExists (the safe side)
// and spec.adopt takes it over.

// createClockSkew: createRequestedAt is read from the operator's clock, a
// Job's created_at from Intuned's (and is stored to the second).
const createClockSkew = 30 * time.Second

// create creates the Job on Intuned (steps 1 and 2) and reads it back: the
// create's answer has only the id, and status (nextRunTime, what Intuned
// made of the spec) should be right when a user looks, not one poll
// interval later.
func (x *executor) create(ctx context.Context) error {
	job := x.job
	project, id := job.Spec.Project, job.EffectiveJobID()
	job.Status.CreateRequestedAt = report.Now()
	report.Progress(&job.Status.Conditions, job.Generation, intunedv1alpha1.ReasonProgressing,
		"creating Job "+id+" in project "+project+" on Intuned")
	if err := x.status.Persist(ctx, job); err != nil {
		return err // conflict: a newer object exists; the retry reads it
	}

	_, err := x.api.CreateJob(ctx, project, createRequest(id, x.desired))
	if err == nil || !intuned.IsAmbiguous(err) {
		job.Status.CreateRequestedAt = nil // the answer is known
	}
	switch {
	case err == nil:
	case intuned.IsConflict(err):
		return report.Retryable(intunedv1alpha1.ReasonSyncFailed, "Job "+id+" appeared on Intuned while creating it; re-observing", err)
	case intuned.IsNotFound(err):
		return report.WaitFor(intunedv1alpha1.ReasonProjectNotFound, fmt.Sprintf(
			"project %s does not exist in workspace %s (deploy it on Intuned first)", project, job.Status.WorkspaceID))
	default:
		return intunedWriteError(err)
	}
	verb := "Created"
	if job.Status.Managed {
		verb = "Recreated" // deleted on Intuned behind our back
	}
	x.r.event(job, "Normal", verb, "Create", fmt.Sprintf("%s Job %s in project %s on Intuned", verb, id, project))
	x.created = true
	job.Status.Managed = true
	job.Status.JobState = intunedv1alpha1.JobStateActive
	// Nothing observed of an earlier Job (deleted behind our back) is
	// true of this one.
	job.Status.NextRunTime, job.Status.LastRunTime, job.Status.LastJobRun = nil, nil, nil
	// An empty ServerDigest marks Intuned's answer as not seen yet (see
	// appliedAfterUpdate), until the read-back records it.
	job.Status.LastApplied = &intunedv1alpha1.AppliedRecord{SpecDigest: x.digest(x.desired)}

	after, err := getJob(ctx, x.api, project, id)
	if err != nil {
		return asTransient(err)
	}
	job.Status.LastApplied = appliedRecord(x.key, x.desired, after)
	x.remote = after
	return nil
}

// intunedWriteError maps an error from CreateJob/UpdateJob: 400 means
// Intuned's validation refused the spec, which no retry fixes.
func intunedWriteError(err error) error {
	if intuned.IsBadRequest(err) && !intuned.IsConflict(err) {
		var apiErr *intuned.APIError
		msg := err.Error()
		if errors.As(err, &apiErr) && apiErr.Message != "" {
			msg = apiErr.Message
		}
		return report.Stalled(intunedv1alpha1.ReasonInvalidSpec, "Intuned rejected the Job: "+msg)
	}
	return err
}
