package intuned

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// action is one scripted server answer.
type action struct {
	status     int
	retryAfter string
	body       string
	hang       bool // never answer: the client's per-attempt timeout fires
	reset      bool // read the request, then drop the connection
}

// scriptServer answers the n-th request with script[n] (the last entry
// repeats) and records the client clock at each arrival.
type scriptServer struct {
	*testServer
	mu       sync.Mutex
	arrivals []time.Time
}

func newScriptServer(t *testing.T, clock Clock, script []action) *scriptServer {
	s := &scriptServer{}
	s.testServer = newTestServer(t, func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		n := len(s.arrivals)
		s.arrivals = append(s.arrivals, clock.Now())
		s.mu.Unlock()
		a := script[min(n, len(script)-1)]
		switch {
		case a.hang:
			<-r.Context().Done()
		case a.reset:
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
		default:
			if a.retryAfter != "" {
				w.Header().Set("Retry-After", a.retryAfter)
			}
			body := a.body
			if body == "" && a.status >= 400 {
				body = `{"code":"err-` + strconv.Itoa(a.status) + `","category":"infrastructure","message":"scripted","retirable":false,"correlationId":"c"}`
			}
			if a.status == 204 {
				w.WriteHeader(204)
				return
			}
			writeJSON(w, a.status, body)
		}
	})
	return s
}

func (s *scriptServer) Arrivals() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Time(nil), s.arrivals...)
}

// retryClient has pacing on (so Retry-After blocks apply) on an instant
// clock, a short attempt timeout and no connection reuse, so every attempt
// is a fresh connection and the server's count is exactly the client's.
func retryClient(t *testing.T, url string, clock Clock) *Client {
	return newTestClient(t, url, func(o *Options) {
		o.Clock = clock
		o.Pacer = NewPacer(PacerOptions{Clock: clock})
		o.RequestTimeout = 100 * time.Millisecond
		o.HTTPClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	})
}

var (
	getJob = func(c *Client) error {
		_, err := c.GetJob(context.Background(), "p", "my-job-1")
		return err
	}
	createJob = func(c *Client) error {
		_, err := c.CreateJob(context.Background(), "p", seedCreateRequest())
		return err
	}
	triggerJob = func(c *Client) error {
		_, err := c.TriggerJob(context.Background(), "p", "my-job-1")
		return err
	}
	updateJob = func(c *Client) error {
		_, err := c.UpdateJob(context.Background(), "p", "my-job-1", UpdateJobRequest{})
		return err
	}
	deleteJob = func(c *Client) error { return c.DeleteJob(context.Background(), "p", "my-job-1") }
)

const okJob = `{"id":"my-job-1","configuration":{},"created_at":"2026-01-01T00:00:00Z","state":"ACTIVE","projectId":"x"}`

func TestRetries(t *testing.T) {
	tests := []struct {
		name      string
		call      func(*Client) error
		script    []action
		wantReqs  int
		wantErr   func(error) bool // nil: success expected
		wantGapAt time.Duration    // minimum clock gap between request 1 and 2
	}{
		{name: "GET 503, 503, 200", call: getJob,
			script:   []action{{status: 503}, {status: 503}, {status: 200, body: okJob}},
			wantReqs: 3},
		{name: "GET 429 with Retry-After seconds waits it out", call: getJob,
			script:   []action{{status: 429, retryAfter: "30"}, {status: 200, body: okJob}},
			wantReqs: 2, wantGapAt: 30 * time.Second},
		{name: "GET 503 with Retry-After date waits it out", call: getJob,
			script: []action{
				{status: 503, retryAfter: time.Date(2026, 1, 1, 0, 1, 30, 0, time.UTC).Format(http.TimeFormat)},
				{status: 200, body: okJob}},
			wantReqs: 2, wantGapAt: 90 * time.Second},
		{name: "GET 500 forever gives up after MaxAttempts", call: getJob,
			script:   []action{{status: 500}},
			wantReqs: 4, wantErr: func(err error) bool { return asAPIError(err).StatusCode == 500 }},
		{name: "GET timeout, then 200", call: getJob,
			script:   []action{{hang: true}, {status: 200, body: okJob}},
			wantReqs: 2},
		{name: "GET connection reset, then 200", call: getJob,
			script:   []action{{reset: true}, {status: 200, body: okJob}},
			wantReqs: 2},
		{name: "GET 404 is not retried", call: getJob,
			script:   []action{{status: 404}},
			wantReqs: 1, wantErr: IsNotFound},
		{name: "GET Retry-After beyond MaxWait returns to the caller", call: getJob,
			script:   []action{{status: 429, retryAfter: "600"}, {status: 200, body: okJob}},
			wantReqs: 1, wantErr: func(err error) bool { return IsRateLimited(err) && asAPIError(err).RetryAfter == 10*time.Minute }},
		{name: "PUT 502, then 200", call: updateJob,
			script:   []action{{status: 502}, {status: 200, body: `{"id":"my-job-1","message":"updated job successfully"}`}},
			wantReqs: 2},
		{name: "DELETE timeout, then 204", call: deleteJob,
			script:   []action{{hang: true}, {status: 204}},
			wantReqs: 2},
		{name: "create 429 was rejected, so it is retried", call: createJob,
			script:   []action{{status: 429, retryAfter: "5"}, {status: 201, body: `{"id":"default-with-webhook","message":"created"}`}},
			wantReqs: 2, wantGapAt: 5 * time.Second},
		{name: "create 500 is ambiguous: not retried", call: createJob,
			script:   []action{{status: 500}, {status: 201}},
			wantReqs: 1, wantErr: IsAmbiguous},
		{name: "create 503 is ambiguous: not retried", call: createJob,
			script:   []action{{status: 503, retryAfter: "1"}, {status: 201}},
			wantReqs: 1, wantErr: IsAmbiguous},
		{name: "create timeout is ambiguous: not retried", call: createJob,
			script:   []action{{hang: true}, {status: 201}},
			wantReqs: 1, wantErr: IsAmbiguous},
		{name: "trigger connection reset after sending: not retried", call: triggerJob,
			script:   []action{{reset: true}, {status: 200, body: `{"jobRunId":"r","message":"Triggered"}`}},
			wantReqs: 1, wantErr: IsAmbiguous},
		{name: "trigger 502: not retried", call: triggerJob,
			script:   []action{{status: 502}, {status: 200}},
			wantReqs: 1, wantErr: func(err error) bool { return IsAmbiguous(err) && IsRetriable(err) }},
		{name: "trigger 429: retried", call: triggerJob,
			script:   []action{{status: 429}, {status: 429}, {status: 200, body: `{"jobRunId":"r","message":"Triggered"}`}},
			wantReqs: 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clock := newInstantClock()
			srv := newScriptServer(t, clock, tc.script)
			err := tc.call(retryClient(t, srv.URL, clock))
			switch {
			case tc.wantErr == nil && err != nil:
				t.Errorf("unexpected error: %v", err)
			case tc.wantErr != nil && (err == nil || !tc.wantErr(err)):
				t.Errorf("error %v does not match", err)
			}
			arr := srv.Arrivals()
			if len(arr) != tc.wantReqs {
				t.Errorf("server got %d requests, want %d", len(arr), tc.wantReqs)
			}
			if tc.wantGapAt > 0 && len(arr) > 1 && arr[1].Sub(arr[0]) < tc.wantGapAt {
				t.Errorf("retry came %v after the first request, want at least %v", arr[1].Sub(arr[0]), tc.wantGapAt)
			}
		})
	}
}

// TestTriggerRetriedWhenNeverSent: a dial error means the request never left,
// so even a trigger is retried, and the server sees exactly one.
func TestTriggerRetriedWhenNeverSent(t *testing.T) {
	clock := newInstantClock()
	srv := newScriptServer(t, clock, []action{{status: 200, body: `{"jobRunId":"r1","message":"Triggered"}`}})
	var dials atomic.Int32
	var d net.Dialer
	tr := &http.Transport{DisableKeepAlives: true, DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		if dials.Add(1) <= 2 {
			return nil, &net.OpError{Op: "dial", Net: network, Err: syscall.ECONNREFUSED}
		}
		return d.DialContext(ctx, network, addr)
	}}
	c := newTestClient(t, srv.URL, func(o *Options) { o.Clock = clock; o.HTTPClient = &http.Client{Transport: tr} })
	res, err := c.TriggerJob(context.Background(), "p", "my-job-1")
	if err != nil || res.JobRunID != "r1" {
		t.Fatalf("trigger: %v %v", res, err)
	}
	if n := len(srv.Arrivals()); n != 1 || dials.Load() != 3 {
		t.Errorf("server got %d triggers after %d dials, want 1 after 3", n, dials.Load())
	}
}

func TestDialErrorIsNotAmbiguous(t *testing.T) {
	c := newTestClient(t, "http://127.0.0.1:1", func(o *Options) { o.Retry.MaxAttempts = 2 })
	_, err := c.CreateJob(context.Background(), "p", seedCreateRequest())
	var te *TransportError
	if !errors.As(err, &te) || te.Sent || IsAmbiguous(err) || !IsRetriable(err) {
		t.Errorf("got %#v", err)
	}
}

// TestRetryAfterBlocksThePath: a 503 with Retry-After on a trigger is not
// retried, but the next call to the same path still waits it out.
func TestRetryAfterBlocksThePath(t *testing.T) {
	clock := newInstantClock()
	srv := newScriptServer(t, clock, []action{{status: 503, retryAfter: "45"}, {status: 200, body: `{"jobRunId":"r","message":"Triggered"}`}})
	c := retryClient(t, srv.URL, clock)
	if err := triggerJob(c); !IsAmbiguous(err) {
		t.Fatalf("first trigger: %v", err)
	}
	if err := triggerJob(c); err != nil {
		t.Fatalf("second trigger: %v", err)
	}
	arr := srv.Arrivals()
	if len(arr) != 2 || arr[1].Sub(arr[0]) < 45*time.Second {
		t.Errorf("arrivals %v: the second trigger did not wait for Retry-After", arr)
	}
}

// TestLongRetryAfterRefusesLaterCalls: after a Retry-After longer than
// MaxWait, the next call on that path is refused by the client itself,
// without reaching the server, and says how long to wait.
func TestLongRetryAfterRefusesLaterCalls(t *testing.T) {
	clock := newInstantClock()
	srv := newScriptServer(t, clock, []action{{status: 429, retryAfter: "600"}, {status: 200, body: okJob}})
	c := retryClient(t, srv.URL, clock)
	if err := getJob(c); RetryAfter(err) != 10*time.Minute {
		t.Fatalf("first call: %v", err)
	}
	err := getJob(c)
	var te *ThrottledError
	if !errors.As(err, &te) || te.Operation != "GetJob" || !IsRateLimited(err) || !IsRetriable(err) || IsAmbiguous(err) {
		t.Fatalf("second call: %#v", err)
	}
	if RetryAfter(err) != 10*time.Minute {
		t.Errorf("RetryAfter = %v", RetryAfter(err))
	}
	if n := len(srv.Arrivals()); n != 1 {
		t.Errorf("server got %d requests, want 1", n)
	}
	// Other paths are not affected.
	if err := triggerJob(c); err != nil {
		t.Errorf("other path: %v", err)
	}
}

// TestRetryAfterWithoutPacer: Retry-After is honoured even with pacing off.
func TestRetryAfterWithoutPacer(t *testing.T) {
	clock := newInstantClock()
	srv := newScriptServer(t, clock, []action{{status: 429, retryAfter: "20"}, {status: 200, body: okJob}})
	c := newTestClient(t, srv.URL, func(o *Options) { o.Clock = clock }) // pacer disabled
	if err := getJob(c); err != nil {
		t.Fatal(err)
	}
	if arr := srv.Arrivals(); len(arr) != 2 || arr[1].Sub(arr[0]) < 20*time.Second {
		t.Errorf("arrivals %v", arr)
	}
}

// TestRedirectsAreNotFollowed: following a redirect would send x-api-key to
// whatever host the Location names.
func TestRedirectsAreNotFollowed(t *testing.T) {
	var leaked atomic.Int32
	other := newTestServer(t, func(w http.ResponseWriter, r *http.Request) { leaked.Add(1) })
	srv := newTestServer(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/steal", http.StatusFound)
	})
	c := newTestClient(t, srv.URL, func(o *Options) { o.HTTPClient = &http.Client{} })
	err := getJob(c)
	if e := asAPIError(err); e == nil || e.StatusCode != http.StatusFound {
		t.Errorf("got %v, want the 302 as an error", err)
	}
	if leaked.Load() != 0 || len(other.Requests()) != 0 {
		t.Error("the redirect was followed")
	}
}

// TestCancelDuringBackoff: the caller's context ends the back-off sleep.
func TestCancelDuringBackoff(t *testing.T) {
	clock := newFakeClock() // never advanced: the back-off would last forever
	srv := newScriptServer(t, clock, []action{{status: 503}})
	c := newTestClient(t, srv.URL, func(o *Options) { o.Clock = clock })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := c.GetJob(ctx, "p", "my-job-1")
		done <- err
	}()
	for clock.Sleepers() == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	err := <-done
	if asAPIError(err) == nil || asAPIError(err).StatusCode != 503 || len(srv.Arrivals()) != 1 {
		t.Errorf("got %v after %d requests", err, len(srv.Arrivals()))
	}
}

func TestBackoffIsCappedFullJitter(t *testing.T) {
	r := RetryOptions{BaseDelay: time.Second, MaxDelay: 8 * time.Second}.withDefaults()
	for n := 1; n <= 10; n++ {
		limit := min(time.Second<<(n-1), 8*time.Second)
		for range 200 {
			if d := r.backoff(n); d < 0 || d > limit {
				t.Fatalf("backoff(%d) = %v, want within [0, %v]", n, d, limit)
			}
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"", 0, false},
		{"12", 12 * time.Second, true},
		{" 3 ", 3 * time.Second, true},
		{"-5", 0, true},
		{"99999999999999", 24 * time.Hour, true},
		{now.Add(2 * time.Minute).Format(http.TimeFormat), 2 * time.Minute, true},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0, true},
		{"soon", 0, false},
	}
	for _, tc := range tests {
		got, ok := parseRetryAfter(tc.in, now)
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseRetryAfter(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}
