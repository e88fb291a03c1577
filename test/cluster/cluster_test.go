package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/resources"
	"github.com/intuned-operator/intuned-operator/test/e2e/harness"
)

var nsSeq atomic.Int32

// pair is the quickstart samples (credentials, WebhookReceiver, IntunedJob)
// in a fresh namespace that enforces the restricted Pod Security Standard.
type pair struct {
	ns, receiver, job string
	host              string // the receiver's Ingress host
	rc                harness.ReceiverClient
}

// newPair applies config/samples into a new namespace, changed only where
// this machine differs from a user's: the credentials point at intuned-sim
// and the Ingress host is one the simulator's namespace resolves to the
// node (a user's DNS does that for Intuned), with a path of its own. No TLS:
// there is no certificate authority the simulator could trust.
func newPair(t *testing.T, ctx context.Context, name string, mutate func(*harness.Samples)) *pair {
	t.Helper()
	return newPairIn(t, ctx, fmt.Sprintf("kc-%d-%s", nsSeq.Add(1), name), name, mutate)
}

// newPairIn is newPair in namespace namespace (created unless it exists).
func newPairIn(t *testing.T, ctx context.Context, namespace, name string, mutate func(*harness.Samples)) *pair {
	t.Helper()
	s, err := harness.LoadSamples(ctx, env.kubectl)
	if err != nil {
		t.Fatal(err)
	}
	p := &pair{ns: namespace, host: env.kc.Config().IngressHosts[0]}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: p.ns, Labels: map[string]string{
		"pod-security.kubernetes.io/enforce": "restricted",
		"pod-security.kubernetes.io/warn":    "restricted",
	}}}
	if err := env.client.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	s.Credentials.Namespace = p.ns
	s.Credentials.StringData = map[string]string{
		intunedv1alpha1.CredentialsKeyWorkspaceID: env.sim.WorkspaceID,
		intunedv1alpha1.CredentialsKeyAPIKey:      env.sim.APIKey,
		intunedv1alpha1.CredentialsKeyBaseURL:     env.sim.BaseURL,
	}
	s.Credentials.Data = nil
	s.Receiver.Namespace = p.ns
	s.Receiver.Spec.Ingress.Host = p.host
	// Receivers of every test share the host; each gets its own path.
	s.Receiver.Spec.Ingress.Path = "/webhooks/" + p.ns
	s.Receiver.Spec.Ingress.TLS = nil
	s.Job.Namespace = p.ns
	s.Job.Name = "kc-" + name // also the Intuned job id: unique in the shared workspace
	s.Job.Spec.PollInterval = &metav1.Duration{Duration: 10 * time.Second}
	if mutate != nil {
		mutate(s)
	}
	p.receiver, p.job = s.Receiver.Name, s.Job.EffectiveJobID()
	if err := s.Apply(ctx, env.client); err != nil {
		t.Fatal(err)
	}
	return p
}

// waitReady waits for the receiver's Pods, Service and Ingress to be Ready
// with the Ingress URL published, and the job to be Synced with that URL.
func (p *pair) waitReady(t *testing.T, ctx context.Context) {
	t.Helper()
	wantURL := "http://" + p.host + resources.IngestPath(&intunedv1alpha1.WebhookReceiver{})
	err := harness.Eventually(ctx, 250*time.Millisecond, "WebhookReceiver Ready", func(ctx context.Context) (bool, error) {
		var whr intunedv1alpha1.WebhookReceiver
		if err := env.client.Get(ctx, client.ObjectKey{Namespace: p.ns, Name: p.receiver}, &whr); err != nil {
			return false, err
		}
		wantURL = "http://" + p.host + resources.IngestPath(&whr)
		if whr.Status.URL != "" && whr.Status.URL != wantURL {
			return false, fmt.Errorf("status.url = %q, want the Ingress URL %q", whr.Status.URL, wantURL)
		}
		return meta.IsStatusConditionTrue(whr.Status.Conditions, intunedv1alpha1.ConditionReady), fmt.Errorf("conditions %v", whr.Status.Conditions)
	})
	if err != nil {
		t.Fatal(err)
	}
	err = harness.Eventually(ctx, 250*time.Millisecond, "IntunedJob Synced with the Ingress URL", func(ctx context.Context) (bool, error) {
		ij := p.get(t, ctx)
		if ij.Status.Sink == nil || ij.Status.Sink.URL != wantURL {
			return false, fmt.Errorf("status.sink %+v, want url %q", ij.Status.Sink, wantURL)
		}
		return meta.IsStatusConditionTrue(ij.Status.Conditions, intunedv1alpha1.ConditionSynced), fmt.Errorf("conditions %v", ij.Status.Conditions)
	})
	if err != nil {
		t.Fatal(err)
	}
	_, read, err := harness.ReceiverTokens(ctx, env.client, p.ns, p.receiver)
	if err != nil {
		t.Fatal(err)
	}
	// The read API through the receiver's Service: its ClusterIP, routed from
	// the host into the cluster's namespace by kube-proxy's rules.
	var svc corev1.Service
	whr := &intunedv1alpha1.WebhookReceiver{ObjectMeta: metav1.ObjectMeta{Name: p.receiver, Namespace: p.ns}}
	if err := env.client.Get(ctx, client.ObjectKey{Namespace: p.ns, Name: resources.ChildName(whr)}, &svc); err != nil {
		t.Fatal(err)
	}
	p.rc = harness.ReceiverClient{BaseURL: fmt.Sprintf("http://%s:%d", svc.Spec.ClusterIP, resources.HTTPPort), ReadToken: read}
}

func (p *pair) get(t *testing.T, ctx context.Context) *intunedv1alpha1.IntunedJob {
	t.Helper()
	var ij intunedv1alpha1.IntunedJob
	if err := env.client.Get(ctx, client.ObjectKey{Namespace: p.ns, Name: p.job}, &ij); err != nil && ctx.Err() == nil {
		t.Fatal(err)
	}
	return &ij
}

func (p *pair) trigger(t *testing.T, ctx context.Context, value string) {
	t.Helper()
	if err := harness.Trigger(ctx, env.client, p.ns, p.job, value); err != nil {
		t.Fatal(err)
	}
}

// waitAllDelivered: harness.WaitAllDelivered, and every delivery went to
// the Ingress URL.
func (p *pair) waitAllDelivered(t *testing.T, ctx context.Context, want int) harness.DeliveryReport {
	t.Helper()
	rep, err := harness.WaitAllDelivered(ctx, env.sim, p.rc, p.job, want)
	if err != nil {
		t.Fatal(err)
	}
	ds, err := env.sim.Deliveries(ctx, p.job)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		if u, err := url.Parse(d.URL); err != nil || u.Host != p.host {
			t.Errorf("run %s was posted to %q, not to the Ingress host %s", d.RunID, d.URL, p.host)
		}
	}
	return rep
}

func (p *pair) waitJobRunFinished(t *testing.T, ctx context.Context, trigger string) *intunedv1alpha1.JobRunSummary {
	t.Helper()
	last, err := harness.WaitJobRunFinished(ctx, env.client, p.ns, p.job, trigger)
	if err != nil {
		t.Fatal(err)
	}
	return last
}

// receiverPods lists the receiver's Pods.
func (p *pair) receiverPods(t *testing.T, ctx context.Context) []corev1.Pod {
	t.Helper()
	var pods corev1.PodList
	if err := env.client.List(ctx, &pods, client.InNamespace(p.ns)); err != nil {
		t.Fatal(err)
	}
	var out []corev1.Pod
	for _, pod := range pods.Items {
		if strings.HasPrefix(pod.Name, resources.ChildName(&intunedv1alpha1.WebhookReceiver{ObjectMeta: metav1.ObjectMeta{Name: p.receiver}})) {
			out = append(out, pod)
		}
	}
	return out
}

// TestQuickstartThroughIngress is the README's quickstart on a real node:
// the operator installed from its installer manifest runs as a Pod of the
// locally built image; the WebhookReceiver becomes a StatefulSet Pod with a
// provisioned volume, a Service and an Ingress; Intuned (the simulator)
// posts every Run to the Ingress URL; the data is read back.
func TestQuickstartThroughIngress(t *testing.T) {
	ctx := harness.TestContext(t, 4*time.Minute)
	p := newPair(t, ctx, "quickstart", nil)
	p.waitReady(t, ctx)
	p.trigger(t, ctx, "1")
	rep := p.waitAllDelivered(t, ctx, harness.QuickstartDeliveries)
	last := p.waitJobRunFinished(t, ctx, "1")
	if last.Status != "COMPLETED" {
		t.Errorf("status.lastJobRun.status = %q, want COMPLETED", last.Status)
	}
	pods := p.receiverPods(t, ctx)
	if len(pods) != 1 {
		t.Fatalf("receiver Pods: %d, want 1", len(pods))
	}
	if img := pods[0].Spec.Containers[0].Image; img != "kcluster.local/intuned-operator:dev" {
		t.Errorf("receiver image %q", img)
	}
	// What a user does next on a real cluster: read the Pod's log, run a
	// command in it (both go through the kubelet's streaming server).
	if out, err := env.kc.Kubectl(ctx, "-n", p.ns, "logs", pods[0].Name); err != nil || !strings.Contains(out, `"level"`) {
		t.Errorf("kubectl logs: %v\n%s", err, tailString(out, 500))
	}
	if out, err := env.kc.Kubectl(ctx, "-n", p.ns, "exec", pods[0].Name, "--", "/receiver", "--help"); err != nil || !strings.Contains(out, "--sqlite-path") {
		t.Errorf("kubectl exec: %v\n%s", err, tailString(out, 500))
	}
	t.Logf("quickstart through the Ingress: %s", rep)
}

// TestRolesAggregateIntoBuiltins: the install's editor and viewer roles are
// folded into the cluster's built-in edit and view roles by the real
// controller-manager, so a namespace user gets the rights with the role they
// already have.
func TestRolesAggregateIntoBuiltins(t *testing.T) {
	ctx := harness.TestContext(t, 2*time.Minute)
	ns := fmt.Sprintf("kc-%d-rbac", nsSeq.Add(1))
	if _, err := env.kc.Kubectl(ctx, "create", "namespace", ns); err != nil {
		t.Fatal(err)
	}
	for _, b := range [][]string{{"alice-edit", "edit", "alice"}, {"bob-view", "view", "bob"}} {
		if _, err := env.kc.Kubectl(ctx, "-n", ns, "create", "rolebinding", b[0], "--clusterrole="+b[1], "--user="+b[2]); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		user, verb, resource, want string
	}{
		{"alice", "create", "intunedjobs.intuned.io", "yes"},
		{"alice", "delete", "webhookreceivers.intuned.io", "yes"},
		{"bob", "list", "intunedjobs.intuned.io", "yes"},
		{"bob", "get", "webhookreceivers.intuned.io", "yes"},
		{"bob", "create", "intunedjobs.intuned.io", "no"},
		{"bob", "patch", "webhookreceivers.intuned.io", "no"},
	} {
		err := harness.Eventually(ctx, 250*time.Millisecond, fmt.Sprintf("%s may %s %s: %s", tc.user, tc.verb, tc.resource, tc.want), func(ctx context.Context) (bool, error) {
			out, _ := env.kc.Kubectl(ctx, "auth", "can-i", tc.verb, tc.resource, "-n", ns, "--as="+tc.user)
			return strings.TrimSpace(out) == tc.want, fmt.Errorf("can-i says %q", strings.TrimSpace(out))
		})
		if err != nil {
			t.Error(err)
		}
	}
}

// simJobExists looks the job up in intuned-sim's list of the project's Jobs.
// The list has a path (and so a rate limit) of its own: polling it does not
// take the per-job path's budget from the operator.
func simJobExists(ctx context.Context, project, id string) (bool, error) {
	u := env.sim.BaseURL + "/" + env.sim.WorkspaceID + "/projects/" + project + "/jobs"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return false, err
	}
	req.Header.Set("x-api-key", env.sim.APIKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("GET jobs: %s", resp.Status)
	}
	var jobs []struct {
		ID string `json:"id"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&jobs); err != nil {
		return false, err
	}
	for _, j := range jobs {
		if j.ID == id {
			return true, nil
		}
	}
	return false, nil
}

func (p *pair) waitJobOnIntuned(t *testing.T, ctx context.Context, project string, want bool) {
	t.Helper()
	// Under Intuned's 20 requests per minute per path.
	err := harness.Eventually(ctx, 3500*time.Millisecond, fmt.Sprintf("Job %s exists on Intuned: %v", p.job, want), func(ctx context.Context) (bool, error) {
		ok, err := simJobExists(ctx, project, p.job)
		return err == nil && ok == want, err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestDeletingNeverOrphansAJob: deleting the samples in the order their
// file lists them (the credentials Secret first, as `kubectl delete -k
// config/samples` does), or deleting their whole namespace (the real
// namespace controller and garbage collector), removes the Job from Intuned:
// the credentials outlive the IntunedJob that needs them.
func TestDeletingNeverOrphansAJob(t *testing.T) {
	ctx := harness.TestContext(t, 5*time.Minute)
	const project = "ecommerce-scraper-quickstart"

	t.Run("samples-secret-first", func(t *testing.T) {
		p := newPair(t, ctx, "delete-samples", nil)
		p.waitReady(t, ctx)
		p.waitJobOnIntuned(t, ctx, project, true)
		manifest := fmt.Sprintf(`apiVersion: v1
kind: Secret
metadata: {name: intuned-credentials}
---
apiVersion: intuned.io/v1alpha1
kind: WebhookReceiver
metadata: {name: %s}
---
apiVersion: intuned.io/v1alpha1
kind: IntunedJob
metadata: {name: %s}
`, p.receiver, p.job)
		file := filepath.Join(t.TempDir(), "samples.yaml")
		if err := os.WriteFile(file, []byte(manifest), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := env.kc.Kubectl(ctx, "-n", p.ns, "delete", "-f", file, "--timeout=3m"); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		p.waitJobOnIntuned(t, ctx, project, false)
		// The receiver's token Secret goes through the garbage collector
		// (owner reference), after kubectl has seen the receiver gone.
		left := ""
		gcCtx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		err := harness.Eventually(gcCtx, 500*time.Millisecond, "nothing left in the namespace", func(ctx context.Context) (bool, error) {
			out, err := env.kc.Kubectl(ctx, "-n", p.ns, "get", "secret,intunedjob,webhookreceiver", "-o", "name")
			left = strings.TrimSpace(out)
			return err == nil && left == "", nil
		})
		if err != nil {
			t.Errorf("left in the namespace: %v %s", err, left)
		}
	})

	t.Run("namespace", func(t *testing.T) {
		p := newPair(t, ctx, "delete-namespace", nil)
		p.waitReady(t, ctx)
		p.waitJobOnIntuned(t, ctx, project, true)
		if out, err := env.kc.Kubectl(ctx, "delete", "namespace", p.ns, "--timeout=3m"); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		p.waitJobOnIntuned(t, ctx, project, false)
	})
}
