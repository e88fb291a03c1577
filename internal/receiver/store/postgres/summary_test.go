package postgres

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/intuned-operator/intuned-operator/internal/receiver/store"
	"github.com/intuned-operator/intuned-operator/internal/receiver/store/storetest"
	"github.com/intuned-operator/intuned-operator/internal/testutil/pgtest"
)

// TestOpenMigratesOlderSchemas: a database made by migration 0001 alone (receivers before the
// JobRun summary) or up to 0002 (before backfill) opens, keeps its data, is summarized, and gets
// the conflicts it holds attributed; its deliveries read back as not backfilled.
func TestOpenMigratesOlderSchemas(t *testing.T) {
	for _, files := range [][]string{{"0001_init.sql"}, {"0001_init.sql", "0002_job_run_summary.sql"},
		{"0001_init.sql", "0002_job_run_summary.sql", "0003_backfill.sql"}} {
		t.Run(files[len(files)-1], func(t *testing.T) { testOpenMigrates(t, files) })
	}
}

func testOpenMigrates(t *testing.T, files []string) {
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	d := storetest.Delivery("r1", "job", "jr-old", "list", "completed", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	type stmt struct {
		sql  string
		args []any
	}
	stmts := []stmt{{`CREATE TABLE schema_migrations (version bigint PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`, nil}}
	for i, f := range files {
		sql, err := migrations.ReadFile("migrations/" + f)
		if err != nil {
			t.Fatal(err)
		}
		stmts = append(stmts, stmt{string(sql), nil}, stmt{`INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, []any{i + 1, f}})
	}
	stmts = append(stmts,
		stmt{`INSERT INTO deliveries (run_id, job_id, job_run_id, project, api_name, result_status, received_at, body)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, []any{d.RunID, d.JobID, d.JobRunID, d.Project, d.APIName, d.ResultStatus, d.ReceivedAt, d.Body}},
		stmt{`INSERT INTO quarantine (received_at, reason, body) VALUES (now(), $1, '{}')`, []any{store.ConflictReason("r1")}},
		stmt{`INSERT INTO quarantine (received_at, reason, body) VALUES (now(), 'invalid_json: x', '{')`, nil},
	)
	if len(files) >= 2 { // 0002 attributes conflicts when they are quarantined
		stmts = append(stmts, stmt{`UPDATE quarantine SET job_run_id = 'jr-old' WHERE reason LIKE 'conflicting%'`, nil})
	}
	for _, st := range stmts {
		if _, err := conn.Exec(ctx, st.sql, st.args...); err != nil {
			t.Fatal(err)
		}
	}
	conn.Close(ctx)

	s, err := Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	storetest.CheckMigrated(t, s, d)
}

// TestSummaryQueriesUseIndexes fails when a summary query would scan a table instead of reading
// an index: a JobRun with 100,000 results must not read the others' rows. The tables hold enough
// JobRuns, vacuumed and analyzed (as autovacuum leaves them), for the planner's real choice.
func TestSummaryQueriesUseIndexes(t *testing.T) {
	ctx := context.Background()
	s := open(t).(*Store)
	runs := make([]storetest.JobRunRows, 100)
	for i := range runs {
		runs[i] = storetest.JobRunRows{JobRunID: "jr-" + string(rune('a'+i%26)) + strings.Repeat("x", i/26), N: 100}
	}
	storetest.SeedJobRuns(t, s, runs)
	// Quarantined bodies of 10,000 other JobRuns, in one statement (Quarantine takes one at a time).
	if _, err := s.pool.Exec(ctx, `INSERT INTO quarantine (received_at, reason, body, job_run_id)
		SELECT now(), 'invalid_json: x', '{', 'jr-q' || g FROM generate_series(1, 10000) g`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.pool.Exec(ctx, "VACUUM ANALYZE"); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		query string
		args  []any
		want  []string // every table read, and the index it must be read through
	}{
		{"results of one JobRun", summarizeResults, []any{[]string{"jr-a"}},
			[]string{"Index Only Scan using deliveries_job_run_summary on deliveries"}},
		{"results of a page", summarizeResults, []any{[]string{"jr-a", "jr-b", "jr-c"}},
			[]string{"Index Only Scan using deliveries_job_run_summary on deliveries"}},
		{"quarantine", summarizeQuarantine, []any{[]string{"jr-a", "jr-b"}},
			[]string{"quarantine_job_run"}}, // an index scan, or a bitmap of its matches
		{"next JobRun", nextJobRun, []any{"jr-a"},
			[]string{"Index Only Scan using deliveries_job_run", "Index Only Scan using quarantine_job_run"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			plan := checkPlan(t, s, c.query, c.args, c.want)
			if c.name != "quarantine" && strings.Contains(plan, "Sort") {
				t.Errorf("plan sorts (the index gives the rows in order):\n%s", plan)
			}
		})
	}
}

// checkPlan fails when query's EXPLAIN lacks one of want or scans a table; it returns the plan.
func checkPlan(t *testing.T, s *Store, query string, args []any, want []string) string {
	t.Helper()
	rows, _ := s.pool.Query(context.Background(), "EXPLAIN "+query, args...)
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	plan := strings.Join(lines, "\n")
	for _, w := range want {
		if !strings.Contains(plan, w) {
			t.Errorf("plan lacks %q:\n%s", w, plan)
		}
	}
	if strings.Contains(plan, "Seq Scan") {
		t.Errorf("plan scans a table:\n%s", plan)
	}
	return plan
}
