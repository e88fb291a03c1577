package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/kube"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/intuned-operator/intuned-operator/internal/testutil/flow"
	"github.com/intuned-operator/intuned-operator/internal/testutil/kcluster"
	"github.com/intuned-operator/intuned-operator/internal/testutil/poll"
	"github.com/intuned-operator/intuned-operator/internal/testutil/scenarios"
	"github.com/intuned-operator/intuned-operator/internal/testutil/testenv"
)

// The Helm release TestHelm installs beside setup's kustomize install (whose
// manager it scales to zero meanwhile: two cluster-wide managers would both
// reconcile every object).
const (
	helmRelease   = "helm-test"
	helmNamespace = "intuned-helm-system"
	// fullnameOverride: names apart from the kustomize install's
	// cluster-scoped objects (ClusterRoles, the admission policy).
	helmFullname = "helm-test"
)

// TestHelm installs the chart (charts/intuned-operator) with Helm's Go
// library as docs/helm.md says, runs the quickstart pair to Ready and
// delivered data, then `helm upgrade`s with values that roll the manager:
// the upgrade makes no write to Intuned (no Job created, updated or
// deleted) and the receiver keeps its data and its Pod. Then it uninstalls
// in docs/helm.md's order and checks nothing is left stuck: the objects,
// their Job on Intuned, the release's objects and namespace are gone, the
// CRDs kept (helm.sh/resource-policy: keep).
func TestHelm(t *testing.T) {
	ctx := scenarios.Context(t, 12*time.Minute)
	sim := env.Sim()

	// Helm takes the CRDs' fields over (TakeOwnership, ForceConflicts, and
	// keeps the CRDs on uninstall); the tests after this one apply the
	// kustomize install server-side as users do, which would then
	// conflict. Last of all, the kustomize install takes them back.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if out, err := env.kc.Kubectl(ctx, "apply", "--server-side", "--force-conflicts", "-f", filepath.Join(env.dir, "install.yaml")); err != nil {
			t.Errorf("re-applying the kustomize install: %v\n%s", err, out)
		}
	})
	stopKustomizeManager(t, ctx)
	if err := env.kubeClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: helmNamespace, Labels: map[string]string{
		"pod-security.kubernetes.io/enforce": "restricted",
	}}}); err != nil {
		t.Fatal(err)
	}
	cfg := helmConfig(t)
	ch, err := loader.LoadDir(filepath.Join(testenv.RepoRoot(), "charts", "intuned-operator"))
	if err != nil {
		t.Fatal(err)
	}
	// Whatever happens, no second manager outlives the test.
	t.Cleanup(func() { uninstallIfThere(t, cfg) })

	repo, tag, _ := strings.Cut(kcluster.ProjectImageTag, ":")
	values := fmt.Sprintf(`
fullnameOverride: %s
image: {repository: %s, tag: %s, pullPolicy: IfNotPresent}
admissionPolicy: {enabled: true}
`, helmFullname, repo, tag)

	install := action.NewInstall(cfg)
	install.ReleaseName, install.Namespace = helmRelease, helmNamespace
	install.WaitStrategy, install.Timeout = kube.StatusWatcherStrategy, 3*time.Minute
	install.ServerSideApply = true
	// The CRDs exist already (setup applied dist/install.yaml): the release
	// adopts them, as it would after `crds.enabled=false` was turned on.
	install.TakeOwnership, install.ForceConflicts = true, true
	if _, err := install.RunWithContext(ctx, ch, helmValues(t, values)); err != nil {
		t.Fatalf("helm install: %v", err)
	}
	managers := managerPods(t, ctx, 2)

	p := scenarios.NewPair(t, ctx, &env, "helm", nil)
	p.WaitReady(ctx)
	if out, err := env.kc.Kubectl(ctx, "-n", p.NS, "wait", "--for=condition=Ready", "intunedjob/"+p.Job, "webhookreceiver/"+p.Receiver, "--timeout=2m"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	p.Trigger(ctx, "1")
	p.WaitAllDelivered(ctx, flow.QuickstartDeliveries)
	p.WaitJobRunFinished(ctx, "1")
	stored, err := p.RC.List(ctx, p.Job, "")
	if err != nil {
		t.Fatal(err)
	}
	receivers, err := env.receiverPods(ctx, p.NS, p.Receiver)
	if err != nil || len(receivers) != 1 {
		t.Fatalf("receiver Pods %d (%v), want 1", len(receivers), err)
	}
	if img := receivers[0].Spec.Containers[0].Image; img != kcluster.ProjectImageTag {
		t.Errorf("receiver image %q, want the manager's %q", img, kcluster.ProjectImageTag)
	}

	// The upgrade: values that change the manager's Pod template.
	before, err := sim.Calls(ctx)
	if err != nil {
		t.Fatal(err)
	}
	upgrade := action.NewUpgrade(cfg)
	upgrade.Namespace = helmNamespace
	upgrade.WaitStrategy, upgrade.Timeout = kube.StatusWatcherStrategy, 3*time.Minute
	upgrade.ServerSideApply = "true"
	if _, err := upgrade.RunWithContext(ctx, helmRelease, ch, helmValues(t, values+`
podAnnotations: {example.com/upgraded: "yes"}
resources: {requests: {cpu: 20m, memory: 80Mi}, limits: {cpu: 500m, memory: 256Mi}}
`)); err != nil {
		t.Fatalf("helm upgrade: %v", err)
	}
	rolled := managerPods(t, ctx, 2)
	for uid := range rolled {
		if _, old := managers[uid]; old {
			t.Errorf("manager Pod %s was not replaced by the upgrade", rolled[uid])
		}
	}
	// The new leader has looked at the job (Intuned's GETs after the old
	// Pods were gone) before the writes are counted.
	leader := helmLeader(t, ctx, rolled)
	upgraded, err := sim.Calls(ctx)
	if err != nil {
		t.Fatal(err)
	}
	err = poll.Eventually(ctx, time.Second, "the upgraded manager read the Job from Intuned", func(ctx context.Context) (bool, error) {
		now, err := sim.Calls(ctx)
		return err == nil && reads(now) > reads(upgraded), err
	})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(12 * time.Second) // one poll interval (10 s) more of the new leader
	after, err := sim.Calls(ctx)
	if err != nil {
		t.Fatal(err)
	}
	writes, reads := callsBetween(before, after)
	if len(writes) > 0 {
		t.Errorf("Intuned writes during the upgrade: %v, want none", writes)
	}
	got, err := p.RC.List(ctx, p.Job, "")
	if err != nil || len(got) != len(stored) {
		t.Errorf("stored deliveries after the upgrade: %d (%v), before %d", len(got), err, len(stored))
	}
	if now, err := env.receiverPods(ctx, p.NS, p.Receiver); err != nil || len(now) != 1 || now[0].UID != receivers[0].UID {
		t.Errorf("the receiver Pod changed in the manager's upgrade (%v)", err)
	}
	t.Logf("helm upgrade rolled %d manager Pods (%s leads); Intuned reads during it: %v; %d deliveries kept", len(rolled), leader, reads, len(got))

	// Uninstall in docs/helm.md's order (only this test's namespace: the
	// CRDs stay, the other tests share them).
	for _, args := range [][]string{
		{"-n", p.NS, "delete", "intunedjobs", "--all", "--wait=false"},
		{"-n", p.NS, "wait", "--for=delete", "intunedjobs", "--all", "--timeout=3m"},
		{"-n", p.NS, "delete", "webhookreceivers", "--all", "--timeout=2m"},
		{"-n", p.NS, "delete", "secret", "intuned-credentials", "--timeout=2m"},
	} {
		if out, err := env.kc.Kubectl(ctx, args...); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
	}
	waitJobOnIntuned(t, ctx, p, false)
	uninstall := action.NewUninstall(cfg)
	uninstall.WaitStrategy, uninstall.Timeout = kube.StatusWatcherStrategy, 3*time.Minute
	res, err := uninstall.Run(helmRelease)
	if err != nil {
		t.Fatalf("helm uninstall: %v", err)
	}
	if res != nil && res.Info != "" {
		t.Logf("helm uninstall: %s", res.Info)
	}
	for _, ns := range []string{helmNamespace, p.NS} {
		if out, err := env.kc.Kubectl(ctx, "delete", "namespace", ns, "--timeout=2m"); err != nil {
			t.Errorf("namespace %s not deleted: %v\n%s", ns, err, out)
		}
	}
	left, _ := env.kc.Kubectl(ctx, "get", "clusterroles,clusterrolebindings,mutatingadmissionpolicies,mutatingadmissionpolicybindings",
		"-l", "app.kubernetes.io/instance="+helmRelease, "-o", "name")
	if strings.TrimSpace(left) != "" {
		t.Errorf("left after helm uninstall:\n%s", left)
	}
	for _, crd := range []string{"intunedjobs.intuned.io", "webhookreceivers.intuned.io"} {
		if out, err := env.kc.Kubectl(ctx, "get", "crd", crd, "-o", "name"); err != nil {
			t.Errorf("CRD %s not kept by helm uninstall: %v %s", crd, err, out)
		}
	}
}

func helmValues(t *testing.T, s string) map[string]any {
	t.Helper()
	v, err := common.ReadValues([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// helmConfig is Helm's client for the cluster (releases stored as Secrets,
// as the helm CLI does), logging to a file of the run.
func helmConfig(t *testing.T) *action.Configuration {
	t.Helper()
	kubeconfig, ns := env.kc.Config().AdminKubeconfig(), helmNamespace
	flags := genericclioptions.NewConfigFlags(false)
	flags.KubeConfig, flags.Namespace = &kubeconfig, &ns
	logFile, err := os.Create(filepath.Join(env.dir, "helm.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = logFile.Close() })
	cfg := action.NewConfiguration(action.ConfigurationSetLogger(slog.NewTextHandler(logFile, nil)))
	if err := cfg.Init(flags, ns, "secret"); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func uninstallIfThere(t *testing.T, cfg *action.Configuration) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, err := action.NewGet(cfg).Run(helmRelease); err == nil {
		u := action.NewUninstall(cfg)
		u.WaitStrategy, u.Timeout = kube.StatusWatcherStrategy, 2*time.Minute
		if _, err := u.Run(helmRelease); err != nil {
			t.Errorf("cleanup: helm uninstall: %v", err)
		}
	}
	if _, err := env.kc.Kubectl(ctx, "delete", "namespace", helmNamespace, "--ignore-not-found", "--timeout=2m"); err != nil {
		t.Errorf("cleanup: %v", err)
	}
}

// stopKustomizeManager scales setup's manager to zero for the test and back
// to its two replicas after it.
func stopKustomizeManager(t *testing.T, ctx context.Context) {
	t.Helper()
	scale := func(ctx context.Context, n int) error {
		if out, err := env.kc.Kubectl(ctx, "-n", operatorNamespace, "scale", "deployment/intuned-operator-controller-manager", fmt.Sprintf("--replicas=%d", n)); err != nil {
			return fmt.Errorf("%w: %s", err, out)
		}
		return nil
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if err := scale(ctx, 2); err != nil {
			t.Error(err)
		}
		if out, err := env.kc.Kubectl(ctx, "-n", operatorNamespace, "rollout", "status", "deployment/intuned-operator-controller-manager", "--timeout=2m"); err != nil {
			t.Errorf("%v\n%s", err, out)
		}
	})
	if err := scale(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if out, err := env.kc.Kubectl(ctx, "-n", operatorNamespace, "wait", "--for=delete", "pod", "-l", "control-plane=controller-manager", "--timeout=2m"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
}

// managerPods waits until the release runs exactly n manager Pods, all
// Ready and none terminating (a rollout's old Pods are gone), and returns
// them by UID.
func managerPods(t *testing.T, ctx context.Context, n int) map[types.UID]string {
	t.Helper()
	out := map[types.UID]string{}
	err := poll.Eventually(ctx, 250*time.Millisecond, fmt.Sprintf("%d manager Pods of the release ready", n), func(ctx context.Context) (bool, error) {
		var pods corev1.PodList
		if err := env.kubeClient.List(ctx, &pods, client.InNamespace(helmNamespace), client.MatchingLabels{"control-plane": "controller-manager"}); err != nil {
			return false, err
		}
		clear(out)
		ready := 0
		for i := range pods.Items {
			out[pods.Items[i].UID] = pods.Items[i].Name
			if podReady(&pods.Items[i]) {
				ready++
			}
		}
		return len(pods.Items) == n && ready == n, fmt.Errorf("%d Pods, %d ready", len(pods.Items), ready)
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// helmLeader waits until one of pods (by UID) holds the release's Lease
// and returns its name.
func helmLeader(t *testing.T, ctx context.Context, pods map[types.UID]string) string {
	t.Helper()
	var holder string
	err := poll.Eventually(ctx, 250*time.Millisecond, "a manager Pod of the upgrade leads", func(ctx context.Context) (bool, error) {
		var lease coordinationv1.Lease
		if err := env.kubeClient.Get(ctx, client.ObjectKey{Namespace: helmNamespace, Name: leaseName}, &lease); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		if lease.Spec.HolderIdentity == nil {
			return false, errors.New("no holder")
		}
		holder, _, _ = strings.Cut(*lease.Spec.HolderIdentity, "_")
		for _, name := range pods {
			if name == holder {
				return true, nil
			}
		}
		return false, fmt.Errorf("held by %s", holder)
	})
	if err != nil {
		t.Fatal(err)
	}
	return holder
}

// reads counts the simulator's GET calls.
func reads(calls map[string]int) int {
	n := 0
	for route, c := range calls {
		if strings.HasPrefix(route, "GET ") {
			n += c
		}
	}
	return n
}
