package e2e

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/testutil/emucluster"
	"github.com/intuned-operator/intuned-operator/internal/testutil/flow"
	"github.com/intuned-operator/intuned-operator/internal/testutil/pgtest"
	"github.com/intuned-operator/intuned-operator/internal/testutil/proc"
	"github.com/intuned-operator/intuned-operator/internal/testutil/scenarios"
	"github.com/intuned-operator/intuned-operator/internal/testutil/testenv"
)

// emuEnv is the emulated cluster as a scenarios.Env. Receivers are reached
// at a loopback externalURL (the emulated kubelet proxies it to the ready
// replicas), and faults are the kubelet's own: a SIGKILLed replica held down
// until released, a cut network path.
type emuEnv struct{ h *emucluster.Cluster }

var _ scenarios.Env = (*emuEnv)(nil)

func (e *emuEnv) Client() client.Client { return e.h.Client }
func (e *emuEnv) Sim() *flow.Sim        { return e.h.Sim }
func (e *emuEnv) Kubectl() string       { return e.h.Kubectl }
func (e *emuEnv) Prefix() string        { return "e2e" }

// TokenSwap: the manager runs with --token-propagation-delay=2s.
func (e *emuEnv) TokenSwap() time.Duration { return 30 * time.Second }

// RestartManager: SIGKILL, then a new manager process (it waits for the
// dead one's leader Lease to expire).
func (e *emuEnv) RestartManager(ctx context.Context) error {
	e.h.StopManager(true)
	return e.h.StartManager(ctx)
}

func (e *emuEnv) Expose(s *flow.Samples) {
	port, err := proc.FreePort()
	if err != nil {
		panic(err) // no free loopback port: nothing here can run
	}
	s.UseExternalURL(fmt.Sprintf("http://127.0.0.1:%d/webhooks/intuned", port))
}

func (e *emuEnv) IngestURL(whr *intunedv1alpha1.WebhookReceiver) string { return whr.Spec.ExternalURL }

// ReadAPI: the externalURL's proxy serves the whole receiver, read API too.
func (e *emuEnv) ReadAPI(_ context.Context, p *scenarios.Pair) (string, error) {
	u, err := url.Parse(p.URL)
	if err != nil {
		return "", err
	}
	return u.Scheme + "://" + u.Host, nil
}

func (e *emuEnv) Replicas(_ context.Context, p *scenarios.Pair) (running, ready int, err error) {
	for _, r := range e.h.Kubelet.ReceiverReplicas(p.NS, p.Receiver) {
		running++
		if r.Ready {
			ready++
		}
	}
	return running, ready, nil
}

// LoseReceiver SIGKILLs the replica's process and keeps it down until
// released.
func (e *emuEnv) LoseReceiver(_ context.Context, p *scenarios.Pair, ordinal int) (func(context.Context) error, error) {
	if err := e.h.Kubelet.KillReceiver(p.NS, p.Receiver, ordinal, time.Hour); err != nil {
		return nil, err
	}
	return func(context.Context) error {
		e.h.Kubelet.ReleaseReceiver(p.NS, p.Receiver, ordinal)
		return nil
	}, nil
}

func (e *emuEnv) PartitionReceiver(_ context.Context, p *scenarios.Pair, on bool) error {
	return e.h.Kubelet.PartitionReceiver(p.NS, p.Receiver, on)
}

// PostgresDSN: a PostgreSQL server on loopback for this test.
func (e *emuEnv) PostgresDSN(t *testing.T, ctx context.Context) string {
	t.Helper()
	if _, err := pgtest.FindBinDir(); err != nil {
		if !testenv.InCI() {
			t.Skip("PostgreSQL binaries not found:", err)
		}
		t.Fatal(err)
	}
	return scenarios.StartPostgres(t, ctx, pgtest.Options{})
}

// ExpectHealthy fails the test if the kubelet could not run a receiver Pod
// as specified or the manager died.
func (e *emuEnv) ExpectHealthy(t *testing.T) {
	before := len(e.h.Kubelet.Failures())
	t.Cleanup(func() {
		if f := e.h.Kubelet.Failures()[before:]; len(f) > 0 {
			t.Errorf("receiver Pods did not run as specified:\n%s", strings.Join(f, "\n"))
		}
		if exited, log := e.h.ManagerExited(); exited {
			t.Errorf("manager exited: %s", log)
		}
	})
}
