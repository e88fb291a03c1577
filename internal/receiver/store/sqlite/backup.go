package sqlite

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/intuned-operator/intuned-operator/internal/receiver/store"
)

var _ store.Backuper = (*Store)(nil)

// The columns a backup carries, in both tables: every column of the current schema, so a row
// comes back exactly as it was (seq and id too: cursors and receive order stay the same).
const (
	deliveryColumns   = "seq, run_id, job_id, job_run_id, project, api_name, result_status, received_at, body, backfilled"
	quarantineColumns = "id, received_at, reason, body, job_run_id, digest"
)

// tempMarker names the files a backup or a restore keeps beside the database while it runs
// (receiver.db.tmp-backup-<random>). Open removes any it finds: only a crash leaves one behind,
// and it would hold part of the volume for good.
const tempMarker = ".tmp-"

func (s *Store) tempName(kind string) string {
	var b [8]byte
	rand.Read(b[:]) //nolint:errcheck // crypto/rand does not fail on Linux
	return s.path + tempMarker + kind + "-" + hex.EncodeToString(b[:])
}

// removeTemps deletes the backup and restore files a crashed receiver left beside path.
func removeTemps(path string) {
	dir, prefix := filepath.Dir(path), filepath.Base(path)+tempMarker
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			os.Remove(filepath.Join(dir, e.Name())) //nolint:errcheck // best effort; the next start tries again
		}
	}
}

// Backup implements store.Backuper with VACUUM INTO on a reader connection: SQLite copies the
// store as one read transaction sees it (WAL mode lets the writer commit meanwhile), and writes
// only the live pages, so the copy is compact and needs no checkpoint. SQLite's online backup
// API was the other choice; it copies page by page and starts over whenever another connection
// writes, which under steady ingest may never finish (or, in one step, holds the same read
// transaction VACUUM INTO does, and copies free pages too).
//
// While the copy runs, its read transaction keeps the WAL from being restarted, so the WAL grows
// with what is ingested meanwhile; the store's usual space check refuses writes (503
// store_full) before that could fill the volume.
func (s *Store) Backup(ctx context.Context) (*os.File, error) {
	need, err := s.liveBytes(ctx)
	if err != nil {
		return nil, err
	}
	if free, capacity, err := volumeSpace(s.path); err == nil && capacity > 0 {
		// Room for the copy, with the store's reserve kept twice: once for what it keeps anyway,
		// once for the WAL to grow by while the copy runs.
		if keep := 2*s.minFree + s.walBytes(); free < need+keep {
			return nil, fmt.Errorf("sqlite: %w: a backup needs about %d bytes and %d more stay free for the store, but only %d are free",
				store.ErrFull, need, keep, free)
		}
	}
	tmp := s.tempName("backup")
	defer os.Remove(tmp) //nolint:errcheck // an open file keeps its data: the caller reads it after this
	if _, err := s.read.ExecContext(ctx, "VACUUM INTO ?", tmp); err != nil {
		return nil, fmt.Errorf("sqlite: backup: %w", s.asFull(err))
	}
	f, err := os.Open(tmp)
	if err != nil {
		return nil, fmt.Errorf("sqlite: backup: %w", err)
	}
	return f, nil
}

// liveBytes is about the size of a copy made by VACUUM INTO: the database's pages less the free
// ones.
func (s *Store) liveBytes(ctx context.Context) (int64, error) {
	var pages, free, size int64
	for _, q := range []struct {
		pragma string
		v      *int64
	}{{"page_count", &pages}, {"freelist_count", &free}, {"page_size", &size}} {
		if err := s.read.QueryRowContext(ctx, "PRAGMA "+q.pragma).Scan(q.v); err != nil {
			return 0, fmt.Errorf("sqlite: backup: %s: %w", q.pragma, err)
		}
	}
	return (pages - free) * size, nil
}

// Restore implements store.Backuper. The upload goes to a file beside the database; it must pass
// PRAGMA integrity_check, carry schema version 1 to the current one (older ones are migrated in
// that file), and have this schema's tables. Its rows are then copied into the store in one
// transaction on the write connection, which first checks that the store is empty: a delivery
// ingested meanwhile either makes the restore fail (ErrNotEmpty) or is committed after it. The
// writer waits for that transaction, so ingest pauses while it runs (a restore is meant for a
// new receiver).
func (s *Store) Restore(ctx context.Context, r io.Reader, size int64) (store.Restored, error) {
	var out store.Restored
	// Before the upload too, so a client sending to the wrong receiver learns it at once.
	if err := s.checkEmpty(ctx, s.read); err != nil {
		return out, err
	}
	// The file lands here once, then its rows go into the WAL and from there into the database.
	limit := int64(math.MaxInt64)
	if free, capacity, err := volumeSpace(s.path); err == nil && capacity > 0 {
		limit = (free - s.minFree - s.walBytes()) / 3
		if size > limit {
			return out, fmt.Errorf("sqlite: %w: restoring %d bytes needs about %d free (the file, then its rows twice), plus %d kept free; %d are free",
				store.ErrFull, size, 3*size, s.minFree, free)
		}
	}
	tmp := s.tempName("restore")
	defer func() {
		for _, suffix := range []string{"", "-wal", "-shm", "-journal"} {
			os.Remove(tmp + suffix) //nolint:errcheck // best effort; Open removes leftovers
		}
	}()
	if err := writeUpload(tmp, r, limit); err != nil {
		return out, err
	}
	version, err := checkBackup(ctx, tmp)
	if err != nil {
		return out, err
	}
	out.SchemaVersion = version
	out.Deliveries, out.Quarantined, err = s.copyFrom(ctx, tmp)
	return out, err
}

// checkEmpty returns store.ErrNotEmpty when the store holds a delivery or a quarantined body.
func (s *Store) checkEmpty(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}) error {
	var used bool
	err := q.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM main.deliveries) OR EXISTS (SELECT 1 FROM main.quarantine)`).Scan(&used)
	switch {
	case err != nil:
		return fmt.Errorf("sqlite: restore: %w", err)
	case used:
		return fmt.Errorf("sqlite: restore: %w: it holds deliveries or quarantined bodies", store.ErrNotEmpty)
	}
	return nil
}

// writeUpload copies r into a new file at path, refusing more than limit bytes (store.ErrFull).
func writeUpload(path string, r io.Reader, limit int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("sqlite: restore: %w", err)
	}
	n, err := io.Copy(f, io.LimitReader(r, limit+1))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	switch {
	case err != nil:
		return fmt.Errorf("sqlite: restore: write the upload: %w", err)
	case n > limit:
		return fmt.Errorf("sqlite: %w: the upload is larger than a third of the free space (the file, then its rows twice)", store.ErrFull)
	case n == 0:
		return fmt.Errorf("%w: the upload is empty", store.ErrInvalidBackup)
	}
	return nil
}

// checkBackup opens the uploaded file on its own connection and checks it is a backup of this
// store: a SQLite database that passes PRAGMA integrity_check, at schema version 1 to
// schemaVersion (migrated here to schemaVersion), with every column the copy reads. It returns
// the version the file had.
func checkBackup(ctx context.Context, path string) (int, error) {
	invalid := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", store.ErrInvalidBackup, fmt.Sprintf(format, args...))
	}
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		return 0, fmt.Errorf("sqlite: restore: %w", err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1) // migrate's transactions and queries share the one connection
	var version int
	if err := db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return 0, invalid("cannot be read as a SQLite database (%v)", err)
	}
	rows, err := db.QueryContext(ctx, "PRAGMA integrity_check(10)")
	if err != nil {
		return 0, invalid("integrity check failed: %v", err)
	}
	var problems []string
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			rows.Close()
			return 0, invalid("integrity check failed: %v", err)
		}
		problems = append(problems, p)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, invalid("integrity check failed: %v", err)
	}
	if len(problems) != 1 || problems[0] != "ok" {
		return 0, invalid("integrity check failed: %s", strings.Join(problems, "; "))
	}
	if version < 1 || version > schemaVersion {
		return 0, invalid("schema version %d; this receiver restores versions 1 to %d", version, schemaVersion)
	}
	if err := (&Store{path: "the backup", write: db}).migrate(ctx); err != nil {
		return 0, invalid("%v", err)
	}
	for _, q := range []string{"SELECT " + deliveryColumns + " FROM deliveries", "SELECT " + quarantineColumns + " FROM quarantine"} {
		rows, err := db.QueryContext(ctx, q+" LIMIT 0")
		if err != nil {
			return 0, invalid("not this receiver's schema: %v", err)
		}
		rows.Close()
	}
	return version, nil
}

// copyFrom copies the rows of the checked backup at path into the store, in one transaction that
// first checks the store is still empty.
func (s *Store) copyFrom(ctx context.Context, path string) (deliveries, quarantined int64, err error) {
	if err := s.ensureSpace(ctx); err != nil {
		return 0, 0, err
	}
	conn, err := s.write.Conn(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("sqlite: restore: %w", err)
	}
	defer conn.Close()
	// ATTACH and DETACH cannot run inside a transaction.
	if _, err := conn.ExecContext(ctx, "ATTACH DATABASE ? AS backup", path); err != nil {
		return 0, 0, fmt.Errorf("sqlite: restore: attach: %w", err)
	}
	defer conn.ExecContext(context.Background(), "DETACH DATABASE backup") //nolint:errcheck // the file is removed next anyway
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return 0, 0, fmt.Errorf("sqlite: restore: %w", s.asFull(err))
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	if err := s.checkEmpty(ctx, tx); err != nil {
		return 0, 0, err
	}
	for _, c := range []struct {
		table, columns string
		n              *int64
	}{{"deliveries", deliveryColumns, &deliveries}, {"quarantine", quarantineColumns, &quarantined}} {
		res, err := tx.ExecContext(ctx, fmt.Sprintf("INSERT INTO main.%[1]s (%[2]s) SELECT %[2]s FROM backup.%[1]s", c.table, c.columns))
		if err != nil {
			return 0, 0, fmt.Errorf("sqlite: restore %s: %w", c.table, s.asFull(err))
		}
		if *c.n, err = res.RowsAffected(); err != nil {
			return 0, 0, fmt.Errorf("sqlite: restore %s: %w", c.table, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, 0, fmt.Errorf("sqlite: restore: commit: %w", s.asFull(err))
	}
	s.writes.Add(1)              // the checkpointer moves the restored rows from the WAL into the database
	s.unchecked.Store(s.minFree) // and the next write checks the space they took
	return deliveries, quarantined, nil
}
