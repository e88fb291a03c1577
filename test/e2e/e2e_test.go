package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/testutil/pgtest"
	"github.com/intuned-operator/intuned-operator/test/e2e/harness"
)

// h is the cluster shared by every test: one API server, simulator and
// manager (starting them is the slow part). Each test works in its own
// namespace with its own receiver and job; tests run one after another
// because some of them restart the shared manager.
var h *harness.Harness

// Simulator settings: one simulated minute per real second, and each API
// Run lasting a simulated minute (one real second), so a quickstart JobRun
// spans a couple of seconds — long enough to break things in the middle of
// it — while an hour of Intuned's delivery retries takes a minute.
var simArgs = []string{"--run-duration", "60s", "--products", "5", "--seed", "7"}

// tokenDelayFlag is the manager's knob for how long a new receiver token is
// staged before it becomes current (default 90s, the kubelet's Secret
// propagation time); tokenSwapBound is how long the rotation test waits
// for the swap.
const tokenDelayFlag = "token-propagation-delay"

var (
	tokenSwapBound = 150 * time.Second
	fastTokenSwap  bool
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ctrllog.SetLogger(logr.Discard()) // envtest logs through controller-runtime; keep the output to ours
	if _, err := harness.AssetsDir(); err != nil {
		if os.Getenv("CI") != "true" {
			fmt.Fprintln(os.Stderr, "SKIP test/e2e:", err)
			return 0
		}
		fmt.Fprintln(os.Stderr, "FAIL test/e2e:", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "intuned-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL test/e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	bins, err := harness.BuildBinaries(ctx, filepath.Join(dir, "bin"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL test/e2e:", err)
		return 1
	}
	// The kubelet here refreshes Secret volumes within a second, so the
	// operator need not wait the real kubelet's propagation time before a
	// rotated token becomes current (when the manager has that knob).
	var managerArgs []string
	if harness.SupportsFlag(bins.Manager, tokenDelayFlag) {
		managerArgs = append(managerArgs, "--"+tokenDelayFlag+"=2s")
		tokenSwapBound, fastTokenSwap = 30*time.Second, true
	}
	h, err = harness.Start(ctx, harness.Options{
		Dir:         dir,
		Binaries:    &bins,
		ManagerArgs: managerArgs,
		TimeScale:   60,
		SimArgs:     simArgs,
		Logf: func(format string, args ...any) {
			if os.Getenv("E2E_VERBOSE") != "" {
				fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05.000 ")+format+"\n", args...)
			}
		},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL test/e2e: start harness:", err)
		return 1
	}
	code := m.Run()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "manager log (tail):\n%s\n", tail(h.ManagerLog(), 6000))
	}
	h.Close()
	return code
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

var nsSeq atomic.Int32

// pair is one WebhookReceiver and one IntunedJob built from config/samples
// in a fresh namespace.
type pair struct {
	ns, receiver, job string
	externalURL       string
	rc                harness.ReceiverClient
	project           string
}

// newPair applies the quickstart samples into a new namespace with unique
// names (the simulator is one workspace shared by all tests), after letting
// mutate change the job.
func newPair(t *testing.T, ctx context.Context, name string, mutate func(*intunedv1alpha1.IntunedJob)) *pair {
	return newPairWith(t, ctx, name, mutate, nil)
}

// newPairWith is newPair that also lets prepare change the receiver and
// create what it needs in the namespace first.
func newPairWith(t *testing.T, ctx context.Context, name string, mutate func(*intunedv1alpha1.IntunedJob),
	prepare func(ns string, whr *intunedv1alpha1.WebhookReceiver)) *pair {
	t.Helper()
	s, err := h.LoadSamples(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p := &pair{ns: fmt.Sprintf("e2e-%d-%s", nsSeq.Add(1), name)}
	if err := h.CreateNamespace(ctx, p.ns); err != nil {
		t.Fatal(err)
	}
	port, err := harness.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	p.externalURL = fmt.Sprintf("http://127.0.0.1:%d/webhooks/intuned", port)
	s.ForLocalCluster(p.ns, h.Sim, p.externalURL)
	p.receiver = s.Receiver.Name
	s.Job.Name = "e2e-" + name // also the Intuned job id: unique in the shared workspace
	s.Job.Spec.PollInterval = &metav1.Duration{Duration: 10 * time.Second}
	if mutate != nil {
		mutate(s.Job)
	}
	if prepare != nil {
		prepare(p.ns, s.Receiver)
	}
	p.job = s.Job.EffectiveJobID()
	p.project = s.Job.Spec.Project
	if err := s.Apply(ctx, h.Client); err != nil {
		t.Fatal(err)
	}
	before := len(h.Kubelet.Failures())
	t.Cleanup(func() { checkHealthy(t, before) })
	return p
}

// checkHealthy fails the test if the kubelet could not run a receiver Pod
// as specified or the manager died.
func checkHealthy(t *testing.T, before int) {
	t.Helper()
	if f := h.Kubelet.Failures()[before:]; len(f) > 0 {
		t.Errorf("receiver Pods did not run as specified:\n%s", strings.Join(f, "\n"))
	}
	if exited, log := h.ManagerExited(); exited {
		t.Errorf("manager exited: %s", log)
	}
}

// waitReady waits for the receiver to be Ready and the job Synced, then
// sets up the read client.
func (p *pair) waitReady(t *testing.T, ctx context.Context) {
	t.Helper()
	err := harness.Eventually(ctx, 200*time.Millisecond, "WebhookReceiver Ready", func(ctx context.Context) (bool, error) {
		var whr intunedv1alpha1.WebhookReceiver
		if err := h.Client.Get(ctx, client.ObjectKey{Namespace: p.ns, Name: p.receiver}, &whr); err != nil {
			return false, err
		}
		if whr.Status.URL != "" && whr.Status.URL != p.externalURL {
			return false, fmt.Errorf("status.url = %q, want the externalURL %q", whr.Status.URL, p.externalURL)
		}
		return meta.IsStatusConditionTrue(whr.Status.Conditions, intunedv1alpha1.ConditionReady), fmt.Errorf("conditions %v", whr.Status.Conditions)
	})
	if err != nil {
		t.Fatalf("%v; kubelet failures: %v", err, h.Kubelet.Failures())
	}
	p.waitSynced(t, ctx)
	_, read, err := harness.ReceiverTokens(ctx, h.Client, p.ns, p.receiver)
	if err != nil {
		t.Fatal(err)
	}
	if read == "" {
		t.Fatal("token Secret has no read-token")
	}
	p.rc = harness.ReceiverClient{BaseURL: strings.TrimSuffix(p.externalURL, "/webhooks/intuned"), ReadToken: read}
}

func (p *pair) waitSynced(t *testing.T, ctx context.Context) {
	t.Helper()
	err := harness.Eventually(ctx, 200*time.Millisecond, "IntunedJob Synced", func(ctx context.Context) (bool, error) {
		ij := p.get(t, ctx)
		if ij.Status.Sink != nil && ij.Status.Sink.URL != "" && ij.Status.Sink.URL != p.externalURL {
			return false, fmt.Errorf("status.sink.url = %q, want %q", ij.Status.Sink.URL, p.externalURL)
		}
		return meta.IsStatusConditionTrue(ij.Status.Conditions, intunedv1alpha1.ConditionSynced), fmt.Errorf("conditions %v", ij.Status.Conditions)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func (p *pair) get(t *testing.T, ctx context.Context) *intunedv1alpha1.IntunedJob {
	t.Helper()
	var ij intunedv1alpha1.IntunedJob
	if err := h.Client.Get(ctx, client.ObjectKey{Namespace: p.ns, Name: p.job}, &ij); err != nil && ctx.Err() == nil {
		t.Fatal(err)
	}
	return &ij
}

// trigger sets the trigger annotation and waits for the JobRun it starts
// (seen in the simulator's delivery log or the job's status).
func (p *pair) trigger(t *testing.T, ctx context.Context, value string) {
	t.Helper()
	if err := harness.Trigger(ctx, h.Client, p.ns, p.job, value); err != nil {
		t.Fatal(err)
	}
}

// waitStored waits until at least n deliveries of the job are in the store.
func (p *pair) waitStored(t *testing.T, ctx context.Context, n int) {
	t.Helper()
	err := harness.Eventually(ctx, 100*time.Millisecond, fmt.Sprintf("%d deliveries stored", n), func(ctx context.Context) (bool, error) {
		got, err := p.rc.List(ctx, p.job, "")
		return len(got) >= n, err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// waitAllDelivered: harness.WaitAllDelivered, failing the test.
func (p *pair) waitAllDelivered(t *testing.T, ctx context.Context, want int) harness.DeliveryReport {
	t.Helper()
	rep, err := harness.WaitAllDelivered(ctx, h.Sim, p.rc, p.job, want)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// waitJobRunInStatus waits until status.lastJobRun names a finished JobRun
// and returns it.
func (p *pair) waitJobRunInStatus(t *testing.T, ctx context.Context, wantTrigger string) *intunedv1alpha1.JobRunSummary {
	t.Helper()
	last, err := harness.WaitJobRunFinished(ctx, h.Client, p.ns, p.job, wantTrigger)
	if err != nil {
		t.Fatal(err)
	}
	return last
}

// jobRunIDs are the JobRuns the simulator delivered for the job.
func jobRunIDs(t *testing.T, ctx context.Context, job string) map[string]int {
	t.Helper()
	ds, err := h.Sim.Deliveries(ctx, job)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, d := range ds {
		out[d.JobRunID]++
	}
	return out
}

// TestQuickstart is `make demo` asserted: the samples, one trigger, every
// delivery in the store exactly once and byte for byte, and the JobRun in
// the IntunedJob's status.
func TestQuickstart(t *testing.T) {
	ctx := harness.TestContext(t, 2*time.Minute)
	p := newPair(t, ctx, "quickstart", nil)
	p.waitReady(t, ctx)
	p.trigger(t, ctx, "1")
	rep := p.waitAllDelivered(t, ctx, harness.QuickstartDeliveries)
	runs := jobRunIDs(t, ctx, p.job)
	if len(runs) != 1 {
		t.Fatalf("JobRuns in the delivery log: %v, want one", runs)
	}
	last := p.waitJobRunInStatus(t, ctx, "1")
	if _, ok := runs[last.ID]; !ok {
		t.Errorf("status.lastJobRun.id = %q, not the JobRun that delivered (%v)", last.ID, runs)
	}
	if last.Status != "COMPLETED" {
		t.Errorf("status.lastJobRun.status = %q, want COMPLETED", last.Status)
	}
	t.Logf("quickstart: %s; lastJobRun %s %s", rep, last.ID, last.Status)
}

// TestReceiverKilledDuringRun kills the receiver after the first delivery
// of a run and keeps it down until the simulator has seen deliveries fail;
// Intuned's retries (on the compressed clock) must then bring every one in.
func TestReceiverKilledDuringRun(t *testing.T) {
	ctx := harness.TestContext(t, 3*time.Minute)
	p := newPair(t, ctx, "receiver-kill", nil)
	p.waitReady(t, ctx)
	p.trigger(t, ctx, "1")
	p.waitStored(t, ctx, 1)
	if err := h.Kubelet.KillReceiver(p.ns, p.receiver, 0, time.Hour); err != nil {
		t.Fatal(err)
	}
	// Down until at least two deliveries have failed an attempt.
	err := harness.WaitFailedAttempts(ctx, h.Sim, p.job, 2)
	h.Kubelet.ReleaseReceiver(p.ns, p.receiver, 0)
	if err != nil {
		t.Fatal(err)
	}
	rep := p.waitAllDelivered(t, ctx, harness.QuickstartDeliveries)
	if rep.Attempts <= rep.Sent {
		t.Errorf("no retries happened (%s): the fault missed the run", rep)
	}
	t.Logf("receiver killed mid-run: %s", rep)
}

// TestManagerRestartMidRun crashes the manager (SIGKILL) while a JobRun is
// delivering; the new manager must not trigger the job again, and the run's
// data must all arrive.
func TestManagerRestartMidRun(t *testing.T) {
	ctx := harness.TestContext(t, 3*time.Minute)
	p := newPair(t, ctx, "manager-restart", nil)
	p.waitReady(t, ctx)
	p.trigger(t, ctx, "once")
	p.waitStored(t, ctx, 1)
	h.StopManager(true)
	if err := h.StartManager(ctx); err != nil {
		t.Fatal(err)
	}
	p.waitAllDelivered(t, ctx, harness.QuickstartDeliveries)
	// The new manager has reconciled the job once it reports the finished run.
	last := p.waitJobRunInStatus(t, ctx, "once")
	runs, err := h.Sim.JobRuns(ctx, p.project, p.job)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 1 || runs[0].ID != last.ID {
		t.Fatalf("JobRuns on Intuned after the restart: %+v, want exactly the one in status (%s)", runs, last.ID)
	}
}

// TestTokenRotationDuringRun rotates the receiver's token while a JobRun
// still has deliveries to make, then runs the job again on the new token.
// Intuned keeps the sink a JobRun started with (job_configuration_snapshot),
// so the first run's remaining deliveries carry the old token to the end,
// retries included; they must all be stored.
//
// When the manager lets the test shorten the token propagation delay, the
// case is made certain: the network path to the receiver is cut (the Pod
// stays up and Ready) from the first delivery until the operator considers
// the rotation finished, so every remaining delivery of the first run
// arrives after the switch. Otherwise the rotation takes the operator's
// default delay (90s) and the first run is over long before it.
func TestTokenRotationDuringRun(t *testing.T) {
	ctx := harness.TestContext(t, 3*time.Minute+tokenSwapBound)
	p := newPair(t, ctx, "token-rotation", nil)
	p.waitReady(t, ctx)
	oldToken, _, err := harness.ReceiverTokens(ctx, h.Client, p.ns, p.receiver)
	if err != nil {
		t.Fatal(err)
	}
	p.trigger(t, ctx, "1")
	p.waitStored(t, ctx, 1)
	if fastTokenSwap {
		if err := h.Kubelet.PartitionReceiver(p.ns, p.receiver, true); err != nil {
			t.Fatal(err)
		}
	}
	if err := harness.RotateToken(ctx, h.Client, p.ns, p.receiver, "r1"); err != nil {
		t.Fatal(err)
	}
	// The switch is done when the new token is current and the job's
	// Intuned sink carries it (Synced). With fastTokenSwap, also wait for
	// the operator to stop accepting the old token, bounded: a careful
	// operator may keep it for Intuned's whole retry window.
	rctx, rcancel := context.WithTimeout(ctx, tokenSwapBound)
	defer rcancel()
	err = harness.Eventually(rctx, 100*time.Millisecond, "new token current and pushed to Intuned", func(ctx context.Context) (bool, error) {
		tok, _, err := harness.ReceiverTokens(ctx, h.Client, p.ns, p.receiver)
		if err != nil {
			return false, err
		}
		if tok == oldToken {
			return false, errors.New("token not changed yet")
		}
		ij := p.get(t, ctx)
		if !meta.IsStatusConditionTrue(ij.Status.Conditions, intunedv1alpha1.ConditionSynced) {
			return false, fmt.Errorf("job conditions %v", ij.Status.Conditions)
		}
		if !fastTokenSwap {
			return true, nil
		}
		var whr intunedv1alpha1.WebhookReceiver
		if err := h.Client.Get(ctx, client.ObjectKey{Namespace: p.ns, Name: p.receiver}, &whr); err != nil {
			return false, err
		}
		var sec corev1.Secret
		if err := h.Client.Get(ctx, client.ObjectKey{Namespace: p.ns, Name: whr.Status.TokenSecretName}, &sec); err != nil {
			return false, err
		}
		_, keepsOld := sec.Data["previous-token"]
		return !keepsOld, errors.New("previous-token still accepted")
	})
	if fastTokenSwap {
		t.Logf("while cut off: %v", err)
		if err := h.Kubelet.PartitionReceiver(p.ns, p.receiver, false); err != nil {
			t.Fatal(err)
		}
	} else if err != nil {
		t.Fatal(err)
	}
	rep := p.waitAllDelivered(t, ctx, harness.QuickstartDeliveries)
	t.Logf("first run (old token): %s", rep)
	p.trigger(t, ctx, "2")
	rep = p.waitAllDelivered(t, ctx, 2*harness.QuickstartDeliveries)
	t.Logf("both runs: %s", rep)
}

// TestScheduledJob lets an interval schedule fire the job on its own (no
// trigger): a SCHEDULED JobRun must deliver in full to the receiver.
func TestScheduledJob(t *testing.T) {
	ctx := harness.TestContext(t, 3*time.Minute)
	p := newPair(t, ctx, "scheduled", func(j *intunedv1alpha1.IntunedJob) {
		// 5 simulated minutes: 5 real seconds at --time-scale 60.
		j.Spec.Schedule = &intunedv1alpha1.JobSchedule{Intervals: []intunedv1alpha1.ScheduleInterval{{Every: "5m"}}}
	})
	p.waitReady(t, ctx)
	// The first JobRun whose deliveries are all acknowledged.
	var jobRun string
	var rep harness.DeliveryReport
	err := harness.Eventually(ctx, 250*time.Millisecond, "a scheduled JobRun delivered in full", func(ctx context.Context) (bool, error) {
		for id, n := range jobRunIDs(t, ctx, p.job) {
			if n < harness.QuickstartDeliveries {
				continue
			}
			r, err := harness.CompareDeliveries(ctx, h.Sim, p.rc, p.job, id)
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
	if !rep.OK() || rep.Sent != harness.QuickstartDeliveries || rep.Stored != harness.QuickstartDeliveries {
		t.Fatalf("scheduled JobRun %s: %s", jobRun, rep)
	}
	runs, err := h.Sim.JobRuns(ctx, p.project, p.job)
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

// TestPostgresReceiverScalesOut runs the receiver on PostgreSQL with two
// replicas (a Deployment): both run from the operator's Pod spec with the
// DSN from a Secret file, deliveries spread over them, and killing one
// mid-run loses nothing.
func TestPostgresReceiverScalesOut(t *testing.T) {
	if _, err := pgtest.FindBinDir(); err != nil {
		if os.Getenv("CI") != "true" {
			t.Skip("PostgreSQL binaries not found:", err)
		}
		t.Fatal(err)
	}
	ctx := harness.TestContext(t, 3*time.Minute)
	pg, err := pgtest.Start(ctx, pgtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pg.Stop() })
	dsn, err := pg.CreateDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p := newPairWith(t, ctx, "postgres", nil, func(ns string, whr *intunedv1alpha1.WebhookReceiver) {
		sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "receiver-db"}, StringData: map[string]string{"dsn": dsn}}
		if err := h.Client.Create(ctx, sec); err != nil {
			t.Fatal(err)
		}
		two := int32(2)
		whr.Spec.Replicas = &two
		whr.Spec.Storage = &intunedv1alpha1.ReceiverStorage{Postgres: &intunedv1alpha1.PostgresStorage{
			DSNSecretRef: intunedv1alpha1.SecretKeyRef{Name: "receiver-db", Key: "dsn"}}}
	})
	// Stop the receivers before the database goes away (cleanups run last
	// registered first).
	t.Cleanup(func() {
		var whr intunedv1alpha1.WebhookReceiver
		if err := h.Client.Get(ctx, client.ObjectKey{Namespace: p.ns, Name: p.receiver}, &whr); err != nil {
			t.Error(err)
			return
		}
		patch := client.MergeFrom(whr.DeepCopy())
		whr.Spec.Replicas = new(int32)
		if err := h.Client.Patch(ctx, &whr, patch); err != nil {
			t.Error(err)
			return
		}
		err := harness.Eventually(ctx, 100*time.Millisecond, "receivers stopped", func(context.Context) (bool, error) {
			return len(h.Kubelet.ReceiverReplicas(p.ns, p.receiver)) == 0, nil
		})
		if err != nil {
			t.Error(err)
		}
	})
	p.waitReady(t, ctx)
	if err := h.Kubelet.WaitReceiverReady(ctx, p.ns, p.receiver, 2); err != nil {
		t.Fatal(err)
	}
	p.trigger(t, ctx, "1")
	p.waitStored(t, ctx, 1)
	if err := h.Kubelet.KillReceiver(p.ns, p.receiver, 1, time.Second); err != nil {
		t.Fatal(err)
	}
	rep := p.waitAllDelivered(t, ctx, harness.QuickstartDeliveries)
	t.Logf("postgres, 2 replicas, one killed mid-run: %s", rep)
}
