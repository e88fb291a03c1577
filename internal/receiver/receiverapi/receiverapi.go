// Package receiverapi is a small client of a receiver's HTTP API for the manager: the per-JobRun
// summaries (what the receiver holds) and backfill (pushing results-file lines it lacks). Its
// types are the wire format: the receiver answers with them, so both sides share one definition.
package receiverapi

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
	"time"
)

// Client talks to one receiver. HTTP nil means http.DefaultClient.
type Client struct {
	BaseURL string // e.g. "http://receiver.ns.svc:8080"
	HTTP    *http.Client
}

// Summary is what the receiver holds for one JobRun (GET /v1/jobruns...).
type Summary struct {
	JobRunID string `json:"jobRunId"`
	// Stored: deliveries stored for the JobRun, each runId once; Backfilled of them came through
	// backfill.
	Stored     int64 `json:"stored"`
	Backfilled int64 `json:"backfilled"`
	// Conflicts: bodies kept aside because their runId was already stored with another body.
	Conflicts int64 `json:"conflicts"`
	// Quarantined: other invalid bodies that named this JobRun (backfilled lines included).
	Quarantined int64 `json:"quarantined"`
	// Results splits Stored by API name and result status, ordered by both.
	Results         []ResultCount `json:"results"`
	FirstReceivedAt *time.Time    `json:"firstReceivedAt,omitempty"`
	LastReceivedAt  *time.Time    `json:"lastReceivedAt,omitempty"`
}

// ResultCount is the number of stored deliveries of one API name and result status.
type ResultCount struct {
	API    string `json:"api"`
	Status string `json:"status"`
	Count  int64  `json:"count"`
}

// BackfillTarget names the JobRun whose results-file lines a backfill carries; the receiver wraps
// each line into the sink body Intuned would have sent for it. WorkspaceID may be empty.
type BackfillTarget struct {
	JobRunID, JobID, Project, WorkspaceID string
}

// BackfillResult is the receiver's answer to one backfill request: how many lines it stored, found
// stored already (by runId), or refused as invalid (kept in its quarantine); Errors describes the
// first MaxLineErrors of the invalid ones.
type BackfillResult struct {
	Stored  int         `json:"stored"`
	Present int         `json:"present"`
	Invalid int         `json:"invalid"`
	Errors  []LineError `json:"errors"`
}

// MaxLineErrors is the most LineErrors one BackfillResult lists.
const MaxLineErrors = 10

// LineError is why one line of a backfill request was refused. Line is 1-based within the request.
type LineError struct {
	Line    int    `json:"line"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

// MaxSummaryIDs is the most JobRuns one GET /v1/jobruns request may name; Summaries sends
// longer lists in several requests.
const MaxSummaryIDs = 100

// APIError is a non-2xx answer. Code and Message come from the receiver's JSON error body (empty
// when it had none); RetryAfter from its Retry-After header (0 when absent): 429 and 503 are
// temporary, and the receiver says when to come back.
type APIError struct {
	StatusCode int
	Code       string
	Message    string
	RetryAfter time.Duration
}

func (e *APIError) Error() string {
	s := "receiver answered " + strconv.Itoa(e.StatusCode)
	if e.Code != "" {
		s += " " + e.Code
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// Temporary reports whether the same request may succeed later (429, 5xx).
func (e *APIError) Temporary() bool {
	return e.StatusCode == http.StatusTooManyRequests || e.StatusCode >= 500
}

// Summaries returns the summary of each JobRun in jobRunIDs, in that order (a JobRun the receiver
// holds nothing for has zero counts), reading them MaxSummaryIDs at a time with the read token.
func (c *Client) Summaries(ctx context.Context, readToken string, jobRunIDs []string) ([]Summary, error) {
	out := make([]Summary, 0, len(jobRunIDs))
	for start := 0; start < len(jobRunIDs); start += MaxSummaryIDs {
		q := url.Values{"jobRun": jobRunIDs[start:min(start+MaxSummaryIDs, len(jobRunIDs))]}
		var page struct {
			JobRuns []Summary `json:"jobRuns"`
		}
		err := c.do(ctx, http.MethodGet, "/v1/jobruns?"+q.Encode(), "Authorization", "Bearer "+readToken, "", nil, &page)
		if err != nil {
			return nil, err
		}
		if len(page.JobRuns) != len(q["jobRun"]) {
			return nil, fmt.Errorf("receiver answered %d summaries for %d JobRuns", len(page.JobRuns), len(q["jobRun"]))
		}
		out = append(out, page.JobRuns...)
	}
	return out, nil
}

// Backfill sends results-file lines (NDJSON: one apiInfo object a line, as Intuned's results file
// holds them) of the JobRun t to the receiver, which stores those it lacks. It authenticates as
// Intuned's sink does: authHeaderName and authHeaderValue are the header the IntunedJob's sink
// sends (for a WebhookReceiver, "Authorization" and "Bearer <token>"). Keep a request at most 1
// MiB (a single larger line alone): the receiver refuses a body over twice its --max-body-bytes.
func (c *Client) Backfill(ctx context.Context, authHeaderName, authHeaderValue string, t BackfillTarget, ndjson []byte) (BackfillResult, error) {
	q := url.Values{"jobId": {t.JobID}, "project": {t.Project}}
	if t.WorkspaceID != "" {
		q.Set("workspaceId", t.WorkspaceID)
	}
	var res BackfillResult
	err := c.do(ctx, http.MethodPost, "/v1/jobruns/"+url.PathEscape(t.JobRunID)+"/backfill?"+q.Encode(),
		authHeaderName, authHeaderValue, "application/x-ndjson", ndjson, &res)
	return res, err
}

// maxAnswer bounds how much of an answer is read: a page of 100 summaries is a few hundred KiB.
const maxAnswer = 16 << 20

// do sends one request and decodes a 2xx JSON answer into out. Its errors never hold the
// credential (it travels in a header, which neither net/http's errors nor ours repeat).
func (c *Client) do(ctx context.Context, method, pathAndQuery, authName, authValue, contentType string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(c.BaseURL, "/")+pathAndQuery, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("receiver request: %w", err)
	}
	req.Header.Set(authName, authValue)
	req.Header.Set("Accept", "application/json")
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	res, err := hc.Do(req)
	if err != nil {
		return err // a *url.Error: method, URL (no credential) and cause
	}
	defer res.Body.Close()
	data, err := io.ReadAll(io.LimitReader(res.Body, maxAnswer))
	if err != nil {
		return fmt.Errorf("receiver %s %s: read answer: %w", method, req.URL.Path, err)
	}
	if res.StatusCode < 200 || res.StatusCode > 299 {
		return apiError(res, data)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("receiver %s %s: decode answer: %w", method, req.URL.Path, err)
	}
	return nil
}

func apiError(res *http.Response, data []byte) error {
	e := &APIError{StatusCode: res.StatusCode, RetryAfter: retryAfter(res.Header.Get("Retry-After"))}
	var body struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(data, &body) == nil {
		e.Code, e.Message = body.Error.Code, body.Error.Message
	}
	return e
}

// retryAfter reads a Retry-After header: seconds (what the receiver sends) or an HTTP date.
func retryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}

// IsTemporary reports whether err is an APIError the same request may get past later.
func IsTemporary(err error) bool {
	var e *APIError
	return errors.As(err, &e) && e.Temporary()
}
