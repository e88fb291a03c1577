package intunedjob

import (
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/controller/report"
	"github.com/intuned-operator/intuned-operator/internal/intuned"
)

// A sync is read → plan → execute:
//
//   - read (controller.go): the object, its credentials and references, and
//     the Job on Intuned, into facts;
//   - plan (this file, pure): the next action, decided from the facts alone;
//   - execute (execute.go): the one path of every external call: persist
//     the intent, call Intuned, record the answer in the facts and status.
//
// The executor asks the planner again after every action, so each decision
// sees what the actions before it changed (a Job just created is read back
// before it is paused), and an action runs at most once per reconcile.
// "Why did the operator (not) write to Intuned?" is answered here, and the
// table test in plan_test.go answers it for every case without an API
// server.

// action is one step the executor can take.
type action string

const (
	actNone action = ""
	// actCreate creates the Job (and reads it back).
	actCreate action = "Create"
	// actClaimCreated takes over the Job this object's own create made
	// when its answer was lost (see create.go).
	actClaimCreated action = "ClaimCreated"
	// actAdopt takes over someone else's Job (spec.adopt).
	actAdopt action = "Adopt"
	// actUpdate writes the spec to the Job and reads it back.
	actUpdate action = "Update"
	actPause  action = "Pause"
	actResume action = "Resume"
	// actFindTriggeredRun looks for the JobRun of a trigger whose outcome
	// is unknown (see trigger.go).
	actFindTriggeredRun action = "FindTriggeredRun"
	// actTrigger records the trigger claim, then triggers a JobRun.
	actTrigger action = "Trigger"
	// actRefreshRun reads the newest JobRun into status.
	actRefreshRun action = "RefreshRun"
	// actDelete deletes the Job on Intuned (the object is being deleted).
	actDelete action = "Delete"
)

// facts are everything a decision depends on.
type facts struct {
	// job is the object: spec, the trigger annotation, and status (its
	// memory: ownership, intents, digests), as the actions so far left it.
	job *intunedv1alpha1.IntunedJob
	// desired is the Job the spec and its references ask for.
	desired intuned.UpdateJobRequest
	// digest is intuned.SpecDigest with the credentials' key.
	digest func(intuned.UpdateJobRequest) string
	// remote is the Job on Intuned as last read; nil: Intuned has none.
	remote *intuned.Job
	now    time.Time
	// done are the actions taken in this reconcile.
	done map[action]bool
	// runStarted: a JobRun was started, or a pending trigger's JobRun
	// found, in this reconcile.
	runStarted bool
	// knownNextRun and knownLastRun are the Job's run times as status
	// held them before this reconcile read the Job.
	knownNextRun, knownLastRun *metav1.Time
}

// syncPlan is the decision of the sync's first part: make Intuned hold the
// spec.
type syncPlan struct {
	next action
	// stop ends the sync with this failure: nothing else is done.
	stop *report.Failure
	// notice, when the sync is over, says Intuned holds the spec only as
	// far as it can (Synced=False); pausing, triggering and reading
	// JobRuns still go on.
	notice *report.Failure
	// remember is what status.lastApplied becomes when the Job was found
	// equal to the spec.
	remember *intunedv1alpha1.AppliedRecord
}

// planSync decides how to make the Job on Intuned hold the spec: create
// it, take it over, update it, or leave it (and why).
func planSync(f facts) syncPlan {
	job, st := f.job, &f.job.Status
	id, project := job.EffectiveJobID(), job.Spec.Project
	switch {
	case f.remote == nil:
		return syncPlan{next: actCreate}
	case !st.Managed && createdByThisObject(job, f.desired, f.remote):
		return syncPlan{next: actClaimCreated}
	case !st.Managed && job.Spec.Adopt:
		return syncPlan{next: actAdopt}
	case !st.Managed:
		return syncPlan{stop: report.WaitFor(intunedv1alpha1.ReasonAlreadyExists, fmt.Sprintf(
			"a Job %q already exists in project %s and was not created by this object; set spec.adopt: true to take it over (it will be overwritten with this spec)", id, project))}
	case f.done[actCreate]:
		// Whatever Intuned made of the create is its answer to this spec
		// (status.lastApplied records it).
		return syncPlan{}
	}

	// The update protocol: write only when a write can change something.
	// A real server may normalise fields in ways no document describes
	// (defaults, rounding, stripping), so "observed equals desired" is not
	// the only way to be in sync:
	//   - observed equals desired: in sync.
	//   - Neither the spec nor Intuned's answer changed since the last
	//     write (status.lastApplied digests): in sync as far as Intuned can
	//     hold the spec; writing again would get the same answer. A write
	//     that left Intuned's answer unchanged is tried once more, at the
	//     next poll (it may have raced another writer); after a second one
	//     the writes stop with ServerNormalises until the spec or the Job
	//     on Intuned changes.
	//   - Intuned refused the write because the Job is defined in code:
	//     not sent again until the spec or the Job on Intuned changes.
	//   - Otherwise write (once per reconcile), read back, and record.
	want, have := f.digest(f.desired), f.digest(f.remote.Spec())
	if inSync(f.desired, f.remote) {
		return syncPlan{remember: &intunedv1alpha1.AppliedRecord{SpecDigest: want, ServerDigest: have}}
	}
	last := st.LastApplied
	sameAnswer := last != nil && last.SpecDigest == want && last.ServerDigest == have
	switch {
	case sameAnswer && last.Refused == intunedv1alpha1.ReasonManagedInCode:
		return syncPlan{notice: managedInCode(id)}
	case sameAnswer && (last.UnchangedWrites != 1 || f.done[actUpdate]):
		return syncPlan{notice: normalisedNotice(id, last)}
	case f.done[actUpdate]:
		// Written in this reconcile and still different: the answer is
		// recorded; the next poll decides again.
		return syncPlan{}
	}
	return syncPlan{next: actUpdate}
}

// planFollowUp decides, once Intuned holds the spec, what else the spec
// asks for: the Job's state (spec.paused), a new trigger, and the newest
// JobRun in status. One action at a time; actNone when nothing is left.
func planFollowUp(f facts) action {
	job, st := f.job, &f.job.Status
	paused := f.remote.State == intuned.JobStatePaused
	switch {
	case job.Spec.Paused && !paused && !f.done[actPause]:
		return actPause
	case !job.Spec.Paused && paused && !f.done[actResume]:
		return actResume
	}
	if want := job.Annotations[intunedv1alpha1.AnnotationTrigger]; want != "" && !f.done[actTrigger] {
		switch {
		case want != st.LastHandledTrigger:
			return actTrigger
		case triggerPending(job) && !f.done[actFindTriggeredRun]:
			return actFindTriggeredRun
		case triggerPending(job) && f.now.Sub(st.LastTriggerTime.Time) >= triggerVerifyDelay:
			// No JobRun: the earlier call never reached Intuned. Send it
			// again. (Before the delay, nextPoll comes back for it.)
			return actTrigger
		}
	}
	if !f.done[actRefreshRun] && runsMayHaveChanged(f) {
		return actRefreshRun
	}
	return actNone
}

// runsMayHaveChanged reports whether the newest JobRun may differ from
// status.lastJobRun, so that listing JobRuns can tell something new. A
// Job created just now has no runs. Otherwise a JobRun that starts or ends
// moves the Job's run times (a scheduled run moves next_run_time when it
// starts, every run moves last_run_time when it ends), so while they did
// not move since status last saw them, the last JobRun known is over and
// no trigger of ours is unaccounted for, there is nothing new: a poll then costs one call (Get Job), and a
// restarted manager one per job. A run started outside the operator
// without a schedule (Intuned's dashboard) shows up when it ends.
func runsMayHaveChanged(f facts) bool {
	switch {
	case f.runStarted:
		return true
	case f.done[actCreate]:
		return false
	}
	st := &f.job.Status
	triggered := st.LastTriggeredJobRunID != "" && (st.LastJobRun == nil || st.LastJobRun.ID != st.LastTriggeredJobRunID)
	return runActive(st.LastJobRun) || triggerPending(f.job) || triggered ||
		!f.knownNextRun.Equal(metaTime(f.remote.NextRunTime.Ptr())) ||
		!f.knownLastRun.Equal(metaTime(f.remote.LastRunTime.Ptr()))
}

// planDeletion decides what an IntunedJob being deleted does to its Job on
// Intuned: delete it, unless deletionPolicy is Orphan, the Job is not this
// object's (AlreadyExists, Conflict), or spec.suspend forbids every call.
func planDeletion(job *intunedv1alpha1.IntunedJob) action {
	if job.Spec.DeletionPolicy != intunedv1alpha1.DeletionPolicyOrphan && job.Status.Managed && !job.Spec.Suspend {
		return actDelete
	}
	return actNone
}

// createdByThisObject reports whether observed can be the Job a create of
// this object asked for: created since the object exists, with exactly our
// spec (see create.go).
func createdByThisObject(job *intunedv1alpha1.IntunedJob, desired intuned.UpdateJobRequest, observed *intuned.Job) bool {
	return !observed.CreatedAt.IsZero() &&
		!observed.CreatedAt.Before(job.CreationTimestamp.Add(-createClockSkew)) && inSync(desired, observed)
}

// triggerPending reports whether the handled trigger's outcome is unknown.
func triggerPending(job *intunedv1alpha1.IntunedJob) bool {
	return job.Status.LastTriggerTime != nil && job.Status.LastTriggeredJobRunID == ""
}

// managedInCode is the condition of a Job defined in code: Intuned refuses
// updates and deletion through the API, everything else still works.
func managedInCode(id string) *report.Failure {
	return report.Stalled(intunedv1alpha1.ReasonManagedInCode, "Job "+id+
		" is defined in code on Intuned (origin CODE): Intuned refuses to update or delete it through the API, so the operator does not write it; it still observes, pauses/resumes and triggers it. Change it in the project's job files, or delete this IntunedJob with deletionPolicy: Orphan")
}

// normalisedNotice is the condition for a Job Intuned holds differently
// from the spec: nil while that is merely a normalisation Intuned applied
// to a write it accepted (syncedMessage names the fields), Synced=False
// while writes stop changing anything.
func normalisedNotice(id string, rec *intunedv1alpha1.AppliedRecord) *report.Failure {
	fields := intuned.FormatPaths(rec.NormalisedFields, 5)
	switch {
	case len(rec.NormalisedFields) == 0 || rec.UnchangedWrites == 0:
		return nil
	case rec.UnchangedWrites == 1:
		return report.WaitFor(intunedv1alpha1.ReasonServerNormalises, fmt.Sprintf(
			"writing Job %s did not change %s on Intuned; writing once more at the next poll to rule out a race", id, fields))
	}
	return report.Stalled(intunedv1alpha1.ReasonServerNormalises, fmt.Sprintf(
		"Intuned rewrites %s of Job %s: %d writes in a row changed nothing, so the operator stops writing until the spec or the Job on Intuned changes. Set these fields in the spec to the values Intuned holds (kubectl get ij -o yaml shows status.lastApplied)",
		fields, id, rec.UnchangedWrites))
}

// appliedAfterUpdate is what status.lastApplied becomes after desired was
// written over a Job whose spec digest was have and Intuned then returned
// after. A write that changed nothing on Intuned counts towards
// ServerNormalises, unless it was the first write after this object's own
// create (whose answer was never seen: lastApplied has no server digest).
func appliedAfterUpdate(key string, last *intunedv1alpha1.AppliedRecord, have string, desired intuned.UpdateJobRequest, after *intuned.Job) *intunedv1alpha1.AppliedRecord {
	rec := appliedRecord(key, desired, after)
	want := rec.SpecDigest
	justCreated := last != nil && last.SpecDigest == want && last.ServerDigest == "" && last.Refused == ""
	if len(rec.NormalisedFields) > 0 && rec.ServerDigest == have && !justCreated {
		rec.UnchangedWrites = 1
		if last != nil && last.SpecDigest == want && last.ServerDigest == have && last.UnchangedWrites > 0 {
			rec.UnchangedWrites = last.UnchangedWrites + 1
		}
	}
	return rec
}

// appliedRecord describes desired as written and after as Intuned then
// returned it.
func appliedRecord(key string, desired intuned.UpdateJobRequest, after *intuned.Job) *intunedv1alpha1.AppliedRecord {
	return &intunedv1alpha1.AppliedRecord{
		SpecDigest:       intuned.SpecDigest(key, desired),
		ServerDigest:     intuned.SpecDigest(key, after.Spec()),
		NormalisedFields: intuned.SpecDiff(desired, after.Spec()),
	}
}
