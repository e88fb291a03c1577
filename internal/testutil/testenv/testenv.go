// Package testenv starts a real kube-apiserver and etcd (envtest) with this
// project's CRDs installed, for tests in any package.
//
// The binaries come from hack/setup-envtest.sh, which builds them from Go
// modules into bin/k8s/<version>/. KUBEBUILDER_ASSETS wins when set; otherwise
// the newest directory under bin/k8s is used, so `go test ./...` works after
// one `make envtest` without exporting anything.
package testenv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	k8sruntime "k8s.io/apimachinery/pkg/runtime"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/testutil/proc"
)

// ErrNoAssets means the envtest binaries are not built. Callers skip on it
// outside CI and fail inside it (see SkipOrFail).
var ErrNoAssets = errors.New("envtest binaries not found: run `make envtest` (hack/setup-envtest.sh) or set KUBEBUILDER_ASSETS")

// RepoRoot is the repository root (proc.RepoRoot).
func RepoRoot() string { return proc.RepoRoot() }

// AssetsDir returns the directory holding kube-apiserver, etcd and kubectl.
func AssetsDir() (string, error) {
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		return dir, nil
	}
	dirs, _ := filepath.Glob(filepath.Join(RepoRoot(), "bin", "k8s", "*"))
	sort.Strings(dirs)
	for i := len(dirs) - 1; i >= 0; i-- {
		if complete(dirs[i]) {
			return dirs[i], nil
		}
	}
	return "", ErrNoAssets
}

// complete reports whether dir holds every binary the tests use.
func complete(dir string) bool {
	for _, b := range []string{"kube-apiserver", "etcd", "kubectl"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			return false
		}
	}
	return true
}

// InCI reports whether the tests run under CI, where nothing may be skipped
// for lack of a dependency.
func InCI() bool { return os.Getenv("CI") == "true" }

// Scheme has the built-in kinds and this project's API.
func Scheme() *k8sruntime.Scheme {
	s := k8sruntime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		panic(err)
	}
	if err := intunedv1alpha1.AddToScheme(s); err != nil {
		panic(err)
	}
	return s
}

// Env is a running API server with the CRDs installed.
type Env struct {
	Environment *envtest.Environment
	Config      *rest.Config
	Client      client.Client
}

// Start starts kube-apiserver and etcd and installs config/crd/bases.
// Stop it with Env.Stop.
func Start() (*Env, error) {
	assets, err := AssetsDir()
	if err != nil {
		return nil, err
	}
	te := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     []string{filepath.Join(RepoRoot(), "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		Scheme:                Scheme(),
	}
	cfg, err := te.Start()
	if err != nil {
		return nil, fmt.Errorf("start envtest: %w", err)
	}
	c, err := client.New(cfg, client.Options{Scheme: te.Scheme})
	if err != nil {
		_ = te.Stop()
		return nil, err
	}
	return &Env{Environment: te, Config: cfg, Client: c}, nil
}

// Stop stops the API server and etcd.
func (e *Env) Stop() error { return e.Environment.Stop() }

// Main is the body of a TestMain that needs envtest: it starts the
// environment, hands it to set, runs the tests and stops it. Without the
// binaries it skips the package outside CI and fails inside CI.
func Main(m interface{ Run() int }, set func(*Env)) int {
	env, err := Start()
	if errors.Is(err, ErrNoAssets) && !InCI() {
		fmt.Fprintln(os.Stderr, "SKIP (no envtest binaries):", err)
		return 0
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		return 1
	}
	set(env)
	code := m.Run()
	if err := env.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stop envtest:", err)
	}
	return code
}
