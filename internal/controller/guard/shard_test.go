package guard

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/controller/controllertest"
	"github.com/intuned-operator/intuned-operator/internal/controller/sharding"
)

// TestCredentialsInUsePerShard: each manager shard sees only its own
// IntunedJobs, so it keeps its own in-use finalizer on a credentials
// Secret that jobs of several shards read: a shard whose last such job is
// gone (or moved away) removes its own finalizer and never another
// shard's, and the Secret goes only when no shard needs it.
func TestCredentialsInUsePerShard(t *testing.T) {
	ns := controllertest.NewNamespace(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	b, err := sharding.Parse("b")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []sharding.Shard{sharding.Default, b} {
		controllertest.StartShardManager(t, s, func(mgr ctrl.Manager) error {
			return (&CredentialsInUse{Client: mgr.GetClient(), Shard: s}).SetupWithManager(mgr)
		})
	}
	c := controllertest.Client()
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "creds"}, StringData: map[string]string{"apiKey": "k"}}
	if err := c.Create(ctx, secret); err != nil {
		t.Fatal(err)
	}
	newJob := func(name string, labels map[string]string) *intunedv1alpha1.IntunedJob {
		j := &intunedv1alpha1.IntunedJob{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels, Finalizers: []string{intunedv1alpha1.Finalizer}},
			Spec: intunedv1alpha1.IntunedJobSpec{
				Project:        "p",
				CredentialsRef: &intunedv1alpha1.LocalObjectReference{Name: "creds"},
				Payload:        []intunedv1alpha1.JobPayload{{APIName: "list", Parameters: &apiextensionsv1.JSON{Raw: []byte(`{}`)}}},
			},
		}
		if err := c.Create(ctx, j); err != nil {
			t.Fatal(err)
		}
		return j
	}
	// gone plays the IntunedJob controller's finalizer: the job is deleted.
	gone := func(j *intunedv1alpha1.IntunedJob) {
		t.Helper()
		if err := c.Get(ctx, client.ObjectKeyFromObject(j), j); err != nil {
			t.Fatal(err)
		}
		j.Finalizers = nil
		if err := c.Update(ctx, j); err != nil {
			t.Fatal(err)
		}
		if err := c.Delete(ctx, j); client.IgnoreNotFound(err) != nil {
			t.Fatal(err)
		}
	}
	defaultFinalizer, bFinalizer := intunedv1alpha1.FinalizerCredentialsInUse, b.Finalizer(intunedv1alpha1.FinalizerCredentialsInUse)
	wantFinalizers := func(want ...string) { t.Helper(); waitFinalizers(ctx, t, &corev1.Secret{}, secret, want...) }

	d := newJob("job-default", nil)
	jb := newJob("job-shard-b", map[string]string{sharding.Label: "b"})
	wantFinalizers(defaultFinalizer, bFinalizer)

	gone(jb) // shard b's last job: only its finalizer goes
	wantFinalizers(defaultFinalizer)

	// The default shard's job moves to shard b: the finalizers follow.
	if err := c.Get(ctx, client.ObjectKeyFromObject(d), d); err != nil {
		t.Fatal(err)
	}
	d.Labels = map[string]string{sharding.Label: "b"}
	if err := c.Update(ctx, d); err != nil {
		t.Fatal(err)
	}
	wantFinalizers(bFinalizer)

	// Deleted while shard b's job needs it: kept, then gone with the job.
	if err := c.Delete(ctx, secret); err != nil {
		t.Fatal(err)
	}
	wantFinalizers(bFinalizer)
	gone(d)
	controllertest.Eventually(t, time.Minute, func() string {
		var s corev1.Secret
		if err := c.Get(ctx, client.ObjectKeyFromObject(secret), &s); !apierrors.IsNotFound(err) {
			return fmt.Sprintf("Secret still there (%v), finalizers %v", err, s.Finalizers)
		}
		return ""
	})
}

// TestManagerAccessPerShard: in a namespaced install each shard keeps its
// own finalizer on the namespace's RoleBinding, for its own IntunedJobs,
// and removes only its own.
func TestManagerAccessPerShard(t *testing.T) {
	ns := controllertest.NewNamespace(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const bindingName = "manager-access"
	b, err := sharding.Parse("b")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []sharding.Shard{sharding.Default, b} {
		controllertest.StartShardManager(t, s, func(mgr ctrl.Manager) error {
			return (&ManagerAccess{Client: mgr.GetClient(), BindingName: bindingName, Shard: s}).SetupWithManager(mgr)
		})
	}
	c := controllertest.Client()
	binding := createAccessBinding(ctx, t, ns, bindingName)
	wantFinalizers := func(want ...string) { t.Helper(); waitFinalizers(ctx, t, &rbacv1.RoleBinding{}, binding, want...) }
	newJob := func(name string, labels map[string]string) *intunedv1alpha1.IntunedJob {
		j := &intunedv1alpha1.IntunedJob{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels, Finalizers: []string{intunedv1alpha1.Finalizer}},
			Spec: intunedv1alpha1.IntunedJobSpec{
				Project: "p",
				Payload: []intunedv1alpha1.JobPayload{{APIName: "list", Parameters: &apiextensionsv1.JSON{Raw: []byte(`{}`)}}},
			},
		}
		if err := c.Create(ctx, j); err != nil {
			t.Fatal(err)
		}
		return j
	}
	defaultFinalizer, bFinalizer := intunedv1alpha1.FinalizerManagerAccess, b.Finalizer(intunedv1alpha1.FinalizerManagerAccess)

	jb := newJob("job-shard-b", map[string]string{sharding.Label: "b"})
	wantFinalizers(bFinalizer)
	newJob("job-default", nil)
	wantFinalizers(defaultFinalizer, bFinalizer)
	jb.Finalizers = nil
	if err := c.Update(ctx, jb); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, jb); err != nil {
		t.Fatal(err)
	}
	wantFinalizers(defaultFinalizer)
}

// waitFinalizers waits until the object of key's kind and name (read into
// into) has exactly the finalizers want.
func waitFinalizers(ctx context.Context, t *testing.T, into, key client.Object, want ...string) {
	t.Helper()
	controllertest.Eventually(t, time.Minute, func() string {
		if err := controllertest.Client().Get(ctx, client.ObjectKeyFromObject(key), into); err != nil {
			return err.Error()
		}
		if got := slices.Sorted(slices.Values(into.GetFinalizers())); !slices.Equal(got, slices.Sorted(slices.Values(want))) {
			return fmt.Sprintf("%T %s: finalizers %v, want %v", into, key.GetName(), got, want)
		}
		return ""
	})
}
