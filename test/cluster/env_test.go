package cluster

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/resources"
	"github.com/intuned-operator/intuned-operator/internal/testutil/flow"
	"github.com/intuned-operator/intuned-operator/internal/testutil/pgtest"
	"github.com/intuned-operator/intuned-operator/internal/testutil/poll"
	"github.com/intuned-operator/intuned-operator/internal/testutil/scenarios"
)

// testEnv as a scenarios.Env: receivers are reached through their Ingress
// (a host the simulator's namespace resolves to the node, a path per
// namespace; no TLS, as there is no certificate authority the simulator
// could trust), their store through their Service's ClusterIP, and a lost
// receiver is a Pod force-deleted.

var _ scenarios.Env = (*testEnv)(nil)

func (e *testEnv) Client() client.Client { return e.kubeClient }
func (e *testEnv) Sim() *flow.Sim        { return e.simulator }
func (e *testEnv) Kubectl() string       { return e.kubectlBin }
func (e *testEnv) Prefix() string        { return "kc" }

// TokenSwap: the operator's default propagation delay (90 s, the kubelet's
// Secret sync period) plus a margin.
func (e *testEnv) TokenSwap() time.Duration { return 150 * time.Second }

// RestartManager deletes the manager's Pod without grace (a crash) and
// waits for the Deployment's replacement.
func (e *testEnv) RestartManager(ctx context.Context) error {
	if out, err := e.kc.Kubectl(ctx, "-n", operatorNamespace, "delete", "pod", "-l", "control-plane=controller-manager",
		"--grace-period=0", "--force", "--wait=false"); err != nil {
		return fmt.Errorf("%w: %s", err, out)
	}
	out, err := e.kc.Kubectl(ctx, "-n", operatorNamespace, "rollout", "status", "deployment/intuned-operator-controller-manager", "--timeout=3m")
	if err != nil {
		return fmt.Errorf("%w: %s", err, out)
	}
	return nil
}

func (e *testEnv) ingressHost() string { return e.kc.Config().IngressHosts[0] }

func (e *testEnv) Expose(s *flow.Samples) {
	s.Receiver.Spec.Ingress.Host = e.ingressHost()
	// Receivers of every test share the host; each gets its own path.
	s.Receiver.Spec.Ingress.Path = "/webhooks/" + s.Receiver.Namespace
	s.Receiver.Spec.Ingress.TLS = nil
}

func (e *testEnv) IngestURL(whr *intunedv1alpha1.WebhookReceiver) string {
	return "http://" + e.ingressHost() + resources.IngestPath(whr)
}

// ReadAPI is the receiver's Service: its ClusterIP, routed from the host
// into the cluster's namespace by kube-proxy's rules.
func (e *testEnv) ReadAPI(ctx context.Context, p *scenarios.Pair) (string, error) {
	var svc corev1.Service
	whr := &intunedv1alpha1.WebhookReceiver{ObjectMeta: metav1.ObjectMeta{Name: p.Receiver, Namespace: p.NS}}
	if err := e.kubeClient.Get(ctx, client.ObjectKey{Namespace: p.NS, Name: resources.ChildName(whr)}, &svc); err != nil {
		return "", err
	}
	return fmt.Sprintf("http://%s:%d", svc.Spec.ClusterIP, resources.HTTPPort), nil
}

// receiverPods lists the receiver's Pods by name.
func (e *testEnv) receiverPods(ctx context.Context, ns, receiver string) ([]corev1.Pod, error) {
	var pods corev1.PodList
	if err := e.kubeClient.List(ctx, &pods, client.InNamespace(ns)); err != nil {
		return nil, err
	}
	prefix := resources.ChildName(&intunedv1alpha1.WebhookReceiver{ObjectMeta: metav1.ObjectMeta{Name: receiver}})
	var out []corev1.Pod
	for _, pod := range pods.Items {
		if strings.HasPrefix(pod.Name, prefix) {
			out = append(out, pod)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func podReady(pod *corev1.Pod) bool {
	if pod.DeletionTimestamp != nil {
		return false
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// Replicas counts Pods still terminating as running.
func (e *testEnv) Replicas(ctx context.Context, p *scenarios.Pair) (running, ready int, err error) {
	pods, err := e.receiverPods(ctx, p.NS, p.Receiver)
	for i := range pods {
		running++
		if podReady(&pods[i]) {
			ready++
		}
	}
	return running, ready, err
}

// LoseReceiver force-deletes the Pod (no grace: a node lost) and keeps its
// replacement from running until released, as the e2e kubelet does: the
// node is cordoned first, so the replacement stays Pending (a replacement
// that was Ready within a second could let every retry succeed, and the
// scenario would see no failed delivery on an idle machine). release
// uncordons, waits for the replacement and checks that a StatefulSet's
// replacement mounts the same claim, so what was stored before is still
// there.
func (e *testEnv) LoseReceiver(ctx context.Context, p *scenarios.Pair, ordinal int) (func(context.Context) error, error) {
	pods, err := e.receiverPods(ctx, p.NS, p.Receiver)
	if err != nil {
		return nil, err
	}
	if ordinal >= len(pods) {
		return nil, fmt.Errorf("no Pod %d of WebhookReceiver %s/%s (%d Pods)", ordinal, p.NS, p.Receiver, len(pods))
	}
	lost := pods[ordinal]
	node := e.kc.Config().NodeName
	p.Cleanup(func() { _, _ = e.kc.Kubectl(context.Background(), "uncordon", node) })
	if out, err := e.kc.Kubectl(ctx, "cordon", node); err != nil {
		return nil, fmt.Errorf("%w: %s", err, out)
	}
	if out, err := e.kc.Kubectl(ctx, "-n", p.NS, "delete", "pod", lost.Name, "--grace-period=0", "--force", "--wait=false"); err != nil {
		return nil, fmt.Errorf("%w: %s", err, out)
	}
	return func(ctx context.Context) error {
		if out, err := e.kc.Kubectl(ctx, "uncordon", node); err != nil {
			return fmt.Errorf("%w: %s", err, out)
		}
		return poll.Eventually(ctx, 250*time.Millisecond, "the lost receiver Pod replaced and ready", func(ctx context.Context) (bool, error) {
			pods, err := e.receiverPods(ctx, p.NS, p.Receiver)
			if err != nil {
				return false, err
			}
			ready := 0
			for i := range pods {
				pod := &pods[i]
				if pod.UID == lost.UID {
					return false, errors.New("the lost Pod is still there")
				}
				if pod.Name == lost.Name && volumeClaim(pod) != volumeClaim(&lost) {
					return false, fmt.Errorf("the new Pod mounts claim %q, the lost one %q: want the same", volumeClaim(pod), volumeClaim(&lost))
				}
				if podReady(pod) {
					ready++
				}
			}
			return ready == len(pods), fmt.Errorf("%d of %d Pods ready", ready, len(pods))
		})
	}, nil
}

func volumeClaim(pod *corev1.Pod) string {
	for _, v := range pod.Spec.Volumes {
		if v.PersistentVolumeClaim != nil {
			return v.PersistentVolumeClaim.ClaimName
		}
	}
	return ""
}

// PartitionReceiver: nothing here cuts the Ingress path while the Pod stays
// Ready; the emulated cluster covers that.
func (e *testEnv) PartitionReceiver(context.Context, *scenarios.Pair, bool) error {
	return scenarios.ErrUnsupported
}

// PostgresDSN: a PostgreSQL server in the cluster's network namespace, on
// the node address, so Pods reach it.
func (e *testEnv) PostgresDSN(t *testing.T, ctx context.Context) string {
	t.Helper()
	cfg := e.kc.Config()
	return scenarios.StartPostgres(t, ctx, pgtest.Options{ListenAddr: cfg.NodeIP, NetNS: "/run/netns/" + cfg.Name})
}

// ExpectHealthy: the real node's failures show in the scenarios' own
// assertions (and dumpDiagnostics prints events and logs of a failed run).
func (e *testEnv) ExpectHealthy(*testing.T) {}
