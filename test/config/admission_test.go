package config

import (
	"context"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/testutil/testenv"
)

// TestFinalizerAdmissionPolicy installs the rendered install's CRDs and the
// optional MutatingAdmissionPolicy (config/admission) for real and checks
// what an IntunedJob looks like right after create: the finalizer is added
// unless the object is suspended, other finalizers are kept, and it is never
// added twice.
func TestFinalizerAdmissionPolicy(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := "policy-test"
	c := installAdmissionPolicy(ctx, t, "admission", ns)

	const other = "example.com/keep"
	for _, tc := range []struct {
		name       string
		suspend    bool
		finalizers []string
		want       []string
	}{
		{name: "plain", want: []string{intunedv1alpha1.Finalizer}},
		{name: "suspended", suspend: true, want: nil},
		{name: "keeps-others", finalizers: []string{other}, want: []string{other, intunedv1alpha1.Finalizer}},
		{name: "already-set", finalizers: []string{intunedv1alpha1.Finalizer}, want: []string{intunedv1alpha1.Finalizer}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			job := &intunedv1alpha1.IntunedJob{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "job-" + tc.name, Finalizers: tc.finalizers},
				Spec: intunedv1alpha1.IntunedJobSpec{
					Project: "p", Suspend: tc.suspend,
					Payload: []intunedv1alpha1.JobPayload{{APIName: "a"}},
				},
			}
			if err := c.Create(ctx, job, client.DryRunAll); err != nil {
				t.Fatalf("create: %v", err)
			}
			if !slices.Equal(job.Finalizers, tc.want) {
				t.Errorf("finalizers after create = %q, want %q", job.Finalizers, tc.want)
			}
		})
	}
}

// TestNamespacedAdmissionPolicy: the namespaced install's policy
// (config/admission-namespaced) adds the finalizer in exactly the
// namespaces the namespaced manager watches: elsewhere no manager would
// ever remove it.
func TestNamespacedAdmissionPolicy(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	watched := watchedNamespaces(t, render(t, "namespaced"))
	var selected []string
	for _, o := range render(t, "admission-namespaced") {
		if o.GetKind() != "MutatingAdmissionPolicyBinding" {
			continue
		}
		exprs, _, _ := unstructured.NestedSlice(o.Object, "spec", "matchResources", "namespaceSelector", "matchExpressions")
		for _, e := range exprs {
			values, _, _ := unstructured.NestedStringSlice(e.(map[string]any), "values")
			selected = append(selected, values...)
		}
	}
	slices.Sort(selected)
	if !slices.Equal(selected, watched) {
		t.Fatalf("config/admission-namespaced selects namespaces %q, config/namespaced watches %q: edit both", selected, watched)
	}

	const unwatched = "not-watched"
	c := installAdmissionPolicy(ctx, t, "admission-namespaced", append([]string{unwatched}, watched...)...)
	job := &intunedv1alpha1.IntunedJob{
		ObjectMeta: metav1.ObjectMeta{Namespace: unwatched, Name: "unwatched-job"},
		Spec:       intunedv1alpha1.IntunedJobSpec{Project: "p", Payload: []intunedv1alpha1.JobPayload{{APIName: "a"}}},
	}
	if err := c.Create(ctx, job, client.DryRunAll); err != nil {
		t.Fatalf("create: %v", err)
	}
	if len(job.Finalizers) != 0 {
		t.Errorf("an IntunedJob in a namespace the manager does not watch got finalizers %q", job.Finalizers)
	}
}

// installAdmissionPolicy starts an API server with the install's CRDs and
// the admission policy of config/<overlay>, creates the namespaces, and
// waits until the policy adds the finalizer in the last of them.
func installAdmissionPolicy(ctx context.Context, t *testing.T, overlay string, namespaces ...string) client.Client {
	t.Helper()
	objs := append(renderDefault(t), render(t, overlay)...)
	env, admin := startAPIServer(t, assetsDir(t))
	createCRDsAndNamespaces(ctx, t, admin, objs)
	var policies []*unstructured.Unstructured
	for _, o := range objs {
		if kind := o.GetKind(); kind == "MutatingAdmissionPolicy" || kind == "MutatingAdmissionPolicyBinding" {
			policies = append(policies, o.DeepCopy())
		}
	}
	if len(policies) != 2 {
		t.Fatalf("config/%s renders %d admission policy objects, want a policy and its binding", overlay, len(policies))
	}
	// Created once the CRDs are served, so its REST mapper knows IntunedJob.
	c, err := client.New(env.Config, client.Options{Scheme: testenv.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range namespaces {
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatal(err)
		}
	}
	// The binding must name the prefixed policy, or nothing would happen and
	// this wait fails.
	if err := testenv.CreateAdmissionPolicies(ctx, c, policies, namespaces[len(namespaces)-1]); err != nil {
		t.Fatal(err)
	}
	return c
}

// The default install must apply on clusters without MutatingAdmissionPolicy
// (before Kubernetes 1.36): the policy is an opt-in of its own.
func TestDefaultInstallHasNoAdmissionPolicy(t *testing.T) {
	for _, o := range renderDefault(t) {
		if o.GetObjectKind().GroupVersionKind().Group == "admissionregistration.k8s.io" {
			t.Errorf("config/default renders %s %s: it would not apply before Kubernetes 1.36; it belongs in config/admission", o.GetKind(), o.GetName())
		}
	}
}
