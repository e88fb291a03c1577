package webhookreceiver

import (
	"fmt"
	"maps"
	"slices"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/controller/sharding"
)

// TestWebhookReceiverShards runs the default shard and shard b: each
// receiver is reconciled by its own shard (its status is written by that
// shard's field manager only) and its children carry its shard label, so
// each shard caches only its own. A receiver moved to another shard gets
// its children relabelled by the new shard, without a change to the
// StatefulSet's spec (no Pod restart, no immutable field touched).
func TestWebhookReceiverShards(t *testing.T) {
	b, err := sharding.Parse("b")
	if err != nil {
		t.Fatal(err)
	}
	f := newWHRFixtureShards(t, []sharding.Shard{sharding.Default, b})
	spec := func(host string) intunedv1alpha1.WebhookReceiverSpec {
		return intunedv1alpha1.WebhookReceiverSpec{Ingress: &intunedv1alpha1.ReceiverIngress{Host: host, ClassName: ptr.To("nginx")}}
	}
	f.create(&intunedv1alpha1.WebhookReceiver{
		ObjectMeta: metav1.ObjectMeta{Name: "hooks-b", Labels: map[string]string{sharding.Label: "b"}},
		Spec:       spec("b.example.com"),
	})
	f.receiver("hooks-default", spec("d.example.com"))
	for _, name := range []string{"hooks-b", "hooks-default"} {
		f.setStatefulSetReady(name, 1)
		f.waitReady(name, metav1.ConditionTrue, intunedv1alpha1.ReasonAvailable)
	}

	children := func(name string) []client.Object {
		objs := []client.Object{&corev1.ServiceAccount{}, &corev1.Service{}, &appsv1.StatefulSet{}, &networkingv1.Ingress{}}
		for _, o := range objs {
			f.waitExists(name, o)
		}
		return objs
	}
	wantShard := func(name, shard string) {
		t.Helper()
		f.eventually(func() string {
			for _, o := range children(name) {
				if got, ok := o.GetLabels()[sharding.Label]; got != shard || ok != (shard != "") {
					return fmt.Sprintf("%T %s has labels %v; want shard %q", o, name, o.GetLabels(), shard)
				}
			}
			return ""
		})
	}
	wantShard("hooks-b", "b")
	wantShard("hooks-default", "")
	for name, byB := range map[string]bool{"hooks-b": true, "hooks-default": false} {
		w := f.getWHR(name)
		var writers []string
		for _, m := range w.ManagedFields {
			if m.Subresource == "status" {
				writers = append(writers, m.Manager)
			}
		}
		if slices.Contains(writers, b.FieldOwner()) != byB || len(writers) != 1 {
			t.Errorf("%s: status written by %v", name, writers)
		}
	}

	var before appsv1.StatefulSet
	f.waitExists("hooks-b", &before)
	w := f.getWHR("hooks-b")
	f.update(w, func() { delete(w.Labels, sharding.Label) }) // to the default shard
	wantShard("hooks-b", "")
	var after appsv1.StatefulSet
	f.waitExists("hooks-b", &after)
	if after.Generation != before.Generation || !maps.Equal(after.Spec.Template.Labels, before.Spec.Template.Labels) {
		t.Errorf("moving the receiver changed its StatefulSet: generation %d -> %d, Pod labels %v -> %v",
			before.Generation, after.Generation, before.Spec.Template.Labels, after.Spec.Template.Labels)
	}
	f.waitReady("hooks-b", metav1.ConditionTrue, intunedv1alpha1.ReasonAvailable)
}
