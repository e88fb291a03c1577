package intuned

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

const (
	testWorkspace = "0b6f3c2a-1d4e-4f5a-8b9c-7d6e5f4a3b21"
	testKey       = "sk-test-3f9a1c7e5b2d4068"
)

// recorded is one request as the test server saw it.
type recorded struct {
	Method, URI, Key, ContentType string
	Body                          []byte
}

// testServer is an httptest server that checks x-api-key like Intuned (401
// with Intuned's error body) and answers every request with handle.
type testServer struct {
	*httptest.Server
	mu       sync.Mutex
	requests []recorded
}

func newTestServer(t testing.TB, handle http.HandlerFunc) *testServer {
	t.Helper()
	s := &testServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.requests = append(s.requests, recorded{r.Method, r.RequestURI, r.Header.Get("x-api-key"), r.Header.Get("Content-Type"), body})
		s.mu.Unlock()
		if r.Header.Get("x-api-key") != testKey {
			writeJSON(w, http.StatusUnauthorized, `{"code":"unauthorized","category":"user","message":"Unauthorized","retirable":false,"correlationId":"c-401"}`)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		handle(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *testServer) Requests() []recorded {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]recorded(nil), s.requests...)
}

func writeJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	io.WriteString(w, body)
}

// newTestClient returns a client for srv with pacing off and no retry sleep.
func newTestClient(t *testing.T, baseURL string, mod func(*Options)) *Client {
	t.Helper()
	o := Options{
		BaseURL:     baseURL,
		WorkspaceID: testWorkspace,
		APIKey:      testKey,
		Pacer:       NewPacer(PacerOptions{Disabled: true}),
		Clock:       newInstantClock(),
	}
	if mod != nil {
		mod(&o)
	}
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestEndpoints calls every API method against a server that answers with the
// documented example, and checks method, path, query, headers and body.
func TestEndpoints(t *testing.T) {
	const p = "/api/v1/workspace/" + testWorkspace + "/projects/ecommerce-scraper-quickstart"
	const job = p + "/jobs/default-with-webhook"
	const run = job + "/runs/3b9c1f3e-8a6d-4c57-9a0b-6e2f4d1c7a90"
	ctx := context.Background()

	tests := []struct {
		name        string
		call        func(c *Client) (any, error)
		wantMethod  string
		wantURI     string
		wantBody    string // golden file of the request body, "" for none
		status      int
		respond     string // golden file of the response, "" for none
		checkResult func(t *testing.T, got any)
	}{
		{
			name:       "ListJobs",
			call:       func(c *Client) (any, error) { return c.ListJobs(ctx, "ecommerce-scraper-quickstart") },
			wantMethod: "GET", wantURI: p + "/jobs", status: 200, respond: "job_list.json",
			checkResult: func(t *testing.T, got any) {
				if l := got.([]JobListItem); len(l) != 2 || l[1].State != JobStatePaused {
					t.Errorf("list: %+v", l)
				}
			},
		},
		{
			name: "GetJob",
			call: func(c *Client) (any, error) {
				return c.GetJob(ctx, "ecommerce-scraper-quickstart", "default-with-webhook")
			},
			wantMethod: "GET", wantURI: job, status: 200, respond: "job_detail.json",
			checkResult: func(t *testing.T, got any) {
				if j := got.(*Job); j.ID != "default-with-webhook" || j.Sink.Webhook == nil {
					t.Errorf("job: %+v", j)
				}
			},
		},
		{
			name: "CreateJob",
			call: func(c *Client) (any, error) {
				return c.CreateJob(ctx, "ecommerce-scraper-quickstart", fullCreateRequest())
			},
			wantMethod: "POST", wantURI: p + "/jobs", wantBody: "create_job_request_full.json", status: 201, respond: "create_job_response.json",
			checkResult: func(t *testing.T, got any) {
				if r := got.(*CreateJobResponse); r.ID != "my-awesome-job" || r.Message != "created" {
					t.Errorf("create: %+v", r)
				}
			},
		},
		{
			name: "CreateJob seed example",
			call: func(c *Client) (any, error) {
				return c.CreateJob(ctx, "ecommerce-scraper-quickstart", seedCreateRequest())
			},
			wantMethod: "POST", wantURI: p + "/jobs", wantBody: "create_job_request_seed.json", status: 201, respond: "create_job_response.json",
		},
		{
			name: "UpdateJob",
			call: func(c *Client) (any, error) {
				var req UpdateJobRequest
				if err := json.Unmarshal(golden(t, "update_job_request.json"), &req); err != nil {
					return nil, err
				}
				return c.UpdateJob(ctx, "ecommerce-scraper-quickstart", "default-with-webhook", req)
			},
			wantMethod: "PUT", wantURI: job, wantBody: "update_job_request.json", status: 200, respond: "update_job_response.json",
			checkResult: func(t *testing.T, got any) {
				if r := got.(*UpdateJobResponse); r.Message != "updated job successfully" {
					t.Errorf("update: %+v", r)
				}
			},
		},
		{
			name: "UpdateJob clearing optional fields",
			call: func(c *Client) (any, error) {
				req := UpdateJobRequest{Payload: []PayloadItem{{APIName: "list", Parameters: json.RawMessage(`{}`)}}}
				return c.UpdateJob(ctx, "ecommerce-scraper-quickstart", "default-with-webhook", req)
			},
			wantMethod: "PUT", wantURI: job, wantBody: "update_job_request_clear.json", status: 200, respond: "update_job_response.json",
		},
		{
			name: "DeleteJob",
			call: func(c *Client) (any, error) {
				return nil, c.DeleteJob(ctx, "ecommerce-scraper-quickstart", "default-with-webhook")
			},
			wantMethod: "DELETE", wantURI: job, status: 204,
		},
		{
			name: "PauseJob",
			call: func(c *Client) (any, error) {
				return nil, c.PauseJob(ctx, "ecommerce-scraper-quickstart", "default-with-webhook")
			},
			wantMethod: "POST", wantURI: job + "/pause", status: 200, respond: "pause_job_response.json",
		},
		{
			name: "ResumeJob",
			call: func(c *Client) (any, error) {
				return nil, c.ResumeJob(ctx, "ecommerce-scraper-quickstart", "default-with-webhook")
			},
			wantMethod: "POST", wantURI: job + "/resume", status: 200, respond: "resume_job_response.json",
		},
		{
			name: "TriggerJob",
			call: func(c *Client) (any, error) {
				return c.TriggerJob(ctx, "ecommerce-scraper-quickstart", "default-with-webhook")
			},
			wantMethod: "POST", wantURI: job + "/trigger", status: 200, respond: "trigger_job_response.json",
			checkResult: func(t *testing.T, got any) {
				if r := got.(*TriggerJobResponse); r.JobRunID != "3b9c1f3e-8a6d-4c57-9a0b-6e2f4d1c7a90" {
					t.Errorf("trigger: %+v", r)
				}
			},
		},
		{
			name: "ListJobRuns with paging and sort",
			call: func(c *Client) (any, error) {
				return c.ListJobRuns(ctx, "ecommerce-scraper-quickstart", "default-with-webhook",
					ListRunsOptions{PageSize: 10, PageNumber: 0, SortBy: "start_time,desc/status,asc"})
			},
			wantMethod: "GET", wantURI: job + "/runs?pageNumber=0&pageSize=10&sortBy=start_time%2Cdesc%2Fstatus%2Casc",
			status: 200, respond: "job_runs.json",
			checkResult: func(t *testing.T, got any) {
				if r := got.(*JobRunList); r.TotalCount != 3 || len(r.JobRuns) != 3 {
					t.Errorf("runs: %+v", r)
				}
			},
		},
		{
			name: "ListJobRuns without options",
			call: func(c *Client) (any, error) {
				return c.ListJobRuns(ctx, "ecommerce-scraper-quickstart", "default-with-webhook", ListRunsOptions{})
			},
			wantMethod: "GET", wantURI: job + "/runs", status: 200, respond: "job_runs.json",
		},
		{
			name: "GetJobRun",
			call: func(c *Client) (any, error) {
				return c.GetJobRun(ctx, "ecommerce-scraper-quickstart", "default-with-webhook", "3b9c1f3e-8a6d-4c57-9a0b-6e2f4d1c7a90")
			},
			wantMethod: "GET", wantURI: run, status: 200, respond: "job_run.json",
			checkResult: func(t *testing.T, got any) {
				if r := got.(*GetJobRunResponse); r.JobRun.Status != JobRunTerminated || r.Results == nil {
					t.Errorf("run: %+v", r)
				}
			},
		},
		{
			name: "TerminateJobRun",
			call: func(c *Client) (any, error) {
				return nil, c.TerminateJobRun(ctx, "ecommerce-scraper-quickstart", "default-with-webhook", "3b9c1f3e-8a6d-4c57-9a0b-6e2f4d1c7a90")
			},
			wantMethod: "POST", wantURI: run + "/terminate", status: 200, respond: "terminate_job_run_response.json",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := newTestServer(t, func(w http.ResponseWriter, r *http.Request) {
				if tc.respond == "" {
					w.WriteHeader(tc.status)
					return
				}
				writeJSON(w, tc.status, string(golden(t, tc.respond)))
			})
			c := newTestClient(t, srv.URL+"/api/v1/workspace", nil)
			got, err := tc.call(c)
			if err != nil {
				t.Fatalf("call: %v", err)
			}
			reqs := srv.Requests()
			if len(reqs) != 1 {
				t.Fatalf("%d requests, want 1", len(reqs))
			}
			r := reqs[0]
			if r.Method != tc.wantMethod || r.URI != tc.wantURI {
				t.Errorf("request %s %s, want %s %s", r.Method, r.URI, tc.wantMethod, tc.wantURI)
			}
			if r.Key != testKey {
				t.Errorf("x-api-key %q", r.Key)
			}
			if tc.wantBody == "" {
				if len(r.Body) != 0 {
					t.Errorf("unexpected body %s", r.Body)
				}
			} else {
				if r.ContentType != "application/json" {
					t.Errorf("Content-Type %q", r.ContentType)
				}
				assertSameJSON(t, r.Body, golden(t, tc.wantBody), false)
			}
			if tc.checkResult != nil {
				tc.checkResult(t, got)
			}
		})
	}
}

func TestPathParamsArePercentEncoded(t *testing.T) {
	srv := newTestServer(t, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, string(golden(t, "job_detail.json")))
	})
	c := newTestClient(t, srv.URL+"/api/v1/workspace/", nil) // trailing slash is fine
	if _, err := c.GetJob(context.Background(), "my project/x", "job?id#1"); err != nil {
		t.Fatal(err)
	}
	want := "/api/v1/workspace/" + testWorkspace + "/projects/my%20project%2Fx/jobs/job%3Fid%231"
	if got := srv.Requests()[0].URI; got != want {
		t.Errorf("URI %s, want %s", got, want)
	}
	for _, bad := range []string{"", ".", ".."} {
		if _, err := c.GetJob(context.Background(), "p", bad); err == nil {
			t.Errorf("job id %q accepted", bad)
		}
	}
	if n := len(srv.Requests()); n != 1 {
		t.Errorf("invalid ids reached the server: %d requests", n)
	}
}

func TestNewValidatesOptions(t *testing.T) {
	tests := []struct {
		name string
		o    Options
		want string
	}{
		{"no workspace", Options{APIKey: "k"}, "workspace id"},
		{"no key", Options{WorkspaceID: "w"}, "API key"},
		{"relative URL", Options{WorkspaceID: "w", APIKey: "k", BaseURL: "/api"}, "absolute"},
		{"ftp URL", Options{WorkspaceID: "w", APIKey: "k", BaseURL: "ftp://x/api"}, "absolute"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want error containing %q", err, tc.want)
			}
		})
	}
	c, err := New(Options{WorkspaceID: "w", APIKey: "k"})
	if err != nil || c.base.String() != DefaultBaseURL || c.pacer != DefaultPacer() {
		t.Errorf("defaults: %v %v", c, err)
	}
}

// TestErrorDecoding answers GetJob with each error and checks the *APIError
// and the helpers. Retries are off so every case is one request.
func TestErrorDecoding(t *testing.T) {
	tests := []struct {
		name      string
		status    int
		header    map[string]string
		body      string
		wantCode  string
		wantCat   string
		wantMsg   string
		wantCorr  string
		retriable bool
		retryAft  time.Duration
		is        []func(error) bool
		isNot     []func(error) bool
	}{
		{
			name: "400 bad-request", status: 400, body: string(golden(t, "error_bad_request.json")),
			wantCode: "bad-request", wantCat: "user", wantMsg: "payload: Required", wantCorr: "6f1c2a9e-0d7b-4a51-8c3e-1b2d3e4f5a6b",
			is: []func(error) bool{IsBadRequest}, isNot: []func(error) bool{IsNotFound, IsConflict, IsRetriable, IsRateLimited, IsAmbiguous},
		},
		{
			name: "401 unauthorized", status: 401, body: string(golden(t, "error_unauthorized.json")),
			wantCode: "unauthorized", wantCat: "user", wantMsg: "Unauthorized", wantCorr: "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
			is: []func(error) bool{IsUnauthorized}, isNot: []func(error) bool{IsBadRequest, IsRetriable},
		},
		{
			name: "404 not-found", status: 404, body: string(golden(t, "error_not_found.json")),
			wantCode: "not-found", wantCat: "user", wantMsg: "Job not found", wantCorr: "1b2c3d4e-5f6a-4b7c-9d8e-0f1a2b3c4d5e",
			is: []func(error) bool{IsNotFound}, isNot: []func(error) bool{IsConflict, IsRetriable},
		},
		{
			name: "409 duplicate", status: 409, body: `{"code":"conflict","category":"user","message":"job exists","retirable":false,"correlationId":"c9"}`,
			wantCode: "conflict", wantCat: "user", wantMsg: "job exists", wantCorr: "c9",
			is: []func(error) bool{IsConflict}, isNot: []func(error) bool{IsBadRequest, IsNotFound},
		},
		{
			name: "400 duplicate id", status: 400, body: `{"code":"bad-request","category":"user","message":"Job with id my-job already exists","retirable":false,"correlationId":"c8"}`,
			wantCode: "bad-request", wantCat: "user", wantMsg: "Job with id my-job already exists", wantCorr: "c8",
			is: []func(error) bool{IsConflict, IsBadRequest},
		},
		{
			name: "429 with Retry-After seconds", status: 429, header: map[string]string{"Retry-After": "7"},
			body:     `{"code":"rate-limited","category":"user","message":"Too many requests","retirable":true,"correlationId":"c7"}`,
			wantCode: "rate-limited", wantCat: "user", wantMsg: "Too many requests", wantCorr: "c7", retriable: true, retryAft: 7 * time.Second,
			is: []func(error) bool{IsRateLimited, IsRetriable}, isNot: []func(error) bool{IsAmbiguous},
		},
		{
			name: "429 with Retry-After date and no body", status: 429,
			header:   map[string]string{"Retry-After": time.Date(2026, 1, 1, 0, 1, 0, 0, time.UTC).Format(http.TimeFormat)},
			wantCode: "http-429", retriable: true, retryAft: time.Minute,
			is: []func(error) bool{IsRateLimited, IsRetriable},
		},
		{
			name: "500 retirable body", status: 500, body: `{"code":"internal-server-error","category":"infrastructure","message":"boom","retirable":true,"correlationId":"c5"}`,
			wantCode: "internal-server-error", wantCat: "infrastructure", wantMsg: "boom", wantCorr: "c5", retriable: true,
			is: []func(error) bool{IsRetriable, IsAmbiguous},
		},
		{
			name: "502 from a proxy, HTML", status: 502, body: "<html>\n<body>Bad   Gateway</body></html>",
			wantCode: "http-502", wantMsg: "<html> <body>Bad Gateway</body></html>", retriable: true,
			is: []func(error) bool{IsRetriable, IsAmbiguous}, isNot: []func(error) bool{IsNotFound, IsBadRequest},
		},
		{
			name: "403 forbidden, empty body", status: 403, wantCode: "http-403",
			is: []func(error) bool{IsUnauthorized}, isNot: []func(error) bool{IsRetriable},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := newTestServer(t, func(w http.ResponseWriter, r *http.Request) {
				for k, v := range tc.header {
					w.Header().Set(k, v)
				}
				writeJSON(w, tc.status, tc.body)
			})
			c := newTestClient(t, srv.URL, func(o *Options) { o.Retry.MaxAttempts = 1 })
			_, err := c.GetJob(context.Background(), "p", "my-job-1")
			var e *APIError
			if !errors.As(err, &e) {
				t.Fatalf("got %T %v, want *APIError", err, err)
			}
			if e.Operation != "GetJob" || e.StatusCode != tc.status || e.Code != tc.wantCode || e.Category != tc.wantCat ||
				e.Message != tc.wantMsg || e.CorrelationID != tc.wantCorr || e.Retriable != tc.retriable || e.RetryAfter != tc.retryAft {
				t.Errorf("got %+v", e)
			}
			for i, f := range tc.is {
				if !f(err) {
					t.Errorf("is[%d] false", i)
				}
			}
			for i, f := range tc.isNot {
				if f(err) {
					t.Errorf("isNot[%d] true", i)
				}
			}
		})
	}
}

func TestErrorDetailsAndMessage(t *testing.T) {
	srv := newTestServer(t, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 400, string(golden(t, "error_bad_request.json")))
	})
	_, err := newTestClient(t, srv.URL, nil).GetJob(context.Background(), "p", "my-job-1")
	e := asAPIError(err)
	assertSameJSON(t, e.Details, []byte(`[{"path":["payload"],"message":"Required"}]`), false)
	want := "intuned: GetJob: 400 bad-request: payload: Required (correlationId 6f1c2a9e-0d7b-4a51-8c3e-1b2d3e4f5a6b)"
	if err.Error() != want {
		t.Errorf("Error() = %q", err.Error())
	}
}

func TestMalformedSuccessBody(t *testing.T) {
	srv := newTestServer(t, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, `{"id": 42`)
	})
	_, err := newTestClient(t, srv.URL, nil).GetJob(context.Background(), "p", "my-job-1")
	if err == nil || !strings.Contains(err.Error(), "decoding 200 response") {
		t.Errorf("got %v", err)
	}
	if n := len(srv.Requests()); n != 1 {
		t.Errorf("%d requests; a bad body is not retried", n)
	}
}

// TestAPIKeyNeverLeaks makes a hostile server echo the key back in every
// place a client could copy it from, and checks errors, logs and metrics.
func TestAPIKeyNeverLeaks(t *testing.T) {
	var logs bytes.Buffer
	var logMu sync.Mutex
	logger := funcr.New(func(prefix, args string) {
		logMu.Lock()
		defer logMu.Unlock()
		fmt.Fprintln(&logs, prefix, args)
	}, funcr.Options{Verbosity: 10})

	srv := newTestServer(t, func(w http.ResponseWriter, r *http.Request) {
		key := r.Header.Get("x-api-key")
		switch {
		case strings.HasSuffix(r.URL.Path, "/json"):
			writeJSON(w, 400, fmt.Sprintf(`{"code":"bad-%s","category":"%s","message":"bad key %s","retirable":false,"details":{"key":%q},"correlationId":"%s"}`, key, key, key, key, key))
		case strings.HasSuffix(r.URL.Path, "/html"):
			writeJSON(w, 500, "<p>key="+key+"</p>")
		case strings.HasSuffix(r.URL.Path, "/hang"):
			<-r.Context().Done()
		default:
			writeJSON(w, 200, `{"id": "`+key+`", "state": 7}`)
		}
	})
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	c := newTestClient(t, srv.URL, func(o *Options) {
		o.Logger = logger
		o.Metrics = m
		o.Retry.MaxAttempts = 2
		o.RequestTimeout = 20 * time.Millisecond
	})
	ctx := context.Background()
	var errs []error
	for _, job := range []string{"json", "html", "hang", "decode"} {
		_, err := c.GetJob(ctx, "p", job)
		errs = append(errs, err)
	}
	// A server that is not there at all: dial errors.
	dead := newTestClient(t, "http://127.0.0.1:1", func(o *Options) { o.Logger = logger; o.Retry.MaxAttempts = 2 })
	_, err = dead.TriggerJob(ctx, "p", "my-job-1")
	errs = append(errs, err)

	for i, err := range errs {
		if err == nil {
			t.Fatalf("call %d did not fail", i)
		}
		text := fmt.Sprintf("%v %+v %#v", err, err, err)
		if e := asAPIError(err); e != nil {
			text += string(e.Details) + e.Message
		}
		if strings.Contains(text, testKey) {
			t.Errorf("error %d leaks the key: %s", i, text)
		}
	}
	if !strings.Contains(errs[0].Error(), "[REDACTED]") {
		t.Errorf("echoed key not redacted: %v", errs[0])
	}
	if strings.Contains(logs.String(), testKey) || logs.Len() == 0 {
		t.Errorf("logs (%d bytes) leak the key:\n%s", logs.Len(), logs.String())
	}
	mfs, _ := reg.Gather()
	if strings.Contains(fmt.Sprint(mfs), testKey) {
		t.Error("metrics leak the key")
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m1, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	// A second set on the same registry shares the collectors.
	m2, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	srv := newTestServer(t, func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			writeJSON(w, 503, `{}`)
			return
		}
		writeJSON(w, 200, string(golden(t, "job_detail.json")))
	})
	c1 := newTestClient(t, srv.URL, func(o *Options) { o.Metrics = m1 })
	c2 := newTestClient(t, srv.URL, func(o *Options) { o.Metrics = m2 })
	if _, err := c1.GetJob(context.Background(), "p", "my-job-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := c2.GetJob(context.Background(), "p", "my-job-1"); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(m1.requests.WithLabelValues("GetJob", "200")); got != 2 {
		t.Errorf("requests{GetJob,200} = %v, want 2", got)
	}
	if got := testutil.ToFloat64(m1.requests.WithLabelValues("GetJob", "503")); got != 1 {
		t.Errorf("requests{GetJob,503} = %v, want 1", got)
	}
	if got := testutil.ToFloat64(m1.retries.WithLabelValues("GetJob", "503")); got != 1 {
		t.Errorf("retries = %v, want 1", got)
	}
	if n := testutil.CollectAndCount(reg, "intuned_client_request_duration_seconds"); n != 1 {
		t.Errorf("latency series = %d", n)
	}
}
