package intunedsim

import (
	"bytes"
	"crypto/subtle"
	"io"
	"net/http"
	"slices"
)

// Route templates. The call counters use "METHOD template" as their key.
const (
	routeJobs      = APIPrefix + "/{ws}/projects/{p}/jobs"
	routeJob       = routeJobs + "/{jobId}"
	routePause     = routeJob + "/pause"
	routeResume    = routeJob + "/resume"
	routeTrigger   = routeJob + "/trigger"
	routeRuns      = routeJob + "/runs"
	routeRun       = routeRuns + "/{jobRunId}"
	routeTerminate = routeRun + "/terminate"
)

// reqCtx is what every API handler gets after auth: the resolved workspace
// and project, and the raw request.
type reqCtx struct {
	r         *http.Request
	ws        string
	project   string
	projectID string
	body      []byte
}

// handlerFunc answers with a status and a body to encode, or an error.
// status 204 writes no body.
type handlerFunc func(c *reqCtx) (int, any, *apiError)

func (s *Server) routes() {
	s.api = http.NewServeMux()
	handle := func(method, route string, h handlerFunc) {
		s.api.Handle(method+" "+route, s.wrap(h))
	}
	handle("GET", routeJobs, s.listJobs)
	handle("POST", routeJobs, s.createJob)
	handle("GET", routeJob, s.getJob)
	handle("PUT", routeJob, s.updateJob)
	handle("DELETE", routeJob, s.deleteJob)
	handle("POST", routePause, s.pauseJob)
	handle("POST", routeResume, s.resumeJob)
	handle("POST", routeTrigger, s.triggerJob)
	handle("GET", routeRuns, s.listRuns)
	handle("GET", routeRun, s.getRun)
	handle("POST", routeTerminate, s.terminateRun)
	s.adminRoutes()
}

// serveAPI routes a request; unknown paths and methods get Intuned-style
// 404 bodies rather than the mux's plain text.
func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	// A server stamps its answers with its own clock: with a scaled or
	// fake clock, clients read the simulated time here (intuned.ServerNow).
	w.Header().Set("Date", s.clock.Now().UTC().Format(http.TimeFormat))
	// Handler only peeks; ServeHTTP sets r.Pattern and the path values.
	if _, pattern := s.api.Handler(r); pattern == "" {
		s.writeError(w, notFound("Route "+r.Method+" "+r.URL.Path+" not found"))
		return
	}
	s.api.ServeHTTP(w, r)
}

// Exchange is one API request and the simulator's answer.
type Exchange struct {
	Method, Path string
	// Route is the route template, e.g. "GET /api/v1/workspace/{ws}/projects/{p}/jobs".
	Route        string
	RequestBody  []byte
	Status       int
	ResponseBody []byte
}

// recorder keeps a copy of the answer for Options.Observe.
type recorder struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (rw *recorder) WriteHeader(code int) {
	if rw.status == 0 {
		rw.status = code
	}
	rw.ResponseWriter.WriteHeader(code)
}

func (rw *recorder) Write(b []byte) (int, error) {
	if rw.status == 0 {
		rw.status = http.StatusOK
	}
	rw.body.Write(b)
	return rw.ResponseWriter.Write(b)
}

// wrap applies, in order: call counting, fault injection, rate limiting,
// authentication, project lookup and body reading, then runs h.
func (s *Server) wrap(h handlerFunc) http.Handler {
	inner := s.wrapInner(h)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.opts.Observe == nil {
			inner.ServeHTTP(w, r)
			return
		}
		var reqBody []byte
		if r.Body != nil {
			reqBody, _ = io.ReadAll(io.LimitReader(r.Body, maxBodyBytes+1))
			r.Body = io.NopCloser(bytes.NewReader(reqBody))
		}
		rec := &recorder{ResponseWriter: w}
		inner.ServeHTTP(rec, r) // a dropped connection panics past this
		if rec.status == 0 {
			return // nothing answered (client gone during injected latency)
		}
		s.opts.Observe(Exchange{Method: r.Method, Path: r.URL.Path, Route: r.Pattern,
			RequestBody: reqBody, Status: rec.status, ResponseBody: rec.body.Bytes()})
	})
}

func (s *Server) wrapInner(h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := r.Pattern
		s.mu.Lock()
		s.calls[key]++
		rl, limit := s.rl, s.opts.RateLimit // SetRateLimit may change them
		s.mu.Unlock()

		if s.applyFaults(w, r, key) {
			return
		}
		if rl != nil {
			if ok, wait := rl.allow(r.URL.Path); !ok {
				s.writeError(w, rateLimited(wait, limit))
				return
			}
		}
		ws := r.PathValue("ws")
		key2, known := s.opts.Workspaces[ws]
		got := r.Header.Get("x-api-key")
		if !known || got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(key2)) != 1 {
			s.writeError(w, unauthorized())
			return
		}
		project := r.PathValue("p")
		if len(s.opts.Projects) > 0 && !slices.Contains(s.opts.Projects, project) {
			s.writeError(w, notFound("Project "+project+" not found"))
			return
		}
		c := &reqCtx{r: r, ws: ws, project: project, projectID: nameUUID(ws + "/" + project)}
		if r.Body != nil && (r.Method == http.MethodPost || r.Method == http.MethodPut) {
			b, err := io.ReadAll(io.LimitReader(r.Body, maxBodyBytes+1))
			if err != nil {
				s.writeError(w, badRequest("Could not read request body"))
				return
			}
			if len(b) > maxBodyBytes {
				s.writeError(w, badRequest("Request body too large"))
				return
			}
			c.body = b
		}
		status, body, apiErr := h(c)
		if apiErr != nil {
			s.log.Info("api error", "method", r.Method, "path", r.URL.Path, "status", apiErr.status, "code", apiErr.code)
			s.writeError(w, apiErr)
			return
		}
		s.log.Debug("api call", "method", r.Method, "path", r.URL.Path, "status", status)
		if status == http.StatusNoContent {
			w.WriteHeader(status)
			return
		}
		s.writeJSON(w, status, body)
	})
}
