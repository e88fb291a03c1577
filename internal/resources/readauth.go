package resources

import (
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/utils/ptr"

	"github.com/intuned-operator/intuned-operator/api/v1alpha1"
)

// Kubernetes read auth (docs/security.md, "Reading receiver data under Kubernetes RBAC"): the
// receiver checks a reader's bearer token with TokenReview and their right with
// SubjectAccessReview, so its ServiceAccount may create those two reviews and nothing else,
// through the built-in ClusterRole system:auth-delegator (exactly those two rules; kept up to
// date by the API server itself).
const (
	// AuthDelegatorClusterRole is the built-in role the receiver's ServiceAccount is bound to.
	AuthDelegatorClusterRole = "system:auth-delegator"
	// ServiceAccountTokenDir is where the receiver finds its ServiceAccount token, CA and
	// namespace: the standard path client-go's in-cluster config reads.
	ServiceAccountTokenDir = "/var/run/secrets/kubernetes.io/serviceaccount"
	// serviceAccountTokenExpiry is the lifetime of the projected token; the kubelet renews it
	// at 80 % and client-go reads the file again, so a leaked copy is useful for an hour at most.
	serviceAccountTokenExpiry int64 = 3600
	kubeAPIVolume                   = "kube-api-access"
)

// ReadAuthSubject is the receiver's ServiceAccount as a subject of the install's
// ClusterRoleBinding to system:auth-delegator (config/rbac/receiver_auth_delegator_binding.yaml).
// One binding for every receiver, instead of one each: RBAC cannot limit a right to a name
// prefix, so bindings of their own would need create, patch and delete of every
// ClusterRoleBinding in the cluster; this way the manager may change that one binding only.
// It is cluster-scoped and cannot be owned by a namespaced WebhookReceiver: the controller
// removes the subject with the receiver's finalizer.
func ReadAuthSubject(whr *v1alpha1.WebhookReceiver) rbacv1.Subject {
	return rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: ChildName(whr), Namespace: whr.Namespace}
}

// EnableKubernetesReadAuth turns on the receiver's --kubernetes-read-auth in a built Pod
// template: the flag naming this WebhookReceiver, and the ServiceAccount token it calls the API
// server with. The token is a projected volume of the receiver container only (the Pod keeps
// automountServiceAccountToken: false), expiring after an hour, with the cluster's CA and the
// namespace beside it where client-go's in-cluster config looks.
func EnableKubernetesReadAuth(whr *v1alpha1.WebhookReceiver, tmpl *corev1.PodTemplateSpec) {
	spec := &tmpl.Spec
	spec.Volumes = append(spec.Volumes, corev1.Volume{Name: kubeAPIVolume, VolumeSource: corev1.VolumeSource{
		Projected: &corev1.ProjectedVolumeSource{
			DefaultMode: ptr.To[int32](0o440),
			Sources: []corev1.VolumeProjection{
				{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
					Path: "token", ExpirationSeconds: ptr.To(serviceAccountTokenExpiry),
				}},
				{ConfigMap: &corev1.ConfigMapProjection{
					LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"},
					Items:                []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}},
				}},
				{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{{
					Path: "namespace", FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.namespace"},
				}}}},
			},
		},
	}})
	for i := range spec.Containers {
		c := &spec.Containers[i]
		if c.Name != ContainerName {
			continue
		}
		c.Args = append(c.Args, "--kubernetes-read-auth="+whr.Namespace+"/"+whr.Name)
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{
			Name: kubeAPIVolume, MountPath: ServiceAccountTokenDir, ReadOnly: true,
		})
	}
}
