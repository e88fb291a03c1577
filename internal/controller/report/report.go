// Package report is how every reconciler of this operator says what
// happened: the failure taxonomy, kstatus conditions, the one deferred
// status patch per reconcile, Events, and when the next attempt comes
// after a failure.
//
// Conditions follow kstatus (sigs.k8s.io/cli-utils/pkg/kstatus), which is
// what Flux, Argo CD and `kubectl wait` read:
//
//	Ready=True                      → Current   (done, as asked)
//	Reconciling=True / Ready=False  → InProgress (working or waiting)
//	Stalled=True                    → Failed    (a human must change something)
//
// and every condition carries the generation it describes, as does
// status.observedGeneration.
package report

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
)

// Kind is the error taxonomy: what a failed reconcile means for the
// conditions and for when the next attempt comes.
type Kind int

const (
	// Transient: the world may fix itself (5xx, timeouts, 429, API-server
	// errors). Reconciling=True; retried with back-off (or after a
	// server's Retry-After).
	Transient Kind = iota
	// NeedsUser: waiting for something outside this reconcile to change —
	// a Secret to appear, spec.adopt, a project to be deployed, a
	// WebhookReceiver to become Ready. Reconciling=True, not Stalled: the
	// change is expected and a watch (or the poll) brings the next attempt.
	NeedsUser
	// Terminal: retrying cannot help until a human changes the spec or
	// the credentials (invalid spec, 400, 401, a name conflict).
	// Stalled=True.
	Terminal
)

// Failure is every way a reconcile can end other than "done".
type Failure struct {
	Kind    Kind
	Reason  string // condition reason (api/v1alpha1 Reason*)
	Message string // human text; never contains a secret
	// RetryAfter, for transient failures, is a server's Retry-After.
	RetryAfter time.Duration
	// Backoff asks for a retry with back-off even when the kind alone
	// would wait for a watch (nothing we watch reports the fix).
	Backoff bool
	Err     error
}

func (e *Failure) Error() string { return e.Reason + ": " + e.Message }
func (e *Failure) Unwrap() error { return e.Err }

// WaitFor is a NeedsUser failure.
func WaitFor(reason, message string) *Failure {
	return &Failure{Kind: NeedsUser, Reason: reason, Message: message}
}

// WaitForf is WaitFor with a formatted message.
func WaitForf(reason, format string, args ...any) *Failure {
	return WaitFor(reason, fmt.Sprintf(format, args...))
}

// Stalled is a Terminal failure.
func Stalled(reason, message string) *Failure {
	return &Failure{Kind: Terminal, Reason: reason, Message: message}
}

// Retryable is a Transient failure caused by err.
func Retryable(reason, message string, err error) *Failure {
	return &Failure{Kind: Transient, Reason: reason, Message: message, Err: err}
}

// AsFailure returns err's *Failure, or err as a transient failure with
// the given reason (an unexpected error: its text never holds a secret).
func AsFailure(err error, reason string) *Failure {
	var f *Failure
	if errors.As(err, &f) {
		return f
	}
	return Retryable(reason, err.Error(), err)
}

// IsUserError reports whether err is a failure only a change outside this
// reconcile fixes (NeedsUser or Terminal).
func IsUserError(err error) bool {
	var f *Failure
	return errors.As(err, &f) && f.Kind != Transient
}

// Result is the one way a failure becomes the reconcile's answer:
//   - a failure that waits for a change (NeedsUser, Terminal) comes back
//     after wait (a watch usually brings the attempt sooner), unless it
//     asks for Backoff;
//   - a server's Retry-After is honoured exactly, plus a little spread;
//   - anything else returns the error, for the controller's exponential
//     back-off (its rate limiter adds jitter).
func Result(f *Failure, wait time.Duration) (ctrl.Result, error) {
	switch {
	case f.Kind != Transient && !f.Backoff:
		return ctrl.Result{RequeueAfter: wait}, nil
	case f.RetryAfter > 0:
		return ctrl.Result{RequeueAfter: AfterRetryAfter(f.RetryAfter)}, nil
	}
	return ctrl.Result{}, f
}

// AfterRetryAfter is when to retry after a server's Retry-After (or a
// pacer's own wait): never earlier, and only a little later, since the
// wait is already exact; the small spread keeps objects that waited
// together from arriving in the same instant.
func AfterRetryAfter(d time.Duration) time.Duration {
	return d + rand.N(min(d/20, 2*time.Second)+1)
}

// SetCondition sets one condition for generation gen.
func SetCondition(conds *[]metav1.Condition, gen int64, typ string, status metav1.ConditionStatus, reason, message string) {
	meta.SetStatusCondition(conds, metav1.Condition{
		Type: typ, Status: status, Reason: reason, Message: message, ObservedGeneration: gen,
	})
}

// Ready: the object is what its spec asks for (kstatus Current).
func Ready(conds *[]metav1.Condition, gen int64, reason, message string) {
	SetCondition(conds, gen, intunedv1alpha1.ConditionReady, metav1.ConditionTrue, reason, message)
	SetCondition(conds, gen, intunedv1alpha1.ConditionReconciling, metav1.ConditionFalse, reason, "")
	SetCondition(conds, gen, intunedv1alpha1.ConditionStalled, metav1.ConditionFalse, reason, "")
}

// Progress: not there yet, and no human is needed (kstatus InProgress).
func Progress(conds *[]metav1.Condition, gen int64, reason, message string) {
	SetCondition(conds, gen, intunedv1alpha1.ConditionReady, metav1.ConditionFalse, reason, message)
	SetCondition(conds, gen, intunedv1alpha1.ConditionReconciling, metav1.ConditionTrue, reason, message)
	SetCondition(conds, gen, intunedv1alpha1.ConditionStalled, metav1.ConditionFalse, reason, "")
}

// Failed records a failure by its kind: terminal ones are Stalled (kstatus
// Failed), the others are progress that waits or retries.
func Failed(conds *[]metav1.Condition, gen int64, f *Failure) {
	if f.Kind != Terminal {
		Progress(conds, gen, f.Reason, f.Message)
		return
	}
	SetCondition(conds, gen, intunedv1alpha1.ConditionReady, metav1.ConditionFalse, f.Reason, f.Message)
	SetCondition(conds, gen, intunedv1alpha1.ConditionReconciling, metav1.ConditionFalse, f.Reason, "")
	SetCondition(conds, gen, intunedv1alpha1.ConditionStalled, metav1.ConditionTrue, f.Reason, f.Message)
}

// StatusPatch is the one deferred status write of a reconcile: it remembers
// the object as read and, at the end, patches the status subresource only
// when the status changed (a steady state writes nothing).
type StatusPatch struct {
	c      client.Client
	before client.Object
	// abandoned: a persist failed; the reconcile retries from a fresh read.
	abandoned bool
}

// StartStatusPatch remembers obj as read now.
func StartStatusPatch(c client.Client, obj client.Object) *StatusPatch {
	p := &StatusPatch{c: c}
	p.Rebase(obj)
	return p
}

// Rebase makes obj, as it is now, the base of the diff: after another
// write in the same reconcile (finalizer, intent) refreshed it.
func (p *StatusPatch) Rebase(obj client.Object) {
	p.before = obj.DeepCopyObject().(client.Object)
}

// Finish patches obj's status if it changed and folds a failed patch
// into *retErr. Meant for defer.
func (p *StatusPatch) Finish(ctx context.Context, obj client.Object, retErr *error) {
	if p.abandoned || !p.Changed(obj) {
		return
	}
	err := p.c.Status().Patch(ctx, obj, client.MergeFrom(p.before))
	if err != nil && !apierrors.IsNotFound(err) && *retErr == nil {
		*retErr = err
	}
}

// Changed reports whether obj's status differs from the base, i.e.
// whether Finish would write.
func (p *StatusPatch) Changed(obj client.Object) bool {
	data, err := client.MergeFrom(p.before).Data(obj)
	return err != nil || changesStatus(data) // cannot tell: write
}

// Persist writes obj's status now, with optimistic locking, and makes it
// the new base: for intents that must be durable before an external call
// (a create, a trigger). A conflict means a newer object exists; the
// reconcile's retry reads it.
func (p *StatusPatch) Persist(ctx context.Context, obj client.Object) error {
	patch := client.MergeFromWithOptions(p.before, client.MergeFromWithOptimisticLock{})
	if err := p.c.Status().Patch(ctx, obj, patch); err != nil {
		// obj now holds an intent that is not stored: Finish must not
		// write it without the lock.
		p.abandoned = true
		return err
	}
	p.Rebase(obj)
	return nil
}

// changesStatus reports whether a JSON merge patch touches .status.
func changesStatus(mergePatch []byte) bool {
	var m map[string]json.RawMessage
	if json.Unmarshal(mergePatch, &m) != nil {
		return true // cannot tell: patch
	}
	_, ok := m["status"]
	return ok
}

// EventRecorder is the part of the events API the reconcilers use
// (mgr.GetEventRecorder returns one).
type EventRecorder interface {
	Eventf(regarding, related runtime.Object, eventtype, reason, action, note string, args ...any)
}

// Event records a Kubernetes Event (nil rec: none). The note is passed as
// an argument, never as the format: it often quotes Intuned's or the API
// server's text, where a '%' must print as is. Notes never contain
// secrets.
func Event(rec EventRecorder, obj runtime.Object, typ, reason, action, note string) {
	if rec == nil {
		return
	}
	rec.Eventf(obj, nil, typ, reason, action, "%s", note)
}

// Now is the current time as a status field.
func Now() *metav1.Time {
	t := metav1.Now()
	return &t
}
