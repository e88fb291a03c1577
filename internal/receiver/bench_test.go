package receiver

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	dto "github.com/prometheus/client_model/go"
)

// BenchmarkIngest measures the whole ingest path (HTTP, auth, parse, group commit) in-process, for
// profiling (go test -bench Ingest -cpuprofile cpu.out). hack/bench-receiver is the end-to-end one.
func BenchmarkIngest(b *testing.B) {
	for _, kind := range []string{"sqlite", "postgres"} {
		b.Run(kind, func(b *testing.B) {
			e := newEnv(b, kind, nil)
			var n atomic.Int64
			tr := &http.Transport{MaxIdleConnsPerHost: 64}
			client := &http.Client{Transport: tr}
			b.SetParallelism(32)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					id := fmt.Sprintf("b-%d", n.Add(1))
					req, _ := http.NewRequest(http.MethodPost, e.url+"/webhooks/intuned", strings.NewReader(validBody(id)))
					req.Header.Set("Authorization", "Bearer "+ingestToken)
					req.Header.Set("Content-Type", "application/json")
					res, err := client.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, res.Body) //nolint:errcheck
					res.Body.Close()
					if res.StatusCode != 201 {
						b.Errorf("status %d", res.StatusCode)
						return
					}
				}
			})
			b.StopTimer()
			var batch, commit dto.Metric
			e.rcv.m.batchSize.Write(&batch)      //nolint:errcheck
			e.rcv.m.commitSeconds.Write(&commit) //nolint:errcheck
			if n := float64(batch.Histogram.GetSampleCount()); n > 0 {
				b.ReportMetric(batch.Histogram.GetSampleSum()/n, "deliveries/commit")
				b.ReportMetric(1000*commit.Histogram.GetSampleSum()/n, "ms/commit")
			}
		})
	}
}
