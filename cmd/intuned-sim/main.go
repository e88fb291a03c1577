// Command intuned-sim runs a local, in-memory Intuned API: jobs, job runs,
// schedules and webhook sink delivery with Intuned's retry timing, rate
// limits and injectable faults. Point an Intuned client (or the operator) at
// the base URL it prints. See README.md next to this file.
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
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/intuned-operator/intuned-operator/internal/intunedsim"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "intuned-sim:", err)
		os.Exit(2)
	}
}

// config holds every flag; each also reads INTUNED_SIM_<NAME> from the env.
type config struct {
	addr, workspace, apiKey, adminToken, logLevel string
	projects                                      string
	timeScale, failureShare, errorRate, dropRate  float64
	s3FailRate                                    float64
	rateLimit, products, latencyMS, dupStatus     int
	seed                                          uint64
	runDuration, resultsURLLifetime               time.Duration
	fakeClock, omitPayload                        bool
	normalise                                     []intunedsim.NormaliseRule
	dateFormat                                    string
}

func dateFormatNames() []string {
	var out []string
	for k := range intunedsim.DateFormats {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// run parses args, serves until ctx ends, then shuts down gracefully.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c config
	fs := flag.NewFlagSet("intuned-sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `intuned-sim — a local, in-memory Intuned REST API for tests and demos.

Serves Intuned's Jobs/JobRuns API under /api/v1/workspace/{workspaceId}/projects/{project}/...
(x-api-key auth, 20 requests/min per path, validation and error bodies as Intuned's), runs
triggered and scheduled JobRuns with a built-in catalogue (api "list" extends the run with one
"details" payload per product) and POSTs each Run's result to the job's webhook sink, retrying
failures on Intuned's schedule (10s doubling to 2m, for 1h). Admin API under /_sim/.

Models: the 11 Jobs/JobRuns operations of Intuned's SDK v0.5.2 with its wire keys
(auth_session, created_at, projectId, ...), request validation as the SDK's request
schemas (integers, upper-case day/month names, "*" only as a whole calendar field),
answers as its response schemas (keys they lack are dropped: webhook retry/timeout,
a calendar step without end), Jobs defined in code (origin CODE: update and delete
refused, pause/resume/trigger allowed; mark one with POST /_sim/drift action "code"),
every JobRun status/reason/error via POST /_sim/jobruns/{id}/state, and servers that
normalise (--normalise), use other date formats (--date-format) or omit the Get Job
payload (--omit-detail-payload).
Does not model: the Run API (run/start, run/{id}/result), AuthSessions (auth sessions
are stored on Jobs but never created, validated or used), projects and deployments,
S3 (deliveries are simulated, never sent), billing/credits, Intuned's real error
messages and the status of refusals Intuned does not document (duplicate id: 400 or
409; a Job defined in code: 400).

Usage: intuned-sim [flags]

Every flag can also be set with an environment variable INTUNED_SIM_<FLAG> (upper case,
dashes as underscores), e.g. INTUNED_SIM_API_KEY. Flags win over the environment.

Flags:
`)
		fs.PrintDefaults()
		fmt.Fprint(stderr, `
Example:
  intuned-sim --addr 127.0.0.1:8089 --time-scale 60
  curl -H 'x-api-key: sim-api-key' http://127.0.0.1:8089/api/v1/workspace/`+intunedsim.DefaultWorkspaceID+`/projects/demo/jobs
`)
	}
	fs.StringVar(&c.addr, "addr", "127.0.0.1:8089", "listen address (host:port; port 0 picks a free one)")
	fs.StringVar(&c.workspace, "workspace-id", intunedsim.DefaultWorkspaceID, "accepted workspace id")
	fs.StringVar(&c.apiKey, "api-key", intunedsim.DefaultAPIKey, "accepted x-api-key (never logged)")
	fs.StringVar(&c.projects, "projects", "", "comma-separated project names that exist (empty: every name exists)")
	fs.Float64Var(&c.timeScale, "time-scale", 1, "simulated seconds per real second (60: one simulated minute per second) for schedules, run durations and delivery retries")
	fs.BoolVar(&c.fakeClock, "fake-clock", false, "freeze simulated time; move it only with POST /_sim/clock/advance")
	fs.IntVar(&c.rateLimit, "rate-limit", intunedsim.DefaultRateLimit, "requests per minute per URI path before 429 (0: off)")
	fs.IntVar(&c.dupStatus, "duplicate-status", 400, "status for creating a job id that exists: 400 or 409")
	fs.IntVar(&c.products, "products", 5, "products returned by the catalogue's list api")
	fs.Float64Var(&c.failureShare, "failure-share", 0, "share (0..1) of details Runs that fail")
	fs.DurationVar(&c.runDuration, "run-duration", 2*time.Second, "simulated duration of each API Run")
	fs.DurationVar(&c.resultsURLLifetime, "results-url-lifetime", intunedsim.DefaultResultsURLLifetime, "simulated lifetime of the presigned results URL in Get Job Run answers (Intuned's is undocumented; change at run time with POST /_sim/settings)")
	fs.Uint64Var(&c.seed, "seed", 1, "seed for ids, failing products and fault dice (0: random)")
	fs.Float64Var(&c.errorRate, "fault-error-rate", 0, "share (0..1) of API requests answered with 500")
	fs.IntVar(&c.latencyMS, "fault-latency-ms", 0, "latency added to every API request (real milliseconds)")
	fs.Float64Var(&c.dropRate, "fault-drop-rate", 0, "share (0..1) of API requests whose connection is dropped")
	fs.Float64Var(&c.s3FailRate, "s3-fail-rate", 0, "share (0..1) of simulated S3 sink deliveries that fail")
	fs.StringVar(&c.adminToken, "admin-token", "", "if set, /_sim/ requires Authorization: Bearer <token>")
	fs.StringVar(&c.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.BoolVar(&c.omitPayload, "omit-detail-payload", false, "leave payload out of Get Job answers (optional in the SDK's schema; Get Jobs keeps it)")
	fs.StringVar(&c.dateFormat, "date-format", "iso", "format of the timestamps the SDK types as plain strings: "+strings.Join(dateFormatNames(), ", ")+" (iso is JavaScript's toISOString)")
	fs.Func("normalise", "rewrite a field of every Job written, as a server that normalises would: path=json (e.g. configuration.requestTimeout=300) or path= to strip it (e.g. sink.headers=); repeatable", func(v string) error {
		r, err := intunedsim.ParseNormaliseRule(v)
		if err == nil {
			c.normalise = append(c.normalise, r)
		}
		return err
	})

	if err := applyEnv(fs); err != nil {
		return err
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q (see --help)", fs.Args())
	}

	var level slog.Level
	if err := level.UnmarshalText([]byte(c.logLevel)); err != nil {
		return fmt.Errorf("--log-level: %v", err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	opts := intunedsim.Options{
		Workspaces:            map[string]string{c.workspace: c.apiKey},
		TimeScale:             c.timeScale,
		RateLimit:             c.rateLimit,
		DuplicateCreateStatus: c.dupStatus,
		Catalogue: intunedsim.CatalogueOptions{
			Products: c.products, FailureShare: c.failureShare, RunDuration: c.runDuration,
		},
		Seed:               c.seed,
		Normalise:          c.normalise,
		DateFormat:         c.dateFormat,
		OmitDetailPayload:  c.omitPayload,
		S3FailRate:         c.s3FailRate,
		ResultsURLLifetime: c.resultsURLLifetime,
		AdminToken:         c.adminToken,
		Logger:             log,
	}
	if c.products == 0 {
		opts.Catalogue.Products = -1 // explicit zero products
	}
	if c.rateLimit <= 0 {
		opts.RateLimit = intunedsim.RateLimitOff
	}
	if c.projects != "" {
		for _, p := range strings.Split(c.projects, ",") {
			if p = strings.TrimSpace(p); p != "" {
				opts.Projects = append(opts.Projects, p)
			}
		}
	}
	if c.fakeClock {
		opts.Clock = intunedsim.NewFakeClock(time.Now().UTC().Truncate(time.Second))
	}
	if c.errorRate > 0 || c.latencyMS > 0 || c.dropRate > 0 {
		opts.Faults = []intunedsim.FaultRule{{Match: "*", ErrorRate: c.errorRate, LatencyMS: c.latencyMS, DropRate: c.dropRate}}
	}
	if c.dupStatus != 400 && c.dupStatus != 409 {
		return fmt.Errorf("--duplicate-status must be 400 or 409")
	}

	srv, err := intunedsim.New(opts)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", c.addr)
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}

	base := "http://" + ln.Addr().String()
	fmt.Fprintf(stdout, "intuned-sim listening on %s\n", base)
	fmt.Fprintf(stdout, "  Intuned base URL: %s%s\n", base, intunedsim.APIPrefix)
	fmt.Fprintf(stdout, "  workspace id:     %s\n", c.workspace)
	fmt.Fprintf(stdout, "  api key:          (from --api-key / INTUNED_SIM_API_KEY)\n")
	fmt.Fprintf(stdout, "  admin API:        %s/_sim/ (deliveries, calls, faults, drift, clock/advance, reset)\n", base)
	log.Info("intuned-sim started", "addr", ln.Addr().String(), "workspace", c.workspace,
		"timeScale", c.timeScale, "rateLimit", c.rateLimit, "products", c.products, "failureShare", c.failureShare)

	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = hs.Shutdown(sctx)
	return srv.Close()
}

// applyEnv sets flags from INTUNED_SIM_* variables before parsing.
func applyEnv(fs *flag.FlagSet) error {
	var firstErr error
	fs.VisitAll(func(f *flag.Flag) {
		name := "INTUNED_SIM_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(name); ok {
			if err := fs.Set(f.Name, v); err != nil && firstErr == nil {
				firstErr = fmt.Errorf("%s=%q: %v", name, v, err)
			}
		}
	})
	return firstErr
}
