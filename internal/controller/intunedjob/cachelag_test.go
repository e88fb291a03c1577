package intunedjob

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/controller/controllertest"
)

// TestReconcileAfterOwnWriteWaitsForCache: a reconcile that starts before
// the informer cache has delivered the previous reconcile's status write
// reads the job as it was before the create. It must not act on it: no
// call to Intuned, no second Created Event (before the fix it found the Job
// it had just created and claimed it again). The cache here is the
// manager's, held back for one job as a slow watch would hold it.
func TestReconcileAfterOwnWriteWaitsForCache(t *testing.T) {
	held := &heldCache{name: "lagging"}
	f := newIJFixture(t, fixtureOptions{client: func(c client.Client) client.Client {
		held.Client = c
		return held
	}})
	// With the finalizer, as the install's admission policy sets it at
	// create: the first reconcile's only write is the status.
	f.create(f.newJob("lagging", func(j *intunedv1alpha1.IntunedJob) {
		j.Finalizers = []string{intunedv1alpha1.Finalizer}
	}))
	f.waitReady("lagging") // read from the API server: the create's status write landed

	gets := f.callCount("GET", "/jobs/{jobId}")
	start := held.staleReads()
	f.eventually(10*time.Second, func() string {
		if n := held.staleReads() - start; n < 5 {
			return fmt.Sprintf("%d reconciles read the held job so far, want 5", n)
		}
		return ""
	})
	if got := f.callCount("GET", "/jobs/{jobId}") - gets; got != 0 {
		t.Errorf("reconciles of a job the cache holds at a superseded version called GetJob %d times, want 0", got)
	}
	if got := f.callCount("POST", "/jobs"); got != 1 {
		t.Errorf("CreateJob called %d times, want 1", got)
	}
	checkOneCreatedEvent(t, f, "lagging")

	held.release()
	f.waitPolls(2) // the cache caught up: the job is polled again
	f.waitReady("lagging")
	checkOneCreatedEvent(t, f, "lagging")
}

// checkOneCreatedEvent fails unless exactly one Created Event exists for
// name and it was recorded once (client-go's events library turns a repeat
// into a series on the same Event).
func checkOneCreatedEvent(t *testing.T, f *ijFixture, name string) {
	t.Helper()
	n := 0
	for _, e := range controllertest.Events(t, f.ns, name) {
		if e.Reason != "Created" {
			continue
		}
		n++
		if e.Series != nil {
			t.Errorf("Created Event recorded %d times: %s", e.Series.Count, e.Note)
		}
	}
	if n != 1 {
		t.Errorf("%d Created Events, want 1: %v", n, f.events(name))
	}
}

// heldCache serves one IntunedJob, by name, as the cache first returned it
// until release: the other reads and all writes go to the real client.
type heldCache struct {
	client.Client
	name string

	mu       sync.Mutex
	first    *intunedv1alpha1.IntunedJob
	served   int
	released bool
}

func (c *heldCache) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	err := c.Client.Get(ctx, key, obj, opts...)
	job, ok := obj.(*intunedv1alpha1.IntunedJob)
	if err != nil || !ok || key.Name != c.name {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.released:
	case c.first == nil:
		c.first = job.DeepCopy()
	case c.first.ResourceVersion != job.ResourceVersion:
		c.first.DeepCopyInto(job)
		c.served++
	}
	return nil
}

func (c *heldCache) staleReads() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.served
}

func (c *heldCache) release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.released = true
}
