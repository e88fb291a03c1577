// Package receiver is the HTTP side of the WebhookReceiver: it authenticates and validates Intuned
// webhook-sink deliveries, stores each one durably (group commit through a store.Store) before
// answering 2xx, de-duplicates by apiInfo.runId, and serves the stored deliveries back through a
// small read API. cmd/receiver wires it to flags, a store and signals.
package receiver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/intuned-operator/intuned-operator/internal/receiver/store"
)

// Config configures a Receiver. Zero values take the defaults shown.
type Config struct {
	IngestPath        string        // default "/webhooks/intuned"
	TokenHeader       string        // default "Authorization" (value "Bearer <token>")
	TokenFile         string        // required: current ingest token
	PreviousTokenFile string        // optional: previous ingest token, accepted during rotation
	ReadTokenFile     string        // optional: static token for the read API (/v1/deliveries, ...)
	KubeAuth          *KubeAuth     // optional: the read API also takes Kubernetes tokens, authorised by RBAC
	TokenReload       time.Duration // how often token files are re-read; default 2s
	MaxBodyBytes      int64         // default 10 MiB
	Deadline          time.Duration // time from body read to commit before 503; default 2.5s
	BatchSize         int           // max deliveries per commit; default 256
	MaxInFlight       int           // deliveries queued or committing before 429; default 1024
	MaxInFlightBytes  int64         // body bytes held by in-flight deliveries before 429; default 64 MiB
	RetryAfter        time.Duration // Retry-After sent with 429/503; default 5s
	Logger            *slog.Logger  // default slog.Default()
	Retention         Retention     // pruning of old deliveries (retention.go); zero: keep everything
}

func (c *Config) setDefaults() {
	if c.IngestPath == "" {
		c.IngestPath = "/webhooks/intuned"
	}
	if c.TokenHeader == "" {
		c.TokenHeader = "Authorization"
	}
	if c.TokenReload <= 0 {
		c.TokenReload = 2 * time.Second
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = 10 << 20
	}
	if c.Deadline <= 0 {
		c.Deadline = 2500 * time.Millisecond
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 256
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = 1024
	}
	if c.MaxInFlightBytes <= 0 {
		c.MaxInFlightBytes = 64 << 20
	}
	if c.RetryAfter <= 0 {
		c.RetryAfter = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	c.Retention.setDefaults()
}

// Receiver serves the ingest endpoint, the read API and the health/metrics endpoints.
type Receiver struct {
	cfg        Config
	st         store.Store
	log        *slog.Logger
	ingestAuth *tokens // the ingest path's and backfill's
	// ingestRefusals and backfillRefusals count and log what those two endpoints refuse.
	ingestRefusals, backfillRefusals refusals
	readAuth                         *tokens   // the static read token; nil: none
	kubeAuth                         *kubeAuth // Kubernetes tokens; nil: none (both nil: read API disabled)
	w                                *writer
	m                                *metrics
	storeErrs                        *limitedLog   // store errors, logged at most every storeErrorLogEvery
	readers                          chan struct{} // read API requests being served (maxReaders)
	inFlight                         atomic.Int64  // deliveries being handled (admission control)
	inFlightBytes                    atomic.Int64  // body bytes they reserved
	draining                         atomic.Bool
	backupMu                         sync.Mutex         // one backup or restore at a time (each holds a file the size of the store)
	stopWatch                        context.CancelFunc // stops the token watchers and the pruner
	prunerDone                       chan struct{}      // closed when the pruner has stopped
	mux                              *http.ServeMux
}

// New builds a Receiver on st and starts its writer and token watcher. Call Close to stop them;
// st stays open (the caller owns it).
func New(cfg Config, st store.Store) (*Receiver, error) {
	cfg.setDefaults()
	if cfg.TokenFile == "" {
		return nil, errors.New("a token file is required (the token Intuned sends)")
	}
	if len(cfg.IngestPath) < 2 || cfg.IngestPath[0] != '/' || strings.ContainsAny(cfg.IngestPath, "{} ") {
		return nil, fmt.Errorf("ingest path %q must start with / and not be the root", cfg.IngestPath)
	}
	switch cfg.IngestPath {
	case "/healthz", "/readyz", "/metrics", "/v1/deliveries", "/v1/backup":
		return nil, fmt.Errorf("ingest path %q is taken by another endpoint", cfg.IngestPath)
	}
	if err := cfg.Retention.check(st); err != nil {
		return nil, err
	}
	r := &Receiver{cfg: cfg, st: st, log: cfg.Logger, m: newMetrics(st), storeErrs: newLimitedLog(cfg.Logger, storeErrorLogEvery),
		readers: make(chan struct{}, maxReaders), prunerDone: make(chan struct{})}
	// The receiver's own load, a scaling signal that needs no CPU sampling
	// (docs/autoscaling.md compares it with CPU).
	r.m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "receiver_deliveries_in_flight", Help: "Deliveries being handled now (read, queued or committing); new ones get 429 above --max-in-flight.",
	}, func() float64 { return float64(r.inFlight.Load()) }))
	retention := newRetentionMetrics(r.m.reg, st)
	r.ingestRefusals = refusals{r: r, rejected: r.m.rejected, what: "delivery"}
	r.backfillRefusals = refusals{r: r, rejected: r.m.backfillRejected, what: "backfill"}
	var err error
	if r.ingestAuth, err = newTokens(cfg.TokenHeader, cfg.TokenFile, cfg.PreviousTokenFile, r.log); err != nil {
		return nil, fmt.Errorf("read ingest token: %w", err)
	}
	if cfg.ReadTokenFile != "" {
		if r.readAuth, err = newTokens("Authorization", cfg.ReadTokenFile, "", r.log); err != nil {
			return nil, fmt.Errorf("read API token: %w", err)
		}
	}
	if cfg.KubeAuth != nil {
		if r.kubeAuth, err = newKubeAuth(cfg.KubeAuth); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.stopWatch = cancel
	go r.ingestAuth.watch(ctx, cfg.TokenReload, r.log)
	if r.readAuth != nil {
		go r.readAuth.watch(ctx, cfg.TokenReload, r.log)
	}
	if cfg.Retention.enabled() {
		p := &pruner{cfg: cfg.Retention, st: st, log: r.log, errs: r.storeErrs, m: retention, batch: min(minPruneBatch, cfg.Retention.Batch)}
		go func() { defer close(r.prunerDone); p.run(ctx) }()
	} else {
		close(r.prunerDone)
	}
	// The commit timeout outlives the request deadline so a slow commit still lands (the sender
	// retries and gets "duplicate") instead of being abandoned half-way.
	r.w = newWriter(st, cfg.MaxInFlight, cfg.BatchSize, cfg.Deadline, 4*cfg.Deadline, r.m, r.log, r.storeErrs)

	r.mux = http.NewServeMux()
	r.mux.HandleFunc(cfg.IngestPath, r.ingest)
	r.mux.HandleFunc("/v1/deliveries", r.listDeliveries)
	r.mux.HandleFunc("/v1/deliveries/{runId}", r.getDelivery)
	r.mux.HandleFunc("/v1/jobruns", r.listJobRuns)
	r.mux.HandleFunc("/v1/jobruns/{jobRunId}/summary", r.jobRunSummary)
	r.mux.HandleFunc("/v1/jobruns/{jobRunId}/backfill", r.backfill)
	r.mux.HandleFunc("/v1/backup", r.backupEndpoint)
	r.mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	r.mux.HandleFunc("/readyz", r.readyz)
	r.mux.Handle("/metrics", promhttp.HandlerFor(r.m.reg, promhttp.HandlerOpts{}))
	r.mux.HandleFunc("/", func(w http.ResponseWriter, req *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no such endpoint: "+req.URL.Path)
	})
	return r, nil
}

// Handler returns the HTTP handler for all endpoints.
func (r *Receiver) Handler() http.Handler { return r.mux }

// Drain marks the receiver not ready (so /readyz fails and load balancers move on) before shutdown.
func (r *Receiver) Drain() { r.draining.Store(true) }

// Close commits every queued delivery and stops background work. Call it after the HTTP server has
// stopped (http.Server.Shutdown) so no new delivery arrives.
func (r *Receiver) Close() {
	r.draining.Store(true)
	r.w.close()
	r.stopWatch()
	<-r.prunerDone // the caller closes the store next
}

// readyz reports whether this receiver can take deliveries now: not while shutting down, not
// while the store is unreachable or cannot write (SQLite: its volume is full), and not for
// RetryAfter after a commit failed. The Service then stops sending here and Intuned retries
// later; readiness comes back by itself when the store recovers.
func (r *Receiver) readyz(w http.ResponseWriter, req *http.Request) {
	if r.draining.Load() {
		writeError(w, http.StatusServiceUnavailable, "shutting_down", "receiver is shutting down")
		return
	}
	ctx, cancel := context.WithTimeout(req.Context(), 2*time.Second)
	defer cancel()
	if err := r.st.Ping(ctx); err != nil {
		r.storeErrs.Error("readiness: store unreachable", "err", err)
		writeError(w, http.StatusServiceUnavailable, "store_unavailable", "store is not reachable")
		return
	}
	if wc, ok := r.st.(store.WriteChecker); ok {
		if err := wc.CheckWritable(ctx); err != nil {
			r.storeErrs.Error("readiness: store cannot write", "err", err)
			code := "store_unwritable"
			if errors.Is(err, store.ErrFull) {
				code = "store_full"
			}
			writeError(w, http.StatusServiceUnavailable, code, "store cannot write now: "+err.Error())
			return
		}
	}
	if last := r.w.lastFailure.Load(); last != 0 && time.Since(time.Unix(0, last)) < r.cfg.RetryAfter {
		writeError(w, http.StatusServiceUnavailable, "store_unwritable", "a commit to the store failed moments ago")
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	var b errorBody
	b.Error.Code, b.Error.Message = code, msg
	writeJSON(w, status, b)
}

// jsonContentType is the Content-Type header value of every JSON answer, shared to save an
// allocation per response (net/http only reads it).
var jsonContentType = []string{"application/json"}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header()["Content-Type"] = jsonContentType
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v) //nolint:errcheck // the client may be gone; nothing to do
}

func (r *Receiver) retryLater(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Retry-After", strconv.Itoa(int((r.cfg.RetryAfter+time.Second-1)/time.Second)))
	writeError(w, status, code, msg)
}
