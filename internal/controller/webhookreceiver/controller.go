package webhookreceiver

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/intuned-operator/intuned-operator/internal/controller/index"
	"github.com/intuned-operator/intuned-operator/internal/controller/report"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/resources"
)

// FieldOwner is the server-side apply field manager of every child.
const FieldOwner = resources.ManagedBy

// maxReceiverNameLength keeps every derived name valid: the StatefulSet's
// Pods get a controller-revision-hash label "<name>-<10 chars>", which must
// fit in a 63-character label value.
const maxReceiverNameLength = 52

// Reconciler deploys receiver workloads for WebhookReceiver
// objects: it applies every child with server-side apply, keeps the token
// Secret (generation, rotation, dropping the previous token once every
// IntunedJob caught up) and publishes status.url and Ready.
type Reconciler struct {
	client.Client
	Scheme *runtime.Scheme
	// ReceiverImage is the default receiver container image (spec.image
	// overrides it; empty means resources.DefaultReceiverImage).
	ReceiverImage string
	// ManagerPods are the manager's own Pods, which receiver
	// NetworkPolicies admit next to spec.networkPolicy.from (nil: the
	// manager runs outside a Pod).
	ManagerPods *resources.ManagerPods
	// Rand is the randomness of generated tokens (nil: crypto/rand).
	Rand io.Reader
	// APIReader reads the token Secret uncached, so a stale cache can never
	// make two rotations out of one (nil: set from the manager).
	APIReader client.Reader
	// TokenPropagationDelay is how long a new token is staged (accepted by
	// the Pods, not yet pushed by IntunedJobs) before it becomes current.
	// Zero: DefaultTokenPropagationDelay; negative: no staging.
	TokenPropagationDelay time.Duration
	// PreviousTokenGrace keeps the previous token this long after every
	// referencing IntunedJob carries the new one (and after the end of
	// JobRuns that may still use it). Zero: DefaultPreviousTokenGrace;
	// negative: drop at once.
	PreviousTokenGrace time.Duration
	// Now is the clock of token staging and grace (nil: time.Now).
	Now func() time.Time
	// ReceiverMetrics reads a receiver's /metrics (nil: GET through its
	// Service), for intunedv1alpha1.ConditionVolumeNearlyFull of SQLite receivers.
	ReceiverMetrics func(ctx context.Context, whr *intunedv1alpha1.WebhookReceiver) ([]byte, error)
	// VolumeCheckInterval is how often a ready SQLite receiver's free
	// space is read (zero: DefaultVolumeCheckInterval).
	VolumeCheckInterval time.Duration
	// Recorder receives a Warning Event when a receiver's volume becomes
	// nearly full or full (nil: no Events).
	Recorder report.EventRecorder
	// ReadAuthBinding names the install's ClusterRoleBinding to
	// system:auth-delegator: each receiver's ServiceAccount is made a subject
	// of it, and the receiver Pods accept Kubernetes tokens on the read API
	// (TokenReview + SubjectAccessReview). Empty: Kubernetes read auth off
	// (the namespaced install), the static read token only.
	ReadAuthBinding string
}

// invalidSpecf is a failure no retry fixes until the spec changes.
func invalidSpecf(format string, args ...any) *report.Failure {
	return report.Stalled(intunedv1alpha1.ReasonInvalidSpec, fmt.Sprintf(format, args...))
}

// Reconcile applies the children of one WebhookReceiver: observe (the
// object, its token Secret, its children), act (apply them), report (one
// status patch, and Events for what the user must see).
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, retErr error) {
	var whr intunedv1alpha1.WebhookReceiver
	if err := r.Get(ctx, req.NamespacedName, &whr); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !whr.DeletionTimestamp.IsZero() {
		// Children carry owner references: the garbage collector removes them. The
		// ServiceAccount's place on the read-auth ClusterRoleBinding has no owner.
		return ctrl.Result{}, r.finalizeReadAuth(ctx, &whr)
	}
	// Before the status patch starts: the finalizer write refreshes whr.
	if err := r.readAuthFinalizer(ctx, &whr); apierrors.IsConflict(err) {
		return ctrl.Result{RequeueAfter: time.Second}, nil
	} else if err != nil {
		return ctrl.Result{}, err
	}
	status := report.StartStatusPatch(r.Client, &whr)
	defer status.Finish(ctx, &whr, &retErr)
	before := whr.Status.DeepCopy()

	requeueAfter, err := r.reconcile(ctx, &whr)
	if apierrors.IsConflict(err) {
		// Someone wrote a child (or our token Secret) since we read it:
		// decide again from fresh data, without flapping Ready.
		whr.Status = *before
		return ctrl.Result{RequeueAfter: time.Second}, nil
	}
	whr.Status.ObservedGeneration = whr.Generation
	defer r.announce(&whr, before)
	if err != nil {
		f := report.AsFailure(err, intunedv1alpha1.ReasonReconcileError)
		report.Failed(&whr.Status.Conditions, whr.Generation, f)
		return report.Result(f, requeueAfter)
	}
	return ctrl.Result{RequeueAfter: requeueAfter}, nil
}

// announce records an Event for what the user must see: Ready turning
// False for a reason they can act on, and a new current token.
func (r *Reconciler) announce(whr *intunedv1alpha1.WebhookReceiver, before *intunedv1alpha1.WebhookReceiverStatus) {
	now := meta.FindStatusCondition(whr.Status.Conditions, intunedv1alpha1.ConditionReady)
	old := meta.FindStatusCondition(before.Conditions, intunedv1alpha1.ConditionReady)
	if now != nil && now.Status == metav1.ConditionFalse && (old == nil || old.Reason != now.Reason) {
		switch now.Reason {
		case intunedv1alpha1.ReasonWorkloadNotReady, intunedv1alpha1.ReasonSecretNotFound,
			intunedv1alpha1.ReasonResourceConflict, intunedv1alpha1.ReasonInvalidSpec, intunedv1alpha1.ReasonURLUnknown:
			report.Event(r.Recorder, whr, "Warning", now.Reason, "Reconcile", now.Message)
		}
	}
	if was, is := before.TokenFingerprint, whr.Status.TokenFingerprint; was != "" && is != "" && was != is {
		report.Event(r.Recorder, whr, "Normal", "TokenRotated", "RotateToken", fmt.Sprintf(
			"the receiver's current token changed (fingerprint %s, was %s); IntunedJobs referencing it push it to Intuned", is, was))
	}
}

// reconcile does the work; it fills whr.Status (except observedGeneration)
// and returns a *report.Failure for a reason the user should see, and when
// to come back for a staged token.
func (r *Reconciler) reconcile(ctx context.Context, whr *intunedv1alpha1.WebhookReceiver) (time.Duration, error) {
	if msgs := validation.IsDNS1035Label(whr.Name); len(msgs) > 0 || len(whr.Name) > maxReceiverNameLength {
		return 0, invalidSpecf(
			"metadata.name %q names the Service and workload: it must be at most %d characters of lower-case letters, digits and '-', starting with a letter",
			whr.Name, maxReceiverNameLength)
	}

	// The token Secret first: the Pods mount it.
	tokens, tokenErr := r.reconcileToken(ctx, whr)
	if tokenErr != nil {
		var f *report.Failure
		if !errors.As(tokenErr, &f) || f.Reason == intunedv1alpha1.ReasonResourceConflict {
			// Never start Pods that would mount someone else's Secret.
			return 0, tokenErr
		}
		// A missing user Secret must not stop the rest: the Service,
		// workload and Ingress still converge, and the Pods start as soon
		// as the token Secret exists.
	}
	if tokens != nil {
		whr.Status.TokenSecretName = resources.TokenSecretName(whr)
		whr.Status.TokenFingerprint, whr.Status.PreviousTokenFingerprint, whr.Status.NextTokenFingerprint = tokens.fingerprints()
	}

	// Before the workload: its Pods call TokenReview as soon as a reader comes.
	if r.ReadAuthBinding != "" {
		if err := r.editReadAuthBinding(ctx, whr, true); err != nil {
			return 0, err
		}
	}

	dsnErr := r.checkDSNSecret(ctx, whr)
	if dsnErr != nil && !report.IsUserError(dsnErr) {
		return 0, dsnErr
	}

	workload, err := r.applyChildren(ctx, whr)
	if err != nil {
		return 0, err
	}
	ingress, err := r.currentIngress(ctx, whr)
	if err != nil {
		return 0, err
	}

	whr.Status.URL = publicURL(whr, ingress)

	// The volume grows even while the receiver is unready: a full volume is
	// one reason it would be.
	var claim *dataClaim
	var resizeRequeue time.Duration
	if resources.UsesPostgres(whr) {
		meta.RemoveStatusCondition(&whr.Status.Conditions, intunedv1alpha1.ConditionVolumeResizing)
	} else if claim, resizeRequeue, err = r.reconcileVolumeSize(ctx, whr); err != nil {
		return 0, err
	}

	if tokenErr != nil {
		return 0, tokenErr
	}
	if dsnErr != nil {
		return tokens.RequeueAfter, dsnErr
	}
	available, why := workload.available()
	whr.Status.ReadyReplicas = workload.readyReplicas
	if workload.note != "" {
		why += "; " + workload.note
	}
	switch {
	case !available:
		report.Progress(&whr.Status.Conditions, whr.Generation, intunedv1alpha1.ReasonWorkloadNotReady, why)
	case whr.Status.URL == "":
		report.Progress(&whr.Status.Conditions, whr.Generation, intunedv1alpha1.ReasonURLUnknown,
			"no public URL: set spec.ingress (host) or spec.externalURL")
	default:
		msg := fmt.Sprintf("%d receiver Pod(s) ready at %s", workload.readyReplicas, whr.Status.URL)
		if tokens.Staged {
			msg += "; token rotation: a new token is staged (the Pods accept it) and becomes current at " +
				tokens.PromotionTime(r.delay()).UTC().Format(time.RFC3339)
		}
		switch {
		case len(tokens.JobsBehind) > 0:
			msg += fmt.Sprintf("; token rotation: the previous token stays accepted until IntunedJob(s) %s carry the new one",
				strings.Join(tokens.JobsBehind, ", "))
		case len(tokens.RunsInFlight) > 0:
			msg += fmt.Sprintf("; token rotation: the previous token stays accepted until the JobRuns of IntunedJob(s) %s that started with it end, plus the retry window",
				strings.Join(tokens.RunsInFlight, ", "))
		case !tokens.PreviousUntil.IsZero():
			msg += "; token rotation: every IntunedJob carries the new token; the previous one stays accepted for Intuned's retries until " +
				tokens.PreviousUntil.UTC().Format(time.RFC3339)
		}
		if tokens.Note != "" {
			msg += "; " + tokens.Note
		}
		if workload.note != "" {
			msg += "; " + workload.note
		}
		report.Ready(&whr.Status.Conditions, whr.Generation, intunedv1alpha1.ReasonAvailable, msg)
	}
	requeue := sooner(tokens.RequeueAfter, resizeRequeue)
	if available && !resources.UsesPostgres(whr) {
		// Free space changes without any watch event: poll it.
		r.checkVolume(ctx, whr, claim)
		requeue = sooner(requeue, r.volumeCheckInterval())
	}
	return requeue, nil
}

// sooner is the earlier of two requeue delays (zero: none).
func sooner(a, b time.Duration) time.Duration {
	if a == 0 || (b != 0 && b < a) {
		return b
	}
	return a
}

// checkDSNSecret reports a missing PostgreSQL DSN Secret or key (the Pods
// cannot start without it). The DSN itself is never read into memory here.
func (r *Reconciler) checkDSNSecret(ctx context.Context, whr *intunedv1alpha1.WebhookReceiver) error {
	if !resources.UsesPostgres(whr) {
		return nil
	}
	ref := whr.Spec.Storage.Postgres.DSNSecretRef
	var s corev1.Secret
	if err := r.Get(ctx, client.ObjectKey{Namespace: whr.Namespace, Name: ref.Name}, &s); err != nil {
		if apierrors.IsNotFound(err) {
			return report.WaitForf(intunedv1alpha1.ReasonSecretNotFound,
				"PostgreSQL DSN Secret %s (spec.storage.postgres.dsnSecretRef) not found", ref.Name)
		}
		return err
	}
	if len(s.Data[ref.Key]) == 0 {
		return report.WaitForf(intunedv1alpha1.ReasonSecretNotFound,
			"PostgreSQL DSN Secret %s has no key %q (spec.storage.postgres.dsnSecretRef)", ref.Name, ref.Key)
	}
	return nil
}

// publicURL is spec.externalURL, else the Ingress URL: https when TLS is
// set, the host from the spec (or, should it be empty, the Ingress
// load-balancer hostname/IP), plus the path. Empty when unknown.
func publicURL(whr *intunedv1alpha1.WebhookReceiver, ing *networkingv1.Ingress) string {
	if whr.Spec.ExternalURL != "" {
		return whr.Spec.ExternalURL
	}
	in := whr.Spec.Ingress
	if in == nil {
		return ""
	}
	host := in.Host
	if host == "" && ing != nil {
		for _, lb := range ing.Status.LoadBalancer.Ingress {
			if host = lb.Hostname; host == "" {
				host = lb.IP
			}
			if host != "" {
				break
			}
		}
	}
	if host == "" {
		return ""
	}
	u := url.URL{Scheme: "http", Host: host, Path: resources.IngestPath(whr)}
	if in.TLS != nil {
		u.Scheme = "https"
	}
	return u.String()
}

func (r *Reconciler) random() io.Reader {
	if r.Rand != nil {
		return r.Rand
	}
	return rand.Reader
}

// SetupWithManager registers the reconciler and its watches (the field
// indexes they use are registered by index.Register): the WebhookReceiver (spec and annotation changes), every
// child it owns, the Secrets it reads, and the IntunedJobs referencing it
// (their status.sink.tokenFingerprint ends a token rotation).
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.APIReader == nil {
		r.APIReader = mgr.GetAPIReader()
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&intunedv1alpha1.WebhookReceiver{}, builder.WithPredicates(predicate.Or[client.Object](
			// Our own status updates change neither.
			predicate.GenerationChangedPredicate{},
			predicate.AnnotationChangedPredicate{},
		))).
		// Secrets as metadata only, like every watch of them (CacheOptions).
		Owns(&corev1.Secret{}, builder.OnlyMetadata).
		Owns(&corev1.ServiceAccount{}).
		Owns(&corev1.Service{}).
		Owns(&appsv1.Deployment{}).
		Owns(&appsv1.StatefulSet{}).
		Owns(&networkingv1.Ingress{}).
		Owns(&autoscalingv2.HorizontalPodAutoscaler{}).
		Owns(&policyv1.PodDisruptionBudget{}).
		Owns(&networkingv1.NetworkPolicy{}).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.receiversReadingSecret), builder.OnlyMetadata).
		// The SQLite data claim is made by the StatefulSet controller, not
		// us: it is found by its labels. Its status tells how a resize goes.
		Watches(&corev1.PersistentVolumeClaim{}, handler.EnqueueRequestsFromMapFunc(receiverOfClaim)).
		Watches(&intunedv1alpha1.IntunedJob{}, handler.EnqueueRequestsFromMapFunc(receiverOfJob),
			builder.WithPredicates(jobTokenChanged{})).
		Named("webhookreceiver").
		Complete(r)
}

// receiversReadingSecret maps a Secret to the WebhookReceivers that read
// it (tokenSecretRef, DSN).
func (r *Reconciler) receiversReadingSecret(ctx context.Context, o client.Object) []reconcile.Request {
	var list intunedv1alpha1.WebhookReceiverList
	if err := r.List(ctx, &list, client.InNamespace(o.GetNamespace()),
		client.MatchingFields{index.WebhookReceiverSecrets: o.GetName()}); err != nil {
		logf.FromContext(ctx).Error(err, "list WebhookReceivers reading a Secret")
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for _, w := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&w)})
	}
	return reqs
}

// receiverOfClaim maps a PVC made from the StatefulSet's volumeClaimTemplate
// (it carries the template's labels) to its WebhookReceiver.
func receiverOfClaim(_ context.Context, o client.Object) []reconcile.Request {
	l := o.GetLabels()
	if l[resources.LabelName] != resources.AppName || l[resources.LabelInstance] == "" {
		return nil
	}
	return []reconcile.Request{{NamespacedName: client.ObjectKey{Namespace: o.GetNamespace(), Name: l[resources.LabelInstance]}}}
}

// receiverOfJob maps an IntunedJob to the WebhookReceiver it references.
// (For updates controller-runtime maps both the old and the new object, so
// a changed receiverRef wakes both receivers.)
func receiverOfJob(_ context.Context, o client.Object) []reconcile.Request {
	job, ok := o.(*intunedv1alpha1.IntunedJob)
	if !ok {
		return nil
	}
	names := index.ReceiverRefOf(job)
	reqs := make([]reconcile.Request, 0, len(names))
	for _, n := range names {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKey{Namespace: o.GetNamespace(), Name: n}})
	}
	return reqs
}

// jobTokenChanged passes IntunedJob events that can end a rotation:
// creation, deletion, a changed receiverRef, status.sink.tokenFingerprint
// or last JobRun (start/end).
// Everything else an IntunedJob reports (run status, times) is ignored.
type jobTokenChanged struct{ predicate.Funcs }

func (jobTokenChanged) Create(event.CreateEvent) bool   { return true }
func (jobTokenChanged) Delete(event.DeleteEvent) bool   { return true }
func (jobTokenChanged) Generic(event.GenericEvent) bool { return false }
func (jobTokenChanged) Update(e event.UpdateEvent) bool {
	o, ok1 := e.ObjectOld.(*intunedv1alpha1.IntunedJob)
	n, ok2 := e.ObjectNew.(*intunedv1alpha1.IntunedJob)
	if !ok1 || !ok2 {
		return false
	}
	return jobFingerprint(o) != jobFingerprint(n) || lastRunTimes(o) != lastRunTimes(n) ||
		!equality.Semantic.DeepEqual(index.ReceiverRefOf(o), index.ReceiverRefOf(n))
}

func lastRunTimes(j *intunedv1alpha1.IntunedJob) string {
	r := j.Status.LastJobRun
	if r == nil {
		return ""
	}
	return fmt.Sprint(r.ID, r.Start, r.End)
}

func jobFingerprint(j *intunedv1alpha1.IntunedJob) string {
	if j.Status.Sink == nil {
		return ""
	}
	return j.Status.Sink.TokenFingerprint
}
