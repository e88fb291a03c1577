package store

import (
	"context"
	"fmt"
)

// Copied is what Copy did.
type Copied struct {
	Stored     int64 // deliveries new to the target
	Duplicates int64 // already there (an earlier, interrupted copy, or ingested meanwhile)
	Conflicts  int64 // already there with another body: the target kept its own
}

// Copy copies every delivery of from into to, in receive order, keeping each
// one's run id, receive time, body and backfilled mark, batch deliveries per
// transaction. It is how a SQLite receiver's data moves to PostgreSQL
// (cmd/receiver-migrate): run it again after an interruption, and what is
// already there counts as a duplicate. Quarantined bodies are not copied
// (the store interface has no way to read them; they stay in the source).
func Copy(ctx context.Context, from, to Store, batch int) (Copied, error) {
	var c Copied
	after := int64(0)
	for {
		recs, err := from.List(ctx, Filter{AfterSeq: after, MaxBytes: 8 << 20}, batch)
		if err != nil {
			return c, fmt.Errorf("read after seq %d: %w", after, err)
		}
		if len(recs) == 0 {
			return c, nil
		}
		ds := make([]Delivery, len(recs))
		for i, r := range recs {
			ds[i] = r.Delivery
		}
		res, err := to.Save(ctx, ds)
		if err != nil {
			return c, fmt.Errorf("write deliveries after seq %d: %w", after, err)
		}
		for _, r := range res {
			switch {
			case r.Conflict:
				c.Conflicts++
			case r.Dup:
				c.Duplicates++
			default:
				c.Stored++
			}
		}
		after = recs[len(recs)-1].Seq
	}
}
