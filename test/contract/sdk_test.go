package contract

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/intuned-operator/intuned-operator/internal/intuned"
	"github.com/intuned-operator/intuned-operator/internal/intunedsim"
)

// rawDo sends body (a JSON string) to an Intuned path of the simulator with
// the right key, as another client (e.g. the official SDK) would.
func rawDo(t *testing.T, sim *intunedsim.LoopbackServer, method, path, body string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, sim.APIBase+"/"+sim.WorkspaceID+"/projects/"+project+path, strings.NewReader(body))
	req.Header.Set("x-api-key", sim.APIKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// TestClientSendsSDKWireKeys: the client's create and update bodies use the
// keys the SDK puts on the wire. auth_session is the one that was wrong: an
// authSession key is ignored by a server that strips unknown keys, so the
// Job would never get its auth session and every poll would PUT again.
func TestClientSendsSDKWireKeys(t *testing.T) {
	e := newEnv(t, intunedsim.Options{})
	ctx := ctxT(t)
	req := fullJob("auth-session-job", "https://hooks.example/in")
	for name, body := range map[string]any{"create": req, "update": req.Spec()} {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(b, []byte(`"auth_session":{"id":"auth-session-123"`)) || bytes.Contains(b, []byte(`"authSession"`)) {
			t.Errorf("%s body does not carry auth_session as the SDK sends it: %s", name, b)
		}
	}
	if _, err := e.client.CreateJob(ctx, project, req); err != nil {
		t.Fatal(err)
	}
	job, err := e.client.GetJob(ctx, project, req.ID)
	if err != nil {
		t.Fatal(err)
	}
	if job.AuthSession == nil || job.AuthSession.ID != "auth-session-123" {
		t.Fatalf("auth session lost on the way: %+v", job.AuthSession)
	}
	if !intuned.SameSpec(req.Spec(), job.Spec()) {
		t.Fatalf("the Job read back differs from the one sent: the operator would update on every poll")
	}
}

// TestSimRejectsWhatTheSDKRejects: values the SDK's request schemas refuse
// are refused by the simulator too, with a 400 that names the field.
func TestSimRejectsWhatTheSDKRejects(t *testing.T) {
	e := newEnv(t, intunedsim.Options{})
	job := func(configuration, schedule string) string {
		return `{"id":"sdk-reject-job","payload":[{"apiName":"list","parameters":{}}],"configuration":` + configuration + `,"schedule":` + schedule + `}`
	}
	cases := []struct{ name, body, field string }{
		{"fractional requestTimeout", job(`{"requestTimeout":1.5}`, `null`), "configuration.requestTimeout"},
		{"fractional every", job(`{}`, `{"intervals":[{"every":60000.5}]}`), "schedule.intervals[0].every"},
		{"fractional calendar value", job(`{}`, `{"calendars":[{"hour":1.5}]}`), "schedule.calendars[0].hour"},
		{"lower-case day name", job(`{}`, `{"calendars":[{"dayOfWeek":"monday"}]}`), "schedule.calendars[0].dayOfWeek"},
		{"month as a number", job(`{}`, `{"calendars":[{"month":1}]}`), "schedule.calendars[0].month"},
		{"wildcard in a list", job(`{}`, `{"calendars":[{"minute":["*"]}]}`), "schedule.calendars[0].minute"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, b := rawDo(t, e.sim, http.MethodPost, "/jobs", c.body)
			if status != http.StatusBadRequest || !bytes.Contains(b, []byte(c.field)) {
				t.Fatalf("got %d %s, want 400 naming %s", status, b, c.field)
			}
		})
	}
}

// TestSDKCreatedJobReadable: a Job created the way the SDK may create it
// (values our own client never sends) stays readable by the client, in both
// shapes.
func TestSDKCreatedJobReadable(t *testing.T) {
	e := newEnv(t, intunedsim.Options{})
	ctx := ctxT(t)
	body := `{"id":"sdk-made-job","payload":[{"apiName":"list","parameters":{"a":[1,2]}}],
		"configuration":{"maxConcurrentRequests":2.5},
		"schedule":{"jitter":0,"intervals":[{"every":"1h"}],"calendars":[{"minute":{"start":0,"step":15,"end":45},"dayOfWeek":"*","hour":[1,{"start":3,"end":9,"step":3}]}]},
		"sink":{"type":"webhook","url":"https://hooks.example/in","retry":2,"timeout":1000},
		"auth_session":{"id":"auth-1","checkAttempts":1}}`
	if status, b := rawDo(t, e.sim, http.MethodPost, "/jobs", body); status != http.StatusCreated {
		t.Fatalf("create: %d %s", status, b)
	}
	job, err := e.client.GetJob(ctx, project, "sdk-made-job")
	if err != nil {
		t.Fatal(err)
	}
	if m := job.Configuration.MaxConcurrentRequests; m == nil || *m != 2.5 {
		t.Errorf("maxConcurrentRequests = %v, want 2.5", m)
	}
	if a := job.AuthSession; a == nil || a.ID != "auth-1" || *a.CheckAttempts != 1 || *a.CreateAttempts != 3 {
		t.Errorf("auth_session = %+v", a)
	}
	if w := job.Sink.Webhook; w.Retry != nil || w.Timeout != nil {
		t.Errorf("sink echoes retry/timeout, which the SDK's response schema lacks: %+v", w)
	}
	if _, err := e.client.ListJobs(ctx, project); err != nil {
		t.Fatal(err)
	}
}

// TestDateFormats: the SDK types most timestamps as plain strings, so the
// server may use any ISO-8601 flavour. The client reads every format the
// simulator can emit to the same instant, for Jobs and JobRuns.
func TestDateFormats(t *testing.T) {
	for _, format := range []string{"iso", "rfc3339", "micro", "postgres", "naive"} {
		t.Run(format, func(t *testing.T) {
			e := newEnv(t, intunedsim.Options{DateFormat: format, Handlers: map[string]intunedsim.APIHandler{"list": noop}})
			ctx := ctxT(t)
			req := quickstartJob("dated-job-1")
			req.Schedule = &intuned.Schedule{Intervals: []intuned.Interval{{Every: intuned.Str("1h")}}}
			if _, err := e.client.CreateJob(ctx, project, req); err != nil {
				t.Fatal(err)
			}
			job, err := e.client.GetJob(ctx, project, req.ID)
			if err != nil {
				t.Fatal(err)
			}
			if job.CreatedAt.IsZero() || job.NextRunTime.Ptr() == nil || !job.NextRunTime.After(job.CreatedAt.Time) {
				t.Fatalf("created_at %q next_run_time %+v not read", job.CreatedAt.Raw, job.NextRunTime)
			}
			tr, err := e.client.TriggerJob(ctx, project, req.ID)
			if err != nil {
				t.Fatal(err)
			}
			run := waitRunDone(t, e.client, req.ID, tr.JobRunID).JobRun
			if run.StartTime.IsZero() || run.EndTime.Ptr() == nil || run.EndTime.Before(run.StartTime.Time) || run.CreatedAt.IsZero() {
				t.Fatalf("JobRun times not read: start %q end %+v created %q", run.StartTime.Raw, run.EndTime, run.CreatedAt.Raw)
			}
			var raw map[string]any
			rawGet(t, e.sim, "/jobs/"+req.ID, &raw)
			if s, _ := raw["created_at"].(string); s != job.CreatedAt.Raw {
				t.Fatalf("raw created_at %q, client kept %q", s, job.CreatedAt.Raw)
			}
		})
	}
}

// TestJobDefinedInCode: a Job defined in code refuses update and delete
// (400 bad-request, a code the SDK knows, that the client recognises as
// IsManagedInCode) while pause, resume and trigger still work.
func TestJobDefinedInCode(t *testing.T) {
	e := newEnv(t, intunedsim.Options{Handlers: map[string]intunedsim.APIHandler{"list": noop}})
	ctx := ctxT(t)
	req := quickstartJob("code-job-1")
	if _, err := e.client.CreateJob(ctx, project, req); err != nil {
		t.Fatal(err)
	}
	if err := e.sim.Drift(intunedsim.DriftRequest{Project: project, JobID: req.ID, Action: "code"}); err != nil {
		t.Fatal(err)
	}
	_, err := e.client.UpdateJob(ctx, project, req.ID, req.Spec())
	if ae := apiErr(t, err); ae.StatusCode != 400 || ae.Code != "bad-request" || !intuned.IsManagedInCode(err) {
		t.Errorf("update: %v (IsManagedInCode %v)", err, intuned.IsManagedInCode(err))
	}
	err = e.client.DeleteJob(ctx, project, req.ID)
	if !intuned.IsManagedInCode(err) {
		t.Errorf("delete: %v", err)
	}
	for name, call := range map[string]func() error{
		"pause":   func() error { return e.client.PauseJob(ctx, project, req.ID) },
		"resume":  func() error { return e.client.ResumeJob(ctx, project, req.ID) },
		"trigger": func() error { _, err := e.client.TriggerJob(ctx, project, req.ID); return err },
	} {
		if err := call(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	// Other refusals are not mistaken for it.
	_, err = e.client.UpdateJob(ctx, project, "missing-job", req.Spec())
	if intuned.IsManagedInCode(err) {
		t.Errorf("a 404 counted as managed in code: %v", err)
	}
}
