package intunedsim

import (
	"container/heap"
	"sync"
	"time"
)

// Clock is the simulator's notion of time. Everything Intuned-visible
// (timestamps, schedules, run durations, sink retry delays) is read from and
// scheduled on it, so tests can swap in a FakeClock and step it.
type Clock interface {
	Now() time.Time
	// AfterFunc calls f once, in its own goroutine or (for FakeClock) in the
	// goroutine that advances the clock, after d of simulated time.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is the handle returned by Clock.AfterFunc.
type Timer interface {
	// Stop prevents the callback from running; it reports whether it did so.
	Stop() bool
}

// ScaledClock is a real-time clock that runs Scale times faster than the wall
// clock: with Scale 60 one simulated minute passes per real second. Simulated
// time starts at the wall-clock time of creation.
type ScaledClock struct {
	scale     float64
	realStart time.Time
}

// NewScaledClock returns a ScaledClock; scale <= 0 means 1.
func NewScaledClock(scale float64) *ScaledClock {
	if scale <= 0 {
		scale = 1
	}
	return &ScaledClock{scale: scale, realStart: time.Now()}
}

// Now returns the simulated time.
func (c *ScaledClock) Now() time.Time {
	elapsed := time.Since(c.realStart)
	return c.realStart.Add(time.Duration(float64(elapsed) * c.scale))
}

// AfterFunc waits d/scale of real time.
func (c *ScaledClock) AfterFunc(d time.Duration, f func()) Timer {
	return time.AfterFunc(time.Duration(float64(d)/c.scale), f)
}

// FakeClock only moves when told to. Timers fire synchronously, in deadline
// order, inside Advance (or Server.Advance, which also waits for the
// simulator's background work to settle between timers).
type FakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers timerHeap
	seq    int64
}

// NewFakeClock returns a FakeClock set to start (UTC).
func NewFakeClock(start time.Time) *FakeClock {
	return &FakeClock{now: start.UTC()}
}

// Now returns the fake time.
func (c *FakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// AfterFunc registers f to run when the clock reaches Now()+d.
func (c *FakeClock) AfterFunc(d time.Duration, f func()) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	t := &fakeTimer{clock: c, when: c.now.Add(d), seq: c.seq, f: f, index: -1}
	heap.Push(&c.timers, t)
	return t
}

// Advance moves the clock forward by d, running every timer that falls due
// (including timers those callbacks register) in deadline order.
func (c *FakeClock) Advance(d time.Duration) {
	target := c.Now().Add(d)
	for c.fireNext(target) {
	}
	c.setAtLeast(target)
}

// Pending reports how many timers are waiting.
func (c *FakeClock) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// fireNext runs the earliest timer due at or before target, moving the clock
// to its deadline first. It reports whether a timer ran.
func (c *FakeClock) fireNext(target time.Time) bool {
	c.mu.Lock()
	if len(c.timers) == 0 || c.timers[0].when.After(target) {
		c.mu.Unlock()
		return false
	}
	t := heap.Pop(&c.timers).(*fakeTimer)
	if t.when.After(c.now) {
		c.now = t.when
	}
	c.mu.Unlock()
	t.f()
	return true
}

func (c *FakeClock) setAtLeast(target time.Time) {
	c.mu.Lock()
	if target.After(c.now) {
		c.now = target
	}
	c.mu.Unlock()
}

type fakeTimer struct {
	clock *FakeClock
	when  time.Time
	seq   int64
	f     func()
	index int
}

func (t *fakeTimer) Stop() bool {
	c := t.clock
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.index < 0 {
		return false
	}
	heap.Remove(&c.timers, t.index)
	return true
}

// timerHeap orders timers by deadline, then by creation order so that timers
// due at the same instant fire in the order they were set.
type timerHeap []*fakeTimer

func (h timerHeap) Len() int { return len(h) }
func (h timerHeap) Less(i, j int) bool {
	if !h[i].when.Equal(h[j].when) {
		return h[i].when.Before(h[j].when)
	}
	return h[i].seq < h[j].seq
}
func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}
func (h *timerHeap) Push(x any) {
	t := x.(*fakeTimer)
	t.index = len(*h)
	*h = append(*h, t)
}
func (h *timerHeap) Pop() any {
	old := *h
	n := len(old)
	t := old[n-1]
	old[n-1] = nil
	t.index = -1
	*h = old[:n-1]
	return t
}
