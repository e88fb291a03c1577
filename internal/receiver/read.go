package receiver

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/intuned-operator/intuned-operator/internal/receiver/store"
)

const (
	defaultListLimit = 100
	maxListLimit     = 1000
)

// listedDelivery is one NDJSON line of GET /v1/deliveries.
type listedDelivery struct {
	RunID      string          `json:"runId"`
	JobID      string          `json:"jobId,omitempty"`
	JobRunID   string          `json:"jobRunId,omitempty"`
	Project    string          `json:"project"`
	API        string          `json:"api"`
	Status     string          `json:"status"`
	ReceivedAt time.Time       `json:"receivedAt"`
	Cursor     string          `json:"cursor"` // pass as ?cursor= to continue after this line
	Body       json.RawMessage `json:"body"`
}

// The cursor is opaque to clients; today it wraps the receive sequence number.
func encodeCursor(seq int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte("s" + strconv.FormatInt(seq, 10)))
}

func decodeCursor(c string) (int64, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || len(b) < 2 || b[0] != 's' {
		return 0, errors.New("invalid cursor")
	}
	return strconv.ParseInt(string(b[1:]), 10, 64)
}

// readAllowed answers the request itself (and returns false) unless it carries the read token.
func (r *Receiver) readAllowed(w http.ResponseWriter, req *http.Request) bool {
	if r.readAuth == nil {
		writeError(w, http.StatusNotFound, "read_api_disabled", "the read API is disabled (start the receiver with a read token file)")
		return false
	}
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, "method", "use GET")
		return false
	}
	if !r.readAuth.check(req) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="intuned-receiver-read"`)
		writeError(w, http.StatusUnauthorized, "unauthorized", "missing or invalid read token in Authorization header")
		return false
	}
	return true
}

// listDeliveries serves GET /v1/deliveries: NDJSON, oldest first. Query parameters: job, jobRun,
// api, status, since (RFC 3339), limit (1-1000, default 100), cursor. The X-Next-Cursor header is
// the cursor to pass next; an empty page means there is nothing newer yet.
func (r *Receiver) listDeliveries(w http.ResponseWriter, req *http.Request) {
	if !r.readAllowed(w, req) {
		return
	}
	q := req.URL.Query()
	f := store.Filter{JobID: q.Get("job"), JobRunID: q.Get("jobRun"), APIName: q.Get("api"), ResultStatus: q.Get("status")}
	limit := defaultListLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxListLimit {
			writeError(w, http.StatusBadRequest, "invalid_limit", "limit must be an integer from 1 to 1000")
			return
		}
		limit = n
	}
	if v := q.Get("since"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			writeError(w, http.StatusBadRequest, "invalid_since", "since must be an RFC 3339 time, e.g. 2026-01-02T15:04:05Z")
			return
		}
		f.Since = t
	}
	if v := q.Get("cursor"); v != "" {
		seq, err := decodeCursor(v)
		if err != nil {
			writeError(w, http.StatusBadRequest, "invalid_cursor", "cursor is not one this receiver issued")
			return
		}
		f.AfterSeq = seq
	}
	recs, err := r.st.List(req.Context(), f, limit)
	if err != nil {
		r.storeErrs.Error("list deliveries", "err", err)
		r.retryLater(w, http.StatusServiceUnavailable, "store_unavailable", "store is unavailable; retry later")
		return
	}
	next := f.AfterSeq
	if len(recs) > 0 {
		next = recs[len(recs)-1].Seq
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("X-Next-Cursor", encodeCursor(next))
	enc := json.NewEncoder(w)
	for _, rec := range recs {
		line := listedDelivery{
			RunID: rec.RunID, JobID: rec.JobID, JobRunID: rec.JobRunID, Project: rec.Project, API: rec.APIName,
			Status: rec.ResultStatus, ReceivedAt: rec.ReceivedAt, Cursor: encodeCursor(rec.Seq), Body: rec.Body,
		}
		if err := enc.Encode(line); err != nil {
			return // client went away
		}
	}
}

// getDelivery serves GET /v1/deliveries/{runId}: the raw body exactly as Intuned sent it.
func (r *Receiver) getDelivery(w http.ResponseWriter, req *http.Request) {
	if !r.readAllowed(w, req) {
		return
	}
	runID := req.PathValue("runId")
	rec, err := r.st.Get(req.Context(), runID)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, "not_found", "no delivery with runId "+strings.ToValidUTF8(runID, "?"))
		return
	}
	if err != nil {
		r.storeErrs.Error("get delivery", "err", err)
		r.retryLater(w, http.StatusServiceUnavailable, "store_unavailable", "store is unavailable; retry later")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Received-At", rec.ReceivedAt.Format(time.RFC3339Nano))
	w.Header().Set("Content-Length", strconv.Itoa(len(rec.Body)))
	w.WriteHeader(http.StatusOK)
	w.Write(rec.Body) //nolint:errcheck // client may be gone
}
