// Package intunedsim is an in-memory Intuned (the browser-automation SaaS)
// that a client cannot tell from the documented REST API. Tests start it
// in-process (StartLoopback, tests through internal/intunedsim/simtest, or
// New plus any http.Server); cmd/intuned-sim runs it as a process. It
// follows docs/intuned-api.md to the field and is
// written independently of internal/intuned so contract tests catch
// mistakes on either side.
//
// # Intuned API (under /api/v1/workspace/{ws}/projects/{p})
//
//	GET    /jobs                                  list (JobDBObjectSchema items)
//	POST   /jobs                                  create → 201 {id, message:"created"}
//	GET    /jobs/{jobId}                          detail shape
//	PUT    /jobs/{jobId}                          full replacement → 200 {id, message:"updated job successfully"}
//	DELETE /jobs/{jobId}                          204
//	POST   /jobs/{jobId}/pause | /resume          200 {message:"Paused"|"Resumed"}
//	POST   /jobs/{jobId}/trigger                  200 {jobRunId, message:"Triggered"}
//	GET    /jobs/{jobId}/runs?pageSize&pageNumber&sortBy   {jobRuns, totalCount}
//	GET    /jobs/{jobId}/runs/{jobRunId}          {jobRun, results?} (results once finished: presigned signed_url to a JSONL file)
//	POST   /jobs/{jobId}/runs/{jobRunId}/terminate 200 {message:"Job run terminated"}
//
// Every request passes, in order: call counting (key "METHOD route
// template"), fault injection, the per-path rate limit (429 with
// Retry-After), x-api-key auth (401), project lookup (404 when
// Options.Projects is set), then validation (400 bad-request with a details
// list) and the handler (404 not-found for unknown jobs and runs). Errors
// use Intuned's body {code, category, message, retirable, details?,
// correlationId}.
//
// # Behaviour choices where Intuned's docs are silent
//
//   - Duplicate job id on create: 400 bad-request (Options.DuplicateCreateStatus: 409).
//   - PUT is a full replacement: omitted schedule/sink/proxy/auth_session are cleared.
//   - Defaults filled on store: requestTimeout 600 (payload items and
//     configuration), maximumAttempts 3 where a retry object is given,
//     auth_session attempts 3, sink skipOnFail false. Unknown keys are dropped.
//   - Validation follows the SDK's request schemas (integers, upper-case
//     names, "*" only as a whole field, maxConcurrentRequests any number >
//     0); answers follow its response schemas (webhook retry/timeout not
//     echoed, a range step without end dropped).
//   - Jobs defined in code (drift action "code"): update and delete answer
//     400 bad-request naming origin CODE; pause, resume, trigger work.
//   - Options.Normalise, DateFormat and OmitDetailPayload make it behave
//     like a server that differs from the documents; Options.Observe sees
//     every exchange (internal/testutil/wireschema conformance tests).
//   - Not modelled: the Run API, AuthSessions, projects/deployments, real S3
//     (the results file is served by the simulator itself, presigned like S3).
//   - JobRun status: PENDING while queued/executing (Intuned has no RUNNING),
//     PAUSED while its job is paused, then COMPLETED when every Run finished
//     and at least one succeeded (or it had no payloads), FAILURE when all
//     failed, TERMINATED after terminate. Concurrent JobRuns are allowed.
//   - Pausing a job stops its schedule (next_run_time becomes null) and
//     pauses its active JobRuns: Runs already executing finish, queued
//     payloads wait for resume. Triggering a paused job creates a PAUSED run.
//   - Each payload item becomes an API Run (runId: 21-char nanoid) executed by
//     the APIHandler registered for its apiName, at most
//     maxConcurrentRequests at a time (default 5), failed attempts retried up
//     to maximumAttempts (payload, else configuration, else 3). Unknown apis
//     fail. Extended payloads (RunResult.Extend) are appended to the same
//     JobRun and raise its payloads count.
//   - Terminate drops queued payloads and cancels executing Runs; those Runs
//     are neither counted nor delivered. Terminating a finished run is a no-op.
//   - Schedules follow Temporal: intervals fire at multiples of `every` (ms
//     number or "1h"-style string) since the Unix epoch; calendars match in
//     UTC with unset second/minute/hour = 0 and other fields "*" (numbers,
//     names, {start,end?,step?} ranges, lists, "*"). next_run_time is the
//     earliest match; jitter is validated and ignored. Fired runs are SCHEDULED.
//   - Sink delivery: one POST per finished Run with the guide's body,
//     Content-Type application/json plus the sink's headers; apisToSend and
//     skipOnFail filter (filtered Runs are logged with outcome "skipped").
//     A non-2xx, a timeout (sink `timeout` ms, default 5000) or a connection
//     error is retried 10 s later, doubling to 2 min, while within 1 hour of
//     the first attempt (S3: 10 minutes; S3 is simulated, never contacted,
//     and an exhausted S3 delivery pauses the job with JobRun reason
//     s3-sink-error). Retries wait on the simulator clock.
//   - Results: a finished JobRun (any terminal status) has Get Job Run
//     results {signed_url, format "jsonl", signed_url_expiration, size,
//     key}. The file has one line per Run that finished (completed or
//     failed, all APIs, extended payloads included; the sink's apisToSend
//     and skipOnFail do not filter it), each that Run's apiInfo, in the order
//     the Runs finished; a retried Run is one line with its final outcome;
//     Runs cut off by terminate are absent. signed_url is presigned like
//     S3's (X-Amz-Date, X-Amz-Expires, X-Amz-Signature: an HMAC with a key
//     drawn per Server), valid for Options.ResultsURLLifetime (default 1
//     hour of simulated time, a guess) from the Get Job Run that issued it.
//     Downloads: 200/206 application/x-ndjson with Range, ETag and
//     Last-Modified (http.ServeContent); expired → 403 AccessDenied "Request
//     has expired", missing or wrong signature → 403 SignatureDoesNotMatch,
//     both with S3's XML error body. size is the exact byte length.
//   - Rate limiting counts real time (or the FakeClock), never scaled time.
//
// # Time
//
// All simulated time comes from Options.Clock. The default ScaledClock runs
// Options.TimeScale times faster than real time. Tests pass a *FakeClock
// and call Server.Advance(d), which fires due timers one by one and waits for
// background work (WaitIdle) between them, so a test can, for example,
// advance one hour and then read the complete delivery retry timeline.
//
// Sim-time spans a test may need to shorten: the webhook retry window
// (webhookWindow, 1 hour: about 33 attempts), the S3 window (10 minutes),
// Run durations, schedules and the results URL lifetime. With a FakeClock
// they take no real time at all; with the ScaledClock (a test driving the
// simulator over HTTP, or cmd/intuned-sim --time-scale) they take
// span/TimeScale of real time: TimeScale 3600 runs the whole webhook window
// in one real second. The sink's per-attempt timeout and fault latency stay
// real time. A test that needs URLs to expire sooner than the window
// lowers the lifetime instead (POST /_sim/settings, SetResultsURLLifetime).
//
// # Admin API (under /_sim/, no Intuned auth; Options.AdminToken adds a bearer token)
//
//	GET    /_sim/healthz
//	GET    /_sim/deliveries?jobId=&jobRunId=&outcome=   {"deliveries":[Delivery...]} with body (exact JSON sent) and bodySha256
//	GET    /_sim/runs?jobRunId=                          {"runs":[APIRun...]}
//	GET    /_sim/results/{jobRunId}.jsonl?X-Amz-...      results file behind Get Job Run's signed_url (one apiInfo per line; the signature, not the admin token, authorises)
//	GET    /_sim/calls                                   {"calls":{"METHOD template":n}, "total":n, "writes":n}
//	DELETE /_sim/calls                                   reset the counters
//	GET    /_sim/faults                                  current rules
//	POST   /_sim/faults  {"rules":[FaultRule...], "s3FailRate":0.5, "results":[ResultsFault...]}   replace the rules (s3FailRate and results only when given)
//	DELETE /_sim/faults                                  clear them all
//	                     ResultsFault {"jobRunId"?, "format":"parquet", "corruptLine":n, "truncateLine":n, "times"?}:
//	                     report another results format; replace line n (1-based) with non-JSON text;
//	                     cut downloads mid-line n (full Content-Length, then the connection closes), the next `times` only
//	GET    /_sim/settings                                {"resultsUrlLifetime":"1h0m0s","schedulesStalled":false}
//	POST   /_sim/settings {"resultsUrlLifetime":"30s"}   lifetime of results URLs issued from now on (>= 1s)
//	POST   /_sim/settings {"schedulesStalled":true}      scheduled runs come due but do not start (a stuck scheduler; next_run_time stays at the missed time); false re-arms every schedule
//	POST   /_sim/drift   {"project","jobId","action":"delete"|"modify"|"pause"|"resume"|"code"|"api","patch":{merge patch},"workspaceId"?}
//	POST   /_sim/jobruns/{jobRunId}/state {"status","reason"?,"error"?}  any JobRun status/reason/error the SDK knows
//	POST   /_sim/normalise {"rules":[{"path","value"}]}  replace the Normalise rules
//	GET    /_sim/clock                                   {"now","fake"}
//	POST   /_sim/clock/advance {"duration":"90s"}        fake clock only (409 otherwise)
//	POST   /_sim/reset                                   forget everything
//
// Admin errors are {"error":{"code","message"}}. The same operations exist
// as Go methods: Deliveries, APIRuns, Calls, WriteCalls, ResetCalls,
// SetFaults, SetS3FailRate, SetResultsFaults, SetResultsURLLifetime,
// ResultsFile, Drift, Advance, Reset, SetHandler, SetJobRunState,
// SetNormalise.
package intunedsim
