package sqlite

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/intuned-operator/intuned-operator/internal/receiver/store"
	"github.com/intuned-operator/intuned-operator/internal/receiver/store/storetest"
)

// TestRestoreMigratesOlderVersions: a backup of a receiver with an older schema restores into a
// current store, migrated on the way, with what the migration gives an opened old file.
func TestRestoreMigratesOlderVersions(t *testing.T) {
	for from := 1; from < schemaVersion; from++ {
		t.Run(fmt.Sprint("version ", from), func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			backup := filepath.Join(dir, "old.db")
			d := writeOldVersion(t, backup, from)
			s, err := Open(ctx, filepath.Join(dir, "r.db"))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			f, err := os.Open(backup)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			got, err := s.Restore(ctx, f, -1)
			if err != nil {
				t.Fatal(err)
			}
			if want := (store.Restored{Deliveries: 1, Quarantined: 2, SchemaVersion: from}); got != want {
				t.Errorf("Restore = %+v, want %+v", got, want)
			}
			storetest.CheckMigrated(t, s, d)
			if left := temps(t, dir); len(left) > 0 {
				t.Errorf("restore left files behind: %v", left)
			}
		})
	}
}

// TestBackupRestoreRoundTrip: a backup restores into an empty store (rows, seq and ids kept), is
// refused by a store that holds something, and leaves no file behind; a file left by a crash is
// removed at the next start.
func TestBackupRestoreRoundTrip(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	src, err := Open(ctx, filepath.Join(dir, "src.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	storetest.SeedJobRuns(t, src, []storetest.JobRunRows{{JobRunID: "jr-a", N: 300}, {JobRunID: "jr-b", N: 200}})
	if err := src.Quarantine(ctx, store.Rejected{Reason: "invalid_json: x", Body: []byte("{"), JobRunID: "jr-a", Once: true}); err != nil {
		t.Fatal(err)
	}
	f, err := src.Backup(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if left := temps(t, dir); len(left) > 0 {
		t.Errorf("backup left files behind: %v", left)
	}

	dst, err := Open(ctx, filepath.Join(dir, "dst.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	got, err := dst.Restore(ctx, f, -1)
	if err != nil {
		t.Fatal(err)
	}
	if want := (store.Restored{Deliveries: 500, Quarantined: 1, SchemaVersion: schemaVersion}); got != want {
		t.Errorf("Restore = %+v, want %+v", got, want)
	}
	for _, s := range []*Store{src, dst} {
		recs, err := s.List(ctx, store.Filter{}, 1000)
		if err != nil || len(recs) != 500 || recs[0].Seq != 1 || recs[499].Seq != 500 {
			t.Fatalf("List: %d records, %v; want seq 1 to 500", len(recs), err)
		}
	}
	sumSrc, _ := src.SummarizeJobRuns(ctx, []string{"jr-a", "jr-b"})
	sumDst, _ := dst.SummarizeJobRuns(ctx, []string{"jr-a", "jr-b"})
	if fmt.Sprint(sumSrc) != fmt.Sprint(sumDst) {
		t.Errorf("summaries differ:\nsource   %+v\nrestored %+v", sumSrc, sumDst)
	}

	// Not into a store that holds something, even a quarantined body alone.
	f.Seek(0, 0) //nolint:errcheck
	if _, err := dst.Restore(ctx, f, -1); !errors.Is(err, store.ErrNotEmpty) {
		t.Errorf("restore into a store with data: %v, want ErrNotEmpty", err)
	}

	// A crash mid-backup leaves a file; the next start removes it.
	stale := filepath.Join(dir, "dst.db"+tempMarker+"backup-0123")
	if err := os.WriteFile(stale, []byte("half a copy"), 0o600); err != nil {
		t.Fatal(err)
	}
	dst.Close()
	if dst, err = Open(ctx, filepath.Join(dir, "dst.db")); err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale backup file still there after Open: %v", err)
	}
}

// temps lists the backup and restore files in dir.
func temps(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if strings.Contains(e.Name(), tempMarker) {
			out = append(out, e.Name())
		}
	}
	return out
}
