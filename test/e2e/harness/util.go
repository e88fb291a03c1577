package harness

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/intuned-operator/intuned-operator/internal/testutil/testenv"
)

// RepoRoot is the repository root.
func RepoRoot() string { return testenv.RepoRoot() }

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func loopback(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// Binaries are the locally built executables the harness runs.
type Binaries struct {
	Manager, Receiver, Sim string
}

// BuildBinaries builds cmd/manager, cmd/receiver and cmd/intuned-sim into
// dir (the Go build cache makes repeat builds cheap).
func BuildBinaries(ctx context.Context, dir string) (Binaries, error) {
	b := Binaries{
		Manager:  filepath.Join(dir, "manager"),
		Receiver: filepath.Join(dir, "receiver"),
		Sim:      filepath.Join(dir, "intuned-sim"),
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return b, err
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-o", dir+string(filepath.Separator),
		"./cmd/manager", "./cmd/receiver", "./cmd/intuned-sim")
	cmd.Dir = RepoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		return b, fmt.Errorf("go build: %v\n%s", err, out)
	}
	return b, nil
}

// waitHTTPOK polls url until it answers 200 or ctx ends. died, when not
// nil, aborts the wait early (the process exited).
func waitHTTPOK(ctx context.Context, url string, died <-chan struct{}) error {
	c := &http.Client{Timeout: time.Second}
	for {
		resp, err := c.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w (last error: %v)", url, ctx.Err(), err)
		case <-died:
			return fmt.Errorf("process exited while waiting for %s", url)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// SupportsFlag reports whether the binary lists --name in its -help output
// (used to pass optional tuning flags only to binaries that have them).
func SupportsFlag(bin, name string) bool {
	out, _ := exec.Command(bin, "-help").CombinedOutput()
	return bytes.Contains(out, []byte("-"+name+" ")) || bytes.Contains(out, []byte("-"+name+"\n")) || bytes.Contains(out, []byte("-"+name+"="))
}
