package e2e

import (
	"context"
	"testing"
	"time"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/testutil/flow"
	"github.com/intuned-operator/intuned-operator/internal/testutil/poll"
	"github.com/intuned-operator/intuned-operator/internal/testutil/scenarios"
)

// The scenarios both environments run (internal/testutil/scenarios).

func TestQuickstart(t *testing.T)             { scenarios.Quickstart(t, env) }
func TestReceiverLostMidRun(t *testing.T)     { scenarios.ReceiverLostMidRun(t, env) }
func TestTokenRotationDuringRun(t *testing.T) { scenarios.TokenRotationDuringRun(t, env) }
func TestPostgresScaledOut(t *testing.T)      { scenarios.PostgresScaledOut(t, env, 2) }
func TestDeliveryGapBackfilled(t *testing.T)  { scenarios.DeliveryGapBackfilled(t, env, true) }
func TestScheduleStalled(t *testing.T)        { scenarios.ScheduleStalled(t, env) }
func TestBackfillRefusals(t *testing.T)       { scenarios.BackfillRefusals(t, env) }
func TestBackupRestore(t *testing.T)          { scenarios.BackupRestore(t, env) }

// The scenarios only the emulated cluster runs: a fault timed within a run
// that a real node cannot time as closely, and a flow that involves no node
// behaviour at all.

// TestManagerRestartMidRun crashes the manager (SIGKILL) while a JobRun is
// delivering; the new manager must not trigger the job again, and the run's
// data must all arrive.
func TestManagerRestartMidRun(t *testing.T) {
	ctx := scenarios.Context(t, 3*time.Minute)
	p := scenarios.NewPair(t, ctx, env, "manager-restart", nil)
	p.WaitReady(ctx)
	p.Trigger(ctx, "once")
	p.WaitStored(ctx, 1)
	h.StopManager(true)
	if err := h.StartManager(ctx); err != nil {
		t.Fatal(err)
	}
	p.WaitAllDelivered(ctx, flow.QuickstartDeliveries)
	// The new manager has reconciled the job once it reports the finished run.
	last := p.WaitJobRunFinished(ctx, "once")
	runs, err := h.Sim.JobRuns(ctx, p.Project, p.Job)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 1 || runs[0].ID != last.ID {
		t.Fatalf("JobRuns on Intuned after the restart: %+v, want exactly the one in status (%s)", runs, last.ID)
	}
}

// TestScheduledJob lets an interval schedule fire the job on its own (no
// trigger): a SCHEDULED JobRun must deliver in full to the receiver.
func TestScheduledJob(t *testing.T) {
	ctx := scenarios.Context(t, 3*time.Minute)
	p := scenarios.NewPair(t, ctx, env, "scheduled", func(s *flow.Samples) {
		// 5 simulated minutes: 5 real seconds at --time-scale 60.
		s.Job.Spec.Schedule = &intunedv1alpha1.JobSchedule{Intervals: []intunedv1alpha1.ScheduleInterval{{Every: "5m"}}}
	})
	p.WaitReady(ctx)
	// The first JobRun whose deliveries are all acknowledged.
	var jobRun string
	var rep flow.DeliveryReport
	err := poll.Eventually(ctx, 250*time.Millisecond, "a scheduled JobRun delivered in full", func(ctx context.Context) (bool, error) {
		for id, n := range p.JobRunIDs(ctx) {
			if n < flow.QuickstartDeliveries {
				continue
			}
			r, err := flow.CompareDeliveries(ctx, h.Sim, p.RC, p.Job, id)
			if err != nil {
				return false, err
			}
			if r.Pending == 0 {
				jobRun, rep = id, r
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || rep.Sent != flow.QuickstartDeliveries || rep.Stored != flow.QuickstartDeliveries {
		t.Fatalf("scheduled JobRun %s: %s", jobRun, rep)
	}
	runs, err := h.Sim.JobRuns(ctx, p.Project, p.Job)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range runs {
		if r.Type != "SCHEDULED" {
			t.Errorf("JobRun %s has type %q; only the schedule should have run the job", r.ID, r.Type)
		}
		found = found || r.ID == jobRun
	}
	if !found {
		t.Errorf("JobRun %s not listed by Intuned's API: %+v", jobRun, runs)
	}
	t.Logf("scheduled JobRun %s: %s", jobRun, rep)
}
