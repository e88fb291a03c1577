package receiver

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/intuned-operator/intuned-operator/internal/receiver/store"
)

// metrics are registered on the receiver's own registry (served at /metrics), so several receivers
// in one test process do not collide.
type metrics struct {
	reg           *prometheus.Registry
	received      prometheus.Counter
	stored        prometheus.Counter
	duplicates    prometheus.Counter
	conflicts     prometheus.Counter
	rejected      *prometheus.CounterVec
	batchSize     prometheus.Histogram
	commitSeconds prometheus.Histogram
	// summarySeconds: the store's time for the JobRun summaries of one read API request.
	summarySeconds prometheus.Histogram
	// backfillResults counts backfilled lines by outcome (stored, present, invalid);
	// backfillRejected the backfill requests refused as a whole, by reason.
	backfillResults  *prometheus.CounterVec
	backfillRejected *prometheus.CounterVec
	backfillSeconds  prometheus.Histogram
}

func newMetrics(st store.Store) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		received: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "receiver_deliveries_received_total", Help: "Requests to the ingest path."}),
		stored: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "receiver_deliveries_stored_total", Help: "Deliveries committed for the first time."}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "receiver_deliveries_duplicate_total", Help: "Deliveries whose runId was already stored with the same body (answered 200 duplicate, not stored again)."}),
		conflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "receiver_deliveries_conflict_total", Help: "Deliveries whose runId was already stored with a different body (answered 200 conflict; the stored body kept, this one quarantined as conflicting_duplicate)."}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "receiver_deliveries_rejected_total", Help: "Ingest requests not stored, by reason (unauthorized, method, media_type, too_large, invalid_json, invalid_utf8, too_deep, not_sink_body, overloaded, deadline, store_error, store_full, shutting_down, read_error)."},
			[]string{"reason"}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "receiver_commit_batch_size", Help: "Deliveries per group-commit transaction.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 11)}),
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "receiver_commit_duration_seconds", Help: "Time to commit one batch to the store.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		summarySeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "receiver_jobrun_summary_duration_seconds", Help: "Time the store took for the JobRun summaries of one read API request (GET /v1/jobruns...).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		backfillResults: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "receiver_backfill_results_total", Help: "Results-file lines of answered backfill requests, by outcome: stored (new), present (runId already stored; left as it is), invalid (quarantined)."},
			[]string{"outcome"}),
		backfillRejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "receiver_backfill_rejected_total", Help: "Backfill requests refused as a whole (nothing stored), by reason (unauthorized, method, media_type, invalid_query, invalid_job_run, too_large, too_many_lines, overloaded, deadline, store_error, store_full, shutting_down, read_error)."},
			[]string{"reason"}),
		backfillSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "receiver_backfill_duration_seconds", Help: "Time to handle one backfill request (POST /v1/jobruns/{id}/backfill), from its start to the answer.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
	}
	m.reg.MustRegister(m.received, m.stored, m.duplicates, m.conflicts, m.rejected, m.batchSize, m.commitSeconds, m.summarySeconds,
		m.backfillResults, m.backfillRejected, m.backfillSeconds,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if sr, ok := st.(store.SpaceReporter); ok {
		m.reg.MustRegister(spaceCollector{sr})
	}
	return m
}

// nearFullFraction: the volume counts as nearly full below this share of free space (or below
// twice what the store keeps free plus the WAL, on a small volume).
const nearFullFraction = 0.10

var (
	freeDesc = prometheus.NewDesc("receiver_store_volume_free_bytes",
		"Bytes free on the store's volume (SQLite).", nil, nil)
	capacityDesc = prometheus.NewDesc("receiver_store_volume_capacity_bytes",
		"Size of the store's volume (SQLite).", nil, nil)
	walDesc = prometheus.NewDesc("receiver_store_wal_bytes",
		"Size of the SQLite write-ahead log; truncated to 0 when idle.", nil, nil)
	nearFullDesc = prometheus.NewDesc("receiver_store_volume_near_full",
		"1 when the store's volume has less than 10% free (or less than twice the reserve the store keeps), else 0. Grow the volume before writes are refused.", nil, nil)
	fullDesc = prometheus.NewDesc("receiver_store_volume_full",
		"1 while writes are refused because the volume is full (free space below the reserve plus the WAL), else 0.", nil, nil)
)

// spaceCollector reads the store's volume on every scrape (a statfs and a stat).
type spaceCollector struct{ sr store.SpaceReporter }

func (c spaceCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{freeDesc, capacityDesc, walDesc, nearFullDesc, fullDesc} {
		ch <- d
	}
}

func (c spaceCollector) Collect(ch chan<- prometheus.Metric) {
	sp, err := c.sr.Space()
	if err != nil {
		return // nothing to report; the scrape still succeeds
	}
	full := sp.FreeBytes < sp.MinFreeBytes+sp.WALBytes
	near := full || float64(sp.FreeBytes) < nearFullFraction*float64(sp.CapacityBytes) ||
		sp.FreeBytes < 2*sp.MinFreeBytes+sp.WALBytes
	gauge := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v)
	}
	gauge(freeDesc, float64(sp.FreeBytes))
	gauge(capacityDesc, float64(sp.CapacityBytes))
	gauge(walDesc, float64(sp.WALBytes))
	gauge(nearFullDesc, boolValue(near))
	gauge(fullDesc, boolValue(full))
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
