package wireschema

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFixturesConform: the wire examples the client's and the simulator's
// unit tests are built on conform to the schemas too, so neither side's
// tests can drift from them.
func TestFixturesConform(t *testing.T) {
	schemas := map[string]Schema{
		"../../intuned/testdata/create_job_request_full.json":    CreateJobRequest,
		"../../intuned/testdata/create_job_request_seed.json":    CreateJobRequest,
		"../../intuned/testdata/update_job_request.json":         UpdateJobRequest,
		"../../intuned/testdata/update_job_request_clear.json":   UpdateJobRequest,
		"../../intuned/testdata/create_job_response.json":        CreateJobResponse,
		"../../intuned/testdata/update_job_response.json":        UpdateJobResponse,
		"../../intuned/testdata/pause_job_response.json":         PauseResponse,
		"../../intuned/testdata/resume_job_response.json":        ResumeResponse,
		"../../intuned/testdata/trigger_job_response.json":       TriggerResponse,
		"../../intuned/testdata/terminate_job_run_response.json": MessageResponse,
		"../../intuned/testdata/job_detail.json":                 JobDetail,
		"../../intuned/testdata/job_list.json":                   JobList,
		"../../intuned/testdata/job_run.json":                    JobRunEnvelope,
		"../../intuned/testdata/job_runs.json":                   JobRuns,
		"../../intuned/testdata/error_bad_request.json":          ErrorBody,
		"../../intuned/testdata/error_not_found.json":            ErrorBody,
		"../../intuned/testdata/error_unauthorized.json":         ErrorBody,
	}
	golden, _ := filepath.Glob("../../intunedsim/testdata/golden/*.json")
	for _, g := range golden {
		name := filepath.Base(g)
		switch {
		case strings.HasPrefix(name, "error-"):
			schemas[g] = ErrorBody
		case name == "create.json":
			schemas[g] = CreateJobResponse
		case name == "update.json":
			schemas[g] = UpdateJobResponse
		case name == "resume.json":
			schemas[g] = ResumeResponse
		case name == "trigger.json":
			schemas[g] = TriggerResponse
		case name == "terminate.json":
			schemas[g] = MessageResponse
		case name == "job-detail.json":
			schemas[g] = JobDetail
		case name == "job-list-paused.json":
			schemas[g] = JobList
		case name == "job-run.json":
			schemas[g] = JobRunEnvelope
		case name == "job-runs.json":
			schemas[g] = JobRuns
		}
	}
	for name, s := range map[string]Schema{
		"create.json": CreateJobResponse, "update.json": UpdateJobResponse, "trigger.json": TriggerResponse,
		"job-detail.json": JobDetail, "job-list-item.json": JobListItem, "job-run.json": JobRunEnvelope,
		"job-runs.json": JobRuns, "error.json": ErrorBody,
	} {
		schemas["../../intunedsim/testdata/documented/"+name] = s
	}
	if len(schemas) < 25 {
		t.Fatalf("only %d fixtures found", len(schemas))
	}
	for path, s := range schemas {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Errorf("%s: %v", path, err)
			continue
		}
		for _, e := range Check(s, b) {
			t.Errorf("%s: %s", path, e)
		}
	}
}
