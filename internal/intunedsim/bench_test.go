package intunedsim

import (
	"context"
	"fmt"
	"net/http"
	"testing"
)

// BenchmarkGetJob measures one authenticated GET over real HTTP.
func BenchmarkGetJob(b *testing.B) {
	ts := NewTestServer(b, Options{RateLimit: RateLimitOff})
	req := func() *http.Request {
		r, _ := http.NewRequest("GET", ts.APIBase+"/"+ts.WorkspaceID+"/projects/p/jobs/bench-job-1", nil)
		r.Header.Set("x-api-key", ts.APIKey)
		return r
	}
	ts.mu.Lock()
	spec, sched, _ := decodeJobSpec([]byte(`{"id":"bench-job-1","payload":[{"apiName":"list","parameters":{}}],"configuration":{}}`), true)
	ts.jobsOf(ts.WorkspaceID, "p")["bench-job-1"] = &job{ws: ts.WorkspaceID, project: "p", projectID: nameUUID(ts.WorkspaceID + "/p"), spec: *spec, sched: sched, state: StateActive}
	ts.mu.Unlock()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			res, err := http.DefaultClient.Do(req())
			if err != nil || res.StatusCode != 200 {
				panic(fmt.Sprint(err, res))
			}
			res.Body.Close()
		}
	})
}

// BenchmarkQuickstartJobRun measures a triggered quickstart JobRun with 20
// products end to end: 21 Runs and 21 webhook deliveries to a local endpoint.
func BenchmarkQuickstartJobRun(b *testing.B) {
	hookURL := newBenchHook(b)
	ts := NewTestServer(b, Options{RateLimit: RateLimitOff, Catalogue: CatalogueOptions{Products: 20}})
	s := ts.Server
	s.mu.Lock()
	spec, sched, apiErr := decodeJobSpec([]byte(`{"id":"bench-job-2","payload":[{"apiName":"list","parameters":{}}],
		"configuration":{"maxConcurrentRequests":20},"sink":{"type":"webhook","url":"`+hookURL+`"}}`), true)
	if apiErr != nil {
		b.Fatal(apiErr.message)
	}
	j := &job{ws: ts.WorkspaceID, project: "p", projectID: "x", spec: *spec, sched: sched, state: StateActive}
	s.jobsOf(ts.WorkspaceID, "p")["bench-job-2"] = j
	s.mu.Unlock()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s.mu.Lock()
		s.startJobRunLocked(j, JobRunManual)
		s.mu.Unlock()
		if err := s.WaitIdle(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(len(s.Deliveries()))/float64(b.N), "deliveries/op")
}

func newBenchHook(b *testing.B) string {
	return newHTTPServerTB(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
}
