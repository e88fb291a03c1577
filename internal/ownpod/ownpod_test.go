package ownpod

import (
	"maps"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestReplicaLabels: the labels a workload controller sets per revision or
// per Pod are left out, so a selector of the rest matches every replica.
func TestReplicaLabels(t *testing.T) {
	for _, tt := range []struct {
		name       string
		labels     map[string]string
		wantLabels map[string]string
	}{
		{"deployment Pod", map[string]string{"control-plane": "controller-manager", "pod-template-hash": "7d9f8c"},
			map[string]string{"control-plane": "controller-manager"}},
		{"statefulset Pod", map[string]string{"app": "m", "controller-revision-hash": "m-5b", "statefulset.kubernetes.io/pod-name": "m-0", "apps.kubernetes.io/pod-index": "0"},
			map[string]string{"app": "m"}},
		{"no labels", nil, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Labels: tt.labels}}
			before := maps.Clone(pod.Labels)
			if got := ReplicaLabels(pod); !maps.Equal(got, tt.wantLabels) {
				t.Errorf("ReplicaLabels = %v, want %v", got, tt.wantLabels)
			}
			if !maps.Equal(pod.Labels, before) {
				t.Errorf("the Pod's labels changed to %v", pod.Labels)
			}
		})
	}
}
