package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/ociimage"
	"github.com/intuned-operator/intuned-operator/internal/resources"
	"github.com/intuned-operator/intuned-operator/internal/testutil/flow"
	"github.com/intuned-operator/intuned-operator/internal/testutil/kcluster"
	"github.com/intuned-operator/intuned-operator/internal/testutil/poll"
	"github.com/intuned-operator/intuned-operator/internal/testutil/proc"
	"github.com/intuned-operator/intuned-operator/internal/testutil/scenarios"
)

// TestNetworkPolicy: a receiver's NetworkPolicy, enforced on the real node
// (kube-network-policies), admits exactly its peers and the manager.
//
// The receiver's spec.networkPolicy.from names one peer at a time:
//
//  1. a namespace with a probe Pod in it (hack/kcluster/probe): the probe
//     reaches the receiver's Service; the Ingress controller (Traefik, an
//     unprivileged process of the node) does not: a delivery never reaches
//     the receiver;
//  2. the Ingress controller (an ipBlock of the node's address on the Pod
//     bridge): deliveries go through the Ingress, and the probe, now a Pod
//     of another namespace the policy does not name, is refused.
//
// In both, the manager's own calls to the receiver (the volume check's
// /metrics, delivery accounting's read API) go through, though from never
// names the manager: the operator adds its Pods to the policy.
func TestNetworkPolicy(t *testing.T) {
	ctx := scenarios.Context(t, 10*time.Minute)
	probe := startProbe(t, ctx, fmt.Sprintf("kc-netpol-outsider-%d", time.Now().Unix()%100000))
	outsiderPeer := networkingv1.NetworkPolicyPeer{NamespaceSelector: &metav1.LabelSelector{
		MatchLabels: map[string]string{corev1.LabelMetadataName: probe.namespace}}}
	ingressPeer := networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: env.kc.Config().PodGatewayIP() + "/32"}}

	p := scenarios.NewPair(t, ctx, &env, "netpol", func(s *flow.Samples) {
		s.Receiver.Spec.NetworkPolicy = &intunedv1alpha1.ReceiverNetworkPolicy{Enabled: true, From: []networkingv1.NetworkPolicyPeer{outsiderPeer}}
	})
	p.WaitReady(ctx)
	whr := &intunedv1alpha1.WebhookReceiver{ObjectMeta: metav1.ObjectMeta{Namespace: p.NS, Name: p.Receiver}}
	health := resources.ServiceURL(whr) + "/healthz"

	// The policy is in force once a connection from a source it does not
	// name (this test, from the host) gets no answer.
	pods, err := env.receiverPods(ctx, p.NS, p.Receiver)
	if err != nil || len(pods) != 1 {
		t.Fatalf("receiver Pods %d (err %v), want 1", len(pods), err)
	}
	direct := fmt.Sprintf("http://%s:%d/healthz", pods[0].Status.PodIP, resources.HTTPPort)
	err = poll.Eventually(ctxTimeout(ctx, 2*time.Minute), time.Second, "the policy refuses the host", func(ctx context.Context) (bool, error) {
		code, _, err := nodeGet(ctx, direct, 2*time.Second)
		return timedOut(err), fmt.Errorf("GET %s from the host: %d (%v)", direct, code, err)
	})
	if err != nil {
		t.Fatal(err)
	}

	t.Log("1: from names the probe's namespace")
	if err := probe.waitAdmitted(ctx, health); err != nil {
		t.Fatal(err)
	}
	waitVolumeChecked(t, ctx, p)
	// Traefik answers 503 until it routes to the Pod; from then on, no
	// answer comes back from the receiver.
	ingressRefused := func(ctx context.Context) bool {
		code, err := postIngest(ctxTimeout(ctx, 3*time.Second), p)
		if code == http.StatusUnauthorized {
			t.Fatalf("the receiver answered %d through the Ingress, though its policy does not name the Ingress controller", code)
		}
		return timedOut(err) || code == http.StatusBadGateway || code == http.StatusGatewayTimeout
	}
	err = poll.Eventually(ctx, time.Second, "the Ingress routes to the Pod and gets no answer", func(ctx context.Context) (bool, error) {
		return ingressRefused(ctx), errors.New("the Ingress answers 503: no route to the Pod yet")
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if !ingressRefused(ctx) {
			t.Fatalf("delivery %d through the Ingress was answered by Traefik itself, want no answer", i)
		}
	}

	t.Log("2: from names the Ingress controller")
	if err := env.kubeClient.Get(ctx, client.ObjectKeyFromObject(whr), whr); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(whr.DeepCopy())
	whr.Spec.NetworkPolicy.From = []networkingv1.NetworkPolicyPeer{ingressPeer}
	if err := env.kubeClient.Patch(ctx, whr, patch); err != nil {
		t.Fatal(err)
	}
	err = poll.Eventually(ctx, time.Second, "the probe refused", func(ctx context.Context) (bool, error) {
		status, err := probe.get(ctx, health)
		return err == nil && probeRefused(status), fmt.Errorf("probe GET %s: %q (%v)", health, status, err)
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if status, err := probe.get(ctx, health); err != nil || !probeRefused(status) {
			t.Fatalf("probe attempt %d: %q (%v), want refused: the policy no longer names its namespace", i, status, err)
		}
	}
	err = poll.Eventually(ctx, time.Second, "the receiver answers through the Ingress", func(ctx context.Context) (bool, error) {
		code, err := postIngest(ctxTimeout(ctx, 3*time.Second), p)
		return code == http.StatusUnauthorized, fmt.Errorf("POST without a token: %d (%v), want 401 from the receiver", code, err)
	})
	if err != nil {
		t.Fatal(err)
	}
	// A JobRun's deliveries through the Ingress, counted by the manager
	// through the receiver's read API.
	p.Trigger(ctx, "1")
	err = poll.Eventually(ctx, time.Second, "the manager counts every delivery stored", func(ctx context.Context) (bool, error) {
		ij := p.Get(ctx)
		if len(ij.Status.Deliveries) == 0 {
			return false, errors.New("no status.deliveries yet")
		}
		d := ij.Status.Deliveries[0]
		return d.Stored != nil && *d.Stored == flow.QuickstartDeliveries,
			fmt.Errorf("status.deliveries[0]: %s stored %v expected %v: %s", d.State, ptr.Deref(d.Stored, -1), ptr.Deref(d.Expected, -1), d.Message)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// waitVolumeChecked waits for the manager's volume check to read the
// receiver's /metrics (see volumeRead).
func waitVolumeChecked(t *testing.T, ctx context.Context, p *scenarios.Pair) {
	t.Helper()
	err := poll.Eventually(ctx, time.Second, "the volume check reads the receiver", func(ctx context.Context) (bool, error) {
		var whr intunedv1alpha1.WebhookReceiver
		if err := env.kubeClient.Get(ctx, client.ObjectKey{Namespace: p.NS, Name: p.Receiver}, &whr); err != nil {
			return false, err
		}
		c := meta.FindStatusCondition(whr.Status.Conditions, intunedv1alpha1.ConditionVolumeNearlyFull)
		if c == nil {
			return false, fmt.Errorf("no %s condition yet", intunedv1alpha1.ConditionVolumeNearlyFull)
		}
		return volumeRead(c), fmt.Errorf("%s=%s %s: %s", c.Type, c.Status, c.Reason, c.Message)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// volumeRead: the manager read the receiver's free space from its
// /metrics. The node's volumes are directories of the host's filesystem,
// so whether it is nearly full (True) or not (False) is the host's; only
// Unknown (MetricsUnreadable) means the manager did not reach the receiver.
func volumeRead(c *metav1.Condition) bool {
	return c.Status == metav1.ConditionFalse && c.Reason == intunedv1alpha1.ReasonVolumeSpaceAvailable ||
		c.Status == metav1.ConditionTrue && (c.Reason == intunedv1alpha1.ReasonVolumeNearlyFull || c.Reason == intunedv1alpha1.ReasonVolumeFull)
}

// timedOut: no answer came back. A NetworkPolicy drops a connection's
// first packet, so the client waits until its timeout (a refused
// connection or an unknown name is another failure, not the policy's).
func timedOut(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func ctxTimeout(ctx context.Context, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(ctx, d)
	context.AfterFunc(ctx, cancel)
	return ctx
}

// nodeGet GETs url from the host within timeout and returns the status
// code and the body.
func nodeGet(ctx context.Context, url string, timeout time.Duration) (int, string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := nodeHTTP.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// probeImage is the probe's image in the node.
const probeImage = "kcluster.local/netpol-probe:dev"

// probePod is a Pod in a namespace of its own that fetches URLs for the
// test from inside the cluster (hack/kcluster/probe).
type probePod struct {
	namespace string
	ip        string
}

// startProbe builds the probe into an image of its own, imports it and runs
// it in namespace (restricted Pod Security, like every test namespace).
func startProbe(t *testing.T, ctx context.Context, namespace string) *probePod {
	t.Helper()
	dir := t.TempDir()
	bins, err := proc.Build{Packages: []string{"./hack/kcluster/probe"}, Dir: dir,
		Env: []string{"CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64"}, Flags: []string{"-trimpath"}}.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tar := filepath.Join(dir, "probe.tar")
	if _, err := ociimage.WriteFilesArchive(tar, probeImage, kcluster.NodePlatform, ociimage.Files{"/probe": {Mode: 0o755, Src: bins[0]}},
		ociimage.Config{User: "65532:65532", Entrypoint: []string{"/probe", ":8080"}}); err != nil {
		t.Fatal(err)
	}
	if err := env.kc.ImportImage(ctx, tar); err != nil {
		t.Fatal(err)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace, Labels: map[string]string{
		"pod-security.kubernetes.io/enforce": "restricted",
	}}}
	if err := env.kubeClient.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.kubeClient.Delete(context.Background(), ns) })
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "probe", Namespace: namespace},
		Spec: corev1.PodSpec{
			AutomountServiceAccountToken: ptr.To(false),
			SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
			Containers: []corev1.Container{{
				Name: "probe", Image: probeImage, ImagePullPolicy: corev1.PullNever,
				Ports: []corev1.ContainerPort{{ContainerPort: 8080}},
				ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
					Path: "/healthz", Port: intstr.FromInt32(8080)}}, PeriodSeconds: 1},
				SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: ptr.To(false), ReadOnlyRootFilesystem: ptr.To(true),
					Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}},
			}},
		},
	}
	if err := env.kubeClient.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	err = poll.Eventually(ctx, 250*time.Millisecond, "probe Pod ready", func(ctx context.Context) (bool, error) {
		if err := env.kubeClient.Get(ctx, client.ObjectKeyFromObject(pod), pod); err != nil {
			return false, err
		}
		return podReady(pod) && pod.Status.PodIP != "", fmt.Errorf("phase %s, conditions %v", pod.Status.Phase, pod.Status.Conditions)
	})
	if err != nil {
		t.Fatal(err)
	}
	return &probePod{namespace: namespace, ip: pod.Status.PodIP}
}

// get asks the probe to GET target and returns what it saw: the target's
// status line, or the error of a request that failed.
func (p *probePod) get(ctx context.Context, target string) (string, error) {
	_, body, err := nodeGet(ctx, fmt.Sprintf("http://%s:8080/get?url=%s", p.ip, url.QueryEscape(target)), 5*time.Second)
	return strings.TrimSpace(body), err
}

// waitAdmitted waits until the probe's GET of target is answered 200.
func (p *probePod) waitAdmitted(ctx context.Context, target string) error {
	return poll.Eventually(ctx, time.Second, "the probe admitted", func(ctx context.Context) (bool, error) {
		status, err := p.get(ctx, target)
		return err == nil && status == "200 OK", fmt.Errorf("probe GET %s: %q (%v)", target, status, err)
	})
}

// probeRefused: the probe's request timed out, as one whose first packet a
// NetworkPolicy drops does. A name that does not resolve or a refused
// connection is another failure, not the policy's.
func probeRefused(status string) bool {
	return strings.Contains(status, "Client.Timeout exceeded") || strings.Contains(status, "i/o timeout")
}
