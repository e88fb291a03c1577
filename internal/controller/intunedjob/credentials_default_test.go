package intunedjob

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/controller/controllertest"
	"github.com/intuned-operator/intuned-operator/internal/intuned"
	"github.com/intuned-operator/intuned-operator/internal/testutil/testenv"
)

// TestDefaultCredentialsOnlyWhereAllowed: the manager's default credentials
// Secret serves IntunedJobs without spec.credentialsRef in its own namespace
// and in the namespaces an admin allows, nowhere else. A user with the edit
// rights on IntunedJobs in another namespace (what the aggregated "edit" role
// gives) gets a Stalled job that says why, and Intuned hears nothing: not a
// create, and no adoption of a Job that already exists there.
func TestDefaultCredentialsOnlyWhereAllowed(t *testing.T) {
	f := newIJFixture(t, fixtureOptions{})
	allowed, other := controllertest.NewNamespace(t), controllertest.NewNamespace(t)
	_, err := f.api.CreateJob(context.Background(), testProject, intuned.CreateJobRequest{
		ID:      "platform-job",
		Payload: []intuned.PayloadItem{{APIName: "details", Parameters: json.RawMessage(`{}`)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	f.defaults = intunedv1alpha1.DefaultCredentials{
		Secret:     types.NamespacedName{Namespace: f.ns, Name: credsSecret},
		Namespaces: []string{allowed},
	}
	f.restart()
	f.sim.ResetCalls()

	// An edit user of the other namespace asks to adopt the platform's Job
	// with the default credentials.
	editor := editUser(t, other)
	noRef := func(j *intunedv1alpha1.IntunedJob) { j.Spec.CredentialsRef = nil }
	intruder := f.in(other).newJob("platform-job", noRef, func(j *intunedv1alpha1.IntunedJob) { j.Spec.Adopt = true })
	if err := editor.Create(context.Background(), intruder); err != nil {
		t.Fatalf("the edit user cannot create an IntunedJob in its namespace: %v", err)
	}
	j := f.in(other).waitCondition("platform-job", intunedv1alpha1.ConditionStalled, metav1.ConditionTrue, intunedv1alpha1.ReasonDefaultCredentialsNotAllowed)
	if c := meta.FindStatusCondition(j.Status.Conditions, intunedv1alpha1.ConditionReady); c == nil || c.Reason != intunedv1alpha1.ReasonDefaultCredentialsNotAllowed {
		t.Errorf("Ready = %+v, want reason %s", c, intunedv1alpha1.ReasonDefaultCredentialsNotAllowed)
	}
	if calls := f.sim.Calls(); len(calls) != 0 {
		t.Errorf("Intuned was called for a job that may not use the default credentials: %v", calls)
	}
	if got := f.simJob("platform-job"); got.Payload[0].APIName != "details" || j.Status.Managed {
		t.Errorf("the platform's Job was adopted (managed=%v, payload %+v)", j.Status.Managed, got.Payload)
	}

	// The Secret's own namespace and the allowed one use the default.
	f.create(f.newJob("own-namespace", noRef))
	f.waitReady("own-namespace")
	f.in(allowed).create(f.in(allowed).newJob("allowed-namespace", noRef))
	f.in(allowed).waitReady("allowed-namespace")

	// A job with its own Secret does not need the allowance.
	f.in(other).createSecret("team-creds", f.credentialsData())
	f.in(other).create(f.in(other).newJob("own-secret", func(j *intunedv1alpha1.IntunedJob) {
		j.Spec.CredentialsRef = &intunedv1alpha1.LocalObjectReference{Name: "team-creds"}
	}))
	f.in(other).waitReady("own-secret")

	// "*" allows every namespace: the stalled job now adopts.
	f.defaults.Namespaces = []string{"*"}
	f.restart()
	j = f.in(other).waitReady("platform-job")
	if !j.Status.Managed {
		t.Error("after the admin allowed the namespace, the job did not adopt")
	}
}

// in is f seen from another namespace: the same simulator and manager.
func (f *ijFixture) in(ns string) *ijFixture {
	return &ijFixture{t: f.t, ns: ns, sim: f.sim, api: f.api, poll: f.poll}
}

// editUser is a user bound in namespace ns to the ClusterRole our install
// aggregates into "edit" for IntunedJobs (config/rbac; envtest runs no
// aggregation controller, so the user is bound to it directly).
func editUser(t *testing.T, ns string) client.Client {
	t.Helper()
	ctx := context.Background()
	data, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config/rbac/intunedjob_editor_role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	objs, err := testenv.DecodeManifests(data)
	if err != nil {
		t.Fatal(err)
	}
	role := objs[0].DeepCopy()
	role.SetName("test-intunedjob-editor-" + ns)
	if err := controllertest.Client().Create(ctx, role); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = controllertest.Client().Delete(ctx, role) })
	name := "editor@" + ns
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "editor"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.GetName()},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: name}},
	}
	if err := controllertest.Client().Create(ctx, binding); err != nil {
		t.Fatal(err)
	}
	u, err := controllertest.Env.Environment.AddUser(envtest.User{Name: name}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(u.Config(), client.Options{Scheme: controllertest.Client().Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	// The user really is limited to IntunedJobs: it cannot read the
	// namespace's Secrets, let alone the default one.
	if err := c.List(ctx, &corev1.SecretList{}, client.InNamespace(ns)); !apierrors.IsForbidden(err) {
		t.Fatalf("the edit user lists Secrets (%v): the test would prove nothing about RBAC", err)
	}
	return c
}
