package webhookreceiver

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/intuned-operator/intuned-operator/internal/controller/controllertest"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
)

// receiverMetricsText is what a SQLite receiver's /metrics says about its volume.
func receiverMetricsText(nearFull, full int, free int64) string {
	return fmt.Sprintf("# HELP receiver_store_volume_near_full x\n# TYPE receiver_store_volume_near_full gauge\n"+
		"receiver_store_volume_near_full %d\nreceiver_store_volume_full %d\n"+
		"receiver_store_volume_free_bytes %g\nreceiver_store_volume_capacity_bytes 1.073741824e+09\n"+
		`receiver_deliveries_rejected_total{reason="store_full"} 3`+"\n", nearFull, full, float64(free))
}

// TestWebhookReceiverVolumeNearlyFull: the VolumeNearlyFull condition follows what the receiver's
// /metrics says, a Warning Event marks the volume becoming nearly full or full, and Ready is not
// affected.
func TestWebhookReceiverVolumeNearlyFull(t *testing.T) {
	type answer struct {
		text string
		err  error
	}
	var metrics atomic.Pointer[answer]
	metrics.Store(&answer{text: receiverMetricsText(0, 0, 900<<20)})
	f := newWHRFixture(t, func(r *Reconciler) {
		r.VolumeCheckInterval = 100 * time.Millisecond
		r.ReceiverMetrics = func(_ context.Context, whr *intunedv1alpha1.WebhookReceiver) ([]byte, error) {
			if whr.Name != "vol" {
				return nil, errors.New("unknown receiver")
			}
			a := metrics.Load()
			return []byte(a.text), a.err
		}
	})
	f.receiver("vol", intunedv1alpha1.WebhookReceiverSpec{ExternalURL: "https://vol.example.com/in"})
	f.setStatefulSetReady("vol", 1)
	f.waitReady("vol", metav1.ConditionTrue, intunedv1alpha1.ReasonAvailable)

	steps := []struct {
		name    string
		metrics answer
		status  metav1.ConditionStatus
		reason  string
		message string
	}{
		{"plenty of space", answer{text: receiverMetricsText(0, 0, 900<<20)}, metav1.ConditionFalse, intunedv1alpha1.ReasonVolumeSpaceAvailable, "900 MiB free of 1024 MiB"},
		{"nearly full", answer{text: receiverMetricsText(1, 0, 60<<20)}, metav1.ConditionTrue, intunedv1alpha1.ReasonVolumeNearlyFull, "60 MiB free"},
		{"full", answer{text: receiverMetricsText(1, 1, 10<<20)}, metav1.ConditionTrue, intunedv1alpha1.ReasonVolumeFull, "503 store_full"},
		{"grown", answer{text: receiverMetricsText(0, 0, 2000<<20)}, metav1.ConditionFalse, intunedv1alpha1.ReasonVolumeSpaceAvailable, "2000 MiB free"},
		{"metrics unreachable", answer{err: errors.New("connection refused")}, metav1.ConditionUnknown, intunedv1alpha1.ReasonVolumeMetricsUnreadable, "connection refused"},
		{"not a receiver of this version", answer{text: "up 1\n"}, metav1.ConditionUnknown, intunedv1alpha1.ReasonVolumeMetricsUnreadable, "exports no receiver_store_volume_near_full"},
	}
	for _, s := range steps {
		metrics.Store(&s.metrics)
		f.eventually(func() string {
			c := meta.FindStatusCondition(f.getWHR("vol").Status.Conditions, intunedv1alpha1.ConditionVolumeNearlyFull)
			if c == nil || c.Status != s.status || c.Reason != s.reason || !strings.Contains(c.Message, s.message) {
				return fmt.Sprintf("%s: VolumeNearlyFull = %+v, want %s/%s containing %q", s.name, c, s.status, s.reason, s.message)
			}
			return ""
		})
	}
	f.waitReady("vol", metav1.ConditionTrue, intunedv1alpha1.ReasonAvailable)
	f.eventually(func() string {
		got := map[string]bool{}
		for _, e := range controllertest.Events(f.t, f.ns, "vol") {
			if e.Type == "Warning" {
				got[e.Reason] = true
			}
		}
		if !got["Volume"+intunedv1alpha1.ReasonVolumeNearlyFull] || !got["Volume"+intunedv1alpha1.ReasonVolumeFull] {
			return fmt.Sprintf("warning events %v, want VolumeNearlyFull and VolumeFull", got)
		}
		return ""
	})
}
