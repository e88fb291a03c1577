package scenarios

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/testutil/flow"
	"github.com/intuned-operator/intuned-operator/internal/testutil/poll"
)

// Quickstart is the README's quickstart (and `make demo`) asserted: the
// samples, one trigger, every delivery stored exactly once and byte for
// byte, and that JobRun in the IntunedJob's status, COMPLETED.
func Quickstart(t *testing.T, env Env) *Pair {
	ctx := Context(t, 3*time.Minute)
	p := NewPair(t, ctx, env, "quickstart", nil)
	p.WaitReady(ctx)
	p.Trigger(ctx, "1")
	rep := p.WaitAllDelivered(ctx, flow.QuickstartDeliveries)
	runs := p.JobRunIDs(ctx)
	if len(runs) != 1 {
		t.Fatalf("JobRuns in the delivery log: %v, want one", runs)
	}
	last := p.WaitJobRunFinished(ctx, "1")
	if _, ok := runs[last.ID]; !ok {
		t.Errorf("status.lastJobRun.id = %q, not the JobRun that delivered (%v)", last.ID, runs)
	}
	if last.Status != "COMPLETED" {
		t.Errorf("status.lastJobRun.status = %q, want COMPLETED", last.Status)
	}
	t.Logf("quickstart: %s; lastJobRun %s %s", rep, last.ID, last.Status)
	return p
}

// ReceiverLostMidRun: after a first run is stored, the receiver's only
// replica goes down abruptly during a second run and stays down until the
// simulator has seen a delivery fail. The first run's data is still there
// when it comes back (its volume survived), and Intuned's retries bring the
// rest of the second run in.
func ReceiverLostMidRun(t *testing.T, env Env) {
	ctx := Context(t, 5*time.Minute)
	p := NewPair(t, ctx, env, "receiver-lost", nil)
	p.WaitReady(ctx)
	p.Trigger(ctx, "1")
	p.WaitAllDelivered(ctx, flow.QuickstartDeliveries)
	p.WaitJobRunFinished(ctx, "1")
	p.WaitReplicasReady(ctx, 1)

	// The second run's Runs last 5 real seconds instead of one, so the
	// receiver is surely lost while its details Runs are still to deliver,
	// however long the loss takes on a busy machine.
	sim := env.Sim()
	if err := sim.SetRunDuration(ctx, 5*time.Minute); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.SetRunDuration(context.Background(), flow.QuickstartRunDuration) })
	p.Trigger(ctx, "2")
	p.WaitStored(ctx, flow.QuickstartDeliveries+1)
	release, err := env.LoseReceiver(ctx, p, 0)
	if err != nil {
		t.Fatal(err)
	}
	p.WaitFailedAttempts(ctx, 1)
	if err := release(ctx); err != nil {
		t.Fatal(err)
	}
	rep := p.WaitAllDelivered(ctx, 2*flow.QuickstartDeliveries)
	if rep.Attempts <= rep.Sent {
		t.Errorf("no retries happened (%s): the fault missed the run", rep)
	}
	t.Logf("receiver lost mid-run: %s", rep)
}

// TokenRotationDuringRun rotates the receiver's token while a JobRun still
// has deliveries to make, then runs the job again on the new token.
// Intuned keeps the sink a JobRun started with (job_configuration_snapshot),
// so the first run's remaining deliveries carry the old token to the end,
// retries included; they must all be stored.
//
// Where the environment can cut the network path to the receiver (the Pod
// stays up and Ready) and propagates Secrets at once, the case is made
// certain: the path is cut from the first delivery until the operator
// considers the rotation finished, so every remaining delivery of the first
// run arrives after the switch. On a real node the new token reaches the
// receiver through the kubelet's Secret volume, within Env.TokenSwap.
func TokenRotationDuringRun(t *testing.T, env Env) {
	ctx := Context(t, 3*time.Minute+env.TokenSwap())
	c := env.Client()
	p := NewPair(t, ctx, env, "token-rotation", nil)
	p.WaitReady(ctx)
	oldToken, _, err := flow.ReceiverTokens(ctx, c, p.NS, p.Receiver)
	if err != nil {
		t.Fatal(err)
	}
	p.Trigger(ctx, "1")
	p.WaitStored(ctx, 1)
	partitioned := true
	switch err := env.PartitionReceiver(ctx, p, true); {
	case errors.Is(err, ErrUnsupported):
		partitioned = false
	case err != nil:
		t.Fatal(err)
	}
	if err := flow.RotateToken(ctx, c, p.NS, p.Receiver, "r1"); err != nil {
		t.Fatal(err)
	}
	// The switch is done when the new token is current and the job's
	// Intuned sink carries it (Synced). While partitioned, also wait for
	// the operator to stop accepting the old token, bounded: a careful
	// operator may keep it for Intuned's whole retry window.
	rctx, rcancel := context.WithTimeout(ctx, env.TokenSwap())
	defer rcancel()
	err = poll.Eventually(rctx, 100*time.Millisecond, "new token current and pushed to Intuned", func(ctx context.Context) (bool, error) {
		tok, _, err := flow.ReceiverTokens(ctx, c, p.NS, p.Receiver)
		if err != nil {
			return false, err
		}
		if tok == oldToken {
			return false, errors.New("token not changed yet")
		}
		ij := p.Get(ctx)
		if !meta.IsStatusConditionTrue(ij.Status.Conditions, intunedv1alpha1.ConditionSynced) {
			return false, fmt.Errorf("job conditions %v", ij.Status.Conditions)
		}
		if !partitioned {
			return true, nil
		}
		var whr intunedv1alpha1.WebhookReceiver
		if err := c.Get(ctx, client.ObjectKey{Namespace: p.NS, Name: p.Receiver}, &whr); err != nil {
			return false, err
		}
		var sec corev1.Secret
		if err := c.Get(ctx, client.ObjectKey{Namespace: p.NS, Name: whr.Status.TokenSecretName}, &sec); err != nil {
			return false, err
		}
		_, keepsOld := sec.Data["previous-token"]
		return !keepsOld, errors.New("previous-token still accepted")
	})
	if partitioned {
		t.Logf("while cut off: %v", err)
		if err := env.PartitionReceiver(ctx, p, false); err != nil {
			t.Fatal(err)
		}
	} else if err != nil {
		t.Fatal(err)
	}
	rep := p.WaitAllDelivered(ctx, flow.QuickstartDeliveries)
	t.Logf("first run (old token): %s", rep)
	p.Trigger(ctx, "2")
	rep = p.WaitAllDelivered(ctx, 2*flow.QuickstartDeliveries)
	t.Logf("both runs: %s", rep)
}

// PostgresScaledOut runs the receiver on PostgreSQL (the DSN from a Secret
// file) with several replicas behind one address: deliveries spread over
// them, and one replica lost mid-run loses nothing. The replicas keep
// running for the caller, and stop when the test ends, before the database.
func PostgresScaledOut(t *testing.T, env Env, replicas int32) *Pair {
	ctx := Context(t, 5*time.Minute)
	dsn := env.PostgresDSN(t, ctx)
	p := NewPair(t, ctx, env, "postgres", func(s *flow.Samples) {
		sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: s.Receiver.Namespace, Name: "receiver-db"}, StringData: map[string]string{"dsn": dsn}}
		if err := env.Client().Create(ctx, sec); err != nil {
			t.Fatal(err)
		}
		s.Receiver.Spec.Replicas = &replicas
		s.Receiver.Spec.Storage = &intunedv1alpha1.ReceiverStorage{Postgres: &intunedv1alpha1.PostgresStorage{
			DSNSecretRef: intunedv1alpha1.SecretKeyRef{Name: "receiver-db", Key: "dsn"}}}
	})
	p.ScaleToZeroAtEnd()
	p.WaitReady(ctx)
	p.WaitReplicasReady(ctx, int(replicas))
	p.Trigger(ctx, "1")
	p.WaitStored(ctx, 1)
	release, err := env.LoseReceiver(ctx, p, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := release(ctx); err != nil {
		t.Fatal(err)
	}
	rep := p.WaitAllDelivered(ctx, flow.QuickstartDeliveries)
	t.Logf("postgres, %d replicas, one lost mid-run: %s", replicas, rep)
	return p
}

// BackupRestore backs up the quickstart's SQLite receiver (GET /v1/backup) while its JobRun is
// still delivering, restores the backup into a second, new WebhookReceiver (PUT /v1/backup with
// that receiver's ingest token) and reads the deliveries back from it: every delivery in the
// backup, at least the one stored before it was taken, is served as the first receiver serves it
// (same runId, receive time, cursor and body, byte for byte), in the same order, and the first
// receiver still stores the whole run.
func BackupRestore(t *testing.T, env Env) {
	ctx := Context(t, 4*time.Minute)
	p := NewPair(t, ctx, env, "backup", nil)
	p.WaitReady(ctx)
	p.Trigger(ctx, "1")
	p.WaitStored(ctx, 1)
	backup, err := p.RC.Backup(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rep := p.WaitAllDelivered(ctx, flow.QuickstartDeliveries)

	q := NewPair(t, ctx, env, "restored", nil)
	q.WaitReady(ctx)
	// Ready is the Pod's readiness; a real node's Service routes to it a
	// moment later (kube-proxy rejects the connection until then).
	if err := poll.Eventually(ctx, 250*time.Millisecond, "the new receiver reachable", func(ctx context.Context) (bool, error) {
		_, err := q.RC.List(ctx, p.Job, "")
		return err == nil, err
	}); err != nil {
		t.Fatal(err)
	}
	ingest, _, err := flow.ReceiverTokens(ctx, env.Client(), q.NS, q.Receiver)
	if err != nil {
		t.Fatal(err)
	}
	answer, err := q.RC.Restore(ctx, ingest, backup)
	if err != nil {
		t.Fatal(err)
	}
	restored, err := q.RC.List(ctx, p.Job, "")
	if err != nil {
		t.Fatal(err)
	}
	stored, err := p.RC.List(ctx, p.Job, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(restored) == 0 || len(restored) > len(stored) {
		t.Fatalf("%d deliveries restored from the backup, %d stored by the first receiver; want 1 to %d", len(restored), len(stored), len(stored))
	}
	for i, r := range restored {
		s := stored[i]
		if r.RunID != s.RunID || r.Cursor != s.Cursor || !r.ReceivedAt.Equal(s.ReceivedAt) || !bytes.Equal(r.Body, s.Body) {
			t.Fatalf("restored delivery %d: %+v\nthe first receiver's: %+v", i, r, s)
		}
		raw, err := q.RC.Raw(ctx, r.RunID)
		if err != nil {
			t.Fatal(err)
		}
		want, err := p.RC.Raw(ctx, r.RunID)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(raw, want) {
			t.Fatalf("run %s: restored body %q, first receiver's %q", r.RunID, raw, want)
		}
	}
	t.Logf("backup of %d bytes taken with %d of %d deliveries stored (%s); restored: %s", len(backup), len(restored), len(stored), rep, answer)
}
