package intunedsim

import (
	"net/http"
	"strings"
	"time"
)

// FaultRule injects failures into matching API requests (never /_sim/).
// Rules are checked in order; every matching rule applies its latency, then
// the first rule whose dice say so drops the connection or answers an error.
type FaultRule struct {
	// Match selects requests: "" or "*" = every API request; "POST" = one
	// method; "/api/v1/workspace/{ws}/projects/{p}/jobs" = one route
	// template (any method); "POST /api/v1/workspace/{ws}/projects/{p}/jobs"
	// = one call-counter key.
	Match string `json:"match,omitempty"`
	// ErrorRate is the probability (0..1) of answering Status instead.
	ErrorRate float64 `json:"errorRate,omitempty"`
	// Status of injected errors (default 500), with an Intuned-style body.
	Status int `json:"status,omitempty"`
	// LatencyMS adds real-time latency before the request is handled.
	LatencyMS int `json:"latencyMs,omitempty"`
	// DropRate is the probability of closing the connection without an answer.
	DropRate float64 `json:"dropRate,omitempty"`
	// Times, when > 0, makes the rule apply to the next Times matching
	// requests only (and, with no rates set, always fail them); then it is
	// removed. Remaining counts down.
	Times int `json:"times,omitempty"`
}

func (f FaultRule) matches(method, key string) bool {
	switch {
	case f.Match == "" || f.Match == "*":
		return true
	case !strings.Contains(f.Match, "/"):
		return strings.EqualFold(f.Match, method)
	case strings.HasPrefix(f.Match, "/"):
		_, route, _ := strings.Cut(key, " ")
		return route == f.Match
	}
	return f.Match == key
}

// SetFaults replaces the fault rules.
func (s *Server) SetFaults(rules []FaultRule) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append([]FaultRule(nil), rules...)
	for i := range s.faults {
		f := &s.faults[i]
		if f.Times > 0 && f.ErrorRate == 0 && f.DropRate == 0 && f.LatencyMS == 0 {
			f.ErrorRate = 1
		}
	}
}

// Faults returns the current fault rules.
func (s *Server) Faults() []FaultRule {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]FaultRule(nil), s.faults...)
}

// SetS3FailRate sets the share of failing simulated S3 deliveries.
func (s *Server) SetS3FailRate(rate float64) {
	s.mu.Lock()
	s.s3FailRate = rate
	s.mu.Unlock()
}

// applyFaults reports whether it has answered (or dropped) the request.
func (s *Server) applyFaults(w http.ResponseWriter, r *http.Request, key string) bool {
	var latency time.Duration
	drop, status := false, 0
	s.mu.Lock()
	kept := s.faults[:0]
	for _, f := range s.faults {
		if !f.matches(r.Method, key) {
			kept = append(kept, f)
			continue
		}
		latency += time.Duration(f.LatencyMS) * time.Millisecond
		if !drop && status == 0 {
			if f.DropRate > 0 && s.ids.float() < f.DropRate {
				drop = true
			} else if f.ErrorRate > 0 && s.ids.float() < f.ErrorRate {
				status = f.Status
				if status == 0 {
					status = http.StatusInternalServerError
				}
			}
		}
		if f.Times > 0 {
			f.Times--
			if f.Times == 0 {
				continue // used up
			}
		}
		kept = append(kept, f)
	}
	s.faults = kept
	s.mu.Unlock()

	if latency > 0 {
		select {
		case <-time.After(latency):
		case <-r.Context().Done():
			return true
		}
	}
	if drop {
		s.log.Info("fault: dropping connection", "method", r.Method, "path", r.URL.Path)
		panic(http.ErrAbortHandler) // net/http closes the connection without a response
	}
	if status != 0 {
		s.log.Info("fault: injected error", "method", r.Method, "path", r.URL.Path, "status", status)
		s.writeError(w, injectedFault(status))
		return true
	}
	return false
}
