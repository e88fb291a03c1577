package kcluster

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/intuned-operator/intuned-operator/internal/testutil/proc"
)

// hostPath is the PATH every component gets: the Debian binaries
// (containerd, runc, iptables, mount) and nothing from the caller.
const hostPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// component is one long-running process of the cluster. It runs detached
// (proc.Spec.Detached), so a cluster brought up by one command outlives it;
// its pid is kept in <Dir>/run/<name>.pid.
type component struct {
	name string
	bin  string
	args []string
	env  []string
	// uid, when not zero, runs the component as that user and group
	// instead of root.
	uid int
}

// start runs the component inside the cluster's network namespace. nsenter
// enters only the network namespace: the kubelet's mounts must stay visible
// to containerd and runc, which share the host's mount namespace.
func (c *Cluster) start(comp component) error {
	if pid, ok := c.pid(comp.name); ok {
		return fmt.Errorf("%s already runs (pid %d)", comp.name, pid)
	}
	logFile := c.cfg.LogFile(comp.name)
	header := fmt.Sprintf("=== %s: %s %s\n", time.Now().UTC().Format(time.RFC3339), comp.bin, strings.Join(comp.args, " "))
	if err := appendFile(logFile, header); err != nil {
		return err
	}
	args := []string{"--net=" + c.cfg.netnsPath()}
	if comp.uid != 0 {
		args = append(args, "--setuid="+strconv.Itoa(comp.uid), "--setgid="+strconv.Itoa(comp.uid))
	}
	p, err := proc.Start(proc.Spec{
		Name:     comp.name,
		Path:     "nsenter",
		Args:     append(append(args, "--", comp.bin), comp.args...),
		Env:      append([]string{"PATH=" + hostPath, "HOME=" + c.cfg.Dir}, comp.env...),
		Dir:      c.cfg.Dir,
		LogFile:  logFile,
		Detached: true, // a cluster brought up by one command outlives it
	})
	if err != nil {
		return err
	}
	return os.WriteFile(c.pidFile(comp.name), []byte(strconv.Itoa(p.Pid())+"\n"+comp.bin+"\n"), 0o644)
}

func appendFile(path, text string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	_, err = f.WriteString(text)
	return errors.Join(err, f.Close())
}

func (c *Cluster) pidFile(name string) string { return filepath.Join(c.cfg.run(), name+".pid") }

// pid returns the live pid of a component. A pid file whose process is gone,
// or whose pid now belongs to another program, does not count.
func (c *Cluster) pid(name string) (int, bool) {
	b, err := os.ReadFile(c.pidFile(name))
	if err != nil {
		return 0, false
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	pid, err := strconv.Atoi(lines[0])
	if err != nil || pid <= 0 {
		return 0, false
	}
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return 0, false
	}
	if len(lines) > 1 && filepath.Base(strings.TrimSuffix(exe, " (deleted)")) != filepath.Base(lines[1]) {
		return 0, false
	}
	if isZombie(pid) {
		return 0, false
	}
	return pid, true
}

func isZombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] == 'Z'
}

// stop sends SIGTERM, waits up to grace, then SIGKILLs. Stopping a component
// that does not run is not an error.
func (c *Cluster) stop(name string, grace time.Duration) error {
	defer os.Remove(c.pidFile(name))
	pid, ok := c.pid(name)
	if !ok {
		return nil
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	if waitGone(pid, grace) {
		return nil
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	if waitGone(pid, 10*time.Second) {
		return nil
	}
	return fmt.Errorf("%s (pid %d) did not exit", name, pid)
}

func waitGone(pid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) || isZombie(pid) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// run runs a short command and returns its combined output in the error.
func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// output runs a short command and returns its standard output.
func output(name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}
