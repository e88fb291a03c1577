package cluster

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/intunedsim"
	"github.com/intuned-operator/intuned-operator/internal/testutil/flow"
	"github.com/intuned-operator/intuned-operator/internal/testutil/poll"
	"github.com/intuned-operator/intuned-operator/internal/testutil/scenarios"
)

// watchedNamespace is the namespace config/namespaced watches.
const watchedNamespace = "intuned-jobs"

// managerServiceAccount is the identity the manager's Pod runs as.
const managerServiceAccount = "system:serviceaccount:" + operatorNamespace + ":intuned-operator-controller-manager"

// TestNamespacedInstall switches the running install to the namespaced one
// (dist/install-namespaced.yaml: no cluster-wide binding, RoleBindings in
// the watched namespace, --watch-namespaces) and runs the quickstart in the
// watched namespace through to delivered data: the manager, a Pod
// authenticated as its ServiceAccount, must manage with only those rights.
// The samples in another namespace must be left alone. Deleting the watched
// namespace deletes the Job on Intuned. The cluster-wide install comes back
// at the end.
func TestNamespacedInstall(t *testing.T) {
	ctx := scenarios.Context(t, 6*time.Minute)
	const project = "ecommerce-scraper-quickstart"

	unwatched := "kc-unwatched"
	t.Cleanup(func() { restoreClusterWideInstall(t, unwatched, watchedNamespace) })
	if out, err := env.kc.Kubectl(ctx, "delete", "clusterrolebinding", "intuned-operator-manager-rolebinding"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	// The namespace exists before the install, as a user's would (newPairIn
	// puts the samples into it).
	watchedNS := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: watchedNamespace, Labels: map[string]string{
		"pod-security.kubernetes.io/enforce": "restricted",
	}}}
	if err := env.kubeClient.Create(ctx, watchedNS); err != nil {
		t.Fatal(err)
	}
	// The same Deployment, reconfigured: its rollout hands the leader
	// Lease from the old Pod to the new one, so the two never reconcile
	// at the same time.
	applyInstall(t, ctx, "install-namespaced.yaml")

	for _, tc := range []struct {
		verb, resource, namespace, want string
	}{
		{"list", "secrets", watchedNamespace, "yes"},
		{"create", "statefulsets.apps", watchedNamespace, "yes"},
		{"list", "secrets", "", "no"}, // cluster-wide
		{"get", "secrets", "default", "no"},
		{"list", "intunedjobs.intuned.io", "default", "no"},
	} {
		args := []string{"auth", "can-i", tc.verb, tc.resource, "--as=" + managerServiceAccount}
		if tc.namespace == "" {
			args = append(args, "--all-namespaces")
		} else {
			args = append(args, "-n", tc.namespace)
		}
		if out, _ := env.kc.Kubectl(ctx, args...); strings.TrimSpace(out) != tc.want {
			t.Errorf("manager may %s %s in %q: %q, want %q", tc.verb, tc.resource, tc.namespace, strings.TrimSpace(out), tc.want)
		}
	}

	// Samples in a namespace the manager does not watch, first: they must
	// still be untouched after the watched ones delivered everything.
	other := scenarios.NewPairIn(t, ctx, &env, unwatched, "unwatched", nil)
	p := scenarios.NewPairIn(t, ctx, &env, watchedNamespace, "namespaced", nil)
	p.WaitReady(ctx)
	p.Trigger(ctx, "1")
	rep := p.WaitAllDelivered(ctx, flow.QuickstartDeliveries)
	if last := p.WaitJobRunFinished(ctx, "1"); last.Status != "COMPLETED" {
		t.Errorf("status.lastJobRun.status = %q, want COMPLETED", last.Status)
	}
	t.Logf("namespaced quickstart: %s", rep)

	var ij intunedv1alpha1.IntunedJob
	if err := env.kubeClient.Get(ctx, client.ObjectKey{Namespace: other.NS, Name: other.Job}, &ij); err != nil {
		t.Fatal(err)
	}
	// (Its finalizer, if any, is the admission policy's, which setup applied
	// cluster-wide: docs/security.md says to restrict it in this mode.)
	if ij.Status.ObservedGeneration != 0 || len(ij.Status.Conditions) > 0 {
		t.Errorf("IntunedJob in unwatched namespace %s was reconciled: status %+v", other.NS, ij.Status)
	}
	var whr intunedv1alpha1.WebhookReceiver
	if err := env.kubeClient.Get(ctx, client.ObjectKey{Namespace: other.NS, Name: other.Receiver}, &whr); err != nil {
		t.Fatal(err)
	}
	if len(whr.Status.Conditions) > 0 {
		t.Errorf("WebhookReceiver in unwatched namespace %s was reconciled: conditions %v", other.NS, whr.Status.Conditions)
	}
	if exists, err := simJobExists(ctx, project, other.Job); err != nil || exists {
		t.Errorf("Job %s of the unwatched namespace on Intuned: %v (%v)", other.Job, exists, err)
	}

	// Deleting the watched namespace with everything in it, the manager's
	// RoleBinding included: the manager keeps that binding (and so its
	// rights) until it has deleted the Job on Intuned, then the namespace
	// goes. Intuned refuses the deletion at first, so the namespace
	// controller is done with the RoleBinding before the manager is.
	if err := env.simulator.SetFaults(ctx, intunedsim.FaultRule{Match: "DELETE", Status: 503, ErrorRate: 1}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.simulator.SetFaults(context.Background()) })
	if out, err := env.kc.Kubectl(ctx, "delete", "namespace", watchedNamespace, "--wait=false"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	err := poll.Eventually(ctx, 200*time.Millisecond, "the namespace controller deleted the manager's RoleBinding", func(ctx context.Context) (bool, error) {
		state, err := managerBindingState(ctx)
		return state != "present", err
	})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second) // the authorizer's view of the RoleBinding catches up
	if err := env.simulator.SetFaults(ctx); err != nil {
		t.Fatal(err)
	}
	if out, err := env.kc.Kubectl(ctx, "wait", "--for=delete", "namespace/"+watchedNamespace, "--timeout=3m"); err != nil {
		t.Fatalf("the watched namespace was not deleted: %v\n%s", err, out)
	}
	waitJobOnIntuned(t, ctx, p, false)
}

// managerBindingState is "present", "deleting" (kept by a finalizer) or
// "absent": the manager's RoleBinding in the watched namespace.
func managerBindingState(ctx context.Context) (string, error) {
	out, err := env.kc.Kubectl(ctx, "-n", watchedNamespace, "get", "rolebinding", "intuned-operator-manager-rolebinding",
		"--ignore-not-found", "-o", "jsonpath={.metadata.name}/{.metadata.deletionTimestamp}")
	out = strings.TrimSpace(out)
	switch {
	case err != nil:
		return "", err
	case out == "":
		return "absent", nil
	case strings.HasSuffix(out, "/"):
		return "present", nil
	}
	return "deleting", nil
}

// applyInstall applies a manifest that `make installer` wrote and waits
// until the manager Deployment rolled out.
func applyInstall(t *testing.T, ctx context.Context, file string) {
	t.Helper()
	if out, err := env.kc.Kubectl(ctx, "apply", "--server-side", "-f", filepath.Join(env.dir, file)); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if out, err := env.kc.Kubectl(ctx, "-n", operatorNamespace, "rollout", "status",
		"deployment/intuned-operator-controller-manager", "--timeout=3m"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
}

// restoreClusterWideInstall puts back the install that setup applied (its
// ClusterRoleBinding, the manager without --watch-namespaces), for the
// tests that run after this one, and then deletes the test's namespaces.
func restoreClusterWideInstall(t *testing.T, namespaces ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	applyInstall(t, ctx, "install.yaml")
	for _, ns := range namespaces {
		if _, err := env.kc.Kubectl(ctx, "delete", "namespace", ns, "--ignore-not-found", "--timeout=3m"); err != nil {
			t.Error(err)
		}
	}
}
