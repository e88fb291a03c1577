package sqlite

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/intuned-operator/intuned-operator/internal/receiver/store/storetest"
)

func fileBytes(t testing.TB, s *Store) int64 {
	s.truncateWAL(context.Background()) //nolint:errcheck // only the database file is measured
	fi, err := os.Stat(s.path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// TestPrunedSpaceIsReused: pages freed by Prune go on SQLite's freelist, and the next inserts use
// them: a store that prunes as much as it takes in keeps its file size (the file never shrinks,
// auto_vacuum is off), and DataBytes follows what is stored.
func TestPrunedSpaceIsReused(t *testing.T) {
	ctx := context.Background()
	s, err := OpenWith(ctx, filepath.Join(t.TempDir(), "r.db"), Options{CheckpointEvery: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r := rand.New(rand.NewPCG(1, 2))
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const n = 6000
	storetest.FillRealistic(t, s, r, 0, n, 1500, t0)
	before := fileBytes(t, s)
	data, _ := s.DataBytes(ctx)
	for {
		p, err := s.Prune(ctx, t0.Add(n/2*time.Millisecond), 1000)
		if err != nil {
			t.Fatal(err)
		}
		if p.Deliveries < 1000 {
			break
		}
	}
	pruned, _ := s.DataBytes(ctx)
	if fileBytes(t, s) != before || pruned > data*6/10 {
		t.Fatalf("after pruning half: file %d (was %d), data %d (was %d); want the same file, about half the data", fileBytes(t, s), before, pruned, data)
	}
	storetest.FillRealistic(t, s, r, n, n/2, 1500, t0)
	after := fileBytes(t, s)
	t.Logf("file %d -> %d bytes after pruning half and storing as much again; data %d -> %d -> %d", before, after, data, pruned, func() int64 { d, _ := s.DataBytes(ctx); return d }())
	if after > before*105/100 {
		t.Errorf("file grew from %d to %d bytes: the freed pages were not reused", before, after)
	}
}

// BenchmarkBytesPerDelivery measures what a stored delivery costs on disk, for the sizing
// guidance in docs/receiver-data.md (run with -benchtime 1x):
//
//	go test ./internal/receiver/store/sqlite -run '^$' -bench BytesPerDelivery -benchtime 1x
func BenchmarkBytesPerDelivery(b *testing.B) {
	for _, size := range storetest.BytesPerDeliverySizes {
		b.Run(size.Name, func(b *testing.B) {
			n := size.N
			for range b.N {
				s, err := OpenWith(context.Background(), filepath.Join(b.TempDir(), "r.db"), Options{CheckpointEvery: time.Hour})
				if err != nil {
					b.Fatal(err)
				}
				bodies := storetest.FillRealistic(b, s, rand.New(rand.NewPCG(1, 2)), 0, n, size.Bytes, time.Now())
				data, _ := s.DataBytes(context.Background())
				b.ReportMetric(float64(bodies)/float64(n), "body-B/delivery")
				b.ReportMetric(float64(data)/float64(n), "data-B/delivery")
				b.ReportMetric(float64(fileBytes(b, s))/float64(n), "file-B/delivery")
				s.Close()
			}
		})
	}
}
