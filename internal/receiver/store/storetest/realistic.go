package storetest

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/intuned-operator/intuned-operator/internal/receiver/store"
	"github.com/intuned-operator/intuned-operator/internal/receiver/store/realistic"
)

// RealisticDelivery is realistic.Delivery (kept here for the stores' tests).
func RealisticDelivery(r *rand.Rand, i, size int, at time.Time) store.Delivery {
	return realistic.Delivery(r, i, size, at)
}

// FillRealistic stores n RealisticDelivery deliveries (from, from+1, ...) of about size bytes in
// batches of 200, received one millisecond apart from at, and returns the bytes of their bodies.
func FillRealistic(tb testing.TB, s store.Store, r *rand.Rand, from, n, size int, at time.Time) int64 {
	var bodies int64
	batch := make([]store.Delivery, 0, 200)
	for i := from; i < from+n; i++ {
		d := RealisticDelivery(r, i, size, at.Add(time.Duration(i)*time.Millisecond))
		bodies += int64(len(d.Body))
		if batch = append(batch, d); len(batch) == cap(batch) || i == from+n-1 {
			if _, err := s.Save(context.Background(), batch); err != nil {
				tb.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	return bodies
}

// BytesPerDeliverySizes are the body sizes the stores' BenchmarkBytesPerDelivery measure, with
// how many deliveries each stores.
var BytesPerDeliverySizes = []struct {
	Name     string
	Bytes, N int
}{{"guide-example-900B", 900, 20000}, {"2KiB", 2048, 20000}, {"8KiB", 8192, 20000}, {"64KiB", 65536, 3000}}
