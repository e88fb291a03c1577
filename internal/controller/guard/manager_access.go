package guard

import (
	"context"
	"slices"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/controller/sharding"
)

// ManagerAccess protects the manager's rights in the namespaces a
// namespaced install watches (config/namespaced). There, the manager's
// rights come from a RoleBinding inside each watched namespace, so deleting
// the namespace would delete the RoleBinding along with the IntunedJobs:
// the manager would lose its rights before its finalizers ran, and the
// namespace would hang, its Jobs still running on Intuned. With
// intunedv1alpha1.FinalizerManagerAccess on the RoleBinding while such IntunedJobs (and the
// credentials Secrets they keep) exist, the rights outlive them, and the
// namespace deletion completes.
//
// The RoleBinding is read and patched by name only (the install grants get
// and patch on that one name); it is never listed, watched or cached.
type ManagerAccess struct {
	// Client patches the RoleBinding.
	client.Client
	// Cache lists IntunedJobs and the metadata of Secrets (nil: the
	// manager's cache; the Client reads Secrets from the API server).
	Cache client.Reader
	// APIReader reads the RoleBinding from the API server.
	APIReader client.Reader
	// BindingName is the RoleBinding's name in every watched namespace.
	BindingName string
	// Shard is the manager's shard: it keeps its own copy of the
	// finalizer, for its own IntunedJobs and its own in-use finalizers on
	// Secrets (see CredentialsInUse.Shard).
	Shard sharding.Shard
}

// Reconcile adds or removes the finalizer of one namespace's RoleBinding.
func (r *ManagerAccess) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	binding := metadataOnly(rbacv1.SchemeGroupVersion.WithKind("RoleBinding"))
	if err := r.APIReader.Get(ctx, req.NamespacedName, binding); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	inUse, err := r.needed(ctx, req.Namespace)
	if err != nil {
		return reconcile.Result{}, err
	}
	return reconcile.Result{}, keepWhileInUse(ctx, r.Client, binding, r.Shard.Finalizer(intunedv1alpha1.FinalizerManagerAccess), inUse)
}

// needed reports whether the manager still has work in namespace that
// needs its rights there: an IntunedJob whose Job must be deleted on
// Intuned, or a credentials Secret whose in-use finalizer it must remove
// afterwards (or the Secret would hang the namespace instead).
func (r *ManagerAccess) needed(ctx context.Context, namespace string) (bool, error) {
	var jobs intunedv1alpha1.IntunedJobList
	if err := r.Cache.List(ctx, &jobs, client.InNamespace(namespace), client.UnsafeDisableDeepCopy); err != nil {
		return false, err
	}
	if slices.ContainsFunc(jobs.Items, func(j intunedv1alpha1.IntunedJob) bool { return callsIntunedOnDelete(&j) }) {
		return true, nil
	}
	secrets := &metav1.PartialObjectMetadataList{}
	secrets.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("SecretList"))
	if err := r.Cache.List(ctx, secrets, client.InNamespace(namespace), client.UnsafeDisableDeepCopy); err != nil {
		return false, err
	}
	return slices.ContainsFunc(secrets.Items, func(s metav1.PartialObjectMetadata) bool {
		return controllerutil.ContainsFinalizer(&s, credentialsFinalizer(r.Shard))
	}), nil
}

// SetupWithManager reconciles the RoleBinding of a namespace whenever one
// of its IntunedJobs changes, or a Secret gains or loses the in-use
// finalizer.
func (r *ManagerAccess) SetupWithManager(mgr ctrl.Manager) error {
	if r.APIReader == nil {
		r.APIReader = mgr.GetAPIReader()
	}
	if r.Cache == nil {
		r.Cache = mgr.GetCache()
	}
	bindingOf := handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
		return []reconcile.Request{{NamespacedName: client.ObjectKey{Namespace: o.GetNamespace(), Name: r.BindingName}}}
	})
	// Only Secrets that carry (or just lost) the in-use finalizer matter.
	inUse := func(o client.Object) bool {
		return controllerutil.ContainsFinalizer(o, credentialsFinalizer(r.Shard))
	}
	guardedSecret := predicate.Funcs{
		CreateFunc:  func(e event.CreateEvent) bool { return inUse(e.Object) },
		DeleteFunc:  func(e event.DeleteEvent) bool { return inUse(e.Object) },
		UpdateFunc:  func(e event.UpdateEvent) bool { return inUse(e.ObjectOld) || inUse(e.ObjectNew) },
		GenericFunc: func(event.GenericEvent) bool { return false },
	}
	// Only a job whose need for the manager's rights changes matters: its
	// status writes do not (at 10,000 jobs in one namespace each would
	// otherwise read the RoleBinding and list every job again).
	needsManager := func(o client.Object) bool {
		j, ok := o.(*intunedv1alpha1.IntunedJob)
		return ok && callsIntunedOnDelete(j)
	}
	jobNeedChanged := predicate.Funcs{
		CreateFunc:  func(e event.CreateEvent) bool { return needsManager(e.Object) },
		DeleteFunc:  func(e event.DeleteEvent) bool { return needsManager(e.Object) },
		UpdateFunc:  func(e event.UpdateEvent) bool { return needsManager(e.ObjectOld) != needsManager(e.ObjectNew) },
		GenericFunc: func(event.GenericEvent) bool { return false },
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("manager-access").
		Watches(&intunedv1alpha1.IntunedJob{}, bindingOf, builder.WithPredicates(jobNeedChanged)).
		Watches(&corev1.Secret{}, bindingOf, builder.OnlyMetadata, builder.WithPredicates(guardedSecret)).
		Complete(r)
}
