package webhookreceiver

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/intuned-operator/intuned-operator/internal/controller/report"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/resources"
)

// resizePollInterval is how often a claim being expanded is looked at
// again. Its status changes also wake the controller (PVCs are watched),
// but a claim the StatefulSet controller did not create lacks our label
// and is not in the cache.
const resizePollInterval = 10 * time.Second

// dataClaim is the SQLite receiver's PersistentVolumeClaim and what the
// controller learnt about its StorageClass.
type dataClaim struct {
	pvc *corev1.PersistentVolumeClaim
	// expansion is "" when the class allows expansion (or could not be
	// read: unknown says why), else why the volume cannot grow; checked is
	// false until the class was looked up.
	expansion string
	unknown   string
	checked   bool
	lookupErr error
}

// dataClaimName is the claim the StatefulSet creates for its only Pod.
func dataClaimName(whr *intunedv1alpha1.WebhookReceiver) string {
	return resources.DataVolumeName + "-" + resources.ChildName(whr) + "-0"
}

// requestedSize is spec.storage.sqlite.size, or the API's default.
func requestedSize(whr *intunedv1alpha1.WebhookReceiver) resource.Quantity {
	if s := whr.Spec.Storage; s != nil && s.SQLite != nil && s.SQLite.Size != nil {
		return *s.SQLite.Size
	}
	return resource.MustParse(intunedv1alpha1.DefaultSQLiteSize)
}

// reconcileVolumeSize expands the SQLite receiver's claim to
// spec.storage.sqlite.size and sets ConditionVolumeResizing.
//
// StatefulSet volumeClaimTemplates are immutable, so the claim itself is
// patched (only ever upwards: the API refuses a smaller size) and the
// StatefulSet keeps its original template (keepVolumeClaimTemplates). A
// claim the StatefulSet creates later (after someone deleted it) starts at
// the template's size and is expanded by the next reconcile.
//
// It runs whether or not the receiver is available: a full volume makes the
// receiver unready, and that is exactly when it must grow.
func (r *Reconciler) reconcileVolumeSize(ctx context.Context, whr *intunedv1alpha1.WebhookReceiver) (*dataClaim, time.Duration, error) {
	var pvc corev1.PersistentVolumeClaim
	found, err := r.getChild(ctx, client.ObjectKey{Namespace: whr.Namespace, Name: dataClaimName(whr)}, &pvc, true)
	if err != nil || !found {
		// No claim yet: the StatefulSet creates it with its Pod, at the
		// template's size.
		return nil, 0, err
	}
	dc := &dataClaim{pvc: &pvc}
	want := requestedSize(whr)
	request := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
	cond := metav1.Condition{Type: intunedv1alpha1.ConditionVolumeResizing, ObservedGeneration: whr.Generation}
	var requeue time.Duration

	if want.Cmp(request) > 0 {
		// The API server only lets a bound claim grow.
		if pvc.Status.Phase != corev1.ClaimBound {
			cond.Status, cond.Reason = metav1.ConditionUnknown, intunedv1alpha1.ReasonVolumeClaimNotBound
			cond.Message = fmt.Sprintf("PVC %s is %s: it is expanded to %s once it is bound to a volume",
				pvc.Name, pvc.Status.Phase, want.String())
			r.setVolumeResizing(whr, cond)
			return dc, resizePollInterval, nil
		}
		if err := r.checkExpansion(ctx, dc); err != nil {
			return dc, 0, err
		}
		if dc.expansion != "" {
			cond.Status, cond.Reason = metav1.ConditionFalse, intunedv1alpha1.ReasonVolumeExpansionNotAllowed
			cond.Message = fmt.Sprintf("spec.storage.sqlite.size is %s but PVC %s stays at %s: %s",
				want.String(), pvc.Name, request.String(), dc.expansion)
			r.setVolumeResizing(whr, cond)
			return dc, 0, nil
		}
		patch := fmt.Sprintf(`{"spec":{"resources":{"requests":{"storage":%q}}}}`, want.String())
		err := r.Patch(ctx, &pvc, client.RawPatch(types.MergePatchType, []byte(patch)))
		if apierrors.IsForbidden(err) {
			// The API server's PersistentVolumeClaimResize admission has the
			// last word (e.g. when the namespaced install cannot read the
			// cluster-scoped StorageClass first).
			cond.Status, cond.Reason = metav1.ConditionFalse, intunedv1alpha1.ReasonVolumeExpansionNotAllowed
			cond.Message = fmt.Sprintf("spec.storage.sqlite.size is %s but the API server refused to expand PVC %s from %s: %v",
				want.String(), pvc.Name, request.String(), err)
			r.setVolumeResizing(whr, cond)
			return dc, 0, nil
		}
		if err != nil {
			return dc, 0, fmt.Errorf("expand PVC %s to %s: %w", pvc.Name, want.String(), err)
		}
		report.Event(r.Recorder, whr, "Normal", "VolumeExpanding", "ExpandVolume", fmt.Sprintf(
			"PVC %s raised from %s to %s (spec.storage.sqlite.size)", pvc.Name, request.String(), want.String()))
		request = want
	}

	capacity := pvc.Status.Capacity[corev1.ResourceStorage]
	if capacity.Cmp(request) >= 0 {
		cond.Status, cond.Reason = metav1.ConditionFalse, intunedv1alpha1.ReasonVolumeAtRequestedSize
		cond.Message = fmt.Sprintf("PVC %s has %s (spec.storage.sqlite.size %s)", pvc.Name, capacity.String(), want.String())
	} else {
		cond.Status, cond.Reason = metav1.ConditionTrue, intunedv1alpha1.ReasonVolumeResizing
		cond.Message = fmt.Sprintf("PVC %s is being expanded: %s requested, %s so far", pvc.Name, request.String(), capacity.String())
		if s := claimResizeState(&pvc); s != "" {
			cond.Message += "; " + s
		}
		requeue = resizePollInterval
	}
	r.setVolumeResizing(whr, cond)
	return dc, requeue, nil
}

// setVolumeResizing sets the condition and records an Event when it starts
// saying something new the user may act on or wait for.
func (r *Reconciler) setVolumeResizing(whr *intunedv1alpha1.WebhookReceiver, cond metav1.Condition) {
	old := meta.FindStatusCondition(whr.Status.Conditions, intunedv1alpha1.ConditionVolumeResizing)
	changed := old == nil || old.Status != cond.Status || old.Reason != cond.Reason
	switch {
	case changed && cond.Reason == intunedv1alpha1.ReasonVolumeExpansionNotAllowed:
		report.Event(r.Recorder, whr, "Warning", "Volume"+cond.Reason, "ExpandVolume", cond.Message)
	case changed && cond.Reason == intunedv1alpha1.ReasonVolumeAtRequestedSize && old != nil &&
		old.Reason == intunedv1alpha1.ReasonVolumeResizing:
		report.Event(r.Recorder, whr, "Normal", "VolumeResized", "ExpandVolume", cond.Message)
	}
	meta.SetStatusCondition(&whr.Status.Conditions, cond)
}

// checkExpansion looks the claim's StorageClass up once per reconcile (from
// the API server: StorageClasses are not cached, and only a resize or a
// nearly full volume needs one) and fills dc.expansion.
func (r *Reconciler) checkExpansion(ctx context.Context, dc *dataClaim) error {
	if dc.checked {
		return dc.lookupErr
	}
	dc.checked = true
	name := className(dc.pvc)
	if name == "" {
		dc.expansion = "the PVC has no StorageClass (a pre-provisioned volume), so Kubernetes cannot expand it"
		return nil
	}
	var sc storagev1.StorageClass
	err := r.APIReader.Get(ctx, client.ObjectKey{Name: name}, &sc)
	switch {
	case apierrors.IsNotFound(err):
		dc.expansion = fmt.Sprintf("StorageClass %s does not exist, so the volume cannot be expanded", name)
	case apierrors.IsForbidden(err):
		// The namespaced install has no rights on cluster-scoped objects.
		dc.unknown = fmt.Sprintf("the operator may not read StorageClass %s", name)
	case err != nil:
		dc.lookupErr = fmt.Errorf("read StorageClass %s: %w", name, err)
	case sc.AllowVolumeExpansion == nil || !*sc.AllowVolumeExpansion:
		dc.expansion = fmt.Sprintf("StorageClass %s does not allow volume expansion (allowVolumeExpansion is not true); "+
			"a cluster admin can set it if the storage driver supports expansion, or back the receiver up and restore into a new one with a larger volume", name)
	}
	return dc.lookupErr
}

func className(pvc *corev1.PersistentVolumeClaim) string {
	if pvc.Spec.StorageClassName == nil {
		return ""
	}
	return *pvc.Spec.StorageClassName
}

// claimResizeState says, in words, what the claim reports about its resize
// (conditions set by the external resizer and the kubelet).
func claimResizeState(pvc *corev1.PersistentVolumeClaim) string {
	var parts []string
	for _, c := range pvc.Status.Conditions {
		if c.Status != corev1.ConditionTrue {
			continue
		}
		var what string
		switch c.Type {
		case corev1.PersistentVolumeClaimResizing:
			what = "the storage driver is expanding the volume"
		case corev1.PersistentVolumeClaimFileSystemResizePending:
			what = "the volume is expanded; the kubelet grows the file system while the receiver Pod runs on the node"
		case corev1.PersistentVolumeClaimControllerResizeError, corev1.PersistentVolumeClaimNodeResizeError:
			what = "resize error"
		default:
			continue
		}
		if c.Message != "" {
			what += " (" + string(c.Type) + ": " + c.Message + ")"
		}
		parts = append(parts, what)
	}
	if len(parts) == 0 {
		return "waiting for the storage driver to start"
	}
	return strings.Join(parts, "; ")
}
