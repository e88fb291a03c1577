// Package chart tests the Helm chart (charts/intuned-operator) with Helm's
// own Go library: it lints, its values.schema.json refuses bad values, and
// for the same choices it renders exactly the objects of `make installer`
// (dist/install.yaml and its variants), so it cannot drift from config/.
// test/cluster (TestHelm) installs it on the real node.
package chart

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/pmezard/go-difflib/difflib"
	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/common"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	release "helm.sh/helm/v4/pkg/release/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/intuned-operator/intuned-operator/internal/testutil/testenv"
)

var update = flag.Bool("update", false, "copy the generated files of config/ into the chart (TestChartFilesInStep)")

// The release of the comparison: named intuned-operator in the namespace of
// config/default, it gets the names of dist/install.yaml.
const (
	releaseName      = "intuned-operator"
	releaseNamespace = "intuned-operator-system"
	// config/namespaced watches this namespace.
	kustomizeWatched = "intuned-jobs"
)

func chartDir() string { return filepath.Join(testenv.RepoRoot(), "charts", "intuned-operator") }

func loadChart(t *testing.T) *chart.Chart {
	t.Helper()
	ch, err := loader.LoadDir(chartDir())
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

// render is `helm template` of the chart with vals (YAML).
func render(t *testing.T, vals string) ([]*unstructured.Unstructured, error) {
	t.Helper()
	manifest, err := renderManifest(t, loadChart(t), vals)
	if err != nil {
		return nil, err
	}
	return decode(t, manifest), nil
}

func renderManifest(t *testing.T, ch *chart.Chart, vals string) (string, error) {
	t.Helper()
	values, err := common.ReadValues([]byte(vals))
	if err != nil {
		t.Fatalf("values %q: %v", vals, err)
	}
	install := action.NewInstall(action.NewConfiguration())
	install.DryRunStrategy = action.DryRunClient
	install.ReleaseName = releaseName
	install.Namespace = releaseNamespace
	install.Replace = true // no release store to check the name against
	install.KubeVersion, err = common.ParseKubeVersion("v1.37.0")
	if err != nil {
		t.Fatal(err)
	}
	rel, err := install.RunWithContext(context.Background(), ch, values)
	if err != nil {
		return "", err
	}
	r, ok := rel.(*release.Release)
	if !ok {
		t.Fatalf("release of type %T", rel)
	}
	return r.Manifest, nil
}

// decode splits a multi-document YAML stream into objects.
func decode(t *testing.T, manifest string) []*unstructured.Unstructured {
	t.Helper()
	var objs []*unstructured.Unstructured
	d := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(manifest), 4096)
	for {
		var raw runtime.RawExtension
		if err := d.Decode(&raw); err == io.EOF {
			return objs
		} else if err != nil {
			t.Fatalf("decode: %v\n%s", err, manifest)
		}
		if len(bytes.TrimSpace(raw.Raw)) == 0 || string(raw.Raw) == "null" {
			continue
		}
		// Integers stay int64 (a plain JSON decode makes them float64).
		o := &unstructured.Unstructured{}
		if err := o.UnmarshalJSON(raw.Raw); err != nil {
			t.Fatalf("decode: %v\n%s", err, raw.Raw)
		}
		objs = append(objs, o)
	}
}

func TestLint(t *testing.T) {
	for _, vals := range []string{
		"",
		"watchNamespaces: [a, b]\nadmissionPolicy: {enabled: true}",
		"replicaCount: 1\nleaderElection: {enabled: false}\nmetrics: {enabled: false}\npodDisruptionBudget: {enabled: false}",
	} {
		values, err := common.ReadValues([]byte(vals))
		if err != nil {
			t.Fatal(err)
		}
		lint := action.NewLint()
		lint.Strict = true
		lint.Namespace = releaseNamespace
		res := lint.Run([]string{chartDir()}, values)
		for _, m := range res.Messages {
			t.Logf("lint %q: %s", vals, m)
		}
		if len(res.Errors) > 0 {
			t.Errorf("helm lint --strict with %q: %v", vals, res.Errors)
		}
	}
}

// TestSchemaRejectsBadValues: values.schema.json refuses values that would
// render a broken install, and says which value and why.
func TestSchemaRejectsBadValues(t *testing.T) {
	for _, tc := range []struct {
		name, values string
		want         []string // all in the error
	}{
		{"replicas not a number", "replicaCount: two", []string{"/replicaCount", "want integer"}},
		{"negative replicas", "replicaCount: -1", []string{"/replicaCount", "minimum"}},
		{"unknown top-level value", "replicas: 3", []string{"additional properties 'replicas' not allowed"}},
		{"typo in a nested value", "image: {tags: v1}", []string{"/image", "'tags' not allowed"}},
		{"digest not sha256", "image: {digest: latest}", []string{"/image/digest", "does not match pattern"}},
		{"tag in the repository", "image: {repository: 'ghcr.io/x/y:v1'}", []string{"/image/repository", "does not match pattern"}},
		{"bad pull policy", "image: {pullPolicy: Sometimes}", []string{"/image/pullPolicy", "Always"}},
		{"pull secret without a name", "imagePullSecrets: [{secret: regcred}]", []string{"/imagePullSecrets/0", "missing property 'name'"}},
		{"watched namespace not a DNS label", "watchNamespaces: [Team_A]", []string{"/watchNamespaces/0", "does not match pattern"}},
		{"watched namespaces as a string", "watchNamespaces: a,b", []string{"/watchNamespaces", "want array"}},
		{"admission policy flag", "admissionPolicy: {enabled: 'yes'}", []string{"/admissionPolicy/enabled", "want boolean"}},
		{"port out of range", "metrics: {port: 70000}", []string{"/metrics/port", "maximum"}},
		{"bad quantity", "resources: {requests: {memory: 64MB}}", []string{"/resources/requests/memory", "does not match pattern"}},
		{"extra arg without dashes", "extraArgs: [zap-log-level=debug]", []string{"/extraArgs/0", "does not match pattern"}},
		{"annotation value not a string", "podAnnotations: {a: 1}", []string{"/podAnnotations/a", "want string"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := render(t, tc.values)
			if err == nil {
				t.Fatalf("values %q rendered; want a schema error", tc.values)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error for %q does not say %q:\n%v", tc.values, w, err)
				}
			}
		})
	}
	// A template check the schema cannot express.
	if _, err := render(t, "leaderElection: {enabled: false}"); err == nil || !strings.Contains(err.Error(), "needs leaderElection.enabled") {
		t.Errorf("2 replicas without leader election: %v, want the chart's failure", err)
	}
}

// generatedCopies are the chart's copies of files `make manifests`
// generates: the chart cannot read outside its directory, and a packaged
// chart must carry them.
var generatedCopies = map[string]string{
	"files/crds/intuned.io_intunedjobs.yaml":      "config/crd/bases/intuned.io_intunedjobs.yaml",
	"files/crds/intuned.io_webhookreceivers.yaml": "config/crd/bases/intuned.io_webhookreceivers.yaml",
	"files/manager-role.yaml":                     "config/rbac/role.yaml",
}

// TestChartFilesInStep: the chart's copies equal config/'s files, and the
// chart carries no CRD that config/ does not have. -update copies them.
func TestChartFilesInStep(t *testing.T) {
	root := testenv.RepoRoot()
	bases, err := filepath.Glob(filepath.Join(root, "config/crd/bases/*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	copies, err := filepath.Glob(filepath.Join(chartDir(), "files/crds/*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(bases) != len(copies) {
		t.Errorf("config/crd/bases has %d CRDs, the chart's files/crds %d: add the new one to generatedCopies", len(bases), len(copies))
	}
	for dst, src := range generatedCopies {
		want, err := os.ReadFile(filepath.Join(root, src))
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(chartDir(), dst)
		if *update {
			if err := os.WriteFile(path, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("charts/intuned-operator/%s differs from %s (%v); run: go test ./test/chart -run TestChartFilesInStep -update", dst, src, err)
		}
	}
}

// installers renders `make installer` once for the tests: the manifests a
// user gets, from config/, with the image the chart defaults to.
var installers = sync.OnceValues(func() (string, error) {
	ch, err := loader.LoadDir(chartDir())
	if err != nil {
		return "", err
	}
	img := ch.Values["image"].(map[string]any)["repository"].(string) + ":" + ch.Metadata.AppVersion
	dir, err := os.MkdirTemp("", "test-chart-")
	if err != nil {
		return "", err
	}
	cmd := exec.Command("make", "-s", "installer", "IMG="+img, "INSTALLER="+filepath.Join(dir, "install.yaml"))
	cmd.Dir = testenv.RepoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("make installer: %w\n%s", err, out)
	}
	return dir, nil
})

func installerObjects(t *testing.T, files ...string) []*unstructured.Unstructured {
	t.Helper()
	dir, err := installers()
	if err != nil {
		t.Fatal(err)
	}
	var objs []*unstructured.Unstructured
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		objs = append(objs, decode(t, string(b))...)
	}
	return objs
}

// TestRendersInstallObjects: for each install `make installer` writes, the
// chart with the same choices renders the same objects, field by field,
// once the labels and annotations only Helm (or only kustomize) adds are
// set aside. The one object the chart leaves out is the Namespace: Helm
// installs into a namespace that exists (docs/helm.md).
func TestRendersInstallObjects(t *testing.T) {
	t.Cleanup(func() {
		if dir, err := installers(); err == nil {
			_ = os.RemoveAll(dir)
		}
	})
	for _, tc := range []struct {
		name, values string
		installer    []string
	}{
		{"default", "", []string{"install.yaml"}},
		{"admission policy", "admissionPolicy: {enabled: true}", []string{"install.yaml", "admission-policy.yaml"}},
		{"namespaced", "watchNamespaces: [" + kustomizeWatched + "]", []string{"install-namespaced.yaml"}},
		{"namespaced with admission policy", "watchNamespaces: [" + kustomizeWatched + "]\nadmissionPolicy: {enabled: true}",
			[]string{"install-namespaced.yaml", "admission-policy-namespaced.yaml"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := index(t, installerObjects(t, tc.installer...))
			objs, err := render(t, tc.values)
			if err != nil {
				t.Fatal(err)
			}
			got := index(t, objs)
			for key, w := range want {
				g, ok := got[key]
				if !ok {
					if strings.HasPrefix(key, "Namespace/") {
						continue // left to the user (docs/helm.md)
					}
					t.Errorf("the chart does not render %s (from %v)", key, tc.installer)
					continue
				}
				if d := diff(w, g); d != "" {
					t.Errorf("%s differs (- %v, + chart):\n%s", key, tc.installer, d)
				}
			}
			for key := range got {
				if _, ok := want[key]; !ok {
					t.Errorf("the chart renders %s, which %v does not have", key, tc.installer)
				}
			}
			if len(want) < 20 {
				t.Errorf("only %d objects in %v: is make installer broken?", len(want), tc.installer)
			}
		})
	}
}

// index keys normalised objects by kind, namespace and name.
func index(t *testing.T, objs []*unstructured.Unstructured) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	for _, o := range objs {
		key := o.GetKind() + "/" + o.GetNamespace() + "/" + o.GetName()
		if _, dup := out[key]; dup {
			t.Errorf("%s twice", key)
		}
		out[key] = normalise(o).Object
	}
	return out
}

// Metadata only one of the tools adds: Helm's standard labels (chart,
// release, version, managed-by) and the CRDs' keep policy; kustomize's
// managed-by label.
var (
	toolLabels      = []string{"helm.sh/chart", "app.kubernetes.io/instance", "app.kubernetes.io/version", "app.kubernetes.io/managed-by"}
	toolAnnotations = []string{"helm.sh/resource-policy"}
)

func normalise(in *unstructured.Unstructured) *unstructured.Unstructured {
	o := in.DeepCopy()
	labels, annotations := o.GetLabels(), o.GetAnnotations()
	for _, k := range toolLabels {
		delete(labels, k)
	}
	for _, k := range toolAnnotations {
		delete(annotations, k)
	}
	o.SetLabels(labels)
	o.SetAnnotations(annotations)
	if len(labels) == 0 {
		unstructured.RemoveNestedField(o.Object, "metadata", "labels")
	}
	if len(annotations) == 0 {
		unstructured.RemoveNestedField(o.Object, "metadata", "annotations")
	}
	return o
}

func diff(want, got map[string]any) string {
	w, err := yaml.Marshal(want)
	if err != nil {
		return err.Error()
	}
	g, err := yaml.Marshal(got)
	if err != nil {
		return err.Error()
	}
	if bytes.Equal(w, g) {
		return ""
	}
	d, _ := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
		A: difflib.SplitLines(string(w)), B: difflib.SplitLines(string(g)), Context: 3,
	})
	return d
}

// TestValues: the values that change what the install has no variant of.
func TestValues(t *testing.T) {
	const digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for _, tc := range []struct {
		name, values string
		check        func(t *testing.T, objs map[string]map[string]any)
	}{
		{"image with digest and pull secrets", "image: {repository: reg.example/op, tag: v1.2.3, digest: " + digest + ", pullPolicy: Always}\nimagePullSecrets: [{name: regcred}]",
			func(t *testing.T, objs map[string]map[string]any) {
				pod := podSpec(t, objs)
				expect(t, pod, "reg.example/op:v1.2.3@"+digest, "containers", 0, "image")
				expect(t, pod, "Always", "containers", 0, "imagePullPolicy")
				expect(t, pod, "regcred", "imagePullSecrets", 0, "name")
			}},
		{"receiver image", "receiver: {image: reg.example/receiver:v1}",
			func(t *testing.T, objs map[string]map[string]any) {
				expectArg(t, podSpec(t, objs), "--receiver-image=reg.example/receiver:v1")
			}},
		{"scheduling and pod metadata", "nodeSelector: {pool: ops}\ntolerations: [{key: ops, operator: Exists}]\npodAnnotations: {a: b}\nreplicaCount: 3\nresources: {requests: {cpu: 50m}}",
			func(t *testing.T, objs map[string]map[string]any) {
				pod := podSpec(t, objs)
				expect(t, pod, "ops", "nodeSelector", "pool")
				expect(t, pod, "ops", "tolerations", 0, "key")
				expect(t, pod, "50m", "containers", 0, "resources", "requests", "cpu")
				deploy := objs["Deployment/"+releaseNamespace+"/intuned-operator-controller-manager"]
				expect(t, deploy, int64(3), "spec", "replicas")
				expect(t, deploy, "b", "spec", "template", "metadata", "annotations", "a")
				expect(t, deploy, "manager", "spec", "template", "metadata", "annotations", "kubectl.kubernetes.io/default-container")
			}},
		{"CRD annotations", "crds: {annotations: {argocd.argoproj.io/sync-options: Delete=false}}",
			func(t *testing.T, objs map[string]map[string]any) {
				for _, name := range []string{"intunedjobs.intuned.io", "webhookreceivers.intuned.io"} {
					crd := objs["CustomResourceDefinition//"+name]
					expect(t, crd, "Delete=false", "metadata", "annotations", "argocd.argoproj.io/sync-options")
					expect(t, crd, "keep", "metadata", "annotations", "helm.sh/resource-policy")
				}
			}},
		{"CRDs not kept", "crds: {keep: false}",
			func(t *testing.T, objs map[string]map[string]any) {
				crd := objs["CustomResourceDefinition//intunedjobs.intuned.io"]
				if _, kept := crd["metadata"].(map[string]any)["annotations"].(map[string]any)["helm.sh/resource-policy"]; kept {
					t.Error("crds.keep=false still keeps the CRDs")
				}
			}},
		{"no CRDs, no metrics", "crds: {enabled: false}\nmetrics: {enabled: false}",
			func(t *testing.T, objs map[string]map[string]any) {
				for key := range objs {
					if strings.HasPrefix(key, "CustomResourceDefinition/") || strings.Contains(key, "metrics") {
						t.Errorf("rendered %s", key)
					}
				}
				expectArg(t, podSpec(t, objs), "--metrics-bind-address=0")
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs, err := render(t, tc.values)
			if err != nil {
				t.Fatal(err)
			}
			byKey := map[string]map[string]any{}
			for _, o := range objs {
				byKey[o.GetKind()+"/"+o.GetNamespace()+"/"+o.GetName()] = o.Object
			}
			tc.check(t, byKey)
		})
	}
	// The default keeps the CRDs through `helm uninstall`.
	objs, err := render(t, "")
	if err != nil {
		t.Fatal(err)
	}
	var kept []string
	for _, o := range objs {
		if o.GetKind() == "CustomResourceDefinition" && o.GetAnnotations()["helm.sh/resource-policy"] == "keep" {
			kept = append(kept, o.GetName())
		}
	}
	sort.Strings(kept)
	if strings.Join(kept, ",") != "intunedjobs.intuned.io,webhookreceivers.intuned.io" {
		t.Errorf("CRDs kept through uninstall: %v", kept)
	}
}

func podSpec(t *testing.T, objs map[string]map[string]any) map[string]any {
	t.Helper()
	d, ok := objs["Deployment/"+releaseNamespace+"/intuned-operator-controller-manager"]
	if !ok {
		t.Fatal("no manager Deployment")
	}
	spec, _, _ := unstructured.NestedMap(d, "spec", "template", "spec")
	return spec
}

// expect checks the value at path (map keys and list indexes).
func expect(t *testing.T, obj any, want any, path ...any) {
	t.Helper()
	cur := obj
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := cur.(map[string]any)
			cur = m[k]
		case int:
			l, _ := cur.([]any)
			if k >= len(l) {
				cur = nil
				break
			}
			cur = l[k]
		}
	}
	if cur != want {
		t.Errorf("%v = %v (%T), want %v", path, cur, cur, want)
	}
}

func expectArg(t *testing.T, pod map[string]any, want string) {
	t.Helper()
	args, _, _ := unstructured.NestedStringSlice(pod["containers"].([]any)[0].(map[string]any), "args")
	for _, a := range args {
		if a == want {
			return
		}
	}
	t.Errorf("manager args %v lack %s", args, want)
}
