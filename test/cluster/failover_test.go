package cluster

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/intunedsim"
	"github.com/intuned-operator/intuned-operator/internal/testutil/flow"
	"github.com/intuned-operator/intuned-operator/internal/testutil/poll"
	"github.com/intuned-operator/intuned-operator/internal/testutil/scenarios"
)

// leaseName is the manager's leader election Lease (cmd/manager).
const leaseName = "intuned-operator.intuned.io"

// TestManagerFailover: the install runs two manager replicas. The leader's
// process is SIGKILLed (a crash: it cannot release its Lease) while its create of a new
// Job, and later its trigger of that Job, is in flight on Intuned; the other
// replica takes the Lease over and finishes the work: one Job on Intuned,
// adopted as its own (managed), one JobRun for the one trigger.
func TestManagerFailover(t *testing.T) {
	ctx := scenarios.Context(t, 4*time.Minute)
	c := env.Client()
	sim := env.Sim()
	t.Cleanup(func() { _ = sim.SetFaults(context.Background()) })
	// Leave the install as the next test expects it: both replicas ready.
	t.Cleanup(func() {
		_, _ = env.kc.Kubectl(context.Background(), "-n", operatorNamespace, "rollout", "status",
			"deployment/intuned-operator-controller-manager", "--timeout=2m")
	})
	waitManagerReplicas(t, ctx, 2)

	ns := "kc-failover"
	if _, err := env.kc.Kubectl(ctx, "create", "namespace", ns); err != nil {
		t.Fatal(err)
	}
	s, err := flow.LoadSamples(ctx, env.Kubectl())
	if err != nil {
		t.Fatal(err)
	}
	s.UseSim(ns, sim)
	if err := c.Create(ctx, s.Credentials); err != nil {
		t.Fatal(err)
	}
	job := s.Job.DeepCopy()
	job.Name = "failover"
	job.Spec.Sink = &intunedv1alpha1.JobSink{Webhook: &intunedv1alpha1.WebhookSink{URL: "http://127.0.0.1:9/unused"}}
	t.Cleanup(func() { _ = c.Delete(context.Background(), job) })

	create := "POST " + intunedsim.APIPrefix + "/{ws}/projects/{p}/jobs"
	trigger := "POST " + intunedsim.APIPrefix + "/{ws}/projects/{p}/jobs/{jobId}/trigger"

	killLeaderDuring(t, ctx, create, func() error { return c.Create(ctx, job) })
	got := waitJobCondition(t, ctx, ns, job.Name, intunedv1alpha1.ConditionReady, metav1.ConditionTrue)
	if !got.Status.Managed {
		t.Errorf("after failover mid-create the Job is not managed (status %+v): the new leader took its predecessor's create for someone else's", got.Status.Conditions)
	}

	killLeaderDuring(t, ctx, trigger, func() error { return flow.Trigger(ctx, c, ns, job.Name, "once") })
	if _, err := flow.WaitJobRunFinished(ctx, c, ns, job.Name, "once"); err != nil {
		t.Fatal(err)
	}
	runs, err := sim.JobRuns(ctx, job.Spec.Project, job.EffectiveJobID())
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 1 {
		t.Errorf("JobRuns on Intuned after failover mid-trigger: %+v, want exactly one", runs)
	}
}

// killLeaderDuring holds Intuned's answers to route, runs act, and once the
// leader's call is in flight SIGKILLs the leader's process; then lets calls
// through again and waits until the other replica holds the Lease. It logs
// how long the takeover took.
func killLeaderDuring(t *testing.T, ctx context.Context, route string, act func() error) {
	t.Helper()
	sim := env.Sim()
	if err := sim.SetFaults(ctx, intunedsim.FaultRule{Match: route, LatencyMS: 120_000}); err != nil {
		t.Fatal(err)
	}
	before, err := sim.Calls(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := act(); err != nil {
		t.Fatal(err)
	}
	err = poll.Eventually(ctx, 100*time.Millisecond, "the leader's "+route+" in flight", func(ctx context.Context) (bool, error) {
		now, err := sim.Calls(ctx)
		return now[route] > before[route], err
	})
	if err != nil {
		t.Fatal(err)
	}
	leader := leaderIdentity(t, ctx)
	pod, _, _ := strings.Cut(leader, "_")
	var p corev1.Pod
	if err := env.Client().Get(ctx, client.ObjectKey{Namespace: operatorNamespace, Name: pod}, &p); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	if _, err := env.kc.KillContainerProcess(string(p.UID), "/manager"); err != nil {
		t.Fatal(err)
	}
	if err := sim.SetFaults(ctx); err != nil {
		t.Fatal(err)
	}
	var next string
	err = poll.Eventually(ctx, 200*time.Millisecond, "another manager process leads", func(ctx context.Context) (bool, error) {
		next = leaderIdentity(t, ctx)
		return next != "" && next != leader, fmt.Errorf("leader %q", next)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: leader %s SIGKILLed; %s leads %.1fs later", route, leader, next, time.Since(killed).Seconds())
}

// leaderIdentity is the Lease's holder: "<pod>_<uuid>", a new uuid for
// every manager process (a restarted container is another candidate).
func leaderIdentity(t *testing.T, ctx context.Context) string {
	t.Helper()
	var lease coordinationv1.Lease
	if err := env.Client().Get(ctx, client.ObjectKey{Namespace: operatorNamespace, Name: leaseName}, &lease); err != nil {
		t.Fatal(err)
	}
	if lease.Spec.HolderIdentity == nil {
		return ""
	}
	return *lease.Spec.HolderIdentity
}

// waitManagerReplicas waits until n manager Pods run, all ready.
func waitManagerReplicas(t *testing.T, ctx context.Context, n int) {
	t.Helper()
	err := poll.Eventually(ctx, 250*time.Millisecond, fmt.Sprintf("%d manager replicas ready", n), func(ctx context.Context) (bool, error) {
		var pods corev1.PodList
		if err := env.Client().List(ctx, &pods, client.InNamespace(operatorNamespace), client.MatchingLabels{"control-plane": "controller-manager"}); err != nil {
			return false, err
		}
		ready := 0
		for i := range pods.Items {
			if pods.Items[i].DeletionTimestamp == nil && podReady(&pods.Items[i]) {
				ready++
			}
		}
		return ready == n && len(pods.Items) == n, fmt.Errorf("%d Pods, %d ready", len(pods.Items), ready)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// waitJobCondition waits until the IntunedJob's condition has status for
// its current generation.
func waitJobCondition(t *testing.T, ctx context.Context, ns, name, typ string, status metav1.ConditionStatus) *intunedv1alpha1.IntunedJob {
	t.Helper()
	var j intunedv1alpha1.IntunedJob
	err := poll.Eventually(ctx, 200*time.Millisecond, fmt.Sprintf("IntunedJob %s %s=%s", name, typ, status), func(ctx context.Context) (bool, error) {
		if err := env.Client().Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &j); err != nil {
			return false, err
		}
		cond := meta.FindStatusCondition(j.Status.Conditions, typ)
		if cond == nil {
			return false, errors.New("no condition yet")
		}
		return cond.Status == status && cond.ObservedGeneration == j.Generation, fmt.Errorf("%s %s: %s", cond.Status, cond.Reason, cond.Message)
	})
	if err != nil {
		t.Fatal(err)
	}
	return &j
}
