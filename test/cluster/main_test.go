// Package cluster runs the operator on a real single-node Kubernetes cluster
// (internal/testutil/kcluster): installed from the installer manifest as a
// user installs it, the manager and the receivers as Pods of the locally
// built image, intuned-sim outside the cluster posting to the receiver's
// Ingress URL. See docs/e2e.md.
package cluster

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/intuned-operator/intuned-operator/internal/testutil/flow"
	"github.com/intuned-operator/intuned-operator/internal/testutil/kcluster"
	"github.com/intuned-operator/intuned-operator/internal/testutil/testenv"
)

// env is the cluster every test shares.
var env testEnv

type testEnv struct {
	kc         *kcluster.Cluster
	kubeClient client.Client
	simulator  *flow.Sim
	kubectlBin string
	dir        string // per-run scratch: logs of processes we start, rendered manifests
	operator   string // the manager's namespace
}

const operatorNamespace = kcluster.OperatorNamespace

// bin holds the binaries of the image built for this run.
func (e *testEnv) bin() string { return filepath.Join(e.dir, "bin") }

func TestMain(m *testing.M) { os.Exit(run(m)) }

// skipOrFail: a machine that cannot run the cluster skips the package,
// except on CI, where that is a failure.
func skipOrFail(reason string) int {
	if testenv.InCI() {
		fmt.Fprintln(os.Stderr, "FAIL test/cluster:", reason)
		return 1
	}
	fmt.Fprintln(os.Stderr, "SKIP test/cluster:", reason)
	return 0
}

func run(m *testing.M) (code int) {
	ctrllog.SetLogger(logr.Discard())
	if runtime.GOOS != "linux" || os.Geteuid() != 0 {
		return skipOrFail("needs Linux and root (network namespaces, containerd)")
	}
	if os.Getenv("KCLUSTER_SKIP") == "1" && !testenv.InCI() {
		return skipOrFail("KCLUSTER_SKIP=1")
	}
	root := testenv.RepoRoot()
	lay := kcluster.DefaultLayout(root)
	kc, err := kcluster.New(kcluster.DefaultConfig(lay.Dir, lay.K8sBin, lay.ToolsBin), func(f string, a ...any) {
		fmt.Fprintf(os.Stderr, f+"\n", a...)
	})
	if err != nil {
		return skipOrFail(err.Error())
	}
	if _, err := os.Stat(filepath.Join(lay.ToolsBin, "traefik")); err != nil {
		return skipOrFail("cluster binaries not built: run hack/setup-kcluster.sh (make test does)")
	}
	env.kc, env.kubectlBin, env.operator = kc, kc.Config().Kubectl(), operatorNamespace
	env.dir, err = os.MkdirTemp("", "test-cluster-")
	if err != nil {
		return 1
	}
	// Cold, the node's image compiles every dependency (413 s on a quiet
	// machine) while make test builds the oldest API server beside it.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()

	// A previous run that died keeps nothing running into this one.
	if err := kc.Down(true); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL test/cluster: cleaning up a previous cluster:", err)
		return 1
	}
	keep := os.Getenv("KCLUSTER_KEEP") == "1"
	defer func() {
		if code != 0 {
			dumpDiagnostics()
		}
		if keep {
			fmt.Fprintf(os.Stderr, "KCLUSTER_KEEP=1: cluster left up; export KUBECONFIG=%s; go run ./hack/kcluster down -purge when done\n", kc.Config().AdminKubeconfig())
			return
		}
		if env.simulator != nil {
			_ = env.simulator.Proc.Stop(5 * time.Second)
		}
		// A failed run keeps the state directory (component logs, etcd) to look
		// at; the next run removes it before it starts.
		if err := kc.Down(code == 0); err != nil {
			fmt.Fprintln(os.Stderr, "FAIL test/cluster: teardown:", err)
			code = 1
		}
		if left := kc.Leftovers(); len(left) > 0 {
			fmt.Fprintf(os.Stderr, "FAIL test/cluster: teardown left behind: %s\n", strings.Join(left, ", "))
			code = 1
		}
		_ = os.RemoveAll(env.dir)
	}()
	if err := setup(ctx, root); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL test/cluster:", err)
		return 1
	}
	return m.Run()
}

// setup brings the cluster up, builds and imports the image, installs the
// operator from the installer manifest and starts intuned-sim.
func setup(ctx context.Context, root string) error {
	kc := env.kc
	t0 := time.Now()
	if err := kc.Up(ctx); err != nil {
		return err
	}
	t1 := time.Now()
	tar := filepath.Join(env.dir, "intuned-operator.tar")
	if _, err := kcluster.BuildProjectImage(ctx, root, env.bin(), tar, kcluster.ProjectImageTag); err != nil {
		return fmt.Errorf("image: %w", err)
	}
	if err := kc.ImportImage(ctx, tar); err != nil {
		return fmt.Errorf("import image: %w", err)
	}
	t2 := time.Now()
	// The node runs Kubernetes 1.37: the optional admission policy applies too.
	if err := kc.InstallOperator(ctx, root, env.dir, true); err != nil {
		return err
	}
	t3 := time.Now()
	cfg, err := clientcmd.BuildConfigFromFlags("", kc.Config().AdminKubeconfig())
	if err != nil {
		return err
	}
	env.kubeClient, err = client.New(cfg, client.Options{Scheme: testenv.Scheme()})
	if err != nil {
		return err
	}
	if err := startSim(ctx); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "test/cluster: cluster up %.1fs, image built and imported %.1fs, operator installed and rolled out %.1fs\n",
		t1.Sub(t0).Seconds(), t2.Sub(t1).Seconds(), t3.Sub(t2).Seconds())
	return nil
}

// startSim runs intuned-sim outside the cluster, as Intuned is: a process in
// the cluster's network namespace (so that everything it sends stays on this
// machine) that reaches receivers only through their Ingress host names.
func startSim(ctx context.Context) error {
	cfg := env.kc.Config()
	addr := net.JoinHostPort(cfg.NodeIP, strconv.Itoa(simPort))
	// The image's own intuned-sim binary (BuildProjectImage left it in env.bin()).
	cmd := env.kc.CommandInNamespace(filepath.Join(env.bin(), "intuned-sim"))
	var err error
	env.simulator, err = flow.StartSim(ctx, nil, flow.SimCommand{
		Command: append([]string{cmd.Path}, cmd.Args[1:]...), Env: cmd.Env, Addr: addr,
		LogFile: filepath.Join(env.dir, "intuned-sim.log"), TimeScale: flow.SimTimeScale, Args: flow.QuickstartSimArgs,
	})
	return err
}

// simPort is intuned-sim's port on the node address. The namespace has its
// own port space, used only by the cluster's components (none on this port).
const simPort = 18089

func dumpDiagnostics() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, args := range [][]string{
		{"get", "pods,pvc,ingress,svc", "-A", "-o", "wide"},
		{"get", "events", "-A", "--sort-by=.lastTimestamp"},
		{"-n", operatorNamespace, "logs", "deployment/intuned-operator-controller-manager", "--tail=80"},
	} {
		out, _ := env.kc.Kubectl(ctx, args...)
		fmt.Fprintf(os.Stderr, "--- kubectl %s\n%s\n", strings.Join(args, " "), tailString(out, 6000))
	}
	if env.simulator != nil {
		fmt.Fprintf(os.Stderr, "--- intuned-sim log (tail)\n%s\n", env.simulator.Proc.LogTail(3000))
	}
	fmt.Fprintf(os.Stderr, "component logs: %s\n", filepath.Dir(env.kc.Config().LogFile("kubelet")))
}

func tailString(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
