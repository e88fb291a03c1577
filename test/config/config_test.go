package config

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

const (
	namespace  = "intuned-operator-system"
	namePrefix = "intuned-operator-"
	fieldOwner = "intuned-operator-config-test"
)

// repoRoot is the repository root, found from this file's location so the
// test works from any working directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate test source file")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// renderDefault builds config/default exactly as `kustomize build` would.
func renderDefault(t *testing.T) []*unstructured.Unstructured {
	t.Helper()
	return render(t, "default")
}

// render builds config/<name> with kustomize.
func render(t *testing.T, name string) []*unstructured.Unstructured {
	t.Helper()
	return renderDir(t, filepath.Join(repoRoot(t), "config", name))
}

// renderDir builds the kustomization in dir.
func renderDir(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	resMap, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	var objs []*unstructured.Unstructured
	for _, r := range resMap.Resources() {
		data, err := r.AsYAML()
		if err != nil {
			t.Fatalf("render %s: %v", r.CurId(), err)
		}
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(data, &u.Object); err != nil {
			t.Fatalf("decode %s: %v", r.CurId(), err)
		}
		objs = append(objs, u)
	}
	return objs
}

// find returns the rendered object with the given kind and name, or nil.
func find(objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	return nil
}

func TestDefaultRendersFullInstall(t *testing.T) {
	objs := renderDefault(t)

	// Everything a working install needs, with the prefix and namespace
	// kustomize is supposed to apply. "" namespace = cluster-scoped.
	want := []struct {
		kind, namespace, name string
	}{
		{"Namespace", "", namespace},
		{"CustomResourceDefinition", "", "intunedjobs.intuned.io"},
		{"CustomResourceDefinition", "", "webhookreceivers.intuned.io"},
		{"ServiceAccount", namespace, namePrefix + "controller-manager"},
		{"ClusterRole", "", namePrefix + "manager-role"},
		{"ClusterRoleBinding", "", namePrefix + "manager-rolebinding"},
		{"Role", namespace, namePrefix + "leader-election-role"},
		{"RoleBinding", namespace, namePrefix + "leader-election-rolebinding"},
		{"Role", namespace, namePrefix + "own-pod-reader-role"},
		{"RoleBinding", namespace, namePrefix + "own-pod-reader-rolebinding"},
		{"ClusterRole", "", namePrefix + "metrics-auth-role"},
		{"ClusterRoleBinding", "", namePrefix + "metrics-auth-rolebinding"},
		{"ClusterRole", "", namePrefix + "metrics-reader"},
		{"ClusterRole", "", namePrefix + "intunedjob-editor-role"},
		{"ClusterRole", "", namePrefix + "webhookreceiver-viewer-role"},
		{"ClusterRole", "", namePrefix + "webhookreceiver-data-reader"},
		{"ClusterRoleBinding", "", namePrefix + "receiver-auth-delegator"},
		{"ClusterRole", "", namePrefix + "receiver-auth-binding-editor"},
		{"ClusterRoleBinding", "", namePrefix + "receiver-auth-binding-editor"},
		{"Service", namespace, namePrefix + "controller-manager-metrics-service"},
		{"Deployment", namespace, namePrefix + "controller-manager"},
	}
	for _, w := range want {
		t.Run(w.kind+"/"+w.name, func(t *testing.T) {
			o := find(objs, w.kind, w.name)
			if o == nil {
				t.Fatalf("rendered output has no %s %q", w.kind, w.name)
			}
			if o.GetNamespace() != w.namespace {
				t.Errorf("namespace = %q, want %q", o.GetNamespace(), w.namespace)
			}
		})
	}
}

func TestDefaultManagerDeployment(t *testing.T) {
	dep := find(renderDefault(t), "Deployment", namePrefix+"controller-manager")
	if dep == nil {
		t.Fatal("no manager Deployment rendered")
	}
	str := func(path ...string) string {
		v, _, _ := unstructured.NestedString(dep.Object, path...)
		return v
	}
	containers, _, _ := unstructured.NestedSlice(dep.Object, "spec", "template", "spec", "containers")
	if len(containers) != 1 {
		t.Fatalf("want 1 container, got %d", len(containers))
	}
	c := containers[0].(map[string]any)
	cstr := func(path ...string) string {
		v, _, _ := unstructured.NestedFieldNoCopy(c, path...)
		s, _ := v.(string)
		return s
	}
	cbool := func(path ...string) bool {
		v, _, _ := unstructured.NestedBool(c, path...)
		return v
	}
	args, _, _ := unstructured.NestedStringSlice(c, "args")
	drop, _, _ := unstructured.NestedStringSlice(c, "securityContext", "capabilities", "drop")

	tests := []struct {
		name string
		ok   bool
	}{
		// kustomize must rewrite the reference along with the prefixed name.
		{"serviceAccountName is prefixed", str("spec", "template", "spec", "serviceAccountName") == namePrefix+"controller-manager"},
		{"pod seccomp RuntimeDefault", str("spec", "template", "spec", "securityContext", "seccompProfile", "type") == "RuntimeDefault"},
		{"image placeholder set", cstr("image") != ""},
		{"arg --leader-elect", slices.Contains(args, "--leader-elect")},
		{"arg --health-probe-bind-address", slices.Contains(args, "--health-probe-bind-address=:8081")},
		{"arg --metrics-bind-address", slices.Contains(args, "--metrics-bind-address=:8443")},
		{"runAsNonRoot", cbool("securityContext", "runAsNonRoot")},
		{"no privilege escalation", !cbool("securityContext", "allowPrivilegeEscalation")},
		{"read-only root filesystem", cbool("securityContext", "readOnlyRootFilesystem")},
		{"drops ALL capabilities", slices.Equal(drop, []string{"ALL"})},
		{"liveness probe /healthz", cstr("livenessProbe", "httpGet", "path") == "/healthz"},
		{"readiness probe /readyz", cstr("readinessProbe", "httpGet", "path") == "/readyz"},
		{"cpu request", cstr("resources", "requests", "cpu") != ""},
		{"memory limit", cstr("resources", "limits", "memory") != ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !tt.ok {
				t.Errorf("manager Deployment check failed: %s", tt.name)
			}
		})
	}
}

// assetsDir finds the envtest binaries: KUBEBUILDER_ASSETS, else the newest
// bin/k8s/<version> that hack/setup-envtest.sh built.
func assetsDir(t *testing.T) string {
	t.Helper()
	var candidates []string
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		candidates = []string{dir}
	} else {
		dirs, _ := filepath.Glob(filepath.Join(repoRoot(t), "bin", "k8s", "*"))
		sort.Sort(sort.Reverse(sort.StringSlice(dirs)))
		candidates = dirs
	}
	for _, dir := range candidates {
		if _, err := os.Stat(filepath.Join(dir, "kube-apiserver")); err == nil {
			return dir
		}
	}
	msg := "envtest binaries not found: run hack/setup-envtest.sh or set KUBEBUILDER_ASSETS"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// startAPIServer starts kube-apiserver + etcd and stops them when the test ends.
func startAPIServer(t *testing.T, assets string) (*envtest.Environment, client.Client) {
	t.Helper()
	env := &envtest.Environment{BinaryAssetsDirectory: assets}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("start envtest: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stop envtest: %v", err)
		}
	})
	scheme := k8sruntime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := apiextensionsv1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	return env, c
}

// waitEstablished waits until the API server serves the CRD; on timeout it
// reports the CRD's conditions, which say why (e.g. a structural schema error).
func waitEstablished(ctx context.Context, t *testing.T, c client.Client, name string) {
	t.Helper()
	crd := &apiextensionsv1.CustomResourceDefinition{}
	for {
		if err := c.Get(ctx, client.ObjectKey{Name: name}, crd); err != nil {
			t.Fatalf("get CRD %s: %v", name, err)
		}
		for _, cond := range crd.Status.Conditions {
			if cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("CRD %s never became established; conditions: %+v", name, crd.Status.Conditions)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// TestDefaultAppliesWithServerDryRun is `kubectl apply --dry-run=server` of
// the whole install against a real API server: schema, defaulting and
// admission all run, nothing is persisted. CRDs (and the Namespace) are
// created for real first, because the other objects can only be validated
// once their types and namespace exist.
//
// It runs on the current Kubernetes and on the oldest version the install
// claims to support (docs/getting-started.md), where the samples are
// dry-run applied too, so every CEL rule of the CRDs compiles and runs there.
func TestDefaultAppliesWithServerDryRun(t *testing.T) {
	t.Run("current", func(t *testing.T) { applyInstallDryRun(t, assetsDir(t), false) })
	t.Run("oldest-supported-"+OldestSupportedKubernetes, func(t *testing.T) {
		applyInstallDryRun(t, oldestAssetsDir(t), true)
	})
}

// OldestSupportedKubernetes is the oldest Kubernetes the default install
// applies to. The Makefile builds its API server alone (hack/setup-envtest.sh
// with ENVTEST_K8S_VERSION and ENVTEST_APISERVER_ONLY=1) into
// bin/k8s/<version>.
const OldestSupportedKubernetes = "1.31.14"

// oldestAssetsDir is an envtest assets directory with the oldest supported
// kube-apiserver beside the current etcd and kubectl: what is checked is the
// API server (schema, CEL, admission); etcd's API and kubectl's server-side
// dry-run are the same across these versions.
func oldestAssetsDir(t *testing.T) string {
	t.Helper()
	apiserver := filepath.Join(repoRoot(t), "bin", "k8s", OldestSupportedKubernetes, "kube-apiserver")
	if _, err := os.Stat(apiserver); err != nil {
		msg := "no Kubernetes " + OldestSupportedKubernetes + " API server: run ENVTEST_K8S_VERSION=" + OldestSupportedKubernetes + " ENVTEST_APISERVER_ONLY=1 hack/setup-envtest.sh (make test does)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	if out, err := exec.Command(apiserver, "--version").Output(); err != nil || strings.TrimSpace(string(out)) != "Kubernetes v"+OldestSupportedKubernetes {
		t.Fatalf("%s --version: %q (%v), want Kubernetes v%s", apiserver, out, err, OldestSupportedKubernetes)
	}
	dir := t.TempDir()
	current := assetsDir(t)
	for name, target := range map[string]string{
		"kube-apiserver": apiserver,
		"etcd":           filepath.Join(current, "etcd"),
		"kubectl":        filepath.Join(current, "kubectl"),
	} {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func applyInstallDryRun(t *testing.T, assets string, withSamples bool) {
	objs := renderDefault(t)
	env, c := startAPIServer(t, assets)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	createCRDsAndNamespaces(ctx, t, c, objs)

	// 3. Every object, CRDs and Namespace included, with server-side apply
	// in dry-run mode; the samples too where asked (their CEL rules run).
	if withSamples {
		for _, o := range render(t, "samples") {
			o.SetNamespace("default")
			objs = append(objs, o)
		}
	}
	for _, o := range objs {
		t.Run(o.GetKind()+"/"+o.GetName(), func(t *testing.T) {
			err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(o.DeepCopy()),
				client.FieldOwner(fieldOwner), client.ForceOwnership, client.DryRunAll)
			if err != nil {
				t.Errorf("server-side dry-run apply rejected: %v", err)
			}
		})
	}

	// 4. The same through kubectl, as a user would run it.
	t.Run("kubectl apply --dry-run=server", func(t *testing.T) {
		kubectl := filepath.Join(assets, "kubectl")
		if _, err := os.Stat(kubectl); err != nil {
			t.Skipf("no kubectl in %s", assets)
		}
		kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
		if err := os.WriteFile(kubeconfig, env.KubeConfig, 0o600); err != nil {
			t.Fatal(err)
		}
		var manifest bytes.Buffer
		for _, o := range objs {
			data, err := yaml.Marshal(o.Object)
			if err != nil {
				t.Fatal(err)
			}
			manifest.WriteString("---\n")
			manifest.Write(data)
		}
		cmd := exec.CommandContext(ctx, kubectl, "--kubeconfig", kubeconfig,
			"apply", "--server-side", "--dry-run=server", "--field-manager", fieldOwner, "-f", "-")
		cmd.Stdin = &manifest
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl apply --dry-run=server failed: %v\n%s", err, out)
		}
		t.Logf("kubectl:\n%s", out)
	})
}

// createCRDsAndNamespaces creates the CRDs in objs for real and waits until
// they are served, then the Namespaces, so that the other objects can be
// validated.
func createCRDsAndNamespaces(ctx context.Context, t *testing.T, c client.Client, objs []*unstructured.Unstructured) {
	t.Helper()
	// 1. CRDs for real, then wait until they are served.
	var crds []*apiextensionsv1.CustomResourceDefinition
	for _, o := range objs {
		if o.GetKind() != "CustomResourceDefinition" {
			continue
		}
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := k8sruntime.DefaultUnstructuredConverter.FromUnstructured(o.Object, crd); err != nil {
			t.Fatalf("decode CRD %s: %v", o.GetName(), err)
		}
		if err := c.Create(ctx, crd); err != nil {
			t.Fatalf("create CRD %s: %v", o.GetName(), err)
		}
		crds = append(crds, crd)
	}
	if len(crds) == 0 {
		t.Fatal("the install rendered no CustomResourceDefinitions")
	}
	for _, crd := range crds {
		waitEstablished(ctx, t, c, crd.Name)
	}

	// 2. Namespaces for real, so namespaced objects have somewhere to go.
	for _, o := range objs {
		if o.GetKind() == "Namespace" {
			if err := c.Create(ctx, o.DeepCopy()); err != nil {
				t.Fatalf("create Namespace %s: %v", o.GetName(), err)
			}
		}
	}
}

// The Makefile builds the API server TestDefaultAppliesWithServerDryRun uses
// for the oldest supported version: the two must name the same version.
func TestMakefileBuildsOldestSupportedKubernetes(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "OLDEST_K8S_VERSION ?= " + OldestSupportedKubernetes + "\n"; !strings.Contains(string(b), want) {
		t.Errorf("Makefile lacks %q", want)
	}
}
