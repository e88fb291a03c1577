package wireschema

import (
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	const ok = `{"id":"my-job-1","payload":[{"apiName":"list","parameters":{}}],"configuration":{"maxConcurrentRequests":2.5},
		"schedule":{"jitter":0,"calendars":[{"minute":{"start":0,"step":15,"end":45},"dayOfWeek":[{"start":"MONDAY","end":"FRIDAY"},"SUNDAY"],"month":"*"}]},
		"sink":{"type":"webhook","url":"https://x","retry":3,"timeout":5000},"auth_session":{"id":"s1"}}`
	tests := []struct {
		name, body string
		want       string // "" conforms; else a substring of one error
	}{
		{"sdk-shaped create", ok, ""},
		{"camelCase authSession", strings.Replace(ok, `"auth_session"`, `"authSession"`, 1), "authSession: unknown key"},
		{"fractional requestTimeout", strings.Replace(ok, `"parameters":{}`, `"parameters":{},"requestTimeout":1.5`, 1), "payload[0].requestTimeout: want an integer"},
		{"missing payload", `{"id":"x","configuration":{}}`, "payload: required key missing"},
		{"lower-case day", strings.Replace(ok, `"SUNDAY"`, `"sunday"`, 1), "schedule.calendars[0].dayOfWeek"},
		{"step without end", strings.Replace(ok, `,"end":45`, ``, 1), "schedule.calendars[0].minute"},
		{"wildcard in a list", strings.Replace(ok, `"SUNDAY"]`, `"*"]`, 1), "schedule.calendars[0].dayOfWeek"},
		{"unknown sink type", strings.Replace(ok, `"type":"webhook"`, `"type":"r2"`, 1), "sink"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			errs := Check(CreateJobRequest, []byte(tc.body))
			if tc.want == "" {
				if errs != nil {
					t.Fatalf("want conforming, got %v", errs)
				}
				return
			}
			if !strings.Contains(strings.Join(errs, "\n"), tc.want) {
				t.Fatalf("want an error containing %q, got %v", tc.want, errs)
			}
		})
	}
	// Answers: webhook retry/timeout are request-only; error codes closed.
	if errs := Check(JobDetail, []byte(`{"id":"j","configuration":{},"created_at":"x","state":"ACTIVE","projectId":"p",
		"sink":{"type":"webhook","url":"u","skipOnFail":false,"retry":3}}`)); len(errs) != 1 || !strings.Contains(errs[0], "sink") {
		t.Errorf("webhook retry echoed in an answer: %v", errs)
	}
	if errs := Check(ErrorBody, []byte(`{"code":"teapot","category":"user","message":"m","retirable":false,"correlationId":"c"}`)); len(errs) != 1 {
		t.Errorf("unknown error code accepted: %v", errs)
	}
	if op := operation("POST", "/api/v1/workspace/w/projects/p/jobs/j/runs/r/terminate"); op != "TerminateJobRun" {
		t.Errorf("operation = %q", op)
	}
}
