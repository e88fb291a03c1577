// Command receiver is the WebhookReceiver workload: it accepts Intuned webhook-sink deliveries,
// stores them durably in SQLite or PostgreSQL and serves them back through a read API.
// Every flag can also be set through an environment variable (RECEIVER_ + the flag name in upper
// snake case, e.g. --token-file = RECEIVER_TOKEN_FILE); a flag on the command line wins.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/intuned-operator/intuned-operator/internal/receiver"
	"github.com/intuned-operator/intuned-operator/internal/receiver/store"
	"github.com/intuned-operator/intuned-operator/internal/receiver/store/postgres"
	"github.com/intuned-operator/intuned-operator/internal/receiver/store/sqlite"
)

const usageHeader = `receiver - durable, de-duplicating endpoint for Intuned webhook-sink deliveries.

Intuned POSTs one JSON body per Run to --ingest-path with "Authorization: Bearer <token>".
The receiver answers 2xx only after the body is committed to the store (SQLite file or
PostgreSQL), stores each apiInfo.runId once, and answers 429/503 with Retry-After when it
cannot store right now, so Intuned's retries bring the delivery back.

Endpoints:
  POST <ingest-path>          a delivery (201 stored, 200 duplicate, 4xx invalid, 429/503 retry)
  GET  /v1/deliveries         stored deliveries as NDJSON (read token or, with
                              --kubernetes-read-auth, a Kubernetes token allowed by RBAC)
  GET  /v1/deliveries/{runId} one delivery's raw body
  GET  /v1/backup             SQLite: a consistent copy of the store, taken while ingesting (read token)
  PUT  /v1/backup             SQLite: restore such a copy into an empty store (ingest token)
  GET  /healthz, /readyz, /metrics

Examples:
  receiver --token-file /etc/receiver/token --sqlite-path /data/receiver.db
  RECEIVER_POSTGRES_DSN=postgres://user:pass@db:5432/intuned receiver --store postgres --token-file ./token

Flags (environment variable in brackets):
`

type options struct {
	listenAddr, ingestPath, tokenHeader                 string
	tokenFile, previousTokenFile, readTokenFile         string
	storeKind, sqlitePath, postgresDSN, postgresDSNFile string
	maxBodyBytes, maxInFlightBytes, sqliteMinFreeBytes  int64
	deadline, tokenReload, retryAfter                   time.Duration
	shutdownDelay, shutdownGrace                        time.Duration
	batchSize, maxInFlight                              int
	logLevel, debugAddr                                 string
	kubeReadAuth, kubeconfig                            string
	kubeAuthCacheTTL                                    time.Duration
	retention                                           receiver.Retention
}

func envName(flagName string) string {
	return "RECEIVER_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("receiver", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.listenAddr, "listen-addr", ":8080", "address to serve HTTP on (all endpoints)")
	fs.StringVar(&o.ingestPath, "ingest-path", "/webhooks/intuned", "URL path Intuned POSTs deliveries to")
	fs.StringVar(&o.tokenFile, "token-file", "", "file holding the ingest token (required; re-read every --token-reload-interval, so a mounted Secret can rotate it)")
	fs.StringVar(&o.previousTokenFile, "previous-token-file", "", "file holding the previous ingest token, still accepted during a rotation (optional; a missing file means none)")
	fs.StringVar(&o.tokenHeader, "token-header", "Authorization", "request header carrying the ingest token (value \"Bearer <token>\")")
	fs.StringVar(&o.readTokenFile, "read-token-file", "", "file holding the static token for the read API /v1/deliveries (without it and without --kubernetes-read-auth the read API is disabled)")
	fs.StringVar(&o.kubeReadAuth, "kubernetes-read-auth", "", "NAMESPACE/NAME of the WebhookReceiver this receiver serves: the read API then also accepts Kubernetes bearer tokens, checked with TokenReview, and allows a user the API server lets get webhookreceivers/data of that object (SubjectAccessReview); needs --kubeconfig or the Pod's ServiceAccount token, allowed to create tokenreviews and subjectaccessreviews (empty: off)")
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig for --kubernetes-read-auth (empty: the in-cluster config of the Pod's ServiceAccount)")
	fs.DurationVar(&o.kubeAuthCacheTTL, "kubernetes-read-auth-cache-ttl", receiver.DefaultKubeAuthCacheTTL, "how long --kubernetes-read-auth reuses an authenticated token and an allowed read (a refusal: at most 10s), so a revoked grant stops working within this time")
	fs.StringVar(&o.storeKind, "store", "sqlite", "where deliveries are stored: sqlite (one replica) or postgres (any number of replicas)")
	fs.StringVar(&o.sqlitePath, "sqlite-path", "receiver.db", "SQLite database file (--store sqlite); put it on a persistent volume")
	fs.Int64Var(&o.sqliteMinFreeBytes, "sqlite-min-free-bytes", sqlite.DefaultMinFreeBytes, "free space kept on the SQLite volume: below this (plus the WAL's size) deliveries get 503 store_full and /readyz fails, so a checkpoint always has room and the store recovers by itself once space returns")
	fs.StringVar(&o.postgresDSNFile, "postgres-dsn-file", "", "file holding the PostgreSQL DSN (--store postgres); preferred, e.g. a mounted Secret")
	fs.StringVar(&o.postgresDSN, "postgres-dsn", "", "PostgreSQL DSN (--store postgres); prefer the env var or --postgres-dsn-file so the password is not on the command line")
	fs.Int64Var(&o.maxBodyBytes, "max-body-bytes", 10<<20, "largest accepted body in bytes; larger ones get 413")
	fs.DurationVar(&o.deadline, "deadline", 2500*time.Millisecond, "time from receiving a body to committing it before the sender gets 503 + Retry-After")
	fs.IntVar(&o.batchSize, "batch-size", 256, "most deliveries committed in one transaction (group commit)")
	fs.IntVar(&o.maxInFlight, "max-in-flight", 1024, "deliveries being processed at once before new ones get 429 + Retry-After")
	fs.Int64Var(&o.maxInFlightBytes, "max-in-flight-bytes", 64<<20, "body bytes held in memory by in-flight deliveries before new ones get 429 + Retry-After (bounds memory)")
	fs.DurationVar(&o.retryAfter, "retry-after", 5*time.Second, "Retry-After sent with 429 and 503 answers")
	fs.DurationVar(&o.tokenReload, "token-reload-interval", 2*time.Second, "how often the token files are re-read")
	fs.DurationVar(&o.shutdownDelay, "shutdown-delay", defaultShutdownDelay, "on SIGTERM, time to go on serving while not ready, so the Service and the Ingress controller stop routing here before the listener closes (a Pod deleted while they still route to it would make them answer 502)")
	fs.DurationVar(&o.shutdownGrace, "shutdown-grace", 20*time.Second, "after --shutdown-delay, time to finish in-flight deliveries before exiting (keep --shutdown-delay plus this below the Pod's terminationGracePeriodSeconds)")
	fs.StringVar(&o.debugAddr, "debug-addr", "", "address serving Go's /debug/pprof profiles (empty: off; keep it on loopback, it has no auth)")
	fs.DurationVar(&o.retention.MaxAge, "retention-max-age", 0, "prune deliveries and quarantined bodies received longer ago than this, e.g. 720h (0: keep everything; at least 2h, as Intuned retries a delivery for 1h after its Run)")
	fs.Int64Var(&o.retention.MaxBytes, "retention-max-bytes", 0, "prune the oldest deliveries while the SQLite data takes more than this many bytes, never one received in the last 2h (0: no bound; --store sqlite only)")
	fs.DurationVar(&o.retention.Interval, "retention-interval", time.Minute, "time between two pruning rounds")
	fs.IntVar(&o.retention.Batch, "retention-batch", 1000, "most rows one pruning transaction deletes from each table")
	fs.DurationVar(&o.retention.BatchTime, "retention-batch-time", 10*time.Millisecond, "how long one pruning transaction should hold the store's writer: the batch halves while one takes longer and doubles while one takes less than half, up to --retention-batch")
	fs.DurationVar(&o.retention.Pause, "retention-pause", 50*time.Millisecond, "pause between two pruning batches, so ingest commits get the store in between")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error (JSON logs on stderr; tokens and DSNs are never logged)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageHeader)
		fs.VisitAll(func(f *flag.Flag) {
			fmt.Fprintf(fs.Output(), "  --%s [%s]\n    \t%s (default %q)\n", f.Name, envName(f.Name), f.Usage, f.DefValue)
		})
	}
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if v, ok := os.LookupEnv(envName(f.Name)); ok && envErr == nil {
			if err := fs.Set(f.Name, v); err != nil {
				envErr = fmt.Errorf("environment variable %s: %w", envName(f.Name), err)
			}
		}
	})
	if envErr != nil {
		return nil, envErr
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %v (see --help)", fs.Args())
	}
	if o.tokenFile == "" {
		return nil, errors.New("--token-file is required (see --help)")
	}
	if o.kubeReadAuth != "" {
		if ns, name, ok := strings.Cut(o.kubeReadAuth, "/"); !ok || ns == "" || name == "" || strings.Contains(name, "/") {
			return nil, fmt.Errorf("--kubernetes-read-auth must be NAMESPACE/NAME, not %q", o.kubeReadAuth)
		}
	}
	return o, nil
}

func openStore(ctx context.Context, o *options) (store.Store, error) {
	switch o.storeKind {
	case "sqlite":
		return sqlite.OpenWith(ctx, o.sqlitePath, sqlite.Options{MinFreeBytes: o.sqliteMinFreeBytes})
	case "postgres":
		dsn := o.postgresDSN
		if o.postgresDSNFile != "" {
			b, err := os.ReadFile(o.postgresDSNFile)
			if err != nil {
				return nil, fmt.Errorf("read --postgres-dsn-file: %w", err)
			}
			dsn = strings.TrimSpace(string(b))
		}
		if dsn == "" {
			return nil, errors.New("--store postgres needs a DSN: --postgres-dsn-file, RECEIVER_POSTGRES_DSN or --postgres-dsn")
		}
		ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		return postgres.Open(ctx, dsn)
	default:
		return nil, fmt.Errorf("--store must be sqlite or postgres, not %q", o.storeKind)
	}
}

// kubeReadAuth is the receiver's Kubernetes read auth from the flags, or nil when off.
func kubeReadAuth(o *options) (*receiver.KubeAuth, error) {
	if o.kubeReadAuth == "" {
		return nil, nil
	}
	ns, name, _ := strings.Cut(o.kubeReadAuth, "/")
	var cfg *rest.Config
	var err error
	if o.kubeconfig != "" {
		cfg, err = clientcmd.BuildConfigFromFlags("", o.kubeconfig)
	} else {
		// Reads the ServiceAccount token file again as the kubelet renews it.
		cfg, err = rest.InClusterConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("--kubernetes-read-auth: %w", err)
	}
	return &receiver.KubeAuth{Config: cfg, Namespace: ns, Name: name, CacheTTL: o.kubeAuthCacheTTL}, nil
}

// defaultShutdownDelay covers the time a deleted Pod stays routed to: on the
// test node (docs/autoscaling.md) Traefik sent its last delivery to a
// terminating receiver 1.9 s after its SIGTERM, at most (Traefik applies
// EndpointSlice changes at most every 2 s).
const defaultShutdownDelay = 5 * time.Second

// ingestClock counts deliveries and keeps the time of the last one.
type ingestClock struct {
	count atomic.Int64
	last  atomic.Int64 // unix nanoseconds
}

func (c *ingestClock) wrap(ingestPath string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == ingestPath {
			c.count.Add(1)
			c.last.Store(time.Now().UnixNano())
		}
		h.ServeHTTP(w, r)
	})
}

func main() {
	o, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "receiver:", err)
		os.Exit(2)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		fmt.Fprintln(os.Stderr, "receiver: --log-level:", err)
		os.Exit(2)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	// The Kubernetes client libraries (--kubernetes-read-auth) log through klog: the same JSON.
	klog.SetSlogLogger(log)
	tuneGC(o.maxInFlightBytes, log)
	if err := run(o, log); err != nil {
		log.Error("receiver stopped", "err", err)
		os.Exit(1)
	}
}

func run(o *options, log *slog.Logger) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	st, err := openStore(ctx, o)
	if err != nil {
		return err
	}
	defer st.Close()
	kubeAuth, err := kubeReadAuth(o)
	if err != nil {
		return err
	}
	rcv, err := receiver.New(receiver.Config{
		IngestPath: o.ingestPath, TokenHeader: o.tokenHeader, TokenFile: o.tokenFile,
		PreviousTokenFile: o.previousTokenFile, ReadTokenFile: o.readTokenFile, TokenReload: o.tokenReload,
		MaxBodyBytes: o.maxBodyBytes, Deadline: o.deadline, BatchSize: o.batchSize,
		MaxInFlight: o.maxInFlight, MaxInFlightBytes: o.maxInFlightBytes, RetryAfter: o.retryAfter, Logger: log,
		Retention: o.retention, KubeAuth: kubeAuth,
	}, st)
	if err != nil {
		return err
	}
	defer rcv.Close()

	ln, err := net.Listen("tcp", o.listenAddr)
	if err != nil {
		return err
	}
	if o.debugAddr != "" {
		dl, err := net.Listen("tcp", o.debugAddr)
		if err != nil {
			return fmt.Errorf("--debug-addr: %w", err)
		}
		defer dl.Close()
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		go http.Serve(dl, mux) //nolint:errcheck // ends when dl closes
	}
	var ingest ingestClock
	srv := &http.Server{
		Handler:           ingest.wrap(o.ingestPath, rcv.Handler()),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	log.Info("receiver listening", "addr", ln.Addr().String(), "ingestPath", o.ingestPath, "store", o.storeKind,
		"readAPI", o.readTokenFile != "" || kubeAuth != nil, "kubernetesReadAuth", o.kubeReadAuth,
		"retentionMaxAge", o.retention.MaxAge.String(), "retentionMaxBytes", o.retention.MaxBytes)

	select {
	case err := <-serveErr:
		return err
	case <-ctx.Done():
	}
	// Not ready from now on, but still serving: the EndpointSlice drops this
	// Pod at once, and the Ingress controller and kube-proxy follow a moment
	// later; until they have, deliveries still arrive here.
	signalled, before := time.Now(), ingest.count.Load()
	rcv.Drain()
	// Each answer from now on closes its connection (idle ones close at
	// once): a client or proxy that keeps connections (Traefik, Intuned)
	// then opens its next one to wherever the Service routes now.
	srv.SetKeepAlivesEnabled(false)
	log.Info("shutting down: not ready, serving on while routing moves away", "delay", o.shutdownDelay.String())
	select {
	case <-time.After(o.shutdownDelay):
	case err := <-serveErr:
		return err
	}
	// How long routing took to move away, for sizing --shutdown-delay.
	attrs := []any{"deliveriesDuringDelay", ingest.count.Load() - before}
	if last := ingest.last.Load(); last > signalled.UnixNano() {
		attrs = append(attrs, "lastDeliveryAfterSignal", time.Duration(last-signalled.UnixNano()).String())
	}
	log.Info("shutting down: draining in-flight deliveries", append(attrs, "grace", o.shutdownGrace.String())...)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), o.shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		log.Warn("grace period over; closing remaining connections", "err", err)
		srv.Close()
	}
	rcv.Close() // commits whatever is still queued
	log.Info("receiver stopped cleanly")
	return nil
}
