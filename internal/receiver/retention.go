package receiver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/intuned-operator/intuned-operator/internal/receiver/store"
)

// RetryWindowFloor is the youngest a delivery may be when retention prunes it, whatever the
// settings. Intuned retries a delivery for one hour after its Run, and the Run ended before the
// delivery arrived, so every retry of a delivery received at T comes before T+1h. A delivery
// kept for two hours has therefore seen its last retry: no retry can find its runId gone and be
// stored again as new. The second hour is margin for a node clock that steps.
const RetryWindowFloor = 2 * time.Hour

// Retention configures the pruner (Config.Retention). The zero value keeps everything.
type Retention struct {
	// MaxAge prunes deliveries (and quarantined bodies) received longer ago than this; 0: no age
	// bound. At least RetryWindowFloor.
	MaxAge time.Duration
	// MaxBytes prunes the oldest deliveries while the store's data takes more than this many
	// bytes (a store.DataSizer: SQLite), never one younger than RetryWindowFloor; 0: no bound.
	MaxBytes int64
	// Interval between pruning rounds; default 1m.
	Interval time.Duration
	// Batch is the most rows one delete transaction removes from each table; default 1000.
	Batch int
	// BatchTime is how long one delete transaction should hold the store's writer: the pruner
	// halves its batch while one takes longer and doubles it (up to Batch) while one takes less
	// than half; default 10ms. See pruner.
	BatchTime time.Duration
	// Pause between two batches, so the writer's commits get the store in between; default 50ms.
	Pause time.Duration
}

// minPruneBatch is the smallest batch the pruner shrinks to (or Batch, when that is smaller).
const minPruneBatch = 10

func (c *Retention) enabled() bool { return c.MaxAge > 0 || c.MaxBytes > 0 }

func (c *Retention) setDefaults() {
	if c.Interval <= 0 {
		c.Interval = time.Minute
	}
	if c.Batch <= 0 {
		c.Batch = 1000
	}
	if c.BatchTime <= 0 {
		c.BatchTime = 10 * time.Millisecond
	}
	if c.Pause <= 0 {
		c.Pause = 50 * time.Millisecond
	}
}

// check refuses settings that would prune inside Intuned's retry window or that st cannot apply.
func (c *Retention) check(st store.Store) error {
	if c.MaxAge < 0 || c.MaxBytes < 0 {
		return errors.New("retention: max age and max bytes must not be negative")
	}
	if c.MaxAge > 0 && c.MaxAge < RetryWindowFloor {
		return fmt.Errorf("retention: max age %v is below %v: Intuned retries a delivery for 1h after its Run, and a retry of a pruned delivery would be stored again as new", c.MaxAge, RetryWindowFloor)
	}
	if _, ok := st.(store.DataSizer); c.MaxBytes > 0 && !ok {
		return errors.New("retention: a size bound needs a store that measures its data (sqlite); bound a PostgreSQL store by age")
	}
	return nil
}

// pruner deletes old deliveries off the ingest path: a round every Interval, in batches of at most
// Batch rows per table and transaction, with a Pause between batches. A SQLite commit waits for a
// batch's transaction (one writer), so small batches keep the ingest latency flat.
//
// A batch's size follows its time (nextBatch): deleting a row costs about what storing it did (a
// random leaf of the run_id index, the row's pages, the other indexes), and that cost grows with
// the store and the machine's load. With a fixed batch of 1,000, a receiver on a store of 1M
// deliveries that turned retention on (a backlog of 900k to prune) held its writer ~150 ms per
// batch: it answered 0.05x its saturation rate without pruning, and 248 of 1,000 deliveries/s
// offered (make bench-receiver, sqlite@1M+prune, README "Store size").
type pruner struct {
	cfg   Retention
	st    store.Store
	log   *slog.Logger
	errs  *limitedLog
	m     retentionMetrics
	floor bool // the last round stopped size pruning at RetryWindowFloor while over MaxBytes
	batch int  // rows the next batch deletes (nextBatch); starts at the smallest
}

// nextBatch is the size of the batch after one of n rows that took took: halved while a batch
// holds the writer longer than BatchTime, doubled while it takes less than half of it, between
// minPruneBatch and Batch.
func (c *Retention) nextBatch(n int, took time.Duration) int {
	lo := min(minPruneBatch, c.Batch)
	switch {
	case took > c.BatchTime:
		return max(lo, n/2)
	case took < c.BatchTime/2:
		return min(c.Batch, n*2)
	}
	return max(lo, min(c.Batch, n))
}

type retentionMetrics struct {
	pruned       *prometheus.CounterVec
	roundSeconds prometheus.Histogram
	floorReached prometheus.Gauge
}

// newRetentionMetrics registers the retention metrics, and the store's oldest delivery and data
// size, which also help to choose the settings while retention is off.
func newRetentionMetrics(reg *prometheus.Registry, st store.Store) retentionMetrics {
	m := retentionMetrics{
		pruned: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "receiver_retention_pruned_total", Help: "Rows deleted by retention, by kind: deliveries, quarantined (bodies kept in the quarantine table)."},
			[]string{"kind"}),
		roundSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "receiver_retention_round_duration_seconds", Help: "Time of one pruning round, pauses between batches included.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 12)}),
		floorReached: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "receiver_retention_size_floor_reached", Help: "1 when the last pruning round left the store over its size bound because everything left was received less than 2h ago (Intuned may still retry it), else 0. Grow the volume or raise the bound."}),
	}
	m.pruned.WithLabelValues("deliveries")
	m.pruned.WithLabelValues("quarantined")
	reg.MustRegister(m.pruned, m.roundSeconds, m.floorReached, storeCollector{st})
	return m
}

// run prunes at once and then every Interval until ctx ends.
func (p *pruner) run(ctx context.Context) {
	tick := time.NewTicker(p.cfg.Interval)
	defer tick.Stop()
	for {
		p.round(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// round prunes by age, then by size, and reports what it did.
func (p *pruner) round(ctx context.Context) {
	start := time.Now()
	var total store.Pruned
	var err error
	if p.cfg.MaxAge > 0 {
		total, _, err = p.prune(ctx, start.Add(-p.cfg.MaxAge), func() (bool, error) { return true, nil })
	}
	floor := false
	if p.cfg.MaxBytes > 0 && err == nil {
		sizer := p.st.(store.DataSizer) // checked by Retention.check
		over := func() (bool, error) {
			n, err := sizer.DataBytes(ctx)
			return n > p.cfg.MaxBytes, err
		}
		var bySize store.Pruned
		var exhausted bool
		bySize, exhausted, err = p.prune(ctx, start.Add(-RetryWindowFloor), over)
		total.Deliveries += bySize.Deliveries
		total.Quarantined += bySize.Quarantined
		if exhausted && err == nil {
			floor, err = over()
		}
	}
	took := time.Since(start)
	p.m.roundSeconds.Observe(took.Seconds())
	if err != nil && ctx.Err() == nil {
		p.errs.Error("retention: pruning failed; retried next round", "err", err, "interval", p.cfg.Interval.String())
	}
	if total.Deliveries+total.Quarantined > 0 {
		p.log.Info("retention: pruned", "deliveries", total.Deliveries, "quarantined", total.Quarantined,
			"duration", took.String())
	}
	if err == nil {
		if floor && !p.floor {
			p.log.Warn("retention: the store is over its size bound, but everything left was received in the last 2h, which Intuned may still retry: nothing more is pruned; grow the volume or raise the bound",
				"maxBytes", p.cfg.MaxBytes)
		}
		p.floor = floor
		p.m.floorReached.Set(boolValue(floor))
	}
}

// prune deletes batches of rows received before before while want says so. It stops early with
// exhausted when a batch came back short: nothing was left before before.
func (p *pruner) prune(ctx context.Context, before time.Time, want func() (bool, error)) (total store.Pruned, exhausted bool, err error) {
	for {
		if ok, err := want(); err != nil || !ok {
			return total, false, err
		}
		n := p.batch
		start := time.Now()
		b, err := p.st.Prune(ctx, before, n)
		p.batch = p.cfg.nextBatch(n, time.Since(start))
		total.Deliveries += b.Deliveries
		total.Quarantined += b.Quarantined
		// Counted per batch: a round that works off a large backlog (retention just turned on for a
		// store of millions) runs for minutes, and the counter shows its progress meanwhile.
		p.m.pruned.WithLabelValues("deliveries").Add(float64(b.Deliveries))
		p.m.pruned.WithLabelValues("quarantined").Add(float64(b.Quarantined))
		if err != nil {
			return total, false, err
		}
		if b.Deliveries < int64(n) && b.Quarantined < int64(n) {
			return total, true, nil
		}
		select {
		case <-ctx.Done():
			return total, false, ctx.Err()
		case <-time.After(p.cfg.Pause):
		}
	}
}

var (
	oldestDesc = prometheus.NewDesc("receiver_store_oldest_delivery_timestamp_seconds",
		"Receive time (unix seconds) of the oldest stored delivery; absent while none is stored.", nil, nil)
	dataBytesDesc = prometheus.NewDesc("receiver_store_data_bytes",
		"Bytes the store's data takes (SQLite: database pages in use; pages freed by pruning are reused, the file does not shrink). Retention's maxSize bounds this.", nil, nil)
)

// storeCollector reads the oldest delivery (one index seek) and the data size on every scrape.
type storeCollector struct{ st store.Store }

func (c storeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- oldestDesc
	ch <- dataBytesDesc
}

func (c storeCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if oldest, err := c.st.OldestDelivery(ctx); err == nil && !oldest.IsZero() {
		ch <- prometheus.MustNewConstMetric(oldestDesc, prometheus.GaugeValue, float64(oldest.UnixMicro())/1e6)
	}
	if sizer, ok := c.st.(store.DataSizer); ok {
		if n, err := sizer.DataBytes(ctx); err == nil {
			ch <- prometheus.MustNewConstMetric(dataBytesDesc, prometheus.GaugeValue, float64(n))
		}
	}
}
