package intunedsim

import (
	"encoding/json"
	"time"
)

// Wire types, written from docs/intuned-api.md independently of
// internal/intuned so that contract tests catch mistakes on either side.
// Key names are reproduced exactly, including Intuned's mixed casing.

// jobSpec is the body of Create Job (with ID) and Update Job (without ID),
// after validation and with defaults filled in. It is also what the
// simulator stores for a job.
type jobSpec struct {
	ID            string        `json:"id,omitempty"`
	Payload       []payloadItem `json:"payload"`
	Configuration configuration `json:"configuration"`
	Schedule      *scheduleWire `json:"schedule,omitempty"`
	Sink          *sinkWire     `json:"sink,omitempty"`
	Proxy         *string       `json:"proxy,omitempty"`
	AuthSession   *authSession  `json:"auth_session,omitempty"`
}

type payloadItem struct {
	APIName        string          `json:"apiName"`
	Parameters     json.RawMessage `json:"parameters"`
	RequestTimeout *int            `json:"requestTimeout,omitempty"`
	Retry          *retryWire      `json:"retry,omitempty"`
}

type retryWire struct {
	MaximumAttempts *int `json:"maximumAttempts,omitempty"`
}

type configuration struct {
	Retry                 *retryWire `json:"retry,omitempty"`
	MaxConcurrentRequests *float64   `json:"maxConcurrentRequests,omitempty"`
	RequestTimeout        *int       `json:"requestTimeout,omitempty"`
}

// scheduleWire keeps the caller's JSON for jitter, every and calendar fields
// verbatim (they are unions of number/string/object/array) so a Get returns
// exactly what was sent; the parsed form lives in compiledSchedule.
type scheduleWire struct {
	Jitter    json.RawMessage `json:"jitter,omitempty"`
	Intervals []intervalWire  `json:"intervals,omitempty"`
	Calendars []calendarWire  `json:"calendars,omitempty"`
}

type intervalWire struct {
	Every json.RawMessage `json:"every"`
}

type calendarWire struct {
	Second     json.RawMessage `json:"second,omitempty"`
	Minute     json.RawMessage `json:"minute,omitempty"`
	Hour       json.RawMessage `json:"hour,omitempty"`
	DayOfMonth json.RawMessage `json:"dayOfMonth,omitempty"`
	DayOfWeek  json.RawMessage `json:"dayOfWeek,omitempty"`
	Month      json.RawMessage `json:"month,omitempty"`
	Year       json.RawMessage `json:"year,omitempty"`
	Comment    *string         `json:"comment,omitempty"`
}

// sinkWire is the union of the webhook and s3 sink shapes; validation clears
// the fields that do not belong to the chosen type. Retry and Timeout are
// webhook fields from the seed guide, absent from the SDK's schemas: they are
// accepted (decodeJobSpec reads them) and Timeout (ms) bounds each delivery,
// but responses never carry them, as a client reading the SDK's response
// schema would never see them.
type sinkWire struct {
	Type            string            `json:"type"`
	URL             string            `json:"url,omitempty"`
	Headers         map[string]string `json:"headers,omitempty"`
	Bucket          string            `json:"bucket,omitempty"`
	AccessKeyID     string            `json:"accessKeyId,omitempty"`
	SecretAccessKey string            `json:"secretAccessKey,omitempty"`
	Region          string            `json:"region,omitempty"`
	Prefix          string            `json:"prefix,omitempty"`
	Endpoint        string            `json:"endpoint,omitempty"`
	ForcePathStyle  *bool             `json:"forcePathStyle,omitempty"`
	SkipOnFail      bool              `json:"skipOnFail"`
	APIsToSend      []string          `json:"apisToSend,omitempty"`
	Retry           *int              `json:"-"`
	Timeout         *int              `json:"-"`
}

type authSession struct {
	ID             string `json:"id"`
	CheckAttempts  *int   `json:"checkAttempts,omitempty"`
	CreateAttempts *int   `json:"createAttempts,omitempty"`
}

type proxyObject struct {
	Version string `json:"version"`
	URL     string `json:"url"`
}

// jobDetail is the Get Job response (GetJobJobDetailsResponse).
type jobDetail struct {
	ID            string         `json:"id"`
	Configuration configuration  `json:"configuration"`
	Payload       *[]payloadItem `json:"payload,omitempty"` // nil only with OmitDetailPayload
	Schedule      *scheduleWire  `json:"schedule"`
	Sink          *sinkWire      `json:"sink"`
	CreatedAt     string         `json:"created_at"`
	NextRunTime   *string        `json:"next_run_time"`
	LastRunTime   *string        `json:"last_run_time"`
	State         string         `json:"state"`
	ProjectID     string         `json:"projectId"`
	AuthSession   *authSession   `json:"auth_session"`
	Proxy         *string        `json:"proxy,omitempty"`
}

// jobListItem is one element of the Get Jobs array (JobDBObjectSchema).
type jobListItem struct {
	ID            string        `json:"id"`
	WorkspaceID   string        `json:"workspace_id"`
	ProjectID     string        `json:"project_id"`
	Configuration configuration `json:"configuration"`
	Payload       []payloadItem `json:"payload"`
	Sink          *sinkWire     `json:"sink"`
	Schedule      *scheduleWire `json:"schedule"`
	NextRunTime   *string       `json:"next_run_time"`
	LastRunTime   *string       `json:"last_run_time"`
	CreatedAt     string        `json:"created_at"`
	AuthSession   *authSession  `json:"auth_session"`
	Proxy         *proxyObject  `json:"proxy"`
	Reason        *jobReason    `json:"reason"`
	State         string        `json:"state"`
	ScheduleID    *string       `json:"schedule_id"`
}

type jobReason struct {
	Type      string `json:"type"`
	Message   string `json:"message"`
	Timestamp string `json:"timestamp,omitempty"`
}

type idMessage struct {
	ID      string `json:"id"`
	Message string `json:"message"`
}

type messageOnly struct {
	Message string `json:"message"`
}

type triggerResponse struct {
	JobRunID string `json:"jobRunId"`
	Message  string `json:"message"`
}

// jobRunWire is the JobRun object (snake_case on the wire).
type jobRunWire struct {
	ID                       string         `json:"id"`
	StartTime                *string        `json:"start_time"`
	EndTime                  *string        `json:"end_time"`
	WorkspaceID              string         `json:"workspace_id"`
	ProjectID                string         `json:"project_id"`
	JobID                    string         `json:"job_id"`
	CreatedAt                string         `json:"created_at"`
	UpdatedAt                string         `json:"updated_at"`
	Type                     string         `json:"type"`
	Status                   string         `json:"status"`
	Payloads                 int            `json:"payloads"`
	SuccessfulRuns           int            `json:"successful_runs"`
	FailedRuns               int            `json:"failed_runs"`
	Error                    *jobRunError   `json:"error"`
	Reason                   *jobRunReason  `json:"reason"`
	JobConfigurationSnapshot configSnapshot `json:"job_configuration_snapshot"`
}

// jobRunError is a JobRun's error. code and category take only the values
// of the SDK's enums (JobRunErrorCodes, JobRunErrorCategories).
type jobRunError struct {
	Message       string `json:"message"`
	Code          string `json:"code"`
	Category      string `json:"category"`
	CorrelationID string `json:"correlationId,omitempty"`
	Retirable     bool   `json:"retirable"`
	DocURL        string `json:"doc_url,omitempty"`
}

type jobRunReason struct {
	Type    string `json:"type"`
	Message string `json:"message"`
	DocURL  string `json:"doc_url,omitempty"`
}

// The closed sets the SDK's JobRun schema knows. Anything else would make
// the SDK's response validation fail.
var (
	JobRunStatuses        = []string{"PENDING", "PAUSING", "PAUSED", "RESUMING", "SUCCESS", "FAILURE", "COMPLETED", "TERMINATED", "CANCELED"}
	JobRunReasonTypes     = []string{"terminated", "user-request", "auth-session-not-found", "auth-session-invalid-mid-job", "auth-session-validate-dependency-failed", "auth-session-locked", "another-job-run-active", "insufficient-resource-credits", "s3-sink-error"}
	JobRunErrorCodes      = []string{"internal-server-error", "insufficient-resource-credits"}
	JobRunErrorCategories = []string{"infrastructure", "billing"}
)

type configSnapshot struct {
	Configuration configuration `json:"configuration"`
	Sink          *sinkWire     `json:"sink"`
	AuthSession   *authSession  `json:"auth_session"`
	Proxy         *proxyObject  `json:"proxy"`
}

type jobRunsPage struct {
	JobRuns    []jobRunWire `json:"jobRuns"`
	TotalCount int          `json:"totalCount"`
}

type jobRunEnvelope struct {
	JobRun  jobRunWire     `json:"jobRun"`
	Results *jobRunResults `json:"results,omitempty"`
}

// jobRunResults points at the aggregate results file of a finished JobRun.
type jobRunResults struct {
	SignedURL           string `json:"signed_url"`
	Format              string `json:"format"`
	SignedURLExpiration string `json:"signed_url_expiration"`
	Size                int    `json:"size"`
	Key                 string `json:"key"`
}

// errorBody is Intuned's error shape for the Jobs/JobRuns endpoints.
// "retirable" is Intuned's spelling.
type errorBody struct {
	Code          string `json:"code"`
	Category      string `json:"category"`
	Message       string `json:"message"`
	Retirable     bool   `json:"retirable"`
	Details       any    `json:"details,omitempty"`
	CorrelationID string `json:"correlationId"`
}

// Sink body (webhook POST / S3 object), in the documented key order.
type sinkBody struct {
	WorkspaceID   string      `json:"workspaceId"`
	Project       projectRef  `json:"project"`
	ProjectJob    idRef       `json:"projectJob"`
	ProjectJobRun idRef       `json:"projectJobRun"`
	AuthSession   *idRef      `json:"authSession,omitempty"`
	APIInfo       sinkAPIInfo `json:"apiInfo"`
}

type projectRef struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

type idRef struct {
	ID string `json:"id"`
}

type sinkAPIInfo struct {
	Name       string          `json:"name"`
	RunID      string          `json:"runId"`
	Parameters json.RawMessage `json:"parameters"`
	Result     sinkResult      `json:"result"`
}

// sinkResult is {status:"completed", result, statusCode} or
// {status:"failed", error, message, statusCode}.
type sinkResult struct {
	Status     string          `json:"status"`
	Result     json.RawMessage `json:"result,omitempty"`
	Error      string          `json:"error,omitempty"`
	Message    string          `json:"message,omitempty"`
	StatusCode int             `json:"statusCode"`
}

// isoTime formats t like JavaScript's Date.toISOString (UTC, milliseconds).
func isoTime(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}

// DateFormats are the timestamp formats the simulator can emit for the
// fields the SDK types as plain strings (created_at, next_run_time,
// start_time, ...), so tests can prove a client reads more than one
// flavour. The list reason's timestamp stays ISO: the SDK validates it as
// an ISO date-time with offset.
var DateFormats = map[string]string{
	"iso":      "2006-01-02T15:04:05.000Z",         // JavaScript toISOString (default)
	"rfc3339":  "2006-01-02T15:04:05-07:00",        // no fraction, numeric offset
	"micro":    "2006-01-02T15:04:05.000000-07:00", // microseconds, numeric offset
	"postgres": "2006-01-02 15:04:05.000000-07",    // PostgreSQL's text form
	"naive":    "2006-01-02T15:04:05.000",          // no zone (UTC meant)
}

// stamp formats t in the named DateFormats layout ("" = iso).
func stamp(format string, t time.Time) string {
	layout, ok := DateFormats[format]
	if !ok {
		layout = DateFormats["iso"]
	}
	return t.UTC().Format(layout)
}

func stampPtr(format string, t *time.Time) *string {
	if t == nil {
		return nil
	}
	s := stamp(format, *t)
	return &s
}

func isoPtr(t *time.Time) *string {
	if t == nil {
		return nil
	}
	s := isoTime(*t)
	return &s
}
