package wireschema

import (
	"net/http"
	"strings"
	"time"
)

// The shapes below follow docs/intuned-api.md, which records the
// corrections found against the official SDK: auth_session (snake_case) in
// requests too; integers where the SDK says int; maxConcurrentRequests a
// number; dayOfWeek/month upper-case names; "*" only as a whole calendar field; a range step only
// with an end; webhook retry/timeout (from Intuned's webhook guide) only in
// requests; JobRun statuses, reasons and error codes as the SDK's enums.

var (
	days   = []string{"SUNDAY", "MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY"}
	months = []string{"JANUARY", "FEBRUARY", "MARCH", "APRIL", "MAY", "JUNE", "JULY", "AUGUST", "SEPTEMBER", "OCTOBER", "NOVEMBER", "DECEMBER"}
)

// calendarField is one calendar field whose values are v: a value, a
// {start, end?} or {start, step, end} range, a list of those, or "*".
func calendarField(v Schema) Schema {
	stepped := Obj(Req("start", v), Req("step", Int), Req("end", v))
	plain := Obj(Req("start", v), Opt("end", v))
	return OneOf(v, stepped, plain, Arr(OneOf(v, stepped, plain)), Enum("*"))
}

var (
	retry = Obj(Opt("maximumAttempts", Int))

	payloadItem = Obj(
		Req("apiName", Str),
		Req("parameters", Map(Any)),
		Opt("requestTimeout", Int),
		Opt("retry", retry),
	)

	configuration = Obj(
		Opt("retry", retry),
		Opt("maxConcurrentRequests", Num),
		Opt("requestTimeout", Int),
	)

	num      = calendarField(Int)
	calendar = Obj(
		Opt("second", num), Opt("minute", num), Opt("hour", num),
		Opt("dayOfMonth", num), Opt("year", num),
		Opt("dayOfWeek", calendarField(Enum(days...))),
		Opt("month", calendarField(Enum(months...))),
		Opt("comment", Str),
	)

	schedule = Obj(
		Opt("jitter", OneOf(Int, Str)),
		Opt("intervals", Arr(Obj(Req("every", OneOf(Int, Str))))),
		Opt("calendars", Arr(calendar)),
	)

	webhookResponse = Obj(
		Req("type", Enum("webhook")),
		Req("url", Str),
		Opt("headers", Map(Str)),
		Req("skipOnFail", Bool), // always present in answers
		Opt("apisToSend", Arr(Str)),
	)
	s3Response = Obj(
		Req("type", Enum("s3")),
		Req("bucket", Str), Req("accessKeyId", Str), Req("secretAccessKey", Str), Req("region", Str),
		Opt("prefix", Str),
		Req("skipOnFail", Bool),
		Opt("apisToSend", Arr(Str)),
		Opt("endpoint", Str),
		Opt("forcePathStyle", Bool),
	)
	// In requests skipOnFail may be left out (default false), and a webhook
	// may carry the guide's retry and timeout (ms).
	webhookRequest = With(Without(webhookResponse, "skipOnFail"), Opt("skipOnFail", Bool), Opt("retry", Int), Opt("timeout", Int))
	s3Request      = With(Without(s3Response, "skipOnFail"), Opt("skipOnFail", Bool))

	authSession = Obj(Req("id", Str), Opt("checkAttempts", Int), Opt("createAttempts", Int))
	proxyObject = Obj(Req("version", Enum("v1")), Req("url", Str))

	// UpdateJobRequest is the body of PUT .../jobs/{jobId}.
	UpdateJobRequest = Obj(
		Req("payload", Arr(payloadItem)),
		Req("configuration", configuration),
		Opt("schedule", Null(schedule)),
		Opt("sink", Null(OneOf(webhookRequest, s3Request))),
		Opt("proxy", Null(Str)),
		Opt("auth_session", Null(authSession)),
	)
	// CreateJobRequest is the body of POST .../jobs.
	CreateJobRequest = With(UpdateJobRequest, Req("id", Str))

	sinkResponse = Null(OneOf(webhookResponse, s3Response))

	// JobDetail is the answer of Get Job.
	JobDetail = Obj(
		Req("id", Str),
		Req("configuration", configuration),
		Opt("payload", Arr(payloadItem)),
		Opt("schedule", Null(schedule)),
		Opt("sink", sinkResponse),
		Req("created_at", Str),
		Opt("next_run_time", Null(Str)),
		Opt("last_run_time", Null(Str)),
		Req("state", Enum("ACTIVE", "PAUSED")),
		Req("projectId", Str),
		Opt("auth_session", Null(authSession)),
		Opt("proxy", Str),
	)

	// JobListItem is one element of Get Jobs.
	JobListItem = Obj(
		Req("id", Str),
		Req("workspace_id", Str),
		Req("project_id", Str),
		Req("configuration", configuration),
		Req("payload", Arr(payloadItem)),
		Opt("sink", sinkResponse),
		Opt("schedule", Null(schedule)),
		Opt("next_run_time", Null(Str)),
		Opt("last_run_time", Null(Str)),
		Req("created_at", Str),
		Opt("auth_session", Null(authSession)),
		Opt("proxy", Null(proxyObject)),
		Opt("reason", Null(Obj(
			Req("type", Enum("paused", "terminated")),
			Req("message", Str),
			Opt("details", Any),
			Opt("timestamp", isoDateTime{}),
		))),
		Req("state", Enum("ACTIVE", "PAUSED")),
		Opt("schedule_id", Null(Str)),
	)
	// JobList is the answer of Get Jobs.
	JobList = Arr(JobListItem)

	// The JobRun enums of the SDK.
	JobRunStatuses    = []string{"PENDING", "PAUSING", "PAUSED", "RESUMING", "SUCCESS", "FAILURE", "COMPLETED", "TERMINATED", "CANCELED"}
	JobRunReasonTypes = []string{"terminated", "user-request", "auth-session-not-found", "auth-session-invalid-mid-job",
		"auth-session-validate-dependency-failed", "auth-session-locked", "another-job-run-active", "insufficient-resource-credits", "s3-sink-error"}

	jobRun = Obj(
		Req("id", Str),
		Req("start_time", Str),
		Req("end_time", Null(Str)),
		Req("workspace_id", Str),
		Req("project_id", Str),
		Req("job_id", Str),
		Req("created_at", Str),
		Req("updated_at", Str),
		Req("type", Enum("MANUAL", "SCHEDULED")),
		Req("status", Enum(JobRunStatuses...)),
		Req("payloads", Null(Int)),
		Req("successful_runs", Null(Int)),
		Req("failed_runs", Null(Int)),
		Opt("error", Null(Obj(
			Req("message", Str),
			Req("code", Enum("internal-server-error", "insufficient-resource-credits")),
			Opt("details", Any),
			Req("category", Enum("infrastructure", "billing")),
			Opt("correlationId", Str),
			Opt("retirable", Bool),
			Opt("doc_url", Str),
		))),
		Opt("reason", Null(Obj(
			Req("type", Enum(JobRunReasonTypes...)),
			Req("message", Str),
			Opt("details", Any),
			Opt("doc_url", Str),
		))),
		Req("job_configuration_snapshot", Obj(
			Req("configuration", configuration),
			Opt("sink", sinkResponse),
			Opt("auth_session", Null(authSession)),
			Opt("proxy", Null(proxyObject)),
		)),
	)

	// JobRuns is the answer of Get Job Runs.
	JobRuns = Obj(Req("jobRuns", Arr(jobRun)), Req("totalCount", Int))
	// JobRunEnvelope is the answer of Get Job Run.
	JobRunEnvelope = Obj(
		Req("jobRun", jobRun),
		Opt("results", Obj(
			Req("signed_url", Str),
			Opt("signed_url_expiration", Str),
			Opt("size", Num),
			Opt("key", Str),
			Req("format", Str),
		)),
	)

	CreateJobResponse = Obj(Req("id", Str), Req("message", Enum("created")))
	UpdateJobResponse = Obj(Req("id", Str), Req("message", Enum("updated job successfully")))
	PauseResponse     = Obj(Req("message", Enum("Paused")))
	ResumeResponse    = Obj(Req("message", Enum("Resumed")))
	TriggerResponse   = Obj(Req("jobRunId", Str), Req("message", Str))
	MessageResponse   = Obj(Req("message", Str))

	// ErrorCodes are the error codes a Jobs/JobRuns answer may carry: the
	// SDK's (bad-request, unauthorized, not-found) and three intuned-sim
	// documents as its own choices for statuses the SDK does not model:
	// conflict (409, duplicate create when configured), too-many-requests
	// (429) and internal-server-error (injected 5xx; a code the SDK knows
	// from JobRun and Run errors).
	ErrorCodes = []string{"bad-request", "unauthorized", "not-found", "conflict", "too-many-requests", "internal-server-error"}

	// ErrorBody is the error answer of the Jobs/JobRuns endpoints.
	ErrorBody = Obj(
		Req("code", Enum(ErrorCodes...)),
		Req("category", Enum("user", "infrastructure")),
		Req("message", Str),
		Req("retirable", Bool),
		Opt("details", Any),
		Req("correlationId", Str),
	)
)

// isoDateTime is a string the SDK reads with z.string().datetime({offset:
// true}): ISO-8601 with a Z or numeric offset.
type isoDateTime struct{}

func (isoDateTime) check(path string, v any, errs *[]string) {
	s, ok := v.(string)
	if !ok {
		fail(errs, path, "want an ISO-8601 date-time string, got %s", typeName(v))
		return
	}
	if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
		fail(errs, path, "want an ISO-8601 date-time with offset, got %q", s)
	}
}

// Request returns the schema of a request body for method and path (a
// concrete path or a route template), or nil when the request has no body.
func Request(method, path string) Schema {
	switch op := operation(method, path); op {
	case "CreateJob":
		return CreateJobRequest
	case "UpdateJob":
		return UpdateJobRequest
	}
	return nil
}

// Response returns the schema of an answer, or nil when it has no body
// (204) or the operation is unknown.
func Response(method, path string, status int) Schema {
	if status == http.StatusNoContent {
		return nil
	}
	if status < 200 || status > 299 {
		return ErrorBody
	}
	switch operation(method, path) {
	case "ListJobs":
		return JobList
	case "CreateJob":
		return CreateJobResponse
	case "GetJob":
		return JobDetail
	case "UpdateJob":
		return UpdateJobResponse
	case "PauseJob":
		return PauseResponse
	case "ResumeJob":
		return ResumeResponse
	case "TriggerJob":
		return TriggerResponse
	case "ListJobRuns":
		return JobRuns
	case "GetJobRun":
		return JobRunEnvelope
	case "TerminateJobRun":
		return MessageResponse
	}
	return nil
}

// operation names the SDK operation of method and path
// (.../projects/{p}/jobs[/{jobId}[/pause|/resume|/trigger|/runs[/{runId}[/terminate]]]]).
func operation(method, path string) string {
	_, rest, ok := strings.Cut(path, "/projects/")
	if !ok {
		return ""
	}
	segs := strings.Split(strings.Trim(rest, "/"), "/")
	if len(segs) < 2 || segs[1] != "jobs" {
		return ""
	}
	segs = segs[2:] // after {p}/jobs
	switch {
	case len(segs) == 0 && method == http.MethodGet:
		return "ListJobs"
	case len(segs) == 0 && method == http.MethodPost:
		return "CreateJob"
	case len(segs) == 1:
		return map[string]string{http.MethodGet: "GetJob", http.MethodPut: "UpdateJob", http.MethodDelete: "DeleteJob"}[method]
	case len(segs) == 2 && method == http.MethodPost:
		return map[string]string{"pause": "PauseJob", "resume": "ResumeJob", "trigger": "TriggerJob"}[segs[1]]
	case len(segs) == 2 && segs[1] == "runs" && method == http.MethodGet:
		return "ListJobRuns"
	case len(segs) == 3 && segs[1] == "runs" && method == http.MethodGet:
		return "GetJobRun"
	case len(segs) == 4 && segs[1] == "runs" && segs[3] == "terminate" && method == http.MethodPost:
		return "TerminateJobRun"
	}
	return ""
}
