package intuned

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// runOnFakeClock runs fn in workers goroutines and moves the fake clock
// forward only when every unfinished worker is asleep on it, so simulated
// minutes pass without real waiting and nothing happens "between" ticks.
func runOnFakeClock(t *testing.T, clock *fakeClock, workers int, fn func(worker int)) {
	t.Helper()
	var active atomic.Int32
	active.Store(int32(workers))
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer active.Add(-1)
			fn(w)
		}()
	}
	deadline := time.Now().Add(time.Minute) // a guard against a hung test, not a measurement
	for active.Load() > 0 {
		if time.Now().After(deadline) {
			t.Fatal("workers did not finish")
		}
		if n := active.Load(); n > 0 && clock.Sleepers() == int(n) {
			clock.AdvanceToNext()
			continue
		}
		time.Sleep(50 * time.Microsecond)
	}
	wg.Wait()
}

// maxInWindow returns the largest number of times that fall into any
// half-open window [t, t+w).
func maxInWindow(times []time.Time, w time.Duration) int {
	ts := append([]time.Time(nil), times...)
	sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
	best, j := 0, 0
	for i := range ts {
		for ts[i].Sub(ts[j]) >= w {
			j++
		}
		best = max(best, i-j+1)
	}
	return best
}

func TestPacerNeverExceedsLimitInAnyWindow(t *testing.T) {
	clock := newFakeClock()
	p := NewPacer(PacerOptions{Clock: clock}) // 20 per minute + 2 s slack
	start := clock.Now()

	const hot, cold = "api/ws/projects/p/jobs/hot", "api/ws/projects/p/jobs/cold"
	var mu sync.Mutex
	grants := map[string][]time.Time{}
	// 10 workers x 12 requests on one path, 3 x 12 on another.
	runOnFakeClock(t, clock, 13, func(w int) {
		path := hot
		if w >= 10 {
			path = cold
		}
		for range 12 {
			if _, err := p.Wait(context.Background(), path, 0); err != nil {
				t.Error(err)
				return
			}
			now := clock.Now()
			mu.Lock()
			grants[path] = append(grants[path], now)
			mu.Unlock()
		}
	})

	if len(grants[hot]) != 120 || len(grants[cold]) != 36 {
		t.Fatalf("grants: hot %d, cold %d", len(grants[hot]), len(grants[cold]))
	}
	for path, ts := range grants {
		// The promise: never more than 20 in any 60 s window (sliding, hence
		// also fixed). The slack makes it hold for 62 s windows as well.
		if n := maxInWindow(ts, time.Minute); n > 20 {
			t.Errorf("%s: %d requests in one 60 s window", path, n)
		}
		if n := maxInWindow(ts, 62*time.Second); n > 20 {
			t.Errorf("%s: %d requests in one 62 s window", path, n)
		}
	}
	// And it is not slower than needed: 120 requests are 6 batches of 20,
	// the last one starting 5 spans after the first.
	if last := grants[hot][len(grants[hot])-1].Sub(start); last > 5*62*time.Second {
		t.Errorf("hot path took %v of clock time, want <= %v", last, 5*62*time.Second)
	}
	if last := grants[cold][len(grants[cold])-1].Sub(start); last > 62*time.Second {
		t.Errorf("cold path took %v; it must not be slowed by the hot path", last)
	}
}

// TestPacerIsNotATokenBucket: 20 at t=0 and 20 more wanted at t=59 s. A
// token bucket (burst 20, 20/min) would let ~19 of the second batch through
// before t=60 s; the pacer holds all of them until the first batch has left
// the window.
func TestPacerIsNotATokenBucket(t *testing.T) {
	clock := newFakeClock()
	p := NewPacer(PacerOptions{Clock: clock, Slack: -1}) // no slack: exact 60 s window
	t0 := clock.Now()
	for range 20 {
		if d, _ := p.Wait(context.Background(), "x", 0); d != 0 {
			t.Fatalf("first batch waited %v", d)
		}
	}
	clock.Advance(59 * time.Second)
	var mu sync.Mutex
	var second []time.Time
	runOnFakeClock(t, clock, 20, func(int) {
		p.Wait(context.Background(), "x", 0)
		mu.Lock()
		second = append(second, clock.Now())
		mu.Unlock()
	})
	for _, g := range second {
		if g.Sub(t0) < time.Minute {
			t.Fatalf("a request of the second batch went at %v", g.Sub(t0))
		}
	}
}

func TestPacerBlock(t *testing.T) {
	clock := newFakeClock()
	p := NewPacer(PacerOptions{Clock: clock})
	p.Block("a", 30*time.Second)
	p.Block("a", 10*time.Second) // a shorter block does not shorten it

	if d, _ := p.Wait(context.Background(), "b", 0); d != 0 {
		t.Errorf("other path waited %v", d)
	}
	var waited time.Duration
	runOnFakeClock(t, clock, 1, func(int) { waited, _ = p.Wait(context.Background(), "a", 0) })
	if waited != 30*time.Second {
		t.Errorf("blocked path waited %v, want 30s", waited)
	}
}

func TestPacerCancelRecordsNothing(t *testing.T) {
	clock := newFakeClock()
	p := NewPacer(PacerOptions{Clock: clock, Limit: 1})
	p.Wait(context.Background(), "x", 0)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := p.Wait(ctx, "x", 0)
		done <- err
	}()
	for clock.Sleepers() == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; err != context.Canceled {
		t.Fatalf("got %v", err)
	}
	// The cancelled waiter took no slot: after the window one request goes.
	clock.Advance(62 * time.Second)
	if d, _ := p.Wait(context.Background(), "x", 0); d != 0 {
		t.Errorf("waited %v after the window", d)
	}
}

func TestPacerMaxWait(t *testing.T) {
	clock := newFakeClock()
	p := NewPacer(PacerOptions{Clock: clock, Limit: 1})
	p.Wait(context.Background(), "x", 0)
	clock.Advance(2 * time.Second)
	_, err := p.Wait(context.Background(), "x", 10*time.Second)
	var te *ThrottledError
	if !errors.As(err, &te) || te.RetryAfter != 60*time.Second {
		t.Fatalf("got %v, want a ThrottledError after 60s", err)
	}
	// Refused waits take no slot: within the limit the next caller goes
	// as soon as the window allows.
	var waited time.Duration
	runOnFakeClock(t, clock, 1, func(int) { waited, _ = p.Wait(context.Background(), "x", time.Minute) })
	if waited != 60*time.Second {
		t.Errorf("waited %v, want 60s", waited)
	}
}

func TestPacerDisabled(t *testing.T) {
	for _, p := range []*Pacer{nil, NewPacer(PacerOptions{Disabled: true, Limit: 1})} {
		p.Block("x", time.Hour)
		for range 100 {
			if d, err := p.Wait(context.Background(), "x", 0); d != 0 || err != nil {
				t.Fatalf("disabled pacer waited %v, %v", d, err)
			}
		}
	}
}

func TestPacerForgetsIdlePaths(t *testing.T) {
	clock := newFakeClock()
	p := NewPacer(PacerOptions{Clock: clock})
	for i := range 3000 {
		p.Wait(context.Background(), fmt.Sprint("job-", i), 0)
		if i%500 == 0 {
			clock.Advance(63 * time.Second)
		}
	}
	p.mu.Lock()
	n := len(p.paths)
	p.mu.Unlock()
	if n > 1600 {
		t.Errorf("pacer remembers %d paths", n)
	}
}

// TestClientsSharingAPacerNeverEarnA429 runs 4 clients (think: one per
// credentials Secret) with 5 concurrent callers each against a server that
// enforces 20 requests per sliding 60 s per path and answers 429 beyond it.
func TestClientsSharingAPacerNeverEarnA429(t *testing.T) {
	clock := newFakeClock()
	pacer := NewPacer(PacerOptions{Clock: clock})

	var mu sync.Mutex
	arrivals := map[string][]time.Time{}
	var rejected atomic.Int32
	srv := newTestServer(t, func(w http.ResponseWriter, r *http.Request) {
		now := clock.Now()
		mu.Lock()
		ts := arrivals[r.URL.Path]
		recent := 0
		for _, a := range ts {
			if now.Sub(a) < time.Minute {
				recent++
			}
		}
		if recent >= 20 {
			mu.Unlock()
			rejected.Add(1)
			w.Header().Set("Retry-After", "60")
			writeJSON(w, 429, `{"code":"rate-limited","category":"user","message":"slow down","retirable":true,"correlationId":"c"}`)
			return
		}
		arrivals[r.URL.Path] = append(ts, now)
		mu.Unlock()
		writeJSON(w, 200, okJob)
	})

	var clients []*Client
	for range 4 {
		clients = append(clients, newTestClient(t, srv.URL, func(o *Options) {
			o.Pacer, o.Clock = pacer, clock
			o.Retry.MaxWait = time.Hour // 190 calls on one path queue for 9 minutes
		}))
	}
	var failures atomic.Int32
	runOnFakeClock(t, clock, 20, func(w int) {
		c := clients[w%4]
		for i := range 10 {
			job := "hot-job"
			if w == 0 && i%2 == 0 {
				job = "other-job"
			}
			if _, err := c.GetJob(context.Background(), "p", job); err != nil {
				failures.Add(1)
			}
		}
	})

	if rejected.Load() != 0 || failures.Load() != 0 {
		t.Errorf("server answered 429 %d times; %d calls failed", rejected.Load(), failures.Load())
	}
	total := 0
	for path, ts := range arrivals {
		total += len(ts)
		if n := maxInWindow(ts, time.Minute); n > 20 {
			t.Errorf("%s: %d requests in a 60 s window", path, n)
		}
	}
	if total != 200 {
		t.Errorf("server saw %d requests, want 200", total)
	}
}
