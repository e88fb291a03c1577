package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/testutil/proc"
	"github.com/intuned-operator/intuned-operator/internal/testutil/procstat"
	"github.com/intuned-operator/intuned-operator/internal/testutil/testenv"
)

// Unrelated objects of a busy shared cluster, created with `kubectl apply`
// (whose last-applied-configuration annotation repeats the whole object):
// Secrets the manager must not cache, and workloads and ConfigMaps it has
// no business with.
const (
	noiseSecrets     = 2000
	noiseDeployments = 200
	noiseConfigMaps  = 200
	noiseDataSize    = 100 << 10 // plus the same again in the annotation: ~200 KB per object
)

// rssMargin is how much the manager's RSS may grow over its baseline on an
// empty cluster once the noise exists (measured: +7 to +12 MiB with the
// cache filtered; +97 MiB with Deployments unfiltered, +286 MiB with the
// Secrets' annotations cached, +685 MiB with every Secret cached whole;
// docs/security.md). Generous, because a restarted Go process on a noisy
// machine varies by tens of MiB.
const rssMargin = 60 << 20

// TestManagerMemoryIgnoresUnrelatedObjects runs the real manager binary
// against a real API server holding ~440 MB of Secrets, Deployments and
// ConfigMaps it neither owns nor references, and checks that its resident
// memory stays near what it uses on an empty cluster.
func TestManagerMemoryIgnoresUnrelatedObjects(t *testing.T) {
	if testing.Short() {
		t.Skip("creates ~440 MB of objects")
	}
	env, dir, bin, kubeconfig := managerEnv(t)
	ctx := context.Background()

	// The default client-side limit (5 requests/s) would take minutes.
	cfg := rest.CopyConfig(env.Config)
	cfg.QPS, cfg.Burst = 1000, 2000
	c, err := client.New(cfg, client.Options{Scheme: env.Client.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	const ns = "memory"
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}

	m := startManagerProcess(t, bin, kubeconfig, filepath.Join(dir, "manager-1.log"))
	waitReconciled(t, c, ns, "probe-1")
	base := residentMemory(t, m.Pid())
	m.Kill()

	start := time.Now()
	if err := createNoise(ctx, c, ns); err != nil {
		t.Fatal(err)
	}
	t.Logf("created %d Secrets, %d Deployments and %d ConfigMaps of ~%d KB in %s",
		noiseSecrets, noiseDeployments, noiseConfigMaps, 2*noiseDataSize>>10, time.Since(start).Round(time.Second))

	// A manager started now lists everything its caches hold before any
	// controller runs, so once it reconciled a new object its caches are full.
	m = startManagerProcess(t, bin, kubeconfig, filepath.Join(dir, "manager-2.log"))
	waitReconciled(t, c, ns, "probe-2")
	loaded := residentMemory(t, m.Pid())
	m.Kill()

	t.Logf("manager RSS: %d MiB on an empty cluster, %d MiB with the unrelated objects (bound %d MiB)",
		base>>20, loaded>>20, (base+rssMargin)>>20)
	if loaded > base+rssMargin {
		t.Errorf("manager RSS grew from %d to %d MiB with objects it neither owns nor references; want at most +%d MiB",
			base>>20, loaded>>20, rssMargin>>20)
	}
}

// buildManager builds this command into dir.
// managerEnv starts an API server for one test and builds the manager
// binary: the API server, a temporary directory, the binary and an admin
// kubeconfig in that directory.
func managerEnv(t *testing.T) (env *testenv.Env, dir, bin, kubeconfig string) {
	t.Helper()
	env, err := testenv.Start()
	if errors.Is(err, testenv.ErrNoAssets) && !testenv.InCI() {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	dir = t.TempDir()
	return env, dir, buildManager(t, dir), adminKubeconfig(t, env, dir)
}

func buildManager(t *testing.T, dir string) string {
	t.Helper()
	bins, err := proc.Build{Dir: dir, Packages: []string{"./cmd/manager"}}.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return bins[0]
}

// adminKubeconfig writes a kubeconfig of a cluster admin into dir.
func adminKubeconfig(t *testing.T, env *testenv.Env, dir string) string {
	t.Helper()
	u, err := env.Environment.AddUser(envtest.User{Name: "memory-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := u.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// startManagerProcess starts the manager binary as it runs in a Pod, minus
// leader election and the metrics and probe endpoints (not needed here);
// args come after those flags (and so override them).
func startManagerProcess(t *testing.T, bin, kubeconfig, logFile string, args ...string) *proc.Process {
	t.Helper()
	p, err := proc.Start(proc.Spec{Name: "manager", Path: bin, LogFile: logFile,
		Args: append([]string{"--leader-elect=false", "--metrics-bind-address=0", "--health-probe-bind-address=0"}, args...),
		Env:  []string{"KUBECONFIG=" + kubeconfig, "PATH=" + os.Getenv("PATH")}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Kill)
	return p
}

// waitReconciled creates a WebhookReceiver and waits until the manager
// generated its token. Controllers start only after every informer they
// use has listed its objects, so the manager's caches are filled by then.
func waitReconciled(t *testing.T, c client.Client, ns, name string) {
	t.Helper()
	waitReconciledWith(t, c, ns, name, nil)
}

// waitReconciledWith is waitReconciled for a WebhookReceiver with labels.
func waitReconciledWith(t *testing.T, c client.Client, ns, name string, labels map[string]string) *intunedv1alpha1.WebhookReceiver {
	t.Helper()
	ctx := context.Background()
	whr := &intunedv1alpha1.WebhookReceiver{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec:       intunedv1alpha1.WebhookReceiverSpec{ExternalURL: "https://receiver.example.com/" + name},
	}
	if err := c.Create(ctx, whr); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		if err := c.Get(ctx, client.ObjectKeyFromObject(whr), whr); err != nil {
			t.Fatal(err)
		}
		if whr.Status.TokenSecretName != "" {
			return whr
		}
		if time.Now().After(deadline) {
			t.Fatalf("the manager did not reconcile WebhookReceiver %s/%s", ns, name)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// residentMemory is the process's current resident set size (VmRSS).
func residentMemory(t *testing.T, pid int) int64 {
	t.Helper()
	n, err := procstat.RSS(pid)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// createNoise creates the unrelated objects, many at a time (one by one
// would take minutes).
func createNoise(ctx context.Context, c client.Client, ns string) error {
	data := strings.Repeat("x", noiseDataSize)
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	create := func(obj client.Object) {
		g.Go(func() error {
			obj.SetNamespace(ns)
			// What `kubectl apply` records: the whole object again.
			applied, err := json.Marshal(obj)
			if err != nil {
				return err
			}
			obj.SetAnnotations(map[string]string{corev1.LastAppliedConfigAnnotation: string(applied)})
			return c.Create(ctx, obj)
		})
	}
	for i := range noiseSecrets {
		create(&corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("unrelated-%d", i)},
			StringData: map[string]string{"blob": data},
		})
	}
	for i := range noiseConfigMaps {
		create(&corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("unrelated-%d", i)},
			Data:       map[string]string{"blob": data},
		})
	}
	for i := range noiseDeployments {
		labels := map[string]string{"app": fmt.Sprintf("unrelated-%d", i)}
		create(&appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("unrelated-%d", i), Labels: labels},
			Spec: appsv1.DeploymentSpec{
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{
						Name: "app", Image: "example.com/app",
						Env: []corev1.EnvVar{{Name: "BLOB", Value: data}},
					}}},
				},
			},
		})
	}
	return g.Wait()
}
