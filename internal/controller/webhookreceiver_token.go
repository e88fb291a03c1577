package controller

import (
	"context"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/resources"
)

// reconcileToken keeps the controller-owned token Secret and returns what
// it now holds (see docs/token-rotation.md):
//
//   - the current token is tokenSecretRef's value, or a generated one kept
//     across reconciles (regenerated when intuned.io/rotate-token changes);
//   - when the current token changes, the old one moves to previous-token,
//     which the receiver keeps accepting;
//   - previous-token is dropped once every IntunedJob referencing this
//     receiver reports the current fingerprint in status.sink.tokenFingerprint.
//
// When the user's Secret is missing it returns the Secret's existing content
// (the Pods keep working with it) together with a *reconcileError.
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
	var have resources.TokenData
	if exists {
		have = resources.TokenData{
			Token:           string(cur.Data[intunedv1alpha1.TokenSecretKeyToken]),
			PreviousToken:   string(cur.Data[intunedv1alpha1.TokenSecretKeyPreviousToken]),
			ReadToken:       string(cur.Data[intunedv1alpha1.TokenSecretKeyReadToken]),
			RotationHandled: cur.Annotations[resources.AnnotationRotationHandled],
		}
	}
	want := have

	if ref := whr.Spec.TokenSecretRef; ref != nil {
		tok, err := r.userToken(ctx, whr.Namespace, ref)
		if err != nil {
			if exists {
				return &tokenState{TokenData: have}, err
			}
			return nil, err
		}
		want.Token = tok
	} else {
		rotate := whr.Annotations[intunedv1alpha1.AnnotationRotateToken]
		if want.Token == "" || (rotate != "" && rotate != have.RotationHandled) {
			tok, err := resources.GenerateToken(r.random())
			if err != nil {
				return nil, err
			}
			want.Token = tok
			// Recorded in the same write as the new token: one annotation
			// value never rotates twice.
			want.RotationHandled = rotate
		}
	}
	if have.Token != "" && want.Token != have.Token {
		want.PreviousToken = have.Token
	}
	if want.ReadToken == "" {
		tok, err := resources.GenerateToken(r.random())
		if err != nil {
			return nil, err
		}
		want.ReadToken = tok
	}
	var behind []string
	if want.PreviousToken != "" {
		var err error
		if behind, err = r.jobsBehind(ctx, whr, resources.Fingerprint(want.Token)); err != nil {
			return nil, err
		}
		if len(behind) == 0 {
			want.PreviousToken = ""
		}
	}

	secret := resources.TokenSecret(whr, want)
	if exists {
		// Optimistic lock: if the Secret changed since we read it, the apply
		// fails and the next reconcile decides again from the new content.
		secret.ResourceVersion = cur.ResourceVersion
	}
	if err := r.apply(ctx, secret); err != nil {
		return nil, err
	}
	return &tokenState{TokenData: want, jobsBehind: behind}, nil
}

// tokenState is the token Secret's content after a reconcile.
type tokenState struct {
	resources.TokenData
	// jobsBehind are the IntunedJobs still on the previous token.
	jobsBehind []string
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
			return "", userError(intunedv1alpha1.ReasonSecretNotFound,
				"token Secret %s (spec.tokenSecretRef) not found", ref.Name)
		}
		return "", err
	}
	tok := strings.TrimSpace(string(s.Data[k]))
	if tok == "" {
		return "", userError(intunedv1alpha1.ReasonSecretNotFound,
			"token Secret %s has no key %q or it is empty (spec.tokenSecretRef)", ref.Name, k)
	}
	for _, c := range []byte(tok) {
		if c < 0x20 || c > 0x7e {
			return "", userError(intunedv1alpha1.ReasonInvalidSpec,
				"the token in Secret %s key %q must be printable ASCII (it is sent in an HTTP header)", ref.Name, k)
		}
	}
	return tok, nil
}

// jobsBehind lists the IntunedJobs referencing this receiver whose Intuned
// sink does not carry the current token yet (sorted names).
func (r *WebhookReceiverReconciler) jobsBehind(ctx context.Context, whr *intunedv1alpha1.WebhookReceiver, fingerprint string) ([]string, error) {
	var jobs intunedv1alpha1.IntunedJobList
	if err := r.List(ctx, &jobs, client.InNamespace(whr.Namespace),
		client.MatchingFields{IndexIntunedJobReceiverRef: whr.Name}); err != nil {
		return nil, fmt.Errorf("list IntunedJobs referencing the receiver: %w", err)
	}
	var behind []string
	for i := range jobs.Items {
		if jobFingerprint(&jobs.Items[i]) != fingerprint {
			behind = append(behind, jobs.Items[i].Name)
		}
	}
	sort.Strings(behind)
	return behind, nil
}
