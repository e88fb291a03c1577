package receiver

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are registered on the receiver's own registry (served at /metrics), so several receivers
// in one test process do not collide.
type metrics struct {
	reg           *prometheus.Registry
	received      prometheus.Counter
	stored        prometheus.Counter
	duplicates    prometheus.Counter
	rejected      *prometheus.CounterVec
	batchSize     prometheus.Histogram
	commitSeconds prometheus.Histogram
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		received: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "receiver_deliveries_received_total", Help: "Requests to the ingest path."}),
		stored: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "receiver_deliveries_stored_total", Help: "Deliveries committed for the first time."}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "receiver_deliveries_duplicate_total", Help: "Deliveries whose runId was already stored (answered 200, not stored again)."}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "receiver_deliveries_rejected_total", Help: "Ingest requests not stored, by reason (unauthorized, method, media_type, too_large, invalid_json, not_sink_body, overloaded, deadline, store_error, shutting_down, read_error)."},
			[]string{"reason"}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "receiver_commit_batch_size", Help: "Deliveries per group-commit transaction.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 11)}),
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "receiver_commit_duration_seconds", Help: "Time to commit one batch to the store.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
	}
	m.reg.MustRegister(m.received, m.stored, m.duplicates, m.rejected, m.batchSize, m.commitSeconds,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}
