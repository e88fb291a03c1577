package intunedsim

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"time"
)

// Sink delivery follows Intuned's "Sink Retry Behavior": one attempt right
// after the Run finishes, then retries 10 s after a failure, doubling, capped
// at 2 min, while the attempt would start within the window after the first
// attempt (webhook 1 hour, S3 10 minutes). An attempt succeeds on HTTP
// 200-299; a non-2xx answer, a timeout (the sink's `timeout` in ms, default
// 5000, real time) or a connection error fails it. Retries wait on the
// simulator's clock. A webhook that exhausts its window is dropped (the job
// goes on, as the guide says); an S3 sink is only simulated: nothing is
// uploaded, the outcome is decided by Options.S3FailRate and logged, and an
// exhausted S3 delivery pauses the Job (JobRun reason "s3-sink-error").
// The webhook sink's `retry` field (seed guide: "number of retry attempts")
// is stored and echoed but does not change this timeline, which Intuned's
// retry reference documents as system-defined.
const (
	retryInitial      = 10 * time.Second
	retryMax          = 2 * time.Minute
	webhookWindow     = time.Hour
	s3Window          = 10 * time.Minute
	defaultSinkTimout = 5000 * time.Millisecond
)

// Delivery outcomes.
const (
	OutcomePending   = "pending"
	OutcomeDelivered = "delivered"
	OutcomeExhausted = "exhausted"
	// OutcomeSkipped marks a Run the sink filtered out (apisToSend or
	// skipOnFail); it has no attempts and nothing was sent.
	OutcomeSkipped = "skipped"
)

// Delivery is one entry of the delivery log: the sink body of one Run and
// every attempt to deliver it.
type Delivery struct {
	RunID       string    `json:"runId"`
	JobID       string    `json:"jobId"`
	JobRunID    string    `json:"jobRunId"`
	WorkspaceID string    `json:"workspaceId"`
	Project     string    `json:"project"`
	APIName     string    `json:"apiName"`
	RunStatus   string    `json:"runStatus"` // completed | failed
	SinkType    string    `json:"sinkType"`  // webhook | s3
	URL         string    `json:"url"`       // webhook URL or s3://bucket/key
	HeaderNames []string  `json:"headerNames,omitempty"`
	Body        []byte    `json:"-"` // the exact bytes sent
	Attempts    []Attempt `json:"attempts"`
	Outcome     string    `json:"outcome"`
	SkipReason  string    `json:"skipReason,omitempty"`

	sink    *sinkWire
	jobRun  *jobRun
	first   time.Time
	timer   Timer
	created int // order in the log
}

// Attempt is one delivery attempt: the HTTP status code, or the error.
type Attempt struct {
	Time       time.Time `json:"time"`
	StatusCode int       `json:"statusCode,omitempty"`
	Error      string    `json:"error,omitempty"`
}

// MarshalJSON adds the body (as JSON, byte for byte) and its SHA-256.
func (d Delivery) MarshalJSON() ([]byte, error) {
	type plain Delivery
	sum := sha256.Sum256(d.Body)
	var body json.RawMessage
	if len(d.Body) > 0 {
		body = d.Body
	}
	return json.Marshal(struct {
		plain
		Body       json.RawMessage `json:"body,omitempty"`
		BodySHA256 string          `json:"bodySha256,omitempty"`
	}{plain(d), body, hex.EncodeToString(sum[:])})
}

// Deliveries returns a snapshot of the delivery log in creation order.
func (s *Server) Deliveries() []Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Delivery, 0, len(s.deliveries))
	for _, d := range s.deliveries {
		cp := *d
		cp.Attempts = slices.Clone(d.Attempts)
		cp.Body = slices.Clone(d.Body)
		cp.HeaderNames = slices.Clone(d.HeaderNames)
		cp.sink, cp.timer, cp.jobRun = nil, nil, nil
		out = append(out, cp)
	}
	return out
}

// newDeliveryLocked logs the sink body for a finished Run. It returns the
// delivery when a first attempt should be made now, nil when there is no
// sink or the sink filters the Run out.
func (s *Server) newDeliveryLocked(jr *jobRun, run *APIRun) *Delivery {
	sink := jr.sink
	if sink == nil {
		return nil
	}
	j := jr.job
	body := sinkBody{
		WorkspaceID:   j.ws,
		Project:       projectRef{ID: j.projectID, Name: j.project},
		ProjectJob:    idRef{ID: j.spec.ID},
		ProjectJobRun: idRef{ID: jr.id},
		APIInfo:       apiInfoOf(run),
	}
	if jr.authID != "" {
		body.AuthSession = &idRef{ID: jr.authID}
	}
	b, _ := json.Marshal(body)
	d := &Delivery{
		RunID: run.RunID, JobID: j.spec.ID, JobRunID: jr.id, WorkspaceID: j.ws, Project: j.project,
		APIName: run.APIName, RunStatus: run.Status, SinkType: sink.Type, Body: b,
		Attempts: []Attempt{}, Outcome: OutcomePending, sink: sink, jobRun: jr, created: len(s.deliveries),
	}
	if sink.Type == "webhook" {
		d.URL = sink.URL
		d.HeaderNames = append([]string{"Content-Type"}, sortedKeys(sink.Headers)...)
	} else {
		d.URL = fmt.Sprintf("s3://%s/%s%s/%s.json", sink.Bucket, sink.Prefix, jr.id, run.RunID)
	}
	switch {
	case len(sink.APIsToSend) > 0 && !slices.Contains(sink.APIsToSend, run.APIName):
		d.Outcome, d.SkipReason = OutcomeSkipped, "apisToSend"
	case run.Status == "failed" && sink.SkipOnFail:
		d.Outcome, d.SkipReason = OutcomeSkipped, "skipOnFail"
	}
	s.deliveries = append(s.deliveries, d)
	if d.Outcome == OutcomeSkipped {
		return nil
	}
	return d
}

// apiInfoOf renders a Run as the sink body's apiInfo object.
func apiInfoOf(run *APIRun) sinkAPIInfo {
	info := sinkAPIInfo{Name: run.APIName, RunID: run.RunID, Parameters: run.Parameters}
	if run.Status == "completed" {
		info.Result = sinkResult{Status: "completed", Result: run.Result, StatusCode: 200}
		if len(run.Result) == 0 {
			info.Result.Result = json.RawMessage("null")
		}
	} else {
		info.Result = sinkResult{Status: "failed", Error: run.Error.Code, Message: run.Error.Message, StatusCode: run.Error.StatusCode}
	}
	return info
}

// attempt makes one delivery attempt and schedules the next on failure.
// The caller counts as busy for the duration.
func (s *Server) attempt(d *Delivery) {
	start := s.clock.Now()
	var at Attempt
	if d.sink.Type == "s3" {
		at = s.attemptS3(start)
	} else {
		at = s.attemptWebhook(d, start)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if len(d.Attempts) == 0 {
		d.first = start
	}
	d.Attempts = append(d.Attempts, at)
	if at.Error == "" && at.StatusCode >= 200 && at.StatusCode < 300 {
		d.Outcome = OutcomeDelivered
		s.log.Debug("delivered", "runId", d.RunID, "attempts", len(d.Attempts))
		return
	}
	window := webhookWindow
	if d.sink.Type == "s3" {
		window = s3Window
	}
	delay := retryDelay(len(d.Attempts))
	now := s.clock.Now()
	if s.closed || now.Add(delay).Sub(d.first) > window {
		if !s.closed {
			d.Outcome = OutcomeExhausted
			s.log.Warn("delivery exhausted", "runId", d.RunID, "url", d.URL, "attempts", len(d.Attempts))
			if d.sink.Type == "s3" {
				s.s3ExhaustedLocked(d)
			}
		}
		return
	}
	s.log.Info("delivery failed, will retry", "runId", d.RunID, "status", at.StatusCode, "error", at.Error, "in", delay)
	d.timer = s.clock.AfterFunc(delay, func() {
		s.busyAdd(1)
		defer s.busyAdd(-1)
		s.attempt(d)
	})
}

// s3ExhaustedLocked models "unlike webhook failures, S3 sink failures pause
// the Job": the job is paused and the JobRun gets reason s3-sink-error.
func (s *Server) s3ExhaustedLocked(d *Delivery) {
	jr := d.jobRun
	j := jr.job
	if s.jobs[projKey{j.ws, j.project}][j.spec.ID] == j {
		s.setPausedLocked(j, true)
		j.reason.Message = "Job paused: S3 sink delivery failed for 10 minutes"
	}
	jr.reason = &jobRunReason{Type: "s3-sink-error", Message: "Writing results to the S3 sink failed for 10 minutes"}
	jr.updated = s.clock.Now()
}

// retryDelay is the wait after the n-th failed attempt: 10 s, 20 s, 40 s,
// 80 s, then 2 min.
func retryDelay(n int) time.Duration {
	d := retryInitial
	for i := 1; i < n && d < retryMax; i++ {
		d *= 2
	}
	return min(d, retryMax)
}

func (s *Server) attemptWebhook(d *Delivery, start time.Time) Attempt {
	timeout := defaultSinkTimout
	if d.sink.Timeout != nil {
		timeout = time.Duration(*d.sink.Timeout) * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(s.baseCtx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.URL, bytes.NewReader(d.Body))
	if err != nil {
		return Attempt{Time: start, Error: err.Error()}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "intuned-sim")
	for _, k := range sortedKeys(d.sink.Headers) {
		req.Header.Set(k, d.sink.Headers[k])
	}
	resp, err := s.client.Do(req)
	if err != nil {
		if ctx.Err() == context.DeadlineExceeded {
			return Attempt{Time: start, Error: fmt.Sprintf("timeout after %s", timeout)}
		}
		return Attempt{Time: start, Error: "connection error: " + redactURLError(err)}
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	return Attempt{Time: start, StatusCode: resp.StatusCode}
}

// redactURLError drops the URL (which may carry credentials or query
// tokens) from a client error, keeping the cause.
func redactURLError(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}

func (s *Server) attemptS3(start time.Time) Attempt {
	s.mu.Lock()
	rate := s.s3FailRate
	s.mu.Unlock()
	if rate > 0 && s.ids.float() < rate {
		return Attempt{Time: start, Error: "simulated S3 PutObject failure"}
	}
	return Attempt{Time: start, StatusCode: 200}
}

// deliveryFilter selects log entries for the admin API.
func filterDeliveries(all []Delivery, jobID, jobRunID, outcome string) []Delivery {
	out := all[:0:0]
	for _, d := range all {
		if (jobID == "" || d.JobID == jobID) && (jobRunID == "" || d.JobRunID == jobRunID) && (outcome == "" || d.Outcome == outcome) {
			out = append(out, d)
		}
	}
	sort.SliceStable(out, func(a, b int) bool { return out[a].created < out[b].created })
	return out
}
