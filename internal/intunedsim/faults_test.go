package intunedsim

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestRateLimit(t *testing.T) {
	ts, _ := newFake(t, Options{RateLimit: DefaultRateLimit})
	for i := 0; i < 20; i++ {
		mustStatus(t, call(t, ts, "GET", "/jobs", nil), 200)
	}
	r := call(t, ts, "GET", "/jobs", nil)
	e := checkErr(t, r, 429, "too-many-requests", "20 requests per minute")
	if !*e.Retirable {
		t.Fatal("429 should be retirable")
	}
	if ra, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || ra < 1 || ra > 60 {
		t.Fatalf("Retry-After %q", r.header.Get("Retry-After"))
	}
	// Another path has its own budget; POST on the same path shares it.
	mustStatus(t, call(t, ts, "GET", "/jobs/other-job-id", nil), 404)
	checkErr(t, call(t, ts, "POST", "/jobs", minimalJob("limited-job")), 429, "too-many-requests", "")
	ts.Advance(time.Minute)
	mustStatus(t, call(t, ts, "GET", "/jobs", nil), 200)
	// Refused requests still count as calls.
	if n := ts.Calls()["GET "+routeJobs]; n != 22 {
		t.Fatalf("calls %d", n)
	}
}

func TestRateLimitSlidingWindow(t *testing.T) {
	ts, _ := newFake(t, Options{RateLimit: 3})
	for _, step := range []struct {
		advance time.Duration
		want    int
	}{{0, 200}, {20 * time.Second, 200}, {20 * time.Second, 200}, {10 * time.Second, 429}, {10 * time.Second, 200}, {0, 429}, {20 * time.Second, 200}} {
		ts.Advance(step.advance)
		mustStatus(t, call(t, ts, "GET", "/jobs", nil), step.want)
	}
}

func TestFaultInjection(t *testing.T) {
	t.Run("times", func(t *testing.T) {
		ts, _ := newFake(t, Options{})
		ts.SetFaults([]FaultRule{{Match: "POST " + routeJobs, Times: 2, Status: 503}})
		checkErr(t, call(t, ts, "POST", "/jobs", minimalJob("fault-job-1")), 503, "internal-server-error", "injected")
		mustStatus(t, call(t, ts, "GET", "/jobs", nil), 200) // other endpoints unaffected
		mustStatus(t, call(t, ts, "POST", "/jobs", minimalJob("fault-job-1")), 503)
		mustStatus(t, call(t, ts, "POST", "/jobs", minimalJob("fault-job-1")), 201)
		if len(ts.Faults()) != 0 {
			t.Fatal("used-up rule not removed")
		}
	})
	t.Run("matchers", func(t *testing.T) {
		cases := []struct {
			match string
			hit   bool
		}{{"*", true}, {"", true}, {"GET", true}, {"get", true}, {"POST", false}, {routeJobs, true}, {routeJob, false}, {"GET " + routeJobs, true}, {"POST " + routeJobs, false}}
		for _, c := range cases {
			if got := (FaultRule{Match: c.match}).matches("GET", "GET "+routeJobs); got != c.hit {
				t.Errorf("match %q = %v", c.match, got)
			}
		}
	})
	t.Run("drop connection", func(t *testing.T) {
		ts, _ := newFake(t, Options{Faults: []FaultRule{{Match: "GET", DropRate: 1}}})
		req, _ := http.NewRequest("GET", ts.APIBase+"/"+ts.WorkspaceID+"/projects/p/jobs", nil)
		req.Header.Set("x-api-key", ts.APIKey)
		if res, err := http.DefaultClient.Do(req); err == nil {
			res.Body.Close()
			t.Fatalf("want a transport error, got %d", res.StatusCode)
		}
	})
	t.Run("latency still answers", func(t *testing.T) {
		ts, _ := newFake(t, Options{Faults: []FaultRule{{LatencyMS: 5}}})
		mustStatus(t, call(t, ts, "GET", "/jobs", nil), 200)
	})
	// The done-when: with 30% injected 5xx, every call completes for
	// a caller that retries.
	t.Run("30 percent 5xx with retrying caller", func(t *testing.T) {
		ts, _ := newFake(t, Options{Faults: []FaultRule{{ErrorRate: 0.3, Status: 500}}})
		failures := 0
		retrying := func(method, path string, body any, want int) {
			for attempt := 0; ; attempt++ {
				r := call(t, ts, method, path, body)
				if r.status == want {
					return
				}
				if r.status < 500 || attempt > 20 {
					t.Fatalf("%s %s: %d %s", method, path, r.status, r.body)
				}
				failures++
			}
		}
		for i := 0; i < 30; i++ {
			id := "job-" + strconv.Itoa(1000+i)
			// Create is not idempotent: a retry after a lost 201 may see 400
			// "already exists"; injected faults answer before the handler, so
			// here a 500 always means "not created".
			retrying("POST", "/jobs", minimalJob(id), 201)
			retrying("GET", "/jobs/"+id, nil, 200)
			retrying("POST", "/jobs/"+id+"/pause", nil, 200)
			retrying("DELETE", "/jobs/"+id, nil, 204)
		}
		if failures < 10 {
			t.Fatalf("only %d injected failures in 120+ calls", failures)
		}
	})
	t.Run("admin api", func(t *testing.T) {
		ts, _ := newFake(t, Options{})
		r := call(t, ts, "POST", "/_sim/faults", `{"rules":[{"match":"DELETE","errorRate":1,"status":502}],"s3FailRate":0.5}`)
		mustStatus(t, r, 200)
		mustStatus(t, call(t, ts, "POST", "/jobs", minimalJob("admin-fault")), 201)
		checkErr(t, call(t, ts, "DELETE", "/jobs/admin-fault", nil), 502, "internal-server-error", "")
		var got faultsBody
		call(t, ts, "GET", "/_sim/faults", nil).decode(t, &got)
		if len(got.Rules) != 1 || *got.S3FailRate != 0.5 {
			t.Fatalf("faults %+v", got)
		}
		mustStatus(t, call(t, ts, "POST", "/_sim/faults", `{"rules":[{"errorRate":2}]}`), 400)
		mustStatus(t, call(t, ts, "DELETE", "/_sim/faults", nil), 204)
		mustStatus(t, call(t, ts, "DELETE", "/jobs/admin-fault", nil), 204)
	})
}

func TestCallCounters(t *testing.T) {
	ts, _ := newFake(t, Options{})
	mustStatus(t, call(t, ts, "POST", "/jobs", minimalJob("counted-job")), 201)
	call(t, ts, "GET", "/jobs/counted-job", nil)
	call(t, ts, "GET", "/jobs/counted-job", nil)
	call(t, ts, "PUT", "/jobs/counted-job", `{"payload":[],"configuration":{}}`)
	call(t, ts, "GET", "/jobs/counted-job", nil, "x-api-key", "wrong")
	want := map[string]int{"POST " + routeJobs: 1, "GET " + routeJob: 3, "PUT " + routeJob: 1}
	got := ts.Calls()
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("calls %v, want %v", got, want)
		}
	}
	if ts.WriteCalls() != 2 {
		t.Fatalf("writes %d", ts.WriteCalls())
	}
	var body struct {
		Calls  map[string]int
		Total  int
		Writes int
	}
	call(t, ts, "GET", "/_sim/calls", nil).decode(t, &body)
	if body.Total != 5 || body.Writes != 2 || body.Calls["GET "+routeJob] != 3 {
		t.Fatalf("admin calls %+v", body)
	}
	mustStatus(t, call(t, ts, "DELETE", "/_sim/calls", nil), 204)
	if len(ts.Calls()) != 0 {
		t.Fatal("not reset")
	}
}

func TestAdminAPI(t *testing.T) {
	h, url := newHook(t, nil)
	ts, _ := newFake(t, Options{})
	mustStatus(t, call(t, ts, "POST", "/jobs", quickstartJob("admin-job-1", url)), 201)
	id := trigger(t, ts, "admin-job-1")
	ts.WaitIdleT(t)

	t.Run("deliveries", func(t *testing.T) {
		var body struct {
			Deliveries []struct {
				RunID      string          `json:"runId"`
				JobRunID   string          `json:"jobRunId"`
				Outcome    string          `json:"outcome"`
				Body       json.RawMessage `json:"body"`
				BodySHA256 string          `json:"bodySha256"`
				Attempts   []struct {
					StatusCode int `json:"statusCode"`
				} `json:"attempts"`
			} `json:"deliveries"`
		}
		call(t, ts, "GET", "/_sim/deliveries?jobRunId="+id, nil).decode(t, &body)
		received := map[string]bool{}
		for _, r := range h.drain() {
			sum := sha256.Sum256(r.body)
			received[hex.EncodeToString(sum[:])] = true
		}
		if len(body.Deliveries) != 6 || len(received) != 6 {
			t.Fatalf("%d deliveries, %d received", len(body.Deliveries), len(received))
		}
		for _, d := range body.Deliveries {
			sum := sha256.Sum256(d.Body)
			if !received[d.BodySHA256] || hex.EncodeToString(sum[:]) != d.BodySHA256 || d.Outcome != "delivered" || d.Attempts[0].StatusCode != 200 {
				t.Fatalf("delivery %+v", d)
			}
		}
		call(t, ts, "GET", "/_sim/deliveries?outcome=exhausted", nil).decode(t, &body)
		if len(body.Deliveries) != 0 {
			t.Fatal("filter by outcome")
		}
		var runs struct{ Runs []APIRun }
		call(t, ts, "GET", "/_sim/runs?jobRunId="+id, nil).decode(t, &runs)
		if len(runs.Runs) != 6 {
			t.Fatalf("%d runs", len(runs.Runs))
		}
	})
	t.Run("drift", func(t *testing.T) {
		r := call(t, ts, "POST", "/_sim/drift", map[string]any{"project": testProject, "jobId": "admin-job-1", "action": "modify",
			"patch": map[string]any{"configuration": map[string]any{"maxConcurrentRequests": 1}, "sink": nil}})
		mustStatus(t, r, 200)
		var d map[string]any
		call(t, ts, "GET", "/jobs/admin-job-1", nil).decode(t, &d)
		if d["sink"] != nil || d["configuration"].(map[string]any)["maxConcurrentRequests"] != float64(1) {
			t.Fatalf("after modify %v", d)
		}
		mustStatus(t, call(t, ts, "POST", "/_sim/drift", map[string]any{"project": testProject, "jobId": "admin-job-1", "action": "modify",
			"patch": map[string]any{"payload": "broken"}}), 400)
		mustStatus(t, call(t, ts, "POST", "/_sim/drift", map[string]any{"project": testProject, "jobId": "admin-job-1", "action": "pause"}), 200)
		call(t, ts, "GET", "/jobs/admin-job-1", nil).decode(t, &d)
		if d["state"] != "PAUSED" {
			t.Fatalf("state %v", d["state"])
		}
		mustStatus(t, call(t, ts, "POST", "/_sim/drift", map[string]any{"project": testProject, "jobId": "admin-job-1", "action": "delete"}), 200)
		mustStatus(t, call(t, ts, "GET", "/jobs/admin-job-1", nil), 404)
		r = call(t, ts, "POST", "/_sim/drift", map[string]any{"project": testProject, "jobId": "admin-job-1", "action": "delete"})
		if r.status != 404 || !strings.Contains(string(r.body), `"error"`) {
			t.Fatalf("drift on missing job: %d %s", r.status, r.body)
		}
		mustStatus(t, call(t, ts, "POST", "/_sim/drift", `{"project":"p","jobId":"x","action":"explode"}`), 404)
	})
	t.Run("clock", func(t *testing.T) {
		r := call(t, ts, "POST", "/_sim/clock/advance", `{"duration":"90s"}`)
		mustStatus(t, r, 200)
		if !bytes.Contains(r.body, []byte(isoTime(testStart.Add(90*time.Second)))) {
			t.Fatalf("advance = %s", r.body)
		}
		mustStatus(t, call(t, ts, "POST", "/_sim/clock/advance", `{"duration":"soon"}`), 400)
		real := NewTestServer(t, Options{})
		mustStatus(t, call(t, real, "POST", "/_sim/clock/advance", `{"duration":"1s"}`), 409)
	})
	t.Run("reset", func(t *testing.T) {
		mustStatus(t, call(t, ts, "POST", "/jobs", minimalJob("before-reset")), 201)
		mustStatus(t, call(t, ts, "POST", "/_sim/reset", nil), 204)
		if r := call(t, ts, "GET", "/jobs", nil); string(r.body) != "[]" || len(ts.Deliveries()) != 0 {
			t.Fatalf("after reset %s", r.body)
		}
		mustStatus(t, call(t, ts, "GET", "/_sim/nothing", nil), 404)
	})
	t.Run("admin token", func(t *testing.T) {
		sec := NewTestServer(t, Options{AdminToken: "adm"})
		mustStatus(t, call(t, sec, "GET", "/_sim/calls", nil), 401)
		mustStatus(t, call(t, sec, "GET", "/_sim/calls", nil, "Authorization", "Bearer adm"), 200)
	})
}
