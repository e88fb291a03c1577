package sqlite

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/intuned-operator/intuned-operator/internal/receiver/store"
	"github.com/intuned-operator/intuned-operator/internal/receiver/store/storetest"
)

func open(t *testing.T) store.Store {
	s, err := Open(context.Background(), filepath.Join(t.TempDir(), "r.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestStore(t *testing.T) { storetest.Run(t, open) }

func TestReopenKeepsDataAndSequence(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "r.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Save(ctx, []store.Delivery{storetest.Delivery("a", "j", "jr", "x", "completed", time.Now())}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	dup, err := s.Save(ctx, []store.Delivery{
		storetest.Delivery("a", "j", "jr", "x", "completed", time.Now()),
		storetest.Delivery("b", "j", "jr", "x", "completed", time.Now()),
	})
	if err != nil || !dup[0] || dup[1] {
		t.Fatalf("dup=%v err=%v, want [true false]", dup, err)
	}
	recs, err := s.List(ctx, store.Filter{}, 10)
	if err != nil || len(recs) != 2 || recs[0].Seq >= recs[1].Seq {
		t.Fatalf("recs=%+v err=%v", recs, err)
	}
}

// TestWALStaysBoundedUnderSustainedWrites: with a writer that never pauses, background checkpoints
// alone never let SQLite restart the WAL; the writer finishing each checkpoint keeps it small.
func TestWALStaysBoundedUnderSustainedWrites(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "r.db")
	s, err := openEvery(ctx, path, 10*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	body := []byte(`{"pad":"` + strings.Repeat("x", 1000) + `"}`)
	batch := make([]store.Delivery, 20)
	const commits = 600 // ~12k rows, ~90 MB of WAL frames if the WAL never restarted
	var largest int64
	for c := range commits {
		for i := range batch {
			batch[i] = storetest.Delivery(fmt.Sprintf("run-%d-%d", c, i), "j", "jr", "x", "completed", time.Now())
			batch[i].Body = body
		}
		if _, err := s.Save(ctx, batch); err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(path + "-wal"); err == nil {
			largest = max(largest, fi.Size())
		}
	}
	if largest > 32<<20 {
		t.Fatalf("WAL grew to %d MiB during %d back-to-back commits; want it restarted after checkpoints", largest>>20, commits)
	}
}
