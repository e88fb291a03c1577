// Package controllertest is what the envtest suites of the controller
// packages share: one API server per test binary, a namespace per test, and
// a manager built like cmd/manager's (same cache, client and field
// indexes). Only tests import it.
package controllertest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/intuned-operator/intuned-operator/internal/controller/cachepolicy"
	"github.com/intuned-operator/intuned-operator/internal/controller/index"
	"github.com/intuned-operator/intuned-operator/internal/controller/sharding"
	"github.com/intuned-operator/intuned-operator/internal/testutil/poll"
	"github.com/intuned-operator/intuned-operator/internal/testutil/testenv"
)

// Env is the API server shared by every test of one package. Each test
// works in its own namespace and starts its own manager, so tests stay
// independent and a manager restart is easy to simulate.
var Env *testenv.Env

// Main is a test package's TestMain: it starts the API server, runs the
// tests and stops it. Without the envtest binaries (outside CI) the tests
// still run, and those that need an API server skip: the pure ones (the
// planner's, the builders') need none.
func Main(m *testing.M) {
	ctrl.SetLogger(zap.New(zap.UseDevMode(true), zap.WriteTo(os.Stderr), zap.Level(zapLevel())))
	if _, err := testenv.AssetsDir(); errors.Is(err, testenv.ErrNoAssets) && !testenv.InCI() {
		fmt.Fprintln(os.Stderr, "no envtest binaries: the tests that need an API server skip;", err)
		os.Exit(m.Run())
	}
	os.Exit(testenv.Main(m, func(e *testenv.Env) { Env = e }))
}

// requireEnv skips t when no API server runs.
func requireEnv(t *testing.T) {
	t.Helper()
	if Env == nil {
		t.Skip("needs the envtest API server (make envtest)")
	}
}

// zapLevel keeps test output quiet unless TEST_VERBOSE_LOGS is set.
func zapLevel() zapcore.Level {
	if os.Getenv("TEST_VERBOSE_LOGS") != "" {
		return zapcore.DebugLevel
	}
	return zapcore.ErrorLevel
}

var nsCounter atomic.Int64

// NewNamespace creates a namespace for one test.
func NewNamespace(t *testing.T) string {
	t.Helper()
	requireEnv(t)
	name := fmt.Sprintf("t%d-%d", os.Getpid()%10000, nsCounter.Add(1))
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := Env.Client.Create(context.Background(), ns); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	return name
}

// StartManager starts a manager with the cache, client and field indexes
// of cmd/manager (no default credentials Secret) and the reconcilers that
// setup registers, and stops it when the test ends (or when the returned
// stop is called, to simulate a restart). Metrics and probes are off;
// leader election is off; controller names may repeat across managers in
// one process.
func StartManager(t *testing.T, setup func(ctrl.Manager) error) (stop func()) {
	t.Helper()
	return StartShardManager(t, sharding.Default, setup)
}

// StartShardManager is StartManager for one shard: its cache holds only the
// shard's objects and it writes as the shard's field manager, as
// cmd/manager --shard does. Several shards may run in one test process
// against the one API server.
func StartShardManager(t *testing.T, shard sharding.Shard, setup func(ctrl.Manager) error) (stop func()) {
	t.Helper()
	requireEnv(t)
	skipNameValidation := true
	mgr, err := ctrl.NewManager(Env.Config, ctrl.Options{
		Scheme:                 Env.Client.Scheme(),
		Cache:                  cachepolicy.CacheOptions(nil, shard),
		Client:                 cachepolicy.ClientOptions(shard),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Controller:             config.Controller{SkipNameValidation: &skipNameValidation},
	})
	if err != nil {
		t.Fatalf("new manager: %v", err)
	}
	if err := index.Register(context.Background(), mgr.GetFieldIndexer(), index.Options{}); err != nil {
		t.Fatalf("register field indexes: %v", err)
	}
	if err := setup(mgr); err != nil {
		t.Fatalf("set up reconcilers: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	var stopped atomic.Bool
	stop = func() {
		if stopped.Swap(true) {
			return
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	}
	t.Cleanup(stop)
	return stop
}

// Client is the uncached client tests use to act as a user.
func Client() client.Client { return Env.Client }

// Eventually polls cond (poll.Eventually, every 50 ms) until it returns ""
// or timeout passes; then the test fails with the last message.
func Eventually(t testing.TB, timeout time.Duration, cond func() string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var msg string
	if poll.Eventually(ctx, 50*time.Millisecond, "", func(context.Context) (bool, error) {
		msg = cond()
		return msg == "", nil
	}) != nil {
		t.Fatalf("timed out after %s: %s", timeout, msg)
	}
}

// Events lists the Events in namespace ns regarding the object name.
func Events(t testing.TB, ns, name string) []eventsv1.Event {
	t.Helper()
	var list eventsv1.EventList
	if err := Env.Client.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
		t.Fatalf("list events: %v", err)
	}
	var out []eventsv1.Event
	for _, e := range list.Items {
		if e.Regarding.Name == name {
			out = append(out, e)
		}
	}
	return out
}

// HasEvent reports whether an Event with reason regards the object name in
// namespace ns.
func HasEvent(t testing.TB, ns, name, reason string) bool {
	t.Helper()
	return slices.ContainsFunc(Events(t, ns, name), func(e eventsv1.Event) bool { return e.Reason == reason })
}
