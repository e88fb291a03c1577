package webhookreceiver

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/controller/controllertest"
	"github.com/intuned-operator/intuned-operator/internal/resources"
)

// newReadAuthBinding creates a binding to system:auth-delegator as the install ships it (no
// subjects) and returns its name; cluster-scoped, so named after the test's namespace.
func newReadAuthBinding(t *testing.T, ns, role string) string {
	t.Helper()
	b := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: ns + "-receiver-auth-delegator"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
	}
	if err := controllertest.Client().Create(t.Context(), b); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { controllertest.Client().Delete(t.Context(), b) }) //nolint:errcheck
	return b.Name
}

// bindingSubjects lists the binding's subjects in namespace ns as Kind:namespace/name, sorted.
// (Every test's manager reconciles the receivers of every namespace: other tests' receivers
// may be subjects too.)
func bindingSubjects(t *testing.T, name, ns string) []string {
	t.Helper()
	var b rbacv1.ClusterRoleBinding
	if err := controllertest.Client().Get(t.Context(), client.ObjectKey{Name: name}, &b); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range b.Subjects {
		if s.Namespace == ns {
			out = append(out, s.Kind+":"+s.Namespace+"/"+s.Name)
		}
	}
	slices.Sort(out)
	return out
}

// TestReadAuthBindingFollowsReceivers: with Kubernetes read auth on, each receiver's
// ServiceAccount becomes a subject of the install's binding (the receiver holds the finalizer
// meanwhile) and its Pods get the flag and the projected ServiceAccount token; deleting a
// receiver takes exactly its subject away and then lets it go.
func TestReadAuthBindingFollowsReceivers(t *testing.T) {
	ns := controllertest.NewNamespace(t)
	binding := newReadAuthBinding(t, ns, resources.AuthDelegatorClusterRole)
	f := newWHRFixture(t, func(r *Reconciler) { r.ReadAuthBinding = binding })
	f.ns = ns
	f.receiver("orders", intunedv1alpha1.WebhookReceiverSpec{})
	f.receiver("prices", intunedv1alpha1.WebhookReceiverSpec{Storage: f.postgresStorage()})
	want := []string{"ServiceAccount:" + ns + "/orders", "ServiceAccount:" + ns + "/prices"}
	f.eventually(func() string {
		got := bindingSubjects(t, binding, ns)
		if !slices.Equal(got, want) {
			return fmt.Sprintf("binding subjects %v, want %v", got, want)
		}
		return ""
	})
	for _, name := range []string{"orders", "prices"} {
		if w := f.getWHR(name); !controllerutil.ContainsFinalizer(w, ReadAuthFinalizer) {
			t.Errorf("%s has finalizers %v, want %s", name, w.Finalizers, ReadAuthFinalizer)
		}
	}
	var sts appsv1.StatefulSet
	f.waitExists("orders", &sts)
	var deploy appsv1.Deployment
	f.waitExists("prices", &deploy)
	for name, spec := range map[string]corev1.PodSpec{"orders": sts.Spec.Template.Spec, "prices": deploy.Spec.Template.Spec} {
		args := strings.Join(spec.Containers[0].Args, " ")
		if !strings.Contains(args, "--kubernetes-read-auth="+ns+"/"+name) {
			t.Errorf("%s: receiver args %q lack --kubernetes-read-auth", name, args)
		}
		if !slices.ContainsFunc(spec.Containers[0].VolumeMounts, func(m corev1.VolumeMount) bool {
			return m.MountPath == resources.ServiceAccountTokenDir
		}) {
			t.Errorf("%s: no ServiceAccount token mounted at %s", name, resources.ServiceAccountTokenDir)
		}
		if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
			t.Errorf("%s: automountServiceAccountToken %v, want false (the projected token is the receiver container's only)", name, spec.AutomountServiceAccountToken)
		}
	}

	if err := controllertest.Client().Delete(f.ctx, f.getWHR("orders")); err != nil {
		t.Fatal(err)
	}
	f.waitGone("orders", &intunedv1alpha1.WebhookReceiver{})
	if got := bindingSubjects(t, binding, ns); !slices.Equal(got, want[1:]) {
		t.Fatalf("after deleting orders the binding's subjects are %v, want %v", got, want[1:])
	}
}

// TestReadAuthOff: without a binding (the namespaced install) receivers get no finalizer and
// no read-auth flag, and a receiver still carrying the finalizer from a manager that had one
// loses it, so it can be deleted.
func TestReadAuthOff(t *testing.T) {
	f := newWHRFixture(t)
	f.create(&intunedv1alpha1.WebhookReceiver{ObjectMeta: metav1.ObjectMeta{Name: "old", Finalizers: []string{ReadAuthFinalizer}}})
	f.receiver("new", intunedv1alpha1.WebhookReceiverSpec{})
	f.eventually(func() string {
		if w := f.getWHR("old"); len(w.Finalizers) > 0 {
			return fmt.Sprintf("old still has finalizers %v", w.Finalizers)
		}
		return ""
	})
	var sts appsv1.StatefulSet
	f.waitExists("new", &sts)
	if args := strings.Join(sts.Spec.Template.Spec.Containers[0].Args, " "); strings.Contains(args, "kubernetes-read-auth") {
		t.Errorf("read auth off, but the receiver args are %q", args)
	}
	if w := f.getWHR("new"); len(w.Finalizers) > 0 {
		t.Errorf("read auth off, but new has finalizers %v", w.Finalizers)
	}
}

// TestReadAuthRefusesOtherRoles: a binding named by the flag that binds another role (say,
// cluster-admin through a mistyped overlay) never gets receivers as subjects.
func TestReadAuthRefusesOtherRoles(t *testing.T) {
	ns := controllertest.NewNamespace(t)
	binding := newReadAuthBinding(t, ns, "view")
	f := newWHRFixture(t, func(r *Reconciler) { r.ReadAuthBinding = binding })
	f.ns = ns
	f.receiver("orders", intunedv1alpha1.WebhookReceiverSpec{})
	f.eventually(func() string {
		w := f.getWHR("orders")
		for _, c := range w.Status.Conditions {
			if c.Type == intunedv1alpha1.ConditionReady && strings.Contains(c.Message, "not adding receivers") {
				return ""
			}
		}
		return fmt.Sprintf("conditions %+v, want Ready to say why", w.Status.Conditions)
	})
	if got := bindingSubjects(t, binding, ns); len(got) > 0 {
		t.Fatalf("a binding to view got subjects %v", got)
	}
}
