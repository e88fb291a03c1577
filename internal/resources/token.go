package resources

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net/url"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/intuned-operator/intuned-operator/api/v1alpha1"
)

// tokenBytes is the entropy of a generated token.
const tokenBytes = 32

// GenerateToken reads 32 random bytes from rand (crypto/rand.Reader in
// production, a fixed reader in tests) and encodes them base64url without
// padding: 43 characters that are safe in an HTTP header and a shell.
func GenerateToken(rand io.Reader) (string, error) {
	b := make([]byte, tokenBytes)
	if _, err := io.ReadFull(rand, b); err != nil {
		return "", fmt.Errorf("generate token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// Fingerprint identifies a token without revealing it: the first 16 hex
// characters of its SHA-256. It is published in status.tokenFingerprint and
// compared with IntunedJob status.sink.tokenFingerprint.
func Fingerprint(token string) string {
	if token == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])[:16]
}

// TokenData is the content of the controller-owned token Secret.
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
