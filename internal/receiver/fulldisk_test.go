package receiver

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/intuned-operator/intuned-operator/internal/receiver/store/sqlite"
	"github.com/intuned-operator/intuned-operator/internal/receiver/store/storetest"
)

// syncBuffer is a log sink several goroutines write to.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func metricLine(t *testing.T, e *testEnv, name string) string {
	t.Helper()
	for _, l := range strings.Split(string(e.get(t, "/metrics").body), "\n") {
		if strings.HasPrefix(l, name+" ") {
			return l
		}
	}
	return ""
}

// TestFullVolume: a receiver on a real 8 MiB volume that fills up answers 503 store_full (with
// Retry-After), reports not ready, keeps serving reads, logs the repeated failure a few times
// rather than once per delivery, exports the free space, and becomes ready and stores again by
// itself once space is freed.
func TestFullVolume(t *testing.T) {
	dir := storetest.Tmpfs(t, 8<<20)
	e := &testEnv{kind: "sqlite", dir: t.TempDir(), sqlitePath: filepath.Join(dir, "r.db")}
	var err error
	e.st, err = sqlite.OpenWith(context.Background(), e.sqlitePath,
		sqlite.Options{MinFreeBytes: 1 << 20, CheckpointEvery: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.st.Close() })
	var logs syncBuffer
	e.serve(t, func(c *Config) {
		c.Logger = slog.New(slog.NewJSONHandler(&logs, nil))
		c.RetryAfter = time.Second
	})
	if l := metricLine(t, e, "receiver_store_volume_near_full"); l != "receiver_store_volume_near_full 0" {
		t.Fatalf("empty volume: %q", l)
	}
	pad := strings.Repeat("x", 20000)
	big := func(id string) string { return strings.Replace(validBody(id), `"result":[1]`, `"result":"`+pad+`"`, 1) }

	// Fill the volume with deliveries until the store refuses them.
	stored := 0
	for ; ; stored++ {
		r := e.post(t, ingestToken, big(fmt.Sprint("full-", stored)))
		if r.status == http.StatusCreated {
			continue
		}
		if r.status != http.StatusServiceUnavailable || r.code != "store_full" || r.header.Get("Retry-After") == "" {
			t.Fatalf("after %d deliveries: %d %s, want 503 store_full with Retry-After", stored, r.status, r.body)
		}
		break
	}
	if stored < 50 {
		t.Fatalf("only %d deliveries fit on the volume", stored)
	}
	// Intuned keeps retrying: each answer stays 503, and the log does not get a line per delivery.
	for i := range 200 {
		if r := e.post(t, ingestToken, big(fmt.Sprint("retry-", i%5))); r.status != 503 || r.code != "store_full" {
			t.Fatalf("retry %d on a full volume: %d %s", i, r.status, r.body)
		}
	}
	if r := e.post(t, ingestToken, "{bad"); r.status != 503 || r.code != "store_full" {
		t.Fatalf("an invalid body cannot be quarantined on a full volume: %d %s, want 503", r.status, r.body)
	}
	// So does a backfill, whether its lines are valid (the writer) or not (the quarantine).
	for _, body := range []string{resultsLine("full-backfill") + "\n", "{bad\n"} {
		if r := e.backfill(t, ingestToken, "jr-1", backfillQuery, body); r.status != 503 || r.code != "store_full" || r.header.Get("Retry-After") == "" {
			t.Fatalf("backfill %q on a full volume: %d %s, want 503 store_full with Retry-After", body, r.status, r.body)
		}
	}
	if r := e.get(t, "/readyz"); r.status != 503 || r.code != "store_full" {
		t.Fatalf("readyz on a full volume: %d %s, want 503 store_full", r.status, r.body)
	}
	if n := strings.Count(logs.String(), `"level":"ERROR"`); n > 3 {
		t.Errorf("%d ERROR lines for one full volume, want a few:\n%s", n, logs.String())
	}
	for _, want := range []string{"receiver_store_volume_full 1", "receiver_store_volume_near_full 1"} {
		if l := metricLine(t, e, strings.Fields(want)[0]); l != want {
			t.Errorf("metrics: %q, want %q", l, want)
		}
	}
	if metricLine(t, e, "receiver_store_volume_free_bytes") == "" || metricLine(t, e, "receiver_store_volume_capacity_bytes") == "" {
		t.Error("no free-space metric")
	}

	// Reads keep working.
	if r := e.get(t, "/v1/deliveries?limit=1000"); r.status != 200 || len(ndjson(t, r.body)) != stored {
		t.Fatalf("read on a full volume: %d, %d lines, want %d", r.status, len(ndjson(t, r.body)), stored)
	}
	if r := e.get(t, "/v1/deliveries/full-0"); r.status != 200 {
		t.Fatalf("get on a full volume: %d", r.status)
	}

	// The volume is grown from 8 to 64 MiB: readiness and writes come back without a restart.
	start := time.Now()
	storetest.ResizeTmpfs(t, dir, 64<<20)
	eventually(t, "ready again after space returned", func() bool { return e.get(t, "/readyz").status == 200 })
	t.Logf("ready %v after the volume was grown", time.Since(start))
	if r := e.post(t, ingestToken, big("after-1")); r.status != 201 {
		t.Fatalf("after space returned: %d %s", r.status, r.body)
	}
	if res := backfillResult(t, e.backfill(t, ingestToken, "jr-1", backfillQuery, resultsLine("full-backfill")+"\n{bad\n")); res.Stored != 1 || res.Invalid != 1 {
		t.Fatalf("backfill after space returned: %+v", res)
	}
	// And it stays writable under a burst: the WAL does not eat the space it was given.
	for i := range 300 {
		if r := e.post(t, ingestToken, big(fmt.Sprint("after-burst-", i))); r.status != 201 {
			t.Fatalf("burst %d after recovery: %d %s", i, r.status, r.body)
		}
	}
	if l := metricLine(t, e, "receiver_store_volume_full"); l != "receiver_store_volume_full 0" {
		t.Errorf("metrics after recovery: %q", l)
	}
}
