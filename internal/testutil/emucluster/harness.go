package emucluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/testutil/flow"
	"github.com/intuned-operator/intuned-operator/internal/testutil/proc"
)

// Binaries are the locally built executables the cluster runs.
type Binaries struct {
	Manager, Receiver, Sim string
}

// BuildBinaries builds cmd/manager, cmd/receiver and cmd/intuned-sim into dir.
func BuildBinaries(ctx context.Context, dir string) (Binaries, error) {
	bins, err := proc.Build{Dir: dir, Packages: []string{"./cmd/manager", "./cmd/receiver", "./cmd/intuned-sim"}}.Run(ctx)
	if err != nil {
		return Binaries{}, err
	}
	return Binaries{Manager: bins[0], Receiver: bins[1], Sim: bins[2]}, nil
}

// Options configure a Cluster.
type Options struct {
	// Dir holds kubeconfigs, logs, binaries and receiver data. Empty: a new
	// temporary directory, removed by Close.
	Dir string
	// Binaries already built (BuildBinaries); nil builds them into Dir/bin.
	Binaries *Binaries
	// TimeScale is intuned-sim's --time-scale (simulated seconds per real
	// second): it compresses Run durations, schedules and delivery retries.
	// Default flow.SimTimeScale.
	TimeScale float64
	// SimArgs are extra intuned-sim flags.
	SimArgs []string
	// ManagerArgs are extra manager flags.
	ManagerArgs []string
	// Logf receives one line per notable event (nil: discarded).
	Logf func(format string, args ...any)
	// ProcessOutput, when set, also receives every process's output.
	ProcessOutput io.Writer
}

// Cluster is the running emulated cluster.
type Cluster struct {
	Dir        string
	Kubeconfig string        // admin kubeconfig for kubectl and users
	Kubectl    string        // the envtest kubectl binary
	Client     client.Client // admin client
	Sim        *flow.Sim
	Kubelet    *Kubelet
	Bin        Binaries
	// ManagerNamespace is where the manager's Lease and ServiceAccount live.
	ManagerNamespace string

	opts    Options
	ownsDir bool
	cp      *controlPlane
	procs   proc.Group
	stopKub context.CancelFunc
	kubDone chan struct{}
	// svc is the manager's HTTP_PROXY: Services and cluster DNS.
	svc *serviceProxy

	mu          sync.Mutex
	manager     *proc.Process
	managerArgs []string
	managerEnv  []string
	probePort   int
}

func (h *Cluster) logf(format string, args ...any) {
	if h.opts.Logf != nil {
		h.opts.Logf(format, args...)
	}
}

// Start brings everything up: control plane, install, simulator, manager
// and kubelet. On error everything started so far is stopped.
func Start(ctx context.Context, opts Options) (h *Cluster, err error) {
	if opts.TimeScale == 0 {
		opts.TimeScale = flow.SimTimeScale
	}
	h = &Cluster{opts: opts, Dir: opts.Dir}
	if h.Dir == "" {
		if h.Dir, err = os.MkdirTemp("", "intuned-emucluster-"); err != nil {
			return nil, err
		}
		h.ownsDir = true
	}
	defer func() {
		if err != nil {
			h.Close()
			h = nil
		}
	}()
	logDir := filepath.Join(h.Dir, "logs")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, err
	}
	if opts.Binaries != nil {
		h.Bin = *opts.Binaries
	} else {
		h.logf("building manager, receiver and intuned-sim")
		if h.Bin, err = BuildBinaries(ctx, filepath.Join(h.Dir, "bin")); err != nil {
			return nil, err
		}
	}

	t0 := time.Now()
	h.cp, err = startControlPlane(ctx, h.Dir)
	if err != nil {
		return nil, err
	}
	h.Kubeconfig, h.Kubectl, h.Client, h.ManagerNamespace = h.cp.kubeconfig, h.cp.kubectl, h.cp.client, h.cp.managerNamespace
	h.logf("kube-apiserver and etcd up with CRDs and RBAC from config/default (%s)", time.Since(t0).Round(time.Millisecond))

	simAddr, err := proc.FreeAddr()
	if err != nil {
		return nil, err
	}
	h.Sim, err = flow.StartSim(ctx, &h.procs, flow.SimCommand{Command: []string{h.Bin.Sim}, Addr: simAddr,
		LogFile: filepath.Join(logDir, "intuned-sim.log"), TimeScale: opts.TimeScale, Args: opts.SimArgs})
	if err != nil {
		return nil, err
	}
	h.logf("intuned-sim up at %s (time scale %g)", h.Sim.URL, opts.TimeScale)

	kctx, cancel := context.WithCancel(context.Background())
	h.stopKub, h.kubDone = cancel, make(chan struct{})
	h.Kubelet = newKubelet(h.Client, Images{
		Binaries:   map[string]string{"/receiver": h.Bin.Receiver, "/manager": h.Bin.Manager, "/intuned-sim": h.Bin.Sim},
		Entrypoint: "/manager",
	}, h.Dir, &h.procs, h.logf)
	go func() { defer close(h.kubDone); h.Kubelet.run(kctx) }()
	if h.svc, err = startServiceProxy(h.Client, h.Kubelet); err != nil {
		return nil, err
	}

	if err := h.StartManager(ctx); err != nil {
		return nil, err
	}
	return h, nil
}

// StartManager starts the manager process and waits until it is ready.
func (h *Cluster) StartManager(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.manager != nil {
		if exited, _ := h.manager.Exited(); !exited {
			return errors.New("manager is already running")
		}
	}
	if h.managerArgs == nil {
		probe, err := proc.FreePort()
		if err != nil {
			return err
		}
		metrics, err := proc.FreePort()
		if err != nil {
			return err
		}
		args, env, err := managerCommand(h.cp.manager, h.cp.managerNamespace, probe, metrics)
		if err != nil {
			return err
		}
		h.managerArgs = append(args, h.opts.ManagerArgs...)
		h.managerEnv = env
		h.probePort = probe
	}
	env := append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + h.Dir, "KUBECONFIG=" + h.cp.managerKubeconfig}, h.managerEnv...)
	env = append(env, h.proxyEnv()...)
	p, err := h.procs.Start(proc.Spec{Name: "manager", Path: h.Bin.Manager, Args: h.managerArgs, Env: env,
		LogFile: filepath.Join(h.Dir, "logs", "manager.log"), Tee: h.opts.ProcessOutput})
	if err != nil {
		return err
	}
	h.manager = p
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := proc.WaitHTTPOK(wctx, "http://"+proc.Loopback(h.probePort)+"/readyz", p.Done()); err != nil {
		return fmt.Errorf("manager: %w\n%s", err, p.LogTail(3000))
	}
	h.logf("manager up (pid %d) as ServiceAccount %s/%s", p.Pid(), h.cp.managerNamespace, h.cp.manager.Spec.Template.Spec.ServiceAccountName)
	return nil
}

// proxyEnv sends the manager's plain-HTTP requests through the service
// proxy, so http://<svc>.<ns>.svc:<port> reaches the receiver replicas.
// Go never proxies localhost and loopback addresses (net/http's
// ProxyFromEnvironment), which is where the API server and the simulator
// listen; NO_PROXY names them anyway, for any other HTTP stack. No
// HTTPS_PROXY: nothing in the cluster serves TLS.
func (h *Cluster) proxyEnv() []string {
	noProxy := []string{"localhost", "127.0.0.1", "::1"}
	for _, raw := range []string{h.Sim.URL, h.cp.env.Config.Host} {
		if u, err := url.Parse(raw); err == nil && u.Hostname() != "" && !slices.Contains(noProxy, u.Hostname()) {
			noProxy = append(noProxy, u.Hostname())
		}
	}
	return []string{"HTTP_PROXY=" + h.svc.URL(), "NO_PROXY=" + strings.Join(noProxy, ",")}
}

// StopManager stops the manager: gracefully (SIGTERM) or, with kill, as a
// crash (SIGKILL; the next manager then waits for the leader Lease to
// expire).
func (h *Cluster) StopManager(kill bool) {
	h.mu.Lock()
	p := h.manager
	h.mu.Unlock()
	if p == nil {
		return
	}
	if kill {
		p.Kill()
	} else {
		_ = p.Stop(15 * time.Second)
	}
}

// ManagerLog is the manager's log file.
func (h *Cluster) ManagerLog() string { return filepath.Join(h.Dir, "logs", "manager.log") }

// ManagerExited reports whether the manager exited (it must not, unless
// stopped), with the tail of its log.
func (h *Cluster) ManagerExited() (bool, string) {
	h.mu.Lock()
	p := h.manager
	h.mu.Unlock()
	if p == nil {
		return false, ""
	}
	exited, err := p.Exited()
	if !exited {
		return false, ""
	}
	return true, fmt.Sprintf("%v\n%s", err, p.LogTail(3000))
}

// Close stops every process (kubelet Pods, manager, simulator), the API
// server and etcd, and removes the directory if Start created it.
func (h *Cluster) Close() {
	if h.stopKub != nil {
		h.stopKub()
		<-h.kubDone
	}
	if h.svc != nil {
		h.svc.close()
	}
	h.procs.StopAll(10 * time.Second)
	if h.cp != nil {
		if err := h.cp.stop(); err != nil {
			h.logf("stop control plane: %v", err)
		}
	}
	if h.ownsDir {
		_ = os.RemoveAll(h.Dir)
	}
}

// CreateCredentials creates the credentials Secret IntunedJobs use, pointing
// at the simulator.
func (h *Cluster) CreateCredentials(ctx context.Context, namespace, name string) error {
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		StringData: map[string]string{
			intunedv1alpha1.CredentialsKeyWorkspaceID: h.Sim.WorkspaceID,
			intunedv1alpha1.CredentialsKeyAPIKey:      h.Sim.APIKey,
			intunedv1alpha1.CredentialsKeyBaseURL:     h.Sim.BaseURL,
		},
	}
	err := h.Client.Create(ctx, s)
	if apierrors.IsAlreadyExists(err) {
		return h.Client.Update(ctx, s)
	}
	return err
}

// CreateNamespace creates a namespace (ignoring one that exists).
func (h *Cluster) CreateNamespace(ctx context.Context, name string) error {
	err := h.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}
