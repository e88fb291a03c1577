package sqlite

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/intuned-operator/intuned-operator/internal/receiver/store/storetest"
)

// BenchmarkSave: storetest.BenchmarkSave on a file-backed store.
func BenchmarkSave(b *testing.B) {
	s, err := Open(context.Background(), filepath.Join(b.TempDir(), "r.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	storetest.BenchmarkSave(b, s)
}

// BenchmarkJobRunSummary: the summary of one JobRun with 100,000 stored results among 100,000
// other rows, in a file-backed store.
func BenchmarkJobRunSummary(b *testing.B) {
	s, err := Open(context.Background(), filepath.Join(b.TempDir(), "r.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	storetest.SeedJobRuns(b, s, storetest.SummaryBenchRows)
	b.Run("100k", func(b *testing.B) { storetest.BenchmarkJobRunSummary(b, s) })
}
