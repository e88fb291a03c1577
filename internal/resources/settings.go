package resources

import (
	"strconv"

	corev1 "k8s.io/api/core/v1"

	"github.com/intuned-operator/intuned-operator/api/v1alpha1"
)

// settingsArgs are the flags of spec.settings. Only fields that are set
// become flags: an unset field keeps the receiver's own default, and
// receivers created before spec.settings existed keep the same Pod
// template (no rollout on an operator upgrade).
func settingsArgs(whr *v1alpha1.WebhookReceiver) []string {
	s := whr.Spec.Settings
	if s == nil {
		return nil
	}
	var args []string
	if s.MaxBodyBytes != nil {
		args = append(args, "--max-body-bytes="+strconv.FormatInt(s.MaxBodyBytes.Value(), 10))
	}
	if s.Deadline != nil {
		args = append(args, "--deadline="+s.Deadline.Duration.String())
	}
	if s.LogLevel != "" {
		args = append(args, "--log-level="+s.LogLevel)
	}
	return args
}

// applyPodSettings copies the registry and environment parts of
// spec.podTemplate into the Pod. The API refuses env names of the flags
// the operator sets, so user variables never contradict the arguments.
func applyPodSettings(pt *v1alpha1.ReceiverPodTemplate, spec *corev1.PodSpec) {
	if len(pt.ImagePullSecrets) > 0 {
		spec.ImagePullSecrets = append([]corev1.LocalObjectReference(nil), pt.ImagePullSecrets...)
	}
	for _, e := range pt.Env {
		spec.Containers[0].Env = append(spec.Containers[0].Env, *e.DeepCopy())
	}
}
