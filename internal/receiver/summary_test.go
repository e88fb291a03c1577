package receiver

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/intuned-operator/intuned-operator/internal/receiver/store/storetest"
)

// TestJobRunSummary: deliveries, a conflicting duplicate and an invalid body that names its
// JobRun go in through the ingest path; the summary endpoints count them per JobRun.
func TestJobRunSummary(t *testing.T) {
	forEachStore(t, func(t *testing.T, kind string) {
		e := newEnv(t, kind, nil)
		body := func(runID, jobRun, api, status string) string {
			return string(storetest.Delivery(runID, "job", jobRun, api, status, time.Time{}).Body)
		}
		before := time.Now().UTC()
		for _, p := range []struct {
			body string
			want int
		}{
			{body("r1", "jr-1", "list", "completed"), http.StatusCreated},
			{body("r2", "jr-1", "list", "failed"), http.StatusCreated},
			{body("r3", "jr-1", "details", "completed"), http.StatusCreated},
			{body("r3", "jr-1", "details", "completed"), http.StatusOK}, // same body: not counted again
			{body("r3", "jr-1", "details", "failed"), http.StatusOK},    // conflict
			{body("r4", "jr-2", "list", "completed"), http.StatusCreated},
			{`{"workspaceId":"w","projectJobRun":{"id":"jr-1"}}`, http.StatusBadRequest}, // quarantined
		} {
			if r := e.post(t, ingestToken, p.body); r.status != p.want {
				t.Fatalf("post: %d %s, want %d", r.status, r.body, p.want)
			}
		}
		after := time.Now().UTC()

		var one jobRunSummary
		r := e.get(t, "/v1/jobruns/jr-1/summary")
		if r.status != http.StatusOK || json.Unmarshal(r.body, &one) != nil {
			t.Fatalf("summary: %d %s", r.status, r.body)
		}
		if got, want := strings.TrimSpace(string(mustJSON(t, one.Results))),
			`[{"api":"details","status":"completed","count":1},{"api":"list","status":"completed","count":1},{"api":"list","status":"failed","count":1}]`; got != want {
			t.Errorf("results %s, want %s", got, want)
		}
		if one.JobRunID != "jr-1" || one.Stored != 3 || one.ByStatus["completed"] != 2 || one.ByStatus["failed"] != 1 ||
			one.Conflicts != 1 || one.Quarantined != 1 {
			t.Errorf("summary %s", r.body)
		}
		if one.FirstReceivedAt == nil || one.FirstReceivedAt.Before(before.Truncate(time.Microsecond)) ||
			one.LastReceivedAt.After(after) || one.LastReceivedAt.Before(*one.FirstReceivedAt) {
			t.Errorf("receive times %v..%v, want within %v..%v", one.FirstReceivedAt, one.LastReceivedAt, before, after)
		}

		// Pages of one JobRun, then an empty page whose cursor stays put.
		var seen []string
		cursor := ""
		for range 3 {
			r := e.get(t, "/v1/jobruns?limit=1&cursor="+cursor)
			var page jobRunPage
			if r.status != http.StatusOK || json.Unmarshal(r.body, &page) != nil {
				t.Fatalf("page: %d %s", r.status, r.body)
			}
			for _, s := range page.JobRuns {
				seen = append(seen, s.JobRunID)
			}
			if r.header.Get("X-Next-Cursor") != page.NextCursor || page.NextCursor == "" {
				t.Fatalf("cursor header %q, body %q", r.header.Get("X-Next-Cursor"), page.NextCursor)
			}
			cursor = page.NextCursor
		}
		if strings.Join(seen, ",") != "jr-1,jr-2" {
			t.Errorf("paged JobRuns %v, want jr-1,jr-2", seen)
		}

		var picked jobRunPage
		r = e.get(t, "/v1/jobruns?jobRun=jr-2&jobRun=jr-none")
		if r.status != http.StatusOK || json.Unmarshal(r.body, &picked) != nil || len(picked.JobRuns) != 2 {
			t.Fatalf("by id: %d %s", r.status, r.body)
		}
		if p := picked.JobRuns; p[0].Stored != 1 || p[1].JobRunID != "jr-none" || p[1].Stored != 0 || p[1].FirstReceivedAt != nil {
			t.Errorf("by id: %s", r.body)
		}
	})
}

// TestJobRunSummaryErrors: bad requests get a 4xx JSON error with a code.
func TestJobRunSummaryErrors(t *testing.T) {
	e := newEnv(t, "sqlite", nil)
	cases := []struct {
		name, method, path, token string
		status                    int
		code                      string
	}{
		{"no token", "GET", "/v1/jobruns/jr-1/summary", "", 401, "unauthorized"},
		{"ingest token", "GET", "/v1/jobruns", ingestToken, 401, "unauthorized"},
		{"POST", "POST", "/v1/jobruns/jr-1/summary", readToken, 405, "method"},
		{"control character", "GET", "/v1/jobruns/jr%01/summary", readToken, 400, "invalid_job_run"},
		{"long id", "GET", "/v1/jobruns/" + strings.Repeat("j", 257) + "/summary", readToken, 400, "invalid_job_run"},
		{"blank id", "GET", "/v1/jobruns/%20/summary", readToken, 400, "invalid_job_run"},
		{"limit 0", "GET", "/v1/jobruns?limit=0", readToken, 400, "invalid_limit"},
		{"limit 101", "GET", "/v1/jobruns?limit=101", readToken, 400, "invalid_limit"},
		{"foreign cursor", "GET", "/v1/jobruns?cursor=" + encodeCursor(5), readToken, 400, "invalid_cursor"},
		{"ids and cursor", "GET", "/v1/jobruns?jobRun=a&cursor=x", readToken, 400, "invalid_query"},
		{"too many ids", "GET", "/v1/jobruns?jobRun=a" + strings.Repeat("&jobRun=a", 100), readToken, 400, "too_many_job_runs"},
		{"empty id", "GET", "/v1/jobruns?jobRun=", readToken, 400, "invalid_job_run"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest(c.method, e.url+c.path, nil)
			if c.token != "" {
				req.Header.Set("Authorization", "Bearer "+c.token)
			}
			r := do(t, req)
			if r.status != c.status || r.code != c.code {
				t.Errorf("%d %s, want %d %s", r.status, r.body, c.status, c.code)
			}
		})
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
