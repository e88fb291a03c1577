package controller

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
)

// This file is the one status and error model of both reconcilers.
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

// failureKind is the error taxonomy: what a failed reconcile means for the
// conditions and for when the next attempt comes.
type failureKind int

const (
	// transient: the world may fix itself (5xx, timeouts, 429, API-server
	// errors). Reconciling=True; retried with back-off (or after a
	// server's Retry-After).
	transient failureKind = iota
	// needsUser: waiting for something outside this reconcile to change —
	// a Secret to appear, spec.adopt, a project to be deployed, a
	// WebhookReceiver to become Ready. Reconciling=True, not Stalled: the
	// change is expected and a watch (or the poll) brings the next attempt.
	needsUser
	// terminal: retrying cannot help until a human changes the spec or
	// the credentials (invalid spec, 400, 401, a name conflict).
	// Stalled=True.
	terminal
)

// failure is every way a reconcile can end other than "done".
type failure struct {
	kind    failureKind
	reason  string // condition reason (api/v1alpha1 Reason*)
	message string // human text; never contains a secret
	// retryAfter, for transient failures, is a server's Retry-After.
	retryAfter time.Duration
	// backoff asks for a retry with back-off even when the kind alone
	// would wait for a watch (nothing we watch reports the fix).
	backoff bool
	err     error
}

func (e *failure) Error() string { return e.reason + ": " + e.message }
func (e *failure) Unwrap() error { return e.err }

// waitFor is a needsUser failure.
func waitFor(reason, message string) *failure {
	return &failure{kind: needsUser, reason: reason, message: message}
}

// stalled is a terminal failure.
func stalled(reason, message string) *failure {
	return &failure{kind: terminal, reason: reason, message: message}
}

// retryable is a transient failure caused by err.
func retryable(reason, message string, err error) *failure {
	return &failure{kind: transient, reason: reason, message: message, err: err}
}

// asFailure returns err's *failure, or err as a transient failure with
// the given reason (an unexpected error: its text never holds a secret).
func asFailure(err error, reason string) *failure {
	var f *failure
	if errors.As(err, &f) {
		return f
	}
	return retryable(reason, err.Error(), err)
}

// setCondition sets one condition for generation gen.
func setCondition(conds *[]metav1.Condition, gen int64, typ string, status metav1.ConditionStatus, reason, message string) {
	meta.SetStatusCondition(conds, metav1.Condition{
		Type: typ, Status: status, Reason: reason, Message: message, ObservedGeneration: gen,
	})
}

// reportReady: the object is what its spec asks for (kstatus Current).
func reportReady(conds *[]metav1.Condition, gen int64, reason, message string) {
	setCondition(conds, gen, intunedv1alpha1.ConditionReady, metav1.ConditionTrue, reason, message)
	setCondition(conds, gen, intunedv1alpha1.ConditionReconciling, metav1.ConditionFalse, reason, "")
	setCondition(conds, gen, intunedv1alpha1.ConditionStalled, metav1.ConditionFalse, reason, "")
}

// reportProgress: not there yet, and no human is needed (kstatus
// InProgress).
func reportProgress(conds *[]metav1.Condition, gen int64, reason, message string) {
	setCondition(conds, gen, intunedv1alpha1.ConditionReady, metav1.ConditionFalse, reason, message)
	setCondition(conds, gen, intunedv1alpha1.ConditionReconciling, metav1.ConditionTrue, reason, message)
	setCondition(conds, gen, intunedv1alpha1.ConditionStalled, metav1.ConditionFalse, reason, "")
}

// reportFailure records a failure by its kind: terminal ones are Stalled
// (kstatus Failed), the others are progress that waits or retries.
func reportFailure(conds *[]metav1.Condition, gen int64, f *failure) {
	if f.kind != terminal {
		reportProgress(conds, gen, f.reason, f.message)
		return
	}
	setCondition(conds, gen, intunedv1alpha1.ConditionReady, metav1.ConditionFalse, f.reason, f.message)
	setCondition(conds, gen, intunedv1alpha1.ConditionReconciling, metav1.ConditionFalse, f.reason, "")
	setCondition(conds, gen, intunedv1alpha1.ConditionStalled, metav1.ConditionTrue, f.reason, f.message)
}

// statusPatch is the one deferred status write of a reconcile: it remembers
// the object as read and, at the end, patches the status subresource only
// when the status changed (a steady state writes nothing).
type statusPatch struct {
	c      client.Client
	before client.Object
	// abandoned: a persist failed; the reconcile retries from a fresh read.
	abandoned bool
}

func startStatusPatch(c client.Client, obj client.Object) *statusPatch {
	p := &statusPatch{c: c}
	p.rebase(obj)
	return p
}

// rebase makes obj, as it is now, the base of the diff: after another
// write in the same reconcile (finalizer, intent) refreshed it.
func (p *statusPatch) rebase(obj client.Object) {
	p.before = obj.DeepCopyObject().(client.Object)
}

// finish patches obj's status if it changed and folds a failed patch
// into *retErr. Meant for defer.
func (p *statusPatch) finish(ctx context.Context, obj client.Object, retErr *error) {
	if p.abandoned {
		return
	}
	patch := client.MergeFrom(p.before)
	data, err := patch.Data(obj)
	if err == nil && !changesStatus(data) {
		return
	}
	if err == nil {
		err = p.c.Status().Patch(ctx, obj, patch)
	}
	if err != nil && !apierrors.IsNotFound(err) && *retErr == nil {
		*retErr = err
	}
}

// persist writes obj's status now, with optimistic locking, and makes it
// the new base: for intents that must be durable before an external call
// (a create, a trigger). A conflict means a newer object exists; the
// reconcile's retry reads it.
func (p *statusPatch) persist(ctx context.Context, obj client.Object) error {
	patch := client.MergeFromWithOptions(p.before, client.MergeFromWithOptimisticLock{})
	if err := p.c.Status().Patch(ctx, obj, patch); err != nil {
		// obj now holds an intent that is not stored: finish must not
		// write it without the lock.
		p.abandoned = true
		return err
	}
	p.rebase(obj)
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

// recordEvent records a Kubernetes Event (nil rec: none). The note is
// passed as an argument, never as the format: it often quotes Intuned's or
// the API server's text, where a '%' must print as is.
func recordEvent(rec EventRecorder, obj runtime.Object, typ, reason, action, note string) {
	if rec == nil {
		return
	}
	rec.Eventf(obj, nil, typ, reason, action, "%s", note)
}
