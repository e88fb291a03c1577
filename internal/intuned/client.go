package intuned

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
)

// DefaultBaseURL is Intuned's production API root.
const DefaultBaseURL = "https://app.intuned.io/api/v1/workspace"

// API is what the controller needs from Intuned. *Client implements it; tests
// may point a Client at any server (the simulator, an httptest server).
//
// project is the Intuned project name; jobID and runID are Intuned ids. All
// errors are *APIError (an HTTP answer), *TransportError (no answer), or a
// context error.
type API interface {
	ListJobs(ctx context.Context, project string) ([]JobListItem, error)
	GetJob(ctx context.Context, project, jobID string) (*Job, error)
	// CreateJob is not retried on ambiguous failures; see IsAmbiguous.
	CreateJob(ctx context.Context, project string, req CreateJobRequest) (*CreateJobResponse, error)
	UpdateJob(ctx context.Context, project, jobID string, req UpdateJobRequest) (*UpdateJobResponse, error)
	DeleteJob(ctx context.Context, project, jobID string) error
	PauseJob(ctx context.Context, project, jobID string) error
	ResumeJob(ctx context.Context, project, jobID string) error
	// TriggerJob is not retried on ambiguous failures; see IsAmbiguous.
	TriggerJob(ctx context.Context, project, jobID string) (*TriggerJobResponse, error)
	ListJobRuns(ctx context.Context, project, jobID string, opts ListRunsOptions) (*JobRunList, error)
	GetJobRun(ctx context.Context, project, jobID, runID string) (*GetJobRunResponse, error)
	TerminateJobRun(ctx context.Context, project, jobID, runID string) error
}

var _ API = (*Client)(nil)

// Options configure a Client. WorkspaceID and APIKey are required.
type Options struct {
	// BaseURL defaults to DefaultBaseURL; point it at intuned-sim in tests.
	BaseURL     string
	WorkspaceID string
	APIKey      string

	// HTTPClient defaults to a client using http.DefaultTransport. Its own
	// Timeout should be unset; RequestTimeout bounds each attempt. The
	// client works on a copy that never follows redirects.
	HTTPClient *http.Client
	// RequestTimeout bounds one attempt (default 30 s).
	RequestTimeout time.Duration
	// Pacer defaults to DefaultPacer(), shared by the whole process.
	Pacer *Pacer
	// Retry bounds retries; see RetryOptions.
	Retry RetryOptions
	// Metrics, shared by all clients; nil records nothing.
	Metrics *Metrics
	// Logger gets one V(1) line per attempt; the zero Logger discards.
	Logger logr.Logger
	// Clock is used for retry back-off sleeps (default: real time).
	Clock Clock
	// UserAgent defaults to "intuned-operator".
	UserAgent string
}

// Client talks to Intuned's Jobs and JobRuns endpoints. It is safe for
// concurrent use.
type Client struct {
	base      *url.URL
	workspace string
	apiKey    string
	http      *http.Client
	timeout   time.Duration
	pacer     *Pacer
	retry     RetryOptions
	metrics   *Metrics
	log       logr.Logger
	clock     Clock
	userAgent string
	// serverOffset is Intuned's clock minus ours (nanoseconds), from the
	// Date header of its last answer.
	serverOffset atomic.Int64
}

// noteServerTime records how far Intuned's clock is from ours. The Date
// header counts whole seconds, so the middle of that second is taken.
func (c *Client) noteServerTime(date string) {
	t, err := http.ParseTime(date)
	if err != nil {
		return
	}
	c.serverOffset.Store(int64(t.Add(500 * time.Millisecond).Sub(c.clock.Now())))
}

// ServerNow is Intuned's clock, as the Date header of its last answer
// showed it (ours until it answered). Decisions that compare Intuned's own
// times (a JobRun's end_time, next_run_time) with "now" use it, so a node
// whose clock is off never declares a run late or a gap early.
func (c *Client) ServerNow() time.Time {
	return c.clock.Now().Add(time.Duration(c.serverOffset.Load()))
}

// ServerNow is api's ServerNow when it has one, else the local clock.
func ServerNow(api API) time.Time {
	if s, ok := api.(interface{ ServerNow() time.Time }); ok {
		return s.ServerNow()
	}
	return time.Now()
}

// New returns a Client for one workspace and API key.
func New(o Options) (*Client, error) {
	if o.WorkspaceID == "" {
		return nil, errors.New("intuned: workspace id is required")
	}
	if o.APIKey == "" {
		return nil, errors.New("intuned: API key is required")
	}
	if o.BaseURL == "" {
		o.BaseURL = DefaultBaseURL
	}
	base, err := url.Parse(o.BaseURL)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, fmt.Errorf("intuned: base URL %q must be an absolute http(s) URL", o.BaseURL)
	}
	base.RawQuery, base.Fragment = "", ""
	c := &Client{
		base:      base,
		workspace: o.WorkspaceID,
		apiKey:    o.APIKey,
		timeout:   o.RequestTimeout,
		pacer:     o.Pacer,
		retry:     o.Retry.withDefaults(),
		metrics:   o.Metrics,
		log:       o.Logger,
		clock:     o.Clock,
		userAgent: o.UserAgent,
	}
	// Copy the HTTP client so that redirects can be refused: Go forwards
	// custom headers such as x-api-key on redirects, even to another host,
	// and Intuned's API has no reason to redirect.
	hc := http.Client{}
	if o.HTTPClient != nil {
		hc = *o.HTTPClient
	}
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	c.http = &hc
	if c.timeout <= 0 {
		c.timeout = 30 * time.Second
	}
	if c.pacer == nil {
		c.pacer = DefaultPacer()
	}
	if c.clock == nil {
		c.clock = realClock{}
	}
	if c.userAgent == "" {
		c.userAgent = "intuned-operator"
	}
	return c, nil
}

// call describes one API operation.
type call struct {
	op         string // operation name for errors, logs and metrics
	method     string
	path       []string // segments after /{workspace}/projects, unescaped
	query      url.Values
	body       any // JSON request body, or nil
	out        any // decoded from a 2xx body, or nil
	idempotent bool
}

func (c *Client) ListJobs(ctx context.Context, project string) ([]JobListItem, error) {
	var out []JobListItem
	err := c.do(ctx, call{op: "ListJobs", method: http.MethodGet, path: []string{project, "jobs"}, out: &out, idempotent: true})
	return out, err
}

func (c *Client) GetJob(ctx context.Context, project, jobID string) (*Job, error) {
	var out Job
	if err := c.do(ctx, call{op: "GetJob", method: http.MethodGet, path: []string{project, "jobs", jobID}, out: &out, idempotent: true}); err != nil {
		return nil, err
	}
	return &out, nil
}

func (c *Client) CreateJob(ctx context.Context, project string, req CreateJobRequest) (*CreateJobResponse, error) {
	var out CreateJobResponse
	if err := c.do(ctx, call{op: "CreateJob", method: http.MethodPost, path: []string{project, "jobs"}, body: req, out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}

func (c *Client) UpdateJob(ctx context.Context, project, jobID string, req UpdateJobRequest) (*UpdateJobResponse, error) {
	var out UpdateJobResponse
	if err := c.do(ctx, call{op: "UpdateJob", method: http.MethodPut, path: []string{project, "jobs", jobID}, body: req, out: &out, idempotent: true}); err != nil {
		return nil, err
	}
	return &out, nil
}

func (c *Client) DeleteJob(ctx context.Context, project, jobID string) error {
	return c.do(ctx, call{op: "DeleteJob", method: http.MethodDelete, path: []string{project, "jobs", jobID}, idempotent: true})
}

func (c *Client) PauseJob(ctx context.Context, project, jobID string) error {
	return c.do(ctx, call{op: "PauseJob", method: http.MethodPost, path: []string{project, "jobs", jobID, "pause"}, out: &MessageResponse{}, idempotent: true})
}

func (c *Client) ResumeJob(ctx context.Context, project, jobID string) error {
	return c.do(ctx, call{op: "ResumeJob", method: http.MethodPost, path: []string{project, "jobs", jobID, "resume"}, out: &MessageResponse{}, idempotent: true})
}

func (c *Client) TriggerJob(ctx context.Context, project, jobID string) (*TriggerJobResponse, error) {
	var out TriggerJobResponse
	if err := c.do(ctx, call{op: "TriggerJob", method: http.MethodPost, path: []string{project, "jobs", jobID, "trigger"}, out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}

func (c *Client) ListJobRuns(ctx context.Context, project, jobID string, opts ListRunsOptions) (*JobRunList, error) {
	q := url.Values{}
	if opts.PageSize > 0 {
		q.Set("pageSize", strconv.Itoa(opts.PageSize))
	}
	if opts.PageSize > 0 || opts.PageNumber > 0 {
		q.Set("pageNumber", strconv.Itoa(opts.PageNumber))
	}
	if opts.SortBy != "" {
		q.Set("sortBy", opts.SortBy)
	}
	var out JobRunList
	if err := c.do(ctx, call{op: "ListJobRuns", method: http.MethodGet, path: []string{project, "jobs", jobID, "runs"}, query: q, out: &out, idempotent: true}); err != nil {
		return nil, err
	}
	return &out, nil
}

func (c *Client) GetJobRun(ctx context.Context, project, jobID, runID string) (*GetJobRunResponse, error) {
	var out GetJobRunResponse
	if err := c.do(ctx, call{op: "GetJobRun", method: http.MethodGet, path: []string{project, "jobs", jobID, "runs", runID}, out: &out, idempotent: true}); err != nil {
		return nil, err
	}
	return &out, nil
}

func (c *Client) TerminateJobRun(ctx context.Context, project, jobID, runID string) error {
	return c.do(ctx, call{op: "TerminateJobRun", method: http.MethodPost, path: []string{project, "jobs", jobID, "runs", runID, "terminate"}, out: &MessageResponse{}, idempotent: true})
}

// endpoint builds {base}/{workspace}/projects/{path...} with every segment
// percent-encoded, so an id can never add or climb path segments.
func (c *Client) endpoint(segs []string, q url.Values) (*url.URL, error) {
	all := append([]string{c.workspace, "projects"}, segs...)
	plain := strings.TrimRight(c.base.Path, "/")
	escaped := strings.TrimRight(c.base.EscapedPath(), "/")
	for _, s := range all {
		if s == "" || s == "." || s == ".." {
			return nil, fmt.Errorf("invalid path segment %q", s)
		}
		plain += "/" + s
		escaped += "/" + url.PathEscape(s)
	}
	u := *c.base
	u.Path, u.RawPath = plain, escaped
	u.RawQuery = q.Encode()
	return &u, nil
}

// maxBody caps how much of a response is read.
const maxBody = 8 << 20

// do runs one operation: pace, send, decode, and retry as shouldRetry allows.
func (c *Client) do(ctx context.Context, cl call) error {
	u, err := c.endpoint(cl.path, cl.query)
	if err != nil {
		return fmt.Errorf("intuned: %s: %w", cl.op, err)
	}
	var body []byte
	if cl.body != nil {
		if body, err = json.Marshal(cl.body); err != nil {
			return fmt.Errorf("intuned: %s: encoding request: %w", cl.op, err)
		}
	}
	// The pacer key is the concrete path (query excluded), with the host so
	// that two API servers never share a budget.
	key := u.Host + u.EscapedPath()

	for attempt := 1; ; attempt++ {
		waited, err := c.pacer.Wait(ctx, key, c.retry.MaxWait)
		c.metrics.observeThrottle(cl.op, waited)
		var te *ThrottledError
		if errors.As(err, &te) {
			te.Operation = cl.op
			return te
		}
		if err != nil {
			return fmt.Errorf("intuned: %s: waiting for rate limit: %w", cl.op, err)
		}

		status, err := c.attempt(ctx, cl, u, body, attempt)
		if err == nil {
			return nil
		}
		delay := c.retry.backoff(attempt)
		if ra := RetryAfter(err); ra > 0 && (status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable) {
			// Everyone using this path waits, not only this call.
			c.pacer.Block(key, ra)
			if ra > c.retry.MaxWait {
				return err
			}
			delay = max(delay, ra)
		}
		if ctx.Err() != nil || attempt >= c.retry.MaxAttempts || !shouldRetry(cl.idempotent, err) {
			return err
		}
		c.metrics.observeRetry(cl.op, status)
		select {
		case <-ctx.Done():
			return err
		case <-c.clock.After(delay):
		}
	}
}

// attempt sends the request once. It returns the HTTP status (0 when no
// answer came) and nil, an *APIError, a *TransportError or a decoding error.
func (c *Client) attempt(ctx context.Context, cl call, u *url.URL, body []byte, n int) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()

	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, cl.method, u.String(), rd)
	if err != nil {
		return 0, fmt.Errorf("intuned: %s: %s", cl.op, c.redact(err.Error()))
	}
	req.Header.Set("x-api-key", c.apiKey)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.userAgent)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}

	start := time.Now()
	resp, err := c.http.Do(req)
	if err != nil {
		c.metrics.observeRequest(cl.op, 0, time.Since(start))
		c.log.V(1).Info("intuned request failed", "operation", cl.op, "method", cl.method, "path", u.Path, "attempt", n, "error", c.redact(err.Error()))
		return 0, c.transportError(cl.op, err, !notSent(err))
	}
	c.noteServerTime(resp.Header.Get("Date"))
	data, readErr := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	resp.Body.Close()
	c.metrics.observeRequest(cl.op, resp.StatusCode, time.Since(start))
	c.log.V(1).Info("intuned request", "operation", cl.op, "method", cl.method, "path", u.Path, "attempt", n, "status", resp.StatusCode, "duration", time.Since(start))

	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp.StatusCode, c.apiError(cl.op, resp, data)
	}
	if readErr != nil {
		// The server answered 2xx, so the call took effect, but the body is
		// lost; report it as an ambiguous transport error.
		return resp.StatusCode, c.transportError(cl.op, readErr, true)
	}
	if cl.out != nil && len(bytes.TrimSpace(data)) > 0 {
		if err := json.Unmarshal(data, cl.out); err != nil {
			return resp.StatusCode, fmt.Errorf("intuned: %s: decoding %d response: %s", cl.op, resp.StatusCode, c.redact(err.Error()))
		}
	}
	return resp.StatusCode, nil
}

func (c *Client) transportError(op string, err error, sent bool) *TransportError {
	return &TransportError{Operation: op, Sent: sent, msg: fmt.Sprintf("intuned: %s: %s", op, c.redact(err.Error())), err: err}
}

// apiError builds the *APIError for a non-2xx answer.
func (c *Client) apiError(op string, resp *http.Response, data []byte) *APIError {
	e := &APIError{Operation: op, StatusCode: resp.StatusCode}
	var b ErrorBody
	if err := json.Unmarshal(data, &b); err == nil && b.Code != "" {
		// Everything the server sent is redacted: it could echo the key.
		e.Code, e.Category, e.Message = c.redact(b.Code), c.redact(b.Category), c.redact(b.Message)
		e.CorrelationID, e.Retriable = c.redact(b.CorrelationID), b.Retirable
		if len(b.Details) > 0 && string(b.Details) != "null" {
			e.Details = []byte(c.redact(string(b.Details)))
		}
	} else {
		e.Code = "http-" + strconv.Itoa(resp.StatusCode)
		e.Message = excerpt(c.redact(string(data)))
	}
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500 {
		e.Retriable = true
	}
	if d, ok := parseRetryAfter(resp.Header.Get("Retry-After"), c.clock.Now()); ok {
		e.RetryAfter = d
	}
	return e
}

// redact removes the API key from text that may end up in an error or a log
// (a server could echo it back).
func (c *Client) redact(s string) string {
	if c.apiKey == "" {
		return s
	}
	return strings.ReplaceAll(s, c.apiKey, "[REDACTED]")
}

// excerpt returns the start of a non-JSON error body, on one line.
func excerpt(body string) string {
	s := []rune(strings.Join(strings.Fields(body), " "))
	if len(s) > 200 {
		return string(s[:200]) + "..."
	}
	return string(s)
}
