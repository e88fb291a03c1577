package resources

import (
	"fmt"
	"maps"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/intuned-operator/intuned-operator/api/v1alpha1"
)

// ServiceAccount gives the receiver Pods an identity of their own (no RBAC:
// the receiver never calls the Kubernetes API, and its token is not mounted).
func ServiceAccount(whr *v1alpha1.WebhookReceiver) *corev1.ServiceAccount {
	return &corev1.ServiceAccount{
		TypeMeta:                     metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"},
		ObjectMeta:                   objectMeta(whr, ChildName(whr)),
		AutomountServiceAccountToken: ptr.To(false),
	}
}

// ServiceURL is where in-cluster clients reach the receiver Pods through
// Service (the manager: its volume check, delivery accounting, backfill).
func ServiceURL(whr *v1alpha1.WebhookReceiver) string {
	return fmt.Sprintf("http://%s.%s.svc:%d", ChildName(whr), whr.Namespace, HTTPPort)
}

// Service is the ClusterIP Service in front of the receiver Pods, on
// HTTPPort. In-cluster senders can use
// http://<name>.<namespace>.svc:8080<ingest path>.
func Service(whr *v1alpha1.WebhookReceiver) *corev1.Service {
	return &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: objectMeta(whr, ChildName(whr)),
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeClusterIP,
			Selector: SelectorLabels(whr),
			Ports: []corev1.ServicePort{{
				Name:       HTTPPortName,
				Port:       HTTPPort,
				TargetPort: intstr.FromString(HTTPPortName),
				Protocol:   corev1.ProtocolTCP,
			}},
		},
	}
}

// Ingress routes exactly the ingest path of spec.ingress.host to the
// Service. Only that path is public: the read API and metrics stay
// in-cluster. Returns nil when spec.ingress is unset.
func Ingress(whr *v1alpha1.WebhookReceiver) *networkingv1.Ingress {
	in := whr.Spec.Ingress
	if in == nil {
		return nil
	}
	meta := objectMeta(whr, ChildName(whr))
	if len(in.Annotations) > 0 {
		meta.Annotations = maps.Clone(in.Annotations)
	}
	ing := &networkingv1.Ingress{
		TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "Ingress"},
		ObjectMeta: meta,
		Spec: networkingv1.IngressSpec{
			IngressClassName: in.ClassName,
			Rules: []networkingv1.IngressRule{{
				Host: in.Host,
				IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
					Paths: []networkingv1.HTTPIngressPath{{
						Path:     IngestPath(whr),
						PathType: ptr.To(networkingv1.PathTypeExact),
						Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{
							Name: ChildName(whr),
							Port: networkingv1.ServiceBackendPort{Name: HTTPPortName},
						}},
					}},
				}},
			}},
		},
	}
	if in.TLS != nil {
		ing.Spec.TLS = []networkingv1.IngressTLS{{Hosts: []string{in.Host}, SecretName: in.TLS.SecretName}}
	}
	return ing
}

// ManagerPods is where the manager's own Pods run: their namespace and the
// labels every replica carries. The manager reads its receivers through
// their Service (the volume check's /metrics, delivery accounting's read
// API, backfill), so a policy that admits only spec.networkPolicy.from
// would cut it off.
type ManagerPods struct {
	Namespace string
	Labels    map[string]string
}

// NetworkPolicy admits traffic to the receiver Pods on HTTPPort only, from
// spec.networkPolicy.from and the manager's Pods (any source when from is
// empty). manager nil (a manager that does not run in a Pod, e.g. `make
// run`) adds no peer. Egress is not restricted: the receiver must reach
// PostgreSQL and DNS. Returns nil unless spec.networkPolicy.enabled.
func NetworkPolicy(whr *v1alpha1.WebhookReceiver, manager *ManagerPods) *networkingv1.NetworkPolicy {
	np := whr.Spec.NetworkPolicy
	if np == nil || !np.Enabled {
		return nil
	}
	var from []networkingv1.NetworkPolicyPeer
	for _, p := range np.From {
		from = append(from, *p.DeepCopy())
	}
	if len(from) > 0 && manager != nil {
		from = append(from, networkingv1.NetworkPolicyPeer{
			// kubernetes.io/metadata.name: the API server sets it on every
			// namespace, so it names one namespace and cannot be forged.
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: manager.Namespace}},
			PodSelector:       &metav1.LabelSelector{MatchLabels: maps.Clone(manager.Labels)},
		})
	}
	return &networkingv1.NetworkPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
		ObjectMeta: objectMeta(whr, ChildName(whr)),
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: SelectorLabels(whr)},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				Ports: []networkingv1.NetworkPolicyPort{{
					Protocol: ptr.To(corev1.ProtocolTCP),
					Port:     ptr.To(intstr.FromInt32(HTTPPort)),
				}},
				From: from,
			}},
		},
	}
}
