package config

import (
	"context"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// managerSA is the manager's ServiceAccount as config/default names it.
const managerSA = "system:serviceaccount:" + namespace + ":" + namePrefix + "controller-manager"

// watchedNamespaces returns the --watch-namespaces of the rendered manager
// Deployment, sorted.
func watchedNamespaces(t *testing.T, objs []*unstructured.Unstructured) []string {
	t.Helper()
	namespaces := strings.Split(managerArg(t, objs, "watch-namespaces"), ",")
	sort.Strings(namespaces)
	return namespaces
}

// managerArg returns the value of the rendered manager's --name flag.
func managerArg(t *testing.T, objs []*unstructured.Unstructured, name string) string {
	t.Helper()
	dep := find(objs, "Deployment", namePrefix+"controller-manager")
	if dep == nil {
		t.Fatal("no manager Deployment rendered")
	}
	containers, _, _ := unstructured.NestedSlice(dep.Object, "spec", "template", "spec", "containers")
	if len(containers) != 1 {
		t.Fatalf("want 1 container, got %d", len(containers))
	}
	args, _, _ := unstructured.NestedStringSlice(containers[0].(map[string]any), "args")
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v
		}
	}
	t.Fatalf("manager args %q have no --%s", args, name)
	return ""
}

// managerBindings returns the namespaces in which a binding grants the
// manager's role to its ServiceAccount ("" for a ClusterRoleBinding), sorted.
func managerBindings(objs []*unstructured.Unstructured) []string {
	var namespaces []string
	for _, o := range objs {
		if o.GetKind() != "RoleBinding" && o.GetKind() != "ClusterRoleBinding" {
			continue
		}
		if ref, _, _ := unstructured.NestedString(o.Object, "roleRef", "name"); ref == namePrefix+"manager-role" {
			namespaces = append(namespaces, o.GetNamespace())
		}
	}
	sort.Strings(namespaces)
	return namespaces
}

// The namespaced overlay is edited by hand in two places: the manager must
// be allowed into exactly the namespaces it watches, and nowhere else.
func TestNamespacedBindsExactlyTheWatchedNamespaces(t *testing.T) {
	objs := render(t, "namespaced")
	watched := watchedNamespaces(t, objs)
	bound := managerBindings(objs)
	if !slices.Equal(watched, bound) {
		t.Errorf("config/namespaced: --watch-namespaces=%s but the manager role is bound in %q (\"\" = cluster-wide); "+
			"add a RoleBinding per watched namespace to role_bindings.yaml", strings.Join(watched, ","), bound)
	}
	// The manager keeps (finalizer) the RoleBinding it is told about: it
	// must be the one that grants its role.
	guarded := managerArg(t, objs, "access-role-binding")
	for _, o := range objs {
		ref, _, _ := unstructured.NestedString(o.Object, "roleRef", "name")
		if o.GetKind() == "RoleBinding" && ref == namePrefix+"manager-role" && o.GetName() != guarded {
			t.Errorf("RoleBinding %s/%s is not the --access-role-binding %s the manager keeps", o.GetNamespace(), o.GetName(), guarded)
		}
	}
	// config/default is the cluster-wide install: one ClusterRoleBinding.
	if got := managerBindings(renderDefault(t)); !slices.Equal(got, []string{""}) {
		t.Errorf("config/default binds the manager role in %q, want one ClusterRoleBinding", got)
	}
}

// TestNamespacedInstallGrantsOnlyWatchedNamespaces installs config/namespaced
// for real (server-side apply: schema and admission run) and asks the API
// server's authorizer what the manager's ServiceAccount may do.
func TestNamespacedInstallGrantsOnlyWatchedNamespaces(t *testing.T) {
	objs := render(t, "namespaced")
	watched := watchedNamespaces(t, objs)[0]
	_, c := startAPIServer(t, assetsDir(t))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// The watched namespace exists before the install (the overlay must not
	// own it: deleting the install would delete it).
	ns := &unstructured.Unstructured{}
	ns.SetAPIVersion("v1")
	ns.SetKind("Namespace")
	ns.SetName(watched)
	createCRDsAndNamespaces(ctx, t, c, append(objs, ns))
	for _, o := range objs {
		if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(o.DeepCopy()),
			client.FieldOwner(fieldOwner), client.ForceOwnership); err != nil {
			t.Fatalf("apply %s %s: %v", o.GetKind(), o.GetName(), err)
		}
	}

	tests := []struct {
		verb, group, resource, namespace string
		allowed                          bool
		name                             string
	}{
		// Its own RoleBinding, by name, to keep it with a finalizer.
		{"patch", "rbac.authorization.k8s.io", "rolebindings", watched, true, namePrefix + "manager-rolebinding"},
		{"patch", "rbac.authorization.k8s.io", "rolebindings", watched, false, "someone-elses"},
		{"list", "rbac.authorization.k8s.io", "rolebindings", watched, false, ""},
		{"list", "", "secrets", watched, true, ""},
		{"watch", "", "secrets", watched, true, ""},
		{"patch", "", "secrets", watched, true, ""},
		{"create", "apps", "statefulsets", watched, true, ""},
		{"patch", "intuned.io", "intunedjobs/status", watched, true, ""},
		{"create", "events.k8s.io", "events", watched, true, ""},
		{"update", "coordination.k8s.io", "leases", namespace, true, ""},
		// Nothing outside the watched namespaces, least of all Secrets.
		{"list", "", "secrets", "", false, ""},
		{"get", "", "secrets", "default", false, ""},
		{"get", "", "secrets", namespace, false, ""},
		{"list", "intuned.io", "intunedjobs", "", false, ""},
		{"create", "apps", "deployments", "default", false, ""},
		// No Kubernetes read auth for receivers: no cluster-scoped binding to edit.
		{"update", "rbac.authorization.k8s.io", "clusterrolebindings", "", false, namePrefix + "receiver-auth-delegator"},
		{"bind", "rbac.authorization.k8s.io", "clusterroles", "", false, "system:auth-delegator"},
	}
	for _, tt := range tests {
		t.Run(strings.Join([]string{tt.verb, tt.group, tt.resource, tt.namespace, tt.name}, "/"), func(t *testing.T) {
			resource, sub, _ := strings.Cut(tt.resource, "/")
			// RBAC objects reach the authorizer through an informer: wait
			// for an allowed answer, not for a denied one.
			for {
				sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
					User:   managerSA,
					Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"},
					ResourceAttributes: &authorizationv1.ResourceAttributes{
						Verb: tt.verb, Group: tt.group, Resource: resource, Subresource: sub, Namespace: tt.namespace, Name: tt.name,
					},
				}}
				if err := c.Create(ctx, sar); err != nil {
					t.Fatal(err)
				}
				if sar.Status.Allowed == tt.allowed {
					return
				}
				if !tt.allowed || ctx.Err() != nil {
					t.Fatalf("allowed = %v, want %v (%s)", sar.Status.Allowed, tt.allowed, sar.Status.Reason)
				}
				time.Sleep(100 * time.Millisecond)
			}
		})
	}
}
