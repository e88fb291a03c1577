package receiver

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/intuned-operator/intuned-operator/internal/receiver/store"
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

// BenchmarkBackfill pushes batches of 1 MiB of results-file lines (1-2 KiB each, as the manager
// sends them) into a SQLite receiver over loopback, one request at a time: "new" stores every
// line, "present" sends lines that are all stored already (a backfill resumed or repeated).
// MB/s counts request bytes.
func BenchmarkBackfill(b *testing.B) {
	batch := func(seq *int) ([]byte, int) {
		var buf []byte
		n := 0
		for len(buf) < 1<<20 {
			*seq++
			pad := strings.Repeat("x", 900+(*seq*37)%1000) // 1-2 KiB lines
			buf = fmt.Appendf(buf, `{"name":"details","runId":"bf-%09d","parameters":{"url":"https://shop.example.com/p/%d"},`+
				`"result":{"status":"completed","result":{"title":"Product %d","description":%q,"price":19.99},"statusCode":200}}`+"\n",
				*seq, *seq, *seq, pad)
			n++
		}
		return buf, n
	}
	for _, mode := range []string{"new", "present"} {
		b.Run(mode, func(b *testing.B) {
			e := newEnv(b, "sqlite", nil)
			client := &http.Client{Transport: &http.Transport{}}
			post := func(body []byte) {
				req, _ := http.NewRequest(http.MethodPost, e.url+"/v1/jobruns/jr-bench/backfill?jobId=job&project=p&workspaceId=ws", bytes.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+ingestToken)
				req.Header.Set("Content-Type", "application/x-ndjson")
				res, err := client.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, res.Body) //nolint:errcheck
				res.Body.Close()
				if res.StatusCode != 200 {
					b.Fatalf("status %d", res.StatusCode)
				}
			}
			seq, lines := 0, 0
			var fixed []byte
			if mode == "present" {
				fixed, lines = batch(&seq)
				post(fixed)
			}
			var bytesSent, results int64
			b.ResetTimer()
			for range b.N {
				body, n := fixed, lines
				if mode == "new" {
					b.StopTimer()
					body, n = batch(&seq)
					b.StartTimer()
				}
				post(body)
				bytesSent += int64(len(body))
				results += int64(n)
			}
			b.StopTimer()
			b.ReportMetric(float64(bytesSent)/1e6/b.Elapsed().Seconds(), "MB/s")
			b.ReportMetric(float64(results)/b.Elapsed().Seconds(), "results/s")
			b.ReportMetric(float64(results)/float64(b.N), "results/op")
		})
	}
}

// BenchmarkBackupWhileIngesting takes backups (GET /v1/backup, streamed to the client) of a
// SQLite receiver holding 100,000 deliveries of ~1 KiB while 16 senders keep delivering, and
// reports the backup's duration and size and the deliveries acknowledged per second before and
// during the backups. Use -benchtime 3x.
func BenchmarkBackupWhileIngesting(b *testing.B) {
	e := newEnv(b, "sqlite", nil)
	ctx := context.Background()
	pad := strings.Repeat("x", 800)
	batch := make([]store.Delivery, 0, 1000)
	t0 := time.Now().Add(-time.Hour)
	for i := range 100_000 {
		id := fmt.Sprintf("seed-%016x", rand.Uint64()) // random, as Intuned's runIds are
		body := strings.Replace(runBody(id, fmt.Sprint("jr-", i/1000), "list", "completed"), `{"n"`, `{"pad":"`+pad+`","n"`, 1)
		batch = append(batch, store.Delivery{RunID: id, JobID: "job-1", JobRunID: fmt.Sprint("jr-", i/1000), Project: "ecommerce",
			APIName: "list", ResultStatus: "completed", ReceivedAt: t0.Add(time.Duration(i) * time.Millisecond), Body: []byte(body)})
		if len(batch) == cap(batch) {
			if _, err := e.st.Save(ctx, batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	l := startLoad(e, 16)
	defer l.stop()
	const calm = 2 * time.Second
	n0 := l.acked()
	time.Sleep(calm)
	before := float64(l.acked()-n0) / calm.Seconds()

	var took time.Duration
	var acked, size int64
	b.ResetTimer()
	for range b.N {
		n0, start := l.acked(), time.Now()
		req, _ := http.NewRequest(http.MethodGet, e.url+"/v1/backup", nil)
		req.Header.Set("Authorization", "Bearer "+readToken)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if err != nil || res.StatusCode != http.StatusOK {
			b.Fatalf("backup: %s, %v", res.Status, err)
		}
		took += time.Since(start)
		acked += int64(l.acked() - n0)
		size = n
	}
	b.StopTimer()
	if refused := l.stop(); refused != "" {
		b.Errorf("deliveries refused: %s", refused)
	}
	b.ReportMetric(took.Seconds()/float64(b.N), "backup-s")
	b.ReportMetric(float64(size)/1e6, "backup-MB")
	b.ReportMetric(before, "deliveries/s-before")
	b.ReportMetric(float64(acked)/took.Seconds(), "deliveries/s-during")
}
