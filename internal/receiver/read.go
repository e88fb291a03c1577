package receiver

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/intuned-operator/intuned-operator/internal/receiver/store"
)

const (
	defaultListLimit = 100
	maxListLimit     = 1000
	// maxPageBytes bounds the bodies of one page of GET /v1/deliveries: a page is read into
	// memory before it is sent (X-Next-Cursor goes out first), and 40 bodies of 10 MiB took a
	// reader's RSS from 16 to 460 MB. A page stops before the body that would pass it (but holds
	// at least one).
	maxPageBytes = 8 << 20
	// maxReaders bounds the read API requests served at once (each holds up to a page, or one
	// body for GET /v1/deliveries/{runId}); more get 429 with Retry-After.
	maxReaders = 8
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
	Backfilled bool            `json:"backfilled,omitempty"` // stored by backfill, from the results file
	Cursor     string          `json:"cursor"`               // pass as ?cursor= to continue after this line
	Body       json.RawMessage `json:"body,omitempty"`       // written separately by writeListedLine
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

// readAllowed answers the request itself (and returns false) unless it carries the static read
// token or, with Kubernetes read auth, a Kubernetes token whose user may read this receiver's
// data (kubeauth.go). The static token is checked first: it needs no API call.
func (r *Receiver) readAllowed(w http.ResponseWriter, req *http.Request) bool {
	if r.readAuth == nil && r.kubeAuth == nil {
		writeError(w, http.StatusNotFound, "read_api_disabled", "the read API is disabled (start the receiver with a read token file or Kubernetes read auth)")
		return false
	}
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, "method", "use GET")
		return false
	}
	if r.readAuth != nil && r.readAuth.check(req) {
		return true
	}
	if r.kubeAuth != nil {
		return r.kubeAuth.check(r, w, req)
	}
	unauthorized(w)
	return false
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
	if v := f.ResultStatus; v != "" && v != "completed" && v != "failed" {
		writeError(w, http.StatusBadRequest, "invalid_status", "status must be completed or failed")
		return
	}
	limit, ok := queryLimit(w, q.Get("limit"), defaultListLimit, maxListLimit)
	if !ok {
		return
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
	if !r.acquireReader(w) {
		return
	}
	defer r.releaseReader()
	f.MaxBytes = maxPageBytes
	recs, err := r.st.List(req.Context(), f, limit)
	if err != nil {
		r.readFailed(w, "list deliveries", err)
		return
	}
	next := f.AfterSeq
	if len(recs) > 0 {
		next = recs[len(recs)-1].Seq
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("X-Next-Cursor", encodeCursor(next))
	bw := bufio.NewWriterSize(w, 64<<10)
	for i := range recs {
		if err := writeListedLine(bw, &recs[i]); err != nil {
			return // client went away
		}
		recs[i].Body = nil // sent: the GC may take it while the rest of the page goes out
	}
	bw.Flush() //nolint:errcheck // client may be gone
}

// writeListedLine writes one NDJSON line. The body is copied straight from the stored bytes,
// without the line-sized buffer json.Encoder would build for it, minus the whitespace between
// tokens: a body's newlines would otherwise split the line.
func writeListedLine(w *bufio.Writer, rec *store.Record) error {
	meta, err := json.Marshal(listedDelivery{
		RunID: rec.RunID, JobID: rec.JobID, JobRunID: rec.JobRunID, Project: rec.Project, API: rec.APIName,
		Status: rec.ResultStatus, ReceivedAt: rec.ReceivedAt, Backfilled: rec.Backfilled, Cursor: encodeCursor(rec.Seq),
	})
	if err != nil {
		return err
	}
	w.Write(meta[:len(meta)-1]) //nolint:errcheck // bufio.Writer keeps the first error
	w.WriteString(`,"body":`)   //nolint:errcheck
	body := rec.Body
	if !utf8.Valid(body) {
		// Stored before ingest refused invalid UTF-8: replace the bad bytes, so the line still
		// parses everywhere. GET /v1/deliveries/{runId} keeps the raw bytes.
		body = bytes.ToValidUTF8(body, []byte("\uFFFD"))
	}
	writeCompactJSON(w, body)
	_, err = w.WriteString("}\n")
	return err
}

// writeCompactJSON writes b, which is valid JSON (ingest checked it), without the whitespace
// outside its strings.
func writeCompactJSON(w *bufio.Writer, b []byte) {
	var str jsonStrings
	start := 0
	for i, c := range b {
		if str.outside(c) && (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
			w.Write(b[start:i]) //nolint:errcheck // bufio.Writer keeps the first error
			start = i + 1
		}
	}
	w.Write(b[start:]) //nolint:errcheck
}

// queryLimit parses a limit query parameter v (def when empty), or answers 400 itself and returns
// false when it is not an integer from 1 to max.
func queryLimit(w http.ResponseWriter, v string, def, max int) (int, bool) {
	if v == "" {
		return def, true
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > max {
		writeError(w, http.StatusBadRequest, "invalid_limit", "limit must be an integer from 1 to "+strconv.Itoa(max))
		return 0, false
	}
	return n, true
}

// acquireReader takes one of maxReaders slots or answers 429 itself.
func (r *Receiver) acquireReader(w http.ResponseWriter) bool {
	select {
	case r.readers <- struct{}{}:
		return true
	default:
		r.retryLater(w, http.StatusTooManyRequests, "too_many_readers", "too many read API requests at once; retry later")
		return false
	}
}

func (r *Receiver) releaseReader() { <-r.readers }

// getDelivery serves GET /v1/deliveries/{runId}: the raw body exactly as Intuned sent it.
func (r *Receiver) getDelivery(w http.ResponseWriter, req *http.Request) {
	if !r.readAllowed(w, req) {
		return
	}
	if !r.acquireReader(w) {
		return
	}
	defer r.releaseReader()
	runID := req.PathValue("runId")
	rec, err := r.st.Get(req.Context(), runID)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, "not_found", "no delivery with runId "+strings.ToValidUTF8(runID, "?"))
		return
	}
	if err != nil {
		r.readFailed(w, "get delivery", err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Received-At", rec.ReceivedAt.Format(time.RFC3339Nano))
	if rec.Backfilled { // the body is the sink body the receiver built from a results-file line
		w.Header().Set("X-Backfilled", "true")
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(rec.Body)))
	w.WriteHeader(http.StatusOK)
	w.Write(rec.Body) //nolint:errcheck // client may be gone
}

// readFailed answers a read the store could not serve: 503 with Retry-After,
// and the store's error logged (rate-limited), never sent to the client.
func (r *Receiver) readFailed(w http.ResponseWriter, what string, err error) {
	r.storeErrs.Error(what, "err", err)
	r.retryLater(w, http.StatusServiceUnavailable, "store_unavailable", "store is unavailable; retry later")
}
