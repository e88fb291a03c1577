package proc

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"strings"
)

// RepoRoot is the repository root, found from this source file's location.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..", ".."))
}

// Build says which of this repository's commands to compile, and how.
type Build struct {
	// Packages are main packages relative to the repository root, e.g.
	// "./cmd/receiver". Each becomes Dir/<last path element>.
	Packages []string
	// Dir receives the binaries (created if missing).
	Dir string
	// Flags are extra go build flags, e.g. -trimpath.
	Flags []string
	// Env is added to this process's environment, e.g. CGO_ENABLED=0.
	Env []string
	// Root is the repository (or an exported tree of it) the packages are
	// compiled from; empty: this repository.
	Root string
}

// Binary is where Build puts pkg's binary.
func (b Build) Binary(pkg string) string { return filepath.Join(b.Dir, path.Base(pkg)) }

// Run compiles every package in one go build (the build cache makes a
// repeat cheap) and returns the binaries in the order of Packages.
func (b Build) Run(ctx context.Context) ([]string, error) {
	if err := os.MkdirAll(b.Dir, 0o755); err != nil {
		return nil, err
	}
	args := append(append([]string{"build"}, b.Flags...), "-o", b.Dir+string(filepath.Separator))
	args = append(args, b.Packages...)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = b.Root
	if cmd.Dir == "" {
		cmd.Dir = RepoRoot()
	}
	cmd.Env = append(os.Environ(), b.Env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	bins := make([]string, len(b.Packages))
	for i, pkg := range b.Packages {
		bins[i] = b.Binary(pkg)
	}
	return bins, nil
}
