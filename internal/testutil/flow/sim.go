package flow

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/intuned-operator/intuned-operator/internal/intunedsim"
	"github.com/intuned-operator/intuned-operator/internal/testutil/proc"
)

// Default identity of intuned-sim (cmd/intuned-sim flags --workspace-id and
// --api-key).
const (
	SimWorkspaceID = "e95cb8d1-f212-4c04-ace1-c0f77e8708c7"
	SimAPIKey      = "sim-api-key"
)

// Sim is the intuned-sim process.
type Sim struct {
	URL         string // root, e.g. http://127.0.0.1:1234 (admin API under /_sim/)
	BaseURL     string // Intuned API base URL for credentials (…/api/v1/workspace)
	WorkspaceID string
	APIKey      string
	TimeScale   float64
	Proc        *proc.Process
}

// QuickstartSimArgs are the intuned-sim flags both local clusters use: each
// API Run lasts a simulated minute (one real second at SimTimeScale), so a
// quickstart JobRun spans a couple of seconds, long enough to break things
// in the middle of it, while an hour of Intuned's delivery retries takes a
// minute; the list API returns 5 products (QuickstartDeliveries).
var QuickstartSimArgs = []string{"--run-duration", QuickstartRunDuration.String(), "--products", "5", "--seed", "7"}

// QuickstartRunDuration is the simulated duration of each quickstart Run.
const QuickstartRunDuration = time.Minute

// SimTimeScale is the intuned-sim --time-scale of the tests: one simulated
// minute per real second.
const SimTimeScale = 60

// QuickstartDeliveries is what one quickstart JobRun sends with
// QuickstartSimArgs: the list Run plus one details Run per product.
const QuickstartDeliveries = 1 + 5

// SimCommand says how to run intuned-sim.
type SimCommand struct {
	// Command is the intuned-sim binary, possibly behind a wrapper that
	// runs it elsewhere (e.g. in a network namespace); flags are appended.
	Command []string
	Env     []string // nil: only PATH
	// Addr is the host:port it listens on (and the tests reach it at).
	Addr      string
	LogFile   string
	TimeScale float64
	Args      []string // more flags
}

// SimDelivery is one entry of the simulator's delivery log
// (GET /_sim/deliveries).
type SimDelivery struct {
	RunID       string          `json:"runId"`
	JobID       string          `json:"jobId"`
	JobRunID    string          `json:"jobRunId"`
	APIName     string          `json:"apiName"`
	RunStatus   string          `json:"runStatus"`
	SinkType    string          `json:"sinkType"`
	URL         string          `json:"url"`
	HeaderNames []string        `json:"headerNames"`
	Attempts    []SimAttempt    `json:"attempts"`
	Outcome     string          `json:"outcome"` // pending | delivered | exhausted | skipped
	SkipReason  string          `json:"skipReason"`
	Body        json.RawMessage `json:"body"`
	BodySHA256  string          `json:"bodySha256"` // of the exact bytes sent
}

// SimAttempt is one delivery attempt.
type SimAttempt struct {
	Time       time.Time `json:"time"`
	StatusCode int       `json:"statusCode"`
	Error      string    `json:"error"`
}

// StartSim starts intuned-sim (tracked by g, when not nil) and waits until
// it answers.
func StartSim(ctx context.Context, g *proc.Group, c SimCommand) (*Sim, error) {
	args := append(append(append([]string(nil), c.Command[1:]...), "--addr", c.Addr,
		"--time-scale", strconv.FormatFloat(c.TimeScale, 'f', -1, 64)), c.Args...)
	spec := proc.Spec{Name: "intuned-sim", Path: c.Command[0], Args: args, Env: c.Env, LogFile: c.LogFile}
	start := proc.Start
	if g != nil {
		start = g.Start
	}
	p, err := start(spec)
	if err != nil {
		return nil, err
	}
	s := &Sim{URL: "http://" + c.Addr, WorkspaceID: SimWorkspaceID, APIKey: SimAPIKey, TimeScale: c.TimeScale, Proc: p}
	s.BaseURL = s.URL + "/api/v1/workspace"
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := proc.WaitHTTPOK(wctx, s.URL+"/_sim/healthz", p.Done()); err != nil {
		_ = p.Stop(5 * time.Second)
		return nil, fmt.Errorf("intuned-sim: %w\n%s", err, p.LogTail(2000))
	}
	return s, nil
}

// Deliveries returns the delivery log for jobID ("" = all jobs).
func (s *Sim) Deliveries(ctx context.Context, jobID string) ([]SimDelivery, error) {
	u := s.URL + "/_sim/deliveries"
	if jobID != "" {
		u += "?jobId=" + url.QueryEscape(jobID)
	}
	var out struct {
		Deliveries []SimDelivery `json:"deliveries"`
	}
	if err := getJSON(ctx, u, nil, &out); err != nil {
		return nil, err
	}
	return out.Deliveries, nil
}

// Calls returns the simulator's API call counter by "METHOD route".
func (s *Sim) Calls(ctx context.Context) (map[string]int, error) {
	var out struct {
		Calls map[string]int `json:"calls"`
	}
	err := getJSON(ctx, s.URL+"/_sim/calls", nil, &out)
	return out.Calls, err
}

// SimJobRun is one JobRun as Intuned's API lists it (only what tests use).
type SimJobRun struct {
	ID     string `json:"id"`
	Type   string `json:"type"`
	Status string `json:"status"`
}

// JobRuns lists the JobRuns of a job through Intuned's own API (it counts
// against that path's rate limit; use sparingly).
func (s *Sim) JobRuns(ctx context.Context, project, jobID string) ([]SimJobRun, error) {
	u := fmt.Sprintf("%s/%s/projects/%s/jobs/%s/runs", s.BaseURL, s.WorkspaceID, url.PathEscape(project), url.PathEscape(jobID))
	var raw json.RawMessage
	if err := getJSON(ctx, u, http.Header{"x-api-key": {s.APIKey}}, &raw); err != nil {
		return nil, err
	}
	// The list is either a bare array or wrapped in an object.
	var runs []SimJobRun
	if err := json.Unmarshal(raw, &runs); err == nil {
		return runs, nil
	}
	var wrapped map[string]json.RawMessage
	if err := json.Unmarshal(raw, &wrapped); err != nil {
		return nil, err
	}
	for _, k := range []string{"jobRuns", "runs", "items", "data"} {
		if v, ok := wrapped[k]; ok {
			err := json.Unmarshal(v, &runs)
			return runs, err
		}
	}
	return nil, fmt.Errorf("unexpected job runs shape: %.200s", raw)
}

// SetFaults replaces the simulator's fault rules (see intunedsim.FaultRule;
// none clears them).
func (s *Sim) SetFaults(ctx context.Context, rules ...intunedsim.FaultRule) error {
	return s.postAdmin(ctx, "/_sim/faults", map[string]any{"rules": rules})
}

// SetResultsFaults replaces the simulator's results-file faults (and
// clears its request fault rules).
func (s *Sim) SetResultsFaults(ctx context.Context, faults ...intunedsim.ResultsFault) error {
	if faults == nil {
		faults = []intunedsim.ResultsFault{}
	}
	return s.postAdmin(ctx, "/_sim/faults", map[string]any{"results": faults})
}

// StallSchedules makes scheduled runs come due without starting (on), as a
// stuck scheduler would, or lets them start again.
func (s *Sim) StallSchedules(ctx context.Context, on bool) error {
	return s.postAdmin(ctx, "/_sim/settings", map[string]any{"schedulesStalled": on})
}

// SetRunDuration changes the simulated duration of the Runs that start from
// now on (QuickstartSimArgs: a minute).
func (s *Sim) SetRunDuration(ctx context.Context, d time.Duration) error {
	return s.postAdmin(ctx, "/_sim/settings", map[string]any{"runDuration": d.String()})
}

func (s *Sim) postAdmin(ctx context.Context, path string, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("POST %s: %s", path, resp.Status)
	}
	return nil
}

func getJSON(ctx context.Context, u string, h http.Header, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	for k, vs := range h {
		req.Header[http.CanonicalHeaderKey(k)] = vs
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}
