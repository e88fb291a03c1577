// Package e2e runs the end-to-end scenarios on the emulated cluster
// (internal/testutil/emucluster): a real API server, the operator and the
// receivers as processes, an emulated kubelet. It needs no root and times
// faults to the millisecond. See docs/e2e.md for which scenario runs where.
package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/intuned-operator/intuned-operator/internal/testutil/emucluster"
	"github.com/intuned-operator/intuned-operator/internal/testutil/flow"
	"github.com/intuned-operator/intuned-operator/internal/testutil/testenv"
)

// h is the cluster shared by every test: one API server, simulator and
// manager (starting them is the slow part). Each test works in its own
// namespace with its own receiver and job; tests run one after another
// because some of them restart the shared manager.
var h *emucluster.Cluster

// env is h as the scenarios see it.
var env *emuEnv

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ctrllog.SetLogger(logr.Discard()) // envtest logs through controller-runtime; keep the output to ours
	if _, err := testenv.AssetsDir(); err != nil {
		if !testenv.InCI() {
			fmt.Fprintln(os.Stderr, "SKIP test/e2e:", err)
			return 0
		}
		fmt.Fprintln(os.Stderr, "FAIL test/e2e:", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "intuned-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL test/e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	bins, err := emucluster.BuildBinaries(ctx, filepath.Join(dir, "bin"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL test/e2e:", err)
		return 1
	}
	h, err = emucluster.Start(ctx, emucluster.Options{
		Dir:      dir,
		Binaries: &bins,
		// The emulated kubelet refreshes Secret volumes within a second, so
		// the operator need not wait the real kubelet's propagation time
		// before a rotated token becomes current.
		ManagerArgs: []string{"--token-propagation-delay=2s"},
		TimeScale:   flow.SimTimeScale,
		SimArgs:     flow.QuickstartSimArgs,
		Logf: func(format string, args ...any) {
			if os.Getenv("E2E_VERBOSE") != "" {
				fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05.000 ")+format+"\n", args...)
			}
		},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL test/e2e: start the emulated cluster:", err)
		return 1
	}
	env = &emuEnv{h: h}
	code := m.Run()
	if code != 0 {
		b, _ := os.ReadFile(h.ManagerLog())
		fmt.Fprintf(os.Stderr, "manager log (tail):\n%s\n", b[max(0, len(b)-6000):])
	}
	h.Close()
	return code
}
