package kcluster

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Provisioner hands out node-local directories as `local` PersistentVolumes
// for claims of its StorageClass, and removes them when a claim is deleted.
// A `local` PV (unlike hostPath) honours the Pod's fsGroup, so a non-root
// Pod can write to it. The StorageClass binds WaitForFirstConsumer, so a
// claim is provisioned once the scheduler has picked the node.
//
// It also expands volumes, as external-resizer does for a CSI driver whose
// volumes need a node-side step: when a bound claim asks for more than its
// PV holds, the PV's capacity is raised and the claim marked
// FileSystemResizePending (allocatedResourceStatuses NodeResizePending).
// The kubelet then runs the `local` plugin's NodeExpand for the mounted
// volume and writes the new size into the claim's status.capacity, clearing
// the marks. The directories have no size of their own (they share the
// node's disk), so there is nothing to grow on disk: the capacity is the
// bookkeeping Kubernetes and the operator see.
//
// It polls instead of watching: a test cluster has a handful of claims, and a
// loop that lists them is easy to follow and cannot miss an event.
type Provisioner struct {
	Client   kubernetes.Interface
	Name     string // provisioner name in the StorageClass
	Dir      string // where volume directories are made
	Node     string // the node every volume belongs to
	Interval time.Duration
	Log      *slog.Logger
}

const (
	annProvisionedBy    = "pv.kubernetes.io/provisioned-by"
	annStorageProvision = "volume.kubernetes.io/storage-provisioner"
	annSelectedNode     = "volume.kubernetes.io/selected-node"
)

// Run provisions and deletes volumes until ctx ends.
func (p *Provisioner) Run(ctx context.Context) error {
	if p.Interval == 0 {
		p.Interval = 500 * time.Millisecond
	}
	t := time.NewTicker(p.Interval)
	defer t.Stop()
	for {
		if err := p.provision(ctx); err != nil {
			p.Log.Error("provision", "err", err)
		}
		if err := p.expand(ctx); err != nil {
			p.Log.Error("expand", "err", err)
		}
		if err := p.reclaim(ctx); err != nil {
			p.Log.Error("reclaim", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (p *Provisioner) provision(ctx context.Context) error {
	claims, err := p.Client.CoreV1().PersistentVolumeClaims("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for i := range claims.Items {
		pvc := &claims.Items[i]
		if pvc.Status.Phase != corev1.ClaimPending || pvc.Spec.VolumeName != "" ||
			pvc.Annotations[annStorageProvision] != p.Name || pvc.Annotations[annSelectedNode] == "" {
			continue
		}
		if err := p.provisionOne(ctx, pvc); err != nil {
			p.Log.Error("provision claim", "namespace", pvc.Namespace, "claim", pvc.Name, "err", err)
		}
	}
	return nil
}

func (p *Provisioner) provisionOne(ctx context.Context, pvc *corev1.PersistentVolumeClaim) error {
	name := "pvc-" + string(pvc.UID)
	dir := filepath.Join(p.Dir, name)
	// 0777: the Pod's fsGroup takes the directory over when it is mounted.
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		return err
	}
	size := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
	class := ""
	if pvc.Spec.StorageClassName != nil {
		class = *pvc.Spec.StorageClassName
	}
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{annProvisionedBy: p.Name}},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: size},
			AccessModes:                   pvc.Spec.AccessModes,
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimDelete,
			StorageClassName:              class,
			VolumeMode:                    pvc.Spec.VolumeMode,
			ClaimRef: &corev1.ObjectReference{
				Kind: "PersistentVolumeClaim", APIVersion: "v1",
				Namespace: pvc.Namespace, Name: pvc.Name, UID: pvc.UID,
			},
			PersistentVolumeSource: corev1.PersistentVolumeSource{Local: &corev1.LocalVolumeSource{Path: dir}},
			NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
				MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "kubernetes.io/hostname", Operator: corev1.NodeSelectorOpIn, Values: []string{p.Node}}},
			}}}},
		},
	}
	_, err := p.Client.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	if err == nil {
		p.Log.Info("provisioned", "namespace", pvc.Namespace, "claim", pvc.Name, "volume", name, "path", dir)
	}
	return err
}

// expand raises the PV of every bound claim of ours whose request exceeds
// the PV's capacity, and hands the rest to the kubelet.
func (p *Provisioner) expand(ctx context.Context) error {
	claims, err := p.Client.CoreV1().PersistentVolumeClaims("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for i := range claims.Items {
		pvc := &claims.Items[i]
		if pvc.Status.Phase != corev1.ClaimBound || pvc.Spec.VolumeName == "" || pvc.Annotations[annStorageProvision] != p.Name {
			continue
		}
		if err := p.expandOne(ctx, pvc); err != nil {
			p.Log.Error("expand claim", "namespace", pvc.Namespace, "claim", pvc.Name, "err", err)
		}
	}
	return nil
}

func (p *Provisioner) expandOne(ctx context.Context, pvc *corev1.PersistentVolumeClaim) error {
	want := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
	pv, err := p.Client.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if pv.Annotations[annProvisionedBy] != p.Name {
		return nil
	}
	if have := pv.Spec.Capacity[corev1.ResourceStorage]; want.Cmp(have) <= 0 {
		return nil
	}
	// The controller side of a resize: the volume now holds the new size.
	pv.Spec.Capacity = corev1.ResourceList{corev1.ResourceStorage: want}
	if _, err := p.Client.CoreV1().PersistentVolumes().Update(ctx, pv, metav1.UpdateOptions{}); err != nil {
		return err
	}
	// What is left is the node side, as external-resizer marks it.
	pvc.Status.AllocatedResources = corev1.ResourceList{corev1.ResourceStorage: want}
	pvc.Status.AllocatedResourceStatuses = map[corev1.ResourceName]corev1.ClaimResourceStatus{
		corev1.ResourceStorage: corev1.PersistentVolumeClaimNodeResizePending,
	}
	pvc.Status.Conditions = []corev1.PersistentVolumeClaimCondition{{
		Type: corev1.PersistentVolumeClaimFileSystemResizePending, Status: corev1.ConditionTrue,
		LastTransitionTime: metav1.Now(),
		Message:            "Waiting for user to (re-)start a pod to finish file system resize of volume on node.",
	}}
	if _, err := p.Client.CoreV1().PersistentVolumeClaims(pvc.Namespace).UpdateStatus(ctx, pvc, metav1.UpdateOptions{}); err != nil {
		return err
	}
	p.Log.Info("expanded", "namespace", pvc.Namespace, "claim", pvc.Name, "volume", pv.Name, "size", want.String())
	return nil
}

// reclaim deletes the directory and the PV of every released volume we made.
func (p *Provisioner) reclaim(ctx context.Context) error {
	pvs, err := p.Client.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for i := range pvs.Items {
		pv := &pvs.Items[i]
		if pv.Annotations[annProvisionedBy] != p.Name || pv.Status.Phase != corev1.VolumeReleased ||
			pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimDelete || pv.Spec.Local == nil {
			continue
		}
		if filepath.Dir(pv.Spec.Local.Path) != filepath.Clean(p.Dir) {
			return fmt.Errorf("volume %s: path %s is not under %s; not deleting it", pv.Name, pv.Spec.Local.Path, p.Dir)
		}
		if err := os.RemoveAll(pv.Spec.Local.Path); err != nil {
			return err
		}
		if err := p.Client.CoreV1().PersistentVolumes().Delete(ctx, pv.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
		p.Log.Info("deleted", "volume", pv.Name)
	}
	return nil
}
