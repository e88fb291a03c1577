package webhookreceiver

import (
	"context"
	"fmt"
	"slices"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/resources"
)

// ReadAuthFinalizer keeps a WebhookReceiver until its ServiceAccount is off the read-auth
// ClusterRoleBinding: the binding is cluster-scoped, so no owner reference can take the
// subject away with the receiver.
const ReadAuthFinalizer = "intuned.io/read-auth-binding"

// readAuthFinalizer adds the finalizer before the receiver's ServiceAccount is put on the
// read-auth binding (reconcile, editReadAuthBinding), so no subject is ever left behind; with
// Kubernetes read auth off it takes the subject off and drops the finalizer (the manager
// restarted without the flag).
func (r *Reconciler) readAuthFinalizer(ctx context.Context, whr *intunedv1alpha1.WebhookReceiver) error {
	if r.ReadAuthBinding == "" {
		return r.finalizeReadAuth(ctx, whr)
	}
	if controllerutil.ContainsFinalizer(whr, ReadAuthFinalizer) {
		return nil
	}
	patch := client.MergeFromWithOptions(whr.DeepCopy(), client.MergeFromWithOptimisticLock{})
	controllerutil.AddFinalizer(whr, ReadAuthFinalizer)
	if err := r.Patch(ctx, whr, patch); err != nil {
		return fmt.Errorf("add finalizer %s: %w", ReadAuthFinalizer, err)
	}
	return nil
}

// finalizeReadAuth takes the receiver's ServiceAccount off the binding and removes the
// finalizer; nothing to do without the finalizer.
func (r *Reconciler) finalizeReadAuth(ctx context.Context, whr *intunedv1alpha1.WebhookReceiver) error {
	if !controllerutil.ContainsFinalizer(whr, ReadAuthFinalizer) {
		return nil
	}
	if r.ReadAuthBinding != "" {
		if err := r.editReadAuthBinding(ctx, whr, false); err != nil {
			return err
		}
	} else {
		// Turned off: the manager no longer knows the binding (and the namespaced install may
		// not touch it). The subject grants only TokenReviews and SubjectAccessReviews, and
		// goes away with the next install of the binding.
		logf.FromContext(ctx).Info("Kubernetes read auth is off: dropping the finalizer; the ServiceAccount may stay a subject of the install's read-auth ClusterRoleBinding",
			"serviceAccount", resources.ChildName(whr))
	}
	patch := client.MergeFromWithOptions(whr.DeepCopy(), client.MergeFromWithOptimisticLock{})
	controllerutil.RemoveFinalizer(whr, ReadAuthFinalizer)
	if err := r.Patch(ctx, whr, patch); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("remove finalizer %s: %w", ReadAuthFinalizer, err)
	}
	return nil
}

// editReadAuthBinding adds (or removes) the receiver's ServiceAccount to (from) the subjects
// of the binding. It reads the binding from the API server, not a cache (the manager may get
// this one binding, not list or watch bindings), and writes only when the subject is missing
// (or present): an update with the read resourceVersion, so two receivers never overwrite
// each other's subject (a conflict is retried by Reconcile).
func (r *Reconciler) editReadAuthBinding(ctx context.Context, whr *intunedv1alpha1.WebhookReceiver, add bool) error {
	var b rbacv1.ClusterRoleBinding
	if err := r.APIReader.Get(ctx, client.ObjectKey{Name: r.ReadAuthBinding}, &b); err != nil {
		if apierrors.IsNotFound(err) && !add {
			return nil
		}
		return fmt.Errorf("read the read-auth ClusterRoleBinding %s (--receiver-read-auth-binding; it comes with the install): %w", r.ReadAuthBinding, err)
	}
	if b.RoleRef.Kind != "ClusterRole" || b.RoleRef.Name != resources.AuthDelegatorClusterRole {
		// Never put receivers on a binding to some other role.
		return fmt.Errorf("the read-auth ClusterRoleBinding %s binds %s %s, not ClusterRole %s: not adding receivers to it",
			b.Name, b.RoleRef.Kind, b.RoleRef.Name, resources.AuthDelegatorClusterRole)
	}
	subject := resources.ReadAuthSubject(whr)
	i := slices.IndexFunc(b.Subjects, func(s rbacv1.Subject) bool {
		return s.Kind == subject.Kind && s.Name == subject.Name && s.Namespace == subject.Namespace
	})
	switch {
	case add && i < 0:
		b.Subjects = append(b.Subjects, subject)
	case !add && i >= 0:
		b.Subjects = slices.Delete(b.Subjects, i, i+1)
	default:
		return nil
	}
	if err := r.Update(ctx, &b); err != nil {
		return fmt.Errorf("update the read-auth ClusterRoleBinding %s: %w", b.Name, err)
	}
	logf.FromContext(ctx).Info("read-auth ClusterRoleBinding updated", "binding", b.Name, "serviceAccount", subject.Name, "added", add)
	return nil
}
