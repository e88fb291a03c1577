package guard

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/intuned-operator/intuned-operator/internal/controller/controllertest"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
)

// TestManagerAccessOutlivesIntunedJobs: in a namespaced install, the
// RoleBinding that grants the manager its rights in a namespace stays while
// an IntunedJob there still has a Job to delete on Intuned (a namespace
// deletion deletes them all at once) and while a credentials Secret still
// carries the in-use finalizer the manager removes last; then it goes.
// (Which IntunedJobs hold it: TestCallsIntunedOnDelete.) The test plays the
// IntunedJob and credentials-in-use controllers.
func TestManagerAccessOutlivesIntunedJobs(t *testing.T) {
	ns := controllertest.NewNamespace(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const bindingName = "manager-access"
	controllertest.StartManager(t, func(mgr ctrl.Manager) error {
		return (&ManagerAccess{Client: mgr.GetClient(), BindingName: bindingName}).SetupWithManager(mgr)
	})
	c := controllertest.Client()
	binding := createAccessBinding(ctx, t, ns, bindingName)
	newJob := func(name string, policy intunedv1alpha1.DeletionPolicy) *intunedv1alpha1.IntunedJob {
		j := &intunedv1alpha1.IntunedJob{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Finalizers: []string{intunedv1alpha1.Finalizer}},
			Spec: intunedv1alpha1.IntunedJobSpec{
				Project:        "p",
				DeletionPolicy: policy,
				Payload:        []intunedv1alpha1.JobPayload{{APIName: "list", Parameters: &apiextensionsv1.JSON{Raw: []byte(`{}`)}}},
			},
		}
		if err := c.Create(ctx, j); err != nil {
			t.Fatal(err)
		}
		return j
	}
	bindingState := func() (exists, kept bool) {
		var b rbacv1.RoleBinding
		err := c.Get(ctx, client.ObjectKeyFromObject(binding), &b)
		if apierrors.IsNotFound(err) {
			return false, false
		}
		if err != nil {
			t.Fatal(err)
		}
		return true, controllerutil.ContainsFinalizer(&b, intunedv1alpha1.FinalizerManagerAccess)
	}
	waitBinding := func(wantExists, wantKept bool) {
		t.Helper()
		controllertest.Eventually(t, 30*time.Second, func() string {
			if exists, kept := bindingState(); exists != wantExists || kept != wantKept {
				return fmt.Sprintf("RoleBinding exists=%v kept=%v, want %v %v", exists, kept, wantExists, wantKept)
			}
			return ""
		})
	}

	orphaning := newJob("orphans-its-job", intunedv1alpha1.DeletionPolicyOrphan)
	deleting := newJob("deletes-its-job", intunedv1alpha1.DeletionPolicyDelete)
	waitBinding(true, true)
	// The credentials Secret, kept by the credentials-in-use controller
	// (played here too), whose finalizer the manager removes last.
	creds := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "creds", Finalizers: []string{intunedv1alpha1.FinalizerCredentialsInUse}}}
	if err := c.Create(ctx, creds); err != nil {
		t.Fatal(err)
	}

	// A namespace deletion: everything is deleted at once.
	for _, o := range []client.Object{binding, creds, orphaning, deleting} {
		if err := c.Delete(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(time.Second) // give a wrong removal the time to happen
	waitBinding(true, true)

	// The IntunedJob's finalizer deleted its Job on Intuned and is done.
	for _, j := range []*intunedv1alpha1.IntunedJob{orphaning, deleting} {
		if err := c.Get(ctx, client.ObjectKeyFromObject(j), j); err != nil {
			t.Fatal(err)
		}
		controllerutil.RemoveFinalizer(j, intunedv1alpha1.Finalizer)
		if err := c.Update(ctx, j); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(time.Second)
	waitBinding(true, true) // the Secret's finalizer is still to be removed

	if err := c.Get(ctx, client.ObjectKeyFromObject(creds), creds); err != nil {
		t.Fatal(err)
	}
	controllerutil.RemoveFinalizer(creds, intunedv1alpha1.FinalizerCredentialsInUse)
	if err := c.Update(ctx, creds); err != nil {
		t.Fatal(err)
	}
	waitBinding(false, false)
}

// createAccessBinding creates the RoleBinding a namespaced install grants
// the manager in namespace ns.
func createAccessBinding(ctx context.Context, t *testing.T, ns, name string) *rbacv1.RoleBinding {
	t.Helper()
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "view"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "manager", Namespace: "operator"}},
	}
	if err := controllertest.Client().Create(ctx, binding); err != nil {
		t.Fatal(err)
	}
	return binding
}
