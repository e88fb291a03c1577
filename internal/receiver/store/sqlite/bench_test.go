package sqlite

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/intuned-operator/intuned-operator/internal/receiver/store/storetest"
)

// BenchmarkSave: storetest.BenchmarkSave on a file-backed store.
func BenchmarkSave(b *testing.B) {
	s, err := Open(context.Background(), filepath.Join(b.TempDir(), "r.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	storetest.BenchmarkSave(b, s)
}
