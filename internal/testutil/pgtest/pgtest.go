// Package pgtest starts a real, throw-away PostgreSQL server from the initdb/postgres binaries on
// this machine. Tests share one server per test binary (see Main) and get a fresh database each
// (see NewDatabase); hack/bench-receiver uses Start directly.
//
// PostgreSQL refuses to run as root, so when the caller is root the server runs as the `postgres`
// user (Debian's package creates it) on a temp dir owned by that user. hack/ensure-postgres.sh
// installs the binaries when they are missing.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/intuned-operator/intuned-operator/internal/testutil/proc"
)

// Options tune a server. The zero value is a sensible test server.
type Options struct {
	// Durable keeps fsync on. Tests leave it off (they kill the receiver, never the database);
	// benchmarks turn it on so commits cost what they cost in production.
	Durable bool
	// Log, if set, receives the server's output (default: discarded).
	Log *os.File
	// ListenAddr is the address the server listens on and DSNs name
	// (default 127.0.0.1).
	ListenAddr string
	// NetNS, if set, is a network namespace (e.g. /run/netns/NAME) to run
	// the server in, so Pods of a local cluster living there can reach it
	// at ListenAddr.
	NetNS string
}

// Server is a running PostgreSQL server listening on 127.0.0.1 (or Options.ListenAddr).
type Server struct {
	dir  string
	addr string
	port int
	cmd  *exec.Cmd
	done chan struct{}
}

// FindBinDir returns the directory holding initdb and postgres: $PATH first, then the newest
// /usr/lib/postgresql/<version>/bin.
func FindBinDir() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		dir := filepath.Dir(p)
		if _, err := os.Stat(filepath.Join(dir, "postgres")); err == nil {
			return dir, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return versionOf(dirs[i]) > versionOf(dirs[j]) })
	for _, dir := range dirs {
		if _, err := os.Stat(filepath.Join(dir, "initdb")); err == nil {
			return dir, nil
		}
	}
	return "", errors.New("PostgreSQL binaries (initdb, postgres) not found in PATH or /usr/lib/postgresql/*/bin; run hack/ensure-postgres.sh (installs Debian's postgresql package)")
}

func versionOf(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

// Start initialises a cluster in a new temp dir and starts postgres on a free loopback port.
// Call Stop to shut it down and delete the directory.
func Start(ctx context.Context, opts Options) (*Server, error) {
	bin, err := FindBinDir()
	if err != nil {
		return nil, err
	}
	cred, err := credential()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		return nil, err
	}
	s := &Server{dir: dir, addr: opts.ListenAddr, done: make(chan struct{})}
	if s.addr == "" {
		s.addr = "127.0.0.1"
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(dir)
		}
	}()
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, err
		}
	}
	data := filepath.Join(dir, "data")
	initdb := exec.CommandContext(ctx, filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres",
		"--auth=trust", "--encoding=UTF8", "--no-locale", "--no-sync")
	initdb.Dir = dir
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb failed: %w\n%s", err, out)
	}
	if opts.NetNS != "" {
		// initdb trusts loopback only; Pods connect from the cluster's Pod range,
		// inside a namespace nothing outside this machine can reach.
		hba, err := os.OpenFile(filepath.Join(data, "pg_hba.conf"), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			return nil, err
		}
		_, err = hba.WriteString("host all all 0.0.0.0/0 trust\n")
		hba.Close()
		if err != nil {
			return nil, err
		}
	}
	s.port, err = proc.FreePort()
	if err != nil {
		return nil, err
	}
	fsync := "off"
	if opts.Durable {
		fsync = "on"
	}
	args := []string{filepath.Join(bin, "postgres"), "-D", data,
		"-p", strconv.Itoa(s.port), "-k", dir, "-c", "listen_addresses=" + s.addr,
		"-c", "fsync=" + fsync, "-c", "max_connections=200", "-c", "shared_buffers=64MB"}
	attr := &syscall.SysProcAttr{Credential: cred, Setpgid: true, Pdeathsig: syscall.SIGQUIT}
	if opts.NetNS != "" {
		// nsenter must enter the namespace as root, then become the server's user.
		ns := []string{"nsenter", "--net=" + opts.NetNS}
		if cred != nil {
			ns = append(ns, fmt.Sprintf("--setuid=%d", cred.Uid), fmt.Sprintf("--setgid=%d", cred.Gid))
		}
		args = append(append(ns, "--"), args...)
		attr.Credential = nil
	}
	s.cmd = exec.Command(args[0], args[1:]...)
	s.cmd.Dir = dir
	s.cmd.SysProcAttr = attr
	if opts.Log != nil {
		s.cmd.Stdout, s.cmd.Stderr = opts.Log, opts.Log
	}
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	go func() { s.cmd.Wait(); close(s.done) }() //nolint:errcheck // exit status is irrelevant once stopped
	if err := s.waitReady(ctx); err != nil {
		s.kill()
		return nil, err
	}
	ok = true
	return s, nil
}

// credential returns who to run PostgreSQL as: nil (ourselves) unless we are root, then `postgres`.
func credential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, errors.New("running as root and there is no `postgres` user to run PostgreSQL as (hack/ensure-postgres.sh installs the package that creates it)")
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func (s *Server) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		conn, err := pgx.Connect(ctx, s.DSN("postgres"))
		if err == nil {
			conn.Close(ctx)
			return nil
		}
		select {
		case <-s.done:
			return errors.New("postgres exited during start-up (set Options.Log to see why)")
		case <-ctx.Done():
			return fmt.Errorf("postgres did not accept connections: %w", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// DSN returns a connection URL for database db as the superuser `postgres` (trust auth, ListenAddr).
func (s *Server) DSN(db string) string {
	return fmt.Sprintf("postgres://postgres@%s/%s?sslmode=disable", net.JoinHostPort(s.addr, strconv.Itoa(s.port)), db)
}

var dbCounter atomic.Int64

// CreateDatabase creates a new empty database with a unique name and returns its DSN.
func (s *Server) CreateDatabase(ctx context.Context) (string, error) {
	name := fmt.Sprintf("test_%d_%d", os.Getpid(), dbCounter.Add(1))
	conn, err := pgx.Connect(ctx, s.DSN("postgres"))
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", err
	}
	return s.DSN(name), nil
}

// Stop shuts the server down (fast shutdown, then SIGKILL after 10 s) and removes its directory.
func (s *Server) Stop() error {
	if s.cmd.Process != nil {
		s.cmd.Process.Signal(syscall.SIGINT) //nolint:errcheck // it may already be gone
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
			s.kill()
		}
	}
	return os.RemoveAll(s.dir)
}

func (s *Server) kill() {
	syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL) //nolint:errcheck // best effort
	<-s.done
}

var shared struct {
	once   sync.Once
	server *Server
	err    error
}

// Main runs the tests of a package and then stops the shared server, if one was started. Use it
// from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
//
// It takes the few methods it uses of *testing.M and testing.TB (see NewDatabase), so that the
// package links no testing: hack/bench-receiver uses Start.
func Main(m interface{ Run() int }) int {
	code := m.Run()
	if shared.server != nil {
		if err := shared.server.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "pgtest: stop:", err)
		}
	}
	return code
}

// NewDatabase returns the DSN of a fresh database on the shared server, starting the server on
// first use (the package's TestMain must call Main so it is stopped). When PostgreSQL cannot run
// here the test is skipped, or failed when CI=true.
func NewDatabase(t TB) string {
	t.Helper()
	shared.once.Do(func() {
		shared.server, shared.err = Start(context.Background(), Options{})
	})
	if shared.err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("pgtest: cannot start PostgreSQL (required when CI=true): %v", shared.err)
		}
		t.Skipf("pgtest: skipping, cannot start PostgreSQL: %v", firstLine(shared.err))
	}
	dsn, err := shared.server.CreateDatabase(context.Background())
	if err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	return dsn
}

// TB is the part of testing.TB that NewDatabase uses.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Skipf(format string, args ...any)
}

func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}
