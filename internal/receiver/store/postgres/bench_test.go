package postgres

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

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

// BenchmarkBytesPerDelivery measures what a stored delivery costs in PostgreSQL, for the sizing
// guidance in docs/receiver-data.md: pg_total_relation_size (table, TOAST and indexes) of the
// deliveries table after n realistic deliveries and a VACUUM, the state autovacuum keeps it in
// (run with -benchtime 1x):
//
//	go test ./internal/receiver/store/postgres -run '^$' -bench BytesPerDelivery -benchtime 1x
func BenchmarkBytesPerDelivery(b *testing.B) {
	for _, size := range storetest.BytesPerDeliverySizes {
		b.Run(size.Name, func(b *testing.B) {
			for range b.N {
				s, err := Open(context.Background(), pgtest.NewDatabase(b))
				if err != nil {
					b.Fatal(err)
				}
				bodies := storetest.FillRealistic(b, s, rand.New(rand.NewPCG(1, 2)), 0, size.N, size.Bytes, time.Now())
				ctx := context.Background()
				if _, err := s.pool.Exec(ctx, "VACUUM ANALYZE deliveries"); err != nil {
					b.Fatal(err)
				}
				var total, table, toast int64
				if err := s.pool.QueryRow(ctx, `SELECT pg_total_relation_size('deliveries'), pg_relation_size('deliveries'),
					coalesce(pg_total_relation_size(nullif(reltoastrelid, 0)), 0) FROM pg_class WHERE relname = 'deliveries'`).
					Scan(&total, &table, &toast); err != nil {
					b.Fatal(err)
				}
				n := float64(size.N)
				b.ReportMetric(float64(bodies)/n, "body-B/delivery")
				b.ReportMetric(float64(total)/n, "total-B/delivery")
				b.ReportMetric(float64(table+toast)/n, "heap+toast-B/delivery")
				b.ReportMetric(float64(total-table-toast)/n, "index-B/delivery")
				s.Close()
			}
		})
	}
}
