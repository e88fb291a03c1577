package crd

import (
	"errors"
	"fmt"
	"os"
	"testing"

	"github.com/intuned-operator/intuned-operator/internal/testutil/testenv"
)

// env is the shared API server; nil when the envtest binaries are missing
// outside CI (then only the offline tests run).
var env *testenv.Env

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	var err error
	env, err = testenv.Start()
	switch {
	case errors.Is(err, testenv.ErrNoAssets) && !testenv.InCI():
		fmt.Fprintln(os.Stderr, "envtest binaries missing; API server tests will skip:", err)
	case err != nil:
		fmt.Fprintln(os.Stderr, "FAIL: start envtest:", err)
		return 1
	default:
		defer func() {
			if err := env.Stop(); err != nil {
				fmt.Fprintln(os.Stderr, "stop envtest:", err)
			}
		}()
	}
	return m.Run()
}

// needEnv skips the test when there is no API server (only possible outside CI).
func needEnv(t *testing.T) *testenv.Env {
	t.Helper()
	if env == nil {
		t.Skip("envtest binaries not built (run `make envtest`); skipping API server test")
	}
	return env
}
