package webhookreceiver

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/intuned-operator/intuned-operator/internal/controller/report"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/resources"
)

// child is one kind of object a WebhookReceiver may own: the object the
// spec wants (nil: none, delete it if we own one) and an empty object of
// that kind to read the current one into.
type child struct {
	want    client.Object
	current client.Object
}

// workloadState is what Ready needs to know about the Deployment or
// StatefulSet.
type workloadState struct {
	kind          string
	found         bool
	ready         bool
	readyReplicas int32
	why           string
	// note is a spec change the workload cannot take (for the Ready message).
	note string
}

func (w workloadState) available() (bool, string) {
	if !w.found {
		return false, fmt.Sprintf("%s not created yet", w.kind)
	}
	return w.ready, w.why
}

// applyChildren applies every child the spec wants and deletes the ones it
// no longer wants (Ingress removed, HPA/PDB/NetworkPolicy disabled, the
// other workload kind after a storage switch). It returns the state of the
// workload as read before this apply (a kubelet, not us, changes it).
func (r *Reconciler) applyChildren(ctx context.Context, whr *intunedv1alpha1.WebhookReceiver) (workloadState, error) {
	deploy := resources.Deployment(whr, r.ReceiverImage)
	sts := resources.StatefulSet(whr, r.ReceiverImage)
	if r.ReadAuthBinding != "" {
		if deploy != nil {
			resources.EnableKubernetesReadAuth(whr, &deploy.Spec.Template)
		}
		if sts != nil {
			resources.EnableKubernetesReadAuth(whr, &sts.Spec.Template)
		}
	}
	children := []child{
		{resources.ServiceAccount(whr), &corev1.ServiceAccount{}},
		{resources.Service(whr), &corev1.Service{}},
		{orNil(deploy), &appsv1.Deployment{}},
		{orNil(sts), &appsv1.StatefulSet{}},
		{orNil(resources.Ingress(whr)), &networkingv1.Ingress{}},
		{orNil(resources.HorizontalPodAutoscaler(whr)), &autoscalingv2.HorizontalPodAutoscaler{}},
		{orNil(resources.PodDisruptionBudget(whr)), &policyv1.PodDisruptionBudget{}},
		{orNil(resources.NetworkPolicy(whr, r.ManagerPods)), &networkingv1.NetworkPolicy{}},
	}
	var ws workloadState
	for _, c := range children {
		key := client.ObjectKey{Namespace: whr.Namespace, Name: resources.ChildName(whr)}
		found, err := r.getChild(ctx, key, c.current, c.want != nil)
		if err != nil {
			return ws, err
		}
		if found && !metav1.IsControlledBy(c.current, whr) {
			if c.want == nil {
				continue // not ours, not wanted: leave it alone
			}
			return ws, conflictError(
				"%s %s already exists and is not owned by this WebhookReceiver; rename or delete it",
				kindOf(c.want), key.Name)
		}
		switch {
		case c.want == nil && found:
			if err := r.Delete(ctx, c.current, client.Preconditions{UID: ptrUID(c.current)}); client.IgnoreNotFound(err) != nil {
				return ws, fmt.Errorf("delete %T %s: %w", c.current, key.Name, err)
			}
			logf.FromContext(ctx).Info("deleted child the spec no longer needs", "kind", fmt.Sprintf("%T", c.current), "name", key.Name)
			continue
		case c.want == nil:
			continue
		}
		var volumeNote string
		if s, ok := c.want.(*appsv1.StatefulSet); ok && found && keepVolumeClaimTemplates(s, c.current.(*appsv1.StatefulSet)) {
			volumeNote = fmt.Sprintf("a changed spec.storage.sqlite.storageClassName does not reach the existing volume "+
				"(a claim's class is immutable): move the data to a new receiver (backup and restore), or put the old class back; PVC %s keeps its class",
				dataClaimName(whr))
		}
		if whr.Spec.Autoscaling != nil && found {
			if err := r.handOffReplicas(ctx, c.current); err != nil {
				return ws, err
			}
		}
		if err := r.apply(ctx, c.want); err != nil {
			return ws, err
		}
		switch cur := c.current.(type) {
		case *appsv1.Deployment:
			ws = deploymentState(cur, found)
		case *appsv1.StatefulSet:
			ws = statefulSetState(cur, found)
			ws.note = volumeNote
		}
	}
	return ws, nil
}

// getChild reads a child into obj and reports whether it exists. The cache
// holds only objects with our managed-by label (CacheOptions), so when it
// has none and we are about to create one, the API server confirms: an
// object someone else made under that name (or ours, its label removed)
// must be seen, not taken over by the apply.
func (r *Reconciler) getChild(ctx context.Context, key client.ObjectKey, obj client.Object, wanted bool) (bool, error) {
	err := r.Get(ctx, key, obj)
	if apierrors.IsNotFound(err) && wanted {
		err = r.APIReader.Get(ctx, key, obj)
	}
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	return err == nil, err
}

// apply server-side applies obj with our field manager. ForceOwnership
// takes back fields someone else changed that we own (the spec is the
// source of truth for them); fields we never set stay with their owners.
func (r *Reconciler) apply(ctx context.Context, obj runtime.Object) error {
	u, err := resources.ForApply(obj)
	if err != nil {
		return err
	}
	if err := r.Apply(ctx, client.ApplyConfigurationFromUnstructured(u),
		client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
		return fmt.Errorf("apply %s %s: %w", u.GetKind(), u.GetName(), err)
	}
	return nil
}

// keepVolumeClaimTemplates copies size and class from the existing
// StatefulSet: volumeClaimTemplates are immutable, and applying a change
// would fail every reconcile. A larger size reaches the volume by another
// way (reconcileVolumeSize patches the claim itself), so the template keeps
// the size the claim was created with. It reports whether the spec asked
// for another StorageClass, which nothing can apply to an existing claim.
func keepVolumeClaimTemplates(want, have *appsv1.StatefulSet) (classDiffers bool) {
	if len(have.Spec.VolumeClaimTemplates) == 0 || len(want.Spec.VolumeClaimTemplates) == 0 {
		return false
	}
	w, h := &want.Spec.VolumeClaimTemplates[0].Spec, have.Spec.VolumeClaimTemplates[0].Spec
	classDiffers = w.StorageClassName != nil && (h.StorageClassName == nil || *w.StorageClassName != *h.StorageClassName)
	w.Resources.Requests = h.Resources.Requests.DeepCopy()
	w.StorageClassName = h.StorageClassName
	return classDiffers
}

func deploymentState(d *appsv1.Deployment, found bool) workloadState {
	ws := workloadState{kind: "Deployment", found: found, readyReplicas: d.Status.ReadyReplicas}
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentAvailable {
			ws.ready = c.Status == corev1.ConditionTrue
			ws.why = fmt.Sprintf("Deployment %s is not available: %s", d.Name, c.Message)
		}
	}
	if ws.why == "" {
		ws.why = fmt.Sprintf("Deployment %s has no Available condition yet", d.Name)
	}
	if found && d.Spec.Replicas != nil && *d.Spec.Replicas == 0 {
		ws.ready, ws.why = false, fmt.Sprintf("Deployment %s is scaled to 0 replicas", d.Name)
	}
	return ws
}

func statefulSetState(s *appsv1.StatefulSet, found bool) workloadState {
	ws := workloadState{kind: "StatefulSet", found: found, readyReplicas: s.Status.ReadyReplicas}
	ws.ready = s.Status.ReadyReplicas >= 1
	ws.why = fmt.Sprintf("StatefulSet %s has %d ready Pod(s)", s.Name, s.Status.ReadyReplicas)
	if found && s.Spec.Replicas != nil && *s.Spec.Replicas == 0 {
		ws.ready, ws.why = false, fmt.Sprintf("StatefulSet %s is scaled to 0 replicas", s.Name)
	}
	return ws
}

// currentIngress returns our Ingress as the cache has it (its status
// carries the load-balancer address), or nil.
func (r *Reconciler) currentIngress(ctx context.Context, whr *intunedv1alpha1.WebhookReceiver) (*networkingv1.Ingress, error) {
	if whr.Spec.Ingress == nil {
		return nil, nil
	}
	var ing networkingv1.Ingress
	err := r.Get(ctx, client.ObjectKey{Namespace: whr.Namespace, Name: resources.ChildName(whr)}, &ing)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	return &ing, err
}

// orNil turns a typed nil pointer into a nil interface.
func orNil[T any, P interface {
	*T
	client.Object
}](p P) client.Object {
	if p == nil {
		return nil
	}
	return p
}

func kindOf(o client.Object) string {
	if k := o.GetObjectKind().GroupVersionKind().Kind; k != "" {
		return k
	}
	return fmt.Sprintf("%T", o)
}

func ptrUID(o client.Object) *types.UID {
	uid := o.GetUID()
	return &uid
}

// conflictError reports a child name taken by an object we do not own. It
// is retried with back-off: nothing we watch tells us when it is gone.
func conflictError(format string, args ...any) error {
	f := report.Stalled(intunedv1alpha1.ReasonResourceConflict, fmt.Sprintf(format, args...))
	f.Backoff = true
	return f
}

// replicasHandoffOwner co-owns spec.replicas while an HPA takes over.
const replicasHandoffOwner = FieldOwner + "-replicas-handoff"

// handOffReplicas runs when autoscaling is on and we still own the
// workload's spec.replicas (autoscaling was just enabled). Simply leaving
// replicas out of our apply would delete the field — it would fall back to
// 1 until the HPA scales again. Instead, a second field manager first
// applies the current value, so the field has another owner when ours
// drops out; the HPA's first scale then takes it over.
func (r *Reconciler) handOffReplicas(ctx context.Context, current client.Object) error {
	var replicas *int32
	switch w := current.(type) {
	case *appsv1.Deployment:
		replicas = w.Spec.Replicas
	case *appsv1.StatefulSet:
		replicas = w.Spec.Replicas
	default:
		return nil
	}
	if replicas == nil || !managesField(current, FieldOwner, "f:spec", "f:replicas") {
		return nil
	}
	gvk, err := r.GroupVersionKindFor(current)
	if err != nil {
		return err
	}
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(gvk)
	u.SetName(current.GetName())
	u.SetNamespace(current.GetNamespace())
	if err := unstructured.SetNestedField(u.Object, int64(*replicas), "spec", "replicas"); err != nil {
		return err
	}
	if err := r.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(replicasHandoffOwner)); err != nil {
		return fmt.Errorf("hand spec.replicas of %s over to the HPA: %w", current.GetName(), err)
	}
	return nil
}

// managesField reports whether manager's apply entry in managedFields
// covers the field at path (e.g. "f:spec", "f:replicas").
func managesField(obj client.Object, manager string, path ...string) bool {
	for _, mf := range obj.GetManagedFields() {
		if mf.Manager != manager || mf.Operation != metav1.ManagedFieldsOperationApply || mf.FieldsV1 == nil {
			continue
		}
		var fields map[string]any
		if err := json.Unmarshal(mf.FieldsV1.Raw, &fields); err != nil {
			continue
		}
		node := fields
		for i, p := range path {
			next, ok := node[p].(map[string]any)
			if !ok {
				break
			}
			if i == len(path)-1 {
				return true
			}
			node = next
		}
	}
	return false
}
