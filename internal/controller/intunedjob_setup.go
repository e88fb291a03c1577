package controller

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
)

// Field indexes on IntunedJob. Watches use them to find the jobs an event
// concerns without polling or listing everything.
const (
	// indexSecretRefs: "namespace/name" of every Secret the job reads
	// (credentials, or the manager default; headersFrom; S3; proxyFrom).
	indexSecretRefs = "intunedjob.secretRefs"
	// indexClaim: "workspace/project/jobId" of the Intuned Job the object
	// claims, from status.workspaceId (recorded once the credentials were
	// read; the workspace is only known from them), spec.project and the
	// effective job id. Used to detect two objects claiming one Job.
	indexClaim = "intunedjob.claim"
)

// SetupWithManager registers the reconciler, its field indexes and watches.
func (r *IntunedJobReconciler) SetupWithManager(mgr ctrl.Manager) error {
	ctx := context.Background()
	idx := mgr.GetFieldIndexer()
	if err := idx.IndexField(ctx, &intunedv1alpha1.IntunedJob{}, indexSecretRefs, r.secretRefs); err != nil {
		return err
	}
	// The receiverRef index is shared with the WebhookReceiver controller.
	if err := SetupIndexes(ctx, mgr); err != nil {
		return err
	}
	if err := idx.IndexField(ctx, &intunedv1alpha1.IntunedJob{}, indexClaim, claimKeyOf); err != nil {
		return err
	}
	workers := r.MaxConcurrentReconciles
	if workers <= 0 {
		workers = 8
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&intunedv1alpha1.IntunedJob{}, builder.WithPredicates(predicate.Or[client.Object](
			// Spec changes and deletion (our own status patches change
			// neither), and the intuned.io/trigger annotation.
			predicate.GenerationChangedPredicate{},
			predicate.AnnotationChangedPredicate{},
			deletionStarted{},
		))).
		// Metadata only: a change (rotation) is all the watch needs, and
		// the cache stays small on a cluster full of Secrets (CacheOptions).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.jobsForSecret), builder.OnlyMetadata).
		Watches(&intunedv1alpha1.WebhookReceiver{}, handler.EnqueueRequestsFromMapFunc(r.jobsForReceiver)).
		WithOptions(controller.Options{
			MaxConcurrentReconciles: workers,
			RateLimiter: jitterLimiter{workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](
				time.Second, 5*time.Minute)},
		}).
		Named("intunedjob").
		Complete(r)
}

// deletionStarted passes updates that set metadata.deletionTimestamp.
type deletionStarted struct{ predicate.Funcs }

func (deletionStarted) Update(e event.UpdateEvent) bool {
	return e.ObjectNew.GetDeletionTimestamp() != nil && e.ObjectOld.GetDeletionTimestamp() == nil
}

func (r *IntunedJobReconciler) secretRefs(o client.Object) []string {
	job := o.(*intunedv1alpha1.IntunedJob)
	var out []string
	add := func(name string) { out = append(out, job.Namespace+"/"+name) }
	if ref, ok := r.credentialsSecret(job); ok {
		out = append(out, ref.String())
	}
	if s := job.Spec.Sink; s != nil {
		if s.Webhook != nil {
			for _, h := range s.Webhook.HeadersFrom {
				add(h.SecretKeyRef.Name)
			}
		}
		if s.S3 != nil {
			add(s.S3.CredentialsSecretRef.Name)
		}
	}
	if p := job.Spec.ProxyFrom; p != nil {
		add(p.Name)
	}
	return out
}

func claimKey(workspace, project, jobID string) string {
	return workspace + "/" + project + "/" + jobID
}

func claimKeyOf(o client.Object) []string {
	job := o.(*intunedv1alpha1.IntunedJob)
	if job.Status.WorkspaceID == "" {
		return nil
	}
	return []string{claimKey(job.Status.WorkspaceID, job.Spec.Project, job.EffectiveJobID())}
}

// jobsForSecret maps a Secret event to the jobs reading that Secret, and to
// the jobs linked to a WebhookReceiver whose token lives in it.
func (r *IntunedJobReconciler) jobsForSecret(ctx context.Context, o client.Object) []reconcile.Request {
	reqs := r.jobsMatching(ctx, indexSecretRefs, o.GetNamespace()+"/"+o.GetName())
	var receivers intunedv1alpha1.WebhookReceiverList
	if err := r.List(ctx, &receivers, client.InNamespace(o.GetNamespace())); err == nil {
		for _, whr := range receivers.Items {
			if whr.Status.TokenSecretName == o.GetName() {
				reqs = append(reqs, r.jobsMatching(ctx, IndexIntunedJobReceiverRef, whr.Name, client.InNamespace(whr.Namespace))...)
			}
		}
	}
	return reqs
}

// jobsForReceiver maps a WebhookReceiver event (URL, readiness, token
// fingerprint changed) to the jobs linked to it.
func (r *IntunedJobReconciler) jobsForReceiver(ctx context.Context, o client.Object) []reconcile.Request {
	return r.jobsMatching(ctx, IndexIntunedJobReceiverRef, o.GetName(), client.InNamespace(o.GetNamespace()))
}

func (r *IntunedJobReconciler) jobsMatching(ctx context.Context, index, value string, opts ...client.ListOption) []reconcile.Request {
	var jobs intunedv1alpha1.IntunedJobList
	if err := r.List(ctx, &jobs, append(opts, client.MatchingFields{index: value})...); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "listing IntunedJobs for a watch event", "index", index)
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(jobs.Items))
	for _, j := range jobs.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: j.Namespace, Name: j.Name}})
	}
	return reqs
}

// checkConflict reports Conflict when another IntunedJob, created earlier
// (ties broken by namespace/name), claims the same Job on Intuned. The
// earlier one keeps managing it; this one writes nothing. Objects being
// deleted no longer claim anything.
func (r *IntunedJobReconciler) checkConflict(ctx context.Context, job *intunedv1alpha1.IntunedJob) error {
	key := claimKey(job.Status.WorkspaceID, job.Spec.Project, job.EffectiveJobID())
	var jobs intunedv1alpha1.IntunedJobList
	if err := r.List(ctx, &jobs, client.MatchingFields{indexClaim: key}); err != nil {
		return err
	}
	for i := range jobs.Items {
		other := &jobs.Items[i]
		if other.UID == job.UID || other.DeletionTimestamp != nil || !claimedBefore(other, job) {
			continue
		}
		return stalled(intunedv1alpha1.ReasonConflict, fmt.Sprintf(
			"IntunedJob %s/%s already manages Job %s in project %s of this workspace; this object changes nothing (use another spec.jobId)",
			other.Namespace, other.Name, job.EffectiveJobID(), job.Spec.Project))
	}
	return nil
}

// claimedBefore orders claims: older creationTimestamp first, then
// namespace/name.
func claimedBefore(a, b *intunedv1alpha1.IntunedJob) bool {
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	}
	return a.Namespace+"/"+a.Name < b.Namespace+"/"+b.Name
}

// jitterLimiter adds up to 20% random delay to a rate limiter's back-off, so
// jobs that failed together (an Intuned outage) do not retry together.
type jitterLimiter struct {
	workqueue.TypedRateLimiter[reconcile.Request]
}

func (j jitterLimiter) When(item reconcile.Request) time.Duration {
	return jitter(j.TypedRateLimiter.When(item))
}

// jitter returns d plus up to 20% (never less than d: a Retry-After is a
// minimum).
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return d
	}
	return d + rand.N(d/5+1)
}

// afterRetryAfter is when to retry after a server's Retry-After (or the
// pacer's own wait): never earlier, and only a little later, since the
// wait is already exact; the small spread keeps jobs that waited together
// from arriving in the same instant.
func afterRetryAfter(d time.Duration) time.Duration {
	return d + rand.N(min(d/20, 2*time.Second)+1)
}

func ptrNow() *metav1.Time {
	t := metav1.Now()
	return &t
}
