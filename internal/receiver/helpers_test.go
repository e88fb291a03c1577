package receiver

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/intuned-operator/intuned-operator/internal/testutil/poll"

	"github.com/jackc/pgx/v5"

	"github.com/intuned-operator/intuned-operator/internal/receiver/store"
	"github.com/intuned-operator/intuned-operator/internal/receiver/store/postgres"
	"github.com/intuned-operator/intuned-operator/internal/receiver/store/sqlite"
	"github.com/intuned-operator/intuned-operator/internal/testutil/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

const (
	ingestToken = "ingest-token-1"
	readToken   = "read-token-1"
)

// testEnv is a receiver on a real store behind a real HTTP server.
type testEnv struct {
	kind       string // "sqlite" or "postgres"
	url        string
	rcv        *Receiver
	st         store.Store
	dir        string
	sqlitePath string
	pgDSN      string
}

// forEachStore runs fn once per store implementation.
func forEachStore(t *testing.T, fn func(t *testing.T, kind string)) {
	for _, kind := range []string{"sqlite", "postgres"} {
		t.Run(kind, func(t *testing.T) { fn(t, kind) })
	}
}

func newEnv(t testing.TB, kind string, mutate func(*Config)) *testEnv {
	t.Helper()
	e := &testEnv{kind: kind, dir: t.TempDir()}
	var err error
	switch kind {
	case "sqlite":
		e.sqlitePath = filepath.Join(e.dir, "r.db")
		e.st, err = sqlite.Open(context.Background(), e.sqlitePath)
	case "postgres":
		e.pgDSN = pgtest.NewDatabase(t)
		e.st, err = postgres.Open(context.Background(), e.pgDSN)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.st.Close() })
	e.serve(t, mutate)
	return e
}

// serve starts a receiver on e.st behind a real HTTP server.
func (e *testEnv) serve(t testing.TB, mutate func(*Config)) {
	t.Helper()
	var err error
	writeFile(t, filepath.Join(e.dir, "token"), ingestToken)
	writeFile(t, filepath.Join(e.dir, "read-token"), readToken)
	cfg := Config{
		TokenFile:     filepath.Join(e.dir, "token"),
		ReadTokenFile: filepath.Join(e.dir, "read-token"),
		TokenReload:   20 * time.Millisecond,
		Logger:        slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if mutate != nil {
		mutate(&cfg)
	}
	e.rcv, err = New(cfg, e.st)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(e.rcv.Handler())
	t.Cleanup(func() { srv.Close(); e.rcv.Close() })
	e.url = srv.URL
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// sinkBody returns a valid sink body for runID.
func validBody(runID string) string {
	return fmt.Sprintf(`{"workspaceId":"e95cb8d1-f212-4c04-ace1-c0f77e8708c7","project":{"id":"p1","name":"ecommerce"},`+
		`"projectJob":{"id":"job-1"},"projectJobRun":{"id":"jr-1"},`+
		`"apiInfo":{"name":"details","runId":%q,"parameters":{"u":"x"},"result":{"status":"completed","result":[1],"statusCode":200}}}`, runID)
}

type response struct {
	status int
	code   string // error.code, when the body is an error
	header http.Header
	body   []byte
}

func do(t *testing.T, req *http.Request) response {
	t.Helper()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	var eb errorBody
	json.Unmarshal(body, &eb) //nolint:errcheck // not every body is an error
	return response{status: res.StatusCode, code: eb.Error.Code, header: res.Header, body: body}
}

func (e *testEnv) post(t *testing.T, token, body string) response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.url+"/webhooks/intuned", bytes.NewBufferString(body))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return do(t, req)
}

func (e *testEnv) get(t *testing.T, path string) response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.url+path, nil)
	req.Header.Set("Authorization", "Bearer "+readToken)
	return do(t, req)
}

// count runs a COUNT(*) query directly against the store's database.
func (e *testEnv) count(t *testing.T, table string) int {
	t.Helper()
	return e.countWhere(t, table, "true")
}

// countWhere counts the rows of table that match an SQL condition.
func (e *testEnv) countWhere(t *testing.T, table, cond string) int {
	t.Helper()
	var n int
	q := "SELECT count(*) FROM " + table + " WHERE " + cond
	switch e.kind {
	case "sqlite":
		db, err := sql.Open("sqlite", e.sqlitePath)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if err := db.QueryRow(q).Scan(&n); err != nil {
			t.Fatal(err)
		}
	case "postgres":
		conn, err := pgx.Connect(context.Background(), e.pgDSN)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		if err := conn.QueryRow(context.Background(), q).Scan(&n); err != nil {
			t.Fatal(err)
		}
	}
	return n
}

// lockWrites blocks all writes to the deliveries table from another connection until release is
// called: a real stalled database, no mocks.
func (e *testEnv) lockWrites(t *testing.T) (release func()) {
	t.Helper()
	ctx := context.Background()
	switch e.kind {
	case "sqlite":
		db, err := sql.Open("sqlite", e.sqlitePath)
		if err != nil {
			t.Fatal(err)
		}
		conn, err := db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
			t.Fatal(err)
		}
		return func() { conn.ExecContext(ctx, "ROLLBACK"); conn.Close(); db.Close() } //nolint:errcheck
	default:
		conn, err := pgx.Connect(ctx, e.pgDSN)
		if err != nil {
			t.Fatal(err)
		}
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, "LOCK TABLE deliveries IN ACCESS EXCLUSIVE MODE"); err != nil {
			t.Fatal(err)
		}
		return func() { tx.Rollback(ctx); conn.Close(ctx) } //nolint:errcheck
	}
}

// eventually retries cond (poll.Eventually, every 10 ms) until it holds or
// 10 s pass (no wall-clock assertion: only a bound).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := poll.Eventually(ctx, 10*time.Millisecond, what, func(context.Context) (bool, error) { return cond(), nil }); err != nil {
		t.Fatalf("timed out waiting for: %s", what)
	}
}
