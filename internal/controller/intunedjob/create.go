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

// The create protocol: call → verify, with no write before the call. The
// fact "this object asked Intuned to create that Job" must survive a lost
// answer (timeout, 5xx, a restart of the operator), or the Job it made is
// one nobody may touch without spec.adopt. It used to be a status write
// (createRequestedAt) persisted before CreateJob: a second status write
// for every new job, on top of the one that reports the result, which the
// API server's floor (create + one status write) does not pay. The
// evidence is now what is durable anyway:
//
//   - the object's creationTimestamp: this object cannot have asked for a
//     Job before it existed;
//   - Intuned's created_at for the Job;
//   - the exact spec: the Job holds byte for byte what this object sends.
//
// So a Job found while status.managed is false is this object's own (a
// create whose answer was lost) only if Intuned created it at or after the
// object's creation (less createClockSkew) with exactly the spec. Anything
// else is someone else's Job: AlreadyExists until spec.adopt. A create is
// never sent twice for one Job: Intuned refuses a second Job with the id.
//
// What the evidence cannot tell apart, and the intent could only narrow:
// a Job with exactly this spec that someone else created after this object
// existed. The intent narrowed that window to "since the create request";
// it is now "since the object exists". Inside one cluster no other
// IntunedJob can create it (the later claimant stops with Conflict before
// any call); two clusters applying the same manifests to one workspace
// should give their IntunedJobs different spec.jobId, as they must anyway
// (each would otherwise delete the other's Job).
//
// A Job whose spec Intuned normalises at create cannot be told apart from
// someone else's by its content; it reports AlreadyExists (the safe side)
// and spec.adopt takes it over.

// createClockSkew: creationTimestamp is the API server's clock, a Job's
// created_at Intuned's (and is stored to the second).
const createClockSkew = 30 * time.Second

// create creates the Job on Intuned and reads it back: the create's answer
// has only the id, and status (nextRunTime, what Intuned made of the spec,
// shown in Synced's message) should be right when a user looks, not one
// poll interval later.
func (x *executor) create(ctx context.Context) error {
	job := x.job
	project, id := job.Spec.Project, job.EffectiveJobID()
	_, err := x.api.CreateJob(ctx, project, createRequest(id, x.desired))
	switch {
	case err == nil:
	case intuned.IsConflict(err):
		return report.Retryable(intunedv1alpha1.ReasonSyncFailed, "Job "+id+" appeared on Intuned while creating it; re-observing", err)
	case intuned.IsNotFound(err):
		return report.WaitFor(intunedv1alpha1.ReasonProjectNotFound, fmt.Sprintf(
			"project %s does not exist in workspace %s (deploy it on Intuned first)", project, job.Status.WorkspaceID))
	default:
		// An ambiguous answer (timeout, 5xx) may hide a Job Intuned did
		// create: the next reconcile finds it and claims it (see above).
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
