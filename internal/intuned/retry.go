package intuned

import (
	"errors"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// RetryOptions bound the client's retries. Zero values take the defaults.
type RetryOptions struct {
	// MaxAttempts is the total number of attempts, first one included
	// (default 4; 1 turns retries off).
	MaxAttempts int
	// BaseDelay is the back-off before the first retry (default 500 ms); it
	// doubles per retry up to MaxDelay (default 30 s). Each sleep is drawn
	// uniformly from [0, that value] ("full jitter"), so callers that failed
	// together do not retry together.
	BaseDelay time.Duration
	MaxDelay  time.Duration
	// MaxWait is the longest the client waits inside one call, for the
	// Pacer or for a server's Retry-After (default 2 minutes). Beyond it the
	// call ends with a *ThrottledError or the *APIError, both carrying the
	// delay (see RetryAfter), so the caller can requeue instead of holding a
	// worker; the path stays blocked in the Pacer either way.
	MaxWait time.Duration
}

func (r RetryOptions) withDefaults() RetryOptions {
	if r.MaxAttempts <= 0 {
		r.MaxAttempts = 4
	}
	if r.BaseDelay <= 0 {
		r.BaseDelay = 500 * time.Millisecond
	}
	if r.MaxDelay <= 0 {
		r.MaxDelay = 30 * time.Second
	}
	if r.MaxDelay < r.BaseDelay {
		r.MaxDelay = r.BaseDelay
	}
	if r.MaxWait <= 0 {
		r.MaxWait = 2 * time.Minute
	}
	return r
}

// backoff returns the sleep before retry number n (1 for the first retry):
// uniform in [0, min(MaxDelay, BaseDelay*2^(n-1))].
func (r RetryOptions) backoff(n int) time.Duration {
	d := r.BaseDelay
	for i := 1; i < n && d < r.MaxDelay; i++ {
		d *= 2
	}
	d = min(d, r.MaxDelay)
	return rand.N(d + 1)
}

// shouldRetry decides whether a failed attempt is tried again.
//
// Idempotent calls (GET, PUT, DELETE, pause, resume, terminate) are retried
// on 429, any 5xx and transport errors: repeating them cannot change the
// outcome. (A repeated DELETE or pause may answer 404 or 400 because the
// first one took effect; callers treat those answers as "already done".)
//
// CreateJob and TriggerJob are not idempotent: a second trigger starts a
// second JobRun, and Intuned has no idempotency key. They are retried only
// when the request provably did not take effect:
//   - 429: the rate limiter rejected it before any work was done;
//   - a dial error: the connection was never made, so nothing was sent.
//
// (Go's http.Transport itself re-sends a request on a reused connection only
// when nothing of it was written.) A 5xx, a timeout or a connection broken
// after sending is ambiguous and goes back to the caller, which re-observes
// Intuned (Get Job, Get Job Runs) before deciding to act again.
func shouldRetry(idempotent bool, err error) bool {
	if e := asAPIError(err); e != nil {
		if e.StatusCode == http.StatusTooManyRequests {
			return true
		}
		return idempotent && e.StatusCode >= 500
	}
	var t *TransportError
	if errors.As(err, &t) {
		return idempotent || !t.Sent
	}
	return false
}

// notSent reports whether a transport error happened before any byte of the
// request could reach the server.
func notSent(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// parseRetryAfter reads a Retry-After header: delay-seconds or an HTTP date.
func parseRetryAfter(h string, now time.Time) (time.Duration, bool) {
	h = strings.TrimSpace(h)
	if h == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(h, 10, 64); err == nil {
		const maxSecs = 24 * 60 * 60 // a day; guards against overflow
		return time.Duration(min(max(secs, 0), maxSecs)) * time.Second, true
	}
	if t, err := http.ParseTime(h); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}
