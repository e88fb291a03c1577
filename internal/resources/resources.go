// Package resources builds the Kubernetes objects a WebhookReceiver owns:
// ServiceAccount, token Secret, Deployment or StatefulSet, Service, Ingress,
// HorizontalPodAutoscaler, PodDisruptionBudget and NetworkPolicy.
//
// Every builder is a pure function of the WebhookReceiver (plus values the
// caller looked up, such as tokens or the default image): no API calls, no
// clock, no randomness. That keeps them golden-testable and lets the
// controller decide what to apply, keep or delete. A builder returns nil when
// the spec does not ask for that child.
package resources

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/intuned-operator/intuned-operator/api/v1alpha1"
)

// DefaultReceiverImage is used when neither spec.image nor the manager's
// --receiver-image is set. The image holds /manager, /receiver and
// /intuned-sim; receiver Pods run /receiver.
const DefaultReceiverImage = "ghcr.io/intuned-operator/intuned-operator:latest"

// Labels every child carries. The selector uses only LabelName and
// LabelInstance: selectors are immutable, so they must never change.
const (
	LabelName      = "app.kubernetes.io/name"
	LabelInstance  = "app.kubernetes.io/instance"
	LabelManagedBy = "app.kubernetes.io/managed-by"

	// AppName is the value of LabelName.
	AppName = "intuned-receiver"
	// ManagedBy is the value of LabelManagedBy (and the SSA field manager).
	ManagedBy = "intuned-operator"
)

// The Pod contract: where the receiver listens and where its files are.
const (
	// ContainerName of the receiver container.
	ContainerName = "receiver"
	// ReceiverCommand is the receiver binary inside the image.
	ReceiverCommand = "/receiver"
	// HTTPPort serves every endpoint (ingest, read API, probes, metrics).
	HTTPPort int32 = 8080
	// HTTPPortName names the container and Service port.
	HTTPPortName = "http"

	// TokenDir is where the token Secret is mounted (whole Secret, not
	// subPath, so kubelet updates the files when the Secret changes).
	TokenDir = "/etc/intuned-receiver/token"
	// PostgresDSNDir holds the DSN file (key "dsn") for postgres storage.
	PostgresDSNDir = "/etc/intuned-receiver/postgres"
	// PostgresDSNFile is the DSN file name inside PostgresDSNDir.
	PostgresDSNFile = "dsn"
	// DataDir is the SQLite volume mount.
	DataDir = "/var/lib/intuned-receiver"
	// SQLiteFile is the database file inside DataDir.
	SQLiteFile = "receiver.db"
	// TmpDir is a writable emptyDir: the root filesystem is read-only.
	TmpDir = "/tmp"

	// DataVolumeName names the StatefulSet's volumeClaimTemplate; the PVC
	// of the single Pod is "data-<name>-0".
	DataVolumeName = "data"

	// RunAsID is the non-root user and group of the receiver (the
	// distroless "nonroot" user of the image).
	RunAsID int64 = 65532
)

// ChildName is the name of every child except the token Secret: the
// WebhookReceiver's own name, so `kubectl get deploy,svc,ingress <name>`
// finds them.
func ChildName(whr *v1alpha1.WebhookReceiver) string { return whr.Name }

// TokenSecretName is the controller-owned Secret the Pods mount.
func TokenSecretName(whr *v1alpha1.WebhookReceiver) string { return whr.Name + "-token" }

// SelectorLabels select the receiver Pods of one WebhookReceiver.
func SelectorLabels(whr *v1alpha1.WebhookReceiver) map[string]string {
	return map[string]string{LabelName: AppName, LabelInstance: whr.Name}
}

// Labels go on every child and on the Pods.
func Labels(whr *v1alpha1.WebhookReceiver) map[string]string {
	l := SelectorLabels(whr)
	l[LabelManagedBy] = ManagedBy
	return l
}

// childLabels are the labels of a child object itself: Labels, plus the
// receiver's shard label (v1alpha1.LabelShard), so that each manager shard
// caches only its own receivers' children. Pod templates, selectors and
// the volumeClaimTemplate never carry the shard label: moving a receiver
// to another shard relabels its children, and must neither restart its
// Pods nor touch the StatefulSet's immutable fields.
func childLabels(whr *v1alpha1.WebhookReceiver) map[string]string {
	l := Labels(whr)
	if shard, ok := whr.Labels[v1alpha1.LabelShard]; ok {
		l[v1alpha1.LabelShard] = shard
	}
	return l
}

// objectMeta is the metadata shared by every child: name, namespace, labels
// and the controller owner reference (so deleting the WebhookReceiver
// garbage-collects the child, and changes to the child wake the controller).
func objectMeta(whr *v1alpha1.WebhookReceiver, name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name:      name,
		Namespace: whr.Namespace,
		Labels:    childLabels(whr),
		OwnerReferences: []metav1.OwnerReference{{
			APIVersion:         v1alpha1.GroupVersion.String(),
			Kind:               "WebhookReceiver",
			Name:               whr.Name,
			UID:                whr.UID,
			Controller:         ptr.To(true),
			BlockOwnerDeletion: ptr.To(true),
		}},
	}
}

// Image is spec.image, else the manager's default, else DefaultReceiverImage.
func Image(whr *v1alpha1.WebhookReceiver, defaultImage string) string {
	switch {
	case whr.Spec.Image != "":
		return whr.Spec.Image
	case defaultImage != "":
		return defaultImage
	default:
		return DefaultReceiverImage
	}
}

// UsesPostgres reports whether the receiver stores into PostgreSQL (a
// Deployment); otherwise it uses SQLite (a StatefulSet with a PVC).
func UsesPostgres(whr *v1alpha1.WebhookReceiver) bool {
	return whr.Spec.Storage != nil && whr.Spec.Storage.Postgres != nil
}

// Replicas is spec.replicas (default 1). With autoscaling the HPA decides.
func Replicas(whr *v1alpha1.WebhookReceiver) int32 {
	if whr.Spec.Replicas == nil {
		return 1
	}
	return *whr.Spec.Replicas
}

// IngestPath is the path the receiver serves deliveries on: the Ingress
// path when there is an Ingress (it forwards the path unchanged), else the
// path of externalURL when it has one (a Gateway or tunnel usually forwards
// it unchanged too), else the default.
func IngestPath(whr *v1alpha1.WebhookReceiver) string {
	if in := whr.Spec.Ingress; in != nil {
		if in.Path != "" {
			return in.Path
		}
		return v1alpha1.DefaultIngressPath
	}
	if p := urlPath(whr.Spec.ExternalURL); len(p) > 1 {
		return p
	}
	return v1alpha1.DefaultIngressPath
}
