package storetest

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/intuned-operator/intuned-operator/internal/receiver/store"
)

// BenchmarkSave measures one group commit of 20 ~1 KiB deliveries (the receiver's usual batch
// under load) in s, and reports the process CPU time per delivery (what limits throughput on a
// small machine; ns/op also includes waiting for fsync or the server).
func BenchmarkSave(b *testing.B, s store.Store) {
	const batch = 20
	body := []byte(`{"pad":"` + strings.Repeat("x", 1000) + `"}`)
	ds := make([]store.Delivery, batch)
	n := 0
	cpu0 := cpuTime()
	b.ResetTimer()
	for range b.N {
		for i := range ds {
			n++
			ds[i] = store.Delivery{RunID: fmt.Sprintf("run-%d", n), JobID: "job", JobRunID: "jobrun", Project: "p",
				APIName: "api", ResultStatus: "completed", ReceivedAt: time.Now(), Body: body}
		}
		// Like the receiver's writer, with a deadline (a cancellable context costs the driver work).
		saveCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if _, err := s.Save(saveCtx, ds); err != nil {
			b.Fatal(err)
		}
		cancel()
	}
	b.StopTimer()
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(n), "cpu-us/delivery")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru) //nolint:errcheck
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
