package intunedsim

import (
	"sync"
	"time"
)

// rateLimiter enforces N requests per sliding minute per URI path (the
// concrete path, e.g. one job's trigger URL), like Intuned's documented
// "20 requests per minute per URI path". Refused requests do not count.
type rateLimiter struct {
	mu     sync.Mutex
	limit  int
	window time.Duration
	now    func() time.Time
	hits   map[string][]time.Time
}

func newRateLimiter(limit int, now func() time.Time) *rateLimiter {
	return &rateLimiter{limit: limit, window: time.Minute, now: now, hits: map[string][]time.Time{}}
}

// allow records a request for path, or reports how long until one is allowed.
func (l *rateLimiter) allow(path string) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	h := l.hits[path]
	i := 0
	for i < len(h) && !h[i].After(now.Add(-l.window)) {
		i++
	}
	h = h[i:]
	if len(h) >= l.limit {
		l.hits[path] = h
		return false, h[0].Add(l.window).Sub(now)
	}
	l.hits[path] = append(h, now)
	return true, 0
}

func (l *rateLimiter) reset() {
	l.mu.Lock()
	l.hits = map[string][]time.Time{}
	l.mu.Unlock()
}

// SetRateLimit changes the per-path limit from now on (RateLimitOff: none),
// with a fresh window: a benchmark converges many jobs without the limit,
// then restarts the operator against Intuned's real one.
func (s *Server) SetRateLimit(limit int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opts.RateLimit, s.rl = limit, nil
	if limit > 0 {
		s.rl = newRateLimiter(limit, s.realNow)
	}
}
