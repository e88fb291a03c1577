package intunedsim

import (
	"errors"
	"net"
	"net/http"
)

// LoopbackServer is a Server listening on a free loopback port, for tests
// (through internal/intunedsim/simtest) and programs that run the simulator
// in-process.
type LoopbackServer struct {
	*Server
	// URL is the root, e.g. http://127.0.0.1:41234.
	URL string
	// APIBase is URL + APIPrefix (Intuned's base URL).
	APIBase string
	// WorkspaceID and APIKey are the default workspace's credentials when
	// it is configured, otherwise the first workspace's by id.
	WorkspaceID, APIKey string

	http *http.Server
}

// StartLoopback builds a Server from opts and serves it over HTTP on
// 127.0.0.1. Rate limiting stays on unless opts says otherwise.
func StartLoopback(opts Options) (*LoopbackServer, error) {
	s, err := New(opts)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	url := "http://" + ln.Addr().String()
	ls := &LoopbackServer{Server: s, URL: url, APIBase: url + APIPrefix, http: &http.Server{Handler: s}}
	ls.WorkspaceID = DefaultWorkspaceID
	if _, ok := s.opts.Workspaces[DefaultWorkspaceID]; !ok {
		ls.WorkspaceID = sortedKeys(s.opts.Workspaces)[0]
	}
	ls.APIKey = s.opts.Workspaces[ls.WorkspaceID]
	go func() { _ = ls.http.Serve(ln) }()
	return ls, nil
}

// Close stops the simulator's background work and the HTTP server.
func (ls *LoopbackServer) Close() error {
	return errors.Join(ls.Server.Close(), ls.http.Close())
}
