package intunedsim

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// errBody is Intuned's error shape, decoded independently of errorBody.
type errBody struct {
	Code          string `json:"code"`
	Category      string `json:"category"`
	Message       string `json:"message"`
	Retirable     *bool  `json:"retirable"`
	CorrelationID string `json:"correlationId"`
	Details       []struct {
		Path    string `json:"path"`
		Message string `json:"message"`
	} `json:"details"`
}

func checkErr(t *testing.T, r resp, status int, code, msgPart string) errBody {
	t.Helper()
	mustStatus(t, r, status)
	var e errBody
	r.decode(t, &e)
	if e.Code != code || e.Category == "" || e.Retirable == nil || e.CorrelationID == "" {
		t.Fatalf("error body %s: want code %q with category, retirable and correlationId", r.body, code)
	}
	if !strings.Contains(e.Message, msgPart) {
		t.Fatalf("message %q does not mention %q", e.Message, msgPart)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q", ct)
	}
	return e
}

func TestJobLifecycle(t *testing.T) {
	ts, _ := newFake(t, Options{})

	mustStatus(t, call(t, ts, "GET", "/jobs", nil), 200)
	if r := call(t, ts, "GET", "/jobs", nil); string(r.body) != "[]" {
		t.Fatalf("empty list = %s, want []", r.body)
	}

	r := call(t, ts, "POST", "/jobs", minimalJob("job-0001"))
	mustStatus(t, r, 201)
	var created struct{ ID, Message string }
	r.decode(t, &created)
	if created.ID != "job-0001" || created.Message != "created" {
		t.Fatalf("create = %s", r.body)
	}

	var detail map[string]any
	call(t, ts, "GET", "/jobs/job-0001", nil).decode(t, &detail)
	if detail["state"] != "ACTIVE" || detail["projectId"] == nil || detail["created_at"] == nil {
		t.Fatalf("detail = %v", detail)
	}
	cfg := detail["configuration"].(map[string]any)
	if cfg["requestTimeout"] != float64(600) {
		t.Fatalf("configuration.requestTimeout default missing: %v", cfg)
	}

	// Full replacement: a sink set, then omitted, is cleared.
	upd := minimalJob("")
	delete(upd, "id")
	upd["sink"] = map[string]any{"type": "webhook", "url": "https://example.com/h"}
	r = call(t, ts, "PUT", "/jobs/job-0001", upd)
	mustStatus(t, r, 200)
	if string(r.body) != `{"id":"job-0001","message":"updated job successfully"}` {
		t.Fatalf("update = %s", r.body)
	}
	call(t, ts, "GET", "/jobs/job-0001", nil).decode(t, &detail)
	if sink, _ := detail["sink"].(map[string]any); sink["skipOnFail"] != false || sink["url"] != "https://example.com/h" {
		t.Fatalf("sink after update = %v", detail["sink"])
	}
	delete(upd, "sink")
	mustStatus(t, call(t, ts, "PUT", "/jobs/job-0001", upd), 200)
	call(t, ts, "GET", "/jobs/job-0001", nil).decode(t, &detail)
	if detail["sink"] != nil {
		t.Fatalf("sink not cleared by full replacement: %v", detail["sink"])
	}

	// Pause / resume and the list's reason.
	r = call(t, ts, "POST", "/jobs/job-0001/pause", nil)
	if r.status != 200 || string(r.body) != `{"message":"Paused"}` {
		t.Fatalf("pause = %d %s", r.status, r.body)
	}
	var list []map[string]any
	call(t, ts, "GET", "/jobs", nil).decode(t, &list)
	if list[0]["state"] != "PAUSED" || list[0]["reason"].(map[string]any)["type"] != "paused" {
		t.Fatalf("list after pause = %v", list[0])
	}
	r = call(t, ts, "POST", "/jobs/job-0001/resume", nil)
	if r.status != 200 || string(r.body) != `{"message":"Resumed"}` {
		t.Fatalf("resume = %d %s", r.status, r.body)
	}
	call(t, ts, "GET", "/jobs", nil).decode(t, &list)
	if list[0]["state"] != "ACTIVE" || list[0]["reason"] != nil {
		t.Fatalf("list after resume = %v", list[0])
	}

	r = call(t, ts, "DELETE", "/jobs/job-0001", nil)
	if r.status != 204 || len(r.body) != 0 {
		t.Fatalf("delete = %d %q", r.status, r.body)
	}
	checkErr(t, call(t, ts, "GET", "/jobs/job-0001", nil), 404, "not-found", "job-0001")
}

func TestErrors(t *testing.T) {
	ts, _ := newFake(t, Options{})
	mustStatus(t, call(t, ts, "POST", "/jobs", minimalJob("existing-job")), 201)
	var trig struct{ JobRunID string }
	call(t, ts, "POST", "/jobs/existing-job/trigger", nil).decode(t, &trig)
	ts.WaitIdleT(t)

	valid := func(mut func(m map[string]any)) map[string]any {
		m := minimalJob("valid-job-id")
		mut(m)
		return m
	}
	wsPath := "/api/v1/workspace/" + ts.WorkspaceID + "/projects/" + testProject
	cases := []struct {
		name        string
		method      string
		path        string
		body        any
		hdr         []string
		status      int
		code        string
		msg         string
		detailPaths []string
	}{
		{"no api key", "GET", "/jobs", nil, []string{"x-api-key", ""}, 401, "unauthorized", "API key", nil},
		{"wrong api key", "GET", "/jobs", nil, []string{"x-api-key", "nope"}, 401, "unauthorized", "API key", nil},
		{"unknown workspace", "GET", "/api/v1/workspace/00000000-0000-4000-8000-000000000000/projects/p/jobs", nil, nil, 401, "unauthorized", "", nil},
		{"unknown job get", "GET", "/jobs/missing-job", nil, nil, 404, "not-found", "missing-job", nil},
		{"unknown job put", "PUT", "/jobs/missing-job", valid(func(m map[string]any) {}), nil, 404, "not-found", "missing-job", nil},
		{"unknown job delete", "DELETE", "/jobs/missing-job", nil, nil, 404, "not-found", "", nil},
		{"unknown job pause", "POST", "/jobs/missing-job/pause", nil, nil, 404, "not-found", "", nil},
		{"unknown job resume", "POST", "/jobs/missing-job/resume", nil, nil, 404, "not-found", "", nil},
		{"unknown job trigger", "POST", "/jobs/missing-job/trigger", nil, nil, 404, "not-found", "", nil},
		{"unknown job runs", "GET", "/jobs/missing-job/runs", nil, nil, 404, "not-found", "", nil},
		{"unknown run", "GET", "/jobs/existing-job/runs/nope", nil, nil, 404, "not-found", "nope", nil},
		{"unknown run terminate", "POST", "/jobs/existing-job/runs/nope/terminate", nil, nil, 404, "not-found", "", nil},
		{"unknown route", "GET", wsPath + "/nothing", nil, nil, 404, "not-found", "Route", nil},
		{"Run API not modelled", "POST", wsPath + "/run/start", `{"api":"list","parameters":{}}`, nil, 404, "not-found", "Route", nil},
		{"AuthSessions not modelled", "GET", wsPath + "/auth-sessions", nil, nil, 404, "not-found", "Route", nil},
		{"wrong method", "PATCH", "/jobs/existing-job", "{}", nil, 404, "not-found", "Route", nil},
		{"not json", "POST", "/jobs", "{nope", nil, 400, "bad-request", "JSON", nil},
		{"array body", "POST", "/jobs", "[]", nil, 400, "bad-request", "JSON object", nil},
		{"empty object", "POST", "/jobs", "{}", nil, 400, "bad-request", "", []string{"id", "payload", "configuration"}},
		{"duplicate id", "POST", "/jobs", minimalJob("existing-job"), nil, 400, "bad-request", "already exists", []string{"id"}},
		{"short id", "POST", "/jobs", valid(func(m map[string]any) { m["id"] = "abc" }), nil, 400, "bad-request", "at least 7", []string{"id"}},
		{"bad id chars", "POST", "/jobs", valid(func(m map[string]any) { m["id"] = "has space!" }), nil, 400, "bad-request", "a-zA-Z0-9", []string{"id"}},
		{"payload not array", "POST", "/jobs", valid(func(m map[string]any) { m["payload"] = "x" }), nil, 400, "bad-request", "payload", []string{"payload"}},
		{"payload null", "POST", "/jobs", valid(func(m map[string]any) { m["payload"] = nil }), nil, 400, "bad-request", "payload is required", []string{"payload"}},
		{"missing apiName", "POST", "/jobs", valid(func(m map[string]any) { m["payload"] = []any{map[string]any{"parameters": map[string]any{}}} }), nil, 400, "bad-request", "apiName", []string{"payload[0].apiName"}},
		{"parameters not object", "POST", "/jobs", valid(func(m map[string]any) { m["payload"] = []any{map[string]any{"apiName": "a", "parameters": []any{}}} }), nil, 400, "bad-request", "parameters", []string{"payload[0].parameters"}},
		{"missing parameters", "POST", "/jobs", valid(func(m map[string]any) { m["payload"] = []any{map[string]any{"apiName": "a"}} }), nil, 400, "bad-request", "parameters", []string{"payload[0].parameters"}},
		{"negative timeout", "POST", "/jobs", valid(func(m map[string]any) {
			m["payload"] = []any{map[string]any{"apiName": "a", "parameters": map[string]any{}, "requestTimeout": -1}}
		}), nil, 400, "bad-request", "requestTimeout", []string{"payload[0].requestTimeout"}},
		{"configuration missing", "POST", "/jobs", valid(func(m map[string]any) { delete(m, "configuration") }), nil, 400, "bad-request", "configuration is required", []string{"configuration"}},
		{"configuration wrong type", "POST", "/jobs", valid(func(m map[string]any) { m["configuration"] = 5 }), nil, 400, "bad-request", "configuration", nil},
		{"maxConcurrentRequests 0", "POST", "/jobs", valid(func(m map[string]any) { m["configuration"] = map[string]any{"maxConcurrentRequests": 0} }), nil, 400, "bad-request", "maxConcurrentRequests", []string{"configuration.maxConcurrentRequests"}},
		{"maximumAttempts 0", "POST", "/jobs", valid(func(m map[string]any) {
			m["configuration"] = map[string]any{"retry": map[string]any{"maximumAttempts": 0}}
		}), nil, 400, "bad-request", "maximumAttempts", []string{"configuration.retry.maximumAttempts"}},
		{"bad sink type", "POST", "/jobs", valid(func(m map[string]any) { m["sink"] = map[string]any{"type": "r2", "url": "https://x"} }), nil, 400, "bad-request", "unsupported sink type", []string{"sink.type"}},
		{"sink without type", "POST", "/jobs", valid(func(m map[string]any) { m["sink"] = map[string]any{"url": "https://x"} }), nil, 400, "bad-request", "sink.type", []string{"sink.type"}},
		{"webhook without url", "POST", "/jobs", valid(func(m map[string]any) { m["sink"] = map[string]any{"type": "webhook"} }), nil, 400, "bad-request", "sink.url", []string{"sink.url"}},
		{"webhook relative url", "POST", "/jobs", valid(func(m map[string]any) { m["sink"] = map[string]any{"type": "webhook", "url": "/hook"} }), nil, 400, "bad-request", "sink.url", []string{"sink.url"}},
		{"s3 missing fields", "POST", "/jobs", valid(func(m map[string]any) { m["sink"] = map[string]any{"type": "s3", "bucket": "b"} }), nil, 400, "bad-request", "s3", []string{"sink.accessKeyId", "sink.region", "sink.secretAccessKey"}},
		{"headers not strings", "POST", "/jobs", valid(func(m map[string]any) {
			m["sink"] = map[string]any{"type": "webhook", "url": "https://x.test", "headers": map[string]any{"a": 1}}
		}), nil, 400, "bad-request", "headers", nil},
		{"bad proxy", "POST", "/jobs", valid(func(m map[string]any) { m["proxy"] = "not a url" }), nil, 400, "bad-request", "proxy", []string{"proxy"}},
		{"auth_session without id", "POST", "/jobs", valid(func(m map[string]any) { m["auth_session"] = map[string]any{} }), nil, 400, "bad-request", "auth_session.id", []string{"auth_session.id"}},
		{"bad interval", "POST", "/jobs", valid(func(m map[string]any) {
			m["schedule"] = map[string]any{"intervals": []any{map[string]any{"every": "soon"}}}
		}), nil, 400, "bad-request", "every", []string{"schedule.intervals[0].every"}},
		{"interval zero", "POST", "/jobs", valid(func(m map[string]any) { m["schedule"] = map[string]any{"intervals": []any{map[string]any{"every": 0}}} }), nil, 400, "bad-request", "positive", []string{"schedule.intervals[0].every"}},
		{"calendar hour 24", "POST", "/jobs", valid(func(m map[string]any) { m["schedule"] = map[string]any{"calendars": []any{map[string]any{"hour": 24}}} }), nil, 400, "bad-request", "out of range", []string{"schedule.calendars[0].hour"}},
		{"calendar bad day", "POST", "/jobs", valid(func(m map[string]any) {
			m["schedule"] = map[string]any{"calendars": []any{map[string]any{"dayOfWeek": "FUNDAY"}}}
		}), nil, 400, "bad-request", "FUNDAY", []string{"schedule.calendars[0].dayOfWeek"}},
		{"bad jitter", "POST", "/jobs", valid(func(m map[string]any) { m["schedule"] = map[string]any{"jitter": true} }), nil, 400, "bad-request", "jitter", []string{"schedule.jitter"}},
		// The CRD refuses these at apply time (test/crd) because the
		// simulator, like Temporal-style calendars, does not wrap ranges.
		{"weekday range wrapping the week", "POST", "/jobs", valid(func(m map[string]any) {
			m["schedule"] = map[string]any{"calendars": []any{map[string]any{"dayOfWeek": map[string]any{"start": "FRIDAY", "end": "MONDAY"}}}}
		}), nil, 400, "bad-request", "before start", []string{"schedule.calendars[0].dayOfWeek"}},
		// As the SDK's request schemas: integers where it says int, upper-case
		// names, "*" only as a whole field. Each 400 names the field.
		{"fractional requestTimeout", "POST", "/jobs", valid(func(m map[string]any) {
			m["payload"] = []any{map[string]any{"apiName": "a", "parameters": map[string]any{}, "requestTimeout": 2.5}}
		}), nil, 400, "bad-request", "payload.requestTimeout must be an integer (the SDK schema says int), got 2.5", nil},
		{"fractional maximumAttempts", "POST", "/jobs", valid(func(m map[string]any) {
			m["configuration"] = map[string]any{"retry": map[string]any{"maximumAttempts": 1.5}}
		}), nil, 400, "bad-request", "configuration.retry.maximumAttempts must be an integer", nil},
		{"fractional every", "POST", "/jobs", valid(func(m map[string]any) {
			m["schedule"] = map[string]any{"intervals": []any{map[string]any{"every": 1000.5}}}
		}), nil, 400, "bad-request", "integer", []string{"schedule.intervals[0].every"}},
		{"fractional jitter", "POST", "/jobs", valid(func(m map[string]any) { m["schedule"] = map[string]any{"jitter": 0.5} }), nil, 400, "bad-request", "integer", []string{"schedule.jitter"}},
		{"negative jitter", "POST", "/jobs", valid(func(m map[string]any) { m["schedule"] = map[string]any{"jitter": -1} }), nil, 400, "bad-request", "positive", []string{"schedule.jitter"}},
		{"fractional calendar value", "POST", "/jobs", valid(func(m map[string]any) {
			m["schedule"] = map[string]any{"calendars": []any{map[string]any{"minute": 2.5}}}
		}), nil, 400, "bad-request", "must be an integer", []string{"schedule.calendars[0].minute"}},
		{"fractional calendar step", "POST", "/jobs", valid(func(m map[string]any) {
			m["schedule"] = map[string]any{"calendars": []any{map[string]any{"minute": map[string]any{"start": 0, "end": 59, "step": 1.5}}}}
		}), nil, 400, "bad-request", "step an integer", []string{"schedule.calendars[0].minute"}},
		{"lower-case day", "POST", "/jobs", valid(func(m map[string]any) {
			m["schedule"] = map[string]any{"calendars": []any{map[string]any{"dayOfWeek": "monday"}}}
		}), nil, 400, "bad-request", "upper case", []string{"schedule.calendars[0].dayOfWeek"}},
		{"day as number", "POST", "/jobs", valid(func(m map[string]any) {
			m["schedule"] = map[string]any{"calendars": []any{map[string]any{"dayOfWeek": 1}}}
		}), nil, 400, "bad-request", "not a number", []string{"schedule.calendars[0].dayOfWeek"}},
		{"month as number", "POST", "/jobs", valid(func(m map[string]any) { m["schedule"] = map[string]any{"calendars": []any{map[string]any{"month": 3}}} }), nil, 400, "bad-request", "not a number", []string{"schedule.calendars[0].month"}},
		{"wildcard inside a list", "POST", "/jobs", valid(func(m map[string]any) {
			m["schedule"] = map[string]any{"calendars": []any{map[string]any{"hour": []any{"*"}}}}
		}), nil, 400, "bad-request", "whole field", []string{"schedule.calendars[0].hour"}},
		{"maxConcurrentRequests 0", "POST", "/jobs", valid(func(m map[string]any) { m["configuration"] = map[string]any{"maxConcurrentRequests": 0} }), nil, 400, "bad-request", "greater than 0", []string{"configuration.maxConcurrentRequests"}},
		{"requestTimeout as string", "POST", "/jobs", valid(func(m map[string]any) { m["configuration"] = map[string]any{"requestTimeout": "600"} }), nil, 400, "bad-request", "configuration.requestTimeout must be an integer, got string", nil},
		{"keys are case-sensitive", "POST", "/jobs", `{"id":"case-job","Payload":[],"configuration":{}}`, nil, 400, "bad-request", "payload is required", []string{"payload"}},
		{"nested keys are case-sensitive", "POST", "/jobs", `{"id":"case-job","payload":[{"ApiName":"x","parameters":{}}],"configuration":{}}`, nil, 400, "bad-request", "apiName", []string{"payload[0].apiName"}},
		{"update not json", "PUT", "/jobs/existing-job", "nope", nil, 400, "bad-request", "JSON", nil},
		{"update missing payload", "PUT", "/jobs/existing-job", `{"configuration":{}}`, nil, 400, "bad-request", "payload", []string{"payload"}},
		{"bad pageSize", "GET", "/jobs/existing-job/runs?pageSize=abc", nil, nil, 400, "bad-request", "pageSize", nil},
		{"pageSize too big", "GET", "/jobs/existing-job/runs?pageSize=1000", nil, nil, 400, "bad-request", "pageSize", nil},
		{"negative pageNumber", "GET", "/jobs/existing-job/runs?pageNumber=-1", nil, nil, 400, "bad-request", "pageNumber", nil},
		{"bad sort field", "GET", "/jobs/existing-job/runs?sortBy=colour,asc", nil, nil, 400, "bad-request", "colour", nil},
		{"bad sort dir", "GET", "/jobs/existing-job/runs?sortBy=status,up", nil, nil, 400, "bad-request", "asc or desc", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := checkErr(t, call(t, ts, c.method, c.path, c.body, c.hdr...), c.status, c.code, c.msg)
			if *e.Retirable {
				t.Fatalf("retirable should be false")
			}
			if c.detailPaths != nil {
				var got []string
				for _, d := range e.Details {
					got = append(got, d.Path)
				}
				if strings.Join(got, ",") != strings.Join(c.detailPaths, ",") {
					t.Fatalf("details paths %v, want %v", got, c.detailPaths)
				}
			}
		})
	}
	// Nothing invalid was stored.
	var list []map[string]any
	call(t, ts, "GET", "/jobs", nil).decode(t, &list)
	if len(list) != 1 {
		t.Fatalf("want only existing-job stored, got %d jobs", len(list))
	}
}

// TestSDKValuesAcceptedAndNormalised: values the SDK's request schemas
// allow are accepted, and the Job reads back the way the SDK's response
// schemas would see it.
func TestSDKValuesAcceptedAndNormalised(t *testing.T) {
	ts, _ := newFake(t, Options{})
	job := minimalJob("sdk-values-job")
	job["configuration"] = map[string]any{"maxConcurrentRequests": 2.5}
	job["schedule"] = map[string]any{
		"jitter": 0,
		"calendars": []any{map[string]any{
			"minute":    map[string]any{"start": 0, "step": 15}, // no end: the SDK strips step
			"hour":      []any{map[string]any{"start": 8, "end": 18, "step": 2}, 20},
			"dayOfWeek": map[string]any{"start": "MONDAY", "end": "FRIDAY"},
			"month":     "*",
		}},
	}
	job["sink"] = map[string]any{"type": "webhook", "url": "https://hooks.example/x", "retry": 5, "timeout": 2000}
	mustStatus(t, call(t, ts, "POST", "/jobs", job), 201)
	var d map[string]json.RawMessage
	call(t, ts, "GET", "/jobs/sdk-values-job", nil).decode(t, &d)
	for key, want := range map[string]string{
		"configuration": `{"maxConcurrentRequests":2.5,"requestTimeout":600}`,
		"schedule":      `{"jitter":0,"calendars":[{"minute":{"start":0},"hour":[{"start":8,"step":2,"end":18},20],"dayOfWeek":{"start":"MONDAY","end":"FRIDAY"},"month":"*"}]}`,
		// retry and timeout are not in the SDK's sink schema: not echoed.
		"sink": `{"type":"webhook","url":"https://hooks.example/x","skipOnFail":false}`,
	} {
		if string(d[key]) != want {
			t.Errorf("%s\n got %s\nwant %s", key, d[key], want)
		}
	}
}

func TestDuplicateCreateConflictOption(t *testing.T) {
	ts, _ := newFake(t, Options{DuplicateCreateStatus: http.StatusConflict})
	mustStatus(t, call(t, ts, "POST", "/jobs", minimalJob("dup-job-1")), 201)
	checkErr(t, call(t, ts, "POST", "/jobs", minimalJob("dup-job-1")), 409, "conflict", "already exists")
}

func TestProjectsRestricted(t *testing.T) {
	ts, _ := newFake(t, Options{Projects: []string{"only-this"}})
	checkErr(t, call(t, ts, "GET", "/jobs", nil), 404, "not-found", testProject)
	mustStatus(t, call(t, ts, "GET", "/api/v1/workspace/"+ts.WorkspaceID+"/projects/only-this/jobs", nil), 200)
}

func TestMultipleWorkspaces(t *testing.T) {
	ts, _ := newFake(t, Options{Workspaces: map[string]string{"ws-a": "key-a", "ws-b": "key-b"}})
	pa := "/api/v1/workspace/ws-a/projects/p/jobs"
	pb := "/api/v1/workspace/ws-b/projects/p/jobs"
	mustStatus(t, call(t, ts, "POST", pa, minimalJob("job-in-a"), "x-api-key", "key-a"), 201)
	checkErr(t, call(t, ts, "GET", pb, nil, "x-api-key", "key-a"), 401, "unauthorized", "")
	r := call(t, ts, "GET", pb, nil, "x-api-key", "key-b")
	if r.status != 200 || string(r.body) != "[]" {
		t.Fatalf("ws-b sees %d %s", r.status, r.body)
	}
}

func TestDefaultsFilledOnStore(t *testing.T) {
	ts, _ := newFake(t, Options{})
	job := map[string]any{
		"id": "defaults-job",
		"payload": []any{
			map[string]any{"apiName": "list", "parameters": map[string]any{}, "retry": map[string]any{}},
		},
		"configuration": map[string]any{"retry": map[string]any{}, "maxConcurrentRequests": 2},
		"auth_session":  map[string]any{"id": "auth-1"},
		"sink":          map[string]any{"type": "s3", "bucket": "b", "accessKeyId": "a", "secretAccessKey": "s", "region": "us-west-2", "url": "https://dropped"},
		"proxy":         "http://user:pass@proxy:8080",
		"unknownField":  true,
	}
	mustStatus(t, call(t, ts, "POST", "/jobs", job), 201)
	r := call(t, ts, "GET", "/jobs/defaults-job", nil)
	want := `{"id":"defaults-job","configuration":{"retry":{"maximumAttempts":3},"maxConcurrentRequests":2,"requestTimeout":600},` +
		`"payload":[{"apiName":"list","parameters":{},"requestTimeout":600,"retry":{"maximumAttempts":3}}],"schedule":null,` +
		`"sink":{"type":"s3","bucket":"b","accessKeyId":"a","secretAccessKey":"s","region":"us-west-2","skipOnFail":false},` +
		`"created_at":"2026-01-05T09:00:00.000Z","next_run_time":null,"last_run_time":null,"state":"ACTIVE",` +
		`"projectId":"` + nameUUID(ts.WorkspaceID+"/"+testProject) + `","auth_session":{"id":"auth-1","checkAttempts":3,"createAttempts":3},"proxy":"http://user:pass@proxy:8080"}`
	if string(r.body) != want {
		t.Fatalf("detail\n got %s\nwant %s", r.body, want)
	}
	var list []map[string]any
	call(t, ts, "GET", "/jobs", nil).decode(t, &list)
	if p := list[0]["proxy"].(map[string]any); p["version"] != "v1" || p["url"] != "http://user:pass@proxy:8080" {
		t.Fatalf("list proxy = %v", list[0]["proxy"])
	}
}

// TestNormaliseRules: a Normalise rule rewrites the field on every write and
// leaves the rest as sent.
func TestNormaliseRules(t *testing.T) {
	rt, err := ParseNormaliseRule("configuration.requestTimeout=300")
	if err != nil {
		t.Fatal(err)
	}
	strip, err := ParseNormaliseRule("sink.headers=")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseNormaliseRule("nonsense"); err == nil {
		t.Fatal("a rule without = was accepted")
	}
	ts, _ := newFake(t, Options{Normalise: []NormaliseRule{rt, strip}})
	job := minimalJob("normalised-job")
	job["sink"] = map[string]any{"type": "webhook", "url": "https://hooks.example/x", "headers": map[string]string{"A": "b"}}
	mustStatus(t, call(t, ts, "POST", "/jobs", job), 201)
	for i := 0; i < 2; i++ { // create, then update: each write is rewritten
		var d map[string]json.RawMessage
		call(t, ts, "GET", "/jobs/normalised-job", nil).decode(t, &d)
		if string(d["configuration"]) != `{"requestTimeout":300}` || string(d["sink"]) != `{"type":"webhook","url":"https://hooks.example/x","skipOnFail":false}` {
			t.Fatalf("write %d: configuration %s sink %s", i, d["configuration"], d["sink"])
		}
		delete(job, "id")
		mustStatus(t, call(t, ts, "PUT", "/jobs/normalised-job", job), 200)
	}
}
