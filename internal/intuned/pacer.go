package intuned

import (
	"context"
	"sync"
	"time"
)

// Intuned allows 20 requests per minute per URI path. "Per minute" could be
// counted by the server in fixed minutes or in a sliding 60 s window; the
// Pacer satisfies both by keeping a log of the send times per path and
// letting a request go only when fewer than Limit requests were sent in the
// last Window+Slack:
//
//   - a token bucket (rate 20/min, burst 20) would not do: it allows 20 at
//     t=0 and 20 more by t=60 s, i.e. 40 in 61 s;
//   - with the log, every interval of length Window+Slack holds at most
//     Limit sends. Proof: take any such interval and its last send g; every
//     other send in it lies within Window+Slack before g, and Wait granted g
//     only when fewer than Limit sends were logged in that span. Any fixed
//     or sliding 60 s server window is shorter than Window+Slack, so it sees
//     at most Limit requests;
//   - Slack (default 2 s) absorbs the difference between when we send and
//     when the server counts: a request delayed in the network by up to
//     Slack more than an earlier one still lands in a different window.
//
// Retries and every client sharing the Pacer go through the same log, and a
// server's Retry-After blocks the path for everyone (Block).

// Clock is the time source of the Pacer and of retry back-off; tests inject
// a fake one so no test ever waits for real.
type Clock interface {
	Now() time.Time
	// After is like time.After.
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// PacerOptions configure a Pacer. Zero values take the defaults.
type PacerOptions struct {
	// Limit is the number of requests allowed per path per Window (default 20).
	Limit int
	// Window is the server's counting window (default 1 minute).
	Window time.Duration
	// Slack is added to Window as a safety margin (default 2 s; set a
	// negative value for none).
	Slack time.Duration
	// Disabled turns pacing off (tests, benchmarks, a simulator without rate
	// limits). Block is then a no-op too; a call that gets a Retry-After
	// still waits it out before its own retry.
	Disabled bool
	// Clock defaults to the real clock.
	Clock Clock
}

// Pacer spaces requests per URI path. One Pacer is meant to be shared by all
// clients in a process (see DefaultPacer); it is safe for concurrent use. A
// nil *Pacer does not pace.
type Pacer struct {
	limit    int
	span     time.Duration // Window + Slack
	disabled bool
	clock    Clock

	mu    sync.Mutex
	paths map[string]*pathLog
}

// pathLog is what the Pacer remembers about one path.
type pathLog struct {
	sent         []time.Time // send times within the last span, oldest first
	blockedUntil time.Time   // from Retry-After
}

// NewPacer returns a Pacer with the given options.
func NewPacer(o PacerOptions) *Pacer {
	if o.Limit <= 0 {
		o.Limit = 20
	}
	if o.Window <= 0 {
		o.Window = time.Minute
	}
	switch {
	case o.Slack == 0:
		o.Slack = 2 * time.Second
	case o.Slack < 0:
		o.Slack = 0
	}
	if o.Clock == nil {
		o.Clock = realClock{}
	}
	return &Pacer{
		limit:    o.Limit,
		span:     o.Window + o.Slack,
		disabled: o.Disabled,
		clock:    o.Clock,
		paths:    map[string]*pathLog{},
	}
}

var defaultPacer = NewPacer(PacerOptions{})

// DefaultPacer returns the process-wide Pacer (20 per minute per path) that
// clients use when Options.Pacer is nil.
func DefaultPacer() *Pacer { return defaultPacer }

// Wait blocks until a request to path may be sent without exceeding the
// limit, records the send, and returns how long it waited. It returns
// ctx.Err() if ctx ends first, and a *ThrottledError at once when maxWait > 0
// and the request could not go within maxWait of the call; nothing is
// recorded then.
func (p *Pacer) Wait(ctx context.Context, path string, maxWait time.Duration) (time.Duration, error) {
	if p == nil || p.disabled {
		return 0, ctx.Err()
	}
	start := p.clock.Now()
	for {
		p.mu.Lock()
		now := p.clock.Now()
		next := p.earliestLocked(path, now)
		if !next.After(now) {
			log := p.paths[path]
			log.sent = append(log.sent, now)
			p.mu.Unlock()
			return now.Sub(start), nil
		}
		p.mu.Unlock()
		if maxWait > 0 && next.Sub(start) > maxWait {
			return now.Sub(start), &ThrottledError{RetryAfter: next.Sub(now)}
		}

		// Sleep, then check again: another caller may have taken the slot,
		// or a Retry-After may have arrived meanwhile.
		select {
		case <-ctx.Done():
			return p.clock.Now().Sub(start), ctx.Err()
		case <-p.clock.After(next.Sub(now)):
		}
	}
}

// Block stops all requests to path for d from now (a server's Retry-After).
func (p *Pacer) Block(path string, d time.Duration) {
	if p == nil || p.disabled {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	until := p.clock.Now().Add(d)
	log := p.logLocked(path)
	if until.After(log.blockedUntil) {
		log.blockedUntil = until
	}
}

// earliestLocked forgets sends older than the span and returns the earliest
// time a request to path may go.
func (p *Pacer) earliestLocked(path string, now time.Time) time.Time {
	log := p.logLocked(path)
	cut := now.Add(-p.span)
	i := 0
	for i < len(log.sent) && !log.sent[i].After(cut) {
		i++
	}
	log.sent = log.sent[i:]

	next := now
	if log.blockedUntil.After(next) {
		next = log.blockedUntil
	}
	if len(log.sent) >= p.limit {
		// The oldest send that would still count must leave the span first.
		if t := log.sent[len(log.sent)-p.limit].Add(p.span); t.After(next) {
			next = t
		}
	}
	return next
}

// logLocked returns the log of path, creating it. When many paths are known
// (Jobs come and go), idle ones are dropped so memory stays bounded.
func (p *Pacer) logLocked(path string) *pathLog {
	if log, ok := p.paths[path]; ok {
		return log
	}
	if len(p.paths) >= 1024 {
		now := p.clock.Now()
		for k, l := range p.paths {
			idle := len(l.sent) == 0 || !l.sent[len(l.sent)-1].After(now.Add(-p.span))
			if idle && !l.blockedUntil.After(now) {
				delete(p.paths, k)
			}
		}
	}
	log := &pathLog{}
	p.paths[path] = log
	return log
}
