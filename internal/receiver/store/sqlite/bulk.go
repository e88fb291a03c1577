package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/intuned-operator/intuned-operator/internal/receiver/store"
)

// BulkLoad stores every delivery next yields into the file at path, creating it with this
// package's schema (Open's migrations) when it is missing, in transactions of batch rows with
// Save's INSERT. It is for benchmarks that need a store of millions of deliveries
// (hack/bench-receiver): while it runs the file has no journal and no fsync, so a crash leaves it
// corrupt, and no receiver may have it open. It leaves the file in WAL mode, as Open expects.
// next returns false when there are no more deliveries.
func BulkLoad(ctx context.Context, path string, batch int, next func() (store.Delivery, bool)) (err error) {
	s, err := Open(ctx, path)
	if err != nil {
		return err
	}
	if err := s.Close(); err != nil {
		return err
	}
	// One connection, no journal, no fsync, a 1 GiB page cache: the run_id index of 10M random
	// ids stays in memory, so each insert costs no random read.
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(OFF)&_pragma=synchronous(OFF)&_pragma=cache_size(-1048576)&_pragma=locking_mode(EXCLUSIVE)")
	if err != nil {
		return fmt.Errorf("sqlite: bulk load: %w", err)
	}
	db.SetMaxOpenConns(1)
	defer func() {
		if _, werr := db.ExecContext(context.Background(), "PRAGMA journal_mode = WAL"); werr != nil {
			err = errors.Join(err, fmt.Errorf("sqlite: bulk load: back to WAL: %w", werr))
		}
		err = errors.Join(err, db.Close())
	}()
	for more := true; more; {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("sqlite: bulk load: %w", err)
		}
		stmt, err := tx.PrepareContext(ctx, insertDelivery)
		if err != nil {
			tx.Rollback() //nolint:errcheck
			return fmt.Errorf("sqlite: bulk load: %w", err)
		}
		for n := 0; n < batch; n++ {
			var d store.Delivery
			if d, more = next(); !more {
				break
			}
			if _, err := stmt.ExecContext(context.Background(), d.RunID, d.JobID, d.JobRunID, d.Project, d.APIName,
				d.ResultStatus, d.ReceivedAt.UnixMicro(), d.Body, d.Backfilled); err != nil {
				tx.Rollback() //nolint:errcheck
				return fmt.Errorf("sqlite: bulk load: %w", err)
			}
		}
		stmt.Close()
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("sqlite: bulk load: %w", err)
		}
	}
	return nil
}
