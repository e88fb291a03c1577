package contract

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/intuned-operator/intuned-operator/internal/intuned"
	"github.com/intuned-operator/intuned-operator/internal/intunedsim"
	"github.com/intuned-operator/intuned-operator/internal/intunedsim/simtest"
)

// sinkBody is the webhook body as the seed guide documents it.
type sinkBody struct {
	WorkspaceID string `json:"workspaceId"`
	Project     struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	} `json:"project"`
	ProjectJob    *struct{ ID string } `json:"projectJob"`
	ProjectJobRun *struct{ ID string } `json:"projectJobRun"`
	AuthSession   *struct{ ID string } `json:"authSession"`
	APIInfo       struct {
		Name       string          `json:"name"`
		RunID      string          `json:"runId"`
		Parameters json.RawMessage `json:"parameters"`
		Result     struct {
			Status     string          `json:"status"`
			Result     json.RawMessage `json:"result"`
			Error      string          `json:"error"`
			Message    string          `json:"message"`
			StatusCode int             `json:"statusCode"`
		} `json:"result"`
	} `json:"apiInfo"`
}

// TestTriggerQuickstart triggers the quickstart Job (1 `list` + N `details`,
// one failing), watches the JobRun's counters move, and compares every
// webhook the sink endpoint received with the simulator's delivery log.
func TestTriggerQuickstart(t *testing.T) {
	const products = 4
	cat := intunedsim.NewCatalogue(intunedsim.CatalogueOptions{Products: products, FailureShare: 0.25}, 3)
	g := newGate()
	e := newEnv(t, intunedsim.Options{Handlers: map[string]intunedsim.APIHandler{"list": cat.List, "details": g.wrap(cat.Details)}})
	t.Cleanup(g.open)
	ctx := ctxT(t)
	sink := newSinkEndpoint(t)

	req := fullJob("quickstart-job", sink.URL+"/hooks/intuned")
	req.Schedule = nil
	if _, err := e.client.CreateJob(ctx, project, req); err != nil {
		t.Fatal(err)
	}
	job, err := e.client.GetJob(ctx, project, req.ID)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := e.client.TriggerJob(ctx, project, req.ID)
	if err != nil {
		t.Fatal(err)
	}
	if tr.JobRunID == "" || tr.Message == "" {
		t.Fatalf("trigger answer %+v", tr)
	}

	// Mid-run: `list` done and extended the run, `details` held at the gate.
	var mid *intuned.GetJobRunResponse
	eventually(t, "list to finish and extend the run", func() bool {
		mid, err = e.client.GetJobRun(ctx, project, req.ID, tr.JobRunID)
		if err != nil {
			t.Fatal(err)
		}
		jr := mid.JobRun
		return jr.Payloads != nil && *jr.Payloads == 1+products && jr.SuccessfulRuns != nil && *jr.SuccessfulRuns == 1
	})
	if jr := mid.JobRun; jr.Status != intuned.JobRunPending || jr.EndTime != nil || jr.Status.Terminal() || mid.Results != nil {
		t.Errorf("mid-run: status %s end_time %v results %v", jr.Status, jr.EndTime, mid.Results)
	}
	g.open()
	done := waitRunDone(t, e.client, req.ID, tr.JobRunID)
	jr := done.JobRun
	if jr.Status != intuned.JobRunCompleted || jr.Type != intuned.JobRunManual || jr.EndTime == nil {
		t.Errorf("final: status %s type %s end_time %v", jr.Status, jr.Type, jr.EndTime)
	}
	if *jr.Payloads != 1+products || *jr.SuccessfulRuns != products || *jr.FailedRuns != 1 {
		t.Errorf("counters payloads %d successful %d failed %d, want %d %d 1", *jr.Payloads, *jr.SuccessfulRuns, *jr.FailedRuns, 1+products, products)
	}
	if jr.ID != tr.JobRunID || jr.JobID != req.ID || jr.WorkspaceID != e.sim.WorkspaceID || jr.ProjectID != job.ProjectID || jr.StartTime.IsZero() || jr.EndTime.Before(jr.StartTime.Time) {
		t.Errorf("JobRun identity/times: %+v", jr)
	}
	snap := jr.Snapshot
	if snap.Sink == nil || snap.Sink.Webhook == nil || snap.Sink.Webhook.URL != req.Sink.Webhook.URL ||
		snap.AuthSession == nil || snap.AuthSession.ID != req.AuthSession.ID ||
		snap.Proxy == nil || snap.Proxy.Version != "v1" || snap.Proxy.URL != *req.Proxy ||
		snap.Configuration.MaxConcurrentRequests == nil || *snap.Configuration.MaxConcurrentRequests != 2 {
		b, _ := json.Marshal(snap)
		t.Errorf("job_configuration_snapshot %s", b)
	}

	// The aggregate results file behind signed_url: one line per Run.
	if done.Results == nil || done.Results.SignedURL == "" || done.Results.Format != "jsonl" {
		t.Fatalf("results = %+v", done.Results)
	}
	resp, err := http.Get(done.Results.SignedURL)
	if err != nil {
		t.Fatal(err)
	}
	lines, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if n := bytes.Count(bytes.TrimSpace(lines), []byte("\n")) + 1; resp.StatusCode != 200 || n != 1+products {
		t.Errorf("results file: %d, %d lines, want %d", resp.StatusCode, n, 1+products)
	}

	// Deliveries: one per Run, failed one included (skipOnFail false).
	eventually(t, "every delivery to land", func() bool {
		ds := e.sim.Deliveries()
		if len(ds) != 1+products {
			return false
		}
		for _, d := range ds {
			if d.Outcome != intunedsim.OutcomeDelivered {
				return false
			}
		}
		return len(sink.received()) == 1+products
	})
	got := map[string]received{}
	for _, r := range sink.received() {
		var b sinkBody
		if err := json.Unmarshal(r.Body, &b); err != nil {
			t.Fatalf("webhook body is not JSON: %s", r.Body)
		}
		got[b.APIInfo.RunID] = r
	}
	failed := 0
	for _, d := range e.sim.Deliveries() {
		r, ok := got[d.RunID]
		if !ok {
			t.Errorf("delivery %s never reached the endpoint", d.RunID)
			continue
		}
		if !bytes.Equal(r.Body, d.Body) {
			t.Errorf("run %s: endpoint got\n%s\nlog says\n%s", d.RunID, r.Body, d.Body)
		}
		if r.Header.Get("Content-Type") != "application/json" || r.Header.Get("Authorization") != "Bearer sink-token" {
			t.Errorf("run %s: headers %v", d.RunID, r.Header)
		}
		if len(d.Attempts) != 1 || d.Attempts[0].StatusCode != 200 || d.JobRunID != tr.JobRunID || d.SinkType != "webhook" {
			t.Errorf("delivery log entry %+v", d)
		}
		var b sinkBody
		_ = json.Unmarshal(r.Body, &b)
		if b.WorkspaceID != e.sim.WorkspaceID || b.Project.ID != job.ProjectID || b.Project.Name != project ||
			b.ProjectJob == nil || b.ProjectJob.ID != req.ID || b.ProjectJobRun == nil || b.ProjectJobRun.ID != tr.JobRunID ||
			b.AuthSession == nil || b.AuthSession.ID != req.AuthSession.ID ||
			!slices.Contains([]string{"list", "details"}, b.APIInfo.Name) || len(b.APIInfo.RunID) != 21 || len(b.APIInfo.Parameters) == 0 {
			t.Errorf("body fields: %s", r.Body)
		}
		// Exactly the guide's keys, nothing renamed or added.
		var top map[string]json.RawMessage
		_ = json.Unmarshal(r.Body, &top)
		var info map[string]json.RawMessage
		_ = json.Unmarshal(top["apiInfo"], &info)
		if k := sortedKeys(top); !slices.Equal(k, []string{"apiInfo", "authSession", "project", "projectJob", "projectJobRun", "workspaceId"}) {
			t.Errorf("body keys %v", k)
		}
		if k := sortedKeys(info); !slices.Equal(k, []string{"name", "parameters", "result", "runId"}) {
			t.Errorf("apiInfo keys %v", k)
		}
		if b.APIInfo.Name == "details" {
			var p map[string]json.RawMessage
			_ = json.Unmarshal(b.APIInfo.Parameters, &p)
			if k := sortedKeys(p); !slices.Equal(k, []string{"detailsUrl", "name"}) {
				t.Errorf("details parameters keys %v, want the guide's detailsUrl, name", k)
			}
		}
		switch res := b.APIInfo.Result; res.Status {
		case "completed":
			if res.StatusCode != 200 || len(res.Result) == 0 {
				t.Errorf("completed result: %s", r.Body)
			}
		case "failed":
			failed++
			if res.StatusCode < 400 || res.Error == "" || res.Message == "" {
				t.Errorf("failed result: %s", r.Body)
			}
		default:
			t.Errorf("result status %q", res.Status)
		}
	}
	if failed != 1 {
		t.Errorf("%d failed Runs delivered, want 1", failed)
	}

	// The Job records its last run.
	job, _ = e.client.GetJob(ctx, project, req.ID)
	if job.LastRunTime == nil {
		t.Error("last_run_time not set after a finished run")
	}
}

// TestListJobRunsPaging checks pageSize, 0-based pageNumber, sortBy and
// totalCount.
func TestListJobRunsPaging(t *testing.T) {
	e := newEnv(t, intunedsim.Options{Handlers: map[string]intunedsim.APIHandler{"noop": noop}})
	ctx := ctxT(t)
	req := intuned.CreateJobRequest{ID: "paging-job", Payload: []intuned.PayloadItem{{APIName: "noop", Parameters: params(`{}`)}}}
	if _, err := e.client.CreateJob(ctx, project, req); err != nil {
		t.Fatal(err)
	}
	const runs = 5
	var ids []string // in trigger order
	for range runs {
		tr, err := e.client.TriggerJob(ctx, project, req.ID)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, tr.JobRunID)
		waitRunDone(t, e.client, req.ID, tr.JobRunID) // distinct, ordered times
	}
	rev := slices.Clone(ids)
	slices.Reverse(rev)

	cases := []struct {
		name string
		opts intuned.ListRunsOptions
		want []string
	}{
		{"server default (newest first)", intuned.ListRunsOptions{}, rev},
		{"page 0 asc", intuned.ListRunsOptions{PageSize: 2, SortBy: "created_at,asc"}, ids[0:2]},
		{"page 1 asc", intuned.ListRunsOptions{PageSize: 2, PageNumber: 1, SortBy: "created_at,asc"}, ids[2:4]},
		{"last partial page", intuned.ListRunsOptions{PageSize: 2, PageNumber: 2, SortBy: "created_at,asc"}, ids[4:5]},
		{"past the end", intuned.ListRunsOptions{PageSize: 2, PageNumber: 3, SortBy: "created_at,asc"}, nil},
		{"page 0 desc", intuned.ListRunsOptions{PageSize: 3, SortBy: "start_time,desc"}, rev[0:3]},
		{"two keys", intuned.ListRunsOptions{PageSize: 5, SortBy: "status,asc/start_time,asc"}, ids},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l, err := e.client.ListJobRuns(ctx, project, req.ID, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range l.JobRuns {
				got = append(got, r.ID)
				if r.JobID != req.ID || r.Status != intuned.JobRunCompleted {
					t.Errorf("run %s: job %s status %s", r.ID, r.JobID, r.Status)
				}
			}
			if l.TotalCount != runs || !slices.Equal(got, tc.want) {
				t.Errorf("got %v total %d, want %v total %d", got, l.TotalCount, tc.want, runs)
			}
		})
	}
}

// TestTerminateAndPausedRuns covers terminate (and its no-op repeat) and
// a trigger while the Job is paused.
func TestTerminateAndPausedRuns(t *testing.T) {
	g := newGate()
	e := newEnv(t, intunedsim.Options{Handlers: map[string]intunedsim.APIHandler{"slow": g.wrap(noop)}})
	t.Cleanup(g.open)
	ctx := ctxT(t)
	req := intuned.CreateJobRequest{ID: "terminate-job", Payload: []intuned.PayloadItem{
		{APIName: "slow", Parameters: params(`{"i":1}`)}, {APIName: "slow", Parameters: params(`{"i":2}`)},
	}, Configuration: intuned.Configuration{MaxConcurrentRequests: ptr(1.0)}}
	if _, err := e.client.CreateJob(ctx, project, req); err != nil {
		t.Fatal(err)
	}

	tr, err := e.client.TriggerJob(ctx, project, req.ID)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 { // the second terminate finds a finished run: a no-op
		if err := e.client.TerminateJobRun(ctx, project, req.ID, tr.JobRunID); err != nil {
			t.Fatalf("terminate #%d: %v", i+1, err)
		}
	}
	r, err := e.client.GetJobRun(ctx, project, req.ID, tr.JobRunID)
	if err != nil {
		t.Fatal(err)
	}
	if jr := r.JobRun; jr.Status != intuned.JobRunTerminated || jr.Reason == nil || jr.Reason.Type != "terminated" || jr.EndTime == nil {
		t.Errorf("terminated run: status %s reason %+v end %v", jr.Status, jr.Reason, jr.EndTime)
	}

	// A trigger on a paused Job makes a PAUSED run that finishes on resume.
	if err := e.client.PauseJob(ctx, project, req.ID); err != nil {
		t.Fatal(err)
	}
	tr2, err := e.client.TriggerJob(ctx, project, req.ID)
	if err != nil {
		t.Fatal(err)
	}
	r, err = e.client.GetJobRun(ctx, project, req.ID, tr2.JobRunID)
	if err != nil || r.JobRun.Status != intuned.JobRunPaused {
		t.Fatalf("run of a paused job: %v %v", r, err)
	}
	g.open()
	if err := e.client.ResumeJob(ctx, project, req.ID); err != nil {
		t.Fatal(err)
	}
	if jr := waitRunDone(t, e.client, req.ID, tr2.JobRunID).JobRun; jr.Status != intuned.JobRunCompleted || *jr.SuccessfulRuns != 2 {
		t.Errorf("resumed run: %s, %d successful", jr.Status, *jr.SuccessfulRuns)
	}
	l, err := e.client.ListJobRuns(ctx, project, req.ID, intuned.ListRunsOptions{})
	if err != nil || l.TotalCount != 2 {
		t.Errorf("runs listed: %v %v", l, err)
	}
}

// TestDeliveryFilters checks apisToSend and skipOnFail as the client sends
// them: filtered Runs are logged "skipped" and never reach the endpoint.
func TestDeliveryFilters(t *testing.T) {
	const products = 4 // one fails (FailureShare 0.25)
	cases := []struct {
		name       string
		apisToSend []string
		skipOnFail bool
		want       int // deliveries that reach the endpoint
	}{
		{"everything", nil, false, 1 + products},
		{"details only", []string{"details"}, false, products},
		{"skip failed", nil, true, products},
		{"details only, skip failed", []string{"details"}, true, products - 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, intunedsim.Options{Catalogue: intunedsim.CatalogueOptions{Products: products, FailureShare: 0.25}})
			ctx := ctxT(t)
			sink := newSinkEndpoint(t)
			req := quickstartJob("filter-job")
			req.Sink = &intuned.Sink{Webhook: &intuned.WebhookSink{URL: sink.URL, APIsToSend: tc.apisToSend, SkipOnFail: ptr(tc.skipOnFail)}}
			if _, err := e.client.CreateJob(ctx, project, req); err != nil {
				t.Fatal(err)
			}
			tr, err := e.client.TriggerJob(ctx, project, req.ID)
			if err != nil {
				t.Fatal(err)
			}
			waitRunDone(t, e.client, req.ID, tr.JobRunID)
			eventually(t, "deliveries to settle", func() bool {
				ds := e.sim.Deliveries()
				for _, d := range ds {
					if d.Outcome == intunedsim.OutcomePending {
						return false
					}
				}
				return len(ds) == 1+products
			})
			delivered := 0
			for _, d := range e.sim.Deliveries() {
				switch d.Outcome {
				case intunedsim.OutcomeDelivered:
					delivered++
				case intunedsim.OutcomeSkipped:
					if len(d.Attempts) != 0 || d.SkipReason == "" {
						t.Errorf("skipped delivery %+v", d)
					}
				default:
					t.Errorf("outcome %q", d.Outcome)
				}
			}
			if delivered != tc.want || len(sink.received()) != tc.want {
				t.Errorf("delivered %d, endpoint got %d, want %d", delivered, len(sink.received()), tc.want)
			}
		})
	}
}

// TestDeliveryRetry checks on a fake clock that a webhook answered 500 is
// retried 10 s later with the same body.
func TestDeliveryRetry(t *testing.T) {
	fc := intunedsim.NewFakeClock(time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC))
	e := newEnv(t, intunedsim.Options{Clock: fc, Handlers: map[string]intunedsim.APIHandler{"noop": noop}})
	ctx := ctxT(t)
	var mu sync.Mutex
	var bodies [][]byte
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		bodies = append(bodies, b)
		if len(bodies) == 1 {
			w.WriteHeader(http.StatusInternalServerError)
		}
	}))
	t.Cleanup(hook.Close)
	req := intuned.CreateJobRequest{ID: "retry-delivery-job", Payload: []intuned.PayloadItem{{APIName: "noop", Parameters: params(`{}`)}},
		Sink: &intuned.Sink{Webhook: &intuned.WebhookSink{URL: hook.URL}}}
	if _, err := e.client.CreateJob(ctx, project, req); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.TriggerJob(ctx, project, req.ID); err != nil {
		t.Fatal(err)
	}
	simtest.WaitIdle(t, e.sim)
	e.sim.Advance(9 * time.Second)
	if ds := e.sim.Deliveries(); len(ds) != 1 || ds[0].Outcome != intunedsim.OutcomePending || len(ds[0].Attempts) != 1 {
		t.Fatalf("before 10 s: %+v", ds)
	}
	e.sim.Advance(time.Second)
	ds := e.sim.Deliveries()
	if len(ds) != 1 || ds[0].Outcome != intunedsim.OutcomeDelivered || len(ds[0].Attempts) != 2 ||
		ds[0].Attempts[0].StatusCode != 500 || ds[0].Attempts[1].Time.Sub(ds[0].Attempts[0].Time) != 10*time.Second {
		t.Fatalf("after 10 s: %+v", ds)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(bodies) != 2 || !bytes.Equal(bodies[0], bodies[1]) || !bytes.Equal(bodies[1], ds[0].Body) {
		t.Errorf("bodies differ between attempts or from the log")
	}
}

func sortedKeys(m map[string]json.RawMessage) []string {
	var k []string
	for key := range m {
		k = append(k, key)
	}
	slices.Sort(k)
	return k
}
