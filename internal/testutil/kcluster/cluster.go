package kcluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// Cluster is a single-node cluster described by a Config. Its processes are
// detached: Up returns with the cluster running, and Down (from the same or
// another process) stops it and removes everything it made.
type Cluster struct {
	cfg  Config
	logf func(format string, args ...any)
}

// New returns a handle; nothing starts until Up.
func New(cfg Config, logf func(format string, args ...any)) (*Cluster, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if logf == nil {
		logf = func(string, ...any) {}
	}
	return &Cluster{cfg: cfg, logf: logf}, nil
}

// Config returns the cluster's configuration.
func (c *Cluster) Config() Config { return c.cfg }

// Images that every cluster has: the sandbox ("pause") image of containerd.
const PauseImage = "kcluster.local/pause:1"

// Up brings the cluster up, or finishes bringing it up: components that run
// already are left alone. It returns when the node is Ready, the cluster DNS
// has synced and the Ingress controller answers.
func (c *Cluster) Up(ctx context.Context) error {
	start := time.Now()
	cfg := c.cfg
	for _, d := range []string{cfg.logs(), cfg.run(), filepath.Dir(cfg.AdminKubeconfig()), filepath.Join(cfg.Dir, "volumes")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if err := c.preflight(); err != nil {
		return err
	}
	if err := writePKI(cfg.pki(), cfg); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	for _, name := range []string{"admin", "controller-manager", "scheduler", "kube-proxy", "kubelet"} {
		if err := writeKubeconfig(cfg.kubeconfig(name), cfg.pki(), name, cfg.APIServerURL()); err != nil {
			return err
		}
	}
	if err := c.setupNetwork(); err != nil {
		return fmt.Errorf("network: %w", err)
	}
	if err := c.writeConfigs(); err != nil {
		return err
	}
	steps := []struct {
		name  string
		start func() error
		ready func(context.Context) error
	}{
		{"containerd", c.startIfDown("containerd"), c.containerdReady},
		{"images", nil, c.importPause},
		{"etcd", c.startIfDown("etcd"), nil},
		{"kube-apiserver", c.startIfDown("kube-apiserver"), c.apiserverReady},
		{"rbac", nil, c.rbacReady},
		{"kube-controller-manager", c.startIfDown("kube-controller-manager"), nil},
		{"kube-scheduler", c.startIfDown("kube-scheduler"), nil},
		{"kubelet", c.startIfDown("kubelet"), c.kubeletReady},
		{"kube-proxy", c.startIfDown("kube-proxy"), nil},
		{"kube-network-policies", c.startIfDown("kube-network-policies"), c.netpolReady},
		{"addons", nil, c.applyAddons},
		{"coredns", c.startIfDown("coredns"), c.corednsReady},
		{"traefik", c.startIfDown("traefik"), c.traefikReady},
		{"provisioner", c.startIfDown("provisioner"), nil},
		{"node", nil, c.nodeReady},
		{"metrics-server", c.startIfDown("metrics-server"), c.metricsReady},
		{"service accounts", nil, c.defaultServiceAccount},
	}
	for _, s := range steps {
		t := time.Now()
		if s.start != nil {
			if err := s.start(); err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
		}
		if s.ready != nil {
			wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			err := s.ready(wctx)
			cancel()
			if err != nil {
				return fmt.Errorf("%s: %w (log: %s)", s.name, err, c.logHint(s.name))
			}
		}
		c.logf("kcluster: %-24s %5.1fs", s.name, time.Since(t).Seconds())
	}
	c.logf("kcluster: up in %.1fs; KUBECONFIG=%s", time.Since(start).Seconds(), cfg.AdminKubeconfig())
	return nil
}

func (c *Cluster) logHint(step string) string {
	if fileExists(c.cfg.LogFile(step)) {
		return c.cfg.LogFile(step) + "\n" + tail(c.cfg.LogFile(step), 1500)
	}
	return c.cfg.logs()
}

// tail returns the last n bytes of a file.
func tail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	st, _ := f.Stat()
	off := max(0, st.Size()-n)
	b := make([]byte, st.Size()-off)
	_, _ = f.ReadAt(b, off)
	return string(b)
}

func (c *Cluster) startIfDown(name string) func() error {
	return func() error {
		if _, ok := c.pid(name); ok {
			return nil
		}
		comp, err := c.component(name)
		if err != nil {
			return err
		}
		return c.start(comp)
	}
}

// Restart stops one component (SIGTERM; SIGKILL with kill) and starts it
// again, e.g. "kubelet" or "containerd" in a fault test. It returns when the
// component serves again, as a node's service manager would wait before the
// next step of an upgrade.
func (c *Cluster) Restart(ctx context.Context, name string, kill bool) error {
	grace := 30 * time.Second
	if kill {
		grace = 0
	}
	if err := c.stop(name, grace); err != nil {
		return err
	}
	if err := c.startIfDown(name)(); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	switch name {
	case "containerd":
		return c.containerdReady(wctx)
	case "kubelet":
		return c.kubeletReady(wctx)
	}
	return nil
}

// Running reports which components run now.
func (c *Cluster) Running() map[string]bool {
	m := map[string]bool{}
	for _, n := range componentNames {
		_, m[n] = c.pid(n)
	}
	return m
}

// componentNames in start order; Down stops them in reverse.
var componentNames = []string{"containerd", "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "kube-network-policies", "coredns", "traefik", "provisioner", "metrics-server"}

// Down stops every component and removes the namespace, mounts, cgroups and
// interfaces the cluster made. With purge the state directory goes too
// (otherwise etcd and the volumes survive for the next Up). Down is safe to
// call on a cluster that is half up or already down.
func (c *Cluster) Down(purge bool) error {
	var errs []error
	// The kubelet first, so it does not restart what is stopped below.
	for _, n := range []string{"metrics-server", "provisioner", "traefik", "coredns", "kubelet", "kube-network-policies", "kube-proxy", "kube-scheduler", "kube-controller-manager"} {
		errs = append(errs, c.stop(n, 10*time.Second))
	}
	errs = append(errs, c.killContainers())
	for _, n := range []string{"containerd", "kube-apiserver", "etcd"} {
		errs = append(errs, c.stop(n, 10*time.Second))
	}
	errs = append(errs, c.killShims(), c.unmountAll(), c.removeCgroups(), c.teardownNetwork())
	if purge {
		errs = append(errs, os.RemoveAll(c.cfg.Dir))
	}
	return errors.Join(errs...)
}

// killContainers stops every container task through containerd (while it
// still runs), so no container process outlives the cluster.
func (c *Cluster) killContainers() error {
	if _, ok := c.pid("containerd"); !ok {
		return c.killCgroupProcs()
	}
	out, err := output("ctr", "--address", c.cfg.containerdSock(), "-n", "k8s.io", "tasks", "ls", "-q")
	if err == nil {
		for _, id := range strings.Fields(out) {
			_ = run("ctr", "--address", c.cfg.containerdSock(), "-n", "k8s.io", "tasks", "kill", "-s", "SIGKILL", id)
		}
	}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if len(c.cgroupProcs()) == 0 {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return c.killCgroupProcs()
}

// kubepodsCgroups are the kubelet's cgroup trees (cgroupfs driver, one per
// v1 controller).
func kubepodsCgroups() []string {
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*/kubepods")
	if fileExists("/sys/fs/cgroup/kubepods") { // cgroup v2
		dirs = append(dirs, "/sys/fs/cgroup/kubepods")
	}
	return dirs
}

func (c *Cluster) cgroupProcs() []int {
	seen := map[int]bool{}
	for _, root := range kubepodsCgroups() {
		_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
				return nil
			}
			b, _ := os.ReadFile(p)
			for _, f := range strings.Fields(string(b)) {
				var pid int
				if _, err := fmt.Sscan(f, &pid); err == nil {
					seen[pid] = true
				}
			}
			return nil
		})
	}
	var pids []int
	for p := range seen {
		pids = append(pids, p)
	}
	return pids
}

func (c *Cluster) killCgroupProcs() error {
	for i := 0; i < 50; i++ {
		pids := c.cgroupProcs()
		if len(pids) == 0 {
			return nil
		}
		for _, p := range pids {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("container processes survive SIGKILL: %v", c.cgroupProcs())
}

// killShims ends containerd's shim processes that serve this cluster's
// containerd (their command line names its socket or state directory).
func (c *Cluster) killShims() error {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		cmd := strings.ReplaceAll(string(b), "\x00", " ")
		if strings.Contains(cmd, "containerd-shim") && strings.Contains(cmd, c.cfg.containerdSock()) {
			var pid int
			fmt.Sscanf(filepath.Base(filepath.Dir(p)), "%d", &pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
			waitGone(pid, 5*time.Second)
		}
	}
	return nil
}

// unmountAll lazily unmounts everything mounted under the cluster
// directory (volumes, overlay snapshots, sandbox shm), deepest first.
func (c *Cluster) unmountAll() error {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	var points []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (f[4] == c.cfg.Dir || strings.HasPrefix(f[4], c.cfg.Dir+"/")) {
			points = append(points, f[4])
		}
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	var errs []error
	for _, p := range points {
		if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// removeCgroups removes the kubelet's empty cgroup trees, deepest first.
func (c *Cluster) removeCgroups() error {
	var errs []error
	for _, root := range kubepodsCgroups() {
		var dirs []string
		_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
		for _, d := range dirs {
			if err := syscall.Rmdir(d); err != nil && !errors.Is(err, syscall.ENOENT) {
				errs = append(errs, fmt.Errorf("rmdir %s: %w", d, err))
			}
		}
	}
	return errors.Join(errs...)
}

func (c *Cluster) preflight() error {
	var missing []string
	for _, b := range []string{"nsenter", "ip", "iptables", "containerd", "containerd-shim-runc-v2", "runc", "ctr", "conntrack", "mount"} {
		if _, err := exec.LookPath(b); err != nil {
			missing = append(missing, b)
		}
	}
	for _, p := range []string{"/usr/lib/cni/bridge", "/usr/lib/cni/host-local", "/usr/lib/cni/loopback", "/usr/lib/cni/portmap"} {
		if !fileExists(p) {
			missing = append(missing, p)
		}
	}
	for _, b := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "kubectl"} {
		if !fileExists(filepath.Join(c.cfg.K8sBin, b)) {
			missing = append(missing, filepath.Join(c.cfg.K8sBin, b))
		}
	}
	for _, b := range []string{"traefik", "coredns", "kube-network-policies", "pause", "kcluster"} {
		if !fileExists(filepath.Join(c.cfg.ToolsBin, b)) {
			missing = append(missing, filepath.Join(c.cfg.ToolsBin, b))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("kcluster: missing %s (hack/setup-kcluster.sh installs and builds them)", strings.Join(missing, ", "))
	}
	return nil
}

// httpsClient trusts the cluster CA and presents the admin certificate.
func (c *Cluster) httpsClient() (*http.Client, error) {
	ca, err := os.ReadFile(filepath.Join(c.cfg.pki(), "ca.crt"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	cert, err := tls.LoadX509KeyPair(filepath.Join(c.cfg.pki(), "admin.crt"), filepath.Join(c.cfg.pki(), "admin.key"))
	if err != nil {
		return nil, err
	}
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		Proxy:           nil,
		TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}},
	}}, nil
}

// Kubectl runs kubectl as the cluster admin and returns its output.
func (c *Cluster) Kubectl(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, c.cfg.Kubectl(), append([]string{"--kubeconfig", c.cfg.AdminKubeconfig()}, args...)...)
	cmd.Env = []string{"PATH=" + hostPath, "HOME=" + c.cfg.Dir}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// CommandInNamespace returns a command that runs inside the cluster's
// network namespace with its own /etc/hosts (the Ingress host names point at
// the node) and no resolver: a process outside the cluster that reaches it
// only by its Ingress, as Intuned reaches a receiver.
func (c *Cluster) CommandInNamespace(bin string, args ...string) *exec.Cmd {
	cmd := exec.Command("ip", append([]string{"netns", "exec", c.cfg.Name, bin}, args...)...)
	cmd.Env = []string{"PATH=" + hostPath}
	return cmd
}

// Leftovers lists what a Down should have removed but is still there:
// component processes, container processes, mounts under the state
// directory, the network namespace, the veth pair, kubelet cgroups.
func (c *Cluster) Leftovers() []string {
	var left []string
	for n, up := range c.Running() {
		if up {
			left = append(left, "process "+n)
		}
	}
	if pids := c.cgroupProcs(); len(pids) > 0 {
		left = append(left, fmt.Sprintf("container processes %v", pids))
	}
	if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], c.cfg.Dir+"/") {
				left = append(left, "mount "+f[4])
			}
		}
	}
	if fileExists(c.cfg.netnsPath()) {
		left = append(left, "network namespace "+c.cfg.Name)
	}
	if fileExists("/sys/class/net/" + c.cfg.vethHost()) {
		left = append(left, "interface "+c.cfg.vethHost())
	}
	if fileExists(c.cfg.etcNetns()) {
		left = append(left, c.cfg.etcNetns())
	}
	for _, d := range kubepodsCgroups() {
		left = append(left, "cgroup "+d)
	}
	sort.Strings(left)
	return left
}

// KillContainerProcess SIGKILLs the processes of Pod podUID whose command
// is command (argv[0]), as a crash would: no signal handler runs, nothing is
// released. The kubelet then restarts the container as after any crash. It
// returns how many processes it killed.
func (c *Cluster) KillContainerProcess(podUID, command string) (int, error) {
	killed := map[int]bool{} // a process is in the tree of every v1 controller
	for _, root := range kubepodsCgroups() {
		err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || d.Name() != "cgroup.procs" || !strings.Contains(p, "/pod"+podUID+"/") {
				return nil
			}
			b, _ := os.ReadFile(p)
			for _, f := range strings.Fields(string(b)) {
				var pid int
				if _, err := fmt.Sscan(f, &pid); err != nil {
					continue
				}
				argv, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
				if arg0, _, _ := strings.Cut(string(argv), "\x00"); arg0 != command || killed[pid] {
					continue
				}
				if err := syscall.Kill(pid, syscall.SIGKILL); err == nil {
					killed[pid] = true
				}
			}
			return nil
		})
		if err != nil {
			return len(killed), err
		}
	}
	if len(killed) == 0 {
		return 0, fmt.Errorf("no process %q in Pod %s", command, podUID)
	}
	return len(killed), nil
}
