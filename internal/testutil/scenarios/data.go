package scenarios

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/intuned"
	"github.com/intuned-operator/intuned-operator/internal/intunedsim"
	"github.com/intuned-operator/intuned-operator/internal/testutil/flow"
	"github.com/intuned-operator/intuned-operator/internal/testutil/poll"
)

// DeliveryGapBackfilled: the receiver is taken down (spec.replicas 0) during
// a JobRun and stays down past Intuned's retry window, so the simulator
// gives up on some deliveries. With manual backfill the job reports a Gap
// with exactly the results the simulator gave up on, then the
// intuned.io/backfill annotation closes it, the manager SIGKILLed right
// after the request; with Auto backfill the gap closes by itself. Either
// way every result the sink should have sent is stored exactly once, the
// backfilled ones byte for byte as in Intuned's results file.
//
// The job sends only the details API's results (apisToSend, skipOnFail),
// so the count cannot come from Intuned's counters alone.
func DeliveryGapBackfilled(t *testing.T, env Env, manual bool) {
	ctx := Context(t, 8*time.Minute)
	policy := intunedv1alpha1.BackfillAuto
	if manual {
		policy = intunedv1alpha1.BackfillManual
	}
	p := NewPair(t, ctx, env, "backfill-"+strings.ToLower(string(policy)), func(s *flow.Samples) {
		w := s.Job.Spec.Sink.Webhook
		w.Backfill, w.APIsToSend, w.SkipOnFail = policy, []string{"details"}, true
	})
	p.WaitReady(ctx)
	exhausted, last := p.LoseDeliveries(ctx, 5) // the details Runs

	if manual {
		d := p.WaitDelivery(ctx, intunedv1alpha1.DeliveryGap)
		if d.JobRunID != last.ID || *d.Expected != 5 || *d.Missing != int64(exhausted) {
			t.Fatalf("gap %+v; want JobRun %s, 5 expected, %d missing (the deliveries the simulator gave up on)", d, last.ID, exhausted)
		}
		p.WaitCondition(ctx, intunedv1alpha1.ConditionDataComplete, metav1.ConditionFalse, intunedv1alpha1.ReasonDeliveryGap)
		if err := flow.Backfill(ctx, env.Client(), p.NS, p.Job, last.ID); err != nil {
			t.Fatal(err)
		}
		if err := env.RestartManager(ctx); err != nil {
			t.Fatal(err)
		}
	}
	d := p.WaitDelivery(ctx, intunedv1alpha1.DeliveryBackfilled)
	if *d.Expected != 5 || *d.Stored != 5 || d.Backfilled == nil || *d.Backfilled != int64(exhausted) {
		t.Fatalf("after backfill %+v; want 5 expected and stored, %d backfilled", d, exhausted)
	}
	p.WaitCondition(ctx, intunedv1alpha1.ConditionDataComplete, metav1.ConditionTrue, intunedv1alpha1.ReasonBackfilled)

	// Read back: every result once, the backfilled ones as in the file.
	lines := p.ResultsFile(ctx, last.ID)
	stored, err := p.RC.List(ctx, p.Job, "")
	if err != nil {
		t.Fatal(err)
	}
	byRun := map[string]flow.StoredDelivery{}
	for _, s := range stored {
		if _, dup := byRun[s.RunID]; dup {
			t.Fatalf("run %s stored twice", s.RunID)
		}
		byRun[s.RunID] = s
	}
	backfilled := 0
	for runID, line := range lines {
		if line.api != "details" {
			continue
		}
		s, ok := byRun[runID]
		if !ok {
			t.Fatalf("result %s of the results file is not stored", runID)
		}
		var body struct {
			APIInfo json.RawMessage `json:"apiInfo"`
		}
		if err := json.Unmarshal(s.Body, &body); err != nil {
			t.Fatal(err)
		}
		if s.Backfilled {
			backfilled++
			if !bytes.Equal(body.APIInfo, line.raw) {
				t.Errorf("backfilled %s: apiInfo %s, results file %s", runID, body.APIInfo, line.raw)
			}
		}
	}
	if len(byRun) != 5 || backfilled != exhausted {
		t.Fatalf("%d results stored, %d backfilled; want 5 and %d", len(byRun), backfilled, exhausted)
	}
	t.Logf("delivery gap (%s backfill): %d of 5 results given up on by the simulator, all backfilled", policy, exhausted)
}

// LoseDeliveries runs the job once with its receiver down (spec.replicas
// 0) from the JobRun's start until the simulator gave up on every
// delivery it could not make (its hour of retries); then the receiver
// comes back. want is how many deliveries the sink sends (the others are
// skipped by apisToSend). It returns how many were given up on (at least
// one) and the JobRun.
func (p *Pair) LoseDeliveries(ctx context.Context, want int) (int, *intunedv1alpha1.JobRunSummary) {
	p.t.Helper()
	// The JobRun's Runs last 10 real seconds, so its first delivery comes
	// after the receiver is really gone: a receiver told to stop goes on
	// serving for its --shutdown-delay (5 s), and while it is the last
	// endpoint, the Service and the Ingress still route to it.
	sim := p.Env.Sim()
	if err := sim.SetRunDuration(ctx, 10*time.Minute); err != nil {
		p.t.Fatal(err)
	}
	defer func() { _ = sim.SetRunDuration(context.Background(), flow.QuickstartRunDuration) }()
	p.Trigger(ctx, "1")
	// Down as soon as the JobRun started.
	if err := poll.Eventually(ctx, 50*time.Millisecond, "trigger recorded", func(ctx context.Context) (bool, error) {
		return p.Get(ctx).Status.LastTriggeredJobRunID != "", nil
	}); err != nil {
		p.t.Fatal(err)
	}
	p.SetReplicas(ctx, 0)
	// The simulator settles every delivery: stored, or given up on after
	// its (scaled) hour of retries.
	var exhausted, delivered int
	err := poll.Eventually(ctx, time.Second, "every delivery settled", func(ctx context.Context) (bool, error) {
		ds, err := p.Env.Sim().Deliveries(ctx, p.Job)
		if err != nil {
			return false, err
		}
		exhausted, delivered = 0, 0
		n := 0
		for _, d := range ds {
			if d.Outcome == "skipped" {
				continue
			}
			n++
			switch d.Outcome {
			case "exhausted":
				exhausted++
			case "delivered":
				delivered++
			}
		}
		return n == want && exhausted+delivered == want, fmt.Errorf("%d deliveries, %d delivered, %d exhausted", n, delivered, exhausted)
	})
	if err != nil {
		p.t.Fatal(err)
	}
	if exhausted == 0 {
		p.t.Fatal("the simulator gave up on no delivery: the receiver came back too early")
	}
	p.SetReplicas(ctx, 1)
	p.WaitReplicasReady(ctx, 1)
	return exhausted, p.WaitJobRunFinished(ctx, "1")
}

// SetReplicas sets the receiver's spec.replicas.
func (p *Pair) SetReplicas(ctx context.Context, n int) {
	p.t.Helper()
	patch := client.RawPatch("application/merge-patch+json", fmt.Appendf(nil, `{"spec":{"replicas":%d}}`, n))
	whr := &intunedv1alpha1.WebhookReceiver{ObjectMeta: metav1.ObjectMeta{Namespace: p.NS, Name: p.Receiver}}
	if err := p.Env.Client().Patch(ctx, whr, patch); err != nil {
		p.t.Fatal(err)
	}
}

// WaitDelivery waits until the newest JobRun's accounting is in state.
func (p *Pair) WaitDelivery(ctx context.Context, state intunedv1alpha1.DeliveryState) intunedv1alpha1.JobRunDelivery {
	p.t.Helper()
	var got intunedv1alpha1.JobRunDelivery
	err := poll.Eventually(ctx, 250*time.Millisecond, "status.deliveries[0] "+string(state), func(ctx context.Context) (bool, error) {
		ij := p.Get(ctx)
		if len(ij.Status.Deliveries) == 0 {
			return false, errors.New("no status.deliveries")
		}
		got = ij.Status.Deliveries[0]
		return got.State == state && got.Expected != nil && got.Stored != nil, fmt.Errorf("%s: %s", got.State, got.Message)
	})
	if err != nil {
		p.t.Fatal(err)
	}
	return got
}

// WaitCondition waits until the job's condition typ has status and reason.
func (p *Pair) WaitCondition(ctx context.Context, typ string, status metav1.ConditionStatus, reason string) {
	p.t.Helper()
	err := poll.Eventually(ctx, 250*time.Millisecond, typ+"="+string(status)+" "+reason, func(ctx context.Context) (bool, error) {
		cond := meta.FindStatusCondition(p.Get(ctx).Status.Conditions, typ)
		if cond == nil {
			return false, errors.New("no condition " + typ)
		}
		return cond.Status == status && cond.Reason == reason, fmt.Errorf("%s %s: %s", cond.Status, cond.Reason, cond.Message)
	})
	if err != nil {
		p.t.Fatal(err)
	}
}

type resultLine struct {
	api string
	raw json.RawMessage
}

// ResultsFile reads a JobRun's results file as Intuned serves it (Get Job
// Run's signed URL), by runId.
func (p *Pair) ResultsFile(ctx context.Context, jobRunID string) map[string]resultLine {
	p.t.Helper()
	out := map[string]resultLine{}
	p.readResultsFile(ctx, jobRunID, func(runID string, l resultLine) { out[runID] = l })
	return out
}

func (p *Pair) readResultsFile(ctx context.Context, jobRunID string, each func(runID string, l resultLine)) {
	p.t.Helper()
	sim := p.Env.Sim()
	api, err := intuned.New(intuned.Options{BaseURL: sim.BaseURL, WorkspaceID: sim.WorkspaceID, APIKey: sim.APIKey})
	if err != nil {
		p.t.Fatal(err)
	}
	resp, err := api.GetJobRun(ctx, p.Project, p.Job, jobRunID)
	if err != nil || resp.Results == nil {
		p.t.Fatalf("Get Job Run %s: %v (results %v)", jobRunID, err, resp)
	}
	body, err := intuned.OpenResults(ctx, http.DefaultClient, resp.Results, 0)
	if err != nil {
		p.t.Fatal(err)
	}
	defer body.Close()
	sc := bufio.NewScanner(body)
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var r struct {
			Name  string `json:"name"`
			RunID string `json:"runId"`
		}
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			p.t.Fatalf("results file line %q: %v", sc.Text(), err)
		}
		each(r.RunID, resultLine{api: r.Name, raw: append(json.RawMessage(nil), sc.Bytes()...)})
	}
	if err := sc.Err(); err != nil {
		p.t.Fatal(err)
	}
}

// ScheduleStalled: a scheduled job whose runs stop starting (the
// simulator's scheduler stalls) turns condition Fresh False with reason
// ScheduleMissed once the missed run is later than the grace period, and
// True again when runs resume.
func ScheduleStalled(t *testing.T, env Env) {
	ctx := Context(t, 5*time.Minute)
	sim := env.Sim()
	p := NewPair(t, ctx, env, "stale", func(s *flow.Samples) {
		// Every 5 simulated minutes: 5 real seconds at flow.SimTimeScale.
		s.Job.Spec.Schedule = &intunedv1alpha1.JobSchedule{Intervals: []intunedv1alpha1.ScheduleInterval{{Every: "5m"}}}
	})
	p.WaitReady(ctx)
	p.WaitCondition(ctx, intunedv1alpha1.ConditionFresh, metav1.ConditionTrue, intunedv1alpha1.ReasonOnSchedule)
	if err := sim.StallSchedules(ctx, true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.StallSchedules(context.Background(), false) })
	p.WaitCondition(ctx, intunedv1alpha1.ConditionFresh, metav1.ConditionFalse, intunedv1alpha1.ReasonScheduleMissed)
	if err := sim.StallSchedules(ctx, false); err != nil {
		t.Fatal(err)
	}
	p.WaitCondition(ctx, intunedv1alpha1.ConditionFresh, metav1.ConditionTrue, intunedv1alpha1.ReasonOnSchedule)
}

// BackfillRefusals: a results file backfill cannot use is reported and
// loses nothing. A gap as in DeliveryGapBackfilled (manual backfill, every
// API sent); the simulator then reports the file as parquet (BackfillFailed
// naming the format), then serves it with a missing result's line
// corrupted (BackfillFailed naming the line, the rest stored), then whole:
// the third request (intuned.io/backfill: <id>@3) completes it.
func BackfillRefusals(t *testing.T, env Env) {
	ctx := Context(t, 8*time.Minute)
	sim := env.Sim()
	p := NewPair(t, ctx, env, "backfill-refusals", func(s *flow.Samples) {
		s.Job.Spec.Sink.Webhook.Backfill = intunedv1alpha1.BackfillManual
	})
	p.WaitReady(ctx)
	exhausted, last := p.LoseDeliveries(ctx, flow.QuickstartDeliveries)
	t.Cleanup(func() { _ = sim.SetResultsFaults(context.Background()) })
	p.WaitDelivery(ctx, intunedv1alpha1.DeliveryGap)

	// The line of a result that never arrived.
	lines, order := p.ResultsFile(ctx, last.ID), p.ResultsOrder(ctx, last.ID)
	stored, err := p.RC.List(ctx, p.Job, "")
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, s := range stored {
		have[s.RunID] = true
	}
	corrupt := 0
	for i, runID := range order {
		if !have[runID] && lines[runID].api != "" {
			corrupt = i + 1
			break
		}
	}

	steps := []struct {
		fault    intunedsim.ResultsFault
		value    string
		state    intunedv1alpha1.DeliveryState
		reason   string
		mentions string
		missing  int64
	}{
		{intunedsim.ResultsFault{JobRunID: last.ID, Format: "parquet"}, last.ID, intunedv1alpha1.DeliveryGap, intunedv1alpha1.ReasonBackfillFailed, `format "parquet"`, int64(exhausted)},
		{intunedsim.ResultsFault{JobRunID: last.ID, CorruptLine: corrupt}, last.ID + "@2", intunedv1alpha1.DeliveryGap, intunedv1alpha1.ReasonBackfillFailed, fmt.Sprintf("line %d", corrupt), 1},
		{intunedsim.ResultsFault{}, last.ID + "@3", intunedv1alpha1.DeliveryBackfilled, intunedv1alpha1.ReasonBackfilled, "backfilled", 0},
	}
	for _, step := range steps {
		faults := []intunedsim.ResultsFault{step.fault}
		if step.fault == (intunedsim.ResultsFault{}) {
			faults = nil
		}
		if err := sim.SetResultsFaults(ctx, faults...); err != nil {
			t.Fatal(err)
		}
		if err := flow.Backfill(ctx, env.Client(), p.NS, p.Job, step.value); err != nil {
			t.Fatal(err)
		}
		err := poll.Eventually(ctx, 250*time.Millisecond, "backfill "+step.value+" handled", func(ctx context.Context) (bool, error) {
			ij := p.Get(ctx)
			d := ij.Status.Deliveries[0]
			cond := meta.FindStatusCondition(ij.Status.Conditions, intunedv1alpha1.ConditionDataComplete)
			ok := ij.Status.LastHandledBackfill == step.value && d.State == step.state && d.Missing != nil && *d.Missing == step.missing &&
				cond != nil && cond.Reason == step.reason && strings.Contains(cond.Message, step.mentions)
			return ok, fmt.Errorf("handled %q, %s missing %v: %s", ij.Status.LastHandledBackfill, d.State, d.Missing, d.Message)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	stored, err = p.RC.List(ctx, p.Job, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(stored) != flow.QuickstartDeliveries {
		t.Fatalf("%d results stored, want %d", len(stored), flow.QuickstartDeliveries)
	}
}

// ResultsOrder is the runIds of a JobRun's results file, in file order.
func (p *Pair) ResultsOrder(ctx context.Context, jobRunID string) []string {
	p.t.Helper()
	var out []string
	p.readResultsFile(ctx, jobRunID, func(runID string, _ resultLine) { out = append(out, runID) })
	return out
}
