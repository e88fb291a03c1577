package webhookreceiver

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/intuned-operator/intuned-operator/internal/controller/report"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/resources"
)

// DefaultVolumeCheckInterval is how often the free space of a ready SQLite receiver is read.
const DefaultVolumeCheckInterval = time.Minute

// receiverMetrics reads a receiver's /metrics through its Service.
func (r *Reconciler) receiverMetrics(ctx context.Context, whr *intunedv1alpha1.WebhookReceiver) ([]byte, error) {
	if r.ReceiverMetrics != nil {
		return r.ReceiverMetrics(ctx, whr)
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	url := resources.ServiceURL(whr) + "/metrics"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, res.Status)
	}
	return io.ReadAll(io.LimitReader(res.Body, 4<<20))
}

func (r *Reconciler) volumeCheckInterval() time.Duration {
	if r.VolumeCheckInterval > 0 {
		return r.VolumeCheckInterval
	}
	return DefaultVolumeCheckInterval
}

// checkVolume sets intunedv1alpha1.ConditionVolumeNearlyFull from the receiver's metrics and emits a Warning Event
// when the volume becomes nearly full or full. A receiver whose metrics cannot be read gets the
// condition Unknown; that never fails the reconcile.
func (r *Reconciler) checkVolume(ctx context.Context, whr *intunedv1alpha1.WebhookReceiver, claim *dataClaim) {
	cond := metav1.Condition{Type: intunedv1alpha1.ConditionVolumeNearlyFull, ObservedGeneration: whr.Generation}
	text, err := r.receiverMetrics(ctx, whr)
	var g map[string]float64
	if err == nil {
		g = gauges(text)
	}
	_, haveNear := g["receiver_store_volume_near_full"]
	switch {
	case err != nil || !haveNear:
		why := "the receiver exports no receiver_store_volume_near_full"
		if err != nil {
			why = err.Error()
		}
		cond.Status, cond.Reason = metav1.ConditionUnknown, intunedv1alpha1.ReasonVolumeMetricsUnreadable
		cond.Message = "cannot read the receiver's /metrics: " + why
	case g["receiver_store_volume_full"] == 1:
		cond.Status, cond.Reason = metav1.ConditionTrue, intunedv1alpha1.ReasonVolumeFull
		cond.Message = "the SQLite volume is full: the receiver refuses deliveries (503 store_full) until it has room; " +
			r.growAdvice(ctx, whr, claim) + "; " + space(g)
	case g["receiver_store_volume_near_full"] == 1:
		cond.Status, cond.Reason = metav1.ConditionTrue, intunedv1alpha1.ReasonVolumeNearlyFull
		cond.Message = "the SQLite volume is nearly full, grow it before deliveries are refused: " +
			r.growAdvice(ctx, whr, claim) + "; " + space(g)
	default:
		cond.Status, cond.Reason = metav1.ConditionFalse, intunedv1alpha1.ReasonVolumeSpaceAvailable
		cond.Message = space(g)
	}
	old := meta.FindStatusCondition(whr.Status.Conditions, intunedv1alpha1.ConditionVolumeNearlyFull)
	if cond.Status == metav1.ConditionTrue && (old == nil || old.Status != cond.Status || old.Reason != cond.Reason) {
		report.Event(r.Recorder, whr, "Warning", "Volume"+cond.Reason, "CheckVolume", cond.Message)
	}
	meta.SetStatusCondition(&whr.Status.Conditions, cond)
}

// growAdvice tells whether raising spec.storage.sqlite.size will grow this
// volume, from the claim and its StorageClass.
func (r *Reconciler) growAdvice(ctx context.Context, whr *intunedv1alpha1.WebhookReceiver, claim *dataClaim) string {
	if claim == nil {
		return "raise spec.storage.sqlite.size"
	}
	pvc := claim.pvc
	request, capacity := pvc.Spec.Resources.Requests[corev1.ResourceStorage], pvc.Status.Capacity[corev1.ResourceStorage]
	if capacity.Cmp(request) < 0 {
		return fmt.Sprintf("PVC %s is being expanded to %s (see the VolumeResizing condition)", pvc.Name, request.String())
	}
	if err := r.checkExpansion(ctx, claim); err != nil {
		return "raise spec.storage.sqlite.size (whether StorageClass " + className(pvc) + " allows expansion is unknown: " + err.Error() + ")"
	}
	if claim.unknown != "" {
		return "raise spec.storage.sqlite.size (" + claim.unknown + ", so whether it allows expansion is unknown)"
	}
	if claim.expansion != "" {
		return "raising spec.storage.sqlite.size will not grow PVC " + pvc.Name + ": " + claim.expansion
	}
	size := requestedSize(whr)
	return fmt.Sprintf("raise spec.storage.sqlite.size (now %s); StorageClass %s allows expansion, so the operator expands PVC %s in place",
		size.String(), className(pvc), pvc.Name)
}

func space(g map[string]float64) string {
	return fmt.Sprintf("%d MiB free of %d MiB", int64(g["receiver_store_volume_free_bytes"])>>20,
		int64(g["receiver_store_volume_capacity_bytes"])>>20)
}

// gauges parses the unlabelled samples of a Prometheus text exposition.
func gauges(text []byte) map[string]float64 {
	out := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(text))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || strings.HasPrefix(f[0], "#") || strings.Contains(f[0], "{") {
			continue
		}
		if v, err := strconv.ParseFloat(f[1], 64); err == nil {
			out[f[0]] = v
		}
	}
	return out
}
