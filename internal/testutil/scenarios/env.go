// Package scenarios holds the end-to-end scenarios, each written once and
// run on the local clusters that can run it: the emulated kubelet of
// test/e2e (internal/testutil/emucluster) and the real node of
// test/cluster (internal/testutil/kcluster). docs/e2e.md lists which
// environment runs which scenario, and why.
//
// Only tests import this package: it links testing.
package scenarios

import (
	"context"
	"errors"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/testutil/flow"
	"github.com/intuned-operator/intuned-operator/internal/testutil/pgtest"
)

// ErrUnsupported is returned by an Env for a fault it cannot inject.
var ErrUnsupported = errors.New("not supported by this environment")

// Env is a local cluster with the operator installed and intuned-sim
// standing in for Intuned: what a scenario needs to know of it, and the
// faults it can inject.
type Env interface {
	// Client is a cluster admin.
	Client() client.Client
	// Sim is the simulator every namespace's credentials point at.
	Sim() *flow.Sim
	// Kubectl is the kubectl binary that renders config/samples.
	Kubectl() string
	// Prefix starts every namespace and Intuned job id the scenarios make
	// (the simulator's workspace is shared by every test).
	Prefix() string
	// Expose changes the sample WebhookReceiver so that the simulator can
	// reach it.
	Expose(s *flow.Samples)
	// IngestURL is the URL the receiver must publish in status.url, and
	// the simulator post to.
	IngestURL(whr *intunedv1alpha1.WebhookReceiver) string
	// ReadAPI is the base URL of the receiver's read API, once Ready.
	ReadAPI(ctx context.Context, p *Pair) (string, error)
	// Replicas counts the receiver's replicas: running and ready.
	Replicas(ctx context.Context, p *Pair) (running, ready int, err error)
	// LoseReceiver takes replica ordinal of the receiver down abruptly.
	// The replica comes back after release; release reports anything the
	// replacement got wrong.
	LoseReceiver(ctx context.Context, p *Pair, ordinal int) (release func(context.Context) error, err error)
	// PartitionReceiver cuts (on) or heals the network path from Intuned
	// to the receiver while its Pods stay Ready (or ErrUnsupported).
	PartitionReceiver(ctx context.Context, p *Pair, on bool) error
	// RestartManager kills the manager abruptly (SIGKILL, or a Pod deleted
	// without grace) and waits for its replacement to run.
	RestartManager(ctx context.Context) error
	// TokenSwap is how long a token rotation takes at most: the operator
	// waits for the kubelet to propagate the new Secret before it makes
	// the new token current.
	TokenSwap() time.Duration
	// PostgresDSN is a fresh database the receiver's Pods can reach,
	// stopped when the test ends; it skips the test where PostgreSQL
	// cannot run (outside CI).
	PostgresDSN(t *testing.T, ctx context.Context) string
	// ExpectHealthy fails t, when it ends, if the environment saw
	// something go wrong that the scenario does not look at (a receiver
	// Pod that could not run as specified, the manager exiting).
	ExpectHealthy(t *testing.T)
}

// StartPostgres starts a PostgreSQL server with opts for this test (stopped
// when it ends) and returns the DSN of a fresh database on it.
func StartPostgres(t *testing.T, ctx context.Context, opts pgtest.Options) string {
	t.Helper()
	pg, err := pgtest.Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pg.Stop() })
	dsn, err := pg.CreateDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return dsn
}

// Context is a context that ends after d or with the test.
func Context(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
