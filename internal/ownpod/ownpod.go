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
package ownpod

import (
	"context"
	"fmt"
	"os"

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

// ContainerImage returns the image of container in Pod namespace/name.
func ContainerImage(ctx context.Context, c client.Reader, namespace, name, container string) (string, error) {
	var pod corev1.Pod
	if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, &pod); err != nil {
		return "", fmt.Errorf("read own Pod %s/%s: %w", namespace, name, err)
	}
	for _, ct := range pod.Spec.Containers {
		if ct.Name == container {
			return ct.Image, nil
		}
	}
	return "", fmt.Errorf("own Pod %s/%s has no container %q", namespace, name, container)
}

// ManagerImage is the image of the manager container of the Pod this
// process runs in, named by POD_NAMESPACE and POD_NAME. ok is false when
// those are unset (the manager runs outside a Pod, e.g. `make run`).
func ManagerImage(ctx context.Context, c client.Reader) (image string, ok bool, err error) {
	ns, name := os.Getenv(EnvPodNamespace), os.Getenv(EnvPodName)
	if ns == "" || name == "" {
		return "", false, nil
	}
	image, err = ContainerImage(ctx, c, ns, name, ManagerContainer)
	return image, err == nil, err
}
