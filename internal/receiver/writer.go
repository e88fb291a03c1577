package receiver

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/intuned-operator/intuned-operator/internal/receiver/store"
)

var (
	// errOverloaded: the queue is full; the sender should come back later (429).
	errOverloaded = errors.New("too many deliveries in flight")
	// errClosed: the receiver is shutting down (503).
	errClosed = errors.New("receiver is shutting down")
)

// pending is what one request waits for the writer to commit: one webhook delivery, or the valid
// lines of one backfill request, which commit together. result has room for one value: the first
// answer (the commit's, or the watchdog's at the deadline) wins and later ones are dropped, so
// neither the writer nor the watchdog ever blocks on a request.
type pending struct {
	ctx      context.Context // the request's: done when the client goes away
	deadline time.Time       // the request answers 503 deadline when not committed by then
	ds       []store.Delivery
	one      [1]store.Delivery // ds of a webhook delivery, without a slice allocation of its own
	result   chan outcome
}

// expired reports why a queued delivery is no longer wanted (its request answered already).
func (p *pending) expired(now time.Time) error {
	if err := p.ctx.Err(); err != nil {
		return err
	}
	if !now.Before(p.deadline) {
		return context.DeadlineExceeded
	}
	return nil
}

// answer gives the request its outcome unless it has one already.
func (p *pending) answer(o outcome) {
	select {
	case p.result <- o:
	default:
	}
}

type outcome struct {
	res []store.Result // one per delivery of the pending
	err error
}

// writer is the group committer: one goroutine takes whatever deliveries are queued (up to
// maxBatch), saves them in one transaction and tells each waiting request its own result. Under
// load many requests share one commit/fsync; with no load a delivery is committed alone at once.
//
// The queue is a slice under a mutex rather than a channel so that the watchdog can see every
// delivery that waits, queued or being committed, and answer it at its deadline: a request then
// waits on nothing but its result and its connection, with no timer of its own (a timer per
// request cost ~2-3 us of CPU per delivery under load, measured with pprof).
type writer struct {
	st            store.Store
	maxQueue      int
	maxBatch      int
	commitTimeout time.Duration
	m             *metrics
	log           *slog.Logger
	storeErrs     *limitedLog
	// lastFailure is when a commit last failed with a store error (unix ns; 0 = never); /readyz
	// reports the receiver not ready for a while after it.
	lastFailure atomic.Int64

	mu         sync.Mutex
	queue      []*pending // waiting for the next commit, oldest first
	committing []*pending // the batch being saved now
	spare      []*pending // the previous batch's slice, reused for the next one
	closed     bool
	wake       chan struct{} // holds a token while the queue may be non-empty or closed
	done       chan struct{} // closed when the writer has committed everything and stopped
}

// watchdogTicks: the watchdog looks for deliveries past their deadline this many times per
// deadline, so a request gets its 503 at most deadline/watchdogTicks late.
const watchdogTicks = 10

func newWriter(st store.Store, queueSize, maxBatch int, deadline, commitTimeout time.Duration, m *metrics, log *slog.Logger, storeErrs *limitedLog) *writer {
	w := &writer{
		st: st, maxQueue: queueSize, maxBatch: maxBatch, commitTimeout: commitTimeout, m: m, log: log,
		storeErrs: storeErrs, wake: make(chan struct{}, 1), done: make(chan struct{}),
	}
	go w.run()
	go w.watchdog(max(deadline/watchdogTicks, time.Millisecond))
	return w
}

// submit queues d and waits until its batch commits, ctx ends or the deadline passes
// (context.DeadlineExceeded, from the watchdog). It never blocks on a full queue.
func (w *writer) submit(ctx context.Context, deadline time.Time, d store.Delivery) (store.Result, error) {
	p := &pending{ctx: ctx, deadline: deadline, result: make(chan outcome, 1)}
	p.one[0] = d
	p.ds = p.one[:]
	res, err := w.wait(p)
	if err != nil {
		return store.Result{}, err
	}
	return res[0], nil
}

// submitAll is submit for several deliveries that commit together, in one transaction, or not at
// all; the batch that carries them may exceed maxBatch.
func (w *writer) submitAll(ctx context.Context, deadline time.Time, ds []store.Delivery) ([]store.Result, error) {
	return w.wait(&pending{ctx: ctx, deadline: deadline, ds: ds, result: make(chan outcome, 1)})
}

// wait queues p and waits for its outcome.
func (w *writer) wait(p *pending) ([]store.Result, error) {
	w.mu.Lock()
	var err error
	switch {
	case w.closed:
		err = errClosed
	case len(w.queue) >= w.maxQueue:
		err = errOverloaded
	default:
		w.queue = append(w.queue, p)
		if len(w.queue) == 1 {
			w.signal()
		}
	}
	w.mu.Unlock()
	if err != nil {
		return nil, err
	}
	select {
	case o := <-p.result:
		return o.res, o.err
	case <-p.ctx.Done():
		return nil, p.ctx.Err()
	}
}

// signal wakes the writer (a no-op when a wake-up is pending already).
func (w *writer) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// Lingering: when the last commit carried more than one delivery (deliveries arrive concurrently)
// and fewer than lingerBelow are queued, the writer waits linger before taking the next batch, so
// that it carries more. A commit costs about the same fsync and the same number of pages whether
// it carries 3 deliveries or 10. In eight interleaved A/B runs of make bench-receiver at half the
// saturation rate (6.7-12k deliveries/s), lingering cut the CPU per delivery from 82-138 to
// 70-86 us, for about 1 ms more p50; p99 did not improve (it varied 9-324 ms with the machine's
// other load, in both builds). A lone delivery (the last commit carried one) is committed at once.
// 1 ms instead of 0.5 ms lost saturation throughput (0.33-0.35x against 0.40-0.43x); 0.25 ms saved
// less CPU.
const (
	linger      = 500 * time.Microsecond
	lingerBelow = 16
)

func (w *writer) run() {
	defer close(w.done)
	last := 0 // deliveries in the last batch
	for {
		if last > 1 && w.queued() < lingerBelow {
			time.Sleep(linger)
		}
		batch, closed := w.next()
		last = len(batch)
		switch {
		case len(batch) > 0:
			w.commit(batch)
			w.finished(batch)
		case closed:
			return
		default:
			<-w.wake
		}
	}
}

// queued is the number of deliveries waiting for the next commit.
func (w *writer) queued() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.queue)
}

// next takes the oldest queued pendings, up to maxBatch deliveries (but at least one pending), as
// the batch being committed, and reports whether the writer is closed.
func (w *writer) next() ([]*pending, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n, rows := 0, 0
	for n < len(w.queue) && (n == 0 || rows+len(w.queue[n].ds) <= w.maxBatch) {
		rows += len(w.queue[n].ds)
		n++
	}
	if n == 0 {
		return nil, w.closed
	}
	batch := append(w.spare[:0], w.queue[:n]...)
	rest := copy(w.queue, w.queue[n:])
	clear(w.queue[rest:]) // the batch holds them now; keep no second reference to their bodies
	w.queue = w.queue[:rest]
	w.spare, w.committing = nil, batch
	return batch, w.closed
}

// finished hands the committed batch's slice back for reuse.
func (w *writer) finished(batch []*pending) {
	w.mu.Lock()
	clear(batch) // let the bodies go
	w.committing, w.spare = nil, batch[:0]
	w.mu.Unlock()
}

// watchdog answers every delivery still waiting at its deadline with context.DeadlineExceeded
// (503 deadline), whether it is queued or in a commit that is taking too long. A delivery in a
// commit may still be committed after that; the sender's retry then finds it stored (duplicate).
func (w *writer) watchdog(every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-w.done:
			return
		case <-tick.C:
		}
		now := time.Now()
		w.mu.Lock()
		for _, batch := range [][]*pending{w.queue, w.committing} {
			for _, p := range batch {
				if !now.Before(p.deadline) {
					p.answer(outcome{err: context.DeadlineExceeded})
				}
			}
		}
		w.mu.Unlock()
	}
}

func (w *writer) commit(batch []*pending) {
	live := batch[:0:0]
	ds := make([]store.Delivery, 0, len(batch))
	now := time.Now()
	for _, p := range batch {
		// A request whose deadline passed already answered 503; skip it to shed load.
		if err := p.expired(now); err != nil {
			p.answer(outcome{err: err})
			continue
		}
		live = append(live, p)
		ds = append(ds, p.ds...)
	}
	if len(ds) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), w.commitTimeout)
	defer cancel()
	start := time.Now()
	results, err := w.st.Save(ctx, ds)
	w.m.commitSeconds.Observe(time.Since(start).Seconds())
	w.m.batchSize.Observe(float64(len(ds)))
	// A full store refuses every delivery alike: no point in trying them one by one.
	if err != nil && len(live) > 1 && ctx.Err() == nil && !errors.Is(err, store.ErrFull) {
		// One delivery the store rejects must not fail the others that shared its transaction:
		// retry request by request, so only the culprit's gets an error.
		w.log.Warn("batch commit failed; retrying requests one by one", "deliveries", len(ds), "requests", len(live), "err", err)
		for _, p := range live {
			res, err := w.st.Save(ctx, p.ds)
			if err != nil {
				w.failed(err, "runId", p.ds[0].RunID, "deliveries", len(p.ds))
			}
			p.answer(outcome{res: res, err: err})
		}
		return
	}
	if err != nil {
		w.failed(err, "deliveries", len(ds))
	}
	for _, p := range live {
		if err != nil {
			p.answer(outcome{err: err})
		} else {
			p.answer(outcome{res: results[:len(p.ds):len(p.ds)]})
			results = results[len(p.ds):]
		}
	}
}

// failed records a store error: rate-limited in the log, and remembered for /readyz.
func (w *writer) failed(err error, args ...any) {
	w.lastFailure.Store(time.Now().UnixNano())
	w.storeErrs.Error("commit failed", append(args, "err", err)...)
}

// close stops accepting deliveries, commits everything already queued and returns when done.
func (w *writer) close() {
	w.mu.Lock()
	w.closed = true
	w.signal()
	w.mu.Unlock()
	<-w.done
}
