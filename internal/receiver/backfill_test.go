package receiver

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/intuned-operator/intuned-operator/internal/receiver/receiverapi"
)

// resultsLine is one line of a JobRun's results file: the apiInfo of a Run, as Intuned (and
// intuned-sim) writes it.
func resultsLine(runID string) string {
	return fmt.Sprintf(`{"name":"details","runId":%q,"parameters":{"u":"x"},"result":{"status":"completed","result":[1],"statusCode":200}}`, runID)
}

const backfillQuery = "?jobId=job-1&project=ecommerce&workspaceId=ws-1"

// backfill posts body to jr-1's backfill endpoint with the ingest token (unless token says otherwise).
func (e *testEnv) backfill(t *testing.T, token, jobRun, query, body string) response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.url+"/v1/jobruns/"+jobRun+"/backfill"+query, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-ndjson")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return do(t, req)
}

func backfillResult(t *testing.T, r response) receiverapi.BackfillResult {
	t.Helper()
	var res receiverapi.BackfillResult
	if r.status != http.StatusOK || json.Unmarshal(r.body, &res) != nil {
		t.Fatalf("backfill: %d %s", r.status, r.body)
	}
	return res
}

// TestBackfill: a request mixing new, present (by webhook and within the request), empty and
// invalid lines stores the new ones marked backfilled with the line's bytes as apiInfo, keeps the
// invalid ones in quarantine for the JobRun, and says what it did per line; sent again it stores
// nothing and quarantines nothing more; a webhook delivery of a backfilled Run is a plain duplicate.
func TestBackfill(t *testing.T) {
	forEachStore(t, func(t *testing.T, kind string) {
		e := newEnv(t, kind, nil)
		if r := e.post(t, ingestToken, validBody("r1")); r.status != http.StatusCreated {
			t.Fatalf("seed: %d %s", r.status, r.body)
		}
		lines := []string{
			resultsLine("r1"), // 1: stored by the webhook (another shape): present
			resultsLine("r10"),
			"",
			`{nope`, // 4
			resultsLine("r11") + "\r",
			`[1,2]`, // 6: not an object
			`{"name":"a","result":{"status":"completed"}}`, // 7: no runId
			resultsLine("r10"), // 8: twice in one request: present
			resultsLine("x") + `},"projectJobRun":{"id":"other"},"apiInfo":{`, // 9: closes apiInfo early
			"  " + resultsLine("r12") + " ",
		}
		body := strings.Join(lines, "\n") + "\n"
		before := time.Now().UTC().Truncate(time.Microsecond)
		res := backfillResult(t, e.backfill(t, ingestToken, "jr-1", backfillQuery, body))
		want := `{"stored":3,"present":2,"invalid":4,"errors":[` +
			`{"line":4,"code":"invalid_json","message":"line is not valid JSON: invalid character 'n' looking for beginning of object key string"},` +
			`{"line":6,"code":"not_sink_body","message":"a results-file line must be a JSON object (a Run's apiInfo)"},` +
			`{"line":7,"code":"not_sink_body","message":"not an Intuned sink body: missing or empty apiInfo.runId"},` +
			`{"line":9,"code":"invalid_json","message":"line is not valid JSON: invalid character '}' after top-level value"}]}`
		if got := string(mustJSON(t, res)); got != want {
			t.Errorf("result\n got %s\nwant %s", got, want)
		}

		// The stored body is the sink body Intuned sends, with the line's bytes as apiInfo.
		for id, l := range map[string]string{"r10": lines[1], "r11": strings.TrimSuffix(lines[4], "\r"), "r12": lines[9]} {
			r := e.get(t, "/v1/deliveries/"+id)
			wantBody := `{"workspaceId":"ws-1","project":{"name":"ecommerce"},"projectJob":{"id":"job-1"},"projectJobRun":{"id":"jr-1"},"apiInfo":` + l + `}`
			if r.status != 200 || string(r.body) != wantBody || r.header.Get("X-Backfilled") != "true" {
				t.Errorf("%s: %d X-Backfilled=%q\n got %s\nwant %s", id, r.status, r.header.Get("X-Backfilled"), r.body, wantBody)
			}
			var sb struct{ APIInfo json.RawMessage }
			if json.Unmarshal(r.body, &sb) != nil || !bytes.Equal(sb.APIInfo, []byte(strings.TrimSpace(l))) {
				t.Errorf("%s: apiInfo %s is not the line %s", id, sb.APIInfo, l)
			}
		}
		if r := e.get(t, "/v1/deliveries/r1"); r.status != 200 || string(r.body) != validBody("r1") || r.header.Get("X-Backfilled") != "" {
			t.Errorf("the webhook's r1 changed: %s (X-Backfilled=%q)", r.body, r.header.Get("X-Backfilled"))
		}
		listed := map[string]bool{}
		for _, l := range ndjson(t, e.get(t, "/v1/deliveries?jobRun=jr-1").body) {
			listed[l.RunID] = l.Backfilled
			if l.Backfilled && l.ReceivedAt.Before(before) {
				t.Errorf("%s received at %v, before the backfill (%v)", l.RunID, l.ReceivedAt, before)
			}
		}
		if fmt.Sprint(listed) != "map[r1:false r10:true r11:true r12:true]" {
			t.Errorf("listed %v", listed)
		}
		if r := e.get(t, "/v1/deliveries?jobRun=jr-1&limit=1"); !bytes.Contains(r.body, []byte(`"receivedAt"`)) ||
			bytes.Contains(r.body, []byte(`"backfilled"`)) {
			t.Errorf("a webhook delivery's line carries backfilled: %s", r.body)
		}

		summary := func() jobRunSummary {
			var s jobRunSummary
			if r := e.get(t, "/v1/jobruns/jr-1/summary"); r.status != 200 || json.Unmarshal(r.body, &s) != nil {
				t.Fatalf("summary: %d %s", r.status, r.body)
			}
			return s
		}
		if s := summary(); s.Stored != 4 || s.Backfilled != 3 || s.Quarantined != 4 || s.Conflicts != 0 {
			t.Errorf("summary %+v, want 4 stored, 3 backfilled, 4 quarantined, no conflicts", s)
		}

		// The same request again: every valid line is present, the invalid ones are not kept twice.
		again := backfillResult(t, e.backfill(t, ingestToken, "jr-1", backfillQuery, body))
		if again.Stored != 0 || again.Present != 5 || again.Invalid != 4 || len(again.Errors) != 4 {
			t.Errorf("repeated: %+v, want 0 stored, 5 present, 4 invalid", again)
		}
		// Intuned's late delivery of a backfilled Run: a duplicate, not a conflict.
		if r := e.post(t, ingestToken, validBody("r10")); r.status != http.StatusOK || !strings.Contains(string(r.body), `"duplicate"`) {
			t.Errorf("webhook after backfill: %d %s, want 200 duplicate", r.status, r.body)
		}
		if s := summary(); s.Stored != 4 || s.Backfilled != 3 || s.Quarantined != 4 || s.Conflicts != 0 {
			t.Errorf("summary after the repeat %+v, want it unchanged", s)
		}
		if n := e.count(t, "quarantine"); n != 4 {
			t.Errorf("%d quarantined bodies, want 4", n)
		}
		for outcome, want := range map[string]string{"stored": "3", "present": "7", "invalid": "8"} {
			name := `receiver_backfill_results_total{outcome="` + outcome + `"}`
			if l := metricLine(t, e, name); l != name+" "+want {
				t.Errorf("metric %q, want %s", l, want)
			}
		}
	})
}

// TestBackfillRequests: what a backfill request as a whole is refused for, and what it is not.
func TestBackfillRequests(t *testing.T) {
	e := newEnv(t, "sqlite", func(c *Config) {
		c.MaxBodyBytes = 2048
		c.PreviousTokenFile = filepath.Join(t.TempDir(), "previous")
	})
	writeFile(t, e.rcv.cfg.PreviousTokenFile, "previous-token")
	eventually(t, "previous token loaded", func() bool {
		return e.backfill(t, "previous-token", "jr-p", backfillQuery, "").status == 200
	})
	unauthorized := func() string {
		return metricLine(t, e, `receiver_backfill_rejected_total{reason="unauthorized"}`)
	}
	before := unauthorized()
	line := func(id string) string { return resultsLine(id) + "\n" }
	long := strings.Replace(resultsLine("long"), `[1]`, `"`+strings.Repeat("x", 2100)+`"`, 1)
	cases := []struct {
		name, method, token, jobRun, query, contentType, body string
		chunked                                               bool
		status                                                int
		code                                                  string
		stored, invalid                                       int
	}{
		{name: "ok", body: line("ok-1") + line("ok-2"), status: 200, stored: 2},
		{name: "previous token", token: "previous-token", body: line("prev"), status: 200, stored: 1},
		{name: "no workspace", query: "?jobId=job-1&project=ecommerce", body: line("nows"), status: 200, stored: 1},
		{name: "no Content-Type", contentType: "-", body: line("noct"), status: 200, stored: 1},
		{name: "empty body", body: "", status: 200},
		{name: "only empty lines", body: "\n\r\n  \n", status: 200},
		{name: "no token", token: "-", body: line("a"), status: 401, code: "unauthorized"},
		{name: "wrong token", token: "nope", body: line("a"), status: 401, code: "unauthorized"},
		{name: "read token", token: readToken, body: line("a"), status: 401, code: "unauthorized"},
		{name: "GET", method: "GET", status: 405, code: "method"},
		{name: "no jobId", query: "?project=p", body: line("a"), status: 400, code: "invalid_query"},
		{name: "no project", query: "?jobId=j", body: line("a"), status: 400, code: "invalid_query"},
		{name: "blank workspace", query: "?jobId=j&project=p&workspaceId=%20", body: line("a"), status: 400, code: "invalid_query"},
		{name: "long jobId", query: "?project=p&jobId=" + strings.Repeat("j", 257), body: line("a"), status: 400, code: "invalid_query"},
		{name: "control character in JobRun", jobRun: "jr%01", body: line("a"), status: 400, code: "invalid_job_run"},
		{name: "JSON body", contentType: "application/json", body: line("a"), status: 415, code: "media_type"},
		{name: "line over the limit", body: line("small") + long + "\n", status: 200, stored: 1, invalid: 1},
		{name: "request over twice the limit", body: line("big-1") + long + "\n" + long + "\n", status: 413, code: "too_large"},
		{name: "request over twice the limit, chunked", body: line("big-2") + long + "\n" + long + "\n", chunked: true, status: 413, code: "too_large"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := e.count(t, "deliveries")
			method, jobRun, query := c.method, c.jobRun, c.query
			if method == "" {
				method = http.MethodPost
			}
			if jobRun == "" {
				jobRun = "jr-1"
			}
			if query == "" {
				query = backfillQuery
			}
			var body io.Reader = strings.NewReader(c.body)
			if c.chunked {
				body = io.MultiReader(body)
			}
			req, _ := http.NewRequest(method, e.url+"/v1/jobruns/"+jobRun+"/backfill"+query, body)
			switch c.contentType {
			case "":
				req.Header.Set("Content-Type", "application/x-ndjson; charset=utf-8")
			case "-":
			default:
				req.Header.Set("Content-Type", c.contentType)
			}
			switch c.token {
			case "":
				req.Header.Set("Authorization", "Bearer "+ingestToken)
			case "-":
			default:
				req.Header.Set("Authorization", "Bearer "+c.token)
			}
			r := do(t, req)
			if r.status != c.status || r.code != c.code {
				t.Fatalf("%d %s, want %d %s", r.status, r.body, c.status, c.code)
			}
			if c.status == 200 {
				if res := backfillResult(t, r); res.Stored != c.stored || res.Invalid != c.invalid {
					t.Errorf("%s, want %d stored, %d invalid", r.body, c.stored, c.invalid)
				}
			}
			if got := e.count(t, "deliveries") - before; got != c.stored {
				t.Errorf("%d deliveries stored, want %d", got, c.stored)
			}
		})
	}
	var n0, n1 int
	fmt.Sscanf(before, `receiver_backfill_rejected_total{reason="unauthorized"} %d`, &n0)         //nolint:errcheck // absent: 0
	fmt.Sscanf(unauthorized(), `receiver_backfill_rejected_total{reason="unauthorized"} %d`, &n1) //nolint:errcheck
	if n1-n0 != 3 {
		t.Errorf("receiver_backfill_rejected_total{reason=\"unauthorized\"} went from %d to %d, want 3 more", n0, n1)
	}
}

// TestBackfillTooManyLines: a request of more than maxBackfillLines lines is refused as a whole.
func TestBackfillTooManyLines(t *testing.T) {
	e := newEnv(t, "sqlite", nil)
	r := e.backfill(t, ingestToken, "jr-1", backfillQuery, strings.Repeat("{}\n", maxBackfillLines+1))
	if r.status != http.StatusRequestEntityTooLarge || r.code != "too_many_lines" {
		t.Fatalf("%d %s, want 413 too_many_lines", r.status, r.body)
	}
	if n := e.count(t, "quarantine"); n != 0 {
		t.Errorf("%d bodies quarantined, want none", n)
	}
}

// TestBackfillNotCommitted: a backfill whose lines the store does not take in time gets 503 with
// Retry-After, and the manager's retry then finds every line stored once.
func TestBackfillNotCommitted(t *testing.T) {
	forEachStore(t, func(t *testing.T, kind string) {
		e := newEnv(t, kind, func(c *Config) { c.Deadline = 300 * time.Millisecond })
		var body strings.Builder
		for i := range 50 {
			body.WriteString(resultsLine(fmt.Sprint("slow-", i)) + "\n")
		}
		release := e.lockWrites(t)
		r := e.backfill(t, ingestToken, "jr-slow", backfillQuery, body.String())
		release()
		if r.status != 503 || r.code != "deadline" || r.header.Get("Retry-After") == "" {
			t.Fatalf("got %d %s Retry-After=%q, want 503 deadline with Retry-After", r.status, r.body, r.header.Get("Retry-After"))
		}
		res := backfillResult(t, e.backfill(t, ingestToken, "jr-slow", backfillQuery, body.String()))
		if res.Stored+res.Present != 50 || (res.Stored != 0 && res.Stored != 50) {
			t.Errorf("retry: %+v, want all 50 stored or all present (they commit together)", res)
		}
		if n := e.countWhere(t, "deliveries", "job_run_id = 'jr-slow'"); n != 50 {
			t.Errorf("%d stored, want 50", n)
		}
	})
}
