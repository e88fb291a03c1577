package resources

import (
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/intuned-operator/intuned-operator/api/v1alpha1"
)

// defaultTargetCPU is the HPA's CPU utilisation target when unset.
const defaultTargetCPU int32 = 80

// HorizontalPodAutoscaler scales the Deployment on CPU. Returns nil unless
// spec.autoscaling is set (the API allows it only with postgres storage).
func HorizontalPodAutoscaler(whr *v1alpha1.WebhookReceiver) *autoscalingv2.HorizontalPodAutoscaler {
	as := whr.Spec.Autoscaling
	if as == nil {
		return nil
	}
	target := defaultTargetCPU
	if as.TargetCPUUtilizationPercentage != nil {
		target = *as.TargetCPUUtilizationPercentage
	}
	var behavior *autoscalingv2.HorizontalPodAutoscalerBehavior
	if w := as.ScaleDownStabilizationWindowSeconds; w != nil {
		behavior = &autoscalingv2.HorizontalPodAutoscalerBehavior{
			ScaleDown: &autoscalingv2.HPAScalingRules{StabilizationWindowSeconds: ptr.To(*w)},
		}
	}
	return &autoscalingv2.HorizontalPodAutoscaler{
		TypeMeta:   metav1.TypeMeta{APIVersion: "autoscaling/v2", Kind: "HorizontalPodAutoscaler"},
		ObjectMeta: objectMeta(whr, ChildName(whr)),
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{
				APIVersion: "apps/v1",
				Kind:       workloadKind(whr),
				Name:       ChildName(whr),
			},
			MinReplicas: ptr.To(minReplicas(as)),
			MaxReplicas: as.MaxReplicas,
			Behavior:    behavior,
			Metrics: []autoscalingv2.MetricSpec{{
				Type: autoscalingv2.ResourceMetricSourceType,
				Resource: &autoscalingv2.ResourceMetricSource{
					Name: "cpu",
					Target: autoscalingv2.MetricTarget{
						Type:               autoscalingv2.UtilizationMetricType,
						AverageUtilization: ptr.To(target),
					},
				},
			}},
		},
	}
}

// PodDisruptionBudget is spec.podDisruptionBudget, or by default
// maxUnavailable 1 when more than one replica runs (replicas > 1 or
// autoscaling.minReplicas > 1), so a node drain never takes every receiver
// down at once. A single replica gets none by default: a PDB would block
// drains forever. Returns nil when no PDB is wanted.
func PodDisruptionBudget(whr *v1alpha1.WebhookReceiver) *policyv1.PodDisruptionBudget {
	spec := policyv1.PodDisruptionBudgetSpec{Selector: &metav1.LabelSelector{MatchLabels: SelectorLabels(whr)}}
	switch pdb := whr.Spec.PodDisruptionBudget; {
	case pdb != nil:
		if pdb.MinAvailable != nil {
			spec.MinAvailable = ptr.To(*pdb.MinAvailable)
		}
		if pdb.MaxUnavailable != nil {
			spec.MaxUnavailable = ptr.To(*pdb.MaxUnavailable)
		}
	case minRunning(whr) > 1:
		spec.MaxUnavailable = ptr.To(intstr.FromInt32(1))
	default:
		return nil
	}
	return &policyv1.PodDisruptionBudget{
		TypeMeta:   metav1.TypeMeta{APIVersion: "policy/v1", Kind: "PodDisruptionBudget"},
		ObjectMeta: objectMeta(whr, ChildName(whr)),
		Spec:       spec,
	}
}

// minRunning is the replica count the receiver runs with at least.
func minRunning(whr *v1alpha1.WebhookReceiver) int32 {
	if as := whr.Spec.Autoscaling; as != nil {
		return minReplicas(as)
	}
	return Replicas(whr)
}

func minReplicas(as *v1alpha1.ReceiverAutoscaling) int32 {
	if as.MinReplicas == nil {
		return 1
	}
	return *as.MinReplicas
}

// workloadKind is the kind of the receiver workload.
func workloadKind(whr *v1alpha1.WebhookReceiver) string {
	if UsesPostgres(whr) {
		return "Deployment"
	}
	return "StatefulSet"
}
