package sqlite

import (
	"strings"
	"testing"
	"time"

	"github.com/intuned-operator/intuned-operator/internal/receiver/store/storetest"
)

// TestPruneUsesIndexes fails when a retention statement would scan a table: on a store of
// millions of deliveries a pruning batch must read only the rows it deletes.
func TestPruneUsesIndexes(t *testing.T) {
	s := open(t).(*Store)
	storetest.SeedJobRuns(t, s, []storetest.JobRunRows{{JobRunID: "jr-a", N: 300}})
	cases := []struct {
		name, query string
		args        []any
		want        []string
	}{
		{"deliveries", pruneDeliveries, []any{time.Now().UnixMicro(), 1000}, []string{
			"SEARCH deliveries USING COVERING INDEX deliveries_received_at (received_at<?)",
			"SEARCH deliveries USING INTEGER PRIMARY KEY (rowid=?)", // the delete, row by row
		}},
		{"quarantine", pruneQuarantine, []any{time.Now().UnixMicro(), 1000}, []string{
			"SEARCH quarantine USING COVERING INDEX quarantine_received_at (received_at<?)",
		}},
		{"oldest", oldestDelivery, nil, []string{"SEARCH deliveries USING COVERING INDEX deliveries_received_at"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if plan := checkPlan(t, s, c.query, c.args, c.want); strings.Contains(plan, "TEMP B-TREE") {
				t.Errorf("plan sorts:\n%s", plan)
			}
		})
	}
}
