package config

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/intuned-operator/intuned-operator/internal/controller/sharding"
)

// TestShardingInstall: config/sharding is config/default plus one manager
// Deployment per shard that differs only where it must: its --shard flag,
// its name and its Pod labels (no Deployment's selector matches another's
// Pods), with the one shared ServiceAccount (and so the same RBAC), image
// and every other argument; and its own metrics Service. The API server
// accepts it (server-side dry-run).
func TestShardingInstall(t *testing.T) {
	var err error
	objs := render(t, "sharding")
	def := renderDefault(t)
	if got, want := len(objs), len(def)+2; got != want {
		t.Errorf("config/sharding renders %d objects; want config/default's %d plus the shard's Deployment and Service", got, len(def))
	}
	var deps []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == "Deployment" {
			deps = append(deps, o)
		}
	}
	if len(deps) != 2 {
		t.Fatalf("%d manager Deployments; want the default shard's and shard1's", len(deps))
	}
	type manager struct {
		shard, sa, image string
		args             []string
		selector         labels.Selector
		podLabels        labels.Set
	}
	var managers []manager
	for _, d := range deps {
		containers, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "containers")
		c := containers[0].(map[string]any)
		m := manager{image: c["image"].(string)}
		m.sa, _, _ = unstructured.NestedString(d.Object, "spec", "template", "spec", "serviceAccountName")
		for _, a := range c["args"].([]any) {
			if v, ok := strings.CutPrefix(a.(string), "--shard="); ok {
				m.shard = v
				continue
			}
			m.args = append(m.args, a.(string))
		}
		sel, _, _ := unstructured.NestedStringMap(d.Object, "spec", "selector", "matchLabels")
		m.selector = labels.SelectorFromSet(sel)
		pl, _, _ := unstructured.NestedStringMap(d.Object, "spec", "template", "metadata", "labels")
		m.podLabels = pl
		if _, err := sharding.Parse(m.shard); err != nil {
			t.Errorf("Deployment %s: --shard: %v", d.GetName(), err)
		}
		if find(objs, "ServiceAccount", m.sa) == nil {
			t.Errorf("Deployment %s runs as ServiceAccount %q, which the install does not have", d.GetName(), m.sa)
		}
		managers = append(managers, m)
	}
	a, b := managers[0], managers[1]
	if a.shard == b.shard {
		t.Errorf("both Deployments run shard %q", a.shard)
	}
	if a.sa != b.sa || a.image != b.image || !slices.Equal(a.args, b.args) {
		t.Errorf("the shards' managers differ beyond --shard: %+v vs %+v", a, b)
	}
	// Each manager paces only its own calls to Intuned: together they
	// must stay within Intuned's 20 requests per minute per path.
	total := 0
	for _, m := range managers {
		limit := 20 // the flag's default
		for _, arg := range m.args {
			if v, ok := strings.CutPrefix(arg, "--intuned-rate-limit="); ok {
				if limit, err = strconv.Atoi(v); err != nil || limit <= 0 {
					t.Errorf("shard %q: --intuned-rate-limit=%s", m.shard, v)
				}
			}
		}
		total += limit
	}
	if total > 20 {
		t.Errorf("the shards' --intuned-rate-limit add up to %d requests per minute; Intuned allows 20", total)
	}
	if a.selector.Matches(b.podLabels) || b.selector.Matches(a.podLabels) {
		t.Errorf("the Deployments' selectors overlap: %v / %v, Pods %v / %v", a.selector, b.selector, a.podLabels, b.podLabels)
	}
	for _, m := range managers {
		n := 0
		for _, o := range objs {
			sel, ok, _ := unstructured.NestedStringMap(o.Object, "spec", "selector")
			if o.GetKind() == "Service" && ok && labels.SelectorFromSet(sel).Matches(m.podLabels) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("shard %q: %d metrics Services select its Pods; want 1", m.shard, n)
		}
	}

	// The API server accepts every object.
	_, c := startAPIServer(t, assetsDir(t))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	createCRDsAndNamespaces(ctx, t, c, objs)
	for _, o := range objs {
		if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(o.DeepCopy()),
			client.FieldOwner(fieldOwner), client.ForceOwnership, client.DryRunAll); err != nil {
			t.Errorf("%s %s: server-side dry-run apply rejected: %v", o.GetKind(), o.GetName(), err)
		}
	}
}
