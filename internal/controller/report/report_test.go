package report

import (
	"errors"
	"testing"
	"time"
)

// TestResult: every reconciler turns a failure into its next attempt the
// same way.
func TestResult(t *testing.T) {
	const wait = time.Minute
	boom := errors.New("boom")
	tests := []struct {
		name      string
		f         *Failure
		wantErr   bool
		wantAfter time.Duration // minimum RequeueAfter when no error
	}{
		{"transient: back-off", Retryable("SyncFailed", "5xx", boom), true, 0},
		{"transient with Retry-After: exactly then", &Failure{Kind: Transient, Reason: "RateLimited", RetryAfter: 7 * time.Second}, false, 7 * time.Second},
		{"waiting for the user: the poll (or a watch)", WaitFor("SecretNotFound", "missing"), false, wait},
		{"stalled: the poll (or a watch)", Stalled("InvalidSpec", "bad"), false, wait},
		{"stalled but nothing watched reports the fix: back-off", &Failure{Kind: Terminal, Reason: "ResourceConflict", Backoff: true}, true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := Result(tt.f, wait)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want an error: %v", err, tt.wantErr)
			}
			if err == nil && (res.RequeueAfter < tt.wantAfter || res.RequeueAfter > tt.wantAfter+2*time.Second) {
				t.Errorf("RequeueAfter = %s, want %s (plus a little spread)", res.RequeueAfter, tt.wantAfter)
			}
		})
	}
}
