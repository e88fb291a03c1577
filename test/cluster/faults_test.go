package cluster

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/testutil/pgtest"
	"github.com/intuned-operator/intuned-operator/test/e2e/harness"
)

func (p *pair) waitFailedAttempts(t *testing.T, ctx context.Context, n int) {
	t.Helper()
	if err := harness.WaitFailedAttempts(ctx, env.sim, p.job, n); err != nil {
		t.Fatal(err)
	}
}

// waitPodsReady waits until n receiver Pods are Ready, and returns them.
func (p *pair) waitPodsReady(t *testing.T, ctx context.Context, n int) []corev1.Pod {
	t.Helper()
	var pods []corev1.Pod
	err := harness.Eventually(ctx, 250*time.Millisecond, fmt.Sprintf("%d receiver Pods ready", n), func(ctx context.Context) (bool, error) {
		pods = p.receiverPods(t, ctx)
		ready := 0
		for _, pod := range pods {
			if pod.DeletionTimestamp == nil && podReady(&pod) {
				ready++
			}
		}
		return ready == n && len(pods) == n, fmt.Errorf("%d of %d Pods ready", ready, len(pods))
	})
	if err != nil {
		t.Fatal(err)
	}
	return pods
}

func podReady(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// TestReceiverPodDeletedMidRun: the StatefulSet recreates a deleted receiver
// Pod on the same volume, so what was stored before stays, and Intuned's
// retries fill the gap the deletion left.
func TestReceiverPodDeletedMidRun(t *testing.T) {
	ctx := harness.TestContext(t, 5*time.Minute)
	p := newPair(t, ctx, "pod-deleted", nil)
	p.waitReady(t, ctx)
	p.trigger(t, ctx, "1")
	p.waitAllDelivered(t, ctx, harness.QuickstartDeliveries)
	p.waitJobRunFinished(t, ctx, "1")
	before := p.waitPodsReady(t, ctx, 1)[0]

	p.trigger(t, ctx, "2")
	err := harness.Eventually(ctx, 50*time.Millisecond, "second JobRun started", func(ctx context.Context) (bool, error) {
		return p.get(t, ctx).Status.LastHandledTrigger == "2", nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.kc.Kubectl(ctx, "-n", p.ns, "delete", "pod", before.Name, "--grace-period=0", "--force", "--wait=false"); err != nil {
		t.Fatal(err)
	}
	p.waitFailedAttempts(t, ctx, 1)
	after := p.waitPodsReady(t, ctx, 1)[0]
	if after.UID == before.UID {
		t.Fatal("the receiver Pod was not replaced")
	}
	if claim := volumeClaim(&after); claim == "" || claim != volumeClaim(&before) {
		t.Errorf("the new Pod mounts claim %q, the old one %q: want the same", claim, volumeClaim(&before))
	}
	rep := p.waitAllDelivered(t, ctx, 2*harness.QuickstartDeliveries)
	if rep.Attempts <= rep.Sent {
		t.Errorf("no retries (%s): the deletion missed the run", rep)
	}
	t.Logf("receiver Pod deleted mid-run: %s", rep)
}

func volumeClaim(pod *corev1.Pod) string {
	for _, v := range pod.Spec.Volumes {
		if v.PersistentVolumeClaim != nil {
			return v.PersistentVolumeClaim.ClaimName
		}
	}
	return ""
}

// TestTokenRotationThroughSecretVolume: the rotated token reaches the
// receiver through a real Secret volume (the kubelet's own propagation
// delay) and Intuned's sink config, with no delivery refused for good.
func TestTokenRotationThroughSecretVolume(t *testing.T) {
	ctx := harness.TestContext(t, 6*time.Minute)
	p := newPair(t, ctx, "rotation", nil)
	p.waitReady(t, ctx)
	oldToken, _, err := harness.ReceiverTokens(ctx, env.client, p.ns, p.receiver)
	if err != nil {
		t.Fatal(err)
	}
	p.trigger(t, ctx, "1")
	if err := harness.RotateToken(ctx, env.client, p.ns, p.receiver, "r1"); err != nil {
		t.Fatal(err)
	}
	err = harness.Eventually(ctx, 250*time.Millisecond, "new token current and pushed to Intuned", func(ctx context.Context) (bool, error) {
		tok, _, err := harness.ReceiverTokens(ctx, env.client, p.ns, p.receiver)
		if err != nil {
			return false, err
		}
		if tok == oldToken {
			return false, errors.New("token not changed yet")
		}
		ij := p.get(t, ctx)
		return meta.IsStatusConditionTrue(ij.Status.Conditions, intunedv1alpha1.ConditionSynced), fmt.Errorf("job conditions %v", ij.Status.Conditions)
	})
	if err != nil {
		t.Fatal(err)
	}
	p.trigger(t, ctx, "2")
	rep := p.waitAllDelivered(t, ctx, 2*harness.QuickstartDeliveries)
	t.Logf("token rotated between two runs: %s", rep)
}

// TestNodeAgentsRestart: restarting the kubelet and containerd (as a node
// upgrade does) leaves the receiver serving and the operator working.
func TestNodeAgentsRestart(t *testing.T) {
	ctx := harness.TestContext(t, 5*time.Minute)
	p := newPair(t, ctx, "node-restart", nil)
	p.waitReady(t, ctx)
	before := p.waitPodsReady(t, ctx, 1)[0]
	for _, comp := range []string{"kubelet", "containerd"} {
		if err := env.kc.Restart(ctx, comp, comp == "containerd"); err != nil {
			t.Fatalf("restart %s: %v", comp, err)
		}
	}
	p.trigger(t, ctx, "1")
	rep := p.waitAllDelivered(t, ctx, harness.QuickstartDeliveries)
	after := p.waitPodsReady(t, ctx, 1)[0]
	if after.UID != before.UID {
		t.Errorf("the receiver Pod was replaced (%s -> %s); a restart of the node agents should not do that", before.UID, after.UID)
	}
	t.Logf("after kubelet and containerd restarts: %s; receiver restarts %d", rep, after.Status.ContainerStatuses[0].RestartCount)
}

// TestPostgresReceiverScaledToThree: a PostgreSQL-backed receiver scaled to
// three Pods behind one Service and Ingress; one Pod deleted mid-run; then a
// drain of the node, which the PodDisruptionBudget holds to one Pod at a time.
func TestPostgresReceiverScaledToThree(t *testing.T) {
	ctx := harness.TestContext(t, 6*time.Minute)
	cfg := env.kc.Config()
	pg, err := pgtest.Start(ctx, pgtest.Options{ListenAddr: cfg.NodeIP, NetNS: "/run/netns/" + cfg.Name})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pg.Stop() })
	dsn, err := pg.CreateDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p := newPair(t, ctx, "postgres", func(s *harness.Samples) {
		sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: s.Receiver.Namespace, Name: "receiver-db"}, StringData: map[string]string{"dsn": dsn}}
		if err := env.client.Create(ctx, sec); err != nil {
			t.Fatal(err)
		}
		s.Receiver.Spec.Storage = &intunedv1alpha1.ReceiverStorage{Postgres: &intunedv1alpha1.PostgresStorage{
			DSNSecretRef: intunedv1alpha1.SecretKeyRef{Name: "receiver-db", Key: "dsn"}}}
	})
	// Stop the receivers before the database goes away (cleanups run last
	// registered first), and leave the node schedulable whatever happens.
	t.Cleanup(func() {
		_, _ = env.kc.Kubectl(context.Background(), "uncordon", cfg.NodeName)
		_, _ = env.kc.Kubectl(context.Background(), "-n", p.ns, "delete", "webhookreceiver", p.receiver, "--wait=true", "--timeout=60s")
	})
	p.waitReady(t, ctx)
	p.waitPodsReady(t, ctx, 1)
	if _, err := env.kc.Kubectl(ctx, "-n", p.ns, "patch", "webhookreceiver", p.receiver, "--type=merge", "-p", `{"spec":{"replicas":3}}`); err != nil {
		t.Fatal(err)
	}
	pods := p.waitPodsReady(t, ctx, 3)

	p.trigger(t, ctx, "1")
	err = harness.Eventually(ctx, 50*time.Millisecond, "JobRun started", func(ctx context.Context) (bool, error) {
		return p.get(t, ctx).Status.LastHandledTrigger == "1", nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.kc.Kubectl(ctx, "-n", p.ns, "delete", "pod", pods[1].Name, "--grace-period=0", "--force", "--wait=false"); err != nil {
		t.Fatal(err)
	}
	rep := p.waitAllDelivered(t, ctx, harness.QuickstartDeliveries)
	t.Logf("postgres, 3 replicas, one deleted mid-run: %s", rep)
	p.waitPodsReady(t, ctx, 3)

	// A drain evicts through the PodDisruptionBudget (maxUnavailable 1 by
	// default with several replicas). On a single node the evicted Pod cannot
	// come back while the node is cordoned, so the drain must stop at one.
	out, err := env.kc.Kubectl(ctx, "drain", cfg.NodeName, "--pod-selector=app.kubernetes.io/instance="+p.receiver,
		"--ignore-daemonsets", "--delete-emptydir-data", "--timeout=20s")
	if err == nil {
		t.Fatalf("drain evicted every receiver Pod despite the PodDisruptionBudget:\n%s", out)
	}
	running := 0
	for _, pod := range p.receiverPods(t, ctx) {
		if pod.DeletionTimestamp == nil && podReady(&pod) {
			running++
		}
	}
	if running != 2 {
		t.Errorf("after the drain %d receiver Pods run, want 2 (one evicted, the budget holds the rest)", running)
	}
	if !strings.Contains(out+err.Error(), "disruption budget") {
		t.Errorf("drain did not stop on the disruption budget: %v\n%s", err, out)
	}
	if _, err := env.kc.Kubectl(ctx, "uncordon", cfg.NodeName); err != nil {
		t.Fatal(err)
	}
	p.waitPodsReady(t, ctx, 3)
	p.trigger(t, ctx, "2")
	rep = p.waitAllDelivered(t, ctx, 2*harness.QuickstartDeliveries)
	t.Logf("after the drain: %s", rep)
}
