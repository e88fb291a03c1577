// Package sqlite is the embedded receiver store: one SQLite file in WAL mode with synchronous=FULL,
// so a committed transaction survives a crash or power loss. Only one process may write the file, so
// this store suits a single receiver replica (a StatefulSet with a PVC).
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"github.com/intuned-operator/intuned-operator/internal/receiver/store"
)

// schema is version 1 of the layout; PRAGMA user_version records which version a file has.
//
// Unlike PostgreSQL, SQLite keeps a table in a B-tree keyed by its INTEGER PRIMARY KEY, so seq is the
// primary key here (new rows append at the end of the tree) and run_id, the dedup key, is UNIQUE.
// The columns and semantics are the same as in the postgres store.
const schema = `
CREATE TABLE IF NOT EXISTS deliveries (
	seq           INTEGER PRIMARY KEY, -- receive order; never reused because rows are never deleted
	run_id        TEXT    NOT NULL UNIQUE,
	job_id        TEXT    NOT NULL DEFAULT '',
	job_run_id    TEXT    NOT NULL DEFAULT '',
	project       TEXT    NOT NULL,
	api_name      TEXT    NOT NULL,
	result_status TEXT    NOT NULL,
	received_at   INTEGER NOT NULL, -- unix microseconds, UTC
	body          BLOB    NOT NULL
);
CREATE INDEX IF NOT EXISTS deliveries_job_run ON deliveries (job_run_id, seq);
CREATE TABLE IF NOT EXISTS quarantine (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	received_at INTEGER NOT NULL,
	reason      TEXT    NOT NULL,
	body        BLOB    NOT NULL
);
PRAGMA user_version = 1;
`

// checkpointEvery is how often the background checkpointer copies the WAL into the database file.
// Doing it outside the writer keeps most of that work off the commit path (no periodic latency
// spikes).
//
// A checkpoint from another connection never catches up with a writer that keeps committing, and
// SQLite starts writing the WAL from its beginning again only once every frame in it was copied:
// under sustained load the WAL grew without bound (870 MB after 13 s of make bench-receiver). So
// after each background checkpoint the writer runs one more PASSIVE checkpoint itself, between two
// transactions, when nothing new can arrive: it copies only the frames committed during the
// background one, and the next transaction restarts the WAL. The WAL stays at about one interval
// of writes (83 MB in the same benchmark) at no measurable throughput cost.
const checkpointEvery = time.Second

// Store is a store.Store backed by one SQLite file.
type Store struct {
	write  *sql.DB   // exactly one connection: SQLite allows one writer at a time anyway
	insert *sql.Stmt // insertDelivery, prepared once on the write connection
	read   *sql.DB   // several connections: WAL lets readers run beside the writer

	stopCheckpoints  chan struct{}
	checkpointsDone  chan struct{}
	finishCheckpoint atomic.Bool // set after a background checkpoint; the writer finishes it
}

var _ store.Store = (*Store)(nil)

// Open opens (creating if needed) the database file at path and applies the schema.
func Open(ctx context.Context, path string) (*Store, error) {
	return openEvery(ctx, path, checkpointEvery)
}

// openEvery is Open with the background checkpoint interval (tests use a short one).
func openEvery(ctx context.Context, path string, every time.Duration) (*Store, error) {
	if path == "" {
		return nil, errors.New("sqlite: empty database path")
	}
	q := url.Values{}
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "foreign_keys(ON)")
	dsn := "file:" + path + "?" + q.Encode()

	// No automatic checkpoints on the commit path (wal_autocheckpoint=0): see checkpointEvery.
	write, err := sql.Open("sqlite", dsn+"&_txlock=immediate&_pragma=wal_autocheckpoint(0)")
	if err != nil {
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	write.SetMaxOpenConns(1)
	write.SetMaxIdleConns(1)
	write.SetConnMaxLifetime(0)
	read, err := sql.Open("sqlite", dsn)
	if err != nil {
		write.Close()
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	read.SetMaxOpenConns(4)
	s := &Store{write: write, read: read, stopCheckpoints: make(chan struct{}), checkpointsDone: make(chan struct{})}
	if _, err := write.ExecContext(ctx, schema); err != nil {
		close(s.checkpointsDone)
		s.Close()
		return nil, fmt.Errorf("sqlite: apply schema: %w", err)
	}
	if s.insert, err = write.PrepareContext(ctx, insertDelivery); err != nil {
		close(s.checkpointsDone)
		s.Close()
		return nil, fmt.Errorf("sqlite: prepare insert: %w", err)
	}
	go s.checkpoints(every)
	return s, nil
}

// checkpoints runs PASSIVE checkpoints from a reader connection: they never block the writer. See
// checkpointEvery.
func (s *Store) checkpoints(every time.Duration) {
	defer close(s.checkpointsDone)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-s.stopCheckpoints:
			return
		case <-tick.C:
			s.read.Exec("PRAGMA wal_checkpoint(PASSIVE)") //nolint:errcheck // retried next tick; the WAL stays valid
			s.finishCheckpoint.Store(true)
		}
	}
}

const insertDelivery = `INSERT INTO deliveries
	(run_id, job_id, job_run_id, project, api_name, result_status, received_at, body)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?)
	ON CONFLICT (run_id) DO NOTHING`

// Save implements store.Store. The transaction starts with BEGIN IMMEDIATE (one writer at a time).
//
// The inserts run with a context that cannot be cancelled: for a cancellable one the driver starts
// a watcher goroutine and installs a progress handler per statement, which cost about as much as
// an insert. ctx still bounds the whole transaction: database/sql rolls it back when ctx ends, and
// the loop stops at the next row.
func (s *Store) Save(ctx context.Context, ds []store.Delivery) ([]bool, error) {
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("sqlite: begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	// tx.Stmt reuses the statement already prepared on the (single) write connection.
	stmt := tx.Stmt(s.insert)
	dup := make([]bool, len(ds))
	for i, d := range ds {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("sqlite: insert: %w", err)
		}
		res, err := stmt.ExecContext(context.Background(), d.RunID, d.JobID, d.JobRunID, d.Project, d.APIName,
			d.ResultStatus, d.ReceivedAt.UnixMicro(), d.Body)
		if err != nil {
			return nil, fmt.Errorf("sqlite: insert: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return nil, fmt.Errorf("sqlite: insert: %w", err)
		}
		dup[i] = n == 0
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("sqlite: commit: %w", err)
	}
	if s.finishCheckpoint.CompareAndSwap(true, false) {
		// The deliveries are committed; a failed checkpoint only leaves frames for the next one.
		s.write.ExecContext(context.Background(), "PRAGMA wal_checkpoint(PASSIVE)") //nolint:errcheck
	}
	return dup, nil
}

// Quarantine implements store.Store.
func (s *Store) Quarantine(ctx context.Context, r store.Rejected) error {
	_, err := s.write.ExecContext(ctx, `INSERT INTO quarantine (received_at, reason, body) VALUES (?, ?, ?)`,
		r.ReceivedAt.UnixMicro(), r.Reason, r.Body)
	if err != nil {
		return fmt.Errorf("sqlite: quarantine: %w", err)
	}
	return nil
}

const selectColumns = `SELECT seq, run_id, job_id, job_run_id, project, api_name, result_status, received_at, body FROM deliveries`

// List implements store.Store.
func (s *Store) List(ctx context.Context, f store.Filter, limit int) ([]store.Record, error) {
	where := []string{"seq > ?"}
	args := []any{f.AfterSeq}
	for _, c := range []struct{ col, val string }{
		{"job_id", f.JobID}, {"job_run_id", f.JobRunID}, {"api_name", f.APIName}, {"result_status", f.ResultStatus},
	} {
		if c.val != "" {
			where = append(where, c.col+" = ?")
			args = append(args, c.val)
		}
	}
	if !f.Since.IsZero() {
		where = append(where, "received_at >= ?")
		args = append(args, f.Since.UnixMicro())
	}
	args = append(args, limit)
	rows, err := s.read.QueryContext(ctx, selectColumns+" WHERE "+strings.Join(where, " AND ")+" ORDER BY seq LIMIT ?", args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list: %w", err)
	}
	defer rows.Close()
	var out []store.Record
	for rows.Next() {
		r, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list: %w", err)
	}
	return out, nil
}

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, runID string) (store.Record, error) {
	r, err := scan(s.read.QueryRowContext(ctx, selectColumns+" WHERE run_id = ?", runID))
	if errors.Is(err, sql.ErrNoRows) {
		return store.Record{}, store.ErrNotFound
	}
	return r, err
}

func scan(row interface{ Scan(...any) error }) (store.Record, error) {
	var r store.Record
	var micros int64
	err := row.Scan(&r.Seq, &r.RunID, &r.JobID, &r.JobRunID, &r.Project, &r.APIName, &r.ResultStatus, &micros, &r.Body)
	if errors.Is(err, sql.ErrNoRows) {
		return r, err
	}
	if err != nil {
		return r, fmt.Errorf("sqlite: read row: %w", err)
	}
	r.ReceivedAt = time.UnixMicro(micros).UTC()
	return r, nil
}

// Ping implements store.Store.
func (s *Store) Ping(ctx context.Context) error {
	var one int
	return s.read.QueryRowContext(ctx, "SELECT 1").Scan(&one)
}

// Close implements store.Store.
func (s *Store) Close() error {
	select {
	case <-s.stopCheckpoints:
	default:
		close(s.stopCheckpoints)
	}
	<-s.checkpointsDone
	var stmtErr error
	if s.insert != nil {
		stmtErr = s.insert.Close()
	}
	return errors.Join(stmtErr, s.read.Close(), s.write.Close())
}
