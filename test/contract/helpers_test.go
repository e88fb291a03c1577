package contract

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/intuned-operator/intuned-operator/internal/testutil/poll"

	"github.com/intuned-operator/intuned-operator/internal/intuned"
	"github.com/intuned-operator/intuned-operator/internal/intunedsim"
	"github.com/intuned-operator/intuned-operator/internal/intunedsim/simtest"
	"github.com/intuned-operator/intuned-operator/internal/testutil/wireschema"
)

// project is the Intuned project every test uses.
const project = "ecommerce-scraper-quickstart"

// Route templates of the simulator's call counters.
const (
	routeJobs      = "/api/v1/workspace/{ws}/projects/{p}/jobs"
	routeJob       = routeJobs + "/{jobId}"
	routeTrigger   = routeJob + "/trigger"
	routeRuns      = routeJob + "/runs"
	routeRun       = routeRuns + "/{jobRunId}"
	routeTerminate = routeRun + "/terminate"
)

// env is one simulator and one client pointed at it over real HTTP.
type env struct {
	sim    *intunedsim.LoopbackServer
	client *intuned.Client
}

// clientOpts adjusts the client options of newEnv.
type clientOpts func(*intuned.Options)

// newEnv starts a simulator (rate limit off unless opts says otherwise) and a
// client with pacing off and millisecond back-off, so tests run in
// milliseconds. Rate-limit tests pass their own pacer and clock.
func newEnv(t *testing.T, simOpts intunedsim.Options, mods ...clientOpts) *env {
	t.Helper()
	if simOpts.RateLimit == 0 {
		simOpts.RateLimit = intunedsim.RateLimitOff
	}
	if simOpts.Seed == 0 {
		simOpts.Seed = 7
	}
	if simOpts.Observe == nil {
		simOpts.Observe = conformance(t)
	}
	sim := simtest.New(t, simOpts)
	o := intuned.Options{
		BaseURL:        sim.APIBase,
		WorkspaceID:    sim.WorkspaceID,
		APIKey:         sim.APIKey,
		Pacer:          intuned.NewPacer(intuned.PacerOptions{Disabled: true}),
		RequestTimeout: 10 * time.Second,
		Retry:          intuned.RetryOptions{BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond},
	}
	for _, m := range mods {
		m(&o)
	}
	c, err := intuned.New(o)
	if err != nil {
		t.Fatalf("intuned.New: %v", err)
	}
	return &env{sim: sim, client: c}
}

// conformance returns an Observe hook that checks, when the test ends,
// every exchange with the simulator against the project's wire schemas
// (internal/testutil/wireschema): every answer, and every create/update body
// the simulator accepted (bodies it refused are the error tests' own
// deliberate mistakes). Unknown keys count as failures.
func conformance(t *testing.T) func(intunedsim.Exchange) {
	var mu sync.Mutex
	var bad []string
	checked := 0
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, b := range bad {
			t.Error(b)
		}
		if checked == 0 && !t.Failed() && !t.Skipped() {
			t.Log("conformance: no exchanges")
		}
	})
	return func(x intunedsim.Exchange) {
		var errs []string
		if s := wireschema.Request(x.Method, x.Path); s != nil && x.Status >= 200 && x.Status < 300 {
			for _, e := range wireschema.Check(s, x.RequestBody) {
				errs = append(errs, "request "+e)
			}
		}
		if s := wireschema.Response(x.Method, x.Path, x.Status); s != nil {
			for _, e := range wireschema.Check(s, x.ResponseBody) {
				errs = append(errs, "response "+e)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		checked++
		for _, e := range errs {
			bad = append(bad, fmt.Sprintf("wire conformance: %s %s -> %d: %s", x.Method, x.Path, x.Status, e))
		}
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func ptr[T any](v T) *T { return &v }

// params is a JSON object for a payload item.
func params(s string) json.RawMessage { return json.RawMessage(s) }

// quickstartJob is the seed guide's quickstart Job: one `list` payload that
// extends the JobRun with one `details` payload per product.
func quickstartJob(id string) intuned.CreateJobRequest {
	return intuned.CreateJobRequest{
		ID:            id,
		Payload:       []intuned.PayloadItem{{APIName: "list", Parameters: params(`{"category":"shoes"}`)}},
		Configuration: intuned.Configuration{},
	}
}

// fullJob sets every optional field, leaving defaults for the server to fill.
func fullJob(id, sinkURL string) intuned.CreateJobRequest {
	r := quickstartJob(id)
	r.Configuration = intuned.Configuration{Retry: &intuned.RetryPolicy{}, MaxConcurrentRequests: ptr(2.0)}
	r.Payload[0].Retry = &intuned.RetryPolicy{MaximumAttempts: ptr(2)}
	r.Schedule = &intuned.Schedule{Intervals: []intuned.Interval{{Every: intuned.Str("1h")}}}
	r.Sink = &intuned.Sink{Webhook: &intuned.WebhookSink{URL: sinkURL, Headers: map[string]string{"Authorization": "Bearer sink-token"}}}
	r.Proxy = ptr("http://user:pass@proxy.example:8080")
	r.AuthSession = &intuned.AuthSession{ID: "auth-session-123"}
	return r
}

// eventually polls cond (poll.Eventually, every 5 ms) until it holds or
// 20 s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := poll.Eventually(ctx, 5*time.Millisecond, what, func(context.Context) (bool, error) { return cond(), nil }); err != nil {
		t.Fatalf("timed out waiting for %s", what)
	}
}

// waitRunDone polls Get Job Run until the JobRun is terminal. Retriable
// errors (injected faults) just mean "ask again".
func waitRunDone(t *testing.T, c intuned.API, jobID, runID string) *intuned.GetJobRunResponse {
	t.Helper()
	var last *intuned.GetJobRunResponse
	eventually(t, "JobRun "+runID+" to finish", func() bool {
		r, err := c.GetJobRun(context.Background(), project, jobID, runID)
		if err != nil {
			if !intuned.IsRetriable(err) {
				t.Fatalf("GetJobRun: %v", err)
			}
			return false
		}
		last = r
		return r.JobRun.Status.Terminal()
	})
	return last
}

// apiErr returns err as *intuned.APIError or fails the test.
func apiErr(t *testing.T, err error) *intuned.APIError {
	t.Helper()
	e, ok := err.(*intuned.APIError)
	if !ok {
		t.Fatalf("want *intuned.APIError, got %T: %v", err, err)
	}
	return e
}

// rawGet fetches an Intuned path with the right key and decodes it loosely,
// to check wire key names the typed client would silently ignore.
func rawGet(t *testing.T, sim *intunedsim.LoopbackServer, path string, out any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, sim.APIBase+"/"+sim.WorkspaceID+"/projects/"+project+path, nil)
	req.Header.Set("x-api-key", sim.APIKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
}

// received is one webhook POST as the sink endpoint saw it.
type received struct {
	Header http.Header
	Body   []byte
}

// sinkEndpoint is a webhook receiver that records every POST and answers 200.
type sinkEndpoint struct {
	*httptest.Server
	mu  sync.Mutex
	got []received
}

func newSinkEndpoint(t *testing.T) *sinkEndpoint {
	s := &sinkEndpoint{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.got = append(s.got, received{Header: r.Header.Clone(), Body: b})
		s.mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *sinkEndpoint) received() []received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]received(nil), s.got...)
}

// gate blocks API handlers until opened, so a test can watch a JobRun mid-way.
type gate struct {
	once sync.Once
	ch   chan struct{}
}

func newGate() *gate { return &gate{ch: make(chan struct{})} }

func (g *gate) open() { g.once.Do(func() { close(g.ch) }) }

func (g *gate) wrap(h intunedsim.APIHandler) intunedsim.APIHandler {
	return func(ctx context.Context, rc intunedsim.RunContext) intunedsim.RunResult {
		select {
		case <-g.ch:
			return h(ctx, rc)
		case <-ctx.Done():
			return intunedsim.RunResult{Error: &intunedsim.RunError{Code: "job-run-terminated", Message: "terminated"}}
		}
	}
}

// noop is an API that completes at once.
func noop(context.Context, intunedsim.RunContext) intunedsim.RunResult {
	return intunedsim.RunResult{Result: map[string]string{"ok": "yes"}}
}

// simClock adapts the simulator's FakeClock to the client's Clock, so the
// client's pacer and back-off and the simulator's rate limiter share one
// time line that only the test moves. waiting counts the client's goroutines
// parked on the clock, so the test advances time only when every caller is
// parked: never while a request is in flight, which would make it arrive
// "seconds" after the pacer let it go (a network delay no real call has).
type simClock struct {
	fc      *intunedsim.FakeClock
	waiting *atomic.Int64
}

func newSimClock(fc *intunedsim.FakeClock) simClock {
	return simClock{fc: fc, waiting: new(atomic.Int64)}
}

func (c simClock) Now() time.Time { return c.fc.Now() }

func (c simClock) After(d time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1) // buffered: an abandoned wait never blocks the clock
	c.waiting.Add(1)
	c.fc.AfterFunc(d, func() {
		c.waiting.Add(-1)
		ch <- c.fc.Now()
	})
	return ch
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
