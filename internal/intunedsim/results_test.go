package intunedsim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

type resultsView struct {
	SignedURL           string `json:"signed_url"`
	Format              string `json:"format"`
	SignedURLExpiration string `json:"signed_url_expiration"`
	Size                int    `json:"size"`
}

func getResults(t *testing.T, ts *TestServer, jobID, runID string) resultsView {
	t.Helper()
	var env struct{ Results *resultsView }
	r := call(t, ts, "GET", "/jobs/"+jobID+"/runs/"+runID, nil)
	mustStatus(t, r, 200)
	r.decode(t, &env)
	if env.Results == nil {
		t.Fatalf("no results: %s", r.body)
	}
	return *env.Results
}

// download GETs a results URL as a client would, with no credentials.
func download(t *testing.T, u string, hdr ...string) (resp, error) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return resp{res.StatusCode, b, res.Header}, err
}

// finishedRun creates a job of one `list` payload,
// triggers it and lets it finish.
func finishedRun(t *testing.T, ts *TestServer) string {
	t.Helper()
	job := quickstartJob("results-job", "https://unused.example/h")
	delete(job, "sink")
	mustStatus(t, call(t, ts, "POST", "/jobs", job), 201)
	id := trigger(t, ts, "results-job")
	ts.Advance(time.Hour)
	if st := getRun(t, ts, "results-job", id).Status; st != JobRunCompleted {
		t.Fatalf("run %s", st)
	}
	return id
}

// TestResultsFileHasEveryRun: one line per Run the JobRun produced, whatever
// the sink sends (apisToSend, skipOnFail), extended payloads included, and a
// Run retried after a failed attempt is one line with its final outcome.
func TestResultsFileHasEveryRun(t *testing.T) {
	h, hookURL := newHook(t, nil)
	ts, _ := newFake(t, Options{Catalogue: CatalogueOptions{Products: 4, FailureShare: 0.5, RunDuration: time.Minute}})
	ts.SetHandler("flaky", func(_ context.Context, rc RunContext) RunResult {
		if rc.Attempt == 1 {
			return RunResult{Error: &RunError{Code: "script-execution-exception", Message: "first attempt fails"}, Duration: time.Second}
		}
		return RunResult{Result: "ok", Duration: time.Second}
	})
	job := quickstartJob("results-job", hookURL)
	job["payload"] = []any{
		map[string]any{"apiName": "list", "parameters": map[string]any{}},
		map[string]any{"apiName": "flaky", "parameters": map[string]any{"n": 1}},
	}
	sink := job["sink"].(map[string]any)
	sink["apisToSend"], sink["skipOnFail"] = []string{"list", "details"}, true
	mustStatus(t, call(t, ts, "POST", "/jobs", job), 201)
	id := trigger(t, ts, "results-job")
	ts.Advance(time.Hour)

	res := getResults(t, ts, "results-job", id)
	file, err := download(t, res.SignedURL)
	if err != nil || file.status != 200 || len(file.body) != res.Size {
		t.Fatalf("download: %v %d, %d bytes, size %d", err, file.status, len(file.body), res.Size)
	}
	runs := ts.APIRuns(id)
	lines := strings.Split(strings.TrimSuffix(string(file.body), "\n"), "\n")
	if len(runs) != 6 || len(lines) != len(runs) {
		t.Fatalf("%d Runs (want list + 4 details + flaky), %d lines:\n%s", len(runs), len(lines), file.body)
	}
	count := map[string]int{}
	for i, l := range lines {
		var info struct {
			Name   string
			RunID  string
			Result struct{ Status string }
		}
		if err := json.Unmarshal([]byte(l), &info); err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
		if info.RunID != runs[i].RunID || info.Result.Status != runs[i].Status {
			t.Errorf("line %d = %s, want Run %+v", i+1, l, runs[i])
		}
		count[info.Name+"-"+info.Result.Status]++
	}
	want := map[string]int{"list-completed": 1, "details-completed": 2, "details-failed": 2, "flaky-completed": 1}
	if !maps.Equal(count, want) {
		t.Errorf("lines by api and outcome %v, want %v", count, want)
	}
	for _, r := range runs {
		if r.APIName == "flaky" && r.Attempts != 2 {
			t.Errorf("flaky Run took %d attempts, want 2", r.Attempts)
		}
	}
	// The sink got only list and the completed details.
	if got := len(h.drain()); got != 3 {
		t.Errorf("%d webhooks, want 3", got)
	}
}

// TestResultsURL checks the presigned URL: signature, expiry on the
// simulator clock, Range, and S3's XML errors.
func TestResultsURL(t *testing.T) {
	ts, _ := newFake(t, Options{Catalogue: CatalogueOptions{Products: 3, RunDuration: time.Minute}})
	id := finishedRun(t, ts)
	want, _ := ts.ResultsFile(id)
	res := getResults(t, ts, "results-job", id)
	issued := testStart.Add(time.Hour).Truncate(time.Second)
	if res.Format != "jsonl" || res.Size != len(want) || res.SignedURLExpiration != isoTime(issued.Add(time.Hour)) {
		t.Fatalf("results %+v (file %d bytes, issued %s)", res, len(want), issued)
	}
	tamper := func(key, value string) string {
		u, _ := url.Parse(res.SignedURL)
		q := u.Query()
		q.Set(key, value)
		u.RawQuery = q.Encode()
		return u.String()
	}
	unsigned, _, _ := strings.Cut(res.SignedURL, "?")

	cases := []struct {
		name       string
		url        string
		rangeHdr   string
		advance    time.Duration
		wantStatus int
		wantBody   []byte
		wantCode   string
	}{
		{name: "whole file", url: res.SignedURL, wantStatus: 200, wantBody: want},
		{name: "resume from an offset", url: res.SignedURL, rangeHdr: "bytes=10-", wantStatus: 206, wantBody: want[10:]},
		{name: "no signature", url: unsigned, wantStatus: 403, wantCode: "SignatureDoesNotMatch"},
		{name: "wrong signature", url: tamper("X-Amz-Signature", strings.Repeat("0", 64)), wantStatus: 403, wantCode: "SignatureDoesNotMatch"},
		{name: "longer lifetime", url: tamper("X-Amz-Expires", "604800"), wantStatus: 403, wantCode: "SignatureDoesNotMatch"},
		{name: "at expiry", url: res.SignedURL, advance: time.Hour, wantStatus: 200, wantBody: want},
		{name: "expired", url: res.SignedURL, advance: time.Second, wantStatus: 403, wantCode: "AccessDenied"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ts.Advance(c.advance) // cumulative: the expiry cases come last
			var hdr []string
			if c.rangeHdr != "" {
				hdr = []string{"Range", c.rangeHdr}
			}
			r, err := download(t, c.url, hdr...)
			if err != nil || r.status != c.wantStatus {
				t.Fatalf("status %d (%v), want %d: %s", r.status, err, c.wantStatus, r.body)
			}
			if c.wantBody != nil {
				if !bytes.Equal(r.body, c.wantBody) || r.header.Get("Content-Type") != "application/x-ndjson" || r.header.Get("ETag") == "" {
					t.Fatalf("body %q, headers %v", r.body, r.header)
				}
				return
			}
			if !bytes.Contains(r.body, []byte("<Code>"+c.wantCode+"</Code>")) || r.header.Get("Content-Type") != "application/xml" {
				t.Fatalf("error %s %v, want code %s", r.body, r.header, c.wantCode)
			}
			if c.wantCode == "AccessDenied" && !bytes.Contains(r.body, []byte("<Message>Request has expired</Message>")) {
				t.Fatalf("expired: %s", r.body)
			}
		})
	}

	// A test shortens the lifetime of the next URLs through the admin API.
	r := call(t, ts, "POST", "/_sim/settings", `{"resultsUrlLifetime":"30s"}`)
	mustStatus(t, r, 200)
	mustStatus(t, call(t, ts, "POST", "/_sim/settings", `{"resultsUrlLifetime":"10ms"}`), 400)
	short := getResults(t, ts, "results-job", id)
	if exp, _ := time.Parse(time.RFC3339, short.SignedURLExpiration); !exp.Equal(ts.Clock().Now().Truncate(time.Second).Add(30 * time.Second)) {
		t.Fatalf("expiration %s, now %s", short.SignedURLExpiration, ts.Clock().Now())
	}
	ts.Advance(31 * time.Second)
	if r, _ := download(t, short.SignedURL); r.status != 403 {
		t.Fatalf("31 s after a 30 s URL: %d %s", r.status, r.body)
	}
	ts.Reset()
	if got := ts.ResultsURLLifetime(); got != DefaultResultsURLLifetime {
		t.Fatalf("after reset: lifetime %s", got)
	}
}

// TestResultsFaults: a reported format other than jsonl, a corrupted line
// and a transfer cut mid-line.
func TestResultsFaults(t *testing.T) {
	ts, _ := newFake(t, Options{Catalogue: CatalogueOptions{Products: 3, RunDuration: time.Minute}})
	id := finishedRun(t, ts)
	clean, _ := ts.ResultsFile(id)
	lines := bytes.SplitAfter(clean, []byte("\n"))

	faults := func(body string) {
		t.Helper()
		mustStatus(t, call(t, ts, "POST", "/_sim/faults", body), 200)
	}
	faults(`{"results":[{"jobRunId":"other","format":"csv"},{"jobRunId":"` + id + `","format":"parquet","corruptLine":2}]}`)
	res := getResults(t, ts, "results-job", id)
	file, err := download(t, res.SignedURL)
	if err != nil || res.Format != "parquet" || len(file.body) != res.Size {
		t.Fatalf("format %q, %d bytes of %d (%v)", res.Format, len(file.body), res.Size, err)
	}
	got := bytes.SplitAfter(file.body, []byte("\n"))
	if len(got) != len(lines) || !bytes.Equal(got[0], lines[0]) || !bytes.Equal(got[2], lines[2]) || json.Valid(bytes.TrimSpace(got[1])) {
		t.Fatalf("corrupted file:\n%s", file.body)
	}
	var listed struct {
		Results []ResultsFault `json:"results"`
	}
	call(t, ts, "GET", "/_sim/faults", nil).decode(t, &listed)
	if len(listed.Results) != 2 {
		t.Fatalf("GET /_sim/faults: %+v", listed)
	}

	// Cut once in the middle of line 2: the client sees an unexpected EOF
	// after part of line 2; the next download is whole.
	faults(`{"results":[{"truncateLine":2,"times":1}]}`)
	res = getResults(t, ts, "results-job", id)
	cut, err := download(t, res.SignedURL)
	if !errors.Is(err, io.ErrUnexpectedEOF) || cut.status != 200 {
		t.Fatalf("cut download: %d, %v", cut.status, err)
	}
	if n := len(cut.body); n <= len(lines[0]) || n >= len(lines[0])+len(lines[1])-1 || !bytes.HasPrefix(clean, cut.body) {
		t.Fatalf("cut after %d bytes; line 2 spans %d..%d", n, len(lines[0]), len(lines[0])+len(lines[1]))
	}
	if whole, err := download(t, res.SignedURL); err != nil || !bytes.Equal(whole.body, clean) {
		t.Fatalf("second download: %v, %d bytes", err, len(whole.body))
	}

	// Cut every time: a ranged download from the start of line 2 is cut too,
	// one from beyond the cut is whole.
	faults(`{"results":[{"truncateLine":2}]}`)
	from := len(lines[0])
	if r, err := download(t, res.SignedURL, "Range", "bytes="+strconv.Itoa(from)+"-"); !errors.Is(err, io.ErrUnexpectedEOF) || r.status != 206 {
		t.Fatalf("ranged from line 2: %d %v", r.status, err)
	}
	from += len(lines[1])
	if r, err := download(t, res.SignedURL, "Range", "bytes="+strconv.Itoa(from)+"-"); err != nil || r.status != 206 || !bytes.Equal(r.body, clean[from:]) {
		t.Fatalf("ranged from line 3: %d %v %q", r.status, err, r.body)
	}

	mustStatus(t, call(t, ts, "POST", "/_sim/faults", `{"results":[{"corruptLine":-1}]}`), 400)
	mustStatus(t, call(t, ts, "DELETE", "/_sim/faults", nil), 204)
	if len(ts.ResultsFaults()) != 0 {
		t.Fatal("DELETE /_sim/faults left results faults")
	}
}
