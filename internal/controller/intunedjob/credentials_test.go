package intunedjob

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

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
