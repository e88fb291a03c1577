package intuned

import (
	"encoding/json"
)

// This file holds the wire types of the Jobs and JobRuns endpoints. JSON names
// follow docs/intuned-api.md exactly; the API mixes snake_case and camelCase
// and that is intentional here, not a typo.
//
// Optional fields whose absence differs from their zero value (Intuned fills
// defaults such as requestTimeout=600 when a field is omitted) are pointers so
// that "not set" survives a decode/encode round trip.

// JobState is the state of a Job on Intuned.
type JobState string

const (
	JobStateActive JobState = "ACTIVE"
	JobStatePaused JobState = "PAUSED"
)

// RetryPolicy is a Job's or payload item's retry policy ({"maximumAttempts": n}).
type RetryPolicy struct {
	MaximumAttempts *int `json:"maximumAttempts,omitempty"`
}

// PayloadItem is one API call of a Job.
type PayloadItem struct {
	// APIName is the API file path relative to the project's api/ folder,
	// without extension.
	APIName string `json:"apiName"`
	// Parameters is a JSON object passed to the API. Kept raw so that numbers
	// and key order survive unchanged.
	Parameters json.RawMessage `json:"parameters"`
	// RequestTimeout is in seconds (Intuned default 600).
	RequestTimeout *int         `json:"requestTimeout,omitempty"`
	Retry          *RetryPolicy `json:"retry,omitempty"`
}

// Configuration is a Job's execution configuration. It is required on create
// and update but may be empty ({}).
type Configuration struct {
	Retry *RetryPolicy `json:"retry,omitempty"`
	// MaxConcurrentRequests is the batch size of payloads. The SDK types it
	// as a number, not an integer, so a Job created elsewhere may hold 2.5;
	// float64 reads every value the API can return.
	MaxConcurrentRequests *float64 `json:"maxConcurrentRequests,omitempty"`
	// RequestTimeout is in seconds (Intuned default 600).
	RequestTimeout *int `json:"requestTimeout,omitempty"`
}

// AuthSession names the auth session a Job uses. Its key is "auth_session"
// (snake_case) in requests and responses alike: the official SDK's field is
// called authSession in TypeScript, but its wire schema renames it.
type AuthSession struct {
	ID             string `json:"id"`
	CheckAttempts  *int   `json:"checkAttempts,omitempty"`
	CreateAttempts *int   `json:"createAttempts,omitempty"`
}

// ProxyObject is the proxy as stored by Intuned: list items and JobRun
// snapshots carry it as an object; Get Job returns a plain string instead.
type ProxyObject struct {
	Version string `json:"version"`
	URL     string `json:"url"`
}

// CreateJobRequest is the body of POST .../jobs. Optional fields are omitted
// when nil.
type CreateJobRequest struct {
	// ID must be at least 7 characters of [a-zA-Z0-9_-].
	ID            string        `json:"id"`
	Payload       []PayloadItem `json:"payload"`
	Configuration Configuration `json:"configuration"`
	Schedule      *Schedule     `json:"schedule,omitempty"`
	Sink          *Sink         `json:"sink,omitempty"`
	Proxy         *string       `json:"proxy,omitempty"`
	AuthSession   *AuthSession  `json:"auth_session,omitempty"`
}

// UpdateJobRequest is the body of PUT .../jobs/{jobId}: the create body
// without id.
//
// The nullable fields are sent as explicit null when nil (no omitempty): the
// docs do not say whether PUT replaces or merges, and an explicit null clears
// the field under either reading, so removing a schedule or sink from the
// desired Job really removes it on Intuned.
type UpdateJobRequest struct {
	Payload       []PayloadItem `json:"payload"`
	Configuration Configuration `json:"configuration"`
	Schedule      *Schedule     `json:"schedule"`
	Sink          *Sink         `json:"sink"`
	Proxy         *string       `json:"proxy"`
	AuthSession   *AuthSession  `json:"auth_session"`
}

// CreateJobResponse is the 201 body of Create Job ({"id", "message":"created"}).
type CreateJobResponse struct {
	ID      string `json:"id"`
	Message string `json:"message"`
}

// UpdateJobResponse is the 200 body of Update Job
// ({"id", "message":"updated job successfully"}).
type UpdateJobResponse struct {
	ID      string `json:"id"`
	Message string `json:"message"`
}

// MessageResponse is the body of pause, resume and terminate ({"message"}).
type MessageResponse struct {
	Message string `json:"message"`
}

// TriggerJobResponse is the 200 body of Trigger Job.
type TriggerJobResponse struct {
	JobRunID string `json:"jobRunId"`
	Message  string `json:"message"`
}

// Job is the detail shape returned by Get Job. Note projectId (camelCase),
// auth_session (snake_case) and proxy as a plain string.
type Job struct {
	ID            string        `json:"id"`
	Configuration Configuration `json:"configuration"`
	Payload       []PayloadItem `json:"payload,omitempty"`
	Schedule      *Schedule     `json:"schedule,omitempty"`
	Sink          *Sink         `json:"sink,omitempty"`
	CreatedAt     Time          `json:"created_at"`
	NextRunTime   *Time         `json:"next_run_time,omitempty"`
	LastRunTime   *Time         `json:"last_run_time,omitempty"`
	State         JobState      `json:"state"`
	ProjectID     string        `json:"projectId"`
	AuthSession   *AuthSession  `json:"auth_session,omitempty"`
	Proxy         *string       `json:"proxy,omitempty"`
}

// JobReason says why a Job's state changed (list shape only).
type JobReason struct {
	Type      string          `json:"type"` // "paused" | "terminated"
	Message   string          `json:"message"`
	Details   json.RawMessage `json:"details,omitempty"`
	Timestamp *Time           `json:"timestamp,omitempty"`
}

// JobListItem is one element of the Get Jobs array: the Job "as stored in the
// database". Note workspace_id/project_id (snake_case), proxy as an object,
// reason and schedule_id.
type JobListItem struct {
	ID            string        `json:"id"`
	WorkspaceID   string        `json:"workspace_id"`
	ProjectID     string        `json:"project_id"`
	Configuration Configuration `json:"configuration"`
	Payload       []PayloadItem `json:"payload"`
	Sink          *Sink         `json:"sink,omitempty"`
	Schedule      *Schedule     `json:"schedule,omitempty"`
	NextRunTime   *Time         `json:"next_run_time,omitempty"`
	LastRunTime   *Time         `json:"last_run_time,omitempty"`
	CreatedAt     Time          `json:"created_at"`
	AuthSession   *AuthSession  `json:"auth_session,omitempty"`
	Proxy         *ProxyObject  `json:"proxy,omitempty"`
	Reason        *JobReason    `json:"reason,omitempty"`
	State         JobState      `json:"state"`
	ScheduleID    *string       `json:"schedule_id,omitempty"`
}

// JobRunStatus is the status of a JobRun.
type JobRunStatus string

const (
	JobRunPending    JobRunStatus = "PENDING"
	JobRunPausing    JobRunStatus = "PAUSING"
	JobRunPaused     JobRunStatus = "PAUSED"
	JobRunResuming   JobRunStatus = "RESUMING"
	JobRunSuccess    JobRunStatus = "SUCCESS"
	JobRunFailure    JobRunStatus = "FAILURE"
	JobRunCompleted  JobRunStatus = "COMPLETED"
	JobRunTerminated JobRunStatus = "TERMINATED"
	JobRunCanceled   JobRunStatus = "CANCELED"
)

// Terminal reports whether a JobRun in this status will not change any more.
func (s JobRunStatus) Terminal() bool {
	switch s {
	case JobRunSuccess, JobRunFailure, JobRunCompleted, JobRunTerminated, JobRunCanceled:
		return true
	}
	return false
}

// JobRunType says how a JobRun was started.
type JobRunType string

const (
	JobRunManual    JobRunType = "MANUAL"
	JobRunScheduled JobRunType = "SCHEDULED"
)

// JobRunError is the error of a failed JobRun. Casing is mixed on the wire
// (correlationId, doc_url) and "retirable" is Intuned's spelling.
type JobRunError struct {
	Message       string          `json:"message"`
	Code          string          `json:"code"`
	Category      string          `json:"category"`
	Details       json.RawMessage `json:"details,omitempty"`
	CorrelationID string          `json:"correlationId,omitempty"`
	Retirable     *bool           `json:"retirable,omitempty"`
	DocURL        string          `json:"doc_url,omitempty"`
}

// JobRunReason says why a JobRun's state changed (e.g. "terminated",
// "user-request", "s3-sink-error").
type JobRunReason struct {
	Type    string          `json:"type"`
	Message string          `json:"message"`
	Details json.RawMessage `json:"details,omitempty"`
	DocURL  string          `json:"doc_url,omitempty"`
}

// JobConfigurationSnapshot is the Job configuration a JobRun ran with.
type JobConfigurationSnapshot struct {
	Configuration Configuration `json:"configuration"`
	Sink          *Sink         `json:"sink,omitempty"`
	AuthSession   *AuthSession  `json:"auth_session,omitempty"`
	Proxy         *ProxyObject  `json:"proxy,omitempty"`
}

// JobRun is one execution of a Job (all keys snake_case).
type JobRun struct {
	ID          string       `json:"id"`
	StartTime   Time         `json:"start_time"`
	EndTime     *Time        `json:"end_time"`
	WorkspaceID string       `json:"workspace_id"`
	ProjectID   string       `json:"project_id"`
	JobID       string       `json:"job_id"`
	CreatedAt   Time         `json:"created_at"`
	UpdatedAt   Time         `json:"updated_at"`
	Type        JobRunType   `json:"type"`
	Status      JobRunStatus `json:"status"`
	// Payloads, SuccessfulRuns and FailedRuns are counters; null until known.
	Payloads       *int                     `json:"payloads"`
	SuccessfulRuns *int                     `json:"successful_runs"`
	FailedRuns     *int                     `json:"failed_runs"`
	Error          *JobRunError             `json:"error,omitempty"`
	Reason         *JobRunReason            `json:"reason,omitempty"`
	Snapshot       JobConfigurationSnapshot `json:"job_configuration_snapshot"`
}

// JobRunList is the body of Get Job Runs.
type JobRunList struct {
	JobRuns    []JobRun `json:"jobRuns"`
	TotalCount int      `json:"totalCount"`
}

// JobRunResults points at the aggregate results file of a JobRun.
type JobRunResults struct {
	SignedURL           string `json:"signed_url"`
	SignedURLExpiration string `json:"signed_url_expiration,omitempty"`
	Size                *int64 `json:"size,omitempty"`
	Key                 string `json:"key,omitempty"`
	Format              string `json:"format"`
}

// GetJobRunResponse is the body of Get Job Run.
type GetJobRunResponse struct {
	JobRun  JobRun         `json:"jobRun"`
	Results *JobRunResults `json:"results,omitempty"`
}

// ErrorBody is Intuned's error response body on the Jobs/JobRuns endpoints.
// "retirable" is Intuned's spelling on the wire.
type ErrorBody struct {
	Code          string          `json:"code"`
	Category      string          `json:"category"`
	Message       string          `json:"message"`
	Retirable     bool            `json:"retirable"`
	Details       json.RawMessage `json:"details,omitempty"`
	CorrelationID string          `json:"correlationId"`
}

// ListRunsOptions are the query parameters of Get Job Runs.
type ListRunsOptions struct {
	// PageSize is sent when > 0; otherwise the server's default applies.
	PageSize int
	// PageNumber is 0-based (as the documented example suggests); it is sent
	// when PageSize or PageNumber is > 0.
	PageNumber int
	// SortBy is "field,dir" pairs joined by "/", e.g. "start_time,desc".
	SortBy string
}
