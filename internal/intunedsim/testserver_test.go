package intunedsim

import (
	"context"
	"testing"
	"time"
)

// The package's own tests cannot import simtest (it imports this package),
// so they have these two helpers in the same shape.

// TestServer is the simulator the package's tests talk to over HTTP.
type TestServer = LoopbackServer

// NewTestServer starts a simulator for tb, closed when the test ends.
func NewTestServer(tb testing.TB, opts Options) *TestServer {
	tb.Helper()
	s, err := StartLoopback(opts)
	if err != nil {
		tb.Fatalf("intunedsim: %v", err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	return s
}

// WaitIdleT is WaitIdle with a 30 s limit that fails the test on timeout.
func (s *LoopbackServer) WaitIdleT(tb testing.TB) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.WaitIdle(ctx); err != nil {
		tb.Fatalf("intunedsim: background work did not settle: %v", err)
	}
}
