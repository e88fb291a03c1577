package postgres

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/intuned-operator/intuned-operator/internal/receiver/store"
	"github.com/intuned-operator/intuned-operator/internal/testutil/pgtest"
)

// BenchmarkSave measures one group commit of 20 ~1 KiB deliveries (the receiver's usual batch
// under load) against a real server; ns/op is the round trip, server work included.
func BenchmarkSave(b *testing.B) {
	ctx := context.Background()
	s, err := Open(ctx, pgtest.NewDatabase(b))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const batch = 20
	body := []byte(`{"pad":"` + strings.Repeat("x", 1000) + `"}`)
	ds := make([]store.Delivery, batch)
	n := 0
	b.ResetTimer()
	for range b.N {
		for i := range ds {
			n++
			ds[i] = store.Delivery{RunID: fmt.Sprintf("run-%d", n), JobID: "job", JobRunID: "jobrun", Project: "p",
				APIName: "api", ResultStatus: "completed", ReceivedAt: time.Now(), Body: body}
		}
		if _, err := s.Save(ctx, ds); err != nil {
			b.Fatal(err)
		}
	}
}
