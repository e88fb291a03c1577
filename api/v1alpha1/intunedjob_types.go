package v1alpha1

import (
	"slices"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// DeletionPolicy says what happens to the Intuned Job when its IntunedJob is deleted.
// +kubebuilder:validation:Enum=Delete;Orphan
type DeletionPolicy string

const (
	// DeletionPolicyDelete deletes the Job on Intuned, then removes the finalizer.
	DeletionPolicyDelete DeletionPolicy = "Delete"
	// DeletionPolicyOrphan leaves the Job on Intuned untouched.
	DeletionPolicyOrphan DeletionPolicy = "Orphan"
)

// JobState is the state of the Job on Intuned, as Intuned reports it.
// +kubebuilder:validation:Enum=ACTIVE;PAUSED
type JobState string

const (
	JobStateActive JobState = "ACTIVE"
	JobStatePaused JobState = "PAUSED"
)

// IntunedJobSpec declares one Job on Intuned (https://intunedhq.com): a batch
// of scraper API calls (payload), optionally on a schedule, whose per-Run
// results are pushed to a sink.
//
// The Job is identified on Intuned by (workspace from credentials, project,
// jobId). The project and the job id cannot change after creation.
type IntunedJobSpec struct {
	// Project is the name of the Intuned project whose APIs the Job runs,
	// e.g. "ecommerce-scraper-quickstart". The project must already be
	// deployed on Intuned. Immutable.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="project is immutable; create a new IntunedJob for another project"
	// +required
	Project string `json:"project"`

	// JobID is the Job's id on Intuned. Defaults to metadata.name. Intuned
	// requires at least 7 characters of letters, digits, '-' and '_' (no dots).
	// The effective id (jobId, or metadata.name) is immutable.
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="size(self) >= 7",message="jobId must be at least 7 characters long (Intuned job id rule)"
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-zA-Z0-9_-]+$')",message="jobId may contain only letters, digits, '-' and '_' (Intuned job id rule)"
	// +optional
	JobID string `json:"jobId,omitempty"`

	// CredentialsRef names a Secret in the same namespace with the keys
	// "workspaceId" (Intuned workspace UUID), "apiKey" (Intuned API key) and
	// optionally "baseURL" (API base URL override, e.g. a local intuned-sim).
	// When omitted, the manager-wide default credentials Secret is used if the
	// manager was started with one and allows it in this namespace (its own
	// namespace and --default-credentials-namespaces); otherwise the job
	// reports CredentialsNotFound (no default) or is Stalled with
	// DefaultCredentialsNotAllowed.
	// +optional
	CredentialsRef *LocalObjectReference `json:"credentialsRef,omitempty"`

	// Payload lists the API calls each JobRun makes, one entry per call.
	// At least one entry is required.
	// +kubebuilder:validation:MaxItems=1000
	// +kubebuilder:validation:XValidation:rule="size(self) > 0",message="payload must list at least one API call, e.g. [{apiName: list}]"
	// +listType=atomic
	// +required
	Payload []JobPayload `json:"payload"`

	// Configuration holds the Job-wide execution settings (retries,
	// concurrency, timeout). Per-payload settings override them.
	// +kubebuilder:default={}
	// +optional
	Configuration *JobConfiguration `json:"configuration,omitempty"`

	// Schedule runs the Job periodically. Without a schedule the Job only runs
	// when triggered (annotation intuned.io/trigger).
	// +optional
	Schedule *JobSchedule `json:"schedule,omitempty"`

	// Sink says where Intuned delivers each Run's result: exactly one of
	// webhook (an HTTP endpoint, or a WebhookReceiver in this namespace) or s3
	// (an S3-compatible bucket). Without a sink, results stay on Intuned.
	// +optional
	Sink *JobSink `json:"sink,omitempty"`

	// Proxy is a proxy URL the Job's browsers use, e.g.
	// "http://proxy.example.com:8080". Proxies that need a password belong in
	// a Secret: use proxyFrom instead. Mutually exclusive with proxyFrom.
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && url(self).getHostname() != ''",message="proxy must be an absolute URL such as http://proxy.example.com:8080"
	// +optional
	Proxy string `json:"proxy,omitempty"`

	// ProxyFrom reads the proxy URL from a Secret key (use this when the URL
	// carries credentials). Mutually exclusive with proxy.
	// +optional
	ProxyFrom *SecretKeyRef `json:"proxyFrom,omitempty"`

	// AuthSession makes every Run use an Intuned auth session (a logged-in
	// browser state) of the project.
	// +optional
	AuthSession *JobAuthSession `json:"authSession,omitempty"`

	// Paused pauses the Job on Intuned (scheduled runs stop firing) while true,
	// and resumes it when set back to false.
	// +kubebuilder:default=false
	// +optional
	Paused bool `json:"paused,omitempty"`

	// Suspend stops all reconciliation of this object while true: the operator
	// makes no Intuned API calls for it (the Job on Intuned keeps running as
	// it is). Use it for maintenance or to hand the Job to someone else.
	// +kubebuilder:default=false
	// +optional
	Suspend bool `json:"suspend,omitempty"`

	// DeletionPolicy says what happens to the Intuned Job when this object is
	// deleted: Delete (default) deletes it on Intuned; Orphan leaves it there.
	// +kubebuilder:default=Delete
	// +optional
	DeletionPolicy DeletionPolicy `json:"deletionPolicy,omitempty"`

	// Adopt lets the operator take over a Job that already exists on Intuned
	// with the same id (and overwrite it with this spec). When false (default)
	// an existing Job that this object did not create is left alone and the
	// object reports AlreadyExists.
	// +kubebuilder:default=false
	// +optional
	Adopt bool `json:"adopt,omitempty"`

	// PollInterval is how often the operator re-reads the Job and its last
	// JobRun from Intuned to detect drift (changes made outside Kubernetes) and
	// refresh status. Go duration, at least 10s. Default 10m.
	// +kubebuilder:default="10m"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$')",message="pollInterval must be a Go duration such as 30s, 10m or 1h30m (units ns, us, ms, s, m, h; days are not a unit: write 24h)"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$') || duration(self) >= duration('10s')",message="pollInterval must be at least 10s (Intuned allows 20 requests per minute per path)"
	// +optional
	PollInterval *metav1.Duration `json:"pollInterval,omitempty"`
}

// JobPayload is one API call of a JobRun.
type JobPayload struct {
	// APIName is the API to call: its file path relative to the project's api/
	// folder, without extension (e.g. "list" or "products/details").
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	// +required
	APIName string `json:"apiName"`

	// Parameters is the JSON object passed to the API. Any JSON object;
	// defaults to {}.
	// +kubebuilder:validation:Type=object
	// +kubebuilder:pruning:PreserveUnknownFields
	// +kubebuilder:default={}
	// +optional
	Parameters *apiextensionsv1.JSON `json:"parameters,omitempty"`

	// RequestTimeout is the time limit of this call in seconds (Intuned
	// default 600, or configuration.requestTimeout).
	// +kubebuilder:validation:Minimum=1
	// +optional
	RequestTimeout *int32 `json:"requestTimeout,omitempty"`

	// Retry overrides configuration.retry for this call.
	// +optional
	Retry *RetryPolicy `json:"retry,omitempty"`
}

// RetryPolicy is Intuned's retry setting for API calls.
type RetryPolicy struct {
	// MaximumAttempts is how many times a failing call is attempted in total.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=50
	// +kubebuilder:default=3
	// +optional
	MaximumAttempts *int32 `json:"maximumAttempts,omitempty"`
}

// JobConfiguration holds Job-wide execution settings.
type JobConfiguration struct {
	// Retry is the default retry policy of every payload call.
	// +optional
	Retry *RetryPolicy `json:"retry,omitempty"`

	// MaxConcurrentRequests is how many payload calls Intuned runs in one
	// batch (an upper bound, not a guarantee of parallelism).
	// +kubebuilder:validation:Minimum=1
	// +optional
	MaxConcurrentRequests *int32 `json:"maxConcurrentRequests,omitempty"`

	// RequestTimeout is the default time limit of each payload call, in
	// seconds. Default 600 (Intuned's default).
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:default=600
	// +optional
	RequestTimeout *int32 `json:"requestTimeout,omitempty"`
}

// JobSchedule runs the Job periodically. Intuned computes the next run time
// from all intervals and calendars together (the earliest match wins); times
// are UTC.
// +kubebuilder:validation:XValidation:rule="has(self.intervals) || has(self.calendars)",message="schedule needs at least one entry in intervals or calendars"
type JobSchedule struct {
	// Intervals run the Job every fixed period, aligned to the Unix epoch.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	// +listType=atomic
	// +optional
	Intervals []ScheduleInterval `json:"intervals,omitempty"`

	// Calendars run the Job at wall-clock times, cron-like (see
	// ScheduleCalendar).
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	// +listType=atomic
	// +optional
	Calendars []ScheduleCalendar `json:"calendars,omitempty"`

	// Jitter delays each scheduled run by a random amount up to this value,
	// to spread load. Same format as intervals[].every: milliseconds as digits
	// ("60000") or a number with unit ms, s, m, h or d ("1m", "6h").
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="self.matches('^[0-9]+(ms|s|m|h|d)?$')",message="jitter must be milliseconds as digits (\"60000\") or a whole number with unit ms, s, m, h or d (\"1m\", \"6h\")"
	// +optional
	Jitter string `json:"jitter,omitempty"`
}

// ScheduleInterval runs the Job every fixed period.
type ScheduleInterval struct {
	// Every is the period: milliseconds as digits ("3600000") or a whole
	// number with unit ms, s, m, h or d ("30m", "1h", "7d").
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="self.matches('^[0-9]+(ms|s|m|h|d)?$')",message="every must be milliseconds as digits (\"3600000\") or a whole number with unit ms, s, m, h or d (\"30m\", \"1h\")"
	// +required
	Every string `json:"every"`
}

// ScheduleCalendar matches wall-clock times (UTC), like a cron line. Each
// field is a list of ranges and matches a value if any range matches it:
//
//	a single value:  [{start: 9}]
//	a list:          [{start: 9}, {start: 17}]
//	a range:         [{start: 9, end: 17}]           (9,10,...,17)
//	a stepped range: [{start: 0, end: 59, step: 15}] (0,15,30,45)
//	every value "*": the full range, e.g. minute [{start: 0, end: 59}]
//
// Unset fields take Intuned's defaults: second, minute and hour default to 0;
// dayOfMonth, month, year and dayOfWeek default to every value. So
// {hour: [{start: 12}], dayOfWeek: [{start: MONDAY, end: FRIDAY}]} runs at
// 12:00:00 UTC on weekdays.
type ScheduleCalendar struct {
	// Second of the minute, 0-59. Default 0.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=60
	// +kubebuilder:validation:XValidation:rule="self.all(r, r.start <= 59 && (!has(r.end) || r.end <= 59))",message="second values must be between 0 and 59"
	// +listType=atomic
	// +optional
	Second []CalendarRange `json:"second,omitempty"`

	// Minute of the hour, 0-59. Default 0.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=60
	// +kubebuilder:validation:XValidation:rule="self.all(r, r.start <= 59 && (!has(r.end) || r.end <= 59))",message="minute values must be between 0 and 59"
	// +listType=atomic
	// +optional
	Minute []CalendarRange `json:"minute,omitempty"`

	// Hour of the day, 0-23. Default 0.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=24
	// +kubebuilder:validation:XValidation:rule="self.all(r, r.start <= 23 && (!has(r.end) || r.end <= 23))",message="hour values must be between 0 and 23"
	// +listType=atomic
	// +optional
	Hour []CalendarRange `json:"hour,omitempty"`

	// DayOfMonth, 1-31. Default every day.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=31
	// +kubebuilder:validation:XValidation:rule="self.all(r, r.start >= 1 && r.start <= 31 && (!has(r.end) || r.end <= 31))",message="dayOfMonth values must be between 1 and 31"
	// +listType=atomic
	// +optional
	DayOfMonth []CalendarRange `json:"dayOfMonth,omitempty"`

	// Month, by name (JANUARY..DECEMBER). Default every month.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=12
	// +listType=atomic
	// +optional
	Month []MonthRange `json:"month,omitempty"`

	// Year, full (e.g. 2027). Default every year.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:XValidation:rule="self.all(r, r.start >= 1970 && r.start <= 9999 && (!has(r.end) || r.end <= 9999))",message="year values must be full years between 1970 and 9999"
	// +listType=atomic
	// +optional
	Year []CalendarRange `json:"year,omitempty"`

	// DayOfWeek, by name (SUNDAY..SATURDAY). Default every day.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=7
	// +listType=atomic
	// +optional
	DayOfWeek []DayOfWeekRange `json:"dayOfWeek,omitempty"`

	// Comment is a free-form description kept with the calendar on Intuned.
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	Comment string `json:"comment,omitempty"`
}

// CalendarRange matches start..end (inclusive) every step. With only start it
// matches that single value.
// +kubebuilder:validation:XValidation:rule="!has(self.end) || self.end >= self.start",message="range end must be greater than or equal to start"
// +kubebuilder:validation:XValidation:rule="!has(self.step) || has(self.end)",message="step needs end: Intuned's schedule API holds a step only in {start, step, end} (a range without end is the single value start); set end, e.g. {start: 0, end: 59, step: 15}, or remove step"
type CalendarRange struct {
	// Start is the first matching value.
	// +kubebuilder:validation:Minimum=0
	// +required
	Start int32 `json:"start"`
	// End is the last matching value (inclusive). Defaults to start.
	// +kubebuilder:validation:Minimum=0
	// +optional
	End *int32 `json:"end,omitempty"`
	// Step matches every step-th value from start to end. Default 1.
	// Needs end.
	// +kubebuilder:validation:Minimum=1
	// +optional
	Step *int32 `json:"step,omitempty"`
}

// DayOfWeek is an English weekday name in capitals, as Intuned spells it.
// +kubebuilder:validation:Enum=SUNDAY;MONDAY;TUESDAY;WEDNESDAY;THURSDAY;FRIDAY;SATURDAY
type DayOfWeek string

// DayOfWeekRange matches weekdays start..end (inclusive, SUNDAY first) every
// step. With only start it matches that single day. A range does not wrap
// around the week: Intuned refuses end before start.
// +kubebuilder:validation:XValidation:rule="!has(self.end) || {'SUNDAY': 0, 'MONDAY': 1, 'TUESDAY': 2, 'WEDNESDAY': 3, 'THURSDAY': 4, 'FRIDAY': 5, 'SATURDAY': 6}[self.end] >= {'SUNDAY': 0, 'MONDAY': 1, 'TUESDAY': 2, 'WEDNESDAY': 3, 'THURSDAY': 4, 'FRIDAY': 5, 'SATURDAY': 6}[self.start]",message="dayOfWeek range end comes before its start: Intuned refuses ranges that wrap around the week (SUNDAY is first); split it, e.g. FRIDAY..MONDAY as [{start: FRIDAY, end: SATURDAY}, {start: SUNDAY, end: MONDAY}]"
// +kubebuilder:validation:XValidation:rule="!has(self.step) || has(self.end)",message="step needs end: Intuned's schedule API holds a step only in {start, step, end} (a range without end is the single value start); set end, e.g. {start: 0, end: 59, step: 15}, or remove step"
type DayOfWeekRange struct {
	// Start is the first matching day.
	// +required
	Start DayOfWeek `json:"start"`
	// End is the last matching day (inclusive). Defaults to start.
	// +optional
	End DayOfWeek `json:"end,omitempty"`
	// Step matches every step-th day from start. Default 1.
	// +kubebuilder:validation:Minimum=1
	// +optional
	Step *int32 `json:"step,omitempty"`
}

// Month is an English month name in capitals, as Intuned spells it.
// +kubebuilder:validation:Enum=JANUARY;FEBRUARY;MARCH;APRIL;MAY;JUNE;JULY;AUGUST;SEPTEMBER;OCTOBER;NOVEMBER;DECEMBER
type Month string

// MonthRange matches months start..end (inclusive) every step. With only
// start it matches that single month. A range does not wrap around the
// year: Intuned refuses end before start.
// +kubebuilder:validation:XValidation:rule="!has(self.end) || {'JANUARY': 1, 'FEBRUARY': 2, 'MARCH': 3, 'APRIL': 4, 'MAY': 5, 'JUNE': 6, 'JULY': 7, 'AUGUST': 8, 'SEPTEMBER': 9, 'OCTOBER': 10, 'NOVEMBER': 11, 'DECEMBER': 12}[self.end] >= {'JANUARY': 1, 'FEBRUARY': 2, 'MARCH': 3, 'APRIL': 4, 'MAY': 5, 'JUNE': 6, 'JULY': 7, 'AUGUST': 8, 'SEPTEMBER': 9, 'OCTOBER': 10, 'NOVEMBER': 11, 'DECEMBER': 12}[self.start]",message="month range end comes before its start: Intuned refuses ranges that wrap around the year; split it, e.g. NOVEMBER..FEBRUARY as [{start: NOVEMBER, end: DECEMBER}, {start: JANUARY, end: FEBRUARY}]"
// +kubebuilder:validation:XValidation:rule="!has(self.step) || has(self.end)",message="step needs end: Intuned's schedule API holds a step only in {start, step, end} (a range without end is the single value start); set end, e.g. {start: 0, end: 59, step: 15}, or remove step"
type MonthRange struct {
	// Start is the first matching month.
	// +required
	Start Month `json:"start"`
	// End is the last matching month (inclusive). Defaults to start.
	// +optional
	End Month `json:"end,omitempty"`
	// Step matches every step-th month from start. Default 1.
	// +kubebuilder:validation:Minimum=1
	// +optional
	Step *int32 `json:"step,omitempty"`
}

// JobSink is where Intuned delivers each Run's result. Set exactly one of
// webhook or s3.
// +kubebuilder:validation:XValidation:rule="has(self.webhook) != has(self.s3)",message="sink must set exactly one of webhook or s3"
type JobSink struct {
	// Webhook POSTs one JSON body per Run to an HTTP endpoint: either a URL
	// you run, or a WebhookReceiver in this namespace (receiverRef), whose URL
	// and auth token the operator fills in. Set exactly one of url or
	// receiverRef. Intuned retries failed deliveries (non-2xx) with backoff
	// for up to one hour.
	// +optional
	Webhook *WebhookSink `json:"webhook,omitempty"`

	// S3 writes each Run's result as a JSON object into an S3-compatible
	// bucket (AWS S3, Cloudflare R2, MinIO, ...). Intuned retries failed
	// writes for up to 10 minutes.
	// +optional
	S3 *S3Sink `json:"s3,omitempty"`
}

// WebhookSink delivers results to an HTTP endpoint. Set exactly one of url or
// receiverRef. Intuned retries failed deliveries (non-2xx) with backoff for up
// to one hour.
// +kubebuilder:validation:XValidation:rule="has(self.url) != has(self.receiverRef)",message="webhook sink must set exactly one of url or receiverRef"
// +kubebuilder:validation:XValidation:rule="!has(self.receiverRef) || !has(self.headers) || !self.headers.exists(k, k.lowerAscii() == 'authorization')",message="do not set an Authorization header with receiverRef: the operator sets it from the WebhookReceiver's token"
type WebhookSink struct {
	// URL receives the POSTs. It must use https unless the host is loopback
	// (localhost, 127.x.x.x, [::1]) or cluster-local (*.svc,
	// *.svc.cluster.local).
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && url(self).getScheme() in ['http', 'https'] && url(self).getHostname() != ''",message="url must be an absolute http(s) URL such as https://hooks.example.com/intuned"
	// +kubebuilder:validation:XValidation:rule="!isURL(self) || url(self).getScheme() == 'https' || url(self).getHostname() == 'localhost' || url(self).getHostname().startsWith('127.') || url(self).getHostname() == '::1' || url(self).getHostname().endsWith('.svc') || url(self).getHostname().endsWith('.svc.cluster.local')",message="url must use https unless the host is loopback (localhost, 127.x.x.x, [::1]) or cluster-local (*.svc, *.svc.cluster.local)"
	// +optional
	URL string `json:"url,omitempty"`

	// ReceiverRef names a WebhookReceiver in this namespace. The operator
	// uses its status.url and sets the Authorization header from its token,
	// and waits until the receiver is Ready before pushing the Job.
	// +optional
	ReceiverRef *LocalObjectReference `json:"receiverRef,omitempty"`

	// Headers are extra HTTP headers sent with every POST. Put secrets in
	// headersFrom instead.
	// +kubebuilder:validation:MaxProperties=64
	// +optional
	Headers map[string]string `json:"headers,omitempty"`

	// HeadersFrom are extra HTTP headers whose values come from Secret keys
	// (e.g. an Authorization header for your own endpoint).
	// +kubebuilder:validation:MaxItems=64
	// +listType=map
	// +listMapKey=name
	// +optional
	HeadersFrom []HeaderFromSecret `json:"headersFrom,omitempty"`

	// Retry is how many times a failed delivery is retried. Default 3.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	// +kubebuilder:default=3
	// +optional
	Retry *int32 `json:"retry,omitempty"`

	// Timeout of one delivery request in milliseconds. Default 5000.
	// +kubebuilder:validation:Minimum=100
	// +kubebuilder:validation:Maximum=300000
	// +kubebuilder:default=5000
	// +optional
	Timeout *int32 `json:"timeout,omitempty"`

	// SkipOnFail, when true, does not deliver the results of failed Runs.
	// +kubebuilder:default=false
	// +optional
	SkipOnFail bool `json:"skipOnFail,omitempty"`

	// APIsToSend limits delivery to Runs of these API names. Empty: all APIs.
	// +kubebuilder:validation:MaxItems=256
	// +listType=set
	// +optional
	APIsToSend []string `json:"apisToSend,omitempty"`

	// Backfill says what happens when results of a JobRun are missing from
	// the WebhookReceiver of receiverRef after Intuned's retry window (one
	// hour): Auto (the default) fetches the JobRun's results file from
	// Intuned and stores the missing results; Manual only reports the gap
	// (condition DataComplete) until the intuned.io/backfill annotation names
	// the JobRun. Only used with receiverRef.
	// +kubebuilder:validation:Enum=Auto;Manual
	// +optional
	Backfill BackfillPolicy `json:"backfill,omitempty"`
}

// BackfillPolicy is Auto or Manual.
type BackfillPolicy string

// Backfill policies.
const (
	BackfillAuto   BackfillPolicy = "Auto"
	BackfillManual BackfillPolicy = "Manual"
)

// HeaderFromSecret is one HTTP header whose value is read from a Secret key.
type HeaderFromSecret struct {
	// Name of the HTTP header, e.g. "Authorization".
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:XValidation:rule="self.matches('^[A-Za-z0-9!#$%&*+.^_`|~-]+$')",message="header name must be a valid HTTP token (letters, digits and !#$%&*+.^_`|~-)"
	// +required
	Name string `json:"name"`
	// SecretKeyRef selects the Secret key holding the header value.
	// +required
	SecretKeyRef SecretKeyRef `json:"secretKeyRef"`
}

// S3Sink writes results into an S3-compatible bucket. Intuned retries failed
// writes for up to 10 minutes, then pauses the JobRun.
type S3Sink struct {
	// Bucket name.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=255
	// +required
	Bucket string `json:"bucket"`

	// Region of the bucket, e.g. "us-west-2" (use "auto" for Cloudflare R2).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	// +required
	Region string `json:"region"`

	// Prefix is prepended to every object key, e.g. "scrapes/".
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	Prefix string `json:"prefix,omitempty"`

	// Endpoint is the S3 API URL of an S3-compatible service (R2, MinIO, ...).
	// Empty: AWS S3.
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && url(self).getScheme() in ['http', 'https'] && url(self).getHostname() != ''",message="endpoint must be an absolute http(s) URL such as https://<account>.r2.cloudflarestorage.com"
	// +optional
	Endpoint string `json:"endpoint,omitempty"`

	// ForcePathStyle uses path-style URLs (endpoint/bucket/key), which many
	// S3-compatible services need.
	// +optional
	ForcePathStyle *bool `json:"forcePathStyle,omitempty"`

	// SkipOnFail, when true, does not write the results of failed Runs.
	// +kubebuilder:default=false
	// +optional
	SkipOnFail bool `json:"skipOnFail,omitempty"`

	// APIsToSend limits delivery to Runs of these API names. Empty: all APIs.
	// +kubebuilder:validation:MaxItems=256
	// +listType=set
	// +optional
	APIsToSend []string `json:"apisToSend,omitempty"`

	// CredentialsSecretRef names a Secret in this namespace with the keys
	// "accessKeyId" and "secretAccessKey".
	// +required
	CredentialsSecretRef LocalObjectReference `json:"credentialsSecretRef"`
}

// JobAuthSession makes every Run use an Intuned auth session.
type JobAuthSession struct {
	// ID of the auth session in the project.
	// +kubebuilder:validation:MinLength=3
	// +kubebuilder:validation:MaxLength=253
	// +required
	ID string `json:"id"`
	// CheckAttempts is how many times Intuned checks the session is valid
	// before a Run. Default 3.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=50
	// +kubebuilder:default=3
	// +optional
	CheckAttempts *int32 `json:"checkAttempts,omitempty"`
	// CreateAttempts is how many times Intuned tries to (re)create an invalid
	// session. Default 3.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=50
	// +kubebuilder:default=3
	// +optional
	CreateAttempts *int32 `json:"createAttempts,omitempty"`
}

// IntunedJobStatus is the status of an IntunedJob: the outcome of the last
// reconcile (conditions, observedGeneration, workspaceId, jobId); what
// Intuned last reported about the Job (jobState, nextRunTime, lastRunTime,
// lastJobRun, lastSyncTime, sink); and what the operator remembers to act
// right across reconciles and restarts (managed, lastApplied,
// lastHandledTrigger, lastTriggeredJobRunId, lastTriggerTime):
// intents recorded before an external call, ownership and the digests of
// its last write. Losing those would repeat a trigger, orphan a create or
// rewrite a normalised field forever. The JSON is flat; in Go the last two
// groups are IntunedJobObservation and IntunedJobMemory.
type IntunedJobStatus struct {
	// Conditions: Ready, Synced and Stalled (see the Condition* and Reason*
	// constants of this package).
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// ObservedGeneration is the metadata.generation last reconciled. It
	// (and status itself) defaults to 0: the API server fills it in on
	// every read until the controller first writes status, so kstatus
	// (kubectl wait, Flux, Argo CD) reads a new object as InProgress
	// (generation 1, observed 0), not as Current (no status at all).
	// +kubebuilder:default=0
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// WorkspaceID is the Intuned workspace the Job lives in (from the credentials).
	// +optional
	WorkspaceID string `json:"workspaceId,omitempty"`

	// JobID is the effective Intuned job id (spec.jobId or metadata.name).
	// +optional
	JobID string `json:"jobId,omitempty"`

	IntunedJobObservation `json:",inline"`
	IntunedJobMemory      `json:",inline"`
}

// IntunedJobObservation is what Intuned last reported about the Job (and
// the sink the operator resolved and Intuned accepted).
type IntunedJobObservation struct {
	// JobState is the Job's state on Intuned: ACTIVE or PAUSED.
	// +optional
	JobState JobState `json:"jobState,omitempty"`

	// NextRunTime is when Intuned will next run the Job on its schedule.
	// +optional
	NextRunTime *metav1.Time `json:"nextRunTime,omitempty"`

	// LastRunTime is when the Job last ran, as Intuned reports it.
	// +optional
	LastRunTime *metav1.Time `json:"lastRunTime,omitempty"`

	// LastJobRun summarises the most recent JobRun.
	// +optional
	LastJobRun *JobRunSummary `json:"lastJobRun,omitempty"`

	// LastSyncTime is when a successful sync last changed this status (a
	// write, or news from Intuned). A poll that finds the Job and its runs
	// as they were does not move it: the steady state writes nothing.
	// +optional
	LastSyncTime *metav1.Time `json:"lastSyncTime,omitempty"`

	// Sink is the sink as resolved by the operator.
	// +optional
	Sink *SinkStatus `json:"sink,omitempty"`

	// Deliveries accounts for the results of the job's recent JobRuns,
	// newest first: what Intuned produced, what should have reached the
	// sink, what the WebhookReceiver stored, and backfill. Only for a
	// webhook sink with receiverRef; see docs/data-completeness.md.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=5
	Deliveries []JobRunDelivery `json:"deliveries,omitempty"`
}

// DeliveryState is where the accounting of one JobRun stands.
// +kubebuilder:validation:Enum=Pending;Complete;Gap;Backfilling;Backfilled
type DeliveryState string

// Delivery states.
const (
	// DeliveryPending: the JobRun runs, or results are missing but may
	// still arrive through Intuned's retries.
	DeliveryPending DeliveryState = "Pending"
	// DeliveryComplete: every expected result is stored.
	DeliveryComplete DeliveryState = "Complete"
	// DeliveryGap: results are missing after Intuned's retry window.
	DeliveryGap DeliveryState = "Gap"
	// DeliveryBackfilling: the missing results are being fetched from the
	// JobRun's results file and stored.
	DeliveryBackfilling DeliveryState = "Backfilling"
	// DeliveryBackfilled: every expected result is stored, some through
	// backfill.
	DeliveryBackfilled DeliveryState = "Backfilled"
)

// JobRunDelivery is the delivery accounting of one JobRun.
type JobRunDelivery struct {
	// JobRunID is the JobRun on Intuned.
	JobRunID string `json:"jobRunId"`
	// State is Pending, Complete, Gap, Backfilling or Backfilled.
	State DeliveryState `json:"state"`
	// Produced is how many Runs the JobRun finished, as Intuned counts them
	// (successful + failed).
	// +optional
	Produced *int64 `json:"produced,omitempty"`
	// Expected is how many results should have reached the sink: Produced,
	// less failed Runs with skipOnFail; with apisToSend, counted from the
	// JobRun's results file. Unset while unknown.
	// +optional
	Expected *int64 `json:"expected,omitempty"`
	// Stored is how many of the expected results the receiver holds
	// (webhook deliveries and backfilled ones).
	// +optional
	Stored *int64 `json:"stored,omitempty"`
	// Missing is Expected - Stored, when both are known.
	// +optional
	Missing *int64 `json:"missing,omitempty"`
	// Backfilled is how many of the stored results came through backfill.
	// +optional
	Backfilled *int64 `json:"backfilled,omitempty"`
	// SettlesAt is when Intuned's retry window for the JobRun's last result
	// ends: results missing before then are Pending, after it a Gap.
	// +optional
	SettlesAt *metav1.Time `json:"settlesAt,omitempty"`
	// Message explains the state (a gap's cause, backfill progress).
	// +optional
	Message string `json:"message,omitempty"`
	// Backfill is the progress of a backfill, persisted as it goes so a
	// restarted manager resumes where it stopped.
	// +optional
	Backfill *BackfillProgress `json:"backfill,omitempty"`
}

// BackfillProgress is how far a backfill got through a JobRun's results file.
type BackfillProgress struct {
	// StartedAt is when the backfill was decided, persisted before the first
	// result was sent.
	StartedAt metav1.Time `json:"startedAt"`
	// Offset is how many bytes of the results file the receiver has
	// acknowledged; a resumed backfill reads the file from here.
	// +optional
	Offset int64 `json:"offset,omitempty"`
	// Matched is how many results before Offset the sink would have
	// delivered (they count towards Expected).
	// +optional
	Matched int64 `json:"matched,omitempty"`
	// Invalid is how many lines before Offset were not results; the
	// receiver keeps them in quarantine.
	// +optional
	Invalid int64 `json:"invalid,omitempty"`
	// Lines is how many lines of the file lie before Offset.
	// +optional
	Lines int64 `json:"lines,omitempty"`
	// Done is set when the whole file was read.
	// +optional
	Done bool `json:"done,omitempty"`
	// Error is why the backfill stopped for good (an unknown results
	// format, no results file); only the intuned.io/backfill annotation
	// starts it again.
	// +optional
	Error string `json:"error,omitempty"`
}

// IntunedJobMemory is what the operator remembers to act right across
// reconciles and restarts: the trigger intent (persisted before the call),
// whether this object owns the Job, and the digests of its last write.
type IntunedJobMemory struct {
	// Managed is true once this object created the Job on Intuned or adopted
	// it (spec.adopt). A Job with this id that exists on Intuned while Managed
	// is false belongs to someone else and is left alone unless spec.adopt
	// is true.
	// +optional
	Managed bool `json:"managed,omitempty"`

	// LastApplied remembers the last Job the operator wrote to Intuned (or
	// found already equal to the spec) and what Intuned returned right
	// after, so that a field Intuned rewrites (normalises) never causes a
	// write on every poll: the same answer for the same spec is in sync.
	// +optional
	LastApplied *AppliedRecord `json:"lastApplied,omitempty"`

	// LastHandledTrigger is the last value of the intuned.io/trigger
	// annotation that was handled. It is written before the trigger call so
	// one value never triggers twice.
	// +optional
	LastHandledTrigger string `json:"lastHandledTrigger,omitempty"`

	// LastTriggeredJobRunID is the JobRun that the last handled trigger
	// started (empty while its outcome is unknown, or when Intuned refused it).
	// +optional
	LastTriggeredJobRunID string `json:"lastTriggeredJobRunId,omitempty"`

	// LastTriggerTime is when the operator claimed lastHandledTrigger, just
	// before calling Intuned's trigger. While lastTriggeredJobRunId is empty
	// and this is set, the trigger is pending: the operator stopped during the
	// call or the call failed without a definite refusal (5xx, timeout, 429).
	// The operator then looks for a MANUAL JobRun started since this time and
	// records it, or, when there is none, triggers again. Cleared when Intuned
	// refused the trigger (400, 401, 404): that value is handled and never
	// retried.
	// +optional
	LastTriggerTime *metav1.Time `json:"lastTriggerTime,omitempty"`

	// LastHandledBackfill is the last value of the intuned.io/backfill
	// annotation that was handled.
	// +optional
	LastHandledBackfill string `json:"lastHandledBackfill,omitempty"`
}

// AppliedRecord identifies a write and its outcome by digests (keyed
// HMAC-SHA256: the spec holds secrets such as webhook headers, which never
// appear in status) and names the fields Intuned holds differently.
type AppliedRecord struct {
	// SpecDigest identifies the desired Job that was written.
	SpecDigest string `json:"specDigest"`
	// ServerDigest identifies the Job as Intuned returned it after the write.
	ServerDigest string `json:"serverDigest"`
	// NormalisedFields are the fields (JSON paths, never values) where
	// Intuned's answer differs from the desired Job.
	// +optional
	// +listType=atomic
	NormalisedFields []string `json:"normalisedFields,omitempty"`
	// UnchangedWrites counts consecutive writes that did not change
	// Intuned's answer at all. At 2 the operator stops writing
	// (Synced=False, reason ServerNormalises) until the spec or the Job on
	// Intuned changes.
	// +optional
	UnchangedWrites int32 `json:"unchangedWrites,omitempty"`
	// Refused is set when Intuned refused this write for a reason no retry
	// fixes (ManagedInCode: the Job is defined in code). The write is not
	// sent again until the spec or the Job on Intuned changes.
	// +optional
	Refused string `json:"refused,omitempty"`
}

// JobRunSummary is a short view of one JobRun.
type JobRunSummary struct {
	// ID of the JobRun on Intuned.
	ID string `json:"id"`
	// Type is MANUAL (triggered) or SCHEDULED.
	// +optional
	Type string `json:"type,omitempty"`
	// Status is Intuned's JobRun status: PENDING, PAUSING, PAUSED,
	// RESUMING, SUCCESS, COMPLETED, FAILURE, TERMINATED or CANCELED.
	// +optional
	Status string `json:"status,omitempty"`
	// Reason is Intuned's reason type when the JobRun was paused, cancelled
	// or terminated (e.g. "s3-sink-error", "auth-session-not-found").
	// +optional
	Reason string `json:"reason,omitempty"`
	// ErrorCode is Intuned's error code of a failed JobRun (e.g.
	// "internal-server-error", "insufficient-resource-credits").
	// +optional
	ErrorCode string `json:"errorCode,omitempty"`
	// Message is Intuned's explanation (its error's message, else its
	// reason's), shortened to 512 characters.
	// +optional
	Message string `json:"message,omitempty"`
	// Payloads is the total number of payload calls in the JobRun.
	// +optional
	Payloads *int64 `json:"payloads,omitempty"`
	// Successful is the number of payload calls that succeeded.
	// +optional
	Successful *int64 `json:"successful,omitempty"`
	// Failed is the number of payload calls that failed.
	// +optional
	Failed *int64 `json:"failed,omitempty"`
	// Start is when the JobRun started.
	// +optional
	Start *metav1.Time `json:"start,omitempty"`
	// End is when the JobRun ended; unset while it runs.
	// +optional
	End *metav1.Time `json:"end,omitempty"`
}

// SinkStatus is the sink as resolved by the operator.
type SinkStatus struct {
	// URL is the webhook URL pushed to Intuned (from spec.sink.webhook.url or
	// the WebhookReceiver's status.url).
	// +optional
	URL string `json:"url,omitempty"`
	// TokenFingerprint identifies the WebhookReceiver token that the last
	// successful create/update pushed to Intuned (first 16 hex characters of
	// the SHA-256 of the token; never the token itself). The WebhookReceiver
	// controller drops its previous token once every IntunedJob referencing
	// it carries the fingerprint of the current one. Empty without receiverRef.
	// +optional
	TokenFingerprint string `json:"tokenFingerprint,omitempty"`
}

// IntunedJob is a Job on Intuned (https://intunedhq.com) declared in
// Kubernetes: the operator creates it, keeps it equal to the spec, pauses,
// triggers (annotation intuned.io/trigger) and deletes it, and reports its
// state and last JobRun in status.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=ij,categories=intuned
// +kubebuilder:printcolumn:name="Project",type=string,JSONPath=`.spec.project`
// +kubebuilder:printcolumn:name="Job ID",type=string,JSONPath=`.status.jobId`
// +kubebuilder:printcolumn:name="State",type=string,JSONPath=`.status.jobState`
// +kubebuilder:printcolumn:name="Synced",type=string,JSONPath=`.status.conditions[?(@.type=="Synced")].status`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Last Run",type=string,JSONPath=`.status.lastJobRun.status`
// +kubebuilder:printcolumn:name="Next Run",type=date,JSONPath=`.status.nextRunTime`
// +kubebuilder:printcolumn:name="Last Run Time",type=date,JSONPath=`.status.lastRunTime`,priority=1
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Sink",type=string,JSONPath=`.status.sink.url`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="has(self.spec.jobId) || (size(self.metadata.name) >= 7 && self.metadata.name.matches('^[a-zA-Z0-9_-]+$'))",message="metadata.name is used as the Intuned job id when spec.jobId is unset, so it must be at least 7 characters of letters, digits and '-' (no dots); otherwise set spec.jobId"
// +kubebuilder:validation:XValidation:rule="(has(self.spec.jobId) ? self.spec.jobId : self.metadata.name) == (has(oldSelf.spec.jobId) ? oldSelf.spec.jobId : oldSelf.metadata.name)",message="the Intuned job id (spec.jobId, or metadata.name when unset) is immutable; create a new IntunedJob instead"
// +kubebuilder:validation:XValidation:rule="!(has(self.spec.proxy) && has(self.spec.proxyFrom))",message="set at most one of spec.proxy and spec.proxyFrom"
type IntunedJob struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec IntunedJobSpec `json:"spec"`
	// +kubebuilder:default={}
	// +optional
	Status IntunedJobStatus `json:"status,omitempty"`
}

// EffectiveJobID returns the Intuned job id: spec.jobId, or metadata.name.
func (j *IntunedJob) EffectiveJobID() string {
	if j.Spec.JobID != "" {
		return j.Spec.JobID
	}
	return j.Name
}

// DefaultCredentials is the manager-wide credentials Secret
// (--default-credentials-secret) and the namespaces whose IntunedJobs may
// use it (--default-credentials-namespaces). The Secret spends one
// workspace's credits and can adopt and delete its Jobs, so it is not
// everyone's: by default only IntunedJobs in the Secret's own namespace use
// it, and an admin names the other namespaces.
// +kubebuilder:object:generate=false
type DefaultCredentials struct {
	Secret types.NamespacedName
	// Namespaces that may use Secret besides its own; "*" is every namespace.
	Namespaces []string
}

// AllowedIn says whether IntunedJobs in namespace may use the default Secret.
func (d DefaultCredentials) AllowedIn(namespace string) bool {
	if d.Secret.Name == "" {
		return false
	}
	return namespace == d.Secret.Namespace || slices.Contains(d.Namespaces, namespace) || slices.Contains(d.Namespaces, "*")
}

// CredentialsSecret is the Secret holding the job's Intuned credentials:
// spec.credentialsRef in the job's namespace, else the manager-wide default
// where it is allowed; ok is false when neither applies. Every controller
// that reads or guards credentials asks this, so they agree on which Secret
// a job uses.
func (j *IntunedJob) CredentialsSecret(managerDefault DefaultCredentials) (_ types.NamespacedName, ok bool) {
	if ref := j.Spec.CredentialsRef; ref != nil {
		return types.NamespacedName{Namespace: j.Namespace, Name: ref.Name}, true
	}
	if !managerDefault.AllowedIn(j.Namespace) {
		return types.NamespacedName{}, false
	}
	return managerDefault.Secret, true
}

// IntunedJobList contains a list of IntunedJob.
// +kubebuilder:object:root=true
type IntunedJobList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []IntunedJob `json:"items"`
}

func init() {
	SchemeBuilder.Register(&IntunedJob{}, &IntunedJobList{})
}
