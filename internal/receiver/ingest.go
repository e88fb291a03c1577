package receiver

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/intuned-operator/intuned-operator/internal/receiver/store"
)

type ingestResponse struct {
	RunID  string `json:"runId"`
	Status string `json:"status"` // "stored" or "duplicate"
}

// ingest handles one webhook delivery. Order of checks: method, token, media type, size, shape;
// only a delivery that is committed gets a 2xx.
func (r *Receiver) ingest(w http.ResponseWriter, req *http.Request) {
	start := time.Now()
	r.m.received.Inc()
	reject := func(status int, reason, msg string) {
		r.m.rejected.WithLabelValues(reason).Inc()
		r.log.Warn("delivery rejected", "status", status, "reason", reason, "remote", req.RemoteAddr, "detail", msg)
		writeError(w, status, reason, msg)
	}

	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		reject(http.StatusMethodNotAllowed, "method", "use POST to deliver a sink body")
		return
	}
	if !r.ingestAuth.check(req) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="intuned-receiver"`)
		reject(http.StatusUnauthorized, "unauthorized", "missing or invalid token in "+r.cfg.TokenHeader+" header")
		return
	}
	// Intuned sends exactly application/json (no need to parse that); tolerate none.
	if ct := req.Header.Get("Content-Type"); ct != "" && ct != "application/json" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			reject(http.StatusUnsupportedMediaType, "media_type", "Content-Type must be application/json")
			return
		}
	}
	if req.ContentLength > r.cfg.MaxBodyBytes {
		reject(http.StatusRequestEntityTooLarge, "too_large", "body exceeds the size limit")
		return
	}
	// Admission: bound both the number of deliveries and the body bytes held in memory. A body of
	// unknown length reserves the size cap. One delivery is always admitted when nothing else is.
	reserve := req.ContentLength
	if reserve < 0 {
		reserve = r.cfg.MaxBodyBytes
	}
	n, bytesHeld := r.inFlight.Add(1), r.inFlightBytes.Add(reserve)
	defer func() { r.inFlight.Add(-1); r.inFlightBytes.Add(-reserve) }()
	if n > int64(r.cfg.MaxInFlight) || (n > 1 && bytesHeld > r.cfg.MaxInFlightBytes) {
		r.m.rejected.WithLabelValues("overloaded").Inc()
		r.retryLater(w, http.StatusTooManyRequests, "overloaded", "too many deliveries in flight; retry later")
		return
	}

	body, err := readBody(w, req, r.cfg.MaxBodyBytes)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			reject(http.StatusRequestEntityTooLarge, "too_large", "body exceeds the size limit")
		} else {
			reject(http.StatusBadRequest, "read_error", "could not read the request body")
		}
		return
	}

	// The deadline starts once the body is in: a large body on a slow link is bounded by the HTTP
	// server's read timeout instead, and must not turn into a 503 that every retry repeats.
	ctx, cancel := context.WithTimeout(req.Context(), r.cfg.Deadline)
	defer cancel()
	meta, err := parseSinkBody(body)
	if err != nil {
		var be *bodyError
		errors.As(err, &be)
		// Authenticated but malformed: keep it, so nothing an authorised sender sent is lost.
		qerr := r.st.Quarantine(ctx, store.Rejected{Reason: be.reason + ": " + be.msg, ReceivedAt: start.UTC(), Body: body})
		if qerr != nil {
			r.storeErrs.Error("cannot quarantine invalid body", "err", qerr)
			r.storeTrouble(w, qerr)
			return
		}
		reject(http.StatusBadRequest, be.reason, be.msg)
		return
	}

	dup, err := r.w.submit(ctx, store.Delivery{
		RunID: meta.RunID, JobID: meta.JobID, JobRunID: meta.JobRunID, Project: meta.Project,
		APIName: meta.APIName, ResultStatus: meta.ResultStatus, ReceivedAt: start.UTC(), Body: body,
	})
	switch {
	case err == nil:
	case errors.Is(err, errOverloaded):
		r.m.rejected.WithLabelValues("overloaded").Inc()
		r.retryLater(w, http.StatusTooManyRequests, "overloaded", "too many deliveries in flight; retry later")
		return
	case errors.Is(err, errClosed):
		r.m.rejected.WithLabelValues("shutting_down").Inc()
		r.retryLater(w, http.StatusServiceUnavailable, "shutting_down", "receiver is shutting down; retry later")
		return
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		r.m.rejected.WithLabelValues("deadline").Inc()
		r.log.Warn("delivery not committed within the deadline", "runId", meta.RunID)
		r.retryLater(w, http.StatusServiceUnavailable, "deadline", "delivery was not committed in time; retry later")
		return
	default:
		r.storeTrouble(w, err)
		return
	}
	if dup {
		r.m.duplicates.Inc()
		r.log.Debug("duplicate delivery", "runId", meta.RunID)
		writeIngestResponse(w, http.StatusOK, ingestResponse{RunID: meta.RunID, Status: "duplicate"})
		return
	}
	r.m.stored.Inc()
	if r.log.Enabled(ctx, slog.LevelDebug) { // skip building the arguments on the hot path
		r.log.Debug("delivery stored", "runId", meta.RunID, "job", meta.JobID, "jobRun", meta.JobRunID, "api", meta.APIName)
	}
	writeIngestResponse(w, http.StatusCreated, ingestResponse{RunID: meta.RunID, Status: "stored"})
}

// storeTrouble answers a delivery the store could not take: 503 with Retry-After, so Intuned
// brings it back later.
func (r *Receiver) storeTrouble(w http.ResponseWriter, err error) {
	if errors.Is(err, store.ErrFull) {
		r.m.rejected.WithLabelValues("store_full").Inc()
		r.retryLater(w, http.StatusServiceUnavailable, "store_full", "the store's volume is full; retry later")
		return
	}
	r.m.rejected.WithLabelValues("store_error").Inc()
	r.retryLater(w, http.StatusServiceUnavailable, "store_unavailable", "store is unavailable; retry later")
}

// writeIngestResponse writes the same bytes as writeJSON(w, status, resp), without reflection for
// the usual run id (printable ASCII that JSON and Go's HTML-safe encoding leave as is).
func writeIngestResponse(w http.ResponseWriter, status int, resp ingestResponse) {
	for i := 0; i < len(resp.RunID); i++ {
		if c := resp.RunID[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			writeJSON(w, status, resp)
			return
		}
	}
	b := make([]byte, 0, len(resp.RunID)+40)
	b = append(b, `{"runId":"`...)
	b = append(b, resp.RunID...)
	b = append(b, `","status":"`...)
	b = append(b, resp.Status...)
	b = append(b, "\"}\n"...)
	w.Header()["Content-Type"] = jsonContentType
	w.WriteHeader(status)
	w.Write(b) //nolint:errcheck // the client may be gone; nothing to do
}

// readBody reads the whole body, at most limit bytes, in one allocation when the length is known
// (net/http guarantees a body with Content-Length has exactly that many bytes, or fails).
func readBody(w http.ResponseWriter, req *http.Request, limit int64) ([]byte, error) {
	rd := http.MaxBytesReader(w, req.Body, limit)
	if req.ContentLength <= 0 || req.ContentLength > limit {
		return io.ReadAll(rd)
	}
	buf := make([]byte, req.ContentLength)
	_, err := io.ReadFull(rd, buf)
	return buf, err
}
