package sqlite

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/intuned-operator/intuned-operator/internal/receiver/store"
	"github.com/intuned-operator/intuned-operator/internal/receiver/store/storetest"
)

func open(t *testing.T) store.Store {
	s, err := Open(context.Background(), filepath.Join(t.TempDir(), "r.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestStore(t *testing.T) { storetest.Run(t, open) }

func TestReopenKeepsDataAndSequence(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "r.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Save(ctx, []store.Delivery{storetest.Delivery("a", "j", "jr", "x", "completed", time.Now())}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	dup, err := s.Save(ctx, []store.Delivery{
		storetest.Delivery("a", "j", "jr", "x", "completed", time.Now()),
		storetest.Delivery("b", "j", "jr", "x", "completed", time.Now()),
	})
	if err != nil || !dup[0] || dup[1] {
		t.Fatalf("dup=%v err=%v, want [true false]", dup, err)
	}
	recs, err := s.List(ctx, store.Filter{}, 10)
	if err != nil || len(recs) != 2 || recs[0].Seq >= recs[1].Seq {
		t.Fatalf("recs=%+v err=%v", recs, err)
	}
}
