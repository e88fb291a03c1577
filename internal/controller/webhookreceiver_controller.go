package controller

import (
	"context"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
)

// WebhookReceiverReconciler deploys receiver workloads for WebhookReceiver objects.
// Placeholder: it only records observedGeneration until the real controller lands.
type WebhookReceiverReconciler struct {
	client.Client
	Scheme *runtime.Scheme
	// ReceiverImage is the default receiver container image (spec.image overrides it).
	ReceiverImage string
}

// Reconcile reads the WebhookReceiver and records the observed generation.
func (r *WebhookReceiverReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	log := logf.FromContext(ctx)
	var whr intunedv1alpha1.WebhookReceiver
	if err := r.Get(ctx, req.NamespacedName, &whr); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if whr.Status.ObservedGeneration == whr.Generation {
		return ctrl.Result{}, nil
	}
	patch := client.MergeFrom(whr.DeepCopy())
	whr.Status.ObservedGeneration = whr.Generation
	if err := r.Status().Patch(ctx, &whr, patch); err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, err
	}
	log.V(1).Info("observed WebhookReceiver")
	return ctrl.Result{}, nil
}

// SetupWithManager registers the reconciler with the manager.
func (r *WebhookReceiverReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&intunedv1alpha1.WebhookReceiver{}).
		Named("webhookreceiver").
		Complete(r)
}
