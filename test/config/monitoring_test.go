package config

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/resources"
)

// dashboard is the part of a Grafana dashboard the test reads.
type dashboard struct {
	UID        string `json:"uid"`
	Title      string `json:"title"`
	Templating struct {
		List []struct {
			Name string `json:"name"`
			Type string `json:"type"`
		} `json:"list"`
	} `json:"templating"`
	Panels []struct {
		ID      int    `json:"id"`
		Type    string `json:"type"`
		Title   string `json:"title"`
		GridPos struct {
			X, Y, W, H int
		} `json:"gridPos"`
		Datasource struct {
			UID string `json:"uid"`
		} `json:"datasource"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
}

// TestGrafanaDashboard: the dashboard in config/grafana is one Grafana
// imports (ids, layout, a datasource variable every panel uses), its
// queries are well formed and every metric they read is one the manager
// or the receiver exports; its kustomization makes the ConfigMap Grafana's
// dashboard sidecar loads.
func TestGrafanaDashboard(t *testing.T) {
	root := repoRoot(t)
	raw, err := os.ReadFile(filepath.Join(root, "config", "grafana", "intuned-operator-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	if d.UID == "" || d.Title == "" {
		t.Errorf("uid %q, title %q: both needed", d.UID, d.Title)
	}
	var vars []string
	for _, v := range d.Templating.List {
		vars = append(vars, v.Type+":"+v.Name)
	}
	for _, want := range []string{"datasource:datasource", "query:namespace"} {
		if !slices.Contains(vars, want) {
			t.Errorf("templating variables %v: want %s", vars, want)
		}
	}

	known := exportedMetrics(t, root)
	ids := map[int]bool{}
	queries := 0
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		if p.GridPos.X < 0 || p.GridPos.W <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q: gridPos x=%d w=%d outside Grafana's 24 columns", p.Title, p.GridPos.X, p.GridPos.W)
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource.UID != "${datasource}" || len(p.Targets) == 0 {
			t.Errorf("panel %q: datasource %q and %d queries, want ${datasource} and at least one", p.Title, p.Datasource.UID, len(p.Targets))
		}
		for _, target := range p.Targets {
			queries++
			names, err := promqlMetricNames(target.Expr)
			if err != nil {
				t.Errorf("panel %q: %v in %s", p.Title, err, target.Expr)
				continue
			}
			if len(names) == 0 {
				t.Errorf("panel %q: no metric in %s", p.Title, target.Expr)
			}
			for _, n := range names {
				if !known[n] {
					t.Errorf("panel %q reads %s, which neither the manager nor the receiver exports", p.Title, n)
				}
			}
		}
	}
	if queries == 0 {
		t.Fatal("the dashboard has no queries")
	}

	objs := render(t, "grafana")
	if len(objs) != 1 || objs[0].GetKind() != "ConfigMap" || objs[0].GetLabels()["grafana_dashboard"] != "1" {
		t.Fatalf("config/grafana renders %d objects; want one ConfigMap labelled grafana_dashboard=1", len(objs))
	}
	data, _, _ := unstructured.NestedStringMap(objs[0].Object, "data")
	if data["intuned-operator-dashboard.json"] != string(raw) {
		t.Error("the ConfigMap does not hold the dashboard as written")
	}
}

// TestReceiverPodMonitor: the PodMonitor in config/prometheus selects the
// Pods the operator makes for a WebhookReceiver, on the port that serves
// the receiver's /metrics, in every namespace.
func TestReceiverPodMonitor(t *testing.T) {
	pm := find(render(t, "prometheus"), "PodMonitor", "webhookreceivers")
	if pm == nil {
		t.Fatal("config/prometheus renders no PodMonitor webhookreceivers")
	}
	selector, _, _ := unstructured.NestedStringMap(pm.Object, "spec", "selector", "matchLabels")
	podLabels := resources.Labels(&v1alpha1.WebhookReceiver{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "orders"}})
	for k, v := range selector {
		if podLabels[k] != v {
			t.Errorf("PodMonitor selects %s=%s; receiver Pods carry %v", k, v, podLabels)
		}
	}
	if len(selector) == 0 {
		t.Error("PodMonitor selects every Pod")
	}
	if all, _, _ := unstructured.NestedBool(pm.Object, "spec", "namespaceSelector", "any"); !all {
		t.Error("PodMonitor watches only its own namespace; receivers live in the users' namespaces")
	}
	endpoints, _, _ := unstructured.NestedSlice(pm.Object, "spec", "podMetricsEndpoints")
	if len(endpoints) != 1 {
		t.Fatalf("podMetricsEndpoints: %v", endpoints)
	}
	ep, _ := endpoints[0].(map[string]any)
	if ep["port"] != resources.HTTPPortName || ep["path"] != "/metrics" {
		t.Errorf("PodMetricsEndpoint %v: want port %q, path /metrics", ep, resources.HTTPPortName)
	}
}

var (
	metricLiteral = regexp.MustCompile(`"((?:receiver|intuned|intunedjob)_[a-z0-9_]+)"`)
	// Label matchers, range selectors, grouping clauses and strings hold
	// no metric names.
	promqlNoise = []*regexp.Regexp{
		regexp.MustCompile(`"(?:[^"\\]|\\.)*"`),
		regexp.MustCompile(`\{[^{}]*\}`),
		regexp.MustCompile(`\[[^\[\]]*\]`),
		regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)`),
	}
	promqlIdent    = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*\s*\(?`)
	promqlKeywords = []string{"and", "or", "unless", "bool", "offset", "by", "without"}
)

// exportedMetrics are the metric names the manager and the receiver
// register (string literals in the code), plus the standard ones of the
// libraries the dashboard reads, each checked against that library's source.
func exportedMetrics(t *testing.T, root string) map[string]bool {
	t.Helper()
	known := map[string]bool{}
	for _, dir := range []string{"internal", "cmd"} {
		err := filepath.WalkDir(filepath.Join(root, dir), func(path string, e fs.DirEntry, err error) error {
			if err != nil || e.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			src, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for _, m := range metricLiteral.FindAllSubmatch(src, -1) {
				known[string(m[1])] = true
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	library := map[string]string{
		"controller_runtime_reconcile_total":        "sigs.k8s.io/controller-runtime",
		"controller_runtime_reconcile_errors_total": "sigs.k8s.io/controller-runtime",
		"process_resident_memory_bytes":             "github.com/prometheus/client_golang",
	}
	for name, mod := range library {
		out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", mod).Output()
		if err != nil {
			t.Fatalf("go list -m %s: %v", mod, err)
		}
		if err := exec.Command("grep", "-rqF", name+`"`, strings.TrimSpace(string(out))).Run(); err != nil {
			t.Errorf("%s does not define the metric %s any more", mod, name)
		}
		known[name] = true
	}
	return known
}

// promqlMetricNames lists the metric names a PromQL expression reads (its
// histogram series by their base name): not a parser, but it catches
// unbalanced brackets and names that do not exist.
func promqlMetricNames(expr string) ([]string, error) {
	depth := map[rune]int{}
	pairs := map[rune]rune{')': '(', ']': '[', '}': '{'}
	for _, r := range expr {
		switch r {
		case '(', '[', '{':
			depth[r]++
		case ')', ']', '}':
			if depth[pairs[r]]--; depth[pairs[r]] < 0 {
				return nil, errUnbalanced
			}
		}
	}
	for _, n := range depth {
		if n != 0 {
			return nil, errUnbalanced
		}
	}
	rest := expr
	for changed := true; changed; {
		changed = false
		for _, re := range promqlNoise {
			if next := re.ReplaceAllString(rest, " "); next != rest {
				rest, changed = next, true
			}
		}
	}
	var names []string
	for _, tok := range promqlIdent.FindAllString(rest, -1) {
		if strings.HasSuffix(tok, "(") || slices.Contains(promqlKeywords, strings.TrimSpace(tok)) {
			continue // a function or an operator
		}
		name := strings.TrimSpace(tok)
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			name = strings.TrimSuffix(name, suffix)
		}
		names = append(names, name)
	}
	return names, nil
}

var errUnbalanced = errors.New("unbalanced brackets")
