package intunedsim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"
)

// The "done when" check: the quickstart job created over HTTP and triggered
// delivers 1 list + N details webhooks with the documented body.
func TestQuickstartDeliversDocumentedWebhooks(t *testing.T) {
	for _, products := range []int{5, 12} {
		t.Run(fmt.Sprint(products, " products"), func(t *testing.T) {
			h, url := newHook(t, nil)
			ts, _ := newFake(t, Options{Catalogue: CatalogueOptions{Products: products}})
			mustStatus(t, call(t, ts, "POST", "/jobs", quickstartJob("default-with-webhook", url)), 201)
			var trig struct{ JobRunID, Message string }
			call(t, ts, "POST", "/jobs/default-with-webhook/trigger", nil).decode(t, &trig)
			ts.WaitIdleT(t)

			reqs := h.drain()
			if len(reqs) != 1+products {
				t.Fatalf("got %d webhooks, want %d", len(reqs), 1+products)
			}
			apis := map[string]int{}
			sent := map[string][]byte{}
			for _, d := range ts.Deliveries() {
				sent[d.RunID] = d.Body
				if d.Outcome != OutcomeDelivered || len(d.Attempts) != 1 || d.Attempts[0].StatusCode != 200 {
					t.Fatalf("delivery %+v", d)
				}
			}
			names := map[string]bool{}
			for _, r := range reqs {
				if r.header.Get("Content-Type") != "application/json" || r.header.Get("Authorization") != "Bearer your-secret-token" {
					t.Fatalf("headers %v", r.header)
				}
				var body struct {
					WorkspaceID   string
					Project       struct{ ID, Name string }
					ProjectJob    struct{ ID string }
					ProjectJobRun struct{ ID string }
					APIInfo       struct {
						Name       string
						RunID      string
						Parameters map[string]any
						Result     struct {
							Status     string
							Result     json.RawMessage
							StatusCode int
						}
					}
				}
				if err := json.Unmarshal(r.body, &body); err != nil {
					t.Fatal(err)
				}
				if body.WorkspaceID != ts.WorkspaceID || body.Project.Name != testProject || body.Project.ID == "" ||
					body.ProjectJob.ID != "default-with-webhook" || body.ProjectJobRun.ID != trig.JobRunID ||
					len(body.APIInfo.RunID) != 21 || body.APIInfo.Result.Status != "completed" || body.APIInfo.Result.StatusCode != 200 {
					t.Fatalf("body %s", r.body)
				}
				if !bytes.Equal(sent[body.APIInfo.RunID], r.body) {
					t.Fatalf("delivery log body differs from bytes received:\n%s\n%s", sent[body.APIInfo.RunID], r.body)
				}
				apis[body.APIInfo.Name]++
				if body.APIInfo.Name == "details" {
					names[body.APIInfo.Parameters["name"].(string)] = true
					if body.APIInfo.Parameters["detailsUrl"] == "" {
						t.Fatalf("details parameters %v", body.APIInfo.Parameters)
					}
					var p Product
					_ = json.Unmarshal(body.APIInfo.Result.Result, &p)
					if p.Name != body.APIInfo.Parameters["name"] || p.Price == "" {
						t.Fatalf("details result %s", body.APIInfo.Result.Result)
					}
				} else {
					var listed []map[string]string
					_ = json.Unmarshal(body.APIInfo.Result.Result, &listed)
					if len(listed) != products {
						t.Fatalf("list result has %d products", len(listed))
					}
				}
			}
			if apis["list"] != 1 || apis["details"] != products || len(names) != products {
				t.Fatalf("apis %v names %d", apis, len(names))
			}
			var run struct{ JobRun map[string]any }
			call(t, ts, "GET", "/jobs/default-with-webhook/runs/"+trig.JobRunID, nil).decode(t, &run)
			jr := run.JobRun
			if jr["status"] != "COMPLETED" || jr["payloads"] != float64(1+products) || jr["successful_runs"] != float64(1+products) || jr["failed_runs"] != float64(0) || jr["end_time"] == nil {
				t.Fatalf("job run %v", jr)
			}
		})
	}
}

// attemptOffsets returns the attempt times relative to the first one.
func attemptOffsets(d Delivery) []time.Duration {
	var out []time.Duration
	for _, a := range d.Attempts {
		out = append(out, a.Time.Sub(d.Attempts[0].Time))
	}
	return out
}

func expectedOffsets(window time.Duration) []time.Duration {
	out := []time.Duration{0, 10 * time.Second, 30 * time.Second, 70 * time.Second, 150 * time.Second}
	for next := 270 * time.Second; next <= window; next += 2 * time.Minute {
		out = append(out, next)
	}
	return out
}

func TestDeliveryRetryTimeline(t *testing.T) {
	t.Run("webhook 1h", func(t *testing.T) {
		h, url := newHook(t, func(int) int { return 503 })
		ts, _ := newFake(t, Options{})
		mustStatus(t, call(t, ts, "POST", "/jobs", withPayload(quickstartJob("retry-job", url), "details")), 201)
		mustStatus(t, call(t, ts, "POST", "/jobs/retry-job/trigger", nil), 200)
		ts.WaitIdleT(t)
		ts.Advance(3 * time.Hour)
		ds := ts.Deliveries()
		if len(ds) != 1 {
			t.Fatalf("%d deliveries", len(ds))
		}
		d := ds[0]
		want := expectedOffsets(time.Hour)
		if got := attemptOffsets(d); !reflect.DeepEqual(got, want) {
			t.Fatalf("attempt offsets\n got %v\nwant %v", got, want)
		}
		if len(want) != 33 || d.Outcome != OutcomeExhausted || d.Attempts[0].StatusCode != 503 {
			t.Fatalf("%d attempts, outcome %s", len(want), d.Outcome)
		}
		if n := len(h.drain()); n != 33 {
			t.Fatalf("endpoint saw %d POSTs", n)
		}
		var detail struct{ State string }
		call(t, ts, "GET", "/jobs/retry-job", nil).decode(t, &detail)
		if detail.State != StateActive {
			t.Fatalf("webhook failures must not pause the job")
		}
	})
	t.Run("s3 10m", func(t *testing.T) {
		ts, _ := newFake(t, Options{S3FailRate: 1})
		job := withPayload(minimalJob("s3-sink-job"), "details")
		job["sink"] = map[string]any{"type": "s3", "bucket": "bkt", "accessKeyId": "AK", "secretAccessKey": "SK", "region": "us-east-1", "prefix": "out/"}
		mustStatus(t, call(t, ts, "POST", "/jobs", job), 201)
		mustStatus(t, call(t, ts, "POST", "/jobs/s3-sink-job/trigger", nil), 200)
		ts.Advance(time.Hour)
		d := ts.Deliveries()[0]
		if got, want := attemptOffsets(d), expectedOffsets(10*time.Minute); !reflect.DeepEqual(got, want) || len(want) != 8 {
			t.Fatalf("attempt offsets\n got %v\nwant %v", got, want)
		}
		if d.Outcome != OutcomeExhausted || !strings.HasPrefix(d.URL, "s3://bkt/out/") {
			t.Fatalf("%+v", d)
		}
		// S3 failures pause the job (webhook failures do not).
		var detail struct{ State string }
		call(t, ts, "GET", "/jobs/s3-sink-job", nil).decode(t, &detail)
		run := getRun(t, ts, "s3-sink-job", d.JobRunID)
		if detail.State != StatePaused || run.Reason == nil || run.Reason.Type != "s3-sink-error" {
			t.Fatalf("after S3 exhaustion: state %s, run %+v", detail.State, run)
		}
	})
	t.Run("recovers on third attempt", func(t *testing.T) {
		h, url := newHook(t, func(n int) int {
			if n < 3 {
				return 500
			}
			return 204
		})
		ts, _ := newFake(t, Options{})
		mustStatus(t, call(t, ts, "POST", "/jobs", withPayload(quickstartJob("recover-job", url), "details")), 201)
		mustStatus(t, call(t, ts, "POST", "/jobs/recover-job/trigger", nil), 200)
		ts.Advance(20 * time.Second)
		if d := ts.Deliveries()[0]; d.Outcome != OutcomePending || len(d.Attempts) != 2 {
			t.Fatalf("after 20s: %s with %d attempts", d.Outcome, len(d.Attempts))
		}
		ts.Advance(time.Hour)
		d := ts.Deliveries()[0]
		if d.Outcome != OutcomeDelivered || !reflect.DeepEqual(attemptOffsets(d), []time.Duration{0, 10 * time.Second, 30 * time.Second}) {
			t.Fatalf("%s %v", d.Outcome, attemptOffsets(d))
		}
		if n := len(h.drain()); n != 3 {
			t.Fatalf("endpoint saw %d POSTs", n)
		}
	})
}

func withPayload(job map[string]any, api string) map[string]any {
	job["payload"] = []any{map[string]any{"apiName": api, "parameters": map[string]any{
		"detailsUrl": "https://www.scrapingcourse.com/ecommerce/product/abominable-hoodie/", "name": "Abominable Hoodie"}}}
	return job
}

func TestDeliveryFailuresAreRecorded(t *testing.T) {
	// A closed port: connection refused.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedURL := "http://" + ln.Addr().String() + "/hook"
	ln.Close()

	slow := make(chan struct{})
	slowURL := newHTTPServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body) // lets net/http notice the client hanging up
		select {
		case <-slow:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(slow) }) // runs before the server's Close

	cases := []struct {
		name, url string
		timeout   int
		wantErr   string
	}{
		{"connection refused", closedURL, 0, "connection error"},
		{"timeout", slowURL, 50, "timeout after 50ms"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ts, _ := newFake(t, Options{})
			job := withPayload(quickstartJob("failing-sink", c.url), "details")
			if c.timeout > 0 {
				job["sink"].(map[string]any)["timeout"] = c.timeout
			}
			mustStatus(t, call(t, ts, "POST", "/jobs", job), 201)
			mustStatus(t, call(t, ts, "POST", "/jobs/failing-sink/trigger", nil), 200)
			ts.WaitIdleT(t)
			d := ts.Deliveries()[0]
			if d.Outcome != OutcomePending || len(d.Attempts) != 1 || !strings.Contains(d.Attempts[0].Error, c.wantErr) {
				t.Fatalf("%+v", d)
			}
			if strings.Contains(d.Attempts[0].Error, "http://") {
				t.Fatalf("error leaks the URL: %s", d.Attempts[0].Error)
			}
		})
	}
}

func TestSinkFilters(t *testing.T) {
	cases := []struct {
		name          string
		apisToSend    []string
		skipOnFail    bool
		wantDelivered map[string]int // api/status → count
		wantSkipped   map[string]int // reason → count
	}{
		{"all", nil, false, map[string]int{"list/completed": 1, "details/completed": 3, "details/failed": 2}, map[string]int{}},
		{"skipOnFail", nil, true, map[string]int{"list/completed": 1, "details/completed": 3}, map[string]int{"skipOnFail": 2}},
		{"apisToSend details", []string{"details"}, false, map[string]int{"details/completed": 3, "details/failed": 2}, map[string]int{"apisToSend": 1}},
		{"both", []string{"details"}, true, map[string]int{"details/completed": 3}, map[string]int{"apisToSend": 1, "skipOnFail": 2}},
		{"apisToSend none matching", []string{"other"}, false, map[string]int{}, map[string]int{"apisToSend": 6}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h, url := newHook(t, nil)
			ts, _ := newFake(t, Options{Catalogue: CatalogueOptions{Products: 5, FailureShare: 0.4}})
			job := quickstartJob("filter-job", url)
			sink := job["sink"].(map[string]any)
			sink["skipOnFail"] = c.skipOnFail
			if c.apisToSend != nil {
				sink["apisToSend"] = c.apisToSend
			}
			mustStatus(t, call(t, ts, "POST", "/jobs", job), 201)
			mustStatus(t, call(t, ts, "POST", "/jobs/filter-job/trigger", nil), 200)
			ts.WaitIdleT(t)
			got := map[string]int{}
			for _, r := range h.drain() {
				var b struct {
					APIInfo struct {
						Name   string
						Result map[string]any
					}
				}
				_ = json.Unmarshal(r.body, &b)
				got[b.APIInfo.Name+"/"+b.APIInfo.Result["status"].(string)]++
				if b.APIInfo.Result["status"] == "failed" {
					if b.APIInfo.Result["error"] == "" || b.APIInfo.Result["message"] == "" || b.APIInfo.Result["statusCode"] != float64(500) {
						t.Fatalf("failed body %s", r.body)
					}
				}
			}
			if !reflect.DeepEqual(got, c.wantDelivered) {
				t.Fatalf("received %v, want %v", got, c.wantDelivered)
			}
			skipped := map[string]int{}
			for _, d := range ts.Deliveries() {
				if d.Outcome == OutcomeSkipped {
					skipped[d.SkipReason]++
					if len(d.Attempts) != 0 {
						t.Fatalf("skipped delivery has attempts")
					}
				}
			}
			if !reflect.DeepEqual(skipped, c.wantSkipped) {
				t.Fatalf("skipped %v, want %v", skipped, c.wantSkipped)
			}
		})
	}
}

// With a real (scaled) clock and real goroutines the quickstart also
// completes; the test polls instead of stepping time.
func TestQuickstartWithScaledClock(t *testing.T) {
	h, url := newHook(t, nil)
	ts := NewTestServer(t, Options{TimeScale: 600, Catalogue: CatalogueOptions{RunDuration: time.Second}, RateLimit: RateLimitOff})
	mustStatus(t, call(t, ts, "POST", "/jobs", quickstartJob("scaled-clock-job", url)), 201)
	var trig struct{ JobRunID string }
	call(t, ts, "POST", "/jobs/scaled-clock-job/trigger", nil).decode(t, &trig)
	deadline := time.Now().Add(20 * time.Second)
	for {
		var run struct{ JobRun struct{ Status string } }
		call(t, ts, "GET", "/jobs/scaled-clock-job/runs/"+trig.JobRunID, nil).decode(t, &run)
		if run.JobRun.Status == JobRunCompleted {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job run still %s", run.JobRun.Status)
		}
		time.Sleep(20 * time.Millisecond)
	}
	ts.WaitIdleT(t)
	if n := len(h.drain()); n != 6 {
		t.Fatalf("%d webhooks", n)
	}
}

// The webhook retry window is an hour of simulated time; a test that needs
// the whole window shortens it in real time with Options.TimeScale (3600:
// one simulated hour per real second).
func TestWebhookWindowWithScaledClock(t *testing.T) {
	_, url := newHook(t, func(int) int { return http.StatusServiceUnavailable })
	// 600: the hour takes 6 real seconds. At 3600 a millisecond of timer
	// latency on a busy machine is 3.6 simulated seconds, enough to move
	// the last attempt out of the bounds below.
	ts := NewTestServer(t, Options{TimeScale: 600, Catalogue: CatalogueOptions{Products: -1, RunDuration: time.Second}, RateLimit: RateLimitOff})
	mustStatus(t, call(t, ts, "POST", "/jobs", quickstartJob("window-job", url)), 201)
	trigger(t, ts, "window-job")
	start := time.Now()
	for {
		ds := ts.Deliveries()
		if len(ds) == 1 && ds[0].Outcome == OutcomeExhausted {
			// 10s, 20s, 40s, 80s, then every 2 min while within the hour.
			if n := len(ds[0].Attempts); n < 30 || n > 36 {
				t.Fatalf("%d attempts in the window", n)
			}
			if span := ds[0].Attempts[len(ds[0].Attempts)-1].Time.Sub(ds[0].Attempts[0].Time); span > webhookWindow || span < webhookWindow-retryMax {
				t.Fatalf("attempts span %s of simulated time", span)
			}
			t.Logf("window exhausted after %s of real time", time.Since(start).Round(time.Millisecond))
			return
		}
		if time.Since(start) > 15*time.Second {
			t.Fatalf("deliveries %+v", ds)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
