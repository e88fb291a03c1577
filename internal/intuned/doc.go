// Package intuned is the operator's client for Intuned's REST API (Jobs and
// JobRuns endpoints).
//
// It has three layers:
//
//   - wire types (types.go, schedule.go, sink.go) that use Intuned's exact JSON
//     names, including the API's mixed snake_case/camelCase and its two Job
//     shapes (detail from Get Job, list item from Get Jobs);
//   - a Client implementing the narrow API interface the controller depends on,
//     with typed *APIError results and retries that never duplicate a
//     non-idempotent call (client.go, errors.go, retry.go);
//   - a process-wide Pacer that keeps every URI path under Intuned's limit of
//     20 requests per minute (pacer.go), and Prometheus metrics (metrics.go).
//
// OpenResults streams a finished JobRun's results file from the presigned
// URL of Get Job Run (resuming from a byte offset; ErrResultsURLExpired
// says to get a fresh URL); JobRunResults.Expires reads its expiry.
//
// Timestamps are intuned.Time (any ISO-8601 flavour; the SDK types them as
// strings). SpecDiff and SpecDigest let the controller remember what it
// wrote and what Intuned answered (no write loops on fields a server
// normalises); IsManagedInCode recognises Intuned refusing to change a Job
// defined in code. internal/testutil/wireschema holds strict schemas of
// every request and answer, checked by the contract tests.
//
// The reference for every field is docs/intuned-api.md (Intuned's API as
// checked against its official SDK). The API key is only
// ever written into the x-api-key request header; it never appears in errors or
// logs.
package intuned
