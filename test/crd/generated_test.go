package crd

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// controllerGen is the pinned generator; keep it equal to the Makefile's
// CONTROLLER_TOOLS_VERSION.
const controllerGen = "sigs.k8s.io/controller-tools/cmd/controller-gen@v0.23.0"

// TestGeneratedFilesUpToDate regenerates deepcopy code, CRDs and the manager
// ClusterRole into a temp dir and compares them with the committed files, so
// a marker or type change without `make manifests generate` fails the suite.
func TestGeneratedFilesUpToDate(t *testing.T) {
	// controller-gen reads the sources in a subprocess, which go test's result
	// cache cannot see; reading them here makes any marker change invalidate
	// a cached pass.
	for _, dir := range []string{"api", "internal/controller"} {
		err := filepath.WalkDir(filepath.Join(repoRoot, dir), func(path string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() && strings.HasSuffix(path, ".go") {
				_, err = os.ReadFile(path)
			}
			return err
		})
		if err != nil {
			t.Fatalf("read generator inputs: %v", err)
		}
	}

	out := t.TempDir()
	cmd := exec.Command("go", "run", controllerGen,
		"object", "crd", "rbac:roleName=manager-role",
		"paths=./api/...;./internal/controller/...",
		"output:object:dir="+filepath.Join(out, "object"),
		"output:crd:dir="+filepath.Join(out, "crd"),
		"output:rbac:dir="+filepath.Join(out, "rbac"))
	cmd.Dir = repoRoot
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("controller-gen: %v\n%s", err, b)
	}

	pairs := map[string]string{
		"object/zz_generated.deepcopy.go":      "api/v1alpha1/zz_generated.deepcopy.go",
		"rbac/role.yaml":                       "config/rbac/role.yaml",
		"crd/intuned.io_intunedjobs.yaml":      "config/crd/bases/intuned.io_intunedjobs.yaml",
		"crd/intuned.io_webhookreceivers.yaml": "config/crd/bases/intuned.io_webhookreceivers.yaml",
	}
	// Every generated CRD must be committed, not only the two we know of.
	crds, _ := filepath.Glob(filepath.Join(out, "crd", "*.yaml"))
	if len(crds) != 2 {
		t.Errorf("controller-gen produced %d CRDs, want 2: %v", len(crds), crds)
	}
	for gen, committed := range pairs {
		want, err := os.ReadFile(filepath.Join(out, gen))
		if err != nil {
			t.Errorf("generated %s: %v", gen, err)
			continue
		}
		got, err := os.ReadFile(filepath.Join(repoRoot, committed))
		if err != nil {
			t.Errorf("committed %s: %v", committed, err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is stale: run `make manifests generate` and commit the result", committed)
		}
	}
}
