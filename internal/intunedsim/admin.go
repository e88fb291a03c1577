package intunedsim

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Admin API (/_sim/...). Errors are {"error":{"code","message"}}.

func (s *Server) adminRoutes() {
	m := http.NewServeMux()
	m.HandleFunc("GET /_sim/healthz", func(w http.ResponseWriter, r *http.Request) {
		s.writeJSON(w, 200, map[string]string{"status": "ok"})
	})
	m.HandleFunc("GET /_sim/deliveries", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		s.writeJSON(w, 200, map[string]any{"deliveries": filterDeliveries(s.Deliveries(), q.Get("jobId"), q.Get("jobRunId"), q.Get("outcome"))})
	})
	m.HandleFunc("GET /_sim/results/{file}", s.serveResults)
	m.HandleFunc("GET /_sim/runs", func(w http.ResponseWriter, r *http.Request) {
		s.writeJSON(w, 200, map[string]any{"runs": s.APIRuns(r.URL.Query().Get("jobRunId"))})
	})
	m.HandleFunc("GET /_sim/calls", func(w http.ResponseWriter, r *http.Request) {
		calls := s.Calls()
		total := 0
		for _, v := range calls {
			total += v
		}
		s.writeJSON(w, 200, map[string]any{"calls": calls, "total": total, "writes": s.WriteCalls()})
	})
	m.HandleFunc("DELETE /_sim/calls", func(w http.ResponseWriter, r *http.Request) {
		s.ResetCalls()
		w.WriteHeader(http.StatusNoContent)
	})
	m.HandleFunc("GET /_sim/faults", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		rate := s.s3FailRate
		s.mu.Unlock()
		results := s.ResultsFaults()
		s.writeJSON(w, 200, faultsBody{Rules: s.Faults(), S3FailRate: &rate, Results: &results})
	})
	m.HandleFunc("POST /_sim/faults", func(w http.ResponseWriter, r *http.Request) {
		var body faultsBody
		if !s.decodeAdmin(w, r, &body) {
			return
		}
		for _, f := range body.Rules {
			if f.ErrorRate < 0 || f.ErrorRate > 1 || f.DropRate < 0 || f.DropRate > 1 || f.LatencyMS < 0 || (f.Status != 0 && (f.Status < 400 || f.Status > 599)) {
				adminError(w, 400, "bad-request", "rates must be within 0..1, latencyMs >= 0, status 400..599")
				return
			}
		}
		if body.Results != nil {
			for _, f := range *body.Results {
				if !f.valid() {
					adminError(w, 400, "bad-request", "results faults: corruptLine, truncateLine and times must be >= 0")
					return
				}
			}
			s.SetResultsFaults(*body.Results)
		}
		s.SetFaults(body.Rules)
		if body.S3FailRate != nil {
			s.SetS3FailRate(*body.S3FailRate)
		}
		s.writeJSON(w, 200, faultsBody{Rules: s.Faults(), S3FailRate: body.S3FailRate, Results: body.Results})
	})
	m.HandleFunc("DELETE /_sim/faults", func(w http.ResponseWriter, r *http.Request) {
		s.SetFaults(nil)
		s.SetS3FailRate(0)
		s.SetResultsFaults(nil)
		w.WriteHeader(http.StatusNoContent)
	})
	m.HandleFunc("GET /_sim/settings", func(w http.ResponseWriter, r *http.Request) {
		s.writeJSON(w, 200, s.settings())
	})
	m.HandleFunc("POST /_sim/settings", func(w http.ResponseWriter, r *http.Request) {
		var body settingsBody
		if !s.decodeAdmin(w, r, &body) {
			return
		}
		if body.ResultsURLLifetime != "" {
			d, err := time.ParseDuration(body.ResultsURLLifetime)
			if err != nil || d < time.Second {
				adminError(w, 400, "bad-request", `resultsUrlLifetime must be a Go duration of at least 1s, like "30s"`)
				return
			}
			s.SetResultsURLLifetime(d)
		}
		if body.RunDuration != "" {
			d, err := time.ParseDuration(body.RunDuration)
			if err != nil || d < 0 || s.catalogue == nil {
				adminError(w, 400, "bad-request", `runDuration must be a Go duration of at least 0, like "5m", and needs the default catalogue`)
				return
			}
			s.catalogue.SetRunDuration(d)
		}
		if body.SchedulesStalled != nil {
			s.StallSchedules(*body.SchedulesStalled)
		}
		s.writeJSON(w, 200, s.settings())
	})
	m.HandleFunc("POST /_sim/drift", func(w http.ResponseWriter, r *http.Request) {
		var d DriftRequest
		if !s.decodeAdmin(w, r, &d) {
			return
		}
		if err := s.Drift(d); err != nil {
			status := 400
			if errors.Is(err, ErrJobNotFound) {
				status = 404
			}
			adminError(w, status, "drift-failed", err.Error())
			return
		}
		s.writeJSON(w, 200, map[string]string{"message": "drift applied: " + d.Action})
	})
	m.HandleFunc("POST /_sim/jobruns/{jobRunId}/state", func(w http.ResponseWriter, r *http.Request) {
		var st JobRunState
		if !s.decodeAdmin(w, r, &st) {
			return
		}
		if err := s.SetJobRunState(r.PathValue("jobRunId"), st); err != nil {
			status := 400
			if errors.Is(err, ErrJobNotFound) {
				status = 404
			}
			adminError(w, status, "bad-request", err.Error())
			return
		}
		s.writeJSON(w, 200, st)
	})
	m.HandleFunc("POST /_sim/normalise", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Rules []NormaliseRule `json:"rules"`
		}
		if !s.decodeAdmin(w, r, &body) {
			return
		}
		s.SetNormalise(body.Rules)
		s.writeJSON(w, 200, body)
	})
	m.HandleFunc("GET /_sim/clock", func(w http.ResponseWriter, r *http.Request) {
		s.writeJSON(w, 200, map[string]any{"now": isoTime(s.clock.Now()), "fake": s.fake != nil})
	})
	m.HandleFunc("POST /_sim/clock/advance", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Duration string `json:"duration"`
		}
		if !s.decodeAdmin(w, r, &body) {
			return
		}
		if s.fake == nil {
			adminError(w, 409, "not-fake-clock", "the clock only advances by itself; start the simulator with a fake clock (--fake-clock)")
			return
		}
		d, err := time.ParseDuration(body.Duration)
		if err != nil || d < 0 {
			adminError(w, 400, "bad-request", `duration must be a Go duration like "90s" or "1h"`)
			return
		}
		s.Advance(d)
		s.writeJSON(w, 200, map[string]any{"now": isoTime(s.clock.Now())})
	})
	m.HandleFunc("POST /_sim/reset", func(w http.ResponseWriter, r *http.Request) {
		s.Reset()
		w.WriteHeader(http.StatusNoContent)
	})
	s.admin = m
}

type faultsBody struct {
	Rules      []FaultRule `json:"rules"`
	S3FailRate *float64    `json:"s3FailRate,omitempty"`
	// Results replaces the results faults when present (even empty).
	Results *[]ResultsFault `json:"results,omitempty"`
}

// settingsBody holds the simulator settings a test may change at run time.
type settingsBody struct {
	// ResultsURLLifetime is a Go duration (simulated time), e.g. "30s".
	ResultsURLLifetime string `json:"resultsUrlLifetime,omitempty"`
	// SchedulesStalled stops scheduled runs from starting (true) as a stuck
	// scheduler would, or lets them start again (false).
	SchedulesStalled *bool `json:"schedulesStalled,omitempty"`
	// RunDuration is the simulated duration of the default catalogue's Runs
	// that start from now on (--run-duration), e.g. "5m".
	RunDuration string `json:"runDuration,omitempty"`
}

func (s *Server) settings() settingsBody {
	stalled := s.SchedulesStalled()
	b := settingsBody{ResultsURLLifetime: s.ResultsURLLifetime().String(), SchedulesStalled: &stalled}
	if s.catalogue != nil {
		b.RunDuration = s.catalogue.RunDuration().String()
	}
	return b
}

func (s *Server) serveAdmin(w http.ResponseWriter, r *http.Request) {
	// Results files are fetched through the signed URL Get Job Run hands
	// out, so they need no admin token (the signature is the credential).
	isResults := (r.Method == http.MethodGet || r.Method == http.MethodHead) && strings.HasPrefix(r.URL.Path, "/_sim/results/")
	if tok := s.opts.AdminToken; tok != "" && !isResults {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(tok)) != 1 {
			adminError(w, 401, "unauthorized", "admin API needs Authorization: Bearer <admin token>")
			return
		}
	}
	if _, pattern := s.admin.Handler(r); pattern == "" {
		adminError(w, 404, "not-found", "no admin endpoint "+r.Method+" "+r.URL.Path)
		return
	}
	s.admin.ServeHTTP(w, r)
}

func (s *Server) decodeAdmin(w http.ResponseWriter, r *http.Request, v any) bool {
	b, err := io.ReadAll(io.LimitReader(r.Body, maxBodyBytes))
	if err == nil {
		err = json.Unmarshal(b, v)
	}
	if err != nil {
		adminError(w, 400, "bad-request", "invalid JSON body: "+err.Error())
		return false
	}
	return true
}

func adminError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

// ErrJobNotFound is returned by Drift for an unknown job.
var ErrJobNotFound = errors.New("job not found")

// DriftRequest changes a job behind the operator's back.
type DriftRequest struct {
	WorkspaceID string `json:"workspaceId,omitempty"` // default: the only/first configured workspace
	Project     string `json:"project"`
	JobID       string `json:"jobId"`
	// Action is "delete", "modify" (apply Patch), "pause", "resume", "code"
	// (the Job is now defined in code: update and delete are refused) or
	// "api" (back to an API-managed Job).
	Action string `json:"action"`
	// Patch is a JSON merge patch (RFC 7386) applied to the job in Create
	// body form, e.g. {"configuration":{"maxConcurrentRequests":1},"sink":null}.
	Patch json.RawMessage `json:"patch,omitempty"`
}

// Drift applies d. Modify re-validates the patched job like an update.
func (s *Server) Drift(d DriftRequest) error {
	ws := d.WorkspaceID
	if ws == "" {
		keys := sortedKeys(s.opts.Workspaces)
		if _, ok := s.opts.Workspaces[DefaultWorkspaceID]; ok {
			ws = DefaultWorkspaceID
		} else {
			ws = keys[0]
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	j := s.jobs[projKey{ws, d.Project}][d.JobID]
	if j == nil {
		return fmt.Errorf("%w: %s/%s/%s", ErrJobNotFound, ws, d.Project, d.JobID)
	}
	switch d.Action {
	case "delete":
		s.deleteJobLocked(j)
	case "pause", "resume":
		s.setPausedLocked(j, d.Action == "pause")
	case "code":
		j.origin = OriginCode
	case "api":
		j.origin = ""
	case "modify":
		if len(d.Patch) == 0 {
			return errors.New("modify needs a patch")
		}
		var doc, patch any
		_ = json.Unmarshal(j.specJSON(), &doc)
		if err := json.Unmarshal(d.Patch, &patch); err != nil {
			return fmt.Errorf("patch is not JSON: %v", err)
		}
		merged, _ := json.Marshal(mergePatch(doc, patch))
		spec, sched, apiErr := decodeJobSpec(merged, false)
		if apiErr != nil {
			return fmt.Errorf("patched job is invalid: %s", apiErr.message)
		}
		s.replaceSpecLocked(j, spec, sched)
	default:
		return fmt.Errorf("unknown action %q (want delete, modify, pause, resume, code or api)", d.Action)
	}
	s.log.Info("drift applied", "job", d.JobID, "action", d.Action)
	return nil
}

// mergePatch applies an RFC 7386 JSON merge patch.
func mergePatch(doc, patch any) any {
	p, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	d, ok := doc.(map[string]any)
	if !ok {
		d = map[string]any{}
	}
	for k, v := range p {
		if v == nil {
			delete(d, k)
		} else {
			d[k] = mergePatch(d[k], v)
		}
	}
	return d
}

// APIRuns returns the executed API Runs, optionally of one JobRun.
func (s *Server) APIRuns(jobRunID string) []APIRun {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []APIRun{}
	for _, jobs := range s.jobs {
		for _, j := range jobs {
			for _, jr := range j.runs {
				if jobRunID != "" && jr.id != jobRunID {
					continue
				}
				for _, r := range jr.apiRuns {
					out = append(out, *r)
				}
			}
		}
	}
	return out
}

// Reset forgets all jobs, runs, deliveries, call counters, faults and rate
// limit history, and restores the Runs' duration; in-flight work is cancelled.
func (s *Server) Reset() {
	if s.catalogue != nil {
		s.catalogue.SetRunDuration(s.catalogue.opts.RunDuration)
	}
	s.mu.Lock()
	for _, jobs := range s.jobs {
		for _, j := range jobs {
			s.stopScheduleLocked(j)
			for _, jr := range j.runs {
				jr.queue = nil
				jr.cancel()
			}
		}
	}
	for _, d := range s.deliveries {
		if d.timer != nil {
			d.timer.Stop()
		}
	}
	s.jobs = map[projKey]map[string]*job{}
	s.deliveries = nil
	s.calls = map[string]int{}
	s.faults = nil
	s.s3FailRate = 0
	s.resultsFaults = nil
	rl := s.rl
	s.mu.Unlock()
	s.SetResultsURLLifetime(s.opts.ResultsURLLifetime)
	if rl != nil {
		rl.reset()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.WaitIdle(ctx)
}
