package sqlite

import (
	"context"
	"errors"
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
	res, err := s.Save(ctx, []store.Delivery{
		storetest.Delivery("a", "j", "jr", "x", "completed", time.Now()),
		storetest.Delivery("b", "j", "jr", "x", "completed", time.Now()),
	})
	if err != nil || !res[0].Dup || res[0].Conflict || res[1].Dup {
		t.Fatalf("results=%+v err=%v, want a duplicate and a new one", res, err)
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
	s, err := OpenWith(ctx, path, Options{CheckpointEvery: 10 * time.Millisecond})
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

func saveBig(s *Store, id string, size int) error {
	d := storetest.Delivery(id, "j", "jr", "x", "completed", time.Now())
	d.Body = []byte(`{"pad":"` + strings.Repeat("x", size) + `"}`)
	_, err := s.Save(context.Background(), []store.Delivery{d})
	return err
}

// TestFullVolume fills a real 8 MiB tmpfs: writes are refused with store.ErrFull while reads keep
// working, the store opens again on the full volume, and writes come back by themselves once
// space is freed.
func TestFullVolume(t *testing.T) {
	dir := storetest.Tmpfs(t, 8<<20)
	ctx := context.Background()
	path := filepath.Join(dir, "r.db")
	opts := Options{MinFreeBytes: 1 << 20, CheckpointEvery: 20 * time.Millisecond}
	s, err := OpenWith(ctx, path, opts)
	if err != nil {
		t.Fatal(err)
	}
	// Another tenant of the volume takes all but 3 MiB.
	filler := filepath.Join(dir, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	free, _, _ := volumeSpace(path)
	if _, err := f.Write(make([]byte, free-3<<20)); err != nil {
		t.Fatal(err)
	}
	f.Close()

	stored := 0
	for ; ; stored++ {
		err := saveBig(s, fmt.Sprint("r", stored), 20000)
		if err == nil {
			continue
		}
		if !errors.Is(err, store.ErrFull) {
			t.Fatalf("after %d deliveries: %v, want store.ErrFull", stored, err)
		}
		break
	}
	if stored < 20 {
		t.Fatalf("only %d deliveries stored before the volume was full", stored)
	}
	if err := s.CheckWritable(ctx); !errors.Is(err, store.ErrFull) {
		t.Fatalf("CheckWritable on a full volume = %v, want store.ErrFull", err)
	}
	if recs, err := s.List(ctx, store.Filter{}, 1000); err != nil || len(recs) != stored {
		t.Fatalf("read on a full volume: %d deliveries (%v), want %d", len(recs), err, stored)
	}

	// The last bytes go too, and the receiver restarts: it must open and serve reads.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	storetest.Fill(t, filepath.Join(dir, "filler2"))
	s, err = OpenWith(ctx, path, opts)
	if err != nil {
		t.Fatalf("open on a full volume: %v", err)
	}
	defer s.Close()
	if recs, err := s.List(ctx, store.Filter{}, 1000); err != nil || len(recs) != stored {
		t.Fatalf("read after a restart on a full volume: %d deliveries (%v), want %d", len(recs), err, stored)
	}
	if _, err := s.Get(ctx, "r0"); err != nil {
		t.Fatal(err)
	}
	if err := saveBig(s, "refused", 20000); !errors.Is(err, store.ErrFull) {
		t.Fatalf("write on a full volume: %v, want store.ErrFull", err)
	}

	// Space returns while a sender keeps retrying: writes succeed again without a restart.
	os.Remove(filler)
	os.Remove(filepath.Join(dir, "filler2"))
	start := time.Now()
	deadline := start.Add(10 * time.Second)
	for err := saveBig(s, "after", 20000); err != nil; err = saveBig(s, "after", 20000) {
		if time.Now().After(deadline) {
			t.Fatalf("still failing 10 s after space returned: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("writes resumed %v after space returned", time.Since(start))
	if err := s.CheckWritable(ctx); err != nil {
		t.Fatalf("CheckWritable after space returned: %v", err)
	}
	// Keep writing: the WAL must not eat the space it was given back.
	for i := range 100 {
		if err := saveBig(s, fmt.Sprint("more", i), 20000); err != nil {
			t.Fatalf("write %d after recovery: %v", i, err)
		}
	}
}

// TestOpenWritesNothing: opening an existing store appends nothing to its WAL (a start on a full
// volume must not need space).
func TestOpenWritesNothing(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "r.db")
	s, err := OpenWith(ctx, path, Options{CheckpointEvery: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := saveBig(s, "a", 10); err != nil {
		t.Fatal(err)
	}
	before := s.walBytes()
	// A second open of the same file is a restart that does not first tidy the WAL on close.
	s2, err := OpenWith(ctx, path, Options{CheckpointEvery: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	after := s.walBytes()
	s2.Close()
	s.Close()
	if after != before {
		t.Fatalf("opening wrote to the WAL: %d -> %d bytes", before, after)
	}
}

// TestWALTruncatedWhenIdle: once writes stop, the WAL file goes back to zero bytes.
func TestWALTruncatedWhenIdle(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "r.db")
	s, err := OpenWith(ctx, path, Options{CheckpointEvery: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range 200 {
		if err := saveBig(s, fmt.Sprint("w", i), 5000); err != nil {
			t.Fatal(err)
		}
	}
	if s.walBytes() == 0 {
		t.Fatal("no WAL written; the test proves nothing")
	}
	deadline := time.Now().Add(10 * time.Second)
	for s.walBytes() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("WAL still %d bytes 10 s after the last write", s.walBytes())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// A reader and the next write are unaffected.
	if recs, err := s.List(ctx, store.Filter{}, 1000); err != nil || len(recs) != 200 {
		t.Fatalf("%d, %v", len(recs), err)
	}
	if err := saveBig(s, "next", 10); err != nil {
		t.Fatal(err)
	}
}
