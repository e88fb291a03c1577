package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/intuned-operator/intuned-operator/internal/receiver/store"
)

// testPrune: Prune deletes the oldest deliveries before its bound in batches of at most limit,
// the quarantined bodies up to the last delivery it deleted (all before the bound once the
// deliveries are done), nothing newer; OldestDelivery follows.
func testPrune(t *testing.T, s store.Store) {
	ctx := context.Background()
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	at := func(min int) time.Time { return t0.Add(time.Duration(min) * time.Minute) }
	if oldest, err := s.OldestDelivery(ctx); err != nil || !oldest.IsZero() {
		t.Fatalf("OldestDelivery of an empty store = %v, %v; want zero", oldest, err)
	}
	// Saved out of receive order: Prune goes by receive time, not by sequence.
	var batch []store.Delivery
	for _, min := range []int{2, 0, 1, 3, 10, 11} {
		batch = append(batch, Delivery(fmt.Sprint("p", min), "j", "jr", "a", "completed", at(min)))
	}
	if _, err := s.Save(ctx, batch); err != nil {
		t.Fatal(err)
	}
	for _, min := range []int{0, 1, 2, 5, 20} {
		if err := s.Quarantine(ctx, store.Rejected{Reason: "invalid_json: x", ReceivedAt: at(min), Body: []byte("{"), JobRunID: "jr-q"}); err != nil {
			t.Fatal(err)
		}
	}
	before := at(10) // p0..p3 and the quarantined bodies of minutes 0-5 are older
	steps := []struct {
		want   store.Pruned
		oldest int // minute of the oldest delivery left
		qLeft  int64
	}{
		{store.Pruned{Deliveries: 2, Quarantined: 2}, 2, 3},  // p0, p1, and the bodies up to minute 1
		{store.Pruned{Deliveries: 2, Quarantined: 1}, 10, 2}, // p2, p3 (a full batch), the body of minute 2
		{store.Pruned{Quarantined: 1}, 10, 1},                // no delivery left before minute 10: every body before it
		{store.Pruned{}, 10, 1},
	}
	for i, st := range steps {
		got, err := s.Prune(ctx, before, 2)
		if err != nil {
			t.Fatal(err)
		}
		if got != st.want {
			t.Errorf("prune %d = %+v, want %+v", i, got, st.want)
		}
		if oldest, err := s.OldestDelivery(ctx); err != nil || !oldest.Equal(at(st.oldest)) {
			t.Errorf("after prune %d: oldest = %v (%v), want %v", i, oldest, err, at(st.oldest))
		}
		sums, err := s.SummarizeJobRuns(ctx, []string{"jr-q"})
		if err != nil || sums[0].Quarantined != st.qLeft {
			t.Errorf("after prune %d: %+v quarantined (%v), want %d", i, sums, err, st.qLeft)
		}
	}
	for _, min := range []int{0, 3} {
		if _, err := s.Get(ctx, fmt.Sprint("p", min)); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("p%d: %v, want pruned", min, err)
		}
	}
	recs, err := s.List(ctx, store.Filter{}, 10)
	if err != nil || len(recs) != 2 || recs[0].RunID != "p10" || recs[1].RunID != "p11" {
		t.Errorf("left after pruning: %+v (%v), want p10 and p11", recs, err)
	}
}

// testPruneKeepsCursor: pruning everything never makes the receive sequence go back, so a reader
// holding a cursor sees the deliveries stored afterwards.
func testPruneKeepsCursor(t *testing.T, s store.Store) {
	ctx := context.Background()
	old := time.Now().Add(-time.Hour)
	if _, err := s.Save(ctx, []store.Delivery{Delivery("k1", "j", "jr", "a", "completed", old), Delivery("k2", "j", "jr", "a", "completed", old)}); err != nil {
		t.Fatal(err)
	}
	recs, err := s.List(ctx, store.Filter{}, 10)
	if err != nil || len(recs) != 2 {
		t.Fatalf("%d deliveries (%v), want 2", len(recs), err)
	}
	cursor := recs[1].Seq
	for {
		p, err := s.Prune(ctx, time.Now(), 10)
		if err != nil {
			t.Fatal(err)
		}
		if p.Deliveries == 0 {
			break
		}
	}
	if _, err := s.Save(ctx, []store.Delivery{Delivery("k3", "j", "jr", "a", "completed", time.Now())}); err != nil {
		t.Fatal(err)
	}
	recs, err = s.List(ctx, store.Filter{AfterSeq: cursor}, 10)
	if err != nil || len(recs) != 1 || recs[0].RunID != "k3" {
		t.Fatalf("after the cursor of the last delivery: %+v (%v), want k3", recs, err)
	}
}
