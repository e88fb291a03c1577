package config

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"github.com/intuned-operator/intuned-operator/internal/ownpod"
)

// overlayImage is what the overlays below set the manager's image to.
const overlayImage = "registry.example.com/platform/intuned-operator:v9.9.9"

// writeOverlay writes a kustomization with `images:` over base (a
// directory or file relative to the overlay) and returns its directory.
func writeOverlay(t *testing.T, dir, base string) string {
	t.Helper()
	k := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- " + base + "\n" +
		"images:\n- name: controller\n  newName: registry.example.com/platform/intuned-operator\n  newTag: v9.9.9\n"
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestOverlayImagesMoveTheReceiverToo: a user's overlay that sets the
// manager's image with `images:` (over config/default, or over a rendered
// install YAML as a release ships it) must move the WebhookReceiver Pods to
// that image as well. The manifest holds no copy of the image that such an
// overlay would miss; the manager reads its own Pod's image at start-up
// (internal/ownpod). Checked on the rendered objects, then for real: the
// overlay's RBAC applied to an API server, the manager's Pod created from
// the overlay's Deployment, and ownpod.ManagerImage run as the manager's
// ServiceAccount.
func TestOverlayImagesMoveTheReceiverToo(t *testing.T) {
	root := repoRoot(t)
	tmp := t.TempDir()

	// The install as one file, like a release's install.yaml.
	var install strings.Builder
	for _, o := range renderDefault(t) {
		b, err := yaml.Marshal(o.Object)
		if err != nil {
			t.Fatal(err)
		}
		install.WriteString("---\n")
		install.Write(b)
	}
	overFile := filepath.Join(tmp, "over-file")
	if err := os.MkdirAll(overFile, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(overFile, "install.yaml"), []byte(install.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	overDir := filepath.Join(tmp, "over-dir")
	if err := os.MkdirAll(overDir, 0o700); err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(overDir, filepath.Join(root, "config", "default"))
	if err != nil {
		t.Fatal(err)
	}

	overlays := []struct{ name, dir string }{
		{"over config/default", writeOverlay(t, overDir, rel)},
		{"over a rendered install.yaml", writeOverlay(t, overFile, "install.yaml")},
	}
	env, c := startAPIServer(t, assetsDir(t))
	for i, ov := range overlays {
		t.Run(ov.name, func(t *testing.T) {
			objs := renderDir(t, ov.dir)
			dep := find(objs, "Deployment", namePrefix+"controller-manager")
			if dep == nil {
				t.Fatal("no manager Deployment rendered")
			}
			// Nothing in the rendered install may still name the old image.
			for _, o := range objs {
				b, _ := yaml.Marshal(o.Object)
				if strings.Contains(string(b), "controller:latest") {
					t.Errorf("%s %s still names controller:latest", o.GetKind(), o.GetName())
				}
			}
			podSpec, _, _ := unstructured.NestedMap(dep.Object, "spec", "template", "spec")
			checkManagerPodReadsOwnImage(t, env, c, objs, podSpec, fmt.Sprintf("intuned-operator-controller-manager-7d9f-%d", i))
		})
	}
}

// checkManagerPodReadsOwnImage applies the install's Namespace,
// ServiceAccount and namespaced RBAC, creates the manager's Pod from
// podSpec, and reads the image as the manager would.
func checkManagerPodReadsOwnImage(t *testing.T, env *envtest.Environment, c client.Client, objs []*unstructured.Unstructured, podSpec map[string]any, podName string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Namespace first; both overlays install the same RBAC.
	for _, kinds := range [][]string{{"Namespace"}, {"ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}} {
		for _, o := range objs {
			if slices.Contains(kinds, o.GetKind()) {
				if err := c.Create(ctx, o.DeepCopy()); err != nil && !apierrors.IsAlreadyExists(err) {
					t.Fatalf("create %s %s: %v", o.GetKind(), o.GetName(), err)
				}
			}
		}
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: podName}}
	if err := k8sruntime.DefaultUnstructuredConverter.FromUnstructured(podSpec, &pod.Spec); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, pod); err != nil {
		t.Fatalf("create the manager's Pod: %v", err)
	}

	// The Pod gives the manager its name and namespace.
	var container *corev1.Container
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == ownpod.ManagerContainer {
			container = &pod.Spec.Containers[i]
		}
	}
	if container == nil {
		t.Fatalf("the manager Pod has no container %q", ownpod.ManagerContainer)
	}
	fields := map[string]string{}
	for _, e := range container.Env {
		if e.Name == "RECEIVER_IMAGE" {
			t.Errorf("RECEIVER_IMAGE is set (%q): an overlay's images: would not change it", e.Value)
		}
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			fields[e.Name] = e.ValueFrom.FieldRef.FieldPath
		}
	}
	if fields[ownpod.EnvPodName] != "metadata.name" || fields[ownpod.EnvPodNamespace] != "metadata.namespace" {
		t.Fatalf("the manager's env does not carry its Pod's name and namespace: %v", fields)
	}
	t.Setenv(ownpod.EnvPodName, pod.Name)
	t.Setenv(ownpod.EnvPodNamespace, pod.Namespace)

	// As the manager's ServiceAccount: the install's RBAC must allow it.
	sa := pod.Spec.ServiceAccountName
	user, err := env.AddUser(envtest.User{
		Name:   "system:serviceaccount:" + namespace + ":" + sa,
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	mc, err := client.New(user.Config(), client.Options{Scheme: c.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	img, ok, err := ownpod.ManagerImage(ctx, mc)
	if err != nil || !ok {
		t.Fatalf("ManagerImage as %s: %q, %v, %v", sa, img, ok, err)
	}
	if img != overlayImage {
		t.Errorf("the receivers would run %q, want the overlay's %q", img, overlayImage)
	}
}
