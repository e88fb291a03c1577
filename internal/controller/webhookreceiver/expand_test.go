package webhookreceiver

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/intuned-operator/intuned-operator/internal/controller/controllertest"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
)

// storageClass creates a cluster-scoped StorageClass for this test only.
func (f *whrFixture) storageClass(name string, expandable bool) string {
	f.t.Helper()
	sc := &storagev1.StorageClass{
		ObjectMeta:           metav1.ObjectMeta{Name: name + "-" + f.ns},
		Provisioner:          "example.com/test",
		AllowVolumeExpansion: ptr.To(expandable),
	}
	if err := controllertest.Client().Create(f.ctx, sc); err != nil {
		f.t.Fatalf("create StorageClass: %v", err)
	}
	f.t.Cleanup(func() { _ = controllertest.Client().Delete(context.Background(), sc) })
	return sc.Name
}

// dataClaim does what the StatefulSet controller and a provisioner would
// (envtest runs neither): it creates the receiver's claim from the
// StatefulSet's volumeClaimTemplate and, when bound, binds it at its
// requested size.
func (f *whrFixture) dataClaim(whr string, bound bool) *corev1.PersistentVolumeClaim {
	f.t.Helper()
	var sts appsv1.StatefulSet
	f.waitExists(whr, &sts)
	tmpl := sts.Spec.VolumeClaimTemplates[0]
	labels := maps.Clone(tmpl.Labels)
	maps.Copy(labels, sts.Spec.Selector.MatchLabels)
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: tmpl.Name + "-" + whr + "-0", Labels: labels},
		Spec:       *tmpl.Spec.DeepCopy(),
	}
	f.create(pvc)
	if bound {
		f.bindClaim(pvc)
	}
	return pvc
}

// bindClaim marks the claim Bound with its requested size as capacity.
func (f *whrFixture) bindClaim(pvc *corev1.PersistentVolumeClaim) {
	f.updateStatus(pvc, func() {
		pvc.Status.Phase = corev1.ClaimBound
		pvc.Status.AccessModes = pvc.Spec.AccessModes
		pvc.Status.Capacity = corev1.ResourceList{corev1.ResourceStorage: *pvc.Spec.Resources.Requests.Storage()}
	})
}

func (f *whrFixture) waitVolumeResizing(name string, status metav1.ConditionStatus, reason, message string) {
	f.t.Helper()
	f.eventually(func() string {
		c := meta.FindStatusCondition(f.getWHR(name).Status.Conditions, intunedv1alpha1.ConditionVolumeResizing)
		if c == nil || c.Status != status || c.Reason != reason || !strings.Contains(c.Message, message) {
			return fmt.Sprintf("VolumeResizing = %+v, want %s/%s containing %q", c, status, reason, message)
		}
		return ""
	})
}

func sqliteStorage(size, class string) *intunedv1alpha1.ReceiverStorage {
	return &intunedv1alpha1.ReceiverStorage{SQLite: &intunedv1alpha1.SQLiteStorage{
		Size: ptr.To(resource.MustParse(size)), StorageClassName: ptr.To(class)}}
}

// TestWebhookReceiverVolumeGrows: raising spec.storage.sqlite.size patches
// the data claim (never the immutable StatefulSet template) when its class
// allows expansion, VolumeResizing follows the claim's capacity, and a class
// that does not allow expansion (or a claim not bound yet) is reported, not
// patched. VolumeNearlyFull's advice says which of the two the volume is.
func TestWebhookReceiverVolumeGrows(t *testing.T) {
	f := newWHRFixture(t, func(r *Reconciler) {
		r.VolumeCheckInterval = 100 * time.Millisecond
		r.ReceiverMetrics = func(context.Context, *intunedv1alpha1.WebhookReceiver) ([]byte, error) {
			return []byte(receiverMetricsText(1, 0, 60<<20)), nil
		}
	})
	expandable, fixed := f.storageClass("expandable", true), f.storageClass("fixed", false)

	whr := f.receiver("grow", intunedv1alpha1.WebhookReceiverSpec{
		ExternalURL: "https://grow.example.com/in", Storage: sqliteStorage("1Gi", expandable)})
	pvc := f.dataClaim("grow", true)
	f.setStatefulSetReady("grow", 1)
	f.waitVolumeResizing("grow", metav1.ConditionFalse, intunedv1alpha1.ReasonVolumeAtRequestedSize, "PVC data-grow-0 has 1Gi")
	f.eventually(func() string {
		c := meta.FindStatusCondition(f.getWHR("grow").Status.Conditions, intunedv1alpha1.ConditionVolumeNearlyFull)
		if c == nil || !strings.Contains(c.Message, "StorageClass "+expandable+" allows expansion") {
			return fmt.Sprintf("VolumeNearlyFull = %+v, want advice that the class allows expansion", c)
		}
		return ""
	})

	f.update(whr, func() { whr.Spec.Storage.SQLite.Size = ptr.To(resource.MustParse("2Gi")) })
	f.waitVolumeResizing("grow", metav1.ConditionTrue, intunedv1alpha1.ReasonVolumeResizing, "2Gi requested, 1Gi so far")
	if err := f.get(pvc.Name, pvc); err != nil || pvc.Spec.Resources.Requests.Storage().String() != "2Gi" {
		t.Fatalf("PVC request %v (err %v), want 2Gi", pvc.Spec.Resources.Requests, err)
	}
	// What the external resizer reports while it works.
	f.updateStatus(pvc, func() {
		pvc.Status.Conditions = []corev1.PersistentVolumeClaimCondition{{
			Type: corev1.PersistentVolumeClaimFileSystemResizePending, Status: corev1.ConditionTrue,
			Message: "Waiting for user to (re-)start a pod to finish file system resize of volume on node."}}
	})
	f.waitVolumeResizing("grow", metav1.ConditionTrue, intunedv1alpha1.ReasonVolumeResizing, "the kubelet grows the file system")
	f.eventually(func() string {
		c := meta.FindStatusCondition(f.getWHR("grow").Status.Conditions, intunedv1alpha1.ConditionVolumeNearlyFull)
		if c == nil || !strings.Contains(c.Message, "PVC data-grow-0 is being expanded to 2Gi") {
			return fmt.Sprintf("VolumeNearlyFull = %+v, want it to point at the resize in progress", c)
		}
		return ""
	})
	f.updateStatus(pvc, func() {
		pvc.Status.Conditions = nil
		pvc.Status.Capacity = corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("2Gi")}
	})
	f.waitVolumeResizing("grow", metav1.ConditionFalse, intunedv1alpha1.ReasonVolumeAtRequestedSize, "PVC data-grow-0 has 2Gi")
	var sts appsv1.StatefulSet
	if err := f.get("grow", &sts); err != nil || sts.Spec.VolumeClaimTemplates[0].Spec.Resources.Requests.Storage().String() != "1Gi" {
		t.Errorf("StatefulSet volume template changed (err %v): it is immutable", err)
	}
	f.waitReady("grow", metav1.ConditionTrue, intunedv1alpha1.ReasonAvailable)

	// A class without allowVolumeExpansion; the claim is not bound at first.
	whr = f.receiver("fixed", intunedv1alpha1.WebhookReceiverSpec{
		ExternalURL: "https://fixed.example.com/in", Storage: sqliteStorage("1Gi", fixed)})
	pvc = f.dataClaim("fixed", false)
	f.setStatefulSetReady("fixed", 1)
	f.update(whr, func() { whr.Spec.Storage.SQLite.Size = ptr.To(resource.MustParse("3Gi")) })
	f.waitVolumeResizing("fixed", metav1.ConditionUnknown, intunedv1alpha1.ReasonVolumeClaimNotBound, "expanded to 3Gi once it is bound")
	f.bindClaim(pvc)
	f.waitVolumeResizing("fixed", metav1.ConditionFalse, intunedv1alpha1.ReasonVolumeExpansionNotAllowed,
		"StorageClass "+fixed+" does not allow volume expansion")
	f.eventually(func() string {
		c := meta.FindStatusCondition(f.getWHR("fixed").Status.Conditions, intunedv1alpha1.ConditionVolumeNearlyFull)
		if c == nil || !strings.Contains(c.Message, "raising spec.storage.sqlite.size will not grow PVC data-fixed-0") {
			return fmt.Sprintf("VolumeNearlyFull = %+v, want advice that the class does not allow expansion", c)
		}
		return ""
	})
	if err := f.get(pvc.Name, pvc); err != nil || pvc.Spec.Resources.Requests.Storage().String() != "1Gi" {
		t.Errorf("PVC of a class without expansion was patched: %v (err %v)", pvc.Spec.Resources.Requests, err)
	}

	for name, reasons := range map[string][]string{
		"grow":  {"VolumeExpanding", "VolumeResized"},
		"fixed": {"Volume" + intunedv1alpha1.ReasonVolumeExpansionNotAllowed},
	} {
		f.eventually(func() string {
			for _, reason := range reasons {
				if !controllertest.HasEvent(t, f.ns, name, reason) {
					return fmt.Sprintf("no %s Event for %s", reason, name)
				}
			}
			return ""
		})
	}
}
