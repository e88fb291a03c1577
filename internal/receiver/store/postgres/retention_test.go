package postgres

import (
	"context"
	"testing"
	"time"

	"github.com/intuned-operator/intuned-operator/internal/receiver/store/storetest"
)

// TestPruneUsesIndexes fails when a retention statement would scan a table: on a store of
// millions of deliveries a pruning batch must read only the rows it deletes. The tables are
// vacuumed and analyzed (as autovacuum leaves them), for the planner's real choice.
func TestPruneUsesIndexes(t *testing.T) {
	ctx := context.Background()
	s := open(t).(*Store)
	runs := make([]storetest.JobRunRows, 20)
	for i := range runs {
		runs[i] = storetest.JobRunRows{JobRunID: "jr-" + string(rune('a'+i)), N: 500}
	}
	storetest.SeedJobRuns(t, s, runs)
	if _, err := s.pool.Exec(ctx, `INSERT INTO quarantine (received_at, reason, body, job_run_id)
		SELECT now() - g * interval '1 second', 'invalid_json: x', '{', 'jr-q' FROM generate_series(1, 10000) g`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.pool.Exec(ctx, "VACUUM ANALYZE"); err != nil {
		t.Fatal(err)
	}
	// An hour ago: older than nothing the seed stored, as a pruning round's bound usually is.
	before := time.Now().Add(-time.Hour)
	for _, c := range []struct {
		name, query string
		args        []any
		want        []string
	}{
		{"deliveries", pruneDeliveries, []any{before, 1000}, []string{"using deliveries_received_at on deliveries", "Tid Scan on deliveries"}},
		{"quarantine", pruneQuarantine, []any{before, 1000}, []string{"using quarantine_received_at on quarantine", "Tid Scan on quarantine"}},
		{"oldest", oldestDelivery, nil, []string{"using deliveries_received_at on deliveries"}},
	} {
		t.Run(c.name, func(t *testing.T) { checkPlan(t, s, c.query, c.args, c.want) })
	}
}
