package intunedjob

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/intuned-operator/intuned-operator/internal/controller/index"
	"github.com/intuned-operator/intuned-operator/internal/controller/report"

	corev1 "k8s.io/api/core/v1"
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

// SetupWithManager registers the reconciler and its watches. The field
// indexes they use are registered by index.Register.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	workers := r.MaxConcurrentReconciles
	if workers <= 0 {
		workers = 8
	}
	// The Secret watch below fills the cache's metadata informer, which
	// revalidates the Secret data the reconciler keeps (secretCache).
	r.secretMetadata = mgr.GetCache()
	r.apiReader = mgr.GetAPIReader()
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
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.jobsForSecret), builder.OnlyMetadata,
			builder.WithPredicates(notFinalizersOnly{})).
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

// notFinalizersOnly drops Secret updates that change only the finalizers:
// the credentials guard's own in-use finalizer would otherwise re-reconcile,
// and re-read on Intuned, every job of the Secret for nothing. (A metadata
// watch cannot see data; a single write that changes the finalizers and the
// data together reaches the jobs at their next poll, when the credentials
// cache revalidates by resourceVersion.)
type notFinalizersOnly struct{ predicate.Funcs }

func (notFinalizersOnly) Update(e event.UpdateEvent) bool {
	o, n := e.ObjectOld, e.ObjectNew
	return slices.Equal(o.GetFinalizers(), n.GetFinalizers()) ||
		!maps.Equal(o.GetLabels(), n.GetLabels()) ||
		!maps.Equal(o.GetAnnotations(), n.GetAnnotations()) ||
		!o.GetDeletionTimestamp().Equal(n.GetDeletionTimestamp())
}

// jobsForSecret maps a Secret event to the jobs reading that Secret, and to
// the jobs linked to a WebhookReceiver whose token lives in it.
func (r *Reconciler) jobsForSecret(ctx context.Context, o client.Object) []reconcile.Request {
	reqs := r.jobsMatching(ctx, index.IntunedJobSecretRefs, o.GetNamespace()+"/"+o.GetName())
	var receivers intunedv1alpha1.WebhookReceiverList
	if err := r.List(ctx, &receivers, client.InNamespace(o.GetNamespace())); err == nil {
		for _, whr := range receivers.Items {
			if whr.Status.TokenSecretName == o.GetName() {
				reqs = append(reqs, r.jobsMatching(ctx, index.IntunedJobReceiverRef, whr.Name, client.InNamespace(whr.Namespace))...)
			}
		}
	}
	return reqs
}

// jobsForReceiver maps a WebhookReceiver event (URL, readiness, token
// fingerprint changed) to the jobs linked to it.
func (r *Reconciler) jobsForReceiver(ctx context.Context, o client.Object) []reconcile.Request {
	return r.jobsMatching(ctx, index.IntunedJobReceiverRef, o.GetName(), client.InNamespace(o.GetNamespace()))
}

func (r *Reconciler) jobsMatching(ctx context.Context, index, value string, opts ...client.ListOption) []reconcile.Request {
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

// checkConflict reports Conflict when another IntunedJob claims the same
// Job on Intuned before this one (see conflictWith).
func (r *Reconciler) checkConflict(ctx context.Context, job *intunedv1alpha1.IntunedJob) error {
	key := index.ClaimKey(job.Status.WorkspaceID, job.Spec.Project, job.EffectiveJobID())
	var jobs intunedv1alpha1.IntunedJobList
	if err := r.List(ctx, &jobs, client.MatchingFields{index.IntunedJobClaim: key}); err != nil {
		return err
	}
	if f := conflictWith(job, jobs.Items); f != nil {
		return f
	}
	return nil
}

// conflictWith is Conflict when one of claimants (the IntunedJobs that
// claim the same Job on Intuned as job), created earlier (ties broken by
// namespace/name), still claims it. The earlier one keeps managing it;
// this one writes nothing. Objects being deleted no longer claim anything.
func conflictWith(job *intunedv1alpha1.IntunedJob, claimants []intunedv1alpha1.IntunedJob) *report.Failure {
	for i := range claimants {
		other := &claimants[i]
		if other.UID == job.UID || other.DeletionTimestamp != nil || !claimedBefore(other, job) {
			continue
		}
		return report.Stalled(intunedv1alpha1.ReasonConflict, fmt.Sprintf(
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
