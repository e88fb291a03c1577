package intuned

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"
)

// BenchmarkGetJob is one GetJob against a local server, pacing off: the
// client's own overhead (encode, HTTP, decode, metrics).
func BenchmarkGetJob(b *testing.B) {
	body := golden(b, "job_detail.json")
	srv := newTestServer(b, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, string(body)) })
	c, err := New(Options{BaseURL: srv.URL, WorkspaceID: "w", APIKey: testKey, Pacer: NewPacer(PacerOptions{Disabled: true})})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.GetJob(ctx, "p", "default-with-webhook"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPacerWait is the cost of a granted Wait across many paths (the
// fake clock moves on before any path reaches its limit).
func BenchmarkPacerWait(b *testing.B) {
	clock := newFakeClock()
	p := NewPacer(PacerOptions{Clock: clock})
	ctx := context.Background()
	paths := make([]string, 512)
	for i := range paths {
		paths[i] = fmt.Sprint("host/ws/projects/p/jobs/job-", i)
	}
	i := 0
	for b.Loop() {
		if d, _ := p.Wait(ctx, paths[i%len(paths)], 0); d != 0 {
			b.Fatal("waited")
		}
		i++
		if i%(20*len(paths)) == 0 {
			clock.Advance(62 * time.Second)
		}
	}
}

func BenchmarkDecodeJobRuns(b *testing.B) {
	data := golden(b, "job_runs.json")
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		var v JobRunList
		if err := json.Unmarshal(data, &v); err != nil {
			b.Fatal(err)
		}
	}
}
