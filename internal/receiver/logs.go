package receiver

import (
	"log/slog"
	"sync"
	"time"
)

// storeErrorLogEvery is the most often one store error is logged: a store that is down or full
// fails every delivery, and logging each one drowned the log (11.7k ERROR lines in 45 s).
const storeErrorLogEvery = 10 * time.Second

// limitedLog writes at most one line per interval and says how many it left out since the last.
type limitedLog struct {
	log   *slog.Logger
	every time.Duration

	mu         sync.Mutex
	next       time.Time
	suppressed int
}

func newLimitedLog(log *slog.Logger, every time.Duration) *limitedLog {
	return &limitedLog{log: log, every: every}
}

// Error logs msg at error level unless a line was written less than an interval ago.
func (l *limitedLog) Error(msg string, args ...any) {
	now := time.Now()
	l.mu.Lock()
	if now.Before(l.next) {
		l.suppressed++
		l.mu.Unlock()
		return
	}
	n := l.suppressed
	l.suppressed, l.next = 0, now.Add(l.every)
	l.mu.Unlock()
	if n > 0 {
		args = append(args, "suppressedSinceLast", n)
	}
	l.log.Error(msg, args...)
}
