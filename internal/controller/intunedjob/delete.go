package intunedjob

import (
	"context"
	"fmt"
	"time"

	"github.com/intuned-operator/intuned-operator/internal/controller/report"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/intuned"
)

// blockedDeletionRetry bounds the wait between attempts of a deletion that
// waits for a human (credentials missing or rejected); the Secret watch
// usually brings the next attempt sooner.
const blockedDeletionRetry = 5 * time.Minute

// finalize runs when the object is being deleted: with deletionPolicy
// Delete it deletes the Job on Intuned (a 404 counts as done), then removes
// the finalizer. Jobs this object does not manage (AlreadyExists, Conflict)
// and suspended objects are never touched.
//
// The object is never let go while its Job may still run on Intuned:
// without credentials, or when Intuned refuses them or fails, it stays,
// with Ready=False reason DeletionBlocked and a Warning Event that say what
// is missing and how to force it (deletionPolicy: Orphan). The one
// exception is a Job defined in code, which no API call can delete.
func (r *Reconciler) finalize(ctx context.Context, job *intunedv1alpha1.IntunedJob) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(job, intunedv1alpha1.Finalizer) {
		return ctrl.Result{}, nil
	}
	if planDeletion(job) == actDelete {
		if err := r.deleteOnIntuned(ctx, job); err != nil {
			return r.reportDeletionBlocked(ctx, job, err)
		}
	}
	controllerutil.RemoveFinalizer(job, intunedv1alpha1.Finalizer)
	if err := r.Update(ctx, job); err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, err
	}
	forgetJobMetrics(job)
	return ctrl.Result{}, nil
}

// deleteOnIntuned reads the credentials and has the executor delete the
// Job on Intuned.
func (r *Reconciler) deleteOnIntuned(ctx context.Context, job *intunedv1alpha1.IntunedJob) error {
	creds, err := r.credentials(ctx, job)
	if err != nil {
		return err
	}
	api, err := r.apiFor(creds)
	if err != nil {
		return err
	}
	x := &executor{r: r, api: api, facts: facts{job: job, done: map[action]bool{}}}
	return x.execute(ctx, actDelete)
}

// delete deletes the Job on Intuned; nil means it is gone (or can never be
// deleted through the API, which an Event says).
func (x *executor) delete(ctx context.Context) error {
	job := x.job
	id := job.EffectiveJobID()
	switch err := x.api.DeleteJob(ctx, job.Spec.Project, id); {
	case err == nil || intuned.IsNotFound(err):
		x.r.event(job, "Normal", "Deleted", "Delete", fmt.Sprintf("Deleted Job %s on Intuned", id))
		return nil
	case intuned.IsManagedInCode(err):
		// No retry can delete it: say so and let the object go.
		x.r.event(job, "Warning", "DeleteRefused", "Delete", "Job "+id+
			" was left on Intuned: it is defined in code (origin CODE) and Intuned refuses to delete it through the API; remove it from the project's job files and deploy. Intuned said: "+apiMessage(err))
		return nil
	default:
		return err
	}
}

// reportDeletionBlocked keeps the object, says why in its conditions and
// an Event, and schedules the next attempt.
func (r *Reconciler) reportDeletionBlocked(ctx context.Context, job *intunedv1alpha1.IntunedJob, err error) (ctrl.Result, error) {
	f := r.failureOf(job, err)
	blocked := deletionBlocked(job, f)
	r.event(job, "Warning", intunedv1alpha1.ReasonDeletionBlocked, "Delete", blocked.Message)

	status := report.StartStatusPatch(r.Client, job)
	report.Failed(&job.Status.Conditions, job.Generation, blocked)
	var patchErr error
	status.Finish(ctx, job, &patchErr)
	if patchErr != nil {
		return ctrl.Result{}, patchErr
	}
	return report.Result(f, min(r.pollInterval(job), blockedDeletionRetry))
}

// deletionBlocked is the condition of a deletion that failed with f: what
// is missing, and how to force it. One that waits for a human is Stalled:
// nothing happens until they act.
func deletionBlocked(job *intunedv1alpha1.IntunedJob, f *report.Failure) *report.Failure {
	msg := fmt.Sprintf("Job %s is still on Intuned and this object is kept until it is deleted there: %s. "+
		"Fix that and deletion continues; or leave the Job on Intuned and let this object go: "+
		`kubectl patch intunedjob %s -n %s --type merge -p '{"spec":{"deletionPolicy":"Orphan"}}'`,
		job.EffectiveJobID(), f.Message, job.Name, job.Namespace)
	blocked := &report.Failure{Kind: f.Kind, Reason: intunedv1alpha1.ReasonDeletionBlocked, Message: msg}
	if f.Kind == report.NeedsUser {
		blocked.Kind = report.Terminal
	}
	return blocked
}
