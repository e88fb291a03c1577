package postgres

import (
	"context"
	"testing"

	"github.com/intuned-operator/intuned-operator/internal/receiver/store/storetest"
	"github.com/intuned-operator/intuned-operator/internal/testutil/pgtest"
)

// BenchmarkSave: storetest.BenchmarkSave against a real server (server work is in ns/op, not in
// this process's CPU).
func BenchmarkSave(b *testing.B) {
	s, err := Open(context.Background(), pgtest.NewDatabase(b))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	storetest.BenchmarkSave(b, s)
}
