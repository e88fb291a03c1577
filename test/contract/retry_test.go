package contract

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/intuned-operator/intuned-operator/internal/intuned"
	"github.com/intuned-operator/intuned-operator/internal/intunedsim"
)

// TestRetryClassification injects one failure into each endpoint and checks
// the client's rule: idempotent calls are retried and succeed; create and
// trigger are never repeated after an ambiguous failure (5xx, connection
// lost after sending, timeout) and come back IsAmbiguous, with nothing
// done on the simulator.
func TestRetryClassification(t *testing.T) {
	faults := []struct {
		name    string
		rule    intunedsim.FaultRule
		timeout time.Duration // client RequestTimeout (0 = newEnv's)
	}{
		{"500", intunedsim.FaultRule{Times: 1, Status: 500}, 0},
		{"503", intunedsim.FaultRule{Times: 1, Status: 503}, 0},
		{"connection dropped", intunedsim.FaultRule{Times: 1, DropRate: 1}, 0},
		{"timeout", intunedsim.FaultRule{Times: 1, LatencyMS: 1000}, 200 * time.Millisecond},
	}
	routes := map[string]string{
		"ListJobs": "GET " + routeJobs, "CreateJob": "POST " + routeJobs,
		"GetJob": "GET " + routeJob, "UpdateJob": "PUT " + routeJob, "DeleteJob": "DELETE " + routeJob,
		"PauseJob": "POST " + routeJob + "/pause", "ResumeJob": "POST " + routeJob + "/resume",
		"TriggerJob": "POST " + routeTrigger, "ListJobRuns": "GET " + routeRuns,
		"GetJobRun": "GET " + routeRun, "TerminateJobRun": "POST " + routeTerminate,
	}
	nonIdempotent := map[string]bool{"CreateJob": true, "TriggerJob": true}

	for _, f := range faults {
		for op, route := range routes {
			if f.name == "timeout" && op != "GetJob" && op != "TriggerJob" && op != "CreateJob" {
				continue // each timeout case costs a real RequestTimeout; three show the rule
			}
			t.Run(f.name+"/"+op, func(t *testing.T) {
				e := newEnv(t, intunedsim.Options{Handlers: map[string]intunedsim.APIHandler{"noop": noop}})
				ctx := ctxT(t)
				if _, err := e.client.CreateJob(ctx, project, noopJob("class-job-1")); err != nil {
					t.Fatal(err)
				}
				tr, err := e.client.TriggerJob(ctx, project, "class-job-1")
				if err != nil {
					t.Fatal(err)
				}
				waitRunDone(t, e.client, "class-job-1", tr.JobRunID)
				jobID := "class-job-1"
				if op == "CreateJob" {
					jobID = "class-job-2"
				}
				c := e.client // set-up used the normal timeout; the faulted call may use a short one
				if f.timeout > 0 {
					if c, err = intuned.New(intuned.Options{BaseURL: e.sim.APIBase, WorkspaceID: e.sim.WorkspaceID, APIKey: e.sim.APIKey,
						Pacer: intuned.NewPacer(intuned.PacerOptions{Disabled: true}), RequestTimeout: f.timeout,
						Retry: intuned.RetryOptions{BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond}}); err != nil {
						t.Fatal(err)
					}
				}
				call := everyOperation(c, jobID, tr.JobRunID)[op]

				rule := f.rule
				rule.Match = route
				e.sim.SetFaults([]intunedsim.FaultRule{rule})
				e.sim.ResetCalls()
				err = call(ctx)
				sent := e.sim.Calls()[route]

				if !nonIdempotent[op] {
					if err != nil || sent != 2 {
						t.Errorf("idempotent %s: err %v after %d requests, want success after 2", op, err, sent)
					}
					return
				}
				if !intuned.IsAmbiguous(err) || !intuned.IsRetriable(err) || sent != 1 {
					t.Fatalf("%s: err %v (ambiguous %v) after %d requests, want one ambiguous attempt", op, err, intuned.IsAmbiguous(err), sent)
				}
				if strings.Contains(err.Error(), e.sim.APIKey) {
					t.Errorf("error text contains the API key: %v", err)
				}
				var te *intuned.TransportError
				if f.rule.Status == 0 && (!errors.As(err, &te) || !te.Sent) {
					t.Errorf("%s: want a *TransportError with Sent, got %T %v", op, err, err)
				}
				// The fault came before the simulator acted: nothing happened.
				// (After a client timeout the simulator may still act once its
				// latency is over, as a real server could: truly ambiguous.)
				e.sim.SetFaults(nil)
				if f.timeout > 0 {
					return
				}
				switch op {
				case "CreateJob":
					if _, err := e.client.GetJob(ctx, project, jobID); !intuned.IsNotFound(err) {
						t.Errorf("job created despite the fault: %v", err)
					}
				case "TriggerJob":
					l, err := e.client.ListJobRuns(ctx, project, jobID, intuned.ListRunsOptions{})
					if err != nil || l.TotalCount != 1 {
						t.Errorf("JobRuns after a failed trigger: %v %v, want 1", l, err)
					}
				}
			})
		}
	}
}

// TestDrift changes Jobs behind the client's back through the simulator's
// drift hook and checks what the controller would see.
func TestDrift(t *testing.T) {
	e := newEnv(t, intunedsim.Options{})
	ctx := ctxT(t)
	cases := []struct {
		name  string
		drift intunedsim.DriftRequest
		check func(t *testing.T, desired intuned.UpdateJobRequest, job *intuned.Job, err error)
	}{
		{"modify", intunedsim.DriftRequest{Action: "modify", Patch: []byte(`{"configuration":{"maxConcurrentRequests":9},"sink":null}`)},
			func(t *testing.T, desired intuned.UpdateJobRequest, job *intuned.Job, err error) {
				if err != nil || intuned.SameSpec(desired, job.Spec()) || job.Sink != nil || *job.Configuration.MaxConcurrentRequests != 9 {
					t.Errorf("modified job: %v %+v, want drift SameSpec sees", err, job)
				}
			}},
		{"pause", intunedsim.DriftRequest{Action: "pause"},
			func(t *testing.T, desired intuned.UpdateJobRequest, job *intuned.Job, err error) {
				if err != nil || job.State != intuned.JobStatePaused || !intuned.SameSpec(desired, job.Spec()) {
					t.Errorf("paused job: %v %+v", err, job)
				}
			}},
		{"delete", intunedsim.DriftRequest{Action: "delete"},
			func(t *testing.T, _ intuned.UpdateJobRequest, _ *intuned.Job, err error) {
				if !intuned.IsNotFound(err) {
					t.Errorf("deleted job: %v, want not found", err)
				}
			}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := fullJob("drift-job-"+string(rune('a'+i)), "https://hooks.example/in")
			if _, err := e.client.CreateJob(ctx, project, req); err != nil {
				t.Fatal(err)
			}
			d := tc.drift
			d.Project, d.JobID = project, req.ID
			if err := e.sim.Drift(d); err != nil {
				t.Fatal(err)
			}
			job, err := e.client.GetJob(ctx, project, req.ID)
			tc.check(t, req.Spec(), job, err)
		})
	}
}
