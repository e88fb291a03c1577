package intuned

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func ptr[T any](v T) *T { return &v }

// wireShapes maps every golden file to the type it holds.
var wireShapes = []struct {
	file string
	new  func() any
}{
	{"create_job_request_seed.json", func() any { return new(CreateJobRequest) }},
	{"create_job_request_full.json", func() any { return new(CreateJobRequest) }},
	{"update_job_request.json", func() any { return new(UpdateJobRequest) }},
	{"update_job_request_clear.json", func() any { return new(UpdateJobRequest) }},
	{"create_job_response.json", func() any { return new(CreateJobResponse) }},
	{"update_job_response.json", func() any { return new(UpdateJobResponse) }},
	{"trigger_job_response.json", func() any { return new(TriggerJobResponse) }},
	{"pause_job_response.json", func() any { return new(MessageResponse) }},
	{"resume_job_response.json", func() any { return new(MessageResponse) }},
	{"terminate_job_run_response.json", func() any { return new(MessageResponse) }},
	{"job_detail.json", func() any { return new(Job) }},
	{"job_list.json", func() any { return new([]JobListItem) }},
	{"job_runs.json", func() any { return new(JobRunList) }},
	{"job_run.json", func() any { return new(GetJobRunResponse) }},
	{"error_bad_request.json", func() any { return new(ErrorBody) }},
	{"error_unauthorized.json", func() any { return new(ErrorBody) }},
	{"error_not_found.json", func() any { return new(ErrorBody) }},
}

// TestGoldenRoundTrip decodes every documented example and encodes it again:
// nothing may be lost or renamed (a wrong wire name shows up as a missing
// member). Null and absent optional members count as equal.
func TestGoldenRoundTrip(t *testing.T) {
	for _, tc := range wireShapes {
		t.Run(tc.file, func(t *testing.T) {
			in := golden(t, tc.file)
			v := tc.new()
			if err := json.Unmarshal(in, v); err != nil {
				t.Fatalf("decode: %v", err)
			}
			out, err := json.Marshal(v)
			if err != nil {
				t.Fatalf("encode: %v", err)
			}
			assertSameJSON(t, out, in, true)
		})
	}
}

// TestDecodedValues spot-checks that the mixed-case wire names land in the
// right Go fields.
func TestDecodedValues(t *testing.T) {
	var job Job
	mustDecode(t, "job_detail.json", &job)
	if job.ProjectID != "5f0d6b8e-6a4e-4c1e-9c55-2f1f0a7b9d11" || job.State != JobStateActive {
		t.Errorf("detail: projectId %q state %q", job.ProjectID, job.State)
	}
	if job.Proxy == nil || *job.Proxy != "http://user:pass@proxy.example.com:8080" {
		t.Errorf("detail proxy string: %v", job.Proxy)
	}
	if job.AuthSession == nil || job.AuthSession.ID != "auth-session-123" {
		t.Errorf("detail auth_session: %+v", job.AuthSession)
	}
	// retry and timeout are request-only (the SDK's response schema lacks them).
	if job.Sink.Type() != SinkTypeWebhook || job.Sink.Webhook.Retry != nil || job.Sink.Webhook.Timeout != nil {
		t.Errorf("detail sink: %+v", job.Sink.Webhook)
	}
	if job.LastRunTime != nil || !job.NextRunTime.Equal(time.Date(2025, 12, 1, 11, 0, 0, 0, time.UTC)) {
		t.Errorf("detail times: next %v last %v", job.NextRunTime, job.LastRunTime)
	}

	var list []JobListItem
	mustDecode(t, "job_list.json", &list)
	if len(list) != 2 || list[0].WorkspaceID == "" || list[0].ProjectID == "" || list[0].Proxy.URL == "" {
		t.Fatalf("list: %+v", list)
	}
	paused := list[1]
	if paused.State != JobStatePaused || paused.Reason.Type != "paused" || *paused.ScheduleID != "schedule-nightly-products" {
		t.Errorf("paused list item: %+v", paused)
	}
	if paused.Sink.Type() != SinkTypeS3 || paused.Sink.S3.Bucket != "my-bucket" {
		t.Errorf("s3 sink: %+v", paused.Sink)
	}

	var runs JobRunList
	mustDecode(t, "job_runs.json", &runs)
	if runs.TotalCount != 3 || len(runs.JobRuns) != 3 {
		t.Fatalf("runs: %+v", runs)
	}
	done, failed, pending := runs.JobRuns[0], runs.JobRuns[1], runs.JobRuns[2]
	if done.Status != JobRunCompleted || *done.Payloads != 21 || *done.SuccessfulRuns != 20 || *done.FailedRuns != 1 || !done.Status.Terminal() {
		t.Errorf("completed run: %+v", done)
	}
	if failed.Error.Code != "insufficient-resource-credits" || failed.Error.CorrelationID == "" || *failed.Error.Retirable || failed.Error.DocURL == "" {
		t.Errorf("failed run error: %+v", failed.Error)
	}
	if failed.Snapshot.Proxy.Version != "v1" || failed.Snapshot.AuthSession.ID != "auth-session-123" {
		t.Errorf("snapshot: %+v", failed.Snapshot)
	}
	if pending.EndTime != nil || pending.Payloads != nil || pending.Status.Terminal() {
		t.Errorf("pending run: %+v", pending)
	}

	var run GetJobRunResponse
	mustDecode(t, "job_run.json", &run)
	if run.JobRun.Reason.Type != "terminated" || run.Results.Format != "jsonl" || *run.Results.Size != 20480 {
		t.Errorf("job run: %+v", run)
	}
}

func mustDecode(t *testing.T, file string, v any) {
	t.Helper()
	if err := json.Unmarshal(golden(t, file), v); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}

// fullCreateRequest is create_job_request_full.json built in Go, using every
// form of the schedule unions.
func fullCreateRequest() CreateJobRequest {
	days := []NumOrString{Str("MONDAY"), Str("TUESDAY"), Str("WEDNESDAY"), Str("THURSDAY"), Str("FRIDAY")}
	return CreateJobRequest{
		ID: "my-awesome-job",
		Payload: []PayloadItem{
			{
				APIName:        "my-awesome-api",
				Parameters:     json.RawMessage(`{"k":"v","page":1,"ratio":0.25,"tags":["a","b"]}`),
				RequestTimeout: ptr(600),
				Retry:          &RetryPolicy{MaximumAttempts: ptr(3)},
			},
			{APIName: "details", Parameters: json.RawMessage(`{}`)},
		},
		Configuration: Configuration{
			Retry:                 &RetryPolicy{MaximumAttempts: ptr(3)},
			MaxConcurrentRequests: ptr(5.0),
			RequestTimeout:        ptr(600),
		},
		Schedule: &Schedule{
			Jitter:    ptr(Str("6h")),
			Intervals: []Interval{{Every: Num(3600000)}, {Every: Str("1h")}},
			Calendars: []Calendar{
				{Hour: CalValues(Num(12)), Minute: CalValues(Num(51)), DayOfWeek: CalValues(days...)},
				{
					Second: CalValues(Num(0)),
					Minute: &CalendarField{Items: []CalendarItem{{Range: &CalendarRange{Start: Num(0), End: ptr(Num(45)), Step: ptr(Num(15))}}}},
					Hour:   &CalendarField{Items: []CalendarItem{{Range: &CalendarRange{Start: Num(9), End: ptr(Num(17))}}}},
					DayOfMonth: &CalendarField{List: true, Items: []CalendarItem{
						{Value: Num(1)},
						{Range: &CalendarRange{Start: Num(10), End: ptr(Num(12))}},
						{Range: &CalendarRange{Start: Num(20), End: ptr(Num(28)), Step: ptr(Num(2))}},
					}},
					DayOfWeek: &CalendarField{Items: []CalendarItem{{Range: &CalendarRange{Start: Str("MONDAY"), End: ptr(Str("FRIDAY"))}}}},
					Month:     CalAny(),
					Year:      CalValues(Num(2026)),
					Comment:   "quarter hours in office time",
				},
				{
					Minute:    &CalendarField{Items: []CalendarItem{{Range: &CalendarRange{Start: Num(30)}}}},
					Hour:      CalAny(),
					DayOfWeek: CalValues(Str("SUNDAY")),
					Month: &CalendarField{List: true, Items: []CalendarItem{
						{Value: Str("JANUARY")},
						{Range: &CalendarRange{Start: Str("MARCH"), End: ptr(Str("DECEMBER")), Step: ptr(Num(3))}},
					}},
					Year: &CalendarField{List: true, Items: []CalendarItem{{Value: Num(2026)}}},
				},
			},
		},
		Sink: &Sink{Webhook: &WebhookSink{
			URL:        "https://receiver.example.com/webhooks/intuned",
			Headers:    map[string]string{"Authorization": "Bearer your-secret-token"},
			SkipOnFail: ptr(false),
			APIsToSend: []string{"list", "details"},
			Retry:      ptr(3),
			Timeout:    ptr(5000),
		}},
		Proxy:       ptr("http://user:pass@host:8080"),
		AuthSession: &AuthSession{ID: "auth-session-123", CheckAttempts: ptr(3), CreateAttempts: ptr(3)},
	}
}

// seedCreateRequest is the seed webhook guide's create example.
func seedCreateRequest() CreateJobRequest {
	return CreateJobRequest{
		ID:            "default-with-webhook",
		Payload:       []PayloadItem{{APIName: "list", Parameters: json.RawMessage(`{}`)}},
		Configuration: Configuration{Retry: &RetryPolicy{MaximumAttempts: ptr(3)}},
		Sink: &Sink{Webhook: &WebhookSink{
			URL:     "https://your-webhook-url.com/webhooks/intuned",
			Headers: map[string]string{"Authorization": "Bearer your-secret-token"},
		}},
	}
}

// TestEncodeMatchesGolden checks that requests built in Go encode exactly to
// the documented bodies, nulls included.
func TestEncodeMatchesGolden(t *testing.T) {
	tests := []struct {
		file string
		v    any
	}{
		{"create_job_request_seed.json", seedCreateRequest()},
		{"create_job_request_full.json", fullCreateRequest()},
		{"update_job_request_clear.json", UpdateJobRequest{
			Payload: []PayloadItem{{APIName: "list", Parameters: json.RawMessage(`{}`)}},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			out, err := json.Marshal(tc.v)
			if err != nil {
				t.Fatal(err)
			}
			assertSameJSON(t, out, golden(t, tc.file), false)
		})
	}
}

func TestCalendarUnions(t *testing.T) {
	tests := []struct {
		in      string
		list    bool
		items   int
		isRange bool
	}{
		{`12`, false, 1, false},
		{`"*"`, false, 1, false},
		{`"MONDAY"`, false, 1, false},
		{`{"start":1,"end":5,"step":2}`, false, 1, true},
		{`{"start":"MONDAY"}`, false, 1, true},
		{`[12]`, true, 1, false},
		{`[]`, true, 0, false},
		{`[1,{"start":3,"end":4},"*"]`, true, 3, false},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			var f CalendarField
			if err := json.Unmarshal([]byte(tc.in), &f); err != nil {
				t.Fatal(err)
			}
			if f.List != tc.list || len(f.Items) != tc.items || (tc.items > 0 && (f.Items[0].Range != nil) != tc.isRange) {
				t.Errorf("decoded %+v", f)
			}
			out, err := json.Marshal(f)
			if err != nil {
				t.Fatal(err)
			}
			assertSameJSON(t, out, []byte(tc.in), false)
		})
	}
}

func TestNumOrStringKeepsNumberText(t *testing.T) {
	for _, in := range []string{`3600000`, `1.5`, `1e3`, `-0`, `"6h"`, `""`} {
		var v NumOrString
		if err := json.Unmarshal([]byte(in), &v); err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		out, _ := json.Marshal(v)
		if string(out) != in {
			t.Errorf("%s re-encoded as %s", in, out)
		}
	}
	if n, ok := Num(3600000).Int64(); !ok || n != 3600000 {
		t.Errorf("Int64 = %d, %v", n, ok)
	}
}

func TestDecodeRejects(t *testing.T) {
	tests := []struct {
		name string
		in   string
		v    any
		want string
	}{
		{"unknown sink type", `{"type":"ftp","url":"x"}`, new(Sink), "unknown sink type"},
		{"sink without type", `{"url":"x"}`, new(Sink), "unknown sink type"},
		{"every is bool", `{"every":true}`, new(Interval), "number or a string"},
		{"every is null", `{"every":null}`, new(Interval), "needs \"every\""},
		{"calendar range with a bad start", `{"hour":{"end":"x","start":true}}`, new(Calendar), "number or a string"},
		{"calendar range without start", `{"hour":{"end":5}}`, new(Calendar), "needs \"start\""},
		{"interval without every", `{"intervals":[{}]}`, new(Schedule), "needs \"every\""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := json.Unmarshal([]byte(tc.in), tc.v)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want error containing %q", err, tc.want)
			}
		})
	}
}

func TestSinkEncodeNeedsOneVariant(t *testing.T) {
	if _, err := json.Marshal(Sink{}); err == nil {
		t.Error("empty sink encoded")
	}
	if _, err := json.Marshal(Sink{Webhook: &WebhookSink{}, S3: &S3Sink{}}); err == nil {
		t.Error("sink with both variants encoded")
	}
}
