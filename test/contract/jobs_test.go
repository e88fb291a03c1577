package contract

import (
	"encoding/json"
	"testing"

	"github.com/intuned-operator/intuned-operator/internal/intuned"
	"github.com/intuned-operator/intuned-operator/internal/intunedsim"
)

// TestJobShapesAndDefaults creates Jobs of several forms and checks the
// detail and list shapes, the defaults Intuned fills on store, and that
// SameSpec sees no drift between the desired Job and what comes back (so the
// controller never loops on update).
func TestJobShapesAndDefaults(t *testing.T) {
	e := newEnv(t, intunedsim.Options{})
	ctx := ctxT(t)

	s3 := quickstartJob("s3-sink-job")
	s3.Sink = &intuned.Sink{S3: &intuned.S3Sink{Bucket: "b", AccessKeyID: "AK", SecretAccessKey: "SK", Region: "us-west-2", Prefix: "p/"}}
	calendar := quickstartJob("calendar-job")
	calendar.Schedule = &intuned.Schedule{
		Jitter:    ptr(intuned.Str("6h")),
		Calendars: []intuned.Calendar{{Hour: intuned.CalValues(intuned.Num(12)), Minute: intuned.CalValues(intuned.Num(51)), DayOfWeek: intuned.CalValues(intuned.Str("MONDAY"), intuned.Str("FRIDAY"))}},
	}
	multi := quickstartJob("multi-payload-job")
	multi.Payload = append(multi.Payload, intuned.PayloadItem{APIName: "details", Parameters: params(`{"detailsUrl":"https://x/1","name":"n","n":1e3}`), RequestTimeout: ptr(30)})
	multi.Configuration.RequestTimeout = ptr(120)

	webhook := quickstartJob("webhook-options-job")
	webhook.Sink = &intuned.Sink{Webhook: &intuned.WebhookSink{
		URL: "https://hooks.example/in?x=1", Headers: map[string]string{"Authorization": "Bearer t", "X-Env": "test"},
		SkipOnFail: ptr(true), APIsToSend: []string{"details"}, Retry: ptr(5), Timeout: ptr(2500),
	}}
	webhook.Payload[0].Retry = &intuned.RetryPolicy{}
	s3full := quickstartJob("s3-compatible-job")
	s3full.Sink = &intuned.Sink{S3: &intuned.S3Sink{Bucket: "b", AccessKeyID: "AK", SecretAccessKey: "SK", Region: "auto",
		Endpoint: "https://acct.r2.cloudflarestorage.com", ForcePathStyle: ptr(true), SkipOnFail: ptr(false), APIsToSend: []string{"list"}}}
	numeric := quickstartJob("numeric-schedule-job")
	step := intuned.Num(2)
	end := intuned.Num(20)
	numeric.Schedule = &intuned.Schedule{
		Jitter:    ptr(intuned.Num(1000)),
		Intervals: []intuned.Interval{{Every: intuned.Num(3600000)}, {Every: intuned.Str("30m")}},
		Calendars: []intuned.Calendar{{
			Hour:       &intuned.CalendarField{Items: []intuned.CalendarItem{{Range: &intuned.CalendarRange{Start: intuned.Num(8), End: &end, Step: &step}}}},
			DayOfMonth: intuned.CalAny(),
			Month:      intuned.CalValues(intuned.Str("JANUARY")),
			Comment:    "weekday mornings",
		}},
	}

	cases := []struct {
		name string
		req  intuned.CreateJobRequest
	}{
		{"webhook sink options", webhook},
		{"s3-compatible sink options", s3full},
		{"numeric schedule, ranges, *", numeric},
		{"minimal", quickstartJob("minimal-job")},
		{"every optional field", fullJob("full-job-1", "https://hooks.example/in")},
		{"s3 sink", s3},
		{"calendar schedule", calendar},
		{"several payloads", multi},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res, err := e.client.CreateJob(ctx, project, tc.req)
			if err != nil {
				t.Fatalf("CreateJob: %v", err)
			}
			if res.ID != tc.req.ID || res.Message != "created" {
				t.Errorf("create answer = %+v", res)
			}

			job, err := e.client.GetJob(ctx, project, tc.req.ID)
			if err != nil {
				t.Fatalf("GetJob: %v", err)
			}
			if job.ID != tc.req.ID || job.ProjectID == "" || job.State != intuned.JobStateActive || job.CreatedAt.IsZero() {
				t.Errorf("detail: id %q projectId %q state %q created_at %v", job.ID, job.ProjectID, job.State, job.CreatedAt)
			}
			// Defaults filled on store.
			if got := job.Configuration.RequestTimeout; got == nil || (tc.req.Configuration.RequestTimeout == nil && *got != intuned.DefaultRequestTimeout) {
				t.Errorf("configuration.requestTimeout = %v", got)
			}
			for i, p := range job.Payload {
				if p.RequestTimeout == nil || (tc.req.Payload[i].RequestTimeout == nil && *p.RequestTimeout != intuned.DefaultRequestTimeout) {
					t.Errorf("payload[%d].requestTimeout = %v", i, p.RequestTimeout)
				}
			}
			if r := job.Configuration.Retry; tc.req.Configuration.Retry != nil && (r == nil || r.MaximumAttempts == nil || *r.MaximumAttempts != intuned.DefaultMaximumAttempts) {
				t.Errorf("configuration.retry = %+v, want maximumAttempts default 3", r)
			}
			if a := job.AuthSession; tc.req.AuthSession != nil && (a == nil || a.CheckAttempts == nil || *a.CheckAttempts != 3 || a.CreateAttempts == nil || *a.CreateAttempts != 3) {
				t.Errorf("auth_session = %+v, want attempts defaulted to 3", a)
			}
			if tc.req.Sink != nil {
				skip, want := (*bool)(nil), (*bool)(nil)
				if job.Sink != nil && job.Sink.Webhook != nil {
					skip, want = job.Sink.Webhook.SkipOnFail, tc.req.Sink.Webhook.SkipOnFail
				} else if job.Sink != nil && job.Sink.S3 != nil {
					skip, want = job.Sink.S3.SkipOnFail, tc.req.Sink.S3.SkipOnFail
				}
				if want == nil {
					want = ptr(false) // Intuned's default, always present in answers
				}
				if skip == nil || *skip != *want {
					t.Errorf("sink skipOnFail = %v, want explicit %v", skip, *want)
				}
			}
			if (job.NextRunTime != nil) != (tc.req.Schedule != nil) {
				t.Errorf("next_run_time = %v with schedule %v", job.NextRunTime, tc.req.Schedule != nil)
			}
			if tc.req.Proxy != nil && (job.Proxy == nil || *job.Proxy != *tc.req.Proxy) {
				t.Errorf("detail proxy = %v, want string %q", job.Proxy, *tc.req.Proxy)
			}

			// No drift: the controller compares desired with observed.
			if !intuned.SameSpec(tc.req.Spec(), job.Spec()) {
				a, _ := json.Marshal(intuned.WithDefaults(tc.req.Spec()))
				b, _ := json.Marshal(intuned.WithDefaults(job.Spec()))
				t.Errorf("SameSpec(desired, GetJob) = false\ndesired  %s\nobserved %s", a, b)
			}

			items, err := e.client.ListJobs(ctx, project)
			if err != nil {
				t.Fatalf("ListJobs: %v", err)
			}
			var item *intuned.JobListItem
			for i := range items {
				if items[i].ID == tc.req.ID {
					item = &items[i]
				}
			}
			if item == nil {
				t.Fatalf("ListJobs lacks %s", tc.req.ID)
			}
			if item.WorkspaceID != e.sim.WorkspaceID || item.ProjectID != job.ProjectID || item.State != intuned.JobStateActive {
				t.Errorf("list item: workspace_id %q project_id %q state %q", item.WorkspaceID, item.ProjectID, item.State)
			}
			if tc.req.Proxy != nil && (item.Proxy == nil || item.Proxy.Version != "v1" || item.Proxy.URL != *tc.req.Proxy) {
				t.Errorf("list proxy = %+v, want {v1 %s}", item.Proxy, *tc.req.Proxy)
			}
			if !intuned.SameSpec(tc.req.Spec(), item.Spec()) {
				t.Errorf("SameSpec(desired, list item) = false")
			}
		})
	}

	// The typed client would silently ignore a misspelt key; check the raw
	// wire names of both shapes once.
	t.Run("wire key names", func(t *testing.T) {
		var detail map[string]json.RawMessage
		rawGet(t, e.sim, "/jobs/full-job-1", &detail)
		for _, k := range []string{"id", "configuration", "payload", "schedule", "sink", "created_at", "next_run_time", "state", "projectId", "auth_session", "proxy"} {
			if _, ok := detail[k]; !ok {
				t.Errorf("detail lacks %q", k)
			}
		}
		for _, k := range []string{"project_id", "workspace_id", "authSession"} {
			if _, ok := detail[k]; ok {
				t.Errorf("detail has list-shape key %q", k)
			}
		}
		var proxy string
		if err := json.Unmarshal(detail["proxy"], &proxy); err != nil {
			t.Errorf("detail proxy is not a string: %s", detail["proxy"])
		}
		var list []map[string]json.RawMessage
		rawGet(t, e.sim, "/jobs", &list)
		found := false
		for _, it := range list {
			if string(it["id"]) != `"full-job-1"` {
				continue
			}
			found = true
			for _, k := range []string{"workspace_id", "project_id", "payload", "auth_session", "proxy", "state", "created_at"} {
				if _, ok := it[k]; !ok {
					t.Errorf("list item lacks %q", k)
				}
			}
			if _, ok := it["projectId"]; ok {
				t.Errorf("list item has detail-shape key projectId")
			}
			var po intuned.ProxyObject
			if err := json.Unmarshal(it["proxy"], &po); err != nil || po.Version != "v1" {
				t.Errorf("list proxy is not {version,url}: %s", it["proxy"])
			}
		}
		if !found {
			t.Error("full-job-1 not listed")
		}
	})
}

// TestUpdateJob checks that PUT replaces the Job: each optional field the
// desired Job drops is really cleared, the rest is kept, and SameSpec agrees
// afterwards.
func TestUpdateJob(t *testing.T) {
	e := newEnv(t, intunedsim.Options{})
	ctx := ctxT(t)

	cases := []struct {
		name  string
		edit  func(*intuned.UpdateJobRequest)
		check func(*intuned.Job) bool
	}{
		{"clear schedule", func(r *intuned.UpdateJobRequest) { r.Schedule = nil }, func(j *intuned.Job) bool { return j.Schedule == nil && j.NextRunTime == nil }},
		{"clear sink", func(r *intuned.UpdateJobRequest) { r.Sink = nil }, func(j *intuned.Job) bool { return j.Sink == nil }},
		{"clear proxy", func(r *intuned.UpdateJobRequest) { r.Proxy = nil }, func(j *intuned.Job) bool { return j.Proxy == nil }},
		{"clear authSession", func(r *intuned.UpdateJobRequest) { r.AuthSession = nil }, func(j *intuned.Job) bool { return j.AuthSession == nil }},
		{"clear all four", func(r *intuned.UpdateJobRequest) { r.Schedule, r.Sink, r.Proxy, r.AuthSession = nil, nil, nil, nil },
			func(j *intuned.Job) bool {
				return j.Schedule == nil && j.Sink == nil && j.Proxy == nil && j.AuthSession == nil
			}},
		{"change payload and configuration", func(r *intuned.UpdateJobRequest) {
			r.Payload = []intuned.PayloadItem{{APIName: "details", Parameters: params(`{"name":"x"}`)}}
			r.Configuration = intuned.Configuration{MaxConcurrentRequests: ptr(1.0)}
		}, func(j *intuned.Job) bool {
			return len(j.Payload) == 1 && j.Payload[0].APIName == "details" && j.Sink != nil
		}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := "update-job-" + string(rune('a'+i))
			create := fullJob(id, "https://hooks.example/in")
			if _, err := e.client.CreateJob(ctx, project, create); err != nil {
				t.Fatalf("CreateJob: %v", err)
			}
			desired := create.Spec()
			tc.edit(&desired)
			before, _ := e.client.GetJob(ctx, project, id)
			if intuned.SameSpec(desired, before.Spec()) {
				t.Fatal("SameSpec says no change before the update")
			}
			res, err := e.client.UpdateJob(ctx, project, id, desired)
			if err != nil {
				t.Fatalf("UpdateJob: %v", err)
			}
			if res.ID != id || res.Message != "updated job successfully" {
				t.Errorf("update answer = %+v", res)
			}
			job, err := e.client.GetJob(ctx, project, id)
			if err != nil {
				t.Fatalf("GetJob: %v", err)
			}
			if !tc.check(job) {
				b, _ := json.Marshal(job)
				t.Errorf("after update: %s", b)
			}
			if !intuned.SameSpec(desired, job.Spec()) {
				t.Error("SameSpec(desired, observed) = false after update: the controller would loop")
			}
		})
	}
}

// TestPauseResumeDelete walks a Job through its states in both shapes.
func TestPauseResumeDelete(t *testing.T) {
	e := newEnv(t, intunedsim.Options{})
	ctx := ctxT(t)
	req := fullJob("pause-job-1", "https://hooks.example/in")
	if _, err := e.client.CreateJob(ctx, project, req); err != nil {
		t.Fatal(err)
	}
	listItem := func() *intuned.JobListItem {
		items, err := e.client.ListJobs(ctx, project)
		if err != nil {
			t.Fatal(err)
		}
		for i := range items {
			if items[i].ID == req.ID {
				return &items[i]
			}
		}
		return nil
	}

	steps := []struct {
		name       string
		do         func() error
		state      intuned.JobState
		reason     string // list item reason.type, "" = none
		nextRunSet bool
	}{
		{"pause", func() error { return e.client.PauseJob(ctx, project, req.ID) }, intuned.JobStatePaused, "paused", false},
		{"pause again is a no-op", func() error { return e.client.PauseJob(ctx, project, req.ID) }, intuned.JobStatePaused, "paused", false},
		{"resume", func() error { return e.client.ResumeJob(ctx, project, req.ID) }, intuned.JobStateActive, "", true},
		{"resume again is a no-op", func() error { return e.client.ResumeJob(ctx, project, req.ID) }, intuned.JobStateActive, "", true},
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		job, err := e.client.GetJob(ctx, project, req.ID)
		if err != nil {
			t.Fatalf("%s: GetJob: %v", st.name, err)
		}
		if job.State != st.state || (job.NextRunTime != nil) != st.nextRunSet {
			t.Errorf("%s: state %s next_run_time %v", st.name, job.State, job.NextRunTime)
		}
		it := listItem()
		gotReason := ""
		if it.Reason != nil {
			gotReason = it.Reason.Type
		}
		if it.State != st.state || gotReason != st.reason {
			t.Errorf("%s: list state %s reason %q, want %s %q", st.name, it.State, gotReason, st.state, st.reason)
		}
	}

	if err := e.client.DeleteJob(ctx, project, req.ID); err != nil {
		t.Fatalf("DeleteJob: %v", err)
	}
	if _, err := e.client.GetJob(ctx, project, req.ID); !intuned.IsNotFound(err) {
		t.Errorf("GetJob after delete: %v, want not found", err)
	}
	if listItem() != nil {
		t.Error("deleted job still listed")
	}
}

// TestPathEncoding checks project names that need escaping reach the same
// project on every call, and distinct names stay distinct projects.
func TestPathEncoding(t *testing.T) {
	e := newEnv(t, intunedsim.Options{})
	ctx := ctxT(t)
	for _, p := range []string{"my project", "projé", "a%2Fb", "a/b", "a?b", "a#b"} {
		t.Run(p, func(t *testing.T) {
			if _, err := e.client.CreateJob(ctx, p, quickstartJob("encoded-job")); err != nil {
				t.Fatalf("CreateJob: %v", err)
			}
			if _, err := e.client.GetJob(ctx, p, "encoded-job"); err != nil {
				t.Errorf("GetJob: %v", err)
			}
			l, err := e.client.ListJobs(ctx, p)
			if err != nil || len(l) != 1 {
				t.Errorf("ListJobs: %d jobs, %v; want 1 (projects must not share jobs)", len(l), err)
			}
		})
	}
}

// TestSameSpecEdges creates desired Jobs whose form differs from what
// Intuned stores (empty lists and maps, spacing and escaping in parameters,
// defaults spelt out, partial defaults) and checks SameSpec still reports no
// drift against both shapes, so the controller never loops on update.
func TestSameSpecEdges(t *testing.T) {
	e := newEnv(t, intunedsim.Options{})
	ctx := ctxT(t)
	cases := []struct {
		name string
		edit func(r *intuned.CreateJobRequest)
	}{
		{"empty schedule object", func(r *intuned.CreateJobRequest) { r.Schedule = &intuned.Schedule{} }},
		{"empty interval list with jitter", func(r *intuned.CreateJobRequest) {
			r.Schedule = &intuned.Schedule{Intervals: []intuned.Interval{}, Jitter: ptr(intuned.Str("1m"))}
		}},
		{"calendar with every field unset", func(r *intuned.CreateJobRequest) { r.Schedule = &intuned.Schedule{Calendars: []intuned.Calendar{{}}} }},
		{"empty headers and apisToSend", func(r *intuned.CreateJobRequest) {
			r.Sink = &intuned.Sink{Webhook: &intuned.WebhookSink{URL: "http://x/y", Headers: map[string]string{}, APIsToSend: []string{}}}
		}},
		{"parameters spacing, order and HTML characters", func(r *intuned.CreateJobRequest) {
			r.Payload[0].Parameters = params(`{ "b" : 1, "a":"x&y<z>", "c": 1.50 }`)
		}},
		{"big numbers in parameters", func(r *intuned.CreateJobRequest) {
			r.Payload[0].Parameters = params(`{"n":12345678901234567890,"f":1e400}`)
		}},
		{"defaults spelt out", func(r *intuned.CreateJobRequest) {
			r.Payload[0].RequestTimeout = ptr(600)
			r.Configuration.Retry = &intuned.RetryPolicy{MaximumAttempts: ptr(3)}
			r.Configuration.RequestTimeout = ptr(600)
		}},
		{"authSession with one attempt count", func(r *intuned.CreateJobRequest) {
			r.AuthSession = &intuned.AuthSession{ID: "abc", CheckAttempts: ptr(1)}
		}},
		{"no payload items", func(r *intuned.CreateJobRequest) { r.Payload = []intuned.PayloadItem{} }},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := quickstartJob("edge-job-" + string(rune('a'+i)))
			tc.edit(&r)
			if _, err := e.client.CreateJob(ctx, project, r); err != nil {
				t.Fatalf("CreateJob: %v", err)
			}
			job, err := e.client.GetJob(ctx, project, r.ID)
			if err != nil {
				t.Fatal(err)
			}
			if !intuned.SameSpec(r.Spec(), job.Spec()) {
				b, _ := json.Marshal(job)
				t.Errorf("SameSpec(desired, GetJob) = false; observed %s", b)
			}
			items, err := e.client.ListJobs(ctx, project)
			if err != nil {
				t.Fatal(err)
			}
			for _, it := range items {
				if it.ID == r.ID && !intuned.SameSpec(r.Spec(), it.Spec()) {
					t.Error("SameSpec(desired, list item) = false")
				}
			}
		})
	}
}
