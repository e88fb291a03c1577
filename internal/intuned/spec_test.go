package intuned

import (
	"encoding/json"
	"testing"
)

func TestSameSpec(t *testing.T) {
	desired := seedCreateRequest().Spec()
	// What Intuned returns for the seed Job: defaults filled, parameters
	// formatted differently, skipOnFail explicit.
	observedJSON := `{"id":"default-with-webhook","configuration":{"retry":{"maximumAttempts":3},"requestTimeout":600},
		"payload":[{"apiName":"list","parameters":{ },"requestTimeout":600}],
		"sink":{"type":"webhook","url":"https://your-webhook-url.com/webhooks/intuned",
		        "headers":{"Authorization":"Bearer your-secret-token"},"skipOnFail":false,"apisToSend":[]},
		"schedule":null,"proxy":null,"auth_session":null,
		"created_at":"2025-12-01T10:00:00Z","state":"ACTIVE","projectId":"p"}`
	observed := func(mod func(j *Job)) UpdateJobRequest {
		var j Job
		if err := json.Unmarshal([]byte(observedJSON), &j); err != nil {
			t.Fatal(err)
		}
		if mod != nil {
			mod(&j)
		}
		return j.Spec()
	}
	withDesired := func(mod func(s *UpdateJobRequest)) UpdateJobRequest {
		s, _ := deepCopy(desired)
		mod(&s)
		return s
	}

	tests := []struct {
		name              string
		desired, observed UpdateJobRequest
		same              bool
	}{
		{"defaults filled by Intuned", desired, observed(nil), true},
		{"parameter key order and spacing", withDesired(func(s *UpdateJobRequest) {
			s.Payload[0].Parameters = json.RawMessage(`{"a":1,"b":[1,2]}`)
		}), observed(func(j *Job) { j.Payload[0].Parameters = json.RawMessage(`{ "b": [1, 2], "a": 1 }`) }), true},
		{"parameter value changed", desired, observed(func(j *Job) { j.Payload[0].Parameters = json.RawMessage(`{"page":2}`) }), false},
		{"request timeout changed", desired, observed(func(j *Job) { j.Configuration.RequestTimeout = ptr(300) }), false},
		{"schedule added behind our back", desired, observed(func(j *Job) {
			j.Schedule = &Schedule{Intervals: []Interval{{Every: Str("1h")}}}
		}), false},
		{"sink header changed", desired, observed(func(j *Job) { j.Sink.Webhook.Headers["Authorization"] = "Bearer old" }), false},
		{"sink removed", desired, observed(func(j *Job) { j.Sink = nil }), false},
		{"webhook retry/timeout not echoed", withDesired(func(s *UpdateJobRequest) {
			s.Sink.Webhook.Retry, s.Sink.Webhook.Timeout = ptr(3), ptr(5000)
		}), observed(nil), true},
		{"webhook retry echoed and different", withDesired(func(s *UpdateJobRequest) {
			s.Sink.Webhook.Retry = ptr(3)
		}), observed(func(j *Job) { j.Sink.Webhook.Retry = ptr(5) }), false},
		{"auth session attempts defaulted", withDesired(func(s *UpdateJobRequest) {
			s.AuthSession = &AuthSession{ID: "auth-session-123"}
		}), observed(func(j *Job) {
			j.AuthSession = &AuthSession{ID: "auth-session-123", CheckAttempts: ptr(3), CreateAttempts: ptr(3)}
		}), true},
		{"auth session attempts differ", withDesired(func(s *UpdateJobRequest) {
			s.AuthSession = &AuthSession{ID: "auth-session-123"}
		}), observed(func(j *Job) { j.AuthSession = &AuthSession{ID: "auth-session-123", CheckAttempts: ptr(5)} }), false},
		{"proxy changed", withDesired(func(s *UpdateJobRequest) { s.Proxy = ptr("http://a:8080") }),
			observed(func(j *Job) { j.Proxy = ptr("http://b:8080") }), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := SameSpec(tc.desired, tc.observed); got != tc.same {
				t.Errorf("SameSpec = %v, want %v", got, tc.same)
			}
			if got := SameSpec(tc.observed, tc.observed); !got {
				t.Error("observed differs from itself")
			}
		})
	}
}

// TestDetailAndListSpecsAgree: the two shapes of one Job give the same spec.
func TestDetailAndListSpecsAgree(t *testing.T) {
	var job Job
	mustDecode(t, "job_detail.json", &job)
	item := JobListItem{
		ID: job.ID, Configuration: job.Configuration, Payload: job.Payload, Sink: job.Sink,
		Schedule: job.Schedule, AuthSession: job.AuthSession, Proxy: &ProxyObject{Version: "v1", URL: *job.Proxy},
	}
	if !SameSpec(job.Spec(), item.Spec()) {
		t.Error("detail and list specs differ")
	}
	item.Proxy = nil
	if SameSpec(job.Spec(), item.Spec()) {
		t.Error("proxy difference not seen")
	}
}

func TestWithDefaultsDoesNotModifyItsInput(t *testing.T) {
	in := seedCreateRequest().Spec()
	before, _ := json.Marshal(in)
	out := WithDefaults(in)
	after, _ := json.Marshal(in)
	if string(before) != string(after) {
		t.Errorf("input changed:\n%s\n%s", before, after)
	}
	if *out.Payload[0].RequestTimeout != 600 || *out.Configuration.RequestTimeout != 600 ||
		*out.Configuration.Retry.MaximumAttempts != 3 || *out.Sink.Webhook.SkipOnFail {
		t.Errorf("defaults not filled: %+v", out)
	}
}
