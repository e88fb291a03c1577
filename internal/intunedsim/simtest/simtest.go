// Package simtest starts the simulator for tests of other packages. Only
// tests import it: it links testing, which programs must not.
package simtest

import (
	"context"
	"testing"
	"time"

	"github.com/intuned-operator/intuned-operator/internal/intunedsim"
)

// New starts a simulator on a loopback port, closed when the test ends.
// Pass RateLimit: intunedsim.RateLimitOff for tests that make many calls
// quickly.
func New(tb testing.TB, opts intunedsim.Options) *intunedsim.LoopbackServer {
	tb.Helper()
	s, err := intunedsim.StartLoopback(opts)
	if err != nil {
		tb.Fatalf("intunedsim: %v", err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	return s
}

// WaitIdle is Server.WaitIdle with a 30 s limit that fails the test on
// timeout.
func WaitIdle(tb testing.TB, s *intunedsim.LoopbackServer) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.WaitIdle(ctx); err != nil {
		tb.Fatalf("intunedsim: background work did not settle: %v", err)
	}
}
