package receiver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"mime"
	"net/http"
	"strconv"
	"time"

	"github.com/intuned-operator/intuned-operator/internal/receiver/receiverapi"
	"github.com/intuned-operator/intuned-operator/internal/receiver/store"
)

// maxBackfillLines bounds the lines of one backfill request: each becomes a delivery or a
// quarantined body, held in memory until the request's commit. The manager sends at most 1 MiB a
// request, and a results-file line is at least about 90 bytes (an apiInfo with a nanoid runId and
// nothing else), so a batch holds at most ~12,000.
const maxBackfillLines = 20000

// reasonTooLarge is the code of a backfilled line longer than --max-body-bytes.
const reasonTooLarge = "too_large"

// backfill serves POST /v1/jobruns/{jobRunId}/backfill?jobId=J&project=P[&workspaceId=W]: the
// body is NDJSON, each line one line of the JobRun's results file (the apiInfo object of one
// Run). The receiver wraps each line into the sink body Intuned would have sent for its Run and
// checks it as the ingest path does. The valid ones it lacks (by runId) are stored marked
// backfilled, all in one transaction; one whose runId is stored already is left as it is
// (present); an invalid one is quarantined for the JobRun, once. It authenticates with the ingest
// token: it writes deliveries, as Intuned's sink does (the read token only reads).
func (r *Receiver) backfill(w http.ResponseWriter, req *http.Request) {
	start := time.Now()
	defer func() { r.m.backfillSeconds.Observe(time.Since(start).Seconds()) }()
	f := r.backfillRefusals
	if !f.authorized(w, req) {
		return
	}
	q := req.URL.Query()
	t := receiverapi.BackfillTarget{JobRunID: req.PathValue("jobRunId"), JobID: q.Get("jobId"), Project: q.Get("project"),
		WorkspaceID: q.Get("workspaceId")}
	if !validID(t.JobRunID) {
		f.reject(w, req, http.StatusBadRequest, "invalid_job_run", jobRunIDRule)
		return
	}
	for _, p := range []struct {
		name, v  string
		optional bool
	}{{"jobId", t.JobID, false}, {"project", t.Project, false}, {"workspaceId", t.WorkspaceID, true}} {
		if (p.v != "" || !p.optional) && !validID(p.v) {
			f.reject(w, req, http.StatusBadRequest, "invalid_query", p.name+" must be 1 to 256 bytes without control characters")
			return
		}
	}
	if ct := req.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/x-ndjson" {
			f.reject(w, req, http.StatusUnsupportedMediaType, "media_type", "Content-Type must be application/x-ndjson")
			return
		}
	}
	// A line may be as long as a delivery; the request twice that, so a line at the limit still
	// fits with others.
	body, a, ok := f.admitBody(w, req, 2*r.cfg.MaxBodyBytes)
	if !ok {
		return
	}
	defer a.done()
	deadline := time.Now().Add(r.cfg.Deadline)

	lines, err := splitLines(body)
	if err != nil {
		f.reject(w, req, http.StatusRequestEntityTooLarge, "too_many_lines", err.Error())
		return
	}
	prefix := sinkBodyPrefix(t)
	// Every line's sink body goes into one buffer, reserved like the request body.
	size := len(body) + len(lines)*(len(prefix)+1)
	if !a.reserve(int64(size)) {
		f.retryLater(w, http.StatusTooManyRequests, "overloaded", "too many deliveries in flight; retry later")
		return
	}
	b := newBackfillBatch(len(lines), size)
	at := start.UTC()
	for _, l := range lines {
		b.add(l, prefix, t, at, r.cfg.MaxBodyBytes)
	}

	ctx := req.Context()
	if len(b.rejected) > 0 {
		qctx, cancel := context.WithDeadline(ctx, deadline)
		defer cancel()
		if err := r.st.Quarantine(qctx, b.rejected...); err != nil {
			r.storeErrs.Error("cannot quarantine invalid backfill lines", "err", err)
			f.storeTrouble(w, err)
			return
		}
	}
	var results []store.Result
	if len(b.valid) > 0 {
		if results, err = r.w.submitAll(ctx, deadline, b.valid); err != nil {
			f.notCommitted(w, err, "jobRun", t.JobRunID, "lines", len(b.valid))
			return
		}
	}
	res := b.result
	for _, x := range results {
		if x.Dup {
			res.Present++
		} else {
			res.Stored++
		}
	}
	r.m.backfillResults.WithLabelValues("stored").Add(float64(res.Stored))
	r.m.backfillResults.WithLabelValues("present").Add(float64(res.Present))
	r.m.backfillResults.WithLabelValues("invalid").Add(float64(res.Invalid))
	r.log.Info("backfill", "jobRun", t.JobRunID, "stored", res.Stored, "present", res.Present, "invalid", res.Invalid)
	writeJSON(w, http.StatusOK, res)
}

// line is one non-empty line of a backfill request and its 1-based number in the request.
type line struct {
	n     int
	bytes []byte
}

// splitLines returns the non-empty lines of an NDJSON body (separated by \n, \r\n tolerated),
// or an error when they are more than maxBackfillLines.
func splitLines(body []byte) ([]line, error) {
	var out []line
	for n := 1; len(body) > 0; n++ {
		l, rest, _ := bytes.Cut(body, []byte{'\n'})
		body = rest
		l = bytes.TrimSuffix(l, []byte{'\r'})
		if len(bytes.TrimSpace(l)) == 0 {
			continue
		}
		if len(out) == maxBackfillLines {
			return nil, errors.New("more than " + strconv.Itoa(maxBackfillLines) + " lines in one request; send fewer")
		}
		out = append(out, line{n, l})
	}
	return out, nil
}

// sinkBodyPrefix is the start of the sink body Intuned sends for a Run of the JobRun t, up to
// where its apiInfo object goes.
func sinkBodyPrefix(t receiverapi.BackfillTarget) []byte {
	str := func(s string) string {
		b, _ := json.Marshal(s) // a string always encodes
		return string(b)
	}
	p := `{`
	if t.WorkspaceID != "" {
		p += `"workspaceId":` + str(t.WorkspaceID) + `,`
	}
	p += `"project":{"name":` + str(t.Project) + `},"projectJob":{"id":` + str(t.JobID) +
		`},"projectJobRun":{"id":` + str(t.JobRunID) + `},"apiInfo":`
	return []byte(p)
}

// backfillBatch is what the lines of one backfill request became.
type backfillBatch struct {
	bodies   []byte // the sink bodies, one after another (a single allocation)
	valid    []store.Delivery
	rejected []store.Rejected
	result   receiverapi.BackfillResult // Invalid and Errors; Stored and Present come from the commit
}

func newBackfillBatch(lines, size int) *backfillBatch {
	return &backfillBatch{bodies: make([]byte, 0, size), valid: make([]store.Delivery, 0, lines),
		result: receiverapi.BackfillResult{Errors: []receiverapi.LineError{}}}
}

// add wraps l into the sink body of its Run (the line's bytes verbatim as apiInfo) and files it as
// a valid delivery or a rejected body.
func (b *backfillBatch) add(l line, prefix []byte, t receiverapi.BackfillTarget, at time.Time, maxLine int64) {
	start := len(b.bodies)
	b.bodies = append(append(append(b.bodies, prefix...), l.bytes...), '}')
	body := b.bodies[start:len(b.bodies):len(b.bodies)]
	meta, be := checkBackfillLine(l.bytes, body, maxLine, t.WorkspaceID != "")
	if be == nil {
		b.valid = append(b.valid, store.Delivery{RunID: meta.RunID, JobID: meta.JobID, JobRunID: meta.JobRunID,
			Project: meta.Project, APIName: meta.APIName, ResultStatus: meta.ResultStatus, ReceivedAt: at, Body: body,
			Backfilled: true})
		return
	}
	// Kept for the JobRun, so its summary counts it, and once: a repeated request (the manager
	// retrying, or resuming after a crash) does not count it again.
	b.rejected = append(b.rejected, store.Rejected{Reason: "backfill: " + be.reason + ": " + be.msg, ReceivedAt: at, Body: body,
		JobRunID: t.JobRunID, Once: true})
	b.result.Invalid++
	if len(b.result.Errors) < receiverapi.MaxLineErrors {
		b.result.Errors = append(b.result.Errors, receiverapi.LineError{Line: l.n, Code: be.reason, Message: be.msg})
	}
}

// checkBackfillLine checks one results-file line and the sink body built around it. The line
// must be exactly one JSON object on its own: otherwise the body around it could be valid JSON
// whose apiInfo is not the line (`{...}},"x":{` closes apiInfo early). The body is then checked
// as the ingest path checks a delivery (UTF-8, depth, fields).
func checkBackfillLine(line, body []byte, maxLine int64, needWorkspace bool) (sinkMeta, *bodyError) {
	if int64(len(line)) > maxLine {
		return sinkMeta{}, &bodyError{reasonTooLarge, "line exceeds the size limit (--max-body-bytes)"}
	}
	if !json.Valid(line) {
		var raw json.RawMessage
		err := json.Unmarshal(line, &raw)
		msg := "line is not valid JSON"
		if err != nil {
			msg += ": " + err.Error()
		}
		return sinkMeta{}, &bodyError{reasonInvalidJSON, msg}
	}
	if bytes.TrimLeft(line, " \t\r")[0] != '{' {
		return sinkMeta{}, &bodyError{reasonNotSinkBody, "a results-file line must be a JSON object (a Run's apiInfo)"}
	}
	meta, err := parseBody(body, needWorkspace)
	if err != nil {
		var be *bodyError
		errors.As(err, &be)
		return meta, be
	}
	return meta, nil
}
