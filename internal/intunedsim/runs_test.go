package intunedsim

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

type runView struct {
	ID             string  `json:"id"`
	Type           string  `json:"type"`
	Status         string  `json:"status"`
	Payloads       int     `json:"payloads"`
	SuccessfulRuns int     `json:"successful_runs"`
	FailedRuns     int     `json:"failed_runs"`
	StartTime      *string `json:"start_time"`
	EndTime        *string `json:"end_time"`
	Reason         *struct {
		Type string `json:"type"`
	} `json:"reason"`
}

func getRun(t *testing.T, ts *TestServer, jobID, runID string) runView {
	t.Helper()
	var env struct{ JobRun runView }
	r := call(t, ts, "GET", "/jobs/"+jobID+"/runs/"+runID, nil)
	mustStatus(t, r, 200)
	r.decode(t, &env)
	return env.JobRun
}

func trigger(t *testing.T, ts *TestServer, jobID string) string {
	t.Helper()
	var trig struct{ JobRunID, Message string }
	r := call(t, ts, "POST", "/jobs/"+jobID+"/trigger", nil)
	mustStatus(t, r, 200)
	r.decode(t, &trig)
	if trig.JobRunID == "" || trig.Message == "" {
		t.Fatalf("trigger = %s", r.body)
	}
	return trig.JobRunID
}

func iso(d time.Duration) string { return isoTime(testStart.Add(d)) }

func TestJobRunProgress(t *testing.T) {
	cases := []struct {
		name     string
		maxConc  int
		products int
		wantEnd  time.Duration // list takes 1m, then ceil(products/maxConc) rounds of 1m
	}{
		{"default concurrency", 0, 5, 2 * time.Minute},
		{"two at a time", 2, 5, 4 * time.Minute},
		{"one at a time", 1, 3, 4 * time.Minute},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ts, _ := newFake(t, Options{Catalogue: CatalogueOptions{Products: c.products, RunDuration: time.Minute}})
			job := quickstartJob("progress-job", "https://unused.example/h")
			delete(job, "sink")
			if c.maxConc > 0 {
				job["configuration"].(map[string]any)["maxConcurrentRequests"] = c.maxConc
			}
			mustStatus(t, call(t, ts, "POST", "/jobs", job), 201)
			id := trigger(t, ts, "progress-job")
			ts.WaitIdleT(t)
			r := getRun(t, ts, "progress-job", id)
			if r.Status != JobRunPending || r.Type != JobRunManual || r.Payloads != 1 || r.SuccessfulRuns != 0 || *r.StartTime != iso(0) || r.EndTime != nil {
				t.Fatalf("at start: %+v", r)
			}
			ts.Advance(time.Minute)
			r = getRun(t, ts, "progress-job", id)
			if r.Status != JobRunPending || r.Payloads != 1+c.products || r.SuccessfulRuns != 1 {
				t.Fatalf("after list: %+v", r)
			}
			ts.Advance(time.Hour)
			r = getRun(t, ts, "progress-job", id)
			if r.Status != JobRunCompleted || r.SuccessfulRuns != 1+c.products || r.FailedRuns != 0 || *r.EndTime != iso(c.wantEnd) {
				t.Fatalf("at end: %+v (want end %s)", r, iso(c.wantEnd))
			}
			var detail struct {
				LastRunTime *string `json:"last_run_time"`
			}
			call(t, ts, "GET", "/jobs/progress-job", nil).decode(t, &detail)
			if detail.LastRunTime == nil || *detail.LastRunTime != iso(c.wantEnd) {
				t.Fatalf("last_run_time %v", detail.LastRunTime)
			}
		})
	}
}

// TestRunDurationSetting: a test lengthens the Runs of the next JobRun
// through the admin API (to act in the middle of it); Reset restores it.
func TestRunDurationSetting(t *testing.T) {
	ts, _ := newFake(t, Options{Catalogue: CatalogueOptions{Products: 2, RunDuration: time.Minute}})
	mustStatus(t, call(t, ts, "POST", "/_sim/settings", `{"runDuration":"-1s"}`), 400)
	mustStatus(t, call(t, ts, "POST", "/_sim/settings", `{"runDuration":"10m"}`), 200)
	job := quickstartJob("slow-job", "https://unused.example/h")
	delete(job, "sink")
	mustStatus(t, call(t, ts, "POST", "/jobs", job), 201)
	id := trigger(t, ts, "slow-job")
	ts.WaitIdleT(t)
	ts.Advance(9 * time.Minute)
	if r := getRun(t, ts, "slow-job", id); r.SuccessfulRuns != 0 {
		t.Fatalf("list ended before its 10 minutes: %+v", r)
	}
	ts.Advance(time.Hour)
	if r := getRun(t, ts, "slow-job", id); r.Status != JobRunCompleted || *r.EndTime != iso(20*time.Minute) {
		t.Fatalf("at end: %+v, want end %s", r, iso(20*time.Minute))
	}
	ts.Reset()
	var settings struct {
		RunDuration string `json:"runDuration"`
	}
	call(t, ts, "GET", "/_sim/settings", nil).decode(t, &settings)
	if settings.RunDuration != "1m0s" {
		t.Fatalf("after reset: runDuration %q", settings.RunDuration)
	}
}

func TestJobRunOutcomes(t *testing.T) {
	var flaky atomic.Int32
	handlers := map[string]APIHandler{
		"flaky": func(ctx context.Context, rc RunContext) RunResult {
			flaky.Add(1)
			if rc.Attempt < 3 {
				return RunResult{Error: &RunError{Code: "script-execution-exception", Message: "flake"}}
			}
			return RunResult{Result: map[string]int{"attempt": rc.Attempt}}
		},
		"slow":  func(ctx context.Context, rc RunContext) RunResult { return RunResult{Result: 1, Duration: time.Hour} },
		"panic": func(ctx context.Context, rc RunContext) RunResult { panic("boom") },
		"bad":   func(ctx context.Context, rc RunContext) RunResult { return RunResult{Result: make(chan int)} },
	}
	cases := []struct {
		name       string
		payload    map[string]any
		config     map[string]any
		wantStatus string
		wantErr    string
		attempts   int
	}{
		{"unknown api fails", map[string]any{"apiName": "nope"}, nil, JobRunFailure, "script-execution-exception", 1},
		{"retries until success", map[string]any{"apiName": "flaky"}, map[string]any{"retry": map[string]any{"maximumAttempts": 3}}, JobRunCompleted, "", 3},
		{"payload retry overrides job", map[string]any{"apiName": "flaky", "retry": map[string]any{"maximumAttempts": 2}}, map[string]any{"retry": map[string]any{"maximumAttempts": 5}}, JobRunFailure, "script-execution-exception", 2},
		{"request timeout", map[string]any{"apiName": "slow", "requestTimeout": 60, "retry": map[string]any{"maximumAttempts": 1}}, nil, JobRunFailure, "script-timeout", 1},
		{"handler panic", map[string]any{"apiName": "panic", "retry": map[string]any{"maximumAttempts": 1}}, nil, JobRunFailure, "script-process-crashed", 1},
		{"result not JSON", map[string]any{"apiName": "bad"}, nil, JobRunFailure, "script-no-valid-output-received", 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ts, _ := newFake(t, Options{Handlers: handlers})
			c.payload["parameters"] = map[string]any{}
			cfg := c.config
			if cfg == nil {
				cfg = map[string]any{}
			}
			mustStatus(t, call(t, ts, "POST", "/jobs", map[string]any{"id": "outcome-job", "payload": []any{c.payload}, "configuration": cfg}), 201)
			id := trigger(t, ts, "outcome-job")
			ts.Advance(2 * time.Hour)
			r := getRun(t, ts, "outcome-job", id)
			if r.Status != c.wantStatus {
				t.Fatalf("status %s, want %s", r.Status, c.wantStatus)
			}
			runs := ts.APIRuns(id)
			if len(runs) != 1 || runs[0].Attempts != c.attempts || len(runs[0].RunID) != 21 {
				t.Fatalf("runs %+v", runs)
			}
			if c.wantErr != "" && (runs[0].Error == nil || runs[0].Error.Code != c.wantErr) {
				t.Fatalf("error %+v, want %s", runs[0].Error, c.wantErr)
			}
		})
	}
}

func TestPauseResumeInFlight(t *testing.T) {
	ts, _ := newFake(t, Options{Catalogue: CatalogueOptions{Products: 3, RunDuration: time.Minute}})
	job := quickstartJob("pause-inflight", "https://unused.example/h")
	delete(job, "sink")
	mustStatus(t, call(t, ts, "POST", "/jobs", job), 201)
	id := trigger(t, ts, "pause-inflight")
	ts.WaitIdleT(t)
	mustStatus(t, call(t, ts, "POST", "/jobs/pause-inflight/pause", nil), 200)
	ts.Advance(10 * time.Minute) // list finishes; its extended payloads wait
	r := getRun(t, ts, "pause-inflight", id)
	if r.Status != JobRunPaused || r.Reason == nil || r.Reason.Type != "user-request" || r.Payloads != 4 || r.SuccessfulRuns != 1 {
		t.Fatalf("paused run: %+v", r)
	}
	// A trigger while paused makes a paused run.
	id2 := trigger(t, ts, "pause-inflight")
	if r2 := getRun(t, ts, "pause-inflight", id2); r2.Status != JobRunPaused {
		t.Fatalf("run triggered while paused: %+v", r2)
	}
	mustStatus(t, call(t, ts, "POST", "/jobs/pause-inflight/resume", nil), 200)
	ts.Advance(time.Hour)
	for _, rid := range []string{id, id2} {
		if r := getRun(t, ts, "pause-inflight", rid); r.Status != JobRunCompleted || r.SuccessfulRuns != 4 || r.Reason != nil {
			t.Fatalf("after resume: %+v", r)
		}
	}
}

func TestTerminate(t *testing.T) {
	h, url := newHook(t, nil)
	ts, _ := newFake(t, Options{Catalogue: CatalogueOptions{Products: 3, RunDuration: time.Minute}})
	mustStatus(t, call(t, ts, "POST", "/jobs", quickstartJob("terminate-job", url)), 201)
	id := trigger(t, ts, "terminate-job")
	ts.Advance(time.Minute + 30*time.Second) // list done, details executing
	r := call(t, ts, "POST", "/jobs/terminate-job/runs/"+id+"/terminate", nil)
	if r.status != 200 || !strings.Contains(string(r.body), `"message"`) {
		t.Fatalf("terminate = %d %s", r.status, r.body)
	}
	ts.Advance(time.Hour)
	run := getRun(t, ts, "terminate-job", id)
	if run.Status != JobRunTerminated || run.Reason == nil || run.Reason.Type != "terminated" || *run.EndTime != iso(90*time.Second) || run.SuccessfulRuns != 1 {
		t.Fatalf("terminated run %+v", run)
	}
	if n := len(h.drain()); n != 1 {
		t.Fatalf("%d webhooks after terminate, want only the list's", n)
	}
	// Terminating again is a no-op.
	mustStatus(t, call(t, ts, "POST", "/jobs/terminate-job/runs/"+id+"/terminate", nil), 200)
	if getRun(t, ts, "terminate-job", id).Status != JobRunTerminated {
		t.Fatal("status changed")
	}
}

func TestListRunsPagingAndSorting(t *testing.T) {
	ts, _ := newFake(t, Options{})
	mustStatus(t, call(t, ts, "POST", "/jobs", minimalJob("paging-job")), 201)
	var ids []string
	for i := 0; i < 5; i++ {
		ids = append(ids, trigger(t, ts, "paging-job"))
		ts.Advance(time.Second)
	}
	page := func(q string) (got []string, total int) {
		var p struct {
			JobRuns    []runView `json:"jobRuns"`
			TotalCount int       `json:"totalCount"`
		}
		r := call(t, ts, "GET", "/jobs/paging-job/runs"+q, nil)
		mustStatus(t, r, http.StatusOK)
		r.decode(t, &p)
		for _, jr := range p.JobRuns {
			got = append(got, jr.ID)
		}
		return got, p.TotalCount
	}
	rev := []string{ids[4], ids[3], ids[2], ids[1], ids[0]}
	cases := []struct {
		q    string
		want []string
	}{
		{"", rev},
		{"?pageSize=2", rev[:2]},
		{"?pageSize=2&pageNumber=1", rev[2:4]},
		{"?pageSize=2&pageNumber=2", rev[4:]},
		{"?pageSize=2&pageNumber=3", nil},
		{"?sortBy=start_time,asc", ids},
		{"?sortBy=start_time", ids},
		{"?sortBy=status,asc/start_time,desc&pageSize=3", rev[:3]},
		{"?sortBy=created_at,desc&pageNumber=0&pageSize=1", rev[:1]},
	}
	for _, c := range cases {
		got, total := page(c.q)
		if total != 5 || strings.Join(got, ",") != strings.Join(c.want, ",") {
			t.Errorf("%s: got %v (total %d), want %v", c.q, got, total, c.want)
		}
	}
	if r := call(t, ts, "GET", "/jobs/paging-job/runs?pageNumber=9", nil); !strings.Contains(string(r.body), `"jobRuns":[]`) {
		t.Errorf("empty page = %s", r.body)
	}
}
