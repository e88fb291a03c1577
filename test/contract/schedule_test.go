package contract

import (
	"testing"
	"time"

	"github.com/intuned-operator/intuned-operator/internal/intuned"
	"github.com/intuned-operator/intuned-operator/internal/intunedsim"
	"github.com/intuned-operator/intuned-operator/internal/intunedsim/simtest"
)

// TestScheduledRuns checks, on a fake clock, that an interval schedule fires
// SCHEDULED JobRuns the client decodes, that next_run_time moves with it,
// and that pause stops it.
func TestScheduledRuns(t *testing.T) {
	start := time.Date(2026, 11, 27, 12, 0, 30, 0, time.UTC)
	fc := intunedsim.NewFakeClock(start)
	e := newEnv(t, intunedsim.Options{Clock: fc, Handlers: map[string]intunedsim.APIHandler{"noop": noop}})
	ctx := ctxT(t)
	req := noopJob("scheduled-job")
	req.Schedule = &intuned.Schedule{Intervals: []intuned.Interval{{Every: intuned.Str("1m")}}}
	if _, err := e.client.CreateJob(ctx, project, req); err != nil {
		t.Fatal(err)
	}
	job, err := e.client.GetJob(ctx, project, req.ID)
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2026, 11, 27, 12, 1, 0, 0, time.UTC); job.NextRunTime == nil || !job.NextRunTime.Equal(want) {
		t.Fatalf("next_run_time = %v, want %v (multiples of every since the epoch)", job.NextRunTime, want)
	}

	e.sim.Advance(3 * time.Minute)
	l, err := e.client.ListJobRuns(ctx, project, req.ID, intuned.ListRunsOptions{SortBy: "start_time,asc"})
	if err != nil {
		t.Fatal(err)
	}
	if l.TotalCount != 3 {
		t.Fatalf("%d scheduled runs after 3 minutes, want 3", l.TotalCount)
	}
	for i, r := range l.JobRuns {
		want := time.Date(2026, 11, 27, 12, 1+i, 0, 0, time.UTC)
		if r.Type != intuned.JobRunScheduled || r.Status != intuned.JobRunCompleted || !r.StartTime.Equal(want) {
			t.Errorf("run %d: type %s status %s start %v, want SCHEDULED COMPLETED %v", i, r.Type, r.Status, r.StartTime, want)
		}
	}
	job, _ = e.client.GetJob(ctx, project, req.ID)
	if want := time.Date(2026, 11, 27, 12, 4, 0, 0, time.UTC); job.NextRunTime == nil || !job.NextRunTime.Equal(want) || job.LastRunTime == nil {
		t.Errorf("after 3 runs: next_run_time %v (want %v), last_run_time %v", job.NextRunTime, want, job.LastRunTime)
	}

	if err := e.client.PauseJob(ctx, project, req.ID); err != nil {
		t.Fatal(err)
	}
	e.sim.Advance(3 * time.Minute)
	l, _ = e.client.ListJobRuns(ctx, project, req.ID, intuned.ListRunsOptions{})
	job, _ = e.client.GetJob(ctx, project, req.ID)
	if l.TotalCount != 3 || job.NextRunTime != nil {
		t.Errorf("paused: %d runs, next_run_time %v; want 3 and none", l.TotalCount, job.NextRunTime)
	}
}

// TestS3SinkExhausted checks on a fake clock that an S3 sink failing for
// 10 minutes pauses the Job with JobRun reason s3-sink-error, in shapes the
// client decodes.
func TestS3SinkExhausted(t *testing.T) {
	fc := intunedsim.NewFakeClock(time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC))
	e := newEnv(t, intunedsim.Options{Clock: fc, S3FailRate: 1, Handlers: map[string]intunedsim.APIHandler{"noop": noop}})
	ctx := ctxT(t)
	req := noopJob("s3-failing-job")
	req.Sink = &intuned.Sink{S3: &intuned.S3Sink{Bucket: "b", AccessKeyID: "AK", SecretAccessKey: "SK", Region: "us-west-2"}}
	if _, err := e.client.CreateJob(ctx, project, req); err != nil {
		t.Fatal(err)
	}
	tr, err := e.client.TriggerJob(ctx, project, req.ID)
	if err != nil {
		t.Fatal(err)
	}
	simtest.WaitIdle(t, e.sim)
	e.sim.Advance(11 * time.Minute)

	r, err := e.client.GetJobRun(ctx, project, req.ID, tr.JobRunID)
	if err != nil {
		t.Fatal(err)
	}
	if r.JobRun.Reason == nil || r.JobRun.Reason.Type != "s3-sink-error" {
		t.Errorf("JobRun status %s reason %+v, want s3-sink-error", r.JobRun.Status, r.JobRun.Reason)
	}
	job, err := e.client.GetJob(ctx, project, req.ID)
	if err != nil || job.State != intuned.JobStatePaused {
		t.Errorf("job after exhausted S3 delivery: %v %v, want PAUSED", job, err)
	}
	ds := e.sim.Deliveries()
	if len(ds) != 1 || ds[0].Outcome != intunedsim.OutcomeExhausted || len(ds[0].Attempts) < 8 {
		t.Errorf("deliveries %+v", ds)
	}
}
