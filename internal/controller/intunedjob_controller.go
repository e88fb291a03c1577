package controller

import (
	"context"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
)

// IntunedJobReconciler reconciles IntunedJob objects with Jobs on Intuned.
// Placeholder: it only records observedGeneration until the real controller lands.
type IntunedJobReconciler struct {
	client.Client
	Scheme *runtime.Scheme
	// DefaultCredentials names the manager-wide credentials Secret used when
	// an IntunedJob has no spec.credentialsRef (empty Name: none).
	DefaultCredentials types.NamespacedName
}

// Reconcile reads the IntunedJob and records the observed generation.
func (r *IntunedJobReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	log := logf.FromContext(ctx)
	var job intunedv1alpha1.IntunedJob
	if err := r.Get(ctx, req.NamespacedName, &job); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if job.Status.ObservedGeneration == job.Generation {
		return ctrl.Result{}, nil
	}
	patch := client.MergeFrom(job.DeepCopy())
	job.Status.ObservedGeneration = job.Generation
	job.Status.JobID = job.EffectiveJobID()
	if err := r.Status().Patch(ctx, &job, patch); err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, err
	}
	log.V(1).Info("observed IntunedJob", "jobId", job.Status.JobID)
	return ctrl.Result{}, nil
}

// SetupWithManager registers the reconciler with the manager.
func (r *IntunedJobReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&intunedv1alpha1.IntunedJob{}).
		Named("intunedjob").
		Complete(r)
}
