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

	"github.com/prometheus/client_golang/prometheus"

	"github.com/intuned-operator/intuned-operator/internal/receiver/store"
)

type ingestResponse struct {
	RunID  string `json:"runId"`
	Status string `json:"status"` // "stored", "duplicate" or "conflict"
}

// refusals counts and logs the requests one write endpoint refuses: the ingest path (Intuned's
// deliveries) or backfill, each with its own rejected counter. Both write deliveries, so they
// share the admission, the size limits and the mapping of store and writer errors.
type refusals struct {
	r        *Receiver
	rejected *prometheus.CounterVec // by reason
	what     string                 // the log line's subject: "delivery" or "backfill"
}

// reject counts and logs a refused request and answers it with a JSON error.
func (f refusals) reject(w http.ResponseWriter, req *http.Request, status int, reason, msg string) {
	f.rejected.WithLabelValues(reason).Inc()
	f.r.log.Warn(f.what+" rejected", "status", status, "reason", reason, "remote", req.RemoteAddr, "detail", msg)
	writeError(w, status, reason, msg)
}

// retryLater counts a request refused for now and answers it with Retry-After.
func (f refusals) retryLater(w http.ResponseWriter, status int, reason, msg string) {
	f.rejected.WithLabelValues(reason).Inc()
	f.r.retryLater(w, status, reason, msg)
}

// authorized answers 405 or 401 itself (and returns false) unless req is a POST with an ingest
// token.
func (f refusals) authorized(w http.ResponseWriter, req *http.Request) bool {
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		f.reject(w, req, http.StatusMethodNotAllowed, "method", "use POST")
		return false
	}
	if !f.r.ingestAuth.check(req) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="intuned-receiver"`)
		f.reject(w, req, http.StatusUnauthorized, "unauthorized", "missing or invalid token in "+f.r.cfg.TokenHeader+" header")
		return false
	}
	return true
}

// admission is a write request's share of the in-flight budget: one request and the bytes it
// holds.
type admission struct {
	r    *Receiver
	held int64
}

// reserve takes b more bytes of the budget and reports whether they fit. One request is always
// admitted when it is the only one holding bytes.
func (a *admission) reserve(b int64) bool {
	a.held += b
	total := a.r.inFlightBytes.Add(b)
	return total <= a.r.cfg.MaxInFlightBytes || total == a.held
}

// done gives the request and its bytes back.
func (a *admission) done() { a.r.inFlight.Add(-1); a.r.inFlightBytes.Add(-a.held) }

// admitBody reads the body of a write request, at most limit bytes, within the in-flight budget:
// it bounds both the requests in progress and the body bytes they hold. Bytes are reserved as
// the body buffer grows (see readBody), so a sender that declares a large Content-Length and then
// stalls holds little. The caller reserves more through the admission for what it builds from
// the body, and calls its done. When ok is false admitBody has answered already.
func (f refusals) admitBody(w http.ResponseWriter, req *http.Request, limit int64) (body []byte, a admission, ok bool) {
	r := f.r
	if req.ContentLength > limit {
		r.drainBody(w, req, false)
		f.reject(w, req, http.StatusRequestEntityTooLarge, "too_large", "body exceeds the size limit")
		return nil, a, false
	}
	if n := r.inFlight.Add(1); n > int64(r.cfg.MaxInFlight) || r.inFlightBytes.Load() > r.cfg.MaxInFlightBytes {
		r.inFlight.Add(-1)
		f.retryLater(w, http.StatusTooManyRequests, "overloaded", "too many deliveries in flight; retry later")
		return nil, a, false
	}
	a.r = r
	body, err := readBody(req, limit, a.reserve)
	switch {
	case err == nil:
		return body, a, true
	case errors.Is(err, errTooLarge):
		r.drainBody(w, req, true)
		f.reject(w, req, http.StatusRequestEntityTooLarge, "too_large", "body exceeds the size limit")
	case errors.Is(err, errOverloaded):
		r.drainBody(w, req, true)
		f.retryLater(w, http.StatusTooManyRequests, "overloaded", "too many deliveries in flight; retry later")
	default:
		f.reject(w, req, http.StatusBadRequest, "read_error", "could not read the request body")
	}
	a.done()
	return nil, a, false
}

// notCommitted answers a request whose deliveries the writer did not commit (err from submit):
// 429 or 503 with Retry-After, so the sender brings them back later. args name them in the log.
func (f refusals) notCommitted(w http.ResponseWriter, err error, args ...any) {
	switch {
	case errors.Is(err, errOverloaded):
		f.retryLater(w, http.StatusTooManyRequests, "overloaded", "too many deliveries in flight; retry later")
	case errors.Is(err, errClosed):
		f.retryLater(w, http.StatusServiceUnavailable, "shutting_down", "receiver is shutting down; retry later")
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		f.r.log.Warn(f.what+" not committed within the deadline", args...)
		f.retryLater(w, http.StatusServiceUnavailable, "deadline", f.what+" was not committed in time; retry later")
	default:
		f.storeTrouble(w, err)
	}
}

// storeTrouble answers a request whose deliveries the store could not take: 503 with
// Retry-After, so Intuned (or the manager) brings them back later.
func (f refusals) storeTrouble(w http.ResponseWriter, err error) {
	if errors.Is(err, store.ErrFull) {
		f.retryLater(w, http.StatusServiceUnavailable, "store_full", "the store's volume is full; retry later")
		return
	}
	f.rejected.WithLabelValues("store_error").Inc()
	f.r.retryLater(w, http.StatusServiceUnavailable, "store_unavailable", "store is unavailable; retry later")
}

// ingest handles one webhook delivery. Order of checks: method, token, media type, size, shape;
// only a delivery that is committed gets a 2xx.
func (r *Receiver) ingest(w http.ResponseWriter, req *http.Request) {
	start := time.Now()
	r.m.received.Inc()
	f := r.ingestRefusals
	if !f.authorized(w, req) {
		return
	}
	// Intuned sends exactly application/json (no need to parse that); tolerate none.
	if ct := req.Header.Get("Content-Type"); ct != "" && ct != "application/json" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			f.reject(w, req, http.StatusUnsupportedMediaType, "media_type", "Content-Type must be application/json")
			return
		}
	}
	body, a, ok := f.admitBody(w, req, r.cfg.MaxBodyBytes)
	if !ok {
		return
	}
	defer a.done()

	// The deadline starts once the body is in: a large body on a slow link is bounded by the HTTP
	// server's read timeout instead, and must not turn into a 503 that every retry repeats.
	deadline := time.Now().Add(r.cfg.Deadline)
	ctx := req.Context()
	meta, err := parseSinkBody(body)
	if err != nil {
		var be *bodyError
		errors.As(err, &be)
		// Authenticated but malformed: keep it, so nothing an authorised sender sent is lost.
		qctx, cancel := context.WithDeadline(ctx, deadline)
		defer cancel()
		qerr := r.st.Quarantine(qctx, store.Rejected{Reason: be.reason + ": " + be.msg, ReceivedAt: start.UTC(), Body: body,
			JobRunID: meta.JobRunID})
		if qerr != nil {
			r.storeErrs.Error("cannot quarantine invalid body", "err", qerr)
			f.storeTrouble(w, qerr)
			return
		}
		f.reject(w, req, http.StatusBadRequest, be.reason, be.msg)
		return
	}

	res, err := r.w.submit(ctx, deadline, store.Delivery{
		RunID: meta.RunID, JobID: meta.JobID, JobRunID: meta.JobRunID, Project: meta.Project,
		APIName: meta.APIName, ResultStatus: meta.ResultStatus, ReceivedAt: start.UTC(), Body: body,
	})
	if err != nil {
		f.notCommitted(w, err, "runId", meta.RunID)
		return
	}
	if res.Conflict {
		// The first body stays (the contract); the second is in quarantine. Still 2xx, or
		// Intuned would retry it for an hour, but the sender can tell from the status.
		r.m.conflicts.Inc()
		r.log.Warn("conflicting duplicate: runId already stored with a different body; kept the stored one, quarantined this one",
			"runId", meta.RunID, "storedBytes", res.StoredBytes, "receivedBytes", len(body))
		writeIngestResponse(w, http.StatusOK, ingestResponse{RunID: meta.RunID, Status: "conflict"})
		return
	}
	if res.Dup {
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

// smallBody: a body up to this size (a usual delivery is about 1 KiB) is read into one buffer of
// its Content-Length, reserved at once; a larger or unsized one into a buffer that grows as bytes
// arrive, each growth reserved first.
const smallBody = 64 << 10

var errTooLarge = errors.New("body exceeds the size limit")

// readBody reads the whole body, at most limit bytes. reserve(n) is called before the buffer
// grows by n bytes and reports whether the in-flight budget allows it (else errOverloaded).
// net/http guarantees a body with Content-Length has exactly that many bytes, or fails.
func readBody(req *http.Request, limit int64, reserve func(int64) bool) ([]byte, error) {
	cl := req.ContentLength
	size := int64(smallBody)
	if cl >= 0 && cl < size {
		size = cl
	}
	if !reserve(size) {
		return nil, errOverloaded
	}
	buf := make([]byte, 0, size)
	for {
		if len(buf) == cap(buf) {
			if cl >= 0 && int64(len(buf)) == cl {
				return buf, nil
			}
			// Double, up to the declared length or one byte past the limit (to see it passed).
			grow := min(int64(cap(buf)), limit+1-int64(cap(buf)))
			if cl >= 0 {
				grow = min(grow, cl-int64(cap(buf)))
			}
			if !reserve(grow) {
				return nil, errOverloaded
			}
			buf = append(make([]byte, 0, int64(cap(buf))+grow), buf...)
		}
		n, err := req.Body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if int64(len(buf)) > limit {
			return nil, errTooLarge
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// drainTimeout bounds the time spent discarding a body that will not be stored.
const drainTimeout = 10 * time.Second

// drainBody reads and discards the rest of a body that will not be stored, up to
// max(4 x MaxBodyBytes, 16 MiB) and for at most drainTimeout, before the error answer goes out:
// a client that writes its whole body before reading the answer (Python's urllib) saw a
// connection reset instead of the 413 when the receiver answered and closed first. Past that
// bound the connection is closed after the answer. started says some of the body was read already;
// if not, and the client waits for "100 Continue", nothing is drained (it never sends the body).
func (r *Receiver) drainBody(w http.ResponseWriter, req *http.Request, started bool) {
	if !started && strings.EqualFold(req.Header.Get("Expect"), "100-continue") {
		return
	}
	http.NewResponseController(w).SetReadDeadline(time.Now().Add(drainTimeout)) //nolint:errcheck // without a deadline the server's ReadTimeout still applies
	if _, err := io.CopyN(io.Discard, req.Body, max(4*r.cfg.MaxBodyBytes, 16<<20)); err == nil {
		w.Header().Set("Connection", "close") // more follows: not worth reading
	}
}
