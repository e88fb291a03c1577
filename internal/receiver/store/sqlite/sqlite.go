// Package sqlite is the embedded receiver store: one SQLite file in WAL mode with synchronous=FULL,
// so a committed transaction survives a crash or power loss. Only one process may write the file, so
// this store suits a single receiver replica (a StatefulSet with a PVC).
package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	msqlite "modernc.org/sqlite" // also registers the "sqlite" database/sql driver
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/intuned-operator/intuned-operator/internal/receiver/store"
)

// migrations[i] takes a file from schema version i to i+1; PRAGMA user_version records which
// version a file has. Each runs in one transaction.
//
// Unlike PostgreSQL, SQLite keeps a table in a B-tree keyed by its INTEGER PRIMARY KEY, so seq is the
// primary key here (new rows append at the end of the tree) and run_id, the dedup key, is UNIQUE.
// The columns and semantics are the same as in the postgres store.
//
// seq is a rowid without AUTOINCREMENT: SQLite gives a new row max(seq)+1, so it would hand out a
// deleted newest seq again. Prune (retention) never deletes the newest delivery for that reason.
var migrations = []string{`
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
`, `
-- Version 2: the JobRun summary reads this index alone (never the rows with their bodies), and in
-- the order it groups by, so it counts a JobRun's entries in one pass without sorting them.
-- Widening deliveries_job_run instead (job_run_id, seq, api_name, ...) saved an index but took
-- 168 against 25 ms for a JobRun of 100,000 results: SQLite sorted them to group them.
CREATE INDEX deliveries_job_run_summary ON deliveries (job_run_id, api_name, result_status, received_at);
-- Quarantined bodies whose JobRun could be read carry it, so the summary counts them.
ALTER TABLE quarantine ADD COLUMN job_run_id TEXT NOT NULL DEFAULT '';
` + backfillConflictJobRuns + `
CREATE INDEX quarantine_job_run ON quarantine (job_run_id);
PRAGMA user_version = 2;
`, `
-- Version 3: backfill. A delivery built from a line of the JobRun's results file is marked, and
-- the summary counts those from its index: the column goes at the end of the index's key, so
-- the index still covers the summary and still groups in its order (rebuilding it reads the
-- table once, as version 2 did).
ALTER TABLE deliveries ADD COLUMN backfilled INTEGER NOT NULL DEFAULT 0;
DROP INDEX deliveries_job_run_summary;
CREATE INDEX deliveries_job_run_summary ON deliveries (job_run_id, api_name, result_status, received_at, backfilled);
-- A body quarantined once per JobRun (store.Rejected.Once, the invalid lines of a backfill)
-- carries its SHA-256; other bodies have none, and NULLs never collide.
ALTER TABLE quarantine ADD COLUMN digest BLOB;
CREATE UNIQUE INDEX quarantine_digest ON quarantine (job_run_id, digest) WHERE digest IS NOT NULL;
PRAGMA user_version = 3;
`, `
-- Version 4: retention. Prune deletes the oldest rows of each table, read through these indexes
-- (receive times only grow, so each insert appends to the index's last leaf).
CREATE INDEX deliveries_received_at ON deliveries (received_at);
CREATE INDEX quarantine_received_at ON quarantine (received_at);
PRAGMA user_version = 4;
`}

// backfillConflictJobRuns gives the conflicting duplicates quarantined before version 2 the JobRun
// of the delivery they conflict with, whose run id their reason names (store.ConflictReason: a
// prefix of 38 bytes, the quoted run id, a suffix of 41). A run id that needed escaping in the
// reason finds no delivery and stays unattributed, as do all older invalid bodies.
const backfillConflictJobRuns = `UPDATE quarantine SET job_run_id = coalesce((SELECT d.job_run_id FROM deliveries d
	WHERE d.run_id = substr(quarantine.reason, 39, length(quarantine.reason) - 38 - 41)), '')
	WHERE substr(reason, 1, 22) = 'conflicting_duplicate:';`

// schemaVersion is the user_version the migrations above end at. Open applies them only to a file
// with an older version: a start writes nothing otherwise (even an unchanged PRAGMA user_version
// appends a WAL frame), so a receiver can start and serve reads on a full volume.
var schemaVersion = len(migrations)

// SchemaVersion is the schema version this package creates and migrates to.
func SchemaVersion() int { return schemaVersion }

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
//
// Every 250 ms rather than every second: each checkpoint then flushes a quarter of the data to the
// database file, and that flush queues in front of the commits' fsyncs on a disk that runs flushes
// one after another (the receiver's p99 at a steady rate comes from these stalls). In four A/B
// runs of make bench-receiver (interleaved, both slots) it gave 6-18 % more deliveries/s at
// saturation with 17-34 % shorter mean commits every time; p99 at half the saturation rate was
// lower in three runs of four, but moved 15-216 ms with the load of the shared machine.
const checkpointEvery = 250 * time.Millisecond

// idleTicks: the WAL is truncated once no transaction committed for this many checkpoint
// intervals (1 s by default), so an idle store gives its space back without truncating between
// every two deliveries of a slow trickle.
const idleTicks = 4

// DefaultMinFreeBytes is the free space the store keeps on its volume by default: writes are
// refused (store.ErrFull) before the volume fills up, so a checkpoint always has room to move the
// WAL into the database file and the store can recover by itself once space returns.
const DefaultMinFreeBytes = 16 << 20

// Options tune Open. Zero values take the defaults.
type Options struct {
	// MinFreeBytes: a write is refused with store.ErrFull while the volume has less than this
	// much free space on top of the WAL's size. Default DefaultMinFreeBytes.
	MinFreeBytes int64
	// CheckpointEvery is the background checkpoint interval (see checkpointEvery); it is also
	// how often a full store looks for space again, and an idle WAL is truncated after idleTicks
	// of them. Default 250ms.
	CheckpointEvery time.Duration
}

// Store is a store.Store backed by one SQLite file.
type Store struct {
	path    string
	minFree int64
	write   *sql.DB   // exactly one connection: SQLite allows one writer at a time anyway
	insert  *sql.Stmt // insertDelivery, prepared once on the write connection
	read    *sql.DB   // several connections: WAL lets readers run beside the writer

	stopCheckpoints  chan struct{}
	checkpointsDone  chan struct{}
	finishCheckpoint atomic.Bool  // set after a background checkpoint; the writer finishes it
	writes           atomic.Int64 // transactions committed; the checkpointer tells idle from busy
	full             atomic.Bool  // the last space check failed: writes are refused
	unchecked        atomic.Int64 // bytes Save may have added to the WAL since the last space check
	// checkpointMu keeps the background checkpoint and truncateWAL apart: SQLite runs one
	// checkpoint at a time and answers another with SQLITE_BUSY at once (no busy handler).
	checkpointMu sync.Mutex
}

var (
	_ store.Store         = (*Store)(nil)
	_ store.WriteChecker  = (*Store)(nil)
	_ store.SpaceReporter = (*Store)(nil)
	_ store.DataSizer     = (*Store)(nil)
)

// Open opens (creating if needed) the database file at path and applies the schema.
func Open(ctx context.Context, path string) (*Store, error) {
	return OpenWith(ctx, path, Options{})
}

// OpenWith is Open with options.
func OpenWith(ctx context.Context, path string, o Options) (*Store, error) {
	if path == "" {
		return nil, errors.New("sqlite: empty database path")
	}
	if o.MinFreeBytes <= 0 {
		o.MinFreeBytes = DefaultMinFreeBytes
	}
	if o.CheckpointEvery <= 0 {
		o.CheckpointEvery = checkpointEvery
	}
	removeTemps(path)
	q := url.Values{}
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "foreign_keys(ON)")
	dsn := "file:" + path + "?" + q.Encode()

	// No automatic checkpoints on the commit path (wal_autocheckpoint=0): see checkpointEvery.
	write, err := openDB(dsn + "&_txlock=immediate&_pragma=wal_autocheckpoint(0)")
	if err != nil {
		return nil, err
	}
	write.SetMaxOpenConns(1)
	write.SetMaxIdleConns(1)
	write.SetConnMaxLifetime(0)
	read, err := openDB(dsn)
	if err != nil {
		write.Close()
		return nil, err
	}
	read.SetMaxOpenConns(4)
	s := &Store{path: path, minFree: o.MinFreeBytes, write: write, read: read,
		stopCheckpoints: make(chan struct{}), checkpointsDone: make(chan struct{})}
	if err := s.migrate(ctx); err != nil {
		close(s.checkpointsDone)
		s.Close()
		return nil, err
	}
	if s.insert, err = write.PrepareContext(ctx, insertDelivery); err != nil {
		close(s.checkpointsDone)
		s.Close()
		return nil, fmt.Errorf("sqlite: prepare insert: %w", err)
	}
	go s.checkpoints(o.CheckpointEvery)
	return s, nil
}

// openDB opens a pool whose connections keep the WAL and shared-memory files when the last one
// closes (SQLITE_FCNTL_PERSIST_WAL). SQLite deletes them by default, and a read needs them: on a
// full volume it could not create the shared-memory file again (SQLITE_IOERR_SHMSIZE), so a
// receiver restarted there could not even serve reads. Close truncates the WAL to zero bytes first.
func openDB(dsn string) (*sql.DB, error) {
	c, err := msqlite.NewConnector(dsn)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	return sql.OpenDB(persistWAL{c}), nil
}

type persistWAL struct{ driver.Connector }

func (p persistWAL) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := p.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	fc, ok := conn.(msqlite.FileControl)
	if !ok {
		conn.Close()
		return nil, errors.New("sqlite: driver connection has no file control")
	}
	if _, err := fc.FileControlPersistWAL("main", 1); err != nil {
		conn.Close()
		return nil, fmt.Errorf("sqlite: persist WAL: %w", err)
	}
	return conn, nil
}

// migrate applies the schema when the file's version is older than schemaVersion, and writes
// nothing when it is current.
func (s *Store) migrate(ctx context.Context) error {
	var version int
	if err := s.write.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return fmt.Errorf("sqlite: read schema version: %w", err)
	}
	switch {
	case version == schemaVersion:
		return nil
	case version > schemaVersion:
		return fmt.Errorf("sqlite: %s has schema version %d, newer than this receiver's %d", s.path, version, schemaVersion)
	}
	for v := version; v < schemaVersion; v++ {
		if err := s.applyMigration(ctx, migrations[v]); err != nil {
			return fmt.Errorf("sqlite: migrate %s to schema version %d: %w", s.path, v+1, err)
		}
	}
	return nil
}

func (s *Store) applyMigration(ctx context.Context, sql string) error {
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	if _, err := tx.ExecContext(ctx, sql); err != nil {
		return err
	}
	return tx.Commit()
}

// checkpoints runs PASSIVE checkpoints from a reader connection: they never block the writer. See
// checkpointEvery. When no transaction committed since the last tick it truncates the WAL, so an
// idle store gives its space back; when the store is full it looks for space again, so writes
// resume by themselves once space returns (even while /readyz keeps traffic away).
func (s *Store) checkpoints(every time.Duration) {
	defer close(s.checkpointsDone)
	tick := time.NewTicker(every)
	defer tick.Stop()
	lastWrites := s.writes.Load()
	idle := 0 // ticks without a committed transaction
	for {
		select {
		case <-s.stopCheckpoints:
			return
		case <-tick.C:
		}
		if s.full.Load() {
			s.ensureSpace(context.Background()) //nolint:errcheck // reported by the next write or CheckWritable
			continue
		}
		if w := s.writes.Load(); w != lastWrites {
			lastWrites = w
			idle = 0
		} else {
			if idle++; idle >= idleTicks && s.walBytes() > 0 {
				s.truncateWAL(context.Background()) //nolint:errcheck // retried next tick
			}
			continue
		}
		s.checkpointMu.Lock()
		s.read.Exec("PRAGMA wal_checkpoint(PASSIVE)") //nolint:errcheck // retried next tick; the WAL stays valid
		s.checkpointMu.Unlock()
		s.finishCheckpoint.Store(true)
	}
}

// truncateWAL copies the whole WAL into the database file and truncates it to zero bytes. It runs
// on the write connection (so between two transactions) and waits at most a moment for readers:
// when one is in the way it reports false and the caller tries again later.
func (s *Store) truncateWAL(ctx context.Context) (bool, error) {
	s.checkpointMu.Lock()
	defer s.checkpointMu.Unlock()
	conn, err := s.write.Conn(ctx)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "PRAGMA busy_timeout = 250"); err != nil {
		return false, err
	}
	defer conn.ExecContext(context.Background(), "PRAGMA busy_timeout = 10000") //nolint:errcheck // best effort; a failure leaves 250 ms
	var busy, logFrames, checkpointed int
	if err := conn.QueryRowContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &logFrames, &checkpointed); err != nil {
		return false, err
	}
	return busy == 0, nil
}

// ensureSpace refuses a write (store.ErrFull) unless the volume has MinFreeBytes free on top of
// the WAL's size: that keeps room for a checkpoint to move the whole WAL into the database file,
// which is what frees the WAL's space. Without it the WAL filled every byte freed (a volume grown
// from 8 to 64 MiB filled within 2 s), checkpoints then failed for lack of space, and the store
// never recovered. When space is short it first truncates the WAL and looks again.
func (s *Store) ensureSpace(ctx context.Context) error {
	free, capacity, err := volumeSpace(s.path)
	if err != nil || capacity == 0 {
		return nil // cannot tell (some FUSE file systems report zeros): let SQLite report a real failure
	}
	if wal := s.walBytes(); free >= s.minFree+wal {
		s.full.Store(false)
		return nil
	}
	truncated, terr := s.truncateWAL(ctx)
	free, _, err = volumeSpace(s.path)
	wal := s.walBytes()
	if err == nil && free >= s.minFree+wal {
		s.full.Store(false)
		return nil
	}
	s.full.Store(true)
	why := ""
	switch {
	case terr != nil:
		why = "; truncating the WAL failed: " + terr.Error()
	case !truncated:
		why = "; the WAL could not be truncated (readers in the way)"
	}
	return fmt.Errorf("sqlite: %w: %d bytes free, %d kept free plus the WAL (%d bytes)%s", store.ErrFull, free, s.minFree, wal, why)
}

// walBytes is the size of the WAL file (0 when it does not exist).
func (s *Store) walBytes() int64 {
	fi, err := os.Stat(s.path + "-wal")
	if err != nil {
		return 0
	}
	return fi.Size()
}

// volumeSpace returns the bytes available to this process and the size of the volume holding path.
func volumeSpace(path string) (free, capacity int64, err error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(filepath.Dir(path), &st); err != nil {
		return 0, 0, err
	}
	return int64(st.Bavail) * st.Bsize, int64(st.Blocks) * st.Bsize, nil
}

// asFull marks an error SQLite reports for a full disk (SQLITE_FULL) as store.ErrFull, and the
// store as full so the checkpointer looks for space again.
func (s *Store) asFull(err error) error {
	var se *msqlite.Error
	if errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_FULL {
		s.full.Store(true)
		return fmt.Errorf("%w: %w", store.ErrFull, err)
	}
	return err
}

// CheckWritable implements store.WriteChecker: whether there is space for a write now.
func (s *Store) CheckWritable(ctx context.Context) error { return s.ensureSpace(ctx) }

// Space implements store.SpaceReporter.
func (s *Store) Space() (store.Space, error) {
	free, capacity, err := volumeSpace(s.path)
	if err != nil {
		return store.Space{}, fmt.Errorf("sqlite: statfs: %w", err)
	}
	if capacity == 0 {
		return store.Space{}, errors.New("sqlite: the volume reports no size")
	}
	return store.Space{FreeBytes: free, CapacityBytes: capacity, WALBytes: s.walBytes(), MinFreeBytes: s.minFree}, nil
}

// walBytesPerRow bounds what one delivery adds to the WAL besides its body: the pages of the
// table and index B-trees it dirties (about 0.8 frames of 4 KiB per row at the benchmark's batch
// of 20 with sequential run ids; random run ids dirty a leaf of the run_id index each, ~2 frames).
const walBytesPerRow = 8 << 10

// uncheckedShare: Save checks the volume's space (statfs and a stat of the WAL, two system calls)
// only once the batches since the last check could have added a sixteenth of the reserve
// (MinFreeBytes) to the WAL, instead of before every batch: at a moderate rate (batches of one or
// two) that check was a few us of CPU per delivery. The reserve is what a checkpoint needs, and
// it is overrun by at most that sixteenth plus one batch, as before by one batch.
const uncheckedShare = 16

const insertDelivery = `INSERT INTO deliveries
	(run_id, job_id, job_run_id, project, api_name, result_status, received_at, body, backfilled)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
	ON CONFLICT (run_id) DO NOTHING`

// Save implements store.Store. The transaction starts with BEGIN IMMEDIATE (one writer at a time).
//
// The inserts run with a context that cannot be cancelled: for a cancellable one the driver starts
// a watcher goroutine and installs a progress handler per statement, which cost about as much as
// an insert. ctx still bounds the whole transaction: database/sql rolls it back when ctx ends, and
// the loop stops at the next row.
func (s *Store) Save(ctx context.Context, ds []store.Delivery) ([]store.Result, error) {
	if s.full.Load() || s.unchecked.Load() >= s.minFree/uncheckedShare {
		if err := s.ensureSpace(ctx); err != nil {
			return nil, err
		}
		s.unchecked.Store(0)
	}
	added := int64(0)
	for _, d := range ds {
		added += int64(len(d.Body)) + walBytesPerRow
	}
	// Counted before the transaction: a failed one may have written WAL frames too.
	s.unchecked.Add(added)
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("sqlite: begin: %w", s.asFull(err))
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	// tx.Stmt reuses the statement already prepared on the (single) write connection.
	stmt := tx.Stmt(s.insert)
	results := make([]store.Result, len(ds))
	for i, d := range ds {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("sqlite: insert: %w", err)
		}
		res, err := stmt.ExecContext(context.Background(), d.RunID, d.JobID, d.JobRunID, d.Project, d.APIName,
			d.ResultStatus, d.ReceivedAt.UnixMicro(), d.Body, d.Backfilled)
		if err != nil {
			return nil, fmt.Errorf("sqlite: insert: %w", s.asFull(err))
		}
		n, err := res.RowsAffected()
		if err != nil {
			return nil, fmt.Errorf("sqlite: insert: %w", err)
		}
		if n == 0 {
			if results[i], err = s.duplicate(tx, d); err != nil {
				return nil, err
			}
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("sqlite: commit: %w", s.asFull(err))
	}
	s.writes.Add(1)
	if s.finishCheckpoint.CompareAndSwap(true, false) {
		// The deliveries are committed; a failed checkpoint only leaves frames for the next one.
		s.write.ExecContext(context.Background(), "PRAGMA wal_checkpoint(PASSIVE)") //nolint:errcheck
	}
	return results, nil
}

// duplicate compares a delivery whose run id is stored with the stored body and, when they
// differ, quarantines it in the same transaction (the rare path: Intuned resends the same body).
// A backfilled body on either side is never compared: the first one stays, and that is all.
func (s *Store) duplicate(tx *sql.Tx, d store.Delivery) (store.Result, error) {
	r := store.Result{Dup: true}
	if d.Backfilled {
		return r, nil
	}
	var same, backfilled bool
	err := tx.QueryRowContext(context.Background(), `SELECT body = ?, length(body), backfilled FROM deliveries WHERE run_id = ?`,
		d.Body, d.RunID).Scan(&same, &r.StoredBytes, &backfilled)
	if err != nil {
		return r, fmt.Errorf("sqlite: compare duplicate: %w", err)
	}
	if same || backfilled {
		return r, nil
	}
	r.Conflict = true
	_, err = tx.ExecContext(context.Background(), insertQuarantine,
		d.ReceivedAt.UnixMicro(), store.ConflictReason(d.RunID), d.Body, d.JobRunID, nil)
	if err != nil {
		return r, fmt.Errorf("sqlite: quarantine conflicting duplicate: %w", s.asFull(err))
	}
	return r, nil
}

// insertQuarantine skips a body already quarantined Once for its JobRun (quarantine_digest).
const insertQuarantine = `INSERT INTO quarantine (received_at, reason, body, job_run_id, digest) VALUES (?, ?, ?, ?, ?)
	ON CONFLICT DO NOTHING`

// Quarantine implements store.Store.
func (s *Store) Quarantine(ctx context.Context, rs ...store.Rejected) error {
	if len(rs) == 0 {
		return nil
	}
	if err := s.ensureSpace(ctx); err != nil {
		return err
	}
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: quarantine: %w", s.asFull(err))
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	for _, r := range rs {
		if _, err := tx.ExecContext(ctx, insertQuarantine, r.ReceivedAt.UnixMicro(), r.Reason, r.Body, r.JobRunID, r.Digest()); err != nil {
			return fmt.Errorf("sqlite: quarantine: %w", s.asFull(err))
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: quarantine: %w", s.asFull(err))
	}
	s.writes.Add(1)
	return nil
}

const selectColumns = `SELECT seq, run_id, job_id, job_run_id, project, api_name, result_status, received_at, body, backfilled FROM deliveries`

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
	var bytes int64
	// SQLite produces rows one at a time, so stopping here leaves the rest unread.
	for rows.Next() {
		r, err := scan(rows)
		if err != nil {
			return nil, err
		}
		if bytes += int64(len(r.Body)); f.MaxBytes > 0 && bytes > f.MaxBytes && len(out) > 0 {
			break
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

// The summary queries read indexes only (deliveries_job_run_summary covers the first; the
// quarantine rows of a JobRun are few). %s is a list of placeholders, one per JobRun id.
const (
	summarizeResults = `SELECT job_run_id, api_name, result_status, count(*), count(*) FILTER (WHERE backfilled),
		min(received_at), max(received_at)
		FROM deliveries WHERE job_run_id IN (%s)
		GROUP BY job_run_id, api_name, result_status ORDER BY job_run_id, api_name, result_status`
	summarizeQuarantine = `SELECT job_run_id, count(*) FILTER (WHERE substr(reason, 1, 22) = 'conflicting_duplicate:'), count(*)
		FROM quarantine WHERE job_run_id IN (%s) GROUP BY job_run_id`
	// nextJobRun finds the next JobRun id with one seek in each index.
	nextJobRun = `SELECT min(id) FROM (
		SELECT min(job_run_id) AS id FROM deliveries WHERE job_run_id > ?1
		UNION ALL SELECT min(job_run_id) FROM quarantine WHERE job_run_id > ?1)`
)

// SummarizeJobRuns implements store.Store. Both queries run in one read transaction, so they
// see the same snapshot.
func (s *Store) SummarizeJobRuns(ctx context.Context, ids []string) ([]store.JobRunSummary, error) {
	out, byID := store.NewSummaries(ids)
	if len(ids) == 0 {
		return out, nil
	}
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	marks := strings.Repeat("?, ", len(ids)-1) + "?"
	tx, err := s.read.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("sqlite: summarize: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // read only
	rows, err := tx.QueryContext(ctx, fmt.Sprintf(summarizeResults, marks), args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: summarize: %w", err)
	}
	for rows.Next() {
		var id, api, status string
		var n, backfilled, first, last int64
		if err := rows.Scan(&id, &api, &status, &n, &backfilled, &first, &last); err != nil {
			rows.Close()
			return nil, fmt.Errorf("sqlite: summarize: %w", err)
		}
		byID[id].AddResults(api, status, n, backfilled, time.UnixMicro(first).UTC(), time.UnixMicro(last).UTC())
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: summarize: %w", err)
	}
	rows, err = tx.QueryContext(ctx, fmt.Sprintf(summarizeQuarantine, marks), args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: summarize quarantine: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var conflicts, all int64
		if err := rows.Scan(&id, &conflicts, &all); err != nil {
			return nil, fmt.Errorf("sqlite: summarize quarantine: %w", err)
		}
		byID[id].Conflicts, byID[id].Quarantined = conflicts, all-conflicts
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: summarize quarantine: %w", err)
	}
	return out, nil
}

// JobRunsAfter implements store.Store.
func (s *Store) JobRunsAfter(ctx context.Context, after string, limit int) ([]string, error) {
	return store.WalkJobRuns(after, limit, func(after string) (string, bool, error) {
		var next sql.NullString
		if err := s.read.QueryRowContext(ctx, nextJobRun, after).Scan(&next); err != nil {
			return "", false, fmt.Errorf("sqlite: list job runs: %w", err)
		}
		return next.String, next.Valid, nil
	})
}

func scan(row interface{ Scan(...any) error }) (store.Record, error) {
	var r store.Record
	var micros int64
	err := row.Scan(&r.Seq, &r.RunID, &r.JobID, &r.JobRunID, &r.Project, &r.APIName, &r.ResultStatus, &micros, &r.Body, &r.Backfilled)
	if errors.Is(err, sql.ErrNoRows) {
		return r, err
	}
	if err != nil {
		return r, fmt.Errorf("sqlite: read row: %w", err)
	}
	r.ReceivedAt = time.UnixMicro(micros).UTC()
	return r, nil
}

// pruneDeliveries deletes the oldest deliveries received before ?1, at most ?2, but never the
// newest one (see migrations: its seq would be reused). Both lookups are index seeks
// (deliveries_received_at, the rowid); TestPruneUsesIndexes checks the plan.
const (
	pruneDeliveries = `DELETE FROM deliveries WHERE seq IN (
		SELECT seq FROM deliveries WHERE received_at < ?1 AND seq < (SELECT max(seq) FROM deliveries)
		ORDER BY received_at LIMIT ?2)
		RETURNING received_at`
	pruneQuarantine = `DELETE FROM quarantine WHERE id IN (
		SELECT id FROM quarantine WHERE received_at < ?1 ORDER BY received_at LIMIT ?2)`
	oldestDelivery = `SELECT min(received_at) FROM deliveries`
)

// Prune implements store.Store. It skips Save's free-space check: a delete adds no page to the
// database, and refusing it on a nearly full volume would only keep the data growing. Its WAL
// frames (the pages it changes, up to a leaf per row in the run_id index) are bounded by limit.
func (s *Store) Prune(ctx context.Context, before time.Time, limit int) (store.Pruned, error) {
	var p store.Pruned
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return p, fmt.Errorf("sqlite: prune: %w", s.asFull(err))
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	rows, err := tx.QueryContext(ctx, pruneDeliveries, before.UnixMicro(), limit)
	if err != nil {
		return p, fmt.Errorf("sqlite: prune deliveries: %w", s.asFull(err))
	}
	var newest int64
	for rows.Next() {
		var at int64
		if err := rows.Scan(&at); err != nil {
			rows.Close()
			return p, fmt.Errorf("sqlite: prune deliveries: %w", err)
		}
		p.Deliveries++
		newest = max(newest, at)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return p, fmt.Errorf("sqlite: prune deliveries: %w", s.asFull(err))
	}
	cutoff := store.QuarantineCutoff(before, p.Deliveries, time.UnixMicro(newest), limit)
	res, err := tx.ExecContext(ctx, pruneQuarantine, cutoff.UnixMicro(), limit)
	if err != nil {
		return store.Pruned{}, fmt.Errorf("sqlite: prune quarantine: %w", s.asFull(err))
	}
	if p.Quarantined, err = res.RowsAffected(); err != nil {
		return store.Pruned{}, fmt.Errorf("sqlite: prune quarantine: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return store.Pruned{}, fmt.Errorf("sqlite: prune: %w", s.asFull(err))
	}
	s.writes.Add(1)
	return p, nil
}

// OldestDelivery implements store.Store (one seek in deliveries_received_at).
func (s *Store) OldestDelivery(ctx context.Context) (time.Time, error) {
	var micros sql.NullInt64
	if err := s.read.QueryRowContext(ctx, oldestDelivery).Scan(&micros); err != nil {
		return time.Time{}, fmt.Errorf("sqlite: oldest delivery: %w", err)
	}
	if !micros.Valid {
		return time.Time{}, nil
	}
	return time.UnixMicro(micros.Int64).UTC(), nil
}

// DataBytes implements store.DataSizer: the bytes of the database pages in use. Pages freed by
// deletes go on SQLite's freelist and are reused by later inserts; the file does not shrink
// (auto_vacuum is off; see the receiver's README), so this, not the file's size, is what
// retention bounds. Both pragmas read the database header.
func (s *Store) DataBytes(ctx context.Context) (int64, error) {
	var pages, free, size int64
	err := s.read.QueryRowContext(ctx,
		"SELECT p.page_count, f.freelist_count, s.page_size FROM pragma_page_count() p, pragma_freelist_count() f, pragma_page_size() s").
		Scan(&pages, &free, &size)
	if err != nil {
		return 0, fmt.Errorf("sqlite: data size: %w", err)
	}
	return (pages - free) * size, nil
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
	if s.insert != nil { // opened fully: leave an empty WAL behind (see openDB)
		s.truncateWAL(context.Background()) //nolint:errcheck // the next start checkpoints what is left
	}
	var stmtErr error
	if s.insert != nil {
		stmtErr = s.insert.Close()
	}
	return errors.Join(stmtErr, s.read.Close(), s.write.Close())
}
