package receiver

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"github.com/intuned-operator/intuned-operator/internal/receiver/store"
	"github.com/intuned-operator/intuned-operator/internal/receiver/store/sqlite"
)

// TestMigrateSQLiteToPostgres is the move of docs/autoscaling.md: a SQLite
// receiver's backup (GET /v1/backup) copied into a PostgreSQL receiver's
// store (store.Copy, what cmd/receiver-migrate runs) answers the read API
// with the same deliveries (run id, JobRun, API, status, receive time,
// backfilled mark, body byte for byte) in the same order. Cursors are
// each store's own. A second copy changes nothing.
func TestMigrateSQLiteToPostgres(t *testing.T) {
	ctx := context.Background()
	src := newEnv(t, "sqlite", nil)
	fill(t, src)
	r := src.get(t, "/v1/backup")
	if r.status != http.StatusOK {
		t.Fatalf("backup: %d %s", r.status, r.body)
	}
	file := filepath.Join(t.TempDir(), "backup.db")
	if err := os.WriteFile(file, r.body, 0o600); err != nil {
		t.Fatal(err)
	}
	from, err := sqlite.Open(ctx, file)
	if err != nil {
		t.Fatal(err)
	}
	defer from.Close()
	dst := newEnv(t, "postgres", nil)
	first, err := store.Copy(ctx, from, dst.st, 7)
	if err != nil {
		t.Fatal(err)
	}
	again, err := store.Copy(ctx, from, dst.st, 7)
	if err != nil {
		t.Fatal(err)
	}
	if first.Stored < 30 || first.Duplicates != 0 || first.Conflicts != 0 || again != (store.Copied{Duplicates: first.Stored}) {
		t.Fatalf("first copy %+v, second %+v: want every delivery stored once, then each a duplicate", first, again)
	}
	sameView(t, deliveriesView(t, src), deliveriesView(t, dst))
}

// deliveriesView is e's list of deliveries (7 a page, without the cursors)
// and every raw body with its headers.
func deliveriesView(t *testing.T, e *testEnv) []string {
	t.Helper()
	var out, runIDs []string
	listPages(t, e, func(r response) {
		for _, l := range lines(r.body) {
			var d map[string]any
			if err := json.Unmarshal([]byte(l), &d); err != nil {
				t.Fatal(err)
			}
			delete(d, "cursor")
			b, _ := json.Marshal(d)
			out = append(out, "delivery: "+string(b))
			runIDs = append(runIDs, d["runId"].(string))
		}
	})
	for _, id := range runIDs {
		r := e.get(t, "/v1/deliveries/"+url.PathEscape(id))
		out = append(out, fmt.Sprintf("raw %s %d at %s backfilled %q: %s", id, r.status, r.header.Get("X-Received-At"), r.header.Get("X-Backfilled"), r.body))
	}
	return out
}
