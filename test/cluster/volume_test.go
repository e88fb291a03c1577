package cluster

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/testutil/flow"
	"github.com/intuned-operator/intuned-operator/internal/testutil/poll"
	"github.com/intuned-operator/intuned-operator/internal/testutil/scenarios"
)

// TestVolumeGrows: raising a SQLite receiver's spec.storage.sqlite.size on a
// real node expands its PVC while the receiver runs: the operator patches
// the claim, the cluster's provisioner grows the PV (as external-resizer
// would), the kubelet finishes the resize on the mounted volume and writes
// the claim's capacity, VolumeResizing ends AtRequestedSize, and the receiver
// keeps its data and stores the next run. Lowering the size is refused.
// The receiver also runs with spec.settings and a podTemplate env, which
// reach its container and which it accepts.
func TestVolumeGrows(t *testing.T) {
	ctx := scenarios.Context(t, 6*time.Minute)
	p := scenarios.NewPair(t, ctx, &env, "volume-grows", func(s *flow.Samples) {
		s.Receiver.Spec.Settings = &intunedv1alpha1.ReceiverSettings{
			MaxBodyBytes: ptr.To(resource.MustParse("4Mi")),
			Deadline:     &metav1.Duration{Duration: 3 * time.Second},
			LogLevel:     "debug",
		}
		s.Receiver.Spec.PodTemplate = &intunedv1alpha1.ReceiverPodTemplate{Env: []corev1.EnvVar{{Name: "TZ", Value: "UTC"}}}
	})
	p.WaitReady(ctx)
	pods, err := env.receiverPods(ctx, p.NS, p.Receiver)
	if err != nil || len(pods) != 1 {
		t.Fatalf("receiver Pods %d (err %v), want 1", len(pods), err)
	}
	pod := pods[0]
	c := pod.Spec.Containers[0]
	if args := strings.Join(c.Args, " "); !strings.Contains(args, "--max-body-bytes=4194304 --deadline=3s --log-level=debug") ||
		len(c.Env) != 1 || c.Env[0].Name != "TZ" {
		t.Errorf("settings did not reach the receiver Pod: args %q env %v", args, c.Env)
	}
	p.Trigger(ctx, "1")
	p.WaitAllDelivered(ctx, flow.QuickstartDeliveries)

	whr := &intunedv1alpha1.WebhookReceiver{ObjectMeta: metav1.ObjectMeta{Namespace: p.NS, Name: p.Receiver}}
	grow := client.RawPatch("application/merge-patch+json", []byte(`{"spec":{"storage":{"sqlite":{"size":"2Gi"}}}}`))
	if err := env.kubeClient.Patch(ctx, whr, grow); err != nil {
		t.Fatal(err)
	}
	claim := client.ObjectKey{Namespace: p.NS, Name: volumeClaim(&pod)}
	seen := map[string]bool{}
	err = poll.Eventually(ctx, 250*time.Millisecond, "PVC expanded and VolumeResizing AtRequestedSize", func(ctx context.Context) (bool, error) {
		var pvc corev1.PersistentVolumeClaim
		if err := env.kubeClient.Get(ctx, claim, &pvc); err != nil {
			return false, err
		}
		if err := env.kubeClient.Get(ctx, client.ObjectKeyFromObject(whr), whr); err != nil {
			return false, err
		}
		cond := meta.FindStatusCondition(whr.Status.Conditions, intunedv1alpha1.ConditionVolumeResizing)
		if cond != nil {
			seen[string(cond.Status)+"/"+cond.Reason] = true
		}
		capacity := pvc.Status.Capacity[corev1.ResourceStorage]
		done := capacity.Cmp(resource.MustParse("2Gi")) == 0 && cond != nil && cond.Reason == intunedv1alpha1.ReasonVolumeAtRequestedSize &&
			strings.Contains(cond.Message, "has 2Gi")
		return done, fmt.Errorf("PVC request %s capacity %s conditions %v; VolumeResizing %+v",
			pvc.Spec.Resources.Requests.Storage(), capacity.String(), pvc.Status.Conditions, cond)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("VolumeResizing states seen: %v", seen)

	// The data survived and the receiver serves the next run.
	if got, err := p.RC.List(ctx, p.Job, ""); err != nil || len(got) != flow.QuickstartDeliveries {
		t.Fatalf("after the resize the receiver lists %d deliveries (err %v), want %d", len(got), err, flow.QuickstartDeliveries)
	}
	p.Trigger(ctx, "2")
	p.WaitAllDelivered(ctx, 2*flow.QuickstartDeliveries)
	if pods, err := env.receiverPods(ctx, p.NS, p.Receiver); err == nil && len(pods) == 1 {
		t.Logf("receiver Pod restarted for the resize: %v (online expansion keeps the same Pod)", pods[0].UID != pod.UID)
	}

	shrink := client.RawPatch("application/merge-patch+json", []byte(`{"spec":{"storage":{"sqlite":{"size":"1Gi"}}}}`))
	if err := env.kubeClient.Patch(ctx, whr, shrink); err == nil || !strings.Contains(err.Error(), "cannot be lowered") {
		t.Errorf("lowering the size: got %v, want a refusal saying it cannot be lowered", err)
	}
}
