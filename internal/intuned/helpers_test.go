package intuned

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"sync"
	"testing"
	"time"
)

// golden reads testdata/name.
func golden(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// jsonValue decodes JSON into a generic value, keeping numbers as their exact
// text. With withoutNulls, object members whose value is null are removed: the
// API treats a null optional field like an absent one.
func jsonValue(t testing.TB, b []byte, withoutNulls bool) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("invalid JSON %s: %v", b, err)
	}
	if withoutNulls {
		v = dropNulls(v)
	}
	return v
}

// assertSameJSON fails unless got and want are the same JSON document
// (member order and whitespace aside).
func assertSameJSON(t testing.TB, got, want []byte, withoutNulls bool) {
	t.Helper()
	g, w := jsonValue(t, got, withoutNulls), jsonValue(t, want, withoutNulls)
	if !reflect.DeepEqual(g, w) {
		t.Errorf("JSON differs\n got: %s\nwant: %s", compact(got), compact(want))
	}
}

func compact(b []byte) string {
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return string(b)
	}
	return buf.String()
}

// fakeClock is a Clock that only moves when the test says so. Sleepers
// counts goroutines blocked in After, so a test can advance time exactly when
// every worker is waiting (no real waiting anywhere).
type fakeClock struct {
	mu       sync.Mutex
	now      time.Time
	sleepers []fakeSleeper
}

type fakeSleeper struct {
	when time.Time
	ch   chan time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeClock) After(d time.Duration) <-chan time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- f.now
		return ch
	}
	f.sleepers = append(f.sleepers, fakeSleeper{f.now.Add(d), ch})
	return ch
}

func (f *fakeClock) Sleepers() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.sleepers)
}

// AdvanceToNext moves time to the earliest sleeper's deadline and wakes every
// sleeper due by then.
func (f *fakeClock) AdvanceToNext() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.sleepers) == 0 {
		return
	}
	sort.Slice(f.sleepers, func(i, j int) bool { return f.sleepers[i].when.Before(f.sleepers[j].when) })
	f.now = f.sleepers[0].when
	i := 0
	for i < len(f.sleepers) && !f.sleepers[i].when.After(f.now) {
		f.sleepers[i].ch <- f.now
		i++
	}
	f.sleepers = f.sleepers[i:]
}

// Advance moves time forward by d, waking sleepers due by then.
func (f *fakeClock) Advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
	rest := f.sleepers[:0]
	for _, s := range f.sleepers {
		if s.when.After(f.now) {
			rest = append(rest, s)
			continue
		}
		s.ch <- f.now
	}
	f.sleepers = rest
}

// instantClock is a Clock whose sleeps return at once and move its time
// forward by the slept duration. Single-caller tests use it to see how long
// the client would have waited without waiting.
type instantClock struct {
	mu    sync.Mutex
	now   time.Time
	slept []time.Duration
}

func newInstantClock() *instantClock {
	return &instantClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *instantClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *instantClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(max(d, 0))
	c.slept = append(c.slept, d)
	ch := make(chan time.Time, 1)
	ch <- c.now
	return ch
}
