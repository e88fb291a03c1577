package guard

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/intuned-operator/intuned-operator/internal/controller/index"
	"github.com/intuned-operator/intuned-operator/internal/controller/report"
	"github.com/intuned-operator/intuned-operator/internal/controller/sharding"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
)

// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;patch

// CredentialsInUse makes the credentials an IntunedJob's finalizer
// needs outlive the IntunedJob. Without it, `kubectl delete -k` of the
// samples, a namespace deletion, or `kubectl delete -f` of a file that lists
// the Secret first removes the Secret before the IntunedJob; the finalizer
// then cannot call Intuned, and the Job keeps running (and billing) there.
//
// A Secret that an IntunedJob will need at its deletion carries
// intunedv1alpha1.FinalizerCredentialsInUse (per shard: credentialsFinalizer); when the last such IntunedJob is gone, the
// finalizer is removed and a pending deletion of the Secret completes.
// (Crossplane protects ProviderConfigs the same way.)
type CredentialsInUse struct {
	client.Client
	// SecretCache reads the metadata of Secrets from the watch's cache
	// (nil: the manager's cache). The Client reads Secrets from the API
	// server (ClientOptions): one request per Secret event of the cluster
	// would be wasted, as the finalizer is all this controller looks at.
	SecretCache client.Reader
	// DefaultCredentials is the manager-wide credentials Secret (may be empty) and where it may be used.
	DefaultCredentials intunedv1alpha1.DefaultCredentials
	Recorder           report.EventRecorder
	// Shard is the manager's shard: it sees only its own IntunedJobs, so
	// it keeps its own copy of the finalizer (Shard.Finalizer): a Secret
	// that jobs of two shards read carries both, and each shard removes
	// only its own when its last such job is gone.
	Shard sharding.Shard
}

// credentialsFinalizer is the shard's in-use finalizer on credentials
// Secrets.
func credentialsFinalizer(s sharding.Shard) string {
	return s.Finalizer(intunedv1alpha1.FinalizerCredentialsInUse)
}

// callsIntunedOnDelete: the IntunedJob will call Intuned when it is
// deleted (it carries the finalizer and does not orphan its Job), so its
// credentials and the manager's rights must outlive it.
func callsIntunedOnDelete(job *intunedv1alpha1.IntunedJob) bool {
	return controllerutil.ContainsFinalizer(job, intunedv1alpha1.Finalizer) &&
		job.Spec.DeletionPolicy != intunedv1alpha1.DeletionPolicyOrphan
}

// metadataOnly is an empty object of kind gvk to read its metadata into
// (from a metadata-only cache, or the API server's metadata API).
func metadataOnly(gvk schema.GroupVersionKind) *metav1.PartialObjectMetadata {
	o := &metav1.PartialObjectMetadata{}
	o.SetGroupVersionKind(gvk)
	return o
}

// keepWhileInUse adds finalizer to obj while inUse and removes it after,
// so a deletion of obj waits for its users. The patch carries obj's
// resourceVersion: a concurrent change makes it fail and the retry reads
// anew. Only metadata is read and written.
func keepWhileInUse(ctx context.Context, c client.Client, obj *metav1.PartialObjectMetadata, finalizer string, inUse bool) error {
	if inUse == controllerutil.ContainsFinalizer(obj, finalizer) {
		return nil
	}
	patch := client.MergeFromWithOptions(obj.DeepCopy(), client.MergeFromWithOptimisticLock{})
	if inUse {
		controllerutil.AddFinalizer(obj, finalizer)
	} else {
		controllerutil.RemoveFinalizer(obj, finalizer)
	}
	return client.IgnoreNotFound(c.Patch(ctx, obj, patch))
}

// Reconcile adds or removes the in-use finalizer of one Secret.
func (r *CredentialsInUse) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	secret := metadataOnly(corev1.SchemeGroupVersion.WithKind("Secret"))
	if err := r.SecretCache.Get(ctx, req.NamespacedName, secret); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	users, err := r.users(ctx, req.NamespacedName)
	if err != nil {
		return reconcile.Result{}, err
	}
	inUse := len(users) > 0
	if err := keepWhileInUse(ctx, r.Client, secret, credentialsFinalizer(r.Shard), inUse); err != nil {
		return reconcile.Result{}, err
	}
	if inUse && !secret.DeletionTimestamp.IsZero() {
		report.Event(r.Recorder, secret, corev1.EventTypeNormal, "CredentialsInUse", "WaitForIntunedJobs",
			fmt.Sprintf("kept until the IntunedJobs that delete their Intuned Jobs with it are gone: %s. "+
				"To delete it first, set spec.deletionPolicy: Orphan on them (their Jobs then stay on Intuned).",
				strings.Join(users, ", ")))
	}
	return reconcile.Result{}, nil
}

// users lists (as namespace/name) the IntunedJobs that need the Secret to
// delete their Jobs on Intuned.
func (r *CredentialsInUse) users(ctx context.Context, secret types.NamespacedName) ([]string, error) {
	var jobs intunedv1alpha1.IntunedJobList
	// Read only, and at 10,000 jobs sharing one Secret a deep copy of each
	// would be most of this controller's cost.
	if err := r.List(ctx, &jobs, client.MatchingFields{index.IntunedJobCredentialsSecret: secret.String()}, client.UnsafeDisableDeepCopy); err != nil {
		return nil, err
	}
	var users []string
	for i := range jobs.Items {
		if callsIntunedOnDelete(&jobs.Items[i]) {
			users = append(users, jobs.Items[i].Namespace+"/"+jobs.Items[i].Name)
		}
	}
	sort.Strings(users)
	return users, nil
}

// secretOf is the credentials Secret of an IntunedJob event's object.
func (r *CredentialsInUse) secretOf(o client.Object) (types.NamespacedName, bool) {
	job, ok := o.(*intunedv1alpha1.IntunedJob)
	if !ok {
		return types.NamespacedName{}, false
	}
	return job.CredentialsSecret(r.DefaultCredentials)
}

// checkSecret enqueues the Secret ref when its in-use finalizer (in the
// cache) disagrees with needed. A job that needs a Secret already kept, or
// does not need one that is not, changes nothing: every status write of
// every job would otherwise reconcile the Secret, and each reconcile lists
// all its users (at 10,000 jobs sharing one Secret, a busy loop for as long
// as the jobs are being written). A stale cache errs towards reconciling;
// a reconcile racing with the job's change is followed by the Secret's own
// event (its finalizer changed), which reconciles again.
func (r *CredentialsInUse) checkSecret(ctx context.Context, ref types.NamespacedName, needed bool, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	secret := metadataOnly(corev1.SchemeGroupVersion.WithKind("Secret"))
	if err := r.SecretCache.Get(ctx, ref, secret); err == nil &&
		controllerutil.ContainsFinalizer(secret, credentialsFinalizer(r.Shard)) == needed {
		return
	}
	q.Add(reconcile.Request{NamespacedName: ref})
}

// jobEvents maps IntunedJob events to the Secrets whose finalizer they may
// change (checkSecret): the job's, and the one it no longer uses when it
// moved to other credentials.
func (r *CredentialsInUse) jobEvents() handler.EventHandler {
	check := func(ctx context.Context, o client.Object, deleted bool, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
		if ref, ok := r.secretOf(o); ok {
			r.checkSecret(ctx, ref, !deleted && callsIntunedOnDelete(o.(*intunedv1alpha1.IntunedJob)), q)
		}
	}
	return handler.Funcs{
		CreateFunc: func(ctx context.Context, e event.CreateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			check(ctx, e.Object, false, q)
		},
		UpdateFunc: func(ctx context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			if old, ok := r.secretOf(e.ObjectOld); ok {
				if now, ok := r.secretOf(e.ObjectNew); !ok || now != old {
					r.checkSecret(ctx, old, false, q) // released, unless another job needs it
				}
			}
			check(ctx, e.ObjectNew, false, q)
		},
		DeleteFunc: func(ctx context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			check(ctx, e.Object, true, q)
		},
		GenericFunc: func(_ context.Context, e event.GenericEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			if ref, ok := r.secretOf(e.Object); ok {
				q.Add(reconcile.Request{NamespacedName: ref})
			}
		},
	}
}

// SetupWithManager reconciles Secrets (watched as metadata only: see
// CacheOptions), and the Secret of an IntunedJob that changes (created,
// finalizer added or removed, deleted) when its finalizer may have to
// change (jobEvents).
func (r *CredentialsInUse) SetupWithManager(mgr ctrl.Manager) error {
	if r.SecretCache == nil {
		r.SecretCache = mgr.GetCache()
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("credentials-in-use").
		For(&corev1.Secret{}, builder.OnlyMetadata).
		Watches(&intunedv1alpha1.IntunedJob{}, r.jobEvents()).
		Complete(r)
}
