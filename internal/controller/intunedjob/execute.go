package intunedjob

import (
	"context"
	"fmt"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/controller/report"
	"github.com/intuned-operator/intuned-operator/internal/intuned"
)

// executor carries out the planner's actions for one reconcile. Every call
// to Intuned that changes something goes through execute: an intent that
// must outlive the process and has no durable evidence otherwise is
// persisted first (trigger; a create's evidence is the object's creation,
// see create.go), then Intuned is called, then its answer is recorded in the facts (so the next
// decision sees it), in status, and in an Event.
type executor struct {
	facts
	r      *Reconciler
	api    intuned.API
	status *report.StatusPatch
	// key is the credentials' API key: the digests in status.lastApplied
	// are keyed with it, so they reveal nothing of the spec.
	key string
	// created: Intuned accepted this reconcile's create, so it holds the
	// spec even if reading the Job back failed.
	created bool
}

// execute takes one action and marks it done.
func (x *executor) execute(ctx context.Context, a action) error {
	x.done[a] = true
	switch a {
	case actCreate:
		return x.create(ctx)
	case actClaimCreated, actAdopt:
		x.claim(a)
		return nil
	case actUpdate:
		return x.update(ctx)
	case actPause:
		return x.pause(ctx)
	case actResume:
		return x.resume(ctx)
	case actFindTriggeredRun:
		return x.findTriggeredRun(ctx)
	case actTrigger:
		return x.trigger(ctx)
	case actRefreshRun:
		return x.refreshLastRun(ctx)
	case actDelete:
		return x.delete(ctx)
	}
	return fmt.Errorf("unknown action %q", a)
}

// claim makes the Job on Intuned this object's: the one its own lost
// create made, or someone else's that spec.adopt takes over.
func (x *executor) claim(a action) {
	job := x.job
	id, project := job.EffectiveJobID(), job.Spec.Project
	if a == actClaimCreated {
		x.r.event(job, "Normal", "Created", "Create", fmt.Sprintf(
			"Created Job %s in project %s on Intuned (the answer to the create was lost: the Job was created after this object, with exactly its spec)", id, project))
	} else {
		x.r.event(job, "Normal", "Adopted", "Adopt", fmt.Sprintf("Took over the existing Job %s on Intuned", id))
	}
	job.Status.Managed = true
}

// pause pauses the Job on Intuned.
func (x *executor) pause(ctx context.Context) error {
	job := x.job
	id := job.EffectiveJobID()
	if err := x.api.PauseJob(ctx, job.Spec.Project, id); err != nil {
		return asTransient(err)
	}
	x.r.event(job, "Normal", "Paused", "Pause", fmt.Sprintf("Paused Job %s on Intuned", id))
	paused := *x.remote
	paused.State = intuned.JobStatePaused
	paused.NextRunTime = nil
	x.remote = &paused
	observeJob(job, x.remote)
	return nil
}

// resume resumes the Job on Intuned and reads it back: Intuned computes
// the next run anew on resume.
func (x *executor) resume(ctx context.Context) error {
	job := x.job
	project, id := job.Spec.Project, job.EffectiveJobID()
	if err := x.api.ResumeJob(ctx, project, id); err != nil {
		return asTransient(err)
	}
	x.r.event(job, "Normal", "Resumed", "Resume", fmt.Sprintf("Resumed Job %s on Intuned", id))
	job.Status.JobState = intunedv1alpha1.JobStateActive
	after, err := getJob(ctx, x.api, project, id)
	if err != nil {
		return asTransient(err)
	}
	x.remote = after
	observeJob(job, after)
	return nil
}

// refreshLastRun reads the newest JobRun into status.lastJobRun.
func (x *executor) refreshLastRun(ctx context.Context) error {
	job := x.job
	runs, err := x.api.ListJobRuns(ctx, job.Spec.Project, job.EffectiveJobID(),
		intuned.ListRunsOptions{PageSize: 1, SortBy: "start_time,desc"})
	if err != nil {
		return asTransient(err)
	}
	if len(runs.JobRuns) == 0 {
		job.Status.LastJobRun = nil
		return nil
	}
	prev := job.Status.LastJobRun
	job.Status.LastJobRun = runSummary(runs.JobRuns[0])
	x.r.reportRunEnd(job, prev, runs.JobRuns[0])
	return nil
}
