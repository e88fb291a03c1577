package controller

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/intuned"
)

// finalize runs when the object is being deleted: with deletionPolicy
// Delete it deletes the Job on Intuned (a 404 counts as done), then removes
// the finalizer. Jobs this object does not manage (AlreadyExists, Conflict)
// and suspended objects are never touched.
func (r *IntunedJobReconciler) finalize(ctx context.Context, job *intunedv1alpha1.IntunedJob) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(job, intunedv1alpha1.Finalizer) {
		return ctrl.Result{}, nil
	}
	id := job.EffectiveJobID()
	if job.Spec.DeletionPolicy != intunedv1alpha1.DeletionPolicyOrphan && job.Status.Managed && !job.Spec.Suspend {
		creds, err := r.credentials(ctx, job)
		if err != nil {
			// Without credentials the Job cannot be deleted; do not block
			// the object (a namespace deletion removes the Secret too).
			r.event(job, "Warning", "DeleteSkipped", "Delete",
				fmt.Sprintf("Job %s was left on Intuned: %v", id, err))
		} else {
			api, err := r.apiFor(creds)
			if err != nil {
				return ctrl.Result{}, err
			}
			switch err := api.DeleteJob(ctx, job.Spec.Project, id); {
			case err == nil || intuned.IsNotFound(err):
				r.event(job, "Normal", "Deleted", "Delete", fmt.Sprintf("Deleted Job %s on Intuned", id))
			case intuned.IsManagedInCode(err):
				// No retry can delete it: say so and let the object go.
				r.event(job, "Warning", "DeleteRefused", "Delete", "Job "+id+
					" was left on Intuned: it is defined in code (origin CODE) and Intuned refuses to delete it through the API; remove it from the project's job files and deploy. Intuned said: "+apiMessage(err))
			default:
				msg := fmt.Sprintf("Deleting Job %s on Intuned failed: %v", id, err)
				r.event(job, "Warning", intunedv1alpha1.ReasonSyncFailed, "Delete", msg)
				// Say why the object stays (kstatus reads any deleting
				// object as InProgress).
				status := startStatusPatch(r.Client, job)
				reportProgress(&job.Status.Conditions, job.Generation, intunedv1alpha1.ReasonDeleting, msg+"; retrying before the finalizer is removed")
				var perr error
				status.finish(ctx, job, &perr)
				if d := intuned.RetryAfter(err); d > 0 {
					return ctrl.Result{RequeueAfter: afterRetryAfter(d)}, nil
				}
				return ctrl.Result{}, err
			}
		}
	}
	controllerutil.RemoveFinalizer(job, intunedv1alpha1.Finalizer)
	if err := r.Update(ctx, job); err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, err
	}
	return ctrl.Result{}, nil
}
