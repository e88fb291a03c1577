package postgres

import (
	"context"
	"testing"

	"github.com/intuned-operator/intuned-operator/internal/receiver/store/storetest"
	"github.com/intuned-operator/intuned-operator/internal/testutil/pgtest"
)

// BenchmarkSave: storetest.BenchmarkSave against a real server (server work is in ns/op, not in
// this process's CPU).
func BenchmarkSave(b *testing.B) {
	s, err := Open(context.Background(), pgtest.NewDatabase(b))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	storetest.BenchmarkSave(b, s)
}

// BenchmarkJobRunSummary: the summary of one JobRun with 100,000 stored results among 100,000
// other rows. "fresh" right after the inserts; "vacuumed" once (auto)vacuum has marked the pages
// all-visible, so the index-only scan needs no visit to the table.
func BenchmarkJobRunSummary(b *testing.B) {
	s, err := Open(context.Background(), pgtest.NewDatabase(b))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	storetest.SeedJobRuns(b, s, storetest.SummaryBenchRows)
	b.Run("100k/fresh", func(b *testing.B) { storetest.BenchmarkJobRunSummary(b, s) })
	if _, err := s.pool.Exec(context.Background(), "VACUUM ANALYZE"); err != nil {
		b.Fatal(err)
	}
	b.Run("100k/vacuumed", func(b *testing.B) { storetest.BenchmarkJobRunSummary(b, s) })
}
