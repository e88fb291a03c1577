// Package contract holds the contract suite between the operator's Intuned
// client (internal/intuned) and the local Intuned simulator
// (internal/intunedsim). The two were written independently from
// docs/intuned-api.md; these tests run the real client against the
// simulator over real HTTP, so a disagreement on any wire name, shape,
// status or retry rule fails here. The package has no non-test code.
//
// Files:
//   - jobs_test.go: create/get/list/update/pause/resume/delete, the detail and
//     list shapes, defaults filled on store, SameSpec (no drift, no update
//     loop), update clearing schedule/sink/proxy/authSession, path escaping;
//   - errors_test.go: 400 validation, 401 (key never in errors), 404,
//     duplicate create (IsConflict for both the 400 and the 409 answer);
//   - runs_test.go: trigger of the quickstart catalogue (1 list + N details),
//     counters, results file, webhook bodies compared byte for byte with the
//     simulator's delivery log, sink filters, delivery retry, run paging and
//     sorting, terminate, runs of a paused Job;
//   - ratelimit_test.go: 429 with Retry-After and the client's waits, on one
//     fake clock shared by the client's pacer and the simulator's limiter;
//   - retry_test.go: which failures the client retries, per endpoint; drift;
//   - faults_test.go: 30% injected 5xx, with the caller logic that
//     re-observes after an ambiguous create or trigger;
//   - schedule_test.go: scheduled JobRuns and S3 sink exhaustion;
//   - sdk_test.go: the SDK's wire keys (auth_session), values the SDK's
//     schemas accept or refuse, SDK-made Jobs stay readable, date formats,
//     Jobs defined in code.
//
// Every test's simulator also checks each exchange against
// internal/testutil/wireschema (helpers_test.go, conformance): every answer,
// and every create/update body it accepted, unknown keys included.
//
// Run: go test -race ./test/contract/
package contract
