// Package store defines the narrow storage interface the receiver writes deliveries to and reads
// them back from. Implementations live in the sqlite and postgres sub-packages; both keep the same
// schema: a deliveries table keyed by run_id (the dedup key) plus a quarantine table for
// authenticated bodies that were not valid sink bodies.
package store

import (
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"strconv"
	"time"
)

// ErrNotFound is returned by Get when no delivery has the requested run id.
var ErrNotFound = errors.New("delivery not found")

// ErrFull is wrapped by a write that was refused or failed because the store's volume is (nearly)
// full. It is temporary: writes work again once space is freed.
var ErrFull = errors.New("store volume is full")

// Delivery is one accepted webhook body plus the columns extracted from it.
type Delivery struct {
	RunID        string
	JobID        string // empty for Run-API deliveries (no projectJob)
	JobRunID     string // empty for Run-API deliveries (no projectJobRun)
	Project      string
	APIName      string
	ResultStatus string // "completed" or "failed"
	ReceivedAt   time.Time
	Body         []byte // the raw request body, byte for byte
	// Backfilled: built from a line of the JobRun's results file (POST .../backfill), not
	// delivered by Intuned's webhook. Such a body is never compared with another one for the
	// same run id (see Result.Conflict).
	Backfilled bool
}

// Record is a stored delivery as read back, with its receive sequence number.
type Record struct {
	Delivery
	// Seq increases with every stored delivery; List pages by it.
	Seq int64
}

// Rejected is an authenticated request body that was not a valid sink body.
type Rejected struct {
	Reason     string
	ReceivedAt time.Time
	Body       []byte
	// JobRunID is the body's projectJobRun.id when it could be read (a sink body with another
	// field missing, say), so the JobRun's summary counts it; empty when unknown.
	JobRunID string
	// Once: keep the body only if the JobRun holds no body quarantined Once with the same bytes
	// (a backfill sent again must not count its invalid lines twice). Keyed by Digest.
	Once bool
}

// Digest is the key a body quarantined Once is stored under (with its JobRunID), nil otherwise.
func (r Rejected) Digest() []byte {
	if !r.Once {
		return nil
	}
	h := sha256.Sum256(r.Body)
	return h[:]
}

// ReasonConflictingDuplicate is the quarantine reason of a body whose run id was already stored
// with a different body.
const ReasonConflictingDuplicate = "conflicting_duplicate"

// Result is what Save did with one delivery.
type Result struct {
	// Dup: the run id was already stored (by an earlier call, another replica, or an earlier
	// entry in the same slice); the stored delivery is left untouched (the first one wins).
	Dup bool
	// Conflict: a duplicate whose body differs from the stored one. That body is kept in the
	// quarantine table (reason ReasonConflictingDuplicate), in the same transaction, so a
	// second body for a run is never silently lost. Never when either body is Backfilled: a
	// results-file line wrapped into a sink body is not byte for byte what the webhook sent.
	Conflict bool
	// StoredBytes is the size of the stored body, for a duplicate (0 for a Backfilled one, which
	// is not compared).
	StoredBytes int64
}

// ConflictReason is the quarantine reason text for a conflicting duplicate of runID.
func ConflictReason(runID string) string {
	return ReasonConflictingDuplicate + ": apiInfo.runId " + strconv.Quote(runID) + " is already stored with a different body"
}

// Filter narrows List. Empty fields match everything.
type Filter struct {
	JobID        string
	JobRunID     string
	APIName      string
	ResultStatus string
	Since        time.Time // deliveries received at or after this time; zero = no bound
	AfterSeq     int64     // cursor: only deliveries with Seq > AfterSeq
	// MaxBytes bounds the bodies one List returns: it stops before the delivery that would take
	// them past MaxBytes, but always returns at least one. 0 = no bound.
	MaxBytes int64
}

// JobRunSummary is what a store holds for one JobRun (projectJobRun.id), read from indexes only.
type JobRunSummary struct {
	JobRunID string
	// Results counts the stored deliveries by API name and result status, ordered by both.
	Results []ResultCount
	// Backfilled counts the stored deliveries that came from the results file (Delivery.Backfilled).
	Backfilled int64
	// Conflicts counts the bodies kept aside because their run id was already stored with a
	// different body; Quarantined the other invalid bodies whose JobRun could be read.
	Conflicts, Quarantined int64
	// FirstReceivedAt and LastReceivedAt bound the stored deliveries' receive times; zero when
	// none is stored.
	FirstReceivedAt, LastReceivedAt time.Time
}

// ResultCount is the number of stored deliveries of one API name and result status.
type ResultCount struct {
	APIName      string
	ResultStatus string
	Count        int64
}

// Stored is the number of stored deliveries.
func (s *JobRunSummary) Stored() int64 {
	var n int64
	for _, c := range s.Results {
		n += c.Count
	}
	return n
}

// AddResults folds one group of stored deliveries (a row of a store's GROUP BY) into s; backfilled
// of them came from the results file.
func (s *JobRunSummary) AddResults(api, status string, count, backfilled int64, first, last time.Time) {
	s.Results = append(s.Results, ResultCount{APIName: api, ResultStatus: status, Count: count})
	s.Backfilled += backfilled
	if s.FirstReceivedAt.IsZero() || first.Before(s.FirstReceivedAt) {
		s.FirstReceivedAt = first
	}
	if last.After(s.LastReceivedAt) {
		s.LastReceivedAt = last
	}
}

// NewSummaries returns an empty summary per id, in order, and a map from each id to its summary
// for the stores to fill in.
func NewSummaries(ids []string) ([]JobRunSummary, map[string]*JobRunSummary) {
	out := make([]JobRunSummary, len(ids))
	byID := make(map[string]*JobRunSummary, len(ids))
	for i, id := range ids {
		out[i].JobRunID = id
		if byID[id] == nil {
			byID[id] = &out[i]
		}
	}
	return out, byID
}

// WalkJobRuns collects up to limit JobRun ids after after, calling next for each: a store's next
// finds the smallest id greater than its argument with one index seek, which skips all the rows
// of a JobRun at once (SELECT DISTINCT would read every one of them).
func WalkJobRuns(after string, limit int, next func(after string) (id string, ok bool, err error)) ([]string, error) {
	var ids []string
	for len(ids) < limit {
		id, ok, err := next(after)
		if err != nil || !ok {
			return ids, err
		}
		ids = append(ids, id)
		after = id
	}
	return ids, nil
}

// Empty reports whether the store holds nothing for the JobRun.
func (s *JobRunSummary) Empty() bool {
	return len(s.Results) == 0 && s.Conflicts == 0 && s.Quarantined == 0
}

// Store persists deliveries. Implementations must be safe for concurrent use, though the receiver
// calls Save from a single writer goroutine so that concurrent requests share one transaction.
type Store interface {
	// Save commits all deliveries in one transaction and reports what it did with each.
	// Either every new delivery (and every conflicting body) is committed, or err != nil.
	Save(ctx context.Context, deliveries []Delivery) ([]Result, error)
	// Quarantine keeps invalid bodies so that nothing authenticated is ever dropped; all of rs
	// in one transaction.
	Quarantine(ctx context.Context, rs ...Rejected) error
	// List returns up to limit deliveries matching f in Seq order, their bodies bounded by
	// f.MaxBytes.
	List(ctx context.Context, f Filter, limit int) ([]Record, error)
	// Get returns the delivery with the given run id or ErrNotFound.
	Get(ctx context.Context, runID string) (Record, error)
	// SummarizeJobRuns returns the summary of each JobRun in ids, in that order (a JobRun the
	// store holds nothing for has an empty one), read in one snapshot.
	SummarizeJobRuns(ctx context.Context, ids []string) ([]JobRunSummary, error)
	// JobRunsAfter returns up to limit JobRun ids the store holds deliveries or quarantined
	// bodies for, greater than after, in ascending order.
	JobRunsAfter(ctx context.Context, after string, limit int) ([]string, error)
	// Prune deletes old data in one short transaction (retention; see Pruned). Callers prune in
	// batches until a call deletes fewer than limit of both kinds.
	Prune(ctx context.Context, before time.Time, limit int) (Pruned, error)
	// OldestDelivery returns the receive time of the oldest stored delivery; zero when none is.
	OldestDelivery(ctx context.Context) (time.Time, error)
	// Ping reports whether the store is reachable (used by /readyz).
	Ping(ctx context.Context) error
	Close() error
}

// Pruned is what one Prune deleted. Prune deletes the oldest deliveries received before its
// before, at most limit of them, and the quarantined bodies received before before that are no
// newer than the last delivery it deleted (every one up to before once fewer than limit
// deliveries were left to delete), also at most limit: both tables are pruned in receive order.
//
// A store whose receive sequence (Record.Seq, the read API's cursor) could go back when its
// newest delivery is deleted keeps that delivery (SQLite): a cursor never skips what comes next.
type Pruned struct {
	Deliveries, Quarantined int64
}

// QuarantineCutoff is the bound Prune applies to the quarantine after deleting deliveries, at
// most limit of them: before, unless the batch was full; then just past the newest one deleted.
func QuarantineCutoff(before time.Time, deleted int64, newest time.Time, limit int) time.Time {
	if deleted < int64(limit) {
		return before
	}
	return newest.Add(time.Microsecond) // stores keep microseconds: "no newer than newest"
}

// DataSizer is implemented by stores that know how many bytes their data takes (SQLite: the
// database pages in use, not the pages freed by deletes and kept for reuse). Retention's size
// bound (MaxBytes) is measured with it.
type DataSizer interface {
	DataBytes(ctx context.Context) (int64, error)
}

// WriteChecker is implemented by stores that can tell, without writing a delivery, that a write
// would fail now (SQLite: too little free space). /readyz uses it so a receiver that cannot store
// stops getting traffic, and comes back by itself when the check passes again.
type WriteChecker interface {
	CheckWritable(ctx context.Context) error
}

// Space is how full a store's volume is.
type Space struct {
	FreeBytes     int64 // available to the store's process
	CapacityBytes int64 // size of the volume
	WALBytes      int64 // SQLite write-ahead log file
	MinFreeBytes  int64 // the store refuses writes below this much free space (plus the WAL)
}

// SpaceReporter is implemented by stores that live on a local volume (SQLite); /metrics exports it.
type SpaceReporter interface {
	Space() (Space, error)
}

// ErrNotEmpty is returned by Backuper.Restore when the store already holds deliveries or
// quarantined bodies: a restore never merges into existing data.
var ErrNotEmpty = errors.New("store is not empty")

// ErrInvalidBackup is wrapped by Backuper.Restore when the uploaded file is not a backup this
// store can use (not a database, damaged, another schema); the store is left unchanged.
var ErrInvalidBackup = errors.New("invalid backup")

// Restored is what Backuper.Restore copied into the store.
type Restored struct {
	Deliveries, Quarantined int64
	// SchemaVersion is the backup's schema version before it was migrated to the store's.
	SchemaVersion int
}

// Backuper is implemented by stores that keep their data in a file the receiver owns (SQLite).
// A PostgreSQL database is the user's: pg_dump and pg_restore back it up.
type Backuper interface {
	// Backup writes a consistent copy of the whole store, as of one moment, to a file on the
	// store's own volume while writes go on, and returns it open at its start. The file has no
	// name any more: its space is freed when f is closed. It wraps ErrFull when the volume
	// cannot hold the copy and still keep the store's reserve.
	Backup(ctx context.Context) (f *os.File, err error)
	// Restore reads a backup made by Backup (size bytes, or -1 when unknown) and copies it into
	// the store in one transaction, only when the store is empty (else ErrNotEmpty). An older
	// schema version is migrated first. A file that is not a usable backup gives
	// ErrInvalidBackup; too little space gives ErrFull. Either way nothing changed.
	Restore(ctx context.Context, r io.Reader, size int64) (Restored, error)
}
