package postgres

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/intuned-operator/intuned-operator/internal/receiver/store"
	"github.com/intuned-operator/intuned-operator/internal/receiver/store/storetest"
	"github.com/intuned-operator/intuned-operator/internal/testutil/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func open(t *testing.T) store.Store {
	s, err := Open(context.Background(), pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestStore(t *testing.T) { storetest.Run(t, open) }

// Replicas start together: every one must come up, and the migration must run exactly once.
func TestConcurrentStartupMigratesOnce(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	ctx := context.Background()
	const replicas = 6
	stores := make([]*Store, replicas)
	errs := make([]error, replicas)
	var wg sync.WaitGroup
	for i := range replicas {
		wg.Add(1)
		go func() { defer wg.Done(); stores[i], errs[i] = Open(ctx, dsn) }()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("replica %d: %v", i, err)
		}
		defer stores[i].Close()
	}
	files, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := stores[0].pool.QueryRow(ctx, "SELECT count(*) FROM schema_migrations").Scan(&n); err != nil || n != len(files) {
		t.Fatalf("schema_migrations rows = %d (%v), want %d (one per migration)", n, err, len(files))
	}
}

func TestDSNErrorsHidePassword(t *testing.T) {
	for _, dsn := range []string{
		"postgres://u:s3cret@127.0.0.1:1/db?sslmode=bogus",     // unparsable
		"postgres://u:s3cret@127.0.0.1:1/db?connect_timeout=2", // nothing listens on port 1
	} {
		_, err := Open(context.Background(), dsn)
		if err == nil {
			t.Fatalf("%s: want error", dsn)
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Fatalf("error leaks the password: %v", err)
		}
	}
}

// A batch is one transaction: if PostgreSQL rejects one row (text cannot hold NUL), none is stored.
func TestSaveBatchIsAtomic(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	good := storetest.Delivery("good", "j", "jr", "a", "completed", time.Now())
	bad := storetest.Delivery("bad\x00id", "j", "jr", "a", "completed", time.Now())
	if _, err := s.Save(ctx, []store.Delivery{good, bad}); err == nil {
		t.Fatal("want an error for a NUL in run_id")
	}
	if _, err := s.Get(ctx, "good"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("half a batch was committed: %v", err)
	}
	if res, err := s.Save(ctx, []store.Delivery{good}); err != nil || res[0].Dup {
		t.Fatalf("store unusable after a failed batch: %+v %v", res, err)
	}
}

// A conflicting duplicate's body is kept in quarantine by both ways Save stores a batch: one
// statement for distinct run ids, and a statement per delivery when a run id repeats.
func TestConflictingBodiesAreQuarantined(t *testing.T) {
	ctx := context.Background()
	s := open(t).(*Store)
	now := time.Now()
	first := storetest.Delivery("r1", "j", "jr", "a", "completed", now)
	other := storetest.Delivery("r1", "j", "jr", "a", "failed", now)
	for _, batch := range [][]store.Delivery{
		{first},
		{other, storetest.Delivery("r2", "j", "jr", "a", "completed", now)},               // distinct run ids
		{storetest.Delivery("r3", "j", "jr", "a", "completed", now), other, first, other}, // r1 repeats
	} {
		if _, err := s.Save(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	var n int
	if err := s.pool.QueryRow(ctx, "SELECT count(*) FROM quarantine WHERE reason = $1 AND body = $2",
		store.ConflictReason("r1"), other.Body).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Errorf("quarantined %d conflicting bodies of r1, want 3", n)
	}
	if err := s.pool.QueryRow(ctx, "SELECT count(*) FROM quarantine").Scan(&n); err != nil || n != 3 {
		t.Errorf("quarantine holds %d rows (%v), want 3", n, err)
	}
}
