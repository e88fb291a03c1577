package sqlite

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/intuned-operator/intuned-operator/internal/receiver/store"
	"github.com/intuned-operator/intuned-operator/internal/receiver/store/storetest"
)

// TestBulkLoad: a bulk-loaded file opens as a store at the current schema, holds every delivery in
// order, and takes the next Save after them.
func TestBulkLoad(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "r.db")
	const n = 2500
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	i := 0
	err := BulkLoad(ctx, path, 1000, func() (store.Delivery, bool) {
		if i == n {
			return store.Delivery{}, false
		}
		i++
		return storetest.Delivery(fmt.Sprintf("run-%d", i), "job", "jr", "details", "completed", t0.Add(time.Duration(i)*time.Second)), true
	})
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var version int
	var mode string
	if err := s.read.QueryRowContext(ctx, "SELECT (SELECT user_version FROM pragma_user_version), (SELECT journal_mode FROM pragma_journal_mode)").Scan(&version, &mode); err != nil {
		t.Fatal(err)
	}
	if version != SchemaVersion() || mode != "wal" {
		t.Errorf("schema version %d, journal mode %s; want %d, wal", version, mode, SchemaVersion())
	}
	last, err := s.Get(ctx, fmt.Sprintf("run-%d", n))
	if err != nil || last.Seq != n {
		t.Fatalf("last bulk-loaded delivery: seq %d (%v), want %d", last.Seq, err, n)
	}
	if _, err := s.Save(ctx, []store.Delivery{storetest.Delivery("next", "job", "jr", "details", "completed", time.Now())}); err != nil {
		t.Fatal(err)
	}
	if next, err := s.Get(ctx, "next"); err != nil || next.Seq != n+1 {
		t.Fatalf("the next delivery: seq %d (%v), want %d", next.Seq, err, n+1)
	}
}
