// Package token holds the WebhookReceiver's ingest token: how one is made,
// how it is named without being revealed, and the rotation state machine
// (Step), which is pure: the controller reads the token Secret and the
// referencing IntunedJobs, calls Step, and writes what it returns.
package token

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
)

// entropy is the number of random bytes of a generated token.
const entropy = 32

// Generate reads 32 random bytes from rand (crypto/rand.Reader in
// production) and encodes them base64url without padding: 43 characters
// that are safe in an HTTP header and a shell.
func Generate(rand io.Reader) (string, error) {
	b := make([]byte, entropy)
	if _, err := io.ReadFull(rand, b); err != nil {
		return "", fmt.Errorf("generate token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// Fingerprint identifies a token without revealing it: the first 16 hex
// characters of its SHA-256 ("" for no token). The WebhookReceiver
// publishes it in status.tokenFingerprint, an IntunedJob the one it pushed
// to Intuned in status.sink.tokenFingerprint; a rotation ends when they
// agree.
func Fingerprint(token string) string {
	if token == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])[:16]
}
