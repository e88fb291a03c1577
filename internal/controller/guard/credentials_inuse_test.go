package guard

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/intuned-operator/intuned-operator/internal/controller/controllertest"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
)

func TestCallsIntunedOnDelete(t *testing.T) {
	for _, tc := range []struct {
		name      string
		finalizer bool
		policy    intunedv1alpha1.DeletionPolicy
		want      bool
	}{
		{"finalizer, Delete", true, intunedv1alpha1.DeletionPolicyDelete, true},
		{"finalizer, default policy", true, "", true},
		{"finalizer, Orphan", true, intunedv1alpha1.DeletionPolicyOrphan, false},
		{"no finalizer (never synced, suspended)", false, intunedv1alpha1.DeletionPolicyDelete, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := &intunedv1alpha1.IntunedJob{Spec: intunedv1alpha1.IntunedJobSpec{DeletionPolicy: tc.policy}}
			if tc.finalizer {
				j.Finalizers = []string{intunedv1alpha1.Finalizer}
			}
			if got := callsIntunedOnDelete(j); got != tc.want {
				t.Errorf("callsIntunedOnDelete = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestCredentialsOutliveTheirIntunedJobs: a credentials Secret deleted
// before the IntunedJob that needs it (kubectl delete -k of the samples, a
// namespace deletion) stays until that IntunedJob is gone, then goes. The
// IntunedJob controller is not running here; the test plays its finalizer.
func TestCredentialsOutliveTheirIntunedJobs(t *testing.T) {
	ns := controllertest.NewNamespace(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	startCredentialsInUse(t)
	c := controllertest.Client()
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "creds"}, StringData: map[string]string{"apiKey": "k"}}
	if err := c.Create(ctx, secret); err != nil {
		t.Fatal(err)
	}
	job := jobUsing(ns, "job-uses-creds", "creds")
	if err := c.Create(ctx, job); err != nil {
		t.Fatal(err)
	}
	key := types.NamespacedName{Namespace: ns, Name: "creds"}
	waitSecret := func(what string, cond func(*corev1.Secret, error) bool) {
		t.Helper()
		for {
			var s corev1.Secret
			err := c.Get(ctx, key, &s)
			if cond(&s, err) {
				return
			}
			if ctx.Err() != nil {
				t.Fatalf("%s: %v (finalizers %v)", what, err, s.Finalizers)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitSecret("in-use finalizer added", func(s *corev1.Secret, err error) bool {
		return err == nil && controllerutil.ContainsFinalizer(s, intunedv1alpha1.FinalizerCredentialsInUse)
	})

	// Deleted first: the Secret stays while the IntunedJob needs it.
	if err := c.Delete(ctx, secret); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, job); err != nil {
		t.Fatal(err)
	}
	waitSecret("deletion pending, Secret kept", func(s *corev1.Secret, err error) bool {
		return err == nil && !s.DeletionTimestamp.IsZero()
	})
	var s corev1.Secret
	if err := c.Get(ctx, key, &s); err != nil || !controllerutil.ContainsFinalizer(&s, intunedv1alpha1.FinalizerCredentialsInUse) {
		t.Fatalf("the Secret lost its in-use finalizer while the IntunedJob still needs it: %v %v", err, s.Finalizers)
	}
	// The user learns why, on the Secret (which the controller only knows
	// by its cached metadata).
	controllertest.Eventually(t, time.Minute, func() string {
		if slices.ContainsFunc(controllertest.Events(t, ns, "creds"), func(e eventsv1.Event) bool {
			return e.Reason == "CredentialsInUse" && e.Regarding.Kind == "Secret"
		}) {
			return ""
		}
		return "no CredentialsInUse Event on Secret creds"
	})

	// The IntunedJob's finalizer has used the credentials and is done.
	var j intunedv1alpha1.IntunedJob
	if err := c.Get(ctx, client.ObjectKeyFromObject(job), &j); err != nil {
		t.Fatal(err)
	}
	controllerutil.RemoveFinalizer(&j, intunedv1alpha1.Finalizer)
	if err := c.Update(ctx, &j); err != nil {
		t.Fatal(err)
	}
	waitSecret("Secret deleted once no IntunedJob needs it", func(_ *corev1.Secret, err error) bool {
		return apierrors.IsNotFound(err)
	})
}

// TestCredentialsReleasedWhenAJobMoves: an IntunedJob that moves to other
// credentials releases the old Secret (its in-use finalizer goes) and keeps
// the new one. The watch maps a job's events only to Secrets whose
// finalizer disagrees with what the job needs; a move must still reach the
// Secret it left.
func TestCredentialsReleasedWhenAJobMoves(t *testing.T) {
	ns := controllertest.NewNamespace(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	startCredentialsInUse(t)
	c := controllertest.Client()
	for _, name := range []string{"creds-a", "creds-b"} {
		if err := c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, StringData: map[string]string{"apiKey": "k"}}); err != nil {
			t.Fatal(err)
		}
	}
	job := jobUsing(ns, "job-moves", "creds-a")
	if err := c.Create(ctx, job); err != nil {
		t.Fatal(err)
	}
	kept := func(name string, want bool) {
		t.Helper()
		controllertest.Eventually(t, time.Minute, func() string {
			var s corev1.Secret
			if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &s); err != nil {
				return err.Error()
			}
			if controllerutil.ContainsFinalizer(&s, intunedv1alpha1.FinalizerCredentialsInUse) != want {
				return name + ": in-use finalizer is not as wanted yet"
			}
			return ""
		})
	}
	kept("creds-a", true)
	kept("creds-b", false)

	job.Spec.CredentialsRef.Name = "creds-b"
	if err := c.Update(ctx, job); err != nil {
		t.Fatal(err)
	}
	kept("creds-b", true)
	kept("creds-a", false)

	// Orphan: the job no longer needs credentials to be deleted.
	job.Spec.DeletionPolicy = intunedv1alpha1.DeletionPolicyOrphan
	if err := c.Update(ctx, job); err != nil {
		t.Fatal(err)
	}
	kept("creds-b", false)
	t.Cleanup(func() {
		controllerutil.RemoveFinalizer(job, intunedv1alpha1.Finalizer)
		_ = c.Update(context.Background(), job)
	})
}

// startCredentialsInUse runs the guard alone; the tests play the
// IntunedJob controller's finalizer.
func startCredentialsInUse(t *testing.T) {
	controllertest.StartManager(t, func(mgr ctrl.Manager) error {
		return (&CredentialsInUse{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder("credentials-in-use")}).SetupWithManager(mgr)
	})
}

// jobUsing is an IntunedJob with the finalizer (it calls Intuned when
// deleted) and the credentials Secret secret.
func jobUsing(ns, name, secret string) *intunedv1alpha1.IntunedJob {
	return &intunedv1alpha1.IntunedJob{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Finalizers: []string{intunedv1alpha1.Finalizer}},
		Spec: intunedv1alpha1.IntunedJobSpec{
			Project:        "p",
			CredentialsRef: &intunedv1alpha1.LocalObjectReference{Name: secret},
			Payload:        []intunedv1alpha1.JobPayload{{APIName: "list", Parameters: &apiextensionsv1.JSON{Raw: []byte(`{}`)}}},
		},
	}
}
