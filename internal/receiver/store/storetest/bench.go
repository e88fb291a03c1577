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

// JobRunRows is how many deliveries SeedJobRuns stores for one JobRun.
type JobRunRows struct {
	JobRunID string
	N        int
}

// SeedJobRuns stores the deliveries of several JobRuns interleaved, one of each in turn (the way
// concurrent JobRuns arrive), in batches of 1,000 with ~200-byte bodies. Each JobRun's results
// spread over three API names and both result statuses.
func SeedJobRuns(tb testing.TB, s store.Store, runs []JobRunRows) {
	ctx := context.Background()
	t0 := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	apis := []string{"list", "details", "reviews"}
	left := make([]int, len(runs))
	for i, r := range runs {
		left[i] = r.N
	}
	var batch []store.Delivery
	flush := func() {
		if _, err := s.Save(ctx, batch); err != nil {
			tb.Fatal(err)
		}
		batch = batch[:0]
	}
	for n := 0; ; {
		added := false
		for i, r := range runs {
			if left[i] == 0 {
				continue
			}
			left[i]--
			added, n = true, n+1
			status := "completed"
			if n%10 == 0 {
				status = "failed"
			}
			batch = append(batch, Delivery(fmt.Sprintf("%s-%d", r.JobRunID, left[i]), "job", r.JobRunID, apis[n%len(apis)],
				status, t0.Add(time.Duration(n)*time.Millisecond)))
			if len(batch) == 1000 {
				flush()
			}
		}
		if !added {
			break
		}
	}
	if len(batch) > 0 {
		flush()
	}
}

// SummaryBenchRows is the benchmark's data: one JobRun with 100,000 stored results among other
// JobRuns' rows (another 100,000), so the summary has to find its JobRun's rows among others.
var SummaryBenchRows = []JobRunRows{
	{"jr-big", 100_000}, {"jr-other-1", 40_000}, {"jr-other-2", 40_000}, {"jr-small", 20_000},
}

// BenchmarkJobRunSummary measures the summary of the JobRun with 100,000 results in s, which
// SeedJobRuns(SummaryBenchRows) filled, and reports its latency in ms/op too.
func BenchmarkJobRunSummary(b *testing.B, s store.Store) {
	ctx := context.Background()
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		sums, err := s.SummarizeJobRuns(ctx, []string{"jr-big"})
		if err != nil {
			b.Fatal(err)
		}
		if n := sums[0].Stored(); n != 100_000 {
			b.Fatalf("summary counts %d stored results, want 100000", n)
		}
	}
	b.ReportMetric(float64(time.Since(start).Microseconds())/1000/float64(b.N), "ms/op")
}
