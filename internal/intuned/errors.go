package intuned

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// APIError is a non-2xx answer from Intuned.
type APIError struct {
	// Operation is the client method, e.g. "GetJob".
	Operation  string
	StatusCode int
	// Code, Category, Message and CorrelationID come from Intuned's error
	// body; when the body is not Intuned's JSON (a proxy's HTML page, say),
	// Code is "http-<status>" and Message a short excerpt of the body.
	Code          string
	Category      string
	Message       string
	CorrelationID string
	// Retriable is Intuned's "retirable" flag, or true for 429 and 5xx.
	Retriable bool
	// Details is Intuned's optional details value, raw.
	Details []byte
	// RetryAfter is the server's Retry-After, if it sent one.
	RetryAfter time.Duration
}

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "intuned: %s: %d %s", e.Operation, e.StatusCode, e.Code)
	if e.Message != "" {
		fmt.Fprintf(&b, ": %s", e.Message)
	}
	if e.CorrelationID != "" {
		fmt.Fprintf(&b, " (correlationId %s)", e.CorrelationID)
	}
	return b.String()
}

// asAPIError returns the *APIError in err's chain, or nil.
func asAPIError(err error) *APIError {
	var e *APIError
	if errors.As(err, &e) {
		return e
	}
	return nil
}

// IsNotFound reports whether err is a 404 (unknown project, Job or JobRun).
func IsNotFound(err error) bool {
	e := asAPIError(err)
	return e != nil && (e.StatusCode == http.StatusNotFound || e.Code == "not-found")
}

// IsConflict reports whether err says the Job already exists. Intuned does not
// document the status of a duplicate create; it is 409 or a 400 whose message
// says so, and both count.
func IsConflict(err error) bool {
	e := asAPIError(err)
	if e == nil {
		return false
	}
	if e.StatusCode == http.StatusConflict || e.Code == "conflict" || e.Code == "already-exists" {
		return true
	}
	if e.StatusCode == http.StatusBadRequest {
		m := strings.ToLower(e.Message)
		return strings.Contains(m, "already exists") || strings.Contains(m, "duplicate")
	}
	return false
}

// IsBadRequest reports whether err is a 400 (Intuned rejected the input).
func IsBadRequest(err error) bool {
	e := asAPIError(err)
	return e != nil && e.StatusCode == http.StatusBadRequest
}

// IsUnauthorized reports whether err is a 401 or 403 (wrong API key or
// workspace).
func IsUnauthorized(err error) bool {
	e := asAPIError(err)
	return e != nil && (e.StatusCode == http.StatusUnauthorized || e.StatusCode == http.StatusForbidden)
}

// IsRateLimited reports whether err is a 429, or a *ThrottledError (the
// client held the request back itself).
func IsRateLimited(err error) bool {
	var t *ThrottledError
	if errors.As(err, &t) {
		return true
	}
	e := asAPIError(err)
	return e != nil && e.StatusCode == http.StatusTooManyRequests
}

// RetryAfter returns how long the caller should wait before trying again, when
// err says so (a server's Retry-After or a *ThrottledError), else 0.
func RetryAfter(err error) time.Duration {
	var t *ThrottledError
	if errors.As(err, &t) {
		return t.RetryAfter
	}
	if e := asAPIError(err); e != nil {
		return e.RetryAfter
	}
	return 0
}

// ThrottledError means the client did not send a request because the path's
// budget of 20 per minute, or a server's Retry-After, would have kept it
// waiting longer than RetryOptions.MaxWait. Nothing reached Intuned.
type ThrottledError struct {
	Operation  string
	RetryAfter time.Duration
}

func (e *ThrottledError) Error() string {
	return fmt.Sprintf("intuned: %s: rate limited by the client; next request allowed in %s", e.Operation, e.RetryAfter)
}

// IsRetriable reports whether trying the same call again later may succeed:
// 429, 5xx, Intuned's retirable flag, or a transport error (timeout,
// connection failure).
func IsRetriable(err error) bool {
	if err == nil {
		return false
	}
	if e := asAPIError(err); e != nil {
		return e.Retriable
	}
	var t *TransportError
	var th *ThrottledError
	return errors.As(err, &t) || errors.As(err, &th)
}

// TransportError is a failure to get any HTTP answer (connection refused,
// timeout, reset). Sent says whether the request may have reached Intuned:
// when true the caller cannot know whether a create or trigger happened.
type TransportError struct {
	Operation string
	Sent      bool
	msg       string // already free of the API key
	err       error
}

func (e *TransportError) Error() string { return e.msg }
func (e *TransportError) Unwrap() error { return e.err }

// IsAmbiguous reports whether err leaves it unknown whether the call took
// effect on Intuned: a timeout or broken connection after the request may have
// been sent, or a 5xx (the server may have acted before failing). After such
// an error from CreateJob or TriggerJob the caller must re-observe before
// acting again.
func IsAmbiguous(err error) bool {
	if e := asAPIError(err); e != nil {
		return e.StatusCode >= 500
	}
	var t *TransportError
	return errors.As(err, &t) && t.Sent
}

// IsManagedInCode reports whether err is Intuned refusing to update or
// delete a Job because it is defined in code (its jobs-as-code files,
// origin CODE). Intuned documents the refusal but not its status or body,
// so this recognises any 4xx (400, 403, 409, ...) whose message or details
// say "origin CODE" or that the Job is defined/managed in code; intuned-sim
// answers 400 bad-request with such a message.
func IsManagedInCode(err error) bool {
	e := asAPIError(err)
	if e == nil || e.StatusCode < 400 || e.StatusCode >= 500 || e.StatusCode == http.StatusNotFound || e.StatusCode == http.StatusTooManyRequests {
		return false
	}
	text := strings.ToLower(e.Message + " " + string(e.Details))
	for _, s := range []string{"origin code", `"origin":"code"`, "defined in code", "managed in code", "jobs-as-code", "job file"} {
		if strings.Contains(text, s) {
			return true
		}
	}
	return false
}
