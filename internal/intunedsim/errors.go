package intunedsim

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// fieldError is one validation problem, reported in the 400 body's details.
type fieldError struct {
	Path    string `json:"path"`
	Message string `json:"message"`
}

// apiError is an Intuned-style error response. Codes are the SDK's
// (bad-request, unauthorized, not-found) plus three this simulator chooses
// for statuses the SDK does not model, listed in wireschema.ErrorCodes and
// the README: conflict (409), too-many-requests (429) and
// internal-server-error (injected 5xx; a code the SDK knows from JobRun
// errors).
type apiError struct {
	status    int
	code      string
	category  string
	message   string
	retirable bool
	details   any
	// retryAfter, when > 0, is sent as the Retry-After header (seconds).
	retryAfter time.Duration
}

func badRequest(msg string, details ...fieldError) *apiError {
	e := &apiError{status: http.StatusBadRequest, code: "bad-request", category: "user", message: msg}
	if len(details) > 0 {
		e.details = details
	}
	return e
}

func notFound(msg string) *apiError {
	return &apiError{status: http.StatusNotFound, code: "not-found", category: "user", message: msg}
}

func unauthorized() *apiError {
	return &apiError{status: http.StatusUnauthorized, code: "unauthorized", category: "user",
		message: "Unauthorized: missing or invalid API key for this workspace"}
}

func conflict(msg string) *apiError {
	return &apiError{status: http.StatusConflict, code: "conflict", category: "user", message: msg}
}

func rateLimited(retryAfter time.Duration, limit int) *apiError {
	return &apiError{status: http.StatusTooManyRequests, code: "too-many-requests", category: "user",
		message:   "Rate limit exceeded: " + strconv.Itoa(limit) + " requests per minute per URI path",
		retirable: true, retryAfter: retryAfter}
}

func injectedFault(status int) *apiError {
	return &apiError{status: status, code: "internal-server-error", category: "infrastructure",
		message: "injected fault: " + http.StatusText(status), retirable: true}
}

// writeError writes e in Intuned's error body shape.
func (s *Server) writeError(w http.ResponseWriter, e *apiError) {
	if e.retryAfter > 0 {
		secs := int((e.retryAfter + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", strconv.Itoa(secs))
	}
	s.writeJSON(w, e.status, errorBody{
		Code:          e.code,
		Category:      e.category,
		Message:       e.message,
		Retirable:     e.retirable,
		Details:       e.details,
		CorrelationID: s.ids.uuid(),
	})
}

func (s *Server) writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		b = []byte(`{"code":"internal-server-error","category":"infrastructure","message":"encoding failed","retirable":true,"correlationId":""}`)
		status = http.StatusInternalServerError
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
