package receiver

import (
	"encoding/base64"
	"errors"
	"net/http"
	"time"

	"github.com/intuned-operator/intuned-operator/internal/receiver/receiverapi"
	"github.com/intuned-operator/intuned-operator/internal/receiver/store"
)

const (
	defaultJobRunLimit = 20
	// maxJobRuns bounds the JobRuns of one summary request: each one's summary reads all its
	// index entries (about 20 ms for 100,000 results), so a page stays well under a few seconds.
	maxJobRuns = 100
)

// jobRunSummary is the JSON of one JobRun's summary: receiverapi.Summary (the manager's client
// reads it) and the stored deliveries by result status.
type jobRunSummary struct {
	receiverapi.Summary
	ByStatus map[string]int64 `json:"byStatus"`
}

// jobRunPage is the JSON of GET /v1/jobruns.
type jobRunPage struct {
	JobRuns []jobRunSummary `json:"jobRuns"`
	// NextCursor continues after the last JobRun of this page (or where the request's cursor
	// was, for an empty page): JobRuns whose ids sort later show up there once stored.
	NextCursor string `json:"nextCursor,omitempty"`
}

func toJSON(s store.JobRunSummary) jobRunSummary {
	out := jobRunSummary{Summary: receiverapi.Summary{JobRunID: s.JobRunID, Stored: s.Stored(), Backfilled: s.Backfilled,
		Conflicts: s.Conflicts, Quarantined: s.Quarantined, Results: []receiverapi.ResultCount{}},
		ByStatus: map[string]int64{"completed": 0, "failed": 0}}
	for _, c := range s.Results {
		out.ByStatus[c.ResultStatus] += c.Count
		out.Results = append(out.Results, receiverapi.ResultCount{API: c.APIName, Status: c.ResultStatus, Count: c.Count})
	}
	if !s.FirstReceivedAt.IsZero() {
		out.FirstReceivedAt, out.LastReceivedAt = &s.FirstReceivedAt, &s.LastReceivedAt
	}
	return out
}

// JobRun cursors are opaque to clients; today they wrap the last JobRun id of a page.
func encodeJobRunCursor(id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte("j" + id))
}

func decodeJobRunCursor(c string) (string, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || len(b) < 2 || b[0] != 'j' {
		return "", errors.New("invalid cursor")
	}
	return string(b[1:]), nil
}

// jobRunIDRule is the message of a 400 invalid_job_run.
const jobRunIDRule = "a JobRun id is 1 to 256 bytes without control characters (Intuned's projectJobRun.id)"

// checkJobRunID answers 400 itself (and returns false) for an id no sink body could have carried.
func checkJobRunID(w http.ResponseWriter, id string) bool {
	if !validID(id) {
		writeError(w, http.StatusBadRequest, "invalid_job_run", jobRunIDRule)
		return false
	}
	return true
}

// jobRunSummary serves GET /v1/jobruns/{jobRunId}/summary: what the store holds for one JobRun.
// A JobRun the store holds nothing for answers 200 with zero counts: that is what it holds.
func (r *Receiver) jobRunSummary(w http.ResponseWriter, req *http.Request) {
	if !r.readAllowed(w, req) {
		return
	}
	id := req.PathValue("jobRunId")
	if !checkJobRunID(w, id) {
		return
	}
	if !r.acquireReader(w) {
		return
	}
	defer r.releaseReader()
	if sums, ok := r.summarize(w, req, []string{id}); ok {
		writeJSON(w, http.StatusOK, toJSON(sums[0]))
	}
}

// listJobRuns serves GET /v1/jobruns: the summaries of a page of JobRuns in ascending id order
// (limit 1-100, default 20; cursor from the previous page's nextCursor), or with jobRun=ID
// (repeatable, up to 100) the summaries of those JobRuns, in the order given.
func (r *Receiver) listJobRuns(w http.ResponseWriter, req *http.Request) {
	if !r.readAllowed(w, req) {
		return
	}
	q := req.URL.Query()
	if !r.acquireReader(w) {
		return
	}
	defer r.releaseReader()
	if ids := q["jobRun"]; len(ids) > 0 {
		if q.Has("cursor") || q.Has("limit") {
			writeError(w, http.StatusBadRequest, "invalid_query", "jobRun cannot be combined with cursor or limit")
			return
		}
		if len(ids) > maxJobRuns {
			writeError(w, http.StatusBadRequest, "too_many_job_runs", "at most 100 jobRun parameters")
			return
		}
		for _, id := range ids {
			if !checkJobRunID(w, id) {
				return
			}
		}
		if sums, ok := r.summarize(w, req, ids); ok {
			writeJobRunPage(w, sums, "")
		}
		return
	}
	limit, ok := queryLimit(w, q.Get("limit"), defaultJobRunLimit, maxJobRuns)
	if !ok {
		return
	}
	after := ""
	if v := q.Get("cursor"); v != "" {
		var err error
		if after, err = decodeJobRunCursor(v); err != nil {
			writeError(w, http.StatusBadRequest, "invalid_cursor", "cursor is not one this receiver issued")
			return
		}
	}
	ids, err := r.st.JobRunsAfter(req.Context(), after, limit)
	if err != nil {
		r.readFailed(w, "list job runs", err)
		return
	}
	sums, ok := r.summarize(w, req, ids)
	if !ok {
		return
	}
	if len(ids) > 0 {
		after = ids[len(ids)-1]
	}
	writeJobRunPage(w, sums, encodeJobRunCursor(after))
}

// summarize reads the summaries of ids from the store, or answers 503 itself when the store
// fails and returns false. The caller holds a reader slot.
func (r *Receiver) summarize(w http.ResponseWriter, req *http.Request, ids []string) ([]store.JobRunSummary, bool) {
	start := time.Now()
	sums, err := r.st.SummarizeJobRuns(req.Context(), ids)
	if err != nil {
		r.readFailed(w, "summarize job runs", err)
		return nil, false
	}
	r.m.summarySeconds.Observe(time.Since(start).Seconds())
	return sums, true
}

func writeJobRunPage(w http.ResponseWriter, sums []store.JobRunSummary, cursor string) {
	page := jobRunPage{JobRuns: make([]jobRunSummary, len(sums)), NextCursor: cursor}
	for i, s := range sums {
		page.JobRuns[i] = toJSON(s)
	}
	if cursor != "" {
		w.Header().Set("X-Next-Cursor", cursor)
	}
	writeJSON(w, http.StatusOK, page)
}
