package intunedsim

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"
)

// Defaults used when Options leave a field zero.
const (
	DefaultWorkspaceID = "e95cb8d1-f212-4c04-ace1-c0f77e8708c7"
	DefaultAPIKey      = "sim-api-key"
	// DefaultRateLimit is Intuned's documented 20 requests per minute per URI path.
	DefaultRateLimit = 20
	// RateLimitOff disables rate limiting when used as Options.RateLimit.
	RateLimitOff = -1
	// DefaultMaxConcurrentRequests applies when a job sets no maxConcurrentRequests.
	DefaultMaxConcurrentRequests = 5
	// APIPrefix is the path prefix of every Intuned endpoint.
	APIPrefix = "/api/v1/workspace"
)

// Options configure a Server. The zero value is usable.
type Options struct {
	// Workspaces maps each accepted workspace id to its API key (x-api-key).
	// Empty means {DefaultWorkspaceID: DefaultAPIKey}.
	Workspaces map[string]string
	// Projects, when non-empty, is the closed set of project names; any other
	// project answers 404. Empty means every project name exists.
	Projects []string

	// Clock drives all simulated time. Nil means NewScaledClock(TimeScale).
	// Use a *FakeClock in tests and step it with Server.Advance.
	Clock Clock
	// TimeScale speeds up the default clock (60 = one simulated minute per
	// real second). Ignored when Clock is set.
	TimeScale float64

	// RateLimit is the number of requests per minute allowed per URI path.
	// 0 means DefaultRateLimit; RateLimitOff (any negative value) disables it.
	// The window is real time, never scaled, because clients pace
	// themselves in real time. With a FakeClock the window follows the fake
	// clock, so a refused path stays refused until the test advances time:
	// fake-clock tests usually want RateLimitOff.
	RateLimit int
	// DuplicateCreateStatus is the status answered to a create whose job id
	// exists: 400 (default, bad-request) or 409 (conflict).
	DuplicateCreateStatus int

	// Catalogue configures the default API handlers (`list`, `details`).
	Catalogue CatalogueOptions
	// Handlers adds or replaces API handlers by api name, on top of the
	// default catalogue. An api with no handler fails its Runs.
	Handlers map[string]APIHandler
	// NoDefaultCatalogue leaves out `list` and `details`.
	NoDefaultCatalogue bool

	// Seed makes ids, fault dice and the catalogue's failures reproducible.
	// 0 picks a seed from the wall clock (the catalogue then uses seed 1).
	Seed uint64

	// DateFormat names the DateFormats layout of the timestamps the SDK
	// types as plain strings; "" means "iso" (JavaScript's toISOString).
	DateFormat string

	// OmitDetailPayload leaves payload out of Get Job answers (the SDK's
	// detail schema has it optional); Get Jobs still carries it.
	OmitDetailPayload bool

	// Normalise rewrites fields of every Job written (see NormaliseRule).
	Normalise []NormaliseRule

	// Faults are the initial fault-injection rules (see FaultRule).
	Faults []FaultRule
	// ResultsFaults are the initial results faults (see ResultsFault).
	ResultsFaults []ResultsFault
	// ResultsURLLifetime is how long, in simulated time, the results URL
	// of Get Job Run stays valid; 0 means DefaultResultsURLLifetime.
	ResultsURLLifetime time.Duration
	// S3FailRate is the share of S3 sink "deliveries" that fail (there is no
	// real S3; the outcome is only logged). Lets tests see the S3 retry window.
	S3FailRate float64

	// HTTPClient sends webhook deliveries. Nil means a client that ignores
	// proxy environment variables and has no overall timeout (each attempt
	// uses the sink's timeout, default 5 s).
	HTTPClient *http.Client
	// AdminToken, when set, is required as "Authorization: Bearer <token>"
	// on /_sim/ endpoints.
	AdminToken string
	// Observe, when set, is called after every API request (not admin)
	// with what was asked and answered; a dropped connection or a request
	// left unanswered is not reported. Conformance tests check each exchange against the wire
	// schemas.
	Observe func(Exchange)
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
}

// Server is an in-memory Intuned. It is an http.Handler serving the Intuned
// REST API under /api/v1/workspace/ and the admin API under /_sim/.
// Call Close when done: it stops schedules, runs and delivery retries.
// Deliveries still waiting for a retry stay "pending" in the log.
type Server struct {
	opts    Options
	clock   Clock
	fake    *FakeClock
	log     *slog.Logger
	ids     *idGen
	api     *http.ServeMux
	admin   *http.ServeMux
	rl      *rateLimiter
	client  *http.Client
	baseCtx context.Context
	stop    context.CancelFunc

	mu         sync.Mutex // guards the state below
	jobs       map[projKey]map[string]*job
	deliveries []*Delivery
	calls      map[string]int
	faults     []FaultRule
	s3FailRate float64
	// resultsKey signs results URLs; resultsTTL is their lifetime.
	resultsKey    []byte
	resultsTTL    time.Duration
	resultsFaults []ResultsFault
	// schedulesStalled: scheduled runs come due but do not start (a stuck
	// scheduler); next_run_time stays at the missed time.
	schedulesStalled bool
	// catalogue is the default handler set (nil with NoDefaultCatalogue).
	catalogue *Catalogue
	handlers  map[string]APIHandler
	normalise []NormaliseRule
	closed    bool

	busyMu sync.Mutex
	busy   int
	idle   chan struct{}
}

type projKey struct{ ws, project string }

// New builds a Server from opts.
func New(opts Options) (*Server, error) {
	if len(opts.Workspaces) == 0 {
		opts.Workspaces = map[string]string{DefaultWorkspaceID: DefaultAPIKey}
	}
	if opts.RateLimit == 0 {
		opts.RateLimit = DefaultRateLimit
	}
	if _, ok := DateFormats[opts.DateFormat]; !ok && opts.DateFormat != "" {
		return nil, fmt.Errorf("intunedsim: unknown date format %q (want one of %s)", opts.DateFormat, strings.Join(sortedKeys(DateFormats), ", "))
	}
	if opts.ResultsURLLifetime == 0 {
		opts.ResultsURLLifetime = DefaultResultsURLLifetime
	}
	if opts.DuplicateCreateStatus == 0 {
		opts.DuplicateCreateStatus = http.StatusBadRequest
	}
	seed := opts.Seed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	s := &Server{
		opts:       opts,
		clock:      opts.Clock,
		log:        opts.Logger,
		ids:        newIDGen(seed),
		client:     opts.HTTPClient,
		jobs:       map[projKey]map[string]*job{},
		calls:      map[string]int{},
		faults:     append([]FaultRule(nil), opts.Faults...),
		normalise:  append([]NormaliseRule(nil), opts.Normalise...),
		s3FailRate: opts.S3FailRate,
		resultsKey: newResultsKey(),
		idle:       make(chan struct{}),
	}
	s.SetResultsURLLifetime(opts.ResultsURLLifetime)
	s.resultsFaults = append([]ResultsFault(nil), opts.ResultsFaults...)
	if s.clock == nil {
		s.clock = NewScaledClock(opts.TimeScale)
	}
	s.fake, _ = s.clock.(*FakeClock)
	if s.log == nil {
		s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if s.client == nil {
		// No proxy from the environment: sinks are local or in-cluster.
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.Proxy = nil
		tr.MaxIdleConnsPerHost = 64
		s.client = &http.Client{Transport: tr}
	}
	if opts.RateLimit > 0 {
		s.rl = newRateLimiter(opts.RateLimit, s.realNow)
	}
	s.handlers = map[string]APIHandler{}
	if !opts.NoDefaultCatalogue {
		cat := NewCatalogue(opts.Catalogue, opts.Seed)
		s.catalogue = cat
		s.handlers["list"] = cat.List
		s.handlers["details"] = cat.Details
	}
	for name, h := range opts.Handlers {
		s.handlers[name] = h
	}
	s.baseCtx, s.stop = context.WithCancel(context.Background())
	s.routes()
	return s, nil
}

// Clock returns the simulator's clock.
func (s *Server) Clock() Clock { return s.clock }

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/_sim/") {
		s.serveAdmin(w, r)
		return
	}
	s.serveAPI(w, r)
}

// Close stops every schedule, run and pending delivery retry and waits (up
// to 10 s) for background work to end. It is safe to call more than once.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	for _, jobs := range s.jobs {
		for _, j := range jobs {
			s.stopScheduleLocked(j)
		}
	}
	for _, d := range s.deliveries {
		if d.timer != nil {
			d.timer.Stop() // left "pending": the simulator stopped, not the sink
		}
	}
	s.mu.Unlock()
	s.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return s.WaitIdle(ctx)
}

// busyAdd tracks background work (run workers, delivery attempts) so that
// WaitIdle and Server.Advance can wait for it to settle.
func (s *Server) busyAdd(n int) {
	s.busyMu.Lock()
	defer s.busyMu.Unlock()
	s.busy += n
	if s.busy < 0 {
		panic("intunedsim: busy counter below zero")
	}
	if s.busy == 0 {
		close(s.idle)
		s.idle = make(chan struct{})
	}
}

// WaitIdle blocks until no background work is running: every started API Run
// has finished and every delivery attempt in flight has completed. Work that
// waits on the clock (run durations, retry delays, schedules) does not count.
func (s *Server) WaitIdle(ctx context.Context) error {
	s.busyMu.Lock()
	if s.busy == 0 {
		s.busyMu.Unlock()
		return nil
	}
	ch := s.idle
	s.busyMu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Advance steps a FakeClock by d. Timers fire one at a time in deadline
// order and, before each one and at the end, Advance waits for background
// work to settle, so everything due within d (schedules, run durations,
// delivery retries) has happened when it returns. It panics if the Server
// does not use a *FakeClock.
func (s *Server) Advance(d time.Duration) {
	if s.fake == nil {
		panic("intunedsim: Advance needs Options.Clock to be a *FakeClock")
	}
	ctx := context.Background()
	target := s.fake.Now().Add(d)
	for {
		_ = s.WaitIdle(ctx)
		if !s.fake.fireNext(target) {
			break
		}
	}
	s.fake.setAtLeast(target)
	_ = s.WaitIdle(ctx)
}

// realNow is the time base of rate limiting: real time, or the fake clock.
func (s *Server) realNow() time.Time {
	if s.fake != nil {
		return s.fake.Now()
	}
	return time.Now()
}

// sleep waits d of simulated time. While waiting the caller does not count
// as busy; the timer callback re-marks it busy before waking it so that
// Advance never observes a false idle moment.
func (s *Server) sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	woke := make(chan struct{})
	t := s.clock.AfterFunc(d, func() {
		s.busyAdd(1)
		close(woke)
	})
	// Only now stop counting as busy: the timer is registered, so Advance
	// cannot see an idle moment in which this wake-up is missing.
	s.busyAdd(-1)
	select {
	case <-woke:
		return nil
	case <-ctx.Done():
		if t.Stop() {
			s.busyAdd(1)
		} else {
			<-woke
		}
		return ctx.Err()
	}
}

// Calls returns a copy of the per-endpoint call counters, keyed by method and
// route template, e.g. "POST /api/v1/workspace/{ws}/projects/{p}/jobs".
// Every request that matched a route counts, including those answered with
// an error (fault, 429, 401, 400, 404).
func (s *Server) Calls() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.calls))
	for k, v := range s.calls {
		out[k] = v
	}
	return out
}

// WriteCalls sums the counters of non-GET endpoints.
func (s *Server) WriteCalls() int {
	n := 0
	for k, v := range s.Calls() {
		if !strings.HasPrefix(k, "GET ") {
			n += v
		}
	}
	return n
}

// ResetCalls zeroes the call counters.
func (s *Server) ResetCalls() {
	s.mu.Lock()
	s.calls = map[string]int{}
	s.mu.Unlock()
}

// SetHandler installs or replaces the handler for an api name.
func (s *Server) SetHandler(apiName string, h APIHandler) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if h == nil {
		delete(s.handlers, apiName)
		return
	}
	s.handlers[apiName] = h
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
