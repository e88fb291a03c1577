// Package ownpod reads what the manager needs to know about its own Pod.
//
// The receiver ships in the manager's image, so the manager's own image is
// the right default for WebhookReceiver Pods. The downward API cannot expose
// a container's image, and copying it into an env var at build time breaks
// as soon as something other than `kustomize edit set image` in
// config/manager changes the image (an overlay's `images:`, `kubectl set
// image`, an image automation tool): the receiver Pods then pull an image
// that does not exist. Reading the Pod from the API at start-up follows the
// image wherever it was set.
//
// Its namespace and labels are how receiver NetworkPolicies admit the
// manager (resources.ManagerPods): read from the Pod, they follow an
// overlay's namespace and labels too.
package ownpod

import (
	"context"
	"fmt"
	"maps"
	"os"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Env vars the manager Deployment sets from the downward API
// (config/manager/manager.yaml).
const (
	EnvPodName      = "POD_NAME"
	EnvPodNamespace = "POD_NAMESPACE"
)

// ManagerContainer is the name of the manager's container.
const ManagerContainer = "manager"

// Pod reads the Pod this process runs in, named by POD_NAMESPACE and
// POD_NAME. ok is false when those are unset (the manager runs outside a
// Pod, e.g. `make run`).
func Pod(ctx context.Context, c client.Reader) (pod *corev1.Pod, ok bool, err error) {
	ns, name := os.Getenv(EnvPodNamespace), os.Getenv(EnvPodName)
	if ns == "" || name == "" {
		return nil, false, nil
	}
	pod = &corev1.Pod{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, pod); err != nil {
		return nil, true, fmt.Errorf("read own Pod %s/%s: %w", ns, name, err)
	}
	return pod, true, nil
}

// ContainerImage returns the image of the named container of pod.
func ContainerImage(pod *corev1.Pod, container string) (string, error) {
	for _, ct := range pod.Spec.Containers {
		if ct.Name == container {
			return ct.Image, nil
		}
	}
	return "", fmt.Errorf("own Pod %s/%s has no container %q", pod.Namespace, pod.Name, container)
}

// ManagerImage is the image of the manager container of the Pod this
// process runs in (see Pod). ok is false outside a Pod.
func ManagerImage(ctx context.Context, c client.Reader) (image string, ok bool, err error) {
	pod, ok, err := Pod(ctx, c)
	if !ok || err != nil {
		return "", ok, err
	}
	image, err = ContainerImage(pod, ManagerContainer)
	return image, err == nil, err
}

// perPodLabels are set by workload controllers on each Pod, per revision
// or per Pod: a selector naming them would miss the next rollout's or the
// other replicas' Pods.
var perPodLabels = []string{
	appsv1.DefaultDeploymentUniqueLabelKey, // pod-template-hash
	appsv1.ControllerRevisionHashLabelKey,  // controller-revision-hash
	appsv1.StatefulSetPodNameLabel,         // statefulset.kubernetes.io/pod-name
	appsv1.PodIndexLabel,                   // apps.kubernetes.io/pod-index
}

// ReplicaLabels are pod's labels that every replica of its workload
// carries (its template's labels): what a NetworkPolicy peer selects the
// manager's Pods by.
func ReplicaLabels(pod *corev1.Pod) map[string]string {
	l := maps.Clone(pod.Labels)
	for _, k := range perPodLabels {
		delete(l, k)
	}
	return l
}
