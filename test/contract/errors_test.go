package contract

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/intuned-operator/intuned-operator/internal/intuned"
	"github.com/intuned-operator/intuned-operator/internal/intunedsim"
)

// TestBadRequest sends inputs Intuned refuses and checks the client decodes
// each 400 as IsBadRequest with Intuned's code, category, message and
// correlationId, and does not retry it.
func TestBadRequest(t *testing.T) {
	e := newEnv(t, intunedsim.Options{})
	ctx := ctxT(t)
	if _, err := e.client.CreateJob(ctx, project, quickstartJob("existing-job")); err != nil {
		t.Fatal(err)
	}
	create := func(edit func(*intuned.CreateJobRequest)) func() error {
		return func() error {
			r := quickstartJob("valid-job-id")
			edit(&r)
			_, err := e.client.CreateJob(ctx, project, r)
			return err
		}
	}
	webhook := func(url string) *intuned.Sink { return &intuned.Sink{Webhook: &intuned.WebhookSink{URL: url}} }

	cases := []struct {
		name    string
		route   string // call-counter key: sent exactly once (no retry)
		call    func() error
		message string // substring of Intuned's message
	}{
		{"short id", "POST " + routeJobs, create(func(r *intuned.CreateJobRequest) { r.ID = "short" }), "id must be at least 7"},
		{"empty id", "POST " + routeJobs, create(func(r *intuned.CreateJobRequest) { r.ID = "" }), "id is required"},
		{"bad chars in id", "POST " + routeJobs, create(func(r *intuned.CreateJobRequest) { r.ID = "bad id/with.dots" }), "id must match"},
		{"missing payload", "POST " + routeJobs, create(func(r *intuned.CreateJobRequest) { r.Payload = nil }), "payload is required"},
		{"payload without apiName", "POST " + routeJobs, create(func(r *intuned.CreateJobRequest) { r.Payload[0].APIName = "" }), "payload[0].apiName is required"},
		{"payload parameters not an object", "POST " + routeJobs, create(func(r *intuned.CreateJobRequest) { r.Payload[0].Parameters = params(`[1]`) }), "payload[0].parameters"},
		{"webhook sink without url", "POST " + routeJobs, create(func(r *intuned.CreateJobRequest) { r.Sink = webhook("") }), "sink.url is required"},
		{"webhook sink relative url", "POST " + routeJobs, create(func(r *intuned.CreateJobRequest) { r.Sink = webhook("/in") }), "sink.url must be an absolute"},
		{"s3 sink without bucket", "POST " + routeJobs, create(func(r *intuned.CreateJobRequest) {
			r.Sink = &intuned.Sink{S3: &intuned.S3Sink{AccessKeyID: "a", SecretAccessKey: "s", Region: "r"}}
		}), "sink.bucket is required"},
		{"bad proxy", "POST " + routeJobs, create(func(r *intuned.CreateJobRequest) { r.Proxy = ptr("not a url") }), "proxy must be a URL"},
		{"auth_session without id", "POST " + routeJobs, create(func(r *intuned.CreateJobRequest) { r.AuthSession = &intuned.AuthSession{} }), "auth_session.id is required"},
		{"maxConcurrentRequests 0", "POST " + routeJobs, create(func(r *intuned.CreateJobRequest) { r.Configuration.MaxConcurrentRequests = ptr(0.0) }), "maxConcurrentRequests must be greater than 0"},
		{"bad interval", "POST " + routeJobs, create(func(r *intuned.CreateJobRequest) {
			r.Schedule = &intuned.Schedule{Intervals: []intuned.Interval{{Every: intuned.Str("soon")}}}
		}), "schedule.intervals[0].every"},
		{"update without payload", "PUT " + routeJob, func() error {
			_, err := e.client.UpdateJob(ctx, project, "existing-job", intuned.UpdateJobRequest{})
			return err
		}, "payload is required"},
		{"runs pageSize too big", "GET " + routeRuns, func() error {
			_, err := e.client.ListJobRuns(ctx, project, "existing-job", intuned.ListRunsOptions{PageSize: 1000})
			return err
		}, "pageSize must be an integer between 1 and 100"},
		{"runs unknown sortBy field", "GET " + routeRuns, func() error {
			_, err := e.client.ListJobRuns(ctx, project, "existing-job", intuned.ListRunsOptions{SortBy: "colour,asc"})
			return err
		}, `sortBy: unknown field "colour"`},
		{"runs bad sort direction", "GET " + routeRuns, func() error {
			_, err := e.client.ListJobRuns(ctx, project, "existing-job", intuned.ListRunsOptions{SortBy: "start_time,up"})
			return err
		}, "must be asc or desc"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e.sim.ResetCalls()
			err := tc.call()
			if !intuned.IsBadRequest(err) {
				t.Fatalf("err = %v, want bad request", err)
			}
			ae := apiErr(t, err)
			if ae.StatusCode != 400 || ae.Code != "bad-request" || ae.Category != "user" || ae.CorrelationID == "" || ae.Retriable {
				t.Errorf("APIError = %+v", ae)
			}
			if !strings.Contains(ae.Message, tc.message) {
				t.Errorf("message %q lacks %q", ae.Message, tc.message)
			}
			if !strings.Contains(err.Error(), ae.CorrelationID) {
				t.Errorf("error string %q lacks the correlationId", err)
			}
			if intuned.IsRetriable(err) || intuned.IsConflict(err) || intuned.IsNotFound(err) {
				t.Errorf("400 classified as retriable/conflict/not-found: %v", err)
			}
			if n := e.sim.Calls()[tc.route]; n != 1 {
				t.Errorf("%s called %d times, want 1 (a 400 is never retried)", tc.route, n)
			}
		})
	}

	// A sink type the client's union cannot express is refused before
	// anything is sent; the simulator refuses it too (checked raw).
	t.Run("bad sink type", func(t *testing.T) {
		e.sim.ResetCalls()
		r := quickstartJob("valid-job-id")
		r.Sink = &intuned.Sink{}
		if _, err := e.client.CreateJob(ctx, project, r); err == nil || intuned.IsBadRequest(err) {
			t.Errorf("client sent a sink without a type: %v", err)
		}
		if n := e.sim.WriteCalls(); n != 0 {
			t.Errorf("%d writes reached the simulator", n)
		}
		body := `{"id":"valid-job-id","payload":[{"apiName":"list","parameters":{}}],"configuration":{},"sink":{"type":"ftp","url":"ftp://x"}}`
		req, _ := http.NewRequest(http.MethodPost, e.sim.APIBase+"/"+e.sim.WorkspaceID+"/projects/"+project+"/jobs", strings.NewReader(body))
		req.Header.Set("x-api-key", e.sim.APIKey)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var eb intuned.ErrorBody
		if err := json.Unmarshal(b, &eb); err != nil || resp.StatusCode != 400 || eb.Code != "bad-request" || !strings.Contains(eb.Message, `unsupported sink type "ftp"`) || eb.CorrelationID == "" {
			t.Errorf("raw answer %d %s", resp.StatusCode, b)
		}
	})
}

// everyOperation calls each client method once on jobID/runID.
func everyOperation(c intuned.API, jobID, runID string) map[string]func(context.Context) error {
	spec := quickstartJob(jobID).Spec()
	return map[string]func(context.Context) error{
		"ListJobs":  func(ctx context.Context) error { _, err := c.ListJobs(ctx, project); return err },
		"CreateJob": func(ctx context.Context) error { _, err := c.CreateJob(ctx, project, quickstartJob(jobID)); return err },
		"GetJob":    func(ctx context.Context) error { _, err := c.GetJob(ctx, project, jobID); return err },
		"UpdateJob": func(ctx context.Context) error { _, err := c.UpdateJob(ctx, project, jobID, spec); return err },
		"DeleteJob": func(ctx context.Context) error { return c.DeleteJob(ctx, project, jobID) },
		"PauseJob":  func(ctx context.Context) error { return c.PauseJob(ctx, project, jobID) },
		"ResumeJob": func(ctx context.Context) error { return c.ResumeJob(ctx, project, jobID) },
		"TriggerJob": func(ctx context.Context) error {
			_, err := c.TriggerJob(ctx, project, jobID)
			return err
		},
		"ListJobRuns": func(ctx context.Context) error {
			_, err := c.ListJobRuns(ctx, project, jobID, intuned.ListRunsOptions{PageSize: 5})
			return err
		},
		"GetJobRun":       func(ctx context.Context) error { _, err := c.GetJobRun(ctx, project, jobID, runID); return err },
		"TerminateJobRun": func(ctx context.Context) error { return c.TerminateJobRun(ctx, project, jobID, runID) },
	}
}

// TestUnauthorized calls every endpoint with a wrong key and with a workspace
// the key does not belong to: each answers 401, decoded as IsUnauthorized,
// never retried, and no key ever appears in the error text.
func TestUnauthorized(t *testing.T) {
	e := newEnv(t, intunedsim.Options{})
	ctx := ctxT(t)
	if _, err := e.client.CreateJob(ctx, project, quickstartJob("auth-job-1")); err != nil {
		t.Fatal(err)
	}
	tr, err := e.client.TriggerJob(ctx, project, "auth-job-1")
	if err != nil {
		t.Fatal(err)
	}

	const wrongKey = "sk-wrong-0123456789abcdef"
	clients := []struct {
		name string
		opts intuned.Options
	}{
		{"wrong key", intuned.Options{WorkspaceID: e.sim.WorkspaceID, APIKey: wrongKey}},
		{"other workspace", intuned.Options{WorkspaceID: "00000000-0000-4000-8000-000000000000", APIKey: e.sim.APIKey}},
	}
	for _, cl := range clients {
		o := cl.opts
		o.BaseURL = e.sim.APIBase
		o.Pacer = intuned.NewPacer(intuned.PacerOptions{Disabled: true})
		c, err := intuned.New(o)
		if err != nil {
			t.Fatal(err)
		}
		for op, call := range everyOperation(c, "auth-job-1", tr.JobRunID) {
			t.Run(cl.name+"/"+op, func(t *testing.T) {
				before := e.sim.Calls()
				err := call(ctx)
				if !intuned.IsUnauthorized(err) {
					t.Fatalf("err = %v, want unauthorized", err)
				}
				ae := apiErr(t, err)
				if ae.StatusCode != 401 || ae.Code != "unauthorized" || ae.Category != "user" || ae.CorrelationID == "" || intuned.IsRetriable(err) {
					t.Errorf("APIError = %+v", ae)
				}
				for _, k := range []string{wrongKey, e.sim.APIKey} {
					if strings.Contains(err.Error(), k) || bytes.Contains(ae.Details, []byte(k)) {
						t.Errorf("error text contains an API key: %v", err)
					}
				}
				if d := totalCalls(e.sim.Calls()) - totalCalls(before); d != 1 {
					t.Errorf("%d requests sent, want 1 (401 is not retried)", d)
				}
			})
		}
	}
	// Nothing changed: the job is still there, still active.
	job, err := e.client.GetJob(ctx, project, "auth-job-1")
	if err != nil || job.State != intuned.JobStateActive {
		t.Errorf("job after unauthorized calls: %v %v", job, err)
	}
}

func totalCalls(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// TestNotFound checks 404 not-found for unknown jobs, runs and projects.
func TestNotFound(t *testing.T) {
	e := newEnv(t, intunedsim.Options{Projects: []string{project}})
	ctx := ctxT(t)
	if _, err := e.client.CreateJob(ctx, project, quickstartJob("known-job-1")); err != nil {
		t.Fatal(err)
	}
	const unknownRun = "3f1c2a9e-0d4b-4c1e-9a55-000000000000"

	unknownJob := everyOperation(e.client, "unknown-job-1", unknownRun)
	delete(unknownJob, "CreateJob") // creating an unknown job succeeds
	delete(unknownJob, "ListJobs")  // a known project lists fine
	cases := map[string]func(context.Context) error{}
	for op, f := range unknownJob {
		cases["unknown job/"+op] = f
	}
	knownJob := everyOperation(e.client, "known-job-1", unknownRun)
	cases["unknown run/GetJobRun"] = knownJob["GetJobRun"]
	cases["unknown run/TerminateJobRun"] = knownJob["TerminateJobRun"]
	// A run id is only found under its own Job.
	if _, err := e.client.CreateJob(ctx, project, quickstartJob("other-job-1")); err != nil {
		t.Fatal(err)
	}
	other, err := e.client.TriggerJob(ctx, project, "other-job-1")
	if err != nil {
		t.Fatal(err)
	}
	crossed := everyOperation(e.client, "known-job-1", other.JobRunID)
	cases["run of another job/GetJobRun"] = crossed["GetJobRun"]
	cases["run of another job/TerminateJobRun"] = crossed["TerminateJobRun"]
	cases["unknown project/ListJobs"] = func(ctx context.Context) error {
		_, err := e.client.ListJobs(ctx, "no-such-project")
		return err
	}
	cases["unknown project/CreateJob"] = func(ctx context.Context) error {
		_, err := e.client.CreateJob(ctx, "no-such-project", quickstartJob("known-job-2"))
		return err
	}

	for name, call := range cases {
		t.Run(name, func(t *testing.T) {
			err := call(ctx)
			if !intuned.IsNotFound(err) {
				t.Fatalf("err = %v, want not found", err)
			}
			ae := apiErr(t, err)
			if ae.StatusCode != 404 || ae.Code != "not-found" || ae.Category != "user" || ae.CorrelationID == "" || ae.Message == "" || intuned.IsRetriable(err) {
				t.Errorf("APIError = %+v", ae)
			}
		})
	}
}

// TestDuplicateCreate checks both duplicate-id answers the simulator can give
// (its default 400 and the optional 409) are IsConflict, and that the first
// Job is left alone.
func TestDuplicateCreate(t *testing.T) {
	cases := []struct {
		name       string
		status     int
		badRequest bool
	}{
		{"default 400 bad-request", 0, true},
		{"409 conflict", http.StatusConflict, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, intunedsim.Options{DuplicateCreateStatus: tc.status})
			ctx := ctxT(t)
			first := quickstartJob("duplicate-job")
			if _, err := e.client.CreateJob(ctx, project, first); err != nil {
				t.Fatal(err)
			}
			second := fullJob("duplicate-job", "https://hooks.example/other")
			_, err := e.client.CreateJob(ctx, project, second)
			if !intuned.IsConflict(err) {
				t.Fatalf("err = %v, want conflict", err)
			}
			if intuned.IsBadRequest(err) != tc.badRequest || intuned.IsRetriable(err) || intuned.IsAmbiguous(err) {
				t.Errorf("classification of %v", err)
			}
			if n := e.sim.Calls()["POST "+routeJobs]; n != 2 {
				t.Errorf("create sent %d times, want 2", n)
			}
			job, err := e.client.GetJob(ctx, project, "duplicate-job")
			if err != nil || !intuned.SameSpec(first.Spec(), job.Spec()) {
				t.Errorf("first job changed by the refused duplicate: %v", err)
			}
		})
	}
}
