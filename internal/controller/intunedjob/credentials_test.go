package intunedjob

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/controller/controllertest"
)

// TestIntunedJobCredentialsCache: polls read the credentials from memory,
// and the cache is never wrong: a changed Secret's new key is what the next
// reconcile sends, a deleted Secret is CredentialsNotFound.
func TestIntunedJobCredentialsCache(t *testing.T) {
	f := newIJFixture(t, fixtureOptions{})
	const secret, name = "cached-creds", "cached-creds-job"
	f.createSecret(secret, f.credentialsData())
	f.create(f.newJob(name, func(j *intunedv1alpha1.IntunedJob) { j.Spec.CredentialsRef.Name = secret }))
	f.waitReady(name)

	fetched := func() int {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.rec.secrets.fetched()
	}
	before := fetched()
	f.waitPolls(3)
	if got := fetched() - before; got != 0 {
		t.Errorf("%d Secret reads from the API server in 3 polls of an unchanged Secret; want 0 (cached)", got)
	}

	// Changed: the next reconcile (the watch event's) sends the new key,
	// which Intuned refuses.
	f.updateSecret(secret, map[string]string{intunedv1alpha1.CredentialsKeyAPIKey: "rotated-wrong-key"})
	f.waitCondition(name, intunedv1alpha1.ConditionReady, metav1.ConditionFalse, intunedv1alpha1.ReasonCredentialsInvalid)
	// And back: the right key again.
	f.updateSecret(secret, map[string]string{intunedv1alpha1.CredentialsKeyAPIKey: f.sim.APIKey})
	f.waitReady(name)

	// Deleted: not served from memory.
	if err := controllertest.Client().Delete(context.Background(),
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: secret}}); err != nil {
		t.Fatal(err)
	}
	f.waitCondition(name, intunedv1alpha1.ConditionReady, metav1.ConditionFalse, intunedv1alpha1.ReasonCredentialsNotFound)
}

// TestSecretFinalizerChangeQueuesNoJob: the credentials guard's in-use
// finalizer on a Secret changes nothing a job reads, so it re-reconciles no
// job (at 10,000 jobs that was a GetJob on Intuned per job); a label change
// still does, as any change the metadata watch cannot see into might be.
func TestSecretFinalizerChangeQueuesNoJob(t *testing.T) {
	f := newIJFixture(t, fixtureOptions{poll: time.Hour}) // no polls: every GetJob is a watch event's
	f.create(f.newJob("finalizer-only"))
	f.waitReady("finalizer-only")
	gets := f.callCount("GET", "/jobs/{jobId}")

	change := func(mutate func(*corev1.Secret)) {
		t.Helper()
		secret := f.mutateSecret(credsSecret, mutate)
		// Until the manager's cache has it, its watch event may not have run.
		f.eventually(10*time.Second, func() string {
			var m metav1.PartialObjectMetadata
			m.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
			if err := f.rec.secretMetadata.Get(context.Background(), client.ObjectKeyFromObject(secret), &m); err != nil || m.ResourceVersion != secret.ResourceVersion {
				return fmt.Sprintf("the manager's cache has the Secret at %s (%v), want %s", m.ResourceVersion, err, secret.ResourceVersion)
			}
			return ""
		})
	}
	change(func(s *corev1.Secret) { s.Finalizers = append(s.Finalizers, "example.com/in-use") })
	t.Cleanup(func() { change(func(s *corev1.Secret) { s.Finalizers = nil }) })
	time.Sleep(time.Second) // room for a reconcile the finalizer might have queued
	change(func(s *corev1.Secret) { metav1.SetMetaDataLabel(&s.ObjectMeta, "team", "scrapers") })
	f.eventually(10*time.Second, func() string {
		if f.callCount("GET", "/jobs/{jobId}") == gets {
			return "the label change re-reconciled no job yet"
		}
		return ""
	})
	time.Sleep(time.Second)
	if got := f.callCount("GET", "/jobs/{jobId}") - gets; got != 1 {
		t.Errorf("a finalizer change and a label change on the credentials Secret: %d GetJob calls, want 1 (the label's)", got)
	}
}
