package scenarios

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/testutil/flow"
	"github.com/intuned-operator/intuned-operator/internal/testutil/poll"
)

var nsSeq atomic.Int32

// Pair is the quickstart samples (credentials, WebhookReceiver,
// IntunedJob) applied into a namespace of their own.
type Pair struct {
	t   *testing.T
	Env Env

	NS, Receiver, Job, Project string
	// URL is the receiver's ingest URL (status.url), known once Ready.
	URL string
	// RC reads the receiver's store, once Ready.
	RC flow.ReceiverClient
}

// Cleanup registers f to run when the Pair's test ends (an Env that
// changes the cluster for a fault undoes it there, whatever the outcome).
func (p *Pair) Cleanup(f func()) { p.t.Cleanup(f) }

// NewPair applies config/samples into a new namespace, changed only where
// this machine differs from a user's: the credentials point at intuned-sim,
// the receiver is exposed as the environment can (Env.Expose), and the job
// (whose name is also its Intuned id) gets a name unique in the simulator's
// workspace. mutate, when not nil, changes the samples before they are
// applied (the namespace exists by then).
func NewPair(t *testing.T, ctx context.Context, env Env, name string, mutate func(*flow.Samples)) *Pair {
	t.Helper()
	return NewPairIn(t, ctx, env, fmt.Sprintf("%s-%d-%s", env.Prefix(), nsSeq.Add(1), name), name, mutate)
}

// NewPairIn is NewPair in namespace (created, unless it exists, enforcing
// the restricted Pod Security Standard, as a careful user's would).
func NewPairIn(t *testing.T, ctx context.Context, env Env, namespace, name string, mutate func(*flow.Samples)) *Pair {
	t.Helper()
	s, err := flow.LoadSamples(ctx, env.Kubectl())
	if err != nil {
		t.Fatal(err)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace, Labels: map[string]string{
		"pod-security.kubernetes.io/enforce": "restricted",
		"pod-security.kubernetes.io/warn":    "restricted",
	}}}
	if err := env.Client().Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	s.UseSim(namespace, env.Sim())
	env.Expose(s)
	s.Job.Name = env.Prefix() + "-" + name
	s.Job.Spec.PollInterval = &metav1.Duration{Duration: 10 * time.Second}
	if mutate != nil {
		mutate(s)
	}
	p := &Pair{t: t, Env: env, NS: namespace, Receiver: s.Receiver.Name, Job: s.Job.EffectiveJobID(), Project: s.Job.Spec.Project}
	if err := s.Apply(ctx, env.Client()); err != nil {
		t.Fatal(err)
	}
	env.ExpectHealthy(t)
	return p
}

// WaitReady waits for the receiver to be Ready with the ingest URL the
// environment expects, and the job Synced with that URL in its sink; then
// it sets up the read client.
func (p *Pair) WaitReady(ctx context.Context) {
	p.t.Helper()
	c := p.Env.Client()
	err := poll.Eventually(ctx, 200*time.Millisecond, "WebhookReceiver Ready", func(ctx context.Context) (bool, error) {
		var whr intunedv1alpha1.WebhookReceiver
		if err := c.Get(ctx, client.ObjectKey{Namespace: p.NS, Name: p.Receiver}, &whr); err != nil {
			return false, err
		}
		want := p.Env.IngestURL(&whr)
		if whr.Status.URL != "" && whr.Status.URL != want {
			return false, fmt.Errorf("status.url = %q, want %q", whr.Status.URL, want)
		}
		p.URL = whr.Status.URL
		return meta.IsStatusConditionTrue(whr.Status.Conditions, intunedv1alpha1.ConditionReady), fmt.Errorf("conditions %v", whr.Status.Conditions)
	})
	if err != nil {
		p.t.Fatal(err)
	}
	p.WaitSynced(ctx)
	_, read, err := flow.ReceiverTokens(ctx, c, p.NS, p.Receiver)
	if err != nil {
		p.t.Fatal(err)
	}
	if read == "" {
		p.t.Fatal("token Secret has no read-token")
	}
	base, err := p.Env.ReadAPI(ctx, p)
	if err != nil {
		p.t.Fatal(err)
	}
	p.RC = flow.ReceiverClient{BaseURL: base, ReadToken: read}
}

// WaitSynced waits for the job to be Synced with the receiver's URL in its
// Intuned sink.
func (p *Pair) WaitSynced(ctx context.Context) {
	p.t.Helper()
	err := poll.Eventually(ctx, 200*time.Millisecond, "IntunedJob Synced with the receiver's URL", func(ctx context.Context) (bool, error) {
		ij := p.Get(ctx)
		if ij.Status.Sink == nil || ij.Status.Sink.URL != p.URL {
			return false, fmt.Errorf("status.sink %+v, want url %q", ij.Status.Sink, p.URL)
		}
		return meta.IsStatusConditionTrue(ij.Status.Conditions, intunedv1alpha1.ConditionSynced), fmt.Errorf("conditions %v", ij.Status.Conditions)
	})
	if err != nil {
		p.t.Fatal(err)
	}
}

// Get reads the IntunedJob.
func (p *Pair) Get(ctx context.Context) *intunedv1alpha1.IntunedJob {
	p.t.Helper()
	var ij intunedv1alpha1.IntunedJob
	if err := p.Env.Client().Get(ctx, client.ObjectKey{Namespace: p.NS, Name: p.Job}, &ij); err != nil && ctx.Err() == nil {
		p.t.Fatal(err)
	}
	return &ij
}

// Trigger sets the job's trigger annotation to value.
func (p *Pair) Trigger(ctx context.Context, value string) {
	p.t.Helper()
	if err := flow.Trigger(ctx, p.Env.Client(), p.NS, p.Job, value); err != nil {
		p.t.Fatal(err)
	}
}

// WaitStored waits until at least n deliveries of the job are stored.
func (p *Pair) WaitStored(ctx context.Context, n int) {
	p.t.Helper()
	err := poll.Eventually(ctx, 100*time.Millisecond, fmt.Sprintf("%d deliveries stored", n), func(ctx context.Context) (bool, error) {
		got, err := p.RC.List(ctx, p.Job, "")
		return len(got) >= n, err
	})
	if err != nil {
		p.t.Fatal(err)
	}
}

// WaitAllDelivered is flow.WaitAllDelivered, and every delivery was posted
// to the receiver's URL.
func (p *Pair) WaitAllDelivered(ctx context.Context, want int) flow.DeliveryReport {
	p.t.Helper()
	sim := p.Env.Sim()
	rep, err := flow.WaitAllDelivered(ctx, sim, p.RC, p.Job, want)
	if err != nil {
		p.t.Fatal(err)
	}
	ds, err := sim.Deliveries(ctx, p.Job)
	if err != nil {
		p.t.Fatal(err)
	}
	for _, d := range ds {
		if d.URL != p.URL {
			p.t.Errorf("run %s was posted to %q, not to the receiver's URL %q", d.RunID, d.URL, p.URL)
		}
	}
	return rep
}

// WaitFailedAttempts waits until n deliveries of the job had an attempt
// that failed.
func (p *Pair) WaitFailedAttempts(ctx context.Context, n int) {
	p.t.Helper()
	if err := flow.WaitFailedAttempts(ctx, p.Env.Sim(), p.Job, n); err != nil {
		p.t.Fatal(err)
	}
}

// WaitJobRunFinished waits until status.lastJobRun names a finished JobRun
// started by trigger (any, when empty) and returns it.
func (p *Pair) WaitJobRunFinished(ctx context.Context, trigger string) *intunedv1alpha1.JobRunSummary {
	p.t.Helper()
	last, err := flow.WaitJobRunFinished(ctx, p.Env.Client(), p.NS, p.Job, trigger)
	if err != nil {
		p.t.Fatal(err)
	}
	return last
}

// WaitReplicasReady waits until exactly n replicas of the receiver run, all
// of them ready.
func (p *Pair) WaitReplicasReady(ctx context.Context, n int) {
	p.t.Helper()
	err := poll.Eventually(ctx, 200*time.Millisecond, fmt.Sprintf("%d receiver replicas ready", n), func(ctx context.Context) (bool, error) {
		running, ready, err := p.Env.Replicas(ctx, p)
		return err == nil && running == n && ready == n, fmt.Errorf("%d running, %d ready (%v)", running, ready, err)
	})
	if err != nil {
		p.t.Fatal(err)
	}
}

// JobRunIDs counts the simulator's deliveries of the job by JobRun.
func (p *Pair) JobRunIDs(ctx context.Context) map[string]int {
	p.t.Helper()
	ds, err := p.Env.Sim().Deliveries(ctx, p.Job)
	if err != nil {
		p.t.Fatal(err)
	}
	out := map[string]int{}
	for _, d := range ds {
		out[d.JobRunID]++
	}
	return out
}

// ScaleToZeroAtEnd stops the receiver's replicas when the test ends (and
// waits for them to be gone): before anything they depend on, cleaned up
// earlier-registered, goes away.
func (p *Pair) ScaleToZeroAtEnd() {
	p.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		patch := client.RawPatch("application/merge-patch+json", []byte(`{"spec":{"replicas":0}}`))
		whr := &intunedv1alpha1.WebhookReceiver{ObjectMeta: metav1.ObjectMeta{Namespace: p.NS, Name: p.Receiver}}
		if err := p.Env.Client().Patch(ctx, whr, patch); err != nil {
			p.t.Error(err)
			return
		}
		err := poll.Eventually(ctx, 200*time.Millisecond, "receivers stopped", func(ctx context.Context) (bool, error) {
			running, _, err := p.Env.Replicas(ctx, p)
			return err == nil && running == 0, err
		})
		if err != nil {
			p.t.Error(err)
		}
	})
}
