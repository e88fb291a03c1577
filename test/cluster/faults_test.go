package cluster

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/intuned-operator/intuned-operator/internal/testutil/flow"
	"github.com/intuned-operator/intuned-operator/internal/testutil/scenarios"
)

// The scenarios both environments run (internal/testutil/scenarios); the
// real node adds what only it has (see TestQuickstart and
// TestPostgresScaledOut for the checks only it can make).

func TestReceiverLostMidRun(t *testing.T)     { scenarios.ReceiverLostMidRun(t, &env) }
func TestTokenRotationDuringRun(t *testing.T) { scenarios.TokenRotationDuringRun(t, &env) }

// TestBackupRestore: the backup is written to and read from the
// receiver's provisioned volume, through its Service.
func TestBackupRestore(t *testing.T) { scenarios.BackupRestore(t, &env) }

// TestDeliveryGapBackfilled: the receiver's StatefulSet at 0 for longer
// than the simulator's retry window; Auto backfill, from the manager's Pod
// through the receiver's Service (cluster DNS), closes the gap.
func TestDeliveryGapBackfilled(t *testing.T) { scenarios.DeliveryGapBackfilled(t, &env, false) }

// onlyReadyPod waits until the receiver runs exactly one Pod, Ready, and
// returns it.
func onlyReadyPod(t *testing.T, ctx context.Context, p *scenarios.Pair) corev1.Pod {
	t.Helper()
	p.WaitReplicasReady(ctx, 1)
	pods, err := env.receiverPods(ctx, p.NS, p.Receiver)
	if err != nil || len(pods) != 1 {
		t.Fatalf("receiver Pods: %d (%v), want 1", len(pods), err)
	}
	return pods[0]
}

// TestNodeAgentsRestart: restarting the kubelet and containerd (as a node
// upgrade does) leaves the receiver serving and the operator working.
func TestNodeAgentsRestart(t *testing.T) {
	ctx := scenarios.Context(t, 5*time.Minute)
	p := scenarios.NewPair(t, ctx, &env, "node-restart", nil)
	p.WaitReady(ctx)
	before := onlyReadyPod(t, ctx, p)
	for _, comp := range []string{"kubelet", "containerd"} {
		if err := env.kc.Restart(ctx, comp, comp == "containerd"); err != nil {
			t.Fatalf("restart %s: %v", comp, err)
		}
	}
	p.Trigger(ctx, "1")
	rep := p.WaitAllDelivered(ctx, flow.QuickstartDeliveries)
	after := onlyReadyPod(t, ctx, p)
	if after.UID != before.UID {
		t.Errorf("the receiver Pod was replaced (%s -> %s); a restart of the node agents should not do that", before.UID, after.UID)
	}
	t.Logf("after kubelet and containerd restarts: %s; receiver restarts %d", rep, after.Status.ContainerStatuses[0].RestartCount)
}

// TestPostgresScaledOut: scenarios.PostgresScaledOut with three Pods behind
// one Service and Ingress; then a drain of the node, which the
// PodDisruptionBudget holds to one Pod at a time.
func TestPostgresScaledOut(t *testing.T) {
	p := scenarios.PostgresScaledOut(t, &env, 3)
	ctx := scenarios.Context(t, 3*time.Minute)
	cfg := env.kc.Config()
	// Leave the node schedulable whatever happens (before the receivers
	// stop: cleanups run last registered first).
	t.Cleanup(func() { _, _ = env.kc.Kubectl(context.Background(), "uncordon", cfg.NodeName) })
	p.WaitReplicasReady(ctx, 3)
	// A drain evicts through the PodDisruptionBudget (maxUnavailable 1 by
	// default with several replicas). On a single node the evicted Pod cannot
	// come back while the node is cordoned, so the drain must stop at one.
	out, drainErr := env.kc.Kubectl(ctx, "drain", cfg.NodeName, "--pod-selector=app.kubernetes.io/instance="+p.Receiver,
		"--ignore-daemonsets", "--delete-emptydir-data", "--timeout=20s")
	if drainErr == nil {
		t.Fatalf("drain evicted every receiver Pod despite the PodDisruptionBudget:\n%s", out)
	}
	_, running, err := env.Replicas(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if running != 2 {
		t.Errorf("after the drain %d receiver Pods run, want 2 (one evicted, the budget holds the rest)", running)
	}
	if !strings.Contains(out+drainErr.Error(), "disruption budget") {
		t.Errorf("drain did not stop on the disruption budget: %v\n%s", drainErr, out)
	}
	if _, err := env.kc.Kubectl(ctx, "uncordon", cfg.NodeName); err != nil {
		t.Fatal(err)
	}
	p.WaitReplicasReady(ctx, 3)
	p.Trigger(ctx, "2")
	rep := p.WaitAllDelivered(ctx, 2*flow.QuickstartDeliveries)
	t.Logf("after the drain: %s", rep)
}
