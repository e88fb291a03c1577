package receiver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/intuned-operator/intuned-operator/internal/receiver/store"
)

// seed stores deliveries received at the given ages, with the body a POST of validBody sends, so
// that a retry through the ingest path is a duplicate of the stored one.
func (e *testEnv) seed(t *testing.T, prefix string, n int, age time.Duration) []string {
	t.Helper()
	var ds []store.Delivery
	var ids []string
	for i := range n {
		id := fmt.Sprintf("%s-%d", prefix, i)
		ids = append(ids, id)
		ds = append(ds, store.Delivery{RunID: id, JobID: "job-1", JobRunID: "jr-1", Project: "ecommerce", APIName: "details",
			ResultStatus: "completed", ReceivedAt: time.Now().Add(-age).UTC(), Body: []byte(validBody(id))})
	}
	if _, err := e.st.Save(context.Background(), ds); err != nil {
		t.Fatal(err)
	}
	return ids
}

func (e *testEnv) stored(t *testing.T, runID string) bool {
	t.Helper()
	_, err := e.st.Get(context.Background(), runID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		t.Fatal(err)
	}
	return err == nil
}

// wantStored fails for each of ids the store holds or not, unlike stored.
func (e *testEnv) wantStored(t *testing.T, ids []string, stored bool) {
	t.Helper()
	for _, id := range ids {
		if e.stored(t, id) != stored {
			t.Errorf("%s stored: %v, want %v", id, !stored, stored)
		}
	}
}

func (e *testEnv) metric(t *testing.T, line string) bool {
	t.Helper()
	return bytes.Contains(e.get(t, "/metrics").body, []byte("\n"+line+"\n"))
}

// retentionForTest prunes every 20 ms in batches of 3, so a round takes several batches.
func retentionForTest(r Retention) func(*Config) {
	return func(c *Config) {
		r.Interval, r.Batch, r.Pause = 20*time.Millisecond, 3, time.Millisecond
		c.Retention = r
	}
}

// TestRetentionByAge: deliveries and quarantined bodies older than MaxAge go, in batches; the
// younger ones stay, and a retry of a kept delivery is still a duplicate.
func TestRetentionByAge(t *testing.T) {
	forEachStore(t, func(t *testing.T, kind string) {
		e := newEnv(t, kind, retentionForTest(Retention{MaxAge: 3 * time.Hour}))
		old := e.seed(t, "old", 10, 4*time.Hour)
		kept := e.seed(t, "kept", 2, 150*time.Minute)
		for _, age := range []time.Duration{5 * time.Hour, time.Hour} {
			if err := e.st.Quarantine(context.Background(), store.Rejected{Reason: "invalid_json: x", ReceivedAt: time.Now().Add(-age), Body: []byte("{")}); err != nil {
				t.Fatal(err)
			}
		}
		eventually(t, "old deliveries pruned", func() bool {
			return e.metric(t, `receiver_retention_pruned_total{kind="deliveries"} 10`) &&
				e.metric(t, `receiver_retention_pruned_total{kind="quarantined"} 1`)
		})
		e.wantStored(t, old, false)
		e.wantStored(t, kept, true)
		if n := e.count(t, "quarantine"); n != 1 {
			t.Errorf("quarantine holds %d bodies, want the young one", n)
		}
		if r := e.post(t, ingestToken, validBody(kept[0])); r.status != http.StatusOK || !strings.Contains(string(r.body), "duplicate") {
			t.Errorf("retry of a kept delivery: %d %s, want 200 duplicate", r.status, r.body)
		}
		oldest, err := e.st.OldestDelivery(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("receiver_store_oldest_delivery_timestamp_seconds %g", float64(oldest.UnixMicro())/1e6); !e.metric(t, want) {
			t.Errorf("metrics lack %q", want)
		}
	})
}

// TestRetentionSizeStopsAtRetryWindow: over its size bound, the store prunes its oldest
// deliveries, but none received in the last RetryWindowFloor, however far over the bound it
// stays, and says so. Intuned's retries of those (until 1h after their Run) stay duplicates.
func TestRetentionSizeStopsAtRetryWindow(t *testing.T) {
	e := newEnv(t, "sqlite", retentionForTest(Retention{MaxBytes: 1}))
	old := e.seed(t, "old", 20, RetryWindowFloor+time.Minute)
	young := e.seed(t, "young", 5, RetryWindowFloor-time.Minute)
	eventually(t, "the old deliveries pruned, and the size floor reported", func() bool {
		return e.metric(t, `receiver_retention_pruned_total{kind="deliveries"} 20`) &&
			e.metric(t, "receiver_retention_size_floor_reached 1")
	})
	e.wantStored(t, old, false)
	e.wantStored(t, young, true)
	for _, id := range young {
		if r := e.post(t, ingestToken, validBody(id)); r.status != http.StatusOK || !strings.Contains(string(r.body), "duplicate") {
			t.Errorf("late retry of %s: %d %s, want 200 duplicate", id, r.status, r.body)
		}
	}
}

// TestRetentionSizeBound: a store over its bound prunes its oldest deliveries until it is under.
func TestRetentionSizeBound(t *testing.T) {
	e := newEnv(t, "sqlite", nil)
	sizer := e.st.(store.DataSizer)
	for i := range 20 {
		e.seed(t, fmt.Sprint("b", i), 50, RetryWindowFloor+time.Duration(100-i)*time.Minute) // b0 oldest
	}
	full, err := sizer.DataBytes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	bound := full * 2 / 3
	e.rcv.Close()
	e.serve(t, retentionForTest(Retention{MaxBytes: bound}))
	eventually(t, "pruned below the bound", func() bool {
		n, err := sizer.DataBytes(context.Background())
		return err == nil && n <= bound
	})
	if e.stored(t, "b0-0") || !e.stored(t, "b19-49") {
		t.Errorf("pruned in the wrong order: oldest kept %v, newest kept %v", e.stored(t, "b0-0"), e.stored(t, "b19-49"))
	}
	if n := e.count(t, "deliveries"); n < 500 {
		t.Errorf("%d of 1000 deliveries left for a bound of 2/3 of the data: pruned far past the bound", n)
	}
	if !e.metric(t, "receiver_retention_size_floor_reached 0") {
		t.Error("floor reported while under the bound")
	}
}

func TestRetentionSettingsRefused(t *testing.T) {
	forEachStore(t, func(t *testing.T, kind string) {
		e := newEnv(t, kind, nil)
		cfg := Config{TokenFile: e.dir + "/token", Retention: Retention{MaxAge: time.Hour}}
		if _, err := New(cfg, e.st); err == nil || !strings.Contains(err.Error(), "Intuned retries") {
			t.Errorf("max age 1h: %v, want refused", err)
		}
		cfg.Retention = Retention{MaxBytes: 1 << 30}
		r, err := New(cfg, e.st)
		if err == nil {
			r.Close()
		}
		if kind == "postgres" && (err == nil || !strings.Contains(err.Error(), "sqlite")) {
			t.Errorf("size bound on postgres: %v, want refused", err)
		}
		if kind == "sqlite" && err != nil {
			t.Errorf("size bound on sqlite: %v", err)
		}
	})
}

// TestPruneBatchFollowsItsTime: a batch that holds the writer longer than BatchTime halves the
// next one, one that takes less than half of it doubles it, within minPruneBatch and Batch.
func TestPruneBatchFollowsItsTime(t *testing.T) {
	c := Retention{Batch: 1000, BatchTime: 10 * time.Millisecond}
	for _, tc := range []struct {
		n    int
		took time.Duration
		want int
	}{
		{100, 30 * time.Millisecond, 50},
		{15, 30 * time.Millisecond, minPruneBatch},
		{100, 2 * time.Millisecond, 200},
		{800, 2 * time.Millisecond, 1000},
		{100, 7 * time.Millisecond, 100},
		{100, 10 * time.Millisecond, 100},
	} {
		if got := c.nextBatch(tc.n, tc.took); got != tc.want {
			t.Errorf("after %d rows in %v: next batch %d, want %d", tc.n, tc.took, got, tc.want)
		}
	}
	if got := (&Retention{Batch: 3, BatchTime: time.Millisecond}).nextBatch(3, time.Second); got != 3 {
		t.Errorf("a Batch below minPruneBatch: next batch %d, want 3", got)
	}
}
