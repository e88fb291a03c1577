package contract

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/intuned-operator/intuned-operator/internal/intuned"
	"github.com/intuned-operator/intuned-operator/internal/intunedsim"
)

// Rate-limit tests run the client's pacer and back-off and the simulator's
// limiter on one FakeClock (see simClock), so waiting a minute takes
// milliseconds and nothing depends on the wall clock.

// fakeEnv is newEnv on a shared fake clock with the simulator's limiter on.
func fakeEnv(t *testing.T, limit int, pacer bool, maxWait time.Duration, mods ...clientOpts) (*env, simClock) {
	t.Helper()
	fc := intunedsim.NewFakeClock(time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC))
	clk := newSimClock(fc)
	e := newEnv(t, intunedsim.Options{Clock: fc, RateLimit: limit, Handlers: map[string]intunedsim.APIHandler{"noop": noop}},
		func(o *intuned.Options) {
			o.Clock = clk
			o.Retry.MaxWait = maxWait
			o.Pacer = intuned.NewPacer(intuned.PacerOptions{Clock: clk, Disabled: !pacer})
			for _, m := range mods {
				m(o)
			}
		})
	return e, clk
}

// drive advances the fake clock one second at a time, but only while all
// `callers` goroutines still running are parked on it, until done is closed.
func drive(t *testing.T, e *env, clk simClock, callers *atomic.Int64, done <-chan struct{}) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-done:
			return
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("calls did not finish")
		}
		if n := callers.Load(); n > 0 && clk.waiting.Load() >= n {
			e.sim.Advance(time.Second)
		} else {
			time.Sleep(100 * time.Microsecond)
		}
	}
}

func noopJob(id string) intuned.CreateJobRequest {
	return intuned.CreateJobRequest{ID: id, Payload: []intuned.PayloadItem{{APIName: "noop", Parameters: params(`{}`)}}}
}

// TestRateLimited429 checks the simulator's 429 is decoded with its
// Retry-After, and that a client told not to wait that long hands it back.
func TestRateLimited429(t *testing.T) {
	e, _ := fakeEnv(t, 2, false, time.Second)
	ctx := ctxT(t)
	if _, err := e.client.CreateJob(ctx, project, noopJob("limited-job")); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := e.client.GetJob(ctx, project, "limited-job"); err != nil {
			t.Fatal(err)
		}
	}
	_, err := e.client.GetJob(ctx, project, "limited-job")
	if !intuned.IsRateLimited(err) || !intuned.IsRetriable(err) || intuned.IsAmbiguous(err) {
		t.Fatalf("err = %v, want a retriable, unambiguous 429", err)
	}
	ae := apiErr(t, err)
	if ae.StatusCode != 429 || ae.CorrelationID == "" || ae.Message == "" || intuned.RetryAfter(err) != time.Minute {
		t.Errorf("429 = %+v, RetryAfter %v (want 1m)", ae, intuned.RetryAfter(err))
	}
	if n := e.sim.Calls()["GET "+routeJob]; n != 3 {
		t.Errorf("GET job sent %d times, want 3 (Retry-After beyond MaxWait is not waited)", n)
	}
}

// TestRateLimitedRetry checks the client waits out Retry-After and retries,
// for idempotent calls and for create/trigger (a 429 means nothing happened,
// so retrying them cannot duplicate).
func TestRateLimitedRetry(t *testing.T) {
	cases := []struct {
		name string
		// use spends the path's budget of 1; call then meets a 429.
		use, call func(context.Context, intuned.API) error
		route     string
		check     func(*testing.T, intuned.API)
	}{
		{
			name: "GetJob",
			use: func(ctx context.Context, c intuned.API) error {
				_, err := c.GetJob(ctx, project, "retry-job-1")
				return err
			},
			call: func(ctx context.Context, c intuned.API) error {
				_, err := c.GetJob(ctx, project, "retry-job-1")
				return err
			},
			route: "GET " + routeJob,
		},
		{
			name: "CreateJob",
			use:  func(ctx context.Context, c intuned.API) error { _, err := c.ListJobs(ctx, project); return err },
			call: func(ctx context.Context, c intuned.API) error {
				_, err := c.CreateJob(ctx, project, noopJob("retry-job-2"))
				return err
			},
			route: "POST " + routeJobs,
			check: func(t *testing.T, c intuned.API) {
				jobs, err := c.ListJobs(context.Background(), project)
				if err != nil || len(jobs) != 2 {
					t.Errorf("jobs after a retried create: %d %v, want 2", len(jobs), err)
				}
			},
		},
		{
			name: "TriggerJob",
			use: func(ctx context.Context, c intuned.API) error {
				_, err := c.TriggerJob(ctx, project, "retry-job-1")
				return err
			},
			call: func(ctx context.Context, c intuned.API) error {
				_, err := c.TriggerJob(ctx, project, "retry-job-1")
				return err
			},
			route: "POST " + routeTrigger,
			check: func(t *testing.T, c intuned.API) {
				l, err := c.ListJobRuns(context.Background(), project, "retry-job-1", intuned.ListRunsOptions{})
				if err != nil || l.TotalCount != 2 {
					t.Errorf("JobRuns after a retried trigger: %v %v, want 2", l, err)
				}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e, fc := fakeEnv(t, 1, false, 5*time.Minute)
			ctx := ctxT(t)
			if _, err := e.client.CreateJob(ctx, project, noopJob("retry-job-1")); err != nil {
				t.Fatal(err)
			}
			e.sim.Advance(time.Minute) // the create's slot on /jobs expires
			if err := tc.use(ctx, e.client); err != nil {
				t.Fatal(err)
			}
			e.sim.ResetCalls()
			start := fc.Now()
			done := make(chan struct{})
			var err error
			var callers atomic.Int64
			callers.Store(1)
			go func() { defer close(done); defer callers.Add(-1); err = tc.call(ctx, e.client) }()
			drive(t, e, fc, &callers, done)
			if err != nil {
				t.Fatalf("call after Retry-After: %v", err)
			}
			if n := e.sim.Calls()[tc.route]; n != 2 {
				t.Errorf("%s sent %d times, want 2 (one 429, one retry)", tc.route, n)
			}
			if waited := fc.Now().Sub(start); waited < time.Minute {
				t.Errorf("retried after %v of simulated time, before Retry-After (1m)", waited)
			}
			e.sim.Advance(time.Minute)
			if tc.check != nil {
				tc.check(t, e.client)
			}
		})
	}
}

// TestPacerNeverEarns429 runs concurrent callers through the client's real
// pacer (20 per minute per path) against the simulator's real limiter (20
// per minute per path): every call succeeds and none is ever answered 429,
// which would show as an extra (retried) request in the simulator's counters.
func TestPacerNeverEarns429(t *testing.T) {
	e, fc := fakeEnv(t, intunedsim.DefaultRateLimit, true, 10*time.Minute)
	ctx := ctxT(t)
	if _, err := e.client.CreateJob(ctx, project, noopJob("paced-job")); err != nil {
		t.Fatal(err)
	}
	e.sim.ResetCalls()
	start := fc.Now()

	const callers, perCaller = 3, 15 // 45 calls on one path: three windows
	var wg sync.WaitGroup
	var running atomic.Int64
	errs := make(chan error, 2*callers*perCaller)
	for range callers {
		wg.Add(2)
		running.Add(2)
		go func() {
			defer wg.Done()
			defer running.Add(-1)
			for range perCaller {
				if _, err := e.client.GetJob(ctx, project, "paced-job"); err != nil {
					errs <- err
				}
			}
		}()
		go func() { // a second path paced independently
			defer wg.Done()
			defer running.Add(-1)
			for range perCaller / 3 {
				if _, err := e.client.ListJobs(ctx, project); err != nil {
					errs <- err
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	drive(t, e, fc, &running, done)
	close(errs)
	for err := range errs {
		t.Errorf("paced call failed: %v", err)
	}
	calls := e.sim.Calls()
	if n := calls["GET "+routeJob]; n != callers*perCaller {
		t.Errorf("GET job sent %d times, want %d: some call was retried after a 429", n, callers*perCaller)
	}
	if n := calls["GET "+routeJobs]; n != callers*(perCaller/3) {
		t.Errorf("GET jobs sent %d times, want %d", n, callers*(perCaller/3))
	}
	// 45 calls at 20 per 62 s need two full spans of simulated time.
	if took := fc.Now().Sub(start); took < 2*time.Minute {
		t.Errorf("45 calls took %v of simulated time: the pacer did not pace", took)
	}
}

// TestServerStricterThanPacer: when Intuned allows fewer requests than the
// pacer expects (here 5 per minute), the client meets 429s, blocks the path
// for every caller for Retry-After, and every call still succeeds.
func TestServerStricterThanPacer(t *testing.T) {
	// Callers woken together compete for the slot the limiter frees, so one
	// may meet several 429s in a row: allow more attempts than the default.
	e, clk := fakeEnv(t, 5, true, 10*time.Minute, func(o *intuned.Options) { o.Retry.MaxAttempts = 20 })
	ctx := ctxT(t)
	if _, err := e.client.CreateJob(ctx, project, noopJob("strict-job")); err != nil {
		t.Fatal(err)
	}
	e.sim.ResetCalls()
	const callers, perCaller = 3, 5
	var wg sync.WaitGroup
	var running atomic.Int64
	errs := make(chan error, callers*perCaller)
	for range callers {
		wg.Add(1)
		running.Add(1)
		go func() {
			defer wg.Done()
			defer running.Add(-1)
			for range perCaller {
				if _, err := e.client.GetJob(ctx, project, "strict-job"); err != nil {
					errs <- err
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	drive(t, e, clk, &running, done)
	close(errs)
	for err := range errs {
		t.Errorf("call failed despite retries: %v", err)
	}
	if n := e.sim.Calls()["GET "+routeJob]; n <= callers*perCaller {
		t.Errorf("GET job sent %d times: expected some 429s and retries", n)
	}
}
