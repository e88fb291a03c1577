package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/intuned-operator/intuned-operator/internal/receiver/store"
	"github.com/intuned-operator/intuned-operator/internal/receiver/store/storetest"
)

// TestOpenMigratesOlderVersions: a file made by the version 1 schema (receivers before the JobRun
// summary) or version 2 (before backfill) opens, keeps its data, is summarized, and gets the
// conflicts it holds attributed; its deliveries read back as not backfilled.
func TestOpenMigratesOlderVersions(t *testing.T) {
	for from := 1; from < schemaVersion; from++ {
		t.Run(fmt.Sprint("version ", from), func(t *testing.T) { testOpenMigrates(t, from) })
	}
}

func testOpenMigrates(t *testing.T, from int) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "r.db")
	d := writeOldVersion(t, path, from)
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var version int
	if err := s.read.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil || version != schemaVersion {
		t.Fatalf("user_version = %d (%v), want %d", version, err, schemaVersion)
	}
	storetest.CheckMigrated(t, s, d)
}

// writeOldVersion makes a database file at path with the schema of version from, holding one
// delivery (returned), a conflicting duplicate of it and an invalid body.
func writeOldVersion(t *testing.T, path string, from int) store.Delivery {
	t.Helper()
	ctx := context.Background()
	old, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	d := storetest.Delivery("r1", "job", "jr-old", "list", "completed", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	type stmt struct {
		sql  string
		args []any
	}
	var stmts []stmt
	for _, m := range migrations[:from] {
		stmts = append(stmts, stmt{m, nil})
	}
	stmts = append(stmts,
		stmt{`INSERT INTO deliveries (run_id, job_id, job_run_id, project, api_name, result_status, received_at, body)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, []any{d.RunID, d.JobID, d.JobRunID, d.Project, d.APIName, d.ResultStatus, d.ReceivedAt.UnixMicro(), d.Body}},
		stmt{`INSERT INTO quarantine (received_at, reason, body) VALUES (0, ?, '{}')`, []any{store.ConflictReason("r1")}},
		stmt{`INSERT INTO quarantine (received_at, reason, body) VALUES (0, 'invalid_json: x', '{')`, nil},
	)
	if from >= 2 { // version 2 attributes conflicts when they are quarantined
		stmts = append(stmts, stmt{`UPDATE quarantine SET job_run_id = 'jr-old' WHERE reason LIKE 'conflicting%'`, nil})
	}
	for _, st := range stmts {
		if _, err := old.ExecContext(ctx, st.sql, st.args...); err != nil {
			t.Fatal(err)
		}
	}
	old.Close()
	return d
}

// TestSummaryQueriesUseIndexes fails when a summary query would scan a table (or a whole index)
// instead of seeking in an index: a JobRun with 100,000 results must not read the others' rows.
func TestSummaryQueriesUseIndexes(t *testing.T) {
	s := open(t).(*Store)
	storetest.SeedJobRuns(t, s, []storetest.JobRunRows{{JobRunID: "jr-a", N: 300}, {JobRunID: "jr-b", N: 300}})
	cases := []struct {
		name  string
		query string
		args  []any
		want  []string // every table read, and the index it must be read through
		// sortFree: the rows come in the index's order, so grouping needs no sort of a JobRun's
		// entries (a sort of 100,000 made the summary 7 times slower).
		sortFree bool
	}{
		{"results of one JobRun", fmt.Sprintf(summarizeResults, "?"), []any{"jr-a"},
			[]string{"SEARCH deliveries USING COVERING INDEX deliveries_job_run_summary (job_run_id=?)"}, true},
		{"results of a page", fmt.Sprintf(summarizeResults, "?, ?"), []any{"jr-a", "jr-b"},
			[]string{"SEARCH deliveries USING COVERING INDEX deliveries_job_run_summary (job_run_id=?)"}, true},
		{"quarantine", fmt.Sprintf(summarizeQuarantine, "?, ?"), []any{"jr-a", "jr-b"},
			[]string{"SEARCH quarantine USING INDEX quarantine_job_run (job_run_id=?)"}, false},
		{"next JobRun", nextJobRun, []any{"jr-a"}, []string{
			"SEARCH deliveries USING COVERING INDEX deliveries_job_run", // either index serves
			"(job_run_id>?)",
			"SEARCH quarantine USING COVERING INDEX quarantine_job_run (job_run_id>?)",
		}, false},
		{"List by JobRun", selectColumns + " WHERE seq > ? AND job_run_id = ? ORDER BY seq LIMIT ?", []any{0, "jr-a", 10},
			[]string{"SEARCH deliveries USING INDEX deliveries_job_run (job_run_id=? AND seq>?)"}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			plan := checkPlan(t, s, c.query, c.args, c.want)
			if c.sortFree && strings.Contains(plan, "TEMP B-TREE") {
				t.Errorf("plan sorts:\n%s", plan)
			}
		})
	}
}

// explain returns the query's EXPLAIN QUERY PLAN, one step a line.
func explain(t *testing.T, s *Store, query string, args ...any) string {
	rows, err := s.read.QueryContext(context.Background(), "EXPLAIN QUERY PLAN "+query, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var lines []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return strings.Join(lines, "\n")
}

// checkPlan fails when query's plan lacks one of want or scans a table; it returns the plan.
func checkPlan(t *testing.T, s *Store, query string, args []any, want []string) string {
	t.Helper()
	plan := explain(t, s, query, args...)
	for _, w := range want {
		if !strings.Contains(plan, w) {
			t.Errorf("plan lacks %q:\n%s", w, plan)
		}
	}
	for _, table := range []string{"deliveries", "quarantine"} {
		if strings.Contains(plan, "SCAN "+table) {
			t.Errorf("plan scans %s:\n%s", table, plan)
		}
	}
	return plan
}
