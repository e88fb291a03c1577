package controller

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/resources"
)

// DefaultTokenPropagationDelay is how long a new token is staged before it
// becomes current: kubelet refreshes mounted Secrets on its periodic Pod
// sync (1 minute by default, plus jitter), and the receiver re-reads its
// files every 2 seconds.
const DefaultTokenPropagationDelay = 90 * time.Second

// reconcileToken keeps the controller-owned token Secret and returns what
// it now holds (see docs/token-rotation.md). A rotation has three steps:
//
//  1. stage: the next token goes into previous-token (the receiver accepts
//     it from now on) while token keeps the current one, so IntunedJobs go
//     on pushing the current token;
//  2. after the propagation delay, swap: token = next, previous-token = old;
//     IntunedJobs push the new token, which every Pod already accepts;
//  3. drop previous-token once every IntunedJob referencing this receiver
//     reports the new fingerprint in status.sink.tokenFingerprint.
//
// The next token is tokenSecretRef's value, or a generated one (a first
// token, or a new one when intuned.io/rotate-token changes). A new rotation
// waits until step 3 of the previous one is done.
//
// When the user's Secret is missing it returns the Secret's existing content
// (the Pods keep working with it) together with a *failure.
func (r *WebhookReceiverReconciler) reconcileToken(ctx context.Context, whr *intunedv1alpha1.WebhookReceiver) (*tokenState, error) {
	key := client.ObjectKey{Namespace: whr.Namespace, Name: resources.TokenSecretName(whr)}
	var cur corev1.Secret
	exists := true
	// Uncached: the rotation decision must see our last write.
	if err := r.APIReader.Get(ctx, key, &cur); err != nil {
		if !apierrors.IsNotFound(err) {
			return nil, err
		}
		exists = false
	}
	if exists && !metav1.IsControlledBy(&cur, whr) {
		return nil, conflictError(
			"Secret %s already exists and is not owned by this WebhookReceiver; the operator keeps the receiver's token there, so rename or delete it",
			key.Name)
	}
	st := &tokenState{}
	if exists {
		st.TokenData = resources.TokenData{
			Token:           string(cur.Data[intunedv1alpha1.TokenSecretKeyToken]),
			PreviousToken:   string(cur.Data[intunedv1alpha1.TokenSecretKeyPreviousToken]),
			ReadToken:       string(cur.Data[intunedv1alpha1.TokenSecretKeyReadToken]),
			RotationHandled: cur.Annotations[resources.AnnotationRotationHandled],
			StagedAt:        cur.Annotations[resources.AnnotationTokenStagedAt],
			CaughtUpAt:      cur.Annotations[resources.AnnotationJobsCaughtUpAt],
		}
	}
	want := &st.TokenData
	if want.StagedAt != "" && want.PreviousToken == "" {
		want.StagedAt = "" // staged token removed by hand: rotation cancelled
	}

	// Step 3 of a finished rotation first: it may unblock a new one.
	if err := r.dropPreviousIfDone(ctx, whr, st); err != nil {
		return nil, err
	}

	next, err := r.nextToken(ctx, whr, st)
	if err != nil {
		if exists {
			return st, err
		}
		return nil, err
	}
	r.moveTowards(st, next)

	if want.ReadToken == "" {
		if want.ReadToken, err = resources.GenerateToken(r.random()); err != nil {
			return nil, err
		}
	}
	// A swap in this reconcile starts step 3 for the new token.
	if err := r.dropPreviousIfDone(ctx, whr, st); err != nil {
		return nil, err
	}

	secret := resources.TokenSecret(whr, *want)
	if exists {
		// Optimistic lock: if the Secret changed since we read it, the apply
		// fails and the next reconcile decides again from the new content.
		secret.ResourceVersion = cur.ResourceVersion
	}
	if err := r.apply(ctx, secret); err != nil {
		return nil, err
	}
	return st, nil
}

// nextToken is the token that should be current: the user's, the staged
// one, or a newly generated one.
func (r *WebhookReceiverReconciler) nextToken(ctx context.Context, whr *intunedv1alpha1.WebhookReceiver, st *tokenState) (string, error) {
	if ref := whr.Spec.TokenSecretRef; ref != nil {
		return r.userToken(ctx, whr.Namespace, ref)
	}
	have := st.TokenData
	rotate := whr.Annotations[intunedv1alpha1.AnnotationRotateToken]
	switch {
	case have.StagedAt != "":
		return have.PreviousToken, nil
	case have.Token != "" && (rotate == "" || rotate == have.RotationHandled):
		return have.Token, nil
	case have.Token != "" && have.PreviousToken != "":
		st.note = fmt.Sprintf("rotation %q waits until the previous rotation has finished", rotate)
		return have.Token, nil
	}
	tok, err := resources.GenerateToken(r.random())
	if err != nil {
		return "", err
	}
	// Recorded in the same write as the staged token: one annotation value
	// never rotates twice.
	st.RotationHandled = rotate
	return tok, nil
}

// moveTowards takes one step from the Secret's content towards next being
// the current token.
func (r *WebhookReceiverReconciler) moveTowards(st *tokenState, next string) {
	want := &st.TokenData
	now, delay := r.now(), r.delay()
	switch {
	case next == "":
		// Nothing to move to (cannot happen with a valid Secret); keep all.
	case next == want.Token:
		if want.StagedAt != "" { // the user went back before the swap
			want.PreviousToken, want.StagedAt = "", ""
		}
	case want.Token == "":
		// The first token: nothing has been pushed to Intuned yet.
		want.Token = next
	case want.StagedAt == "" && want.PreviousToken != "":
		st.note = "a new token waits until the previous rotation has finished"
	case delay < 0:
		// Staging disabled: swap at once.
		want.PreviousToken, want.Token, want.StagedAt = want.Token, next, ""
	case want.StagedAt == "" || want.PreviousToken != next:
		want.PreviousToken, want.StagedAt = next, now.UTC().Format(time.RFC3339)
		st.requeueIn(delay)
	default:
		stagedAt, err := time.Parse(time.RFC3339, want.StagedAt)
		if err != nil {
			stagedAt = now // unreadable (edited by hand): start over
			want.StagedAt = now.UTC().Format(time.RFC3339)
		}
		if remaining := stagedAt.Add(delay).Sub(now); remaining > 0 {
			st.requeueIn(remaining)
			return
		}
		want.PreviousToken, want.Token, want.StagedAt = want.Token, next, ""
	}
}

// DefaultPreviousTokenGrace keeps the previous token after every job
// carries the new one: a JobRun keeps the sink it started with, and
// Intuned retries a failed delivery for up to an hour.
const DefaultPreviousTokenGrace = time.Hour

// dropPreviousIfDone removes previous-token once nobody can still send it:
// every IntunedJob referencing the receiver carries the current token, no
// JobRun that may have started with the old sink is still running, and the
// grace window (Intuned's retry window) after the later of "all caught up"
// and the end of such JobRuns has passed. Otherwise it records why not.
func (r *WebhookReceiverReconciler) dropPreviousIfDone(ctx context.Context, whr *intunedv1alpha1.WebhookReceiver, st *tokenState) error {
	st.jobsBehind, st.runsInFlight, st.previousUntil = nil, nil, time.Time{}
	if st.StagedAt != "" || st.PreviousToken == "" {
		st.CaughtUpAt = ""
		return nil
	}
	jobs, err := r.referencingJobs(ctx, whr)
	if err != nil {
		return err
	}
	current := resources.Fingerprint(st.Token)
	for _, j := range jobs {
		if jobFingerprint(&j) != current {
			st.jobsBehind = append(st.jobsBehind, j.Name)
		}
	}
	if len(st.jobsBehind) > 0 {
		st.CaughtUpAt = ""
		return nil
	}
	grace := r.PreviousTokenGrace
	if grace == 0 {
		grace = DefaultPreviousTokenGrace
	}
	if grace < 0 {
		st.PreviousToken, st.CaughtUpAt = "", ""
		return nil
	}
	now := r.now()
	caughtUp, err := time.Parse(time.RFC3339, st.CaughtUpAt)
	if err != nil {
		caughtUp = now
		st.CaughtUpAt = now.UTC().Format(time.RFC3339)
	}
	until := caughtUp.Add(grace)
	for _, j := range jobs {
		run := j.Status.LastJobRun
		if run == nil || (run.Start != nil && run.Start.After(caughtUp)) {
			continue // no run, or one that started with the new sink
		}
		if run.End == nil {
			st.runsInFlight = append(st.runsInFlight, j.Name)
			continue
		}
		if t := run.End.Add(grace); t.After(until) {
			until = t
		}
	}
	if len(st.runsInFlight) == 0 && !now.Before(until) {
		st.PreviousToken, st.CaughtUpAt = "", ""
		return nil
	}
	st.previousUntil = until
	if len(st.runsInFlight) == 0 {
		st.requeueIn(until.Sub(now))
	}
	return nil
}

// tokenState is the token Secret's content after a reconcile.
type tokenState struct {
	resources.TokenData
	// jobsBehind are the IntunedJobs still on the previous token.
	jobsBehind []string
	// note explains a rotation that is waiting (for the Ready message).
	note string
	// runsInFlight are IntunedJobs whose last JobRun may still send the
	// previous token; previousUntil is when the grace window ends.
	runsInFlight  []string
	previousUntil time.Time
	// requeueAfter is when the next step is due (staged token becomes
	// current, grace window ends).
	requeueAfter time.Duration
}

// requeueIn asks for a reconcile after d (the earliest request wins).
func (st *tokenState) requeueIn(d time.Duration) {
	if d <= 0 {
		d = time.Second
	}
	if st.requeueAfter == 0 || d < st.requeueAfter {
		st.requeueAfter = d
	}
}

// fingerprints returns the status fingerprints: current, previous (after a
// swap) and next (while staged).
func (st *tokenState) fingerprints() (current, previous, next string) {
	current = resources.Fingerprint(st.Token)
	if st.StagedAt != "" {
		return current, "", resources.Fingerprint(st.PreviousToken)
	}
	return current, resources.Fingerprint(st.PreviousToken), ""
}

// promotionTime is when the staged token becomes current (RFC 3339).
func (st *tokenState) promotionTime(delay time.Duration) string {
	t, err := time.Parse(time.RFC3339, st.StagedAt)
	if err != nil {
		return "the next reconcile"
	}
	return t.Add(delay).UTC().Format(time.RFC3339)
}

func (r *WebhookReceiverReconciler) delay() time.Duration {
	if r.TokenPropagationDelay == 0 {
		return DefaultTokenPropagationDelay
	}
	return r.TokenPropagationDelay
}

func (r *WebhookReceiverReconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// userToken reads the token from the user's Secret. Surrounding whitespace
// (a trailing newline from `kubectl create secret --from-file`) is removed:
// the receiver trims its files too, and the IntunedJob controller sends the
// token in a header.
func (r *WebhookReceiverReconciler) userToken(ctx context.Context, namespace string, ref *intunedv1alpha1.TokenSecretReference) (string, error) {
	k := ref.Key
	if k == "" {
		k = intunedv1alpha1.DefaultTokenSecretKey
	}
	var s corev1.Secret
	if err := r.Get(ctx, client.ObjectKey{Namespace: namespace, Name: ref.Name}, &s); err != nil {
		if apierrors.IsNotFound(err) {
			return "", needsUserf(intunedv1alpha1.ReasonSecretNotFound,
				"token Secret %s (spec.tokenSecretRef) not found", ref.Name)
		}
		return "", err
	}
	tok := strings.TrimSpace(string(s.Data[k]))
	if tok == "" {
		return "", needsUserf(intunedv1alpha1.ReasonSecretNotFound,
			"token Secret %s has no key %q or it is empty (spec.tokenSecretRef)", ref.Name, k)
	}
	for _, c := range []byte(tok) {
		if c < 0x20 || c > 0x7e {
			return "", invalidSpecf(
				"the token in Secret %s key %q must be printable ASCII (it is sent in an HTTP header)", ref.Name, k)
		}
	}
	return tok, nil
}

// referencingJobs lists the IntunedJobs whose sink references this
// receiver, sorted by name.
func (r *WebhookReceiverReconciler) referencingJobs(ctx context.Context, whr *intunedv1alpha1.WebhookReceiver) ([]intunedv1alpha1.IntunedJob, error) {
	var jobs intunedv1alpha1.IntunedJobList
	if err := r.List(ctx, &jobs, client.InNamespace(whr.Namespace),
		client.MatchingFields{IndexIntunedJobReceiverRef: whr.Name}); err != nil {
		return nil, fmt.Errorf("list IntunedJobs referencing the receiver: %w", err)
	}
	sort.Slice(jobs.Items, func(i, k int) bool { return jobs.Items[i].Name < jobs.Items[k].Name })
	return jobs.Items, nil
}
