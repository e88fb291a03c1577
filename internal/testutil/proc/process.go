// Package proc starts the processes of the local-cluster toolkit, the tests
// and the programs under hack/ (each in its own process group, stopped with
// SIGTERM then SIGKILL), builds this repository's commands, and finds free
// loopback ports. It imports no test package.
package proc

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Spec describes one process to start.
type Spec struct {
	Name string   // short name for logs and errors, e.g. "manager"
	Path string   // executable
	Args []string // arguments (without the executable)
	// Env is the complete environment. Nil means an empty environment plus
	// PATH, so nothing from the test's own environment leaks in by accident.
	Env     []string
	Dir     string    // working directory ("" = current)
	LogFile string    // stdout and stderr are appended here ("" = discarded)
	Tee     io.Writer // optional: also copy output here (e.g. the demo's -v)
	// Detached starts the process in a session of its own with no parent
	// death signal, so it outlives the program that started it (the
	// components of a local cluster brought up by one command). Otherwise
	// it is killed when the starting program dies without cleaning up (a
	// test timeout panic, SIGKILL).
	Detached bool
}

// Process is a started child process, in its own process group so that
// Stop and Kill reach anything it started too.
type Process struct {
	spec Spec
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{}
	err  error // exit error, valid after done is closed
}

// Start starts spec and returns at once.
func Start(spec Spec) (*Process, error) {
	if spec.Name == "" {
		spec.Name = spec.Path
	}
	cmd := exec.Command(spec.Path, spec.Args...)
	cmd.Dir = spec.Dir
	cmd.Env = spec.Env
	if cmd.Env == nil {
		cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	}
	// Own process group (Stop/Kill reach grandchildren).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if spec.Detached {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	}
	p := &Process{spec: spec, cmd: cmd, done: make(chan struct{})}
	var out io.Writer = io.Discard
	if spec.LogFile != "" {
		f, err := os.OpenFile(spec.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, fmt.Errorf("%s: open log: %w", spec.Name, err)
		}
		p.log = f
		out = f
	}
	if spec.Tee != nil {
		out = io.MultiWriter(out, spec.Tee)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		if p.log != nil {
			p.log.Close()
		}
		return nil, fmt.Errorf("%s: start %s: %w", spec.Name, spec.Path, err)
	}
	go func() {
		p.err = cmd.Wait()
		if p.log != nil {
			p.log.Close()
		}
		close(p.done)
	}()
	return p, nil
}

// Name is the spec's name.
func (p *Process) Name() string { return p.spec.Name }

// Pid is the process id (also its process group id).
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited, and its exit error.
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// Signal sends sig to the whole process group.
func (p *Process) Signal(sig syscall.Signal) {
	_ = syscall.Kill(-p.cmd.Process.Pid, sig)
}

// Kill sends SIGKILL to the process group (a crash, or a node dying) and
// waits for the exit.
func (p *Process) Kill() {
	p.Signal(syscall.SIGKILL)
	<-p.done
}

// Stop asks the process to exit with SIGTERM and kills it when it has not
// exited after grace, like the kubelet's terminationGracePeriodSeconds. It
// returns the exit error of a process that exited on its own accord
// (nil for a clean exit or one caused by our signal).
func (p *Process) Stop(grace time.Duration) error {
	select {
	case <-p.done:
		return p.err
	default:
	}
	p.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		p.Signal(syscall.SIGKILL)
		<-p.done
		return fmt.Errorf("%s did not exit within %s of SIGTERM; killed", p.spec.Name, grace)
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGTERM {
			return nil
		}
	}
	return p.err
}

// LogTail returns up to the last n bytes of the process log, for error
// messages.
func (p *Process) LogTail(n int) string { return TailFile(p.spec.LogFile, n) }

// LogFile is where the process output goes.
func (p *Process) LogFile() string { return p.spec.LogFile }

// TailFile returns up to the last n bytes of the file at path.
func TailFile(path string, n int) string {
	if path == "" {
		return ""
	}
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	off := st.Size() - int64(n)
	if off < 0 {
		off = 0
	}
	b := make([]byte, st.Size()-off)
	_, _ = f.ReadAt(b, off)
	return string(b)
}

// Group tracks processes so that everything can be stopped at the end.
// The zero value is ready to use.
type Group struct {
	mu    sync.Mutex
	procs map[*Process]struct{}
}

// Start starts spec and tracks it until it exits.
func (g *Group) Start(spec Spec) (*Process, error) {
	p, err := Start(spec)
	if err != nil {
		return nil, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.procs == nil {
		g.procs = map[*Process]struct{}{}
	}
	g.procs[p] = struct{}{}
	go func() {
		<-p.done
		g.mu.Lock()
		delete(g.procs, p)
		g.mu.Unlock()
	}()
	return p, nil
}

// StopAll stops every tracked process (SIGTERM, then SIGKILL after grace).
func (g *Group) StopAll(grace time.Duration) {
	g.mu.Lock()
	ps := make([]*Process, 0, len(g.procs))
	for p := range g.procs {
		ps = append(ps, p)
	}
	g.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Add(1)
		go func() { defer wg.Done(); _ = p.Stop(grace) }()
	}
	wg.Wait()
}
