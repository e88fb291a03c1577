package intunedsim

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"
)

// TestServer is a Server listening on a loopback port, for tests in any
// package. It is closed automatically when the test ends.
type TestServer struct {
	*Server
	// URL is the root, e.g. http://127.0.0.1:41234.
	URL string
	// APIBase is URL + "/api/v1/workspace" (Intuned's base URL).
	APIBase string
	// WorkspaceID and APIKey are the first configured credentials.
	WorkspaceID, APIKey string
}

// NewTestServer starts a simulator for tb over real HTTP (httptest).
// Rate limiting stays on unless opts says otherwise; pass
// RateLimit: RateLimitOff for tests that make many calls quickly.
func NewTestServer(tb testing.TB, opts Options) *TestServer {
	tb.Helper()
	s, err := New(opts)
	if err != nil {
		tb.Fatalf("intunedsim: %v", err)
	}
	hs := httptest.NewServer(s)
	ts := &TestServer{Server: s, URL: hs.URL, APIBase: hs.URL + APIPrefix}
	ws := sortedKeys(s.opts.Workspaces)
	if _, ok := s.opts.Workspaces[DefaultWorkspaceID]; ok {
		ts.WorkspaceID = DefaultWorkspaceID
	} else {
		ts.WorkspaceID = ws[0]
	}
	ts.APIKey = s.opts.Workspaces[ts.WorkspaceID]
	tb.Cleanup(func() {
		_ = s.Close()
		hs.Close()
	})
	return ts
}

// WaitIdleT is WaitIdle with a 30 s limit that fails the test on timeout.
func (ts *TestServer) WaitIdleT(tb testing.TB) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := ts.WaitIdle(ctx); err != nil {
		tb.Fatalf("intunedsim: background work did not settle: %v", err)
	}
}
