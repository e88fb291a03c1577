package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/intuned-operator/intuned-operator/internal/testutil/pgtest"
	"github.com/intuned-operator/intuned-operator/internal/testutil/proc"
)

var binDir string

func TestMain(m *testing.M) {
	var err error
	binDir, err = os.MkdirTemp("", "receiver-bin-")
	if err != nil {
		panic(err)
	}
	code := pgtest.Main(m)
	os.RemoveAll(binDir)
	os.Exit(code)
}

func TestParseFlags(t *testing.T) {
	cases := []struct {
		name    string
		env     map[string]string
		args    []string
		check   func(*options) bool
		wantErr string
	}{
		{name: "defaults", args: []string{"--token-file", "t"}, check: func(o *options) bool {
			return o.listenAddr == ":8080" && o.ingestPath == "/webhooks/intuned" && o.storeKind == "sqlite" &&
				o.maxBodyBytes == 10<<20 && o.deadline == 2500*time.Millisecond && o.tokenHeader == "Authorization"
		}},
		{name: "env", env: map[string]string{"RECEIVER_TOKEN_FILE": "t", "RECEIVER_STORE": "postgres", "RECEIVER_POSTGRES_DSN": "postgres://x", "RECEIVER_DEADLINE": "1s"},
			check: func(o *options) bool {
				return o.tokenFile == "t" && o.storeKind == "postgres" && o.postgresDSN == "postgres://x" && o.deadline == time.Second
			}},
		{name: "flag beats env", env: map[string]string{"RECEIVER_TOKEN_FILE": "env"}, args: []string{"--token-file", "flag"},
			check: func(o *options) bool { return o.tokenFile == "flag" }},
		{name: "debug addr from env", env: map[string]string{"RECEIVER_DEBUG_ADDR": "127.0.0.1:6060"}, args: []string{"--token-file", "t"},
			check: func(o *options) bool { return o.debugAddr == "127.0.0.1:6060" }},
		{name: "debug off by default", args: []string{"--token-file", "t"},
			check: func(o *options) bool { return o.debugAddr == "" }},
		{name: "retention off by default", args: []string{"--token-file", "t"},
			check: func(o *options) bool { return o.retention.MaxAge == 0 && o.retention.MaxBytes == 0 }},
		{name: "retention", env: map[string]string{"RECEIVER_RETENTION_MAX_BYTES": "1073741824"}, args: []string{"--token-file", "t", "--retention-max-age", "720h"},
			check: func(o *options) bool { return o.retention.MaxAge == 720*time.Hour && o.retention.MaxBytes == 1<<30 }},
		{name: "kubernetes read auth off by default", args: []string{"--token-file", "t"},
			check: func(o *options) bool { return o.kubeReadAuth == "" && o.kubeAuthCacheTTL == 30*time.Second }},
		{name: "kubernetes read auth", env: map[string]string{"RECEIVER_KUBERNETES_READ_AUTH": "team-a/hooks"}, args: []string{"--token-file", "t"},
			check: func(o *options) bool { return o.kubeReadAuth == "team-a/hooks" }},
		{name: "kubernetes read auth needs namespace and name", args: []string{"--token-file", "t", "--kubernetes-read-auth", "hooks"},
			wantErr: "NAMESPACE/NAME"},
		{name: "kubernetes read auth with an extra slash", args: []string{"--token-file", "t", "--kubernetes-read-auth", "a/b/c"},
			wantErr: "NAMESPACE/NAME"},
		{name: "token file required", wantErr: "--token-file is required"},
		{name: "bad env value", env: map[string]string{"RECEIVER_BATCH_SIZE": "lots"}, args: []string{"--token-file", "t"}, wantErr: "RECEIVER_BATCH_SIZE"},
		{name: "stray argument", args: []string{"--token-file", "t", "extra"}, wantErr: "unexpected arguments"},
		{name: "help", args: []string{"--help"}, wantErr: flag.ErrHelp.Error()},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			var out bytes.Buffer
			o, err := parseFlags(c.args, &out)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err = %v, want %q", err, c.wantErr)
				}
				if errors.Is(err, flag.ErrHelp) && !strings.Contains(out.String(), "RECEIVER_TOKEN_FILE") {
					t.Errorf("--help does not list env vars:\n%s", out.String())
				}
				return
			}
			if err != nil || !c.check(o) {
				t.Fatalf("err=%v options=%+v", err, o)
			}
		})
	}
}

var buildOnce struct {
	sync.Once
	path string
	err  error
}

// receiverBinary builds cmd/receiver once per test binary.
func receiverBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		bins, err := proc.Build{Dir: binDir, Packages: []string{"./cmd/receiver"}}.Run(context.Background())
		if err != nil {
			buildOnce.err = err
			return
		}
		buildOnce.path = bins[0]
	})
	if buildOnce.err != nil {
		t.Fatal(buildOnce.err)
	}
	return buildOnce.path
}

// child is a receiver process.
type child struct {
	*proc.Process
	url string
	log *bytes.Buffer
}

func startChild(t *testing.T, storeArgs []string, dir string) *child {
	t.Helper()
	addr, err := proc.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "token"), []byte("tok"), 0o600)       //nolint:errcheck
	os.WriteFile(filepath.Join(dir, "read-token"), []byte("rtok"), 0o600) //nolint:errcheck
	args := append([]string{"--listen-addr", addr, "--token-file", filepath.Join(dir, "token"),
		"--read-token-file", filepath.Join(dir, "read-token"), "--shutdown-delay", "0s", "--shutdown-grace", "10s"}, storeArgs...)
	c := &child{url: "http://" + addr, log: &bytes.Buffer{}}
	c.Process, err = proc.Start(proc.Spec{Name: "receiver", Path: receiverBinary(t), Args: args, Tee: &syncWriter{w: c.log}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Kill()
		if t.Failed() {
			t.Logf("receiver log:\n%s", c.log)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := proc.WaitHTTPOK(ctx, c.url+"/readyz", c.Done()); err != nil {
		t.Fatalf("receiver not ready: %v\n%s", err, c.log)
	}
	return c
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// load sends unique deliveries from several goroutines until stop is closed and returns the run
// ids that were answered 2xx.
// ingestRequest is a delivery of run id to c.
func ingestRequest(c *child, id string) *http.Request {
	body := fmt.Sprintf(`{"workspaceId":"w","project":{"name":"p"},"apiInfo":{"name":"a","runId":%q,"result":{"status":"completed","result":%q}}}`, id, strings.Repeat("x", 500))
	req, _ := http.NewRequest(http.MethodPost, c.url+"/webhooks/intuned", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer tok")
	req.Header.Set("Content-Type", "application/json")
	return req
}

func load(c *child, prefix string, stop <-chan struct{}, acked *atomic.Int64) func() []string {
	var mu sync.Mutex
	var ok []string
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 5 * time.Second}
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("%s-%d-%d", prefix, g, i)
				res, err := client.Do(ingestRequest(c, id))
				if err != nil {
					select {
					case <-stop:
						return
					default:
						time.Sleep(5 * time.Millisecond) // the receiver is gone; wait to be stopped
						continue
					}
				}
				io.Copy(io.Discard, res.Body) //nolint:errcheck
				res.Body.Close()
				if res.StatusCode/100 == 2 {
					mu.Lock()
					ok = append(ok, id)
					mu.Unlock()
					acked.Add(1)
				}
			}
		}()
	}
	return func() []string { wg.Wait(); return ok }
}

// storedIDs pages through the read API and returns every stored run id.
func storedIDs(t *testing.T, c *child) map[string]bool {
	t.Helper()
	ids := map[string]bool{}
	cursor := ""
	for {
		req, _ := http.NewRequest(http.MethodGet, c.url+"/v1/deliveries?limit=1000&cursor="+cursor, nil)
		req.Header.Set("Authorization", "Bearer rtok")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		sc := bufio.NewScanner(res.Body)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var l struct{ RunID string }
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				t.Fatal(err)
			}
			ids[l.RunID] = true
			n++
		}
		res.Body.Close()
		if res.StatusCode != 200 {
			t.Fatalf("list: %d", res.StatusCode)
		}
		if n == 0 {
			return ids
		}
		cursor = res.Header.Get("X-Next-Cursor")
	}
}

func storeArgs(t *testing.T, kind, dir string) []string {
	if kind == "sqlite" {
		return []string{"--store", "sqlite", "--sqlite-path", filepath.Join(dir, "r.db")}
	}
	dsnFile := filepath.Join(dir, "dsn")
	os.WriteFile(dsnFile, []byte(pgtest.NewDatabase(t)), 0o600) //nolint:errcheck
	return []string{"--store", "postgres", "--postgres-dsn-file", dsnFile}
}

// TestCrashSafety: a receiver under concurrent load is SIGKILLed at a random moment; after a
// restart every delivery that was answered 2xx must be in the store.
func TestCrashSafety(t *testing.T) {
	for _, kind := range []string{"sqlite", "postgres"} {
		t.Run(kind, func(t *testing.T) {
			dir := t.TempDir()
			args := storeArgs(t, kind, dir)
			total := 0
			for rep := range 5 {
				c := startChild(t, args, dir)
				stop := make(chan struct{})
				var acked atomic.Int64
				wait := load(c, fmt.Sprintf("crash%d", rep), stop, &acked)
				// Kill after a random moment once deliveries are flowing.
				for acked.Load() < 20 {
					time.Sleep(2 * time.Millisecond)
				}
				time.Sleep(time.Duration(rand.IntN(150)) * time.Millisecond)
				c.Kill()
				close(stop)
				ok := wait()
				total += len(ok)

				c2 := startChild(t, args, dir)
				stored := storedIDs(t, c2)
				for _, id := range ok {
					if !stored[id] {
						t.Fatalf("rep %d: %s was acknowledged but is not stored (acked %d)", rep, id, len(ok))
					}
				}
				c2.Signal(syscall.SIGTERM)
				<-c2.Done()
			}
			t.Logf("%d acknowledged deliveries survived 5 SIGKILLs", total)
		})
	}
}

// TestSIGTERMDrains: on SIGTERM the receiver turns not ready at once but
// goes on taking deliveries for --shutdown-delay (while the Service and the
// Ingress controller stop routing to it), then finishes in-flight ones,
// exits 0 and loses nothing.
func TestSIGTERMDrains(t *testing.T) {
	for _, kind := range []string{"sqlite", "postgres"} {
		t.Run(kind, func(t *testing.T) {
			dir := t.TempDir()
			args := storeArgs(t, kind, dir)
			c := startChild(t, append(args, "--shutdown-delay", "1500ms"), dir)
			stop := make(chan struct{})
			var acked atomic.Int64
			wait := load(c, "term", stop, &acked)
			for acked.Load() < 50 {
				time.Sleep(2 * time.Millisecond)
			}
			c.Signal(syscall.SIGTERM)
			if code := waitReadyz(t, c, http.StatusServiceUnavailable); code != http.StatusServiceUnavailable {
				t.Fatalf("/readyz after SIGTERM: %d, want 503", code)
			}
			// A delivery sent now, on a new connection, is still taken.
			tr := &http.Transport{}
			defer tr.CloseIdleConnections()
			res, err := (&http.Client{Transport: tr}).Do(ingestRequest(c, "term-after-readyz"))
			if err != nil {
				t.Fatalf("a delivery once /readyz failed: %v, want it taken during --shutdown-delay", err)
			}
			res.Body.Close()
			if res.StatusCode != http.StatusCreated {
				t.Fatalf("a delivery once /readyz failed: %d, want 201", res.StatusCode)
			}
			// ... and its answer closes the connection, so a client that
			// keeps connections reconnects to wherever routing points now.
			if !res.Close {
				t.Error("an answer during --shutdown-delay keeps its connection open")
			}
			<-c.Done()
			close(stop)
			ok := wait()
			if _, err := c.Exited(); err != nil {
				t.Fatalf("after SIGTERM: %v, want exit code 0", err)
			}
			for _, line := range []string{"deliveriesDuringDelay", "receiver stopped cleanly"} {
				if !strings.Contains(c.log.String(), line) {
					t.Errorf("no %q in the log", line)
				}
			}
			stored := storedIDs(t, startChild(t, args, dir))
			for _, id := range append(ok, "term-after-readyz") {
				if !stored[id] {
					t.Fatalf("%s acknowledged but not stored", id)
				}
			}
		})
	}
}

// waitReadyz polls /readyz for up to a second until it answers want, and
// returns the last answer.
func waitReadyz(t *testing.T, c *child, want int) int {
	t.Helper()
	code := 0
	for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		res, err := http.Get(c.url + "/readyz")
		if err != nil {
			continue
		}
		res.Body.Close()
		if code = res.StatusCode; code == want {
			break
		}
	}
	return code
}
