package resources

import (
	"io"
	"net/url"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/token"
)

// GenerateToken is token.Generate (kept for the builders' callers).
func GenerateToken(rand io.Reader) (string, error) { return token.Generate(rand) }

// Fingerprint is token.Fingerprint: one implementation, so the
// WebhookReceiver's and the IntunedJob's fingerprints always agree.
func Fingerprint(tok string) string { return token.Fingerprint(tok) }

// TokenData is the content of the controller-owned token Secret, as
// stored (internal/token.State names each token for what it is).
type TokenData struct {
	// Token is the current ingest token (key "token").
	Token string
	// PreviousToken is a second token the receiver accepts (key
	// "previous-token"): after a rotation the old token, until every
	// IntunedJob carries the new one; while StagedAt is set, the next
	// token, which the Pods learn before any IntunedJob pushes it.
	PreviousToken string
	// StagedAt (RFC 3339) is set while PreviousToken holds the next token.
	StagedAt string
	// CaughtUpAt (RFC 3339) is when every IntunedJob was first seen carrying
	// the current token; the previous one is kept for a grace window after
	// it, since JobRuns started earlier still send the old token.
	CaughtUpAt string
	// ReadToken guards the receiver's read API (key "read-token").
	ReadToken string
	// RotationHandled is the last intuned.io/rotate-token value acted on.
	// It lives on the Secret, in the same write as the new token, so a crash
	// between "rotate" and "record" can never rotate twice and lose the
	// token Intuned still sends.
	RotationHandled string
}

// TokenSecret is the Secret the receiver Pods mount at TokenDir. The
// receiver re-reads the files every few seconds, so a change here reaches
// running Pods without a restart (kubelet refreshes Secret volumes within
// about a minute) and the Pod template needs no checksum annotation.
func TokenSecret(whr *v1alpha1.WebhookReceiver, d TokenData) *corev1.Secret {
	s := &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: objectMeta(whr, TokenSecretName(whr)),
		Type:       corev1.SecretTypeOpaque,
		Data: map[string][]byte{
			v1alpha1.TokenSecretKeyToken:     []byte(d.Token),
			v1alpha1.TokenSecretKeyReadToken: []byte(d.ReadToken),
		},
	}
	if d.PreviousToken != "" {
		s.Data[v1alpha1.TokenSecretKeyPreviousToken] = []byte(d.PreviousToken)
	}
	if d.RotationHandled != "" || d.StagedAt != "" || d.CaughtUpAt != "" {
		s.Annotations = map[string]string{}
	}
	if d.CaughtUpAt != "" {
		s.Annotations[AnnotationJobsCaughtUpAt] = d.CaughtUpAt
	}
	if d.RotationHandled != "" {
		s.Annotations[AnnotationRotationHandled] = d.RotationHandled
	}
	if d.StagedAt != "" {
		s.Annotations[AnnotationTokenStagedAt] = d.StagedAt
	}
	return s
}

// AnnotationJobsCaughtUpAt on the token Secret records when every
// referencing IntunedJob first carried the current token (RFC 3339).
const AnnotationJobsCaughtUpAt = "intuned.io/jobs-caught-up-at"

// AnnotationTokenStagedAt on the token Secret marks previous-token as the
// next token, staged at this time (RFC 3339).
const AnnotationTokenStagedAt = "intuned.io/token-staged-at"

// AnnotationRotationHandled on the token Secret records the last
// intuned.io/rotate-token value that produced a new token.
const AnnotationRotationHandled = "intuned.io/rotate-token-handled"

// urlPath returns the path of an absolute URL, or "" when it has none.
func urlPath(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return u.Path
}
