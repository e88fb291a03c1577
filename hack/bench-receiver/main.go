// Command bench-receiver measures the receiver's ingest throughput and latency on this machine and
// prints a table (`make bench-receiver`). Three servers are compared under the same load:
//
//   - ceiling:  a bare net/http handler that reads the body and answers 200 (what HTTP alone costs)
//   - sqlite:   cmd/receiver with --store sqlite (WAL, synchronous=FULL)
//   - postgres: cmd/receiver with --store postgres on a throw-away local PostgreSQL (fsync on)
//
// Every server runs as its own child process, so its peak RSS (VmHWM) is its own. The load is
// 1 KiB sink bodies with unique runIds from -conns keep-alive connections. The measured time is
// split into -rounds slices that visit the servers in turn, so a noisy neighbour on a shared
// machine slows all cases alike and the ratios stay fair. It is a measurement, not a test.
//
// The store-size axis: a sqlite case named kind@rows (sqlite@1M, sqlite@10M, sqlite-base@1M) runs
// the same receiver on its own copy of a store pre-filled with that many realistic deliveries
// (stores.go: the guide's sink body, random runIds, many JobRuns), seeded once with the store's
// schema (sqlite.BulkLoad) and cached under -store-cache; +prune (or +pruneN, a batch of N) adds
// retention with a max age that puts the oldest -prune-share of them past it, so pruning deletes
// rows throughout the measurement. Such a receiver is stopped (SIGSTOP) outside its turns, so its
// pruning never runs in another case's slice. The table's "x empty" compares each with the case
// of the same receiver on an empty store in the same run.
//
// Two phases:
//
//   - saturation (closed loop): -conns connections, each sends its next request when the previous
//     one is answered. -load wrk (the default) drives it with wrk (Debian package wrk; a Lua script
//     gives every request a fresh runId), which costs the shared CPUs much less than -load go, the
//     Go HTTP client in this process.
//   - fixed rate (open loop): one phase per case in -rate-of (default ceiling,sqlite), where every
//     case gets the same offered rate, -rate-fraction (default 0.5) of that case's saturation rate
//     in this run (or -rate req/s). Requests leave on schedule whether or not earlier ones were
//     answered, and each latency counts from the scheduled send time, so a stall shows in the
//     percentiles (no coordinated omission).
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/intuned-operator/intuned-operator/internal/testutil/pgtest"
	"github.com/intuned-operator/intuned-operator/internal/testutil/proc"
	"github.com/intuned-operator/intuned-operator/internal/testutil/procstat"
)

func main() {
	duration := flag.Duration("duration", 6*time.Second, "measured load time per case (split across rounds)")
	rounds := flag.Int("rounds", 3, "how many times the cases take turns")
	warmup := flag.Duration("warmup", time.Second, "unmeasured load per case before the first round")
	conns := flag.Int("conns", 64, "concurrent keep-alive connections")
	bodySize := flag.Int("body-bytes", 1024, "size of each sink body")
	cases := flag.String("cases", "ceiling,sqlite,postgres", "comma-separated cases to run")
	load := flag.String("load", "wrk", "closed-loop load generator: wrk (needs the wrk binary) or go (this process)")
	wrkThreads := flag.Int("wrk-threads", 2, "wrk threads (-load wrk)")
	rateFraction := flag.Float64("rate-fraction", 0.5, "fixed-rate phases: offered rate as a fraction of a case's saturation rate (0 skips them)")
	rateOf := flag.String("rate-of", "ceiling,sqlite", "fixed-rate phases: comma-separated cases whose saturation rate (times -rate-fraction) sets the offered rate, one phase each")
	rate := flag.Float64("rate", 0, "fixed-rate phase: offered rate in req/s (one phase; overrides -rate-of)")
	fixedDuration := flag.Duration("fixed-duration", 6*time.Second, "fixed-rate phase: measured time per case (split across rounds)")
	randomRunIDs := flag.Bool("random-run-ids", false, "random runIds, as Intuned's are (each row then dirties a random leaf of the run_id index); the default is a counter per sender, which appends")
	baseReceiver := flag.String("base-receiver", "", "a receiver binary (e.g. built from main) for the cases sqlite-base and postgres-base: an A/B in one interleaved run")
	pprofCase := flag.String("cpuprofile-case", "", "write a CPU profile of this case's server (sqlite or postgres) during its first saturation round to -cpuprofile")
	pprofOut := flag.String("cpuprofile", "receiver-cpu.pprof", "where -cpuprofile-case writes the profile")
	storeCache := flag.String("store-cache", defaultStoreCache(), "where the pre-filled stores of @rows cases are kept between runs (keyed by schema version and seed parameters)")
	pruneShare := flag.Float64("prune-share", 0.5, "+prune cases: the share of the pre-filled deliveries (the oldest) that retention's max age puts past it")
	seedOnly := flag.Bool("seed-only", false, "only fill the -store-cache stores the @rows cases of -cases need, then exit")
	ingress := flag.Bool("ingress", false, "instead of local processes: the receiver (SQLite, through the operator) and the ceiling as Pods on the real test cluster, each via Traefik's Ingress and directly on its Pod (needs root; brings the cluster up and down; make bench-receiver-ingress)")
	fixedClient := flag.Bool("fixed-client", false, "internal (-ingress): run one fixed-rate slice described on stdin, report on stdout")
	serveCeiling := flag.String("serve-ceiling", "", "internal: serve the bare ceiling handler on this address")
	flag.Parse()
	if *fixedClient {
		if err := runFixedClient(); err != nil {
			fmt.Fprintln(os.Stderr, "bench-receiver -fixed-client:", err)
			os.Exit(1)
		}
		return
	}
	if *serveCeiling != "" {
		runCeilingServer(*serveCeiling)
		return
	}
	if *load != "wrk" && *load != "go" {
		fmt.Fprintln(os.Stderr, "bench-receiver: -load must be wrk or go")
		os.Exit(2)
	}
	b := &bench{conns: *conns, bodySize: *bodySize, loadGen: *load, wrkThreads: *wrkThreads,
		rateFraction: *rateFraction, rateOf: strings.Split(*rateOf, ","), rate: *rate, fixedDuration: *fixedDuration, pprofCase: *pprofCase, pprofOut: *pprofOut, baseReceiver: *baseReceiver,
		randomRunIDs: *randomRunIDs, storeCache: *storeCache, pruneShare: *pruneShare}
	run := b.run
	if *ingress {
		run = func(_ []string, duration time.Duration, rounds int, warmup time.Duration) error {
			return b.runIngress(duration, rounds, warmup)
		}
	}
	if *seedOnly {
		run = func(cases []string, _ time.Duration, _ int, _ time.Duration) error { return b.seedOnly(cases) }
	}
	if err := run(strings.Split(*cases, ","), *duration, *rounds, *warmup); err != nil {
		fmt.Fprintln(os.Stderr, "bench-receiver:", err)
		os.Exit(1)
	}
}

// runCeilingServer is the baseline: read the body, answer 200, nothing else.
func runCeilingServer(addr string) {
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) //nolint:errcheck
		w.WriteHeader(http.StatusOK)
	})
	fmt.Fprintln(os.Stderr, http.ListenAndServe(addr, nil))
	os.Exit(1)
}

type bench struct {
	conns, bodySize     int
	loadGen             string // "wrk" or "go"
	wrkThreads          int
	rateFraction, rate  float64
	rateOf              []string
	fixedDuration       time.Duration
	pprofCase, pprofOut string
	baseReceiver        string
	randomRunIDs        bool
	storeCache          string
	pruneShare          float64
	tmp                 string
	target              target                         // fixed-rate requests' path, token and Host (-ingress)
	wrkCommand          func(args ...string) *exec.Cmd // how wrk runs (-ingress: in the cluster's network namespace); nil: here
	pg                  *pgtest.Server
}

// server is one case: a child process and what was measured against it.
type server struct {
	name      string
	spec      caseSpec
	seed      seedMeta // the pre-filled store (@rows cases)
	maxAge    time.Duration
	proc      *proc.Process
	base      string          // http://host:port
	debug     string          // the receiver's --debug-addr (pprof) as http://host:port
	lat       []time.Duration // 2xx latencies (-load go)
	wrk       []wrkResult     // one per round (-load wrk)
	errors    int
	seconds   float64
	clientCPU time.Duration // CPU time of the load generator (wrk only; the go client shares this process)
	rssBytes  int64
	before    map[string]float64 // metrics at the start of the measurement
	cpu       time.Duration      // CPU time (user+system) the server used while measured
	batch     float64            // mean deliveries per commit (receiver /metrics)
	commitMs  float64            // mean commit time
	fixed     []fixedResult      // one per fixed-rate phase
	pruned    float64            // deliveries retention deleted from the warm-up's end to the last round's
}

const prunedMetric = `receiver_retention_pruned_total{kind="deliveries"}`

// phase is one fixed-rate (open-loop) phase.
type phase struct {
	name string
	rate float64
}

// answered is the number of 2xx answers in the saturation phase.
func (s *server) answered() int {
	n := len(s.lat)
	for _, w := range s.wrk {
		n += w.requests - w.errors
	}
	return n
}

func (b *bench) run(cases []string, duration time.Duration, rounds int, warmup time.Duration) error {
	var err error
	if b.tmp, err = os.MkdirTemp("", "bench-receiver-"); err != nil {
		return err
	}
	defer os.RemoveAll(b.tmp)
	var servers []*server
	defer func() {
		for _, s := range servers {
			s.stop()
		}
		if b.pg != nil {
			b.pg.Stop() //nolint:errcheck
		}
	}()
	specs := make([]caseSpec, len(cases))
	for i, c := range cases {
		if specs[i], err = parseCase(c); err != nil {
			return err
		}
	}
	if err := b.checkDisk(specs, true); err != nil {
		return err
	}
	for i, c := range cases {
		s, err := b.start(c, specs[i])
		if err != nil {
			return fmt.Errorf("case %s: %w", c, err)
		}
		servers = append(servers, s)
	}
	if b.loadGen == "wrk" {
		if _, err := exec.LookPath("wrk"); err != nil {
			return errors.New("wrk not found (apt-get install wrk, or -load go)")
		}
		if err := os.WriteFile(filepath.Join(b.tmp, "ingest.lua"), []byte(wrkScript(b.bodySize, b.randomRunIDs)), 0o600); err != nil {
			return err
		}
	}
	for _, s := range servers {
		fmt.Fprintf(os.Stderr, "warming up %s ...\n", s.name)
		if err := s.turn(func() error {
			_, err := b.saturate(s, s.name+"-warm", warmup)
			s.before = scrape(s.base + "/metrics")
			return err
		}); err != nil {
			return err
		}
	}
	slice := duration / time.Duration(rounds)
	for r := range rounds {
		for _, s := range servers {
			fmt.Fprintf(os.Stderr, "round %d/%d: %s for %s ...\n", r+1, rounds, s.name, slice)
			var profile func() error
			if r == 0 && s.name == b.pprofCase {
				profile = startProfile(s.debug, slice, b.pprofOut)
			}
			var w wrkResult
			if err := s.turn(func() error {
				cpu0 := procstat.CPUTime(s.proc.Pid())
				var err error
				w, err = b.saturate(s, fmt.Sprintf("%s-r%d", s.name, r), slice)
				s.cpu += procstat.CPUTime(s.proc.Pid()) - cpu0
				return err
			}); err != nil {
				return err
			}
			if profile != nil {
				if err := profile(); err != nil {
					return fmt.Errorf("cpu profile: %w", err)
				}
				fmt.Fprintf(os.Stderr, "wrote %s (go tool pprof -top %s %s)\n", b.pprofOut, filepath.Join(b.tmp, "receiver"), b.pprofOut)
			}
			s.seconds += w.seconds
			s.clientCPU += w.clientCPU
		}
	}
	for _, s := range servers {
		s.rssBytes, _ = procstat.PeakRSS(s.proc.Pid()) // 0 if unreadable
		var after map[string]float64
		s.resume()
		after = scrape(s.base + "/metrics")
		s.pause()
		s.pruned = after[prunedMetric] - s.before[prunedMetric]
		if n := after["receiver_commit_batch_size_count"] - s.before["receiver_commit_batch_size_count"]; n > 0 {
			s.batch = (after["receiver_commit_batch_size_sum"] - s.before["receiver_commit_batch_size_sum"]) / n
			s.commitMs = 1000 * (after["receiver_commit_duration_seconds_sum"] - s.before["receiver_commit_duration_seconds_sum"]) / n
		}
	}
	var phases []phase
	if b.rate > 0 {
		phases = append(phases, phase{name: "fixed", rate: b.rate})
	} else if b.rateFraction > 0 {
		for _, of := range b.rateOf {
			for _, s := range servers {
				if s.name == of && s.answered() > 0 {
					phases = append(phases, phase{name: fmt.Sprintf("%.2fx the %s's saturation rate", b.rateFraction, of),
						rate: b.rateFraction * float64(s.answered()) / s.seconds})
				}
			}
		}
	}
	for i, ph := range phases {
		fslice := b.fixedDuration / time.Duration(rounds)
		for _, s := range servers {
			s.fixed = append(s.fixed, fixedResult{})
		}
		for r := range rounds {
			for _, s := range servers {
				fmt.Fprintf(os.Stderr, "fixed rate %.0f req/s, round %d/%d: %s for %s ...\n", ph.rate, r+1, rounds, s.name, fslice)
				f := &s.fixed[i]
				s.turn(func() error { //nolint:errcheck // never fails
					var before map[string]float64
					if s.spec.prune {
						before = scrape(s.base + "/metrics")
					}
					cpu0 := procstat.CPUTime(s.proc.Pid())
					b.fixedRate(s.base, f, fmt.Sprintf("%s-f%d-%d", s.name, i, r), ph.rate, fslice)
					f.cpu += procstat.CPUTime(s.proc.Pid()) - cpu0
					if s.spec.prune {
						f.pruned += scrape(s.base + "/metrics")[prunedMetric] - before[prunedMetric]
					}
					return nil
				})
			}
		}
	}
	b.print(servers, duration, rounds, phases)
	return nil
}

// saturate runs the closed-loop load against s for d with the chosen generator and records it in s.
func (b *bench) saturate(s *server, prefix string, d time.Duration) (wrkResult, error) {
	if b.loadGen == "go" {
		lat, errs, secs := b.load(s.base, prefix, d)
		if !strings.HasSuffix(prefix, "-warm") {
			s.lat = append(s.lat, lat...)
			s.errors += errs
		}
		return wrkResult{seconds: secs}, nil
	}
	w, err := b.runWrk(s.base, b.conns, d, prefix)
	if err == nil && !strings.HasSuffix(prefix, "-warm") {
		s.wrk = append(s.wrk, w)
		s.errors += w.errors
	}
	return w, err
}

// startProfile starts fetching a CPU profile of d from a receiver's --debug-addr; the returned
// function waits for it and writes it to out.
func startProfile(debugBase string, d time.Duration, out string) func() error {
	done := make(chan error, 1)
	go func() {
		secs := max(1, int(d.Seconds()))
		res, err := http.Get(fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", debugBase, secs))
		if err != nil {
			done <- err
			return
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		if err == nil && res.StatusCode != http.StatusOK {
			err = fmt.Errorf("%s: %s", res.Status, b)
		}
		if err == nil {
			err = os.WriteFile(out, b, 0o644)
		}
		done <- err
	}()
	return func() error { return <-done }
}

// start launches the server for one case and waits until it answers.
func (b *bench) start(name string, spec caseSpec) (*server, error) {
	addr, err := proc.FreeAddr()
	if err != nil {
		return nil, err
	}
	var cmd []string
	var debug string
	s := &server{name: name, spec: spec}
	switch spec.kind {
	case "ceiling":
		self, err := os.Executable()
		if err != nil {
			return nil, err
		}
		cmd = []string{self, "-serve-ceiling", addr}
	case "sqlite", "postgres", "sqlite-base", "postgres-base":
		bin, err := b.receiverBinary()
		if err != nil {
			return nil, err
		}
		if strings.HasSuffix(spec.kind, "-base") {
			if b.baseReceiver == "" {
				return nil, fmt.Errorf("case %s needs -base-receiver", name)
			}
			bin = b.baseReceiver
		}
		args := []string{"--listen-addr", addr, "--token-file", filepath.Join(b.tmp, "token"), "--log-level", "error"}
		if name == b.pprofCase {
			daddr, err := proc.FreeAddr()
			if err != nil {
				return nil, err
			}
			debug = "http://" + daddr
			args = append(args, "--debug-addr", daddr)
		}
		if strings.HasPrefix(spec.kind, "sqlite") {
			db := filepath.Join(b.tmp, name+".db")
			if spec.rows > 0 {
				src, meta, err := b.seededStore(spec.rows)
				if err != nil {
					return nil, fmt.Errorf("seed %d deliveries: %w", spec.rows, err)
				}
				t0 := time.Now()
				if err := copyFile(src, db); err != nil {
					return nil, err
				}
				fmt.Fprintf(os.Stderr, "%s: copied the pre-filled store (%.2f GB, seeded in %s) in %s\n",
					name, float64(meta.Bytes)/1e9, meta.SeedDuration, time.Since(t0).Round(100*time.Millisecond))
				s.seed = meta
			}
			args = append(args, "--store", "sqlite", "--sqlite-path", db)
			if spec.prune {
				// The oldest pruneShare of the pre-filled deliveries are past this age now.
				cut := time.UnixMicro(s.seed.OldestMicros + int64(b.pruneShare*float64(s.seed.NewestMicros-s.seed.OldestMicros)))
				s.maxAge = time.Since(cut).Round(time.Minute)
				args = append(args, "--retention-max-age", s.maxAge.String(), "--retention-interval", "1s")
				if spec.pruneBatch > 0 {
					args = append(args, "--retention-batch", strconv.Itoa(spec.pruneBatch))
				}
				if spec.prunePause > 0 {
					args = append(args, "--retention-pause", spec.prunePause.String())
				}
			}
		} else {
			dsnFile, err := b.postgresDSNFile(name)
			if err != nil {
				return nil, err
			}
			args = append(args, "--store", "postgres", "--postgres-dsn-file", dsnFile)
		}
		cmd = append([]string{bin}, args...)
	default:
		return nil, fmt.Errorf("unknown case %q (want ceiling, sqlite, postgres, sqlite-base or postgres-base, and for sqlite cases @rows and +prune, e.g. sqlite@1M+prune)", name)
	}
	p, err := proc.Start(proc.Spec{Name: name, Path: cmd[0], Args: cmd[1:], Env: os.Environ(), Tee: os.Stderr})
	if err != nil {
		return nil, err
	}
	s.proc, s.base, s.debug = p, "http://"+addr, debug
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := proc.WaitHTTPOK(ctx, s.base+"/healthz", p.Done()); err != nil {
		s.stop()
		return nil, err
	}
	s.pause()
	return s, nil
}

// storeSettle is how long the benchmark pauses after loading a store case, before the next case
// starts. An idle SQLite receiver truncates its WAL about a second after the last write: a
// checkpoint that flushes the database file. Without the pause, that flush landed in the next
// case's measured slice, so in an A/B run (sqlite-base, sqlite) the second SQLite case carried its
// neighbour's flush in every round.
const storeSettle = 2 * time.Second

// settle waits out the background work the server starts once its load stops (see storeSettle).
func (s *server) settle() {
	if s.name != "ceiling" {
		time.Sleep(storeSettle)
	}
}

func (s *server) stop() {
	s.resume()
	_ = s.proc.Stop(30 * time.Second)
}

// turn runs one of s's measured (or warm-up) slices, then waits out its background work (settle).
// A +prune case's receiver is stopped (SIGSTOP) outside its turns, so its pruning runs only in its
// own slices and settles, never in another case's.
func (s *server) turn(f func() error) error {
	s.resume()
	defer s.pause()
	err := f()
	s.settle()
	return err
}

func (s *server) pause() {
	if s.spec.prune {
		s.proc.Signal(syscall.SIGSTOP)
	}
}

func (s *server) resume() {
	if s.spec.prune {
		s.proc.Signal(syscall.SIGCONT)
	}
}

// defaultStoreCache is -store-cache's default: the user's cache directory.
func defaultStoreCache() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = os.TempDir()
	}
	return filepath.Join(dir, "intuned-operator", "bench-receiver")
}

// receiverBinary builds cmd/receiver once (run from the repository root, as make does).
func (b *bench) receiverBinary() (string, error) {
	bin := filepath.Join(b.tmp, "receiver")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	fmt.Fprintln(os.Stderr, "building cmd/receiver ...")
	if _, err := (proc.Build{Dir: b.tmp, Packages: []string{"./cmd/receiver"}}).Run(context.Background()); err != nil {
		return "", err
	}
	return bin, os.WriteFile(filepath.Join(b.tmp, "token"), []byte("bench-token"), 0o600)
}

// postgresDSNFile starts a durable (fsync on) PostgreSQL with pgtest and writes a DSN file for it.
func (b *bench) postgresDSNFile(name string) (string, error) {
	ctx := context.Background()
	if b.pg == nil {
		fmt.Fprintln(os.Stderr, "starting PostgreSQL ...")
		var err error
		if b.pg, err = pgtest.Start(ctx, pgtest.Options{Durable: true}); err != nil {
			return "", fmt.Errorf("start PostgreSQL (hack/ensure-postgres.sh installs it): %w", err)
		}
	}
	dsn, err := b.pg.CreateDatabase(ctx) // one database per case
	if err != nil {
		return "", err
	}
	file := filepath.Join(b.tmp, name+".dsn")
	return file, os.WriteFile(file, []byte(dsn), 0o600)
}

// scrape reads the samples of a Prometheus text endpoint, keyed by name with labels as printed;
// empty on error.
func scrape(url string) map[string]float64 {
	out := map[string]float64{}
	res, err := http.Get(url)
	if err != nil {
		return out
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	for _, line := range strings.Split(string(body), "\n") {
		name, val, ok := strings.Cut(line, " ")
		if ok && !strings.HasPrefix(name, "#") {
			out[name], _ = strconv.ParseFloat(val, 64)
		}
	}
	return out
}

// runID is the part of a runId after the run's prefix: the counter i, or with -random-run-ids 64
// random bits (16 hex digits; unique enough for any run of this benchmark).
func (b *bench) runID(i int) string {
	if b.randomRunIDs {
		return fmt.Sprintf("%016x", rand.Uint64())
	}
	return strconv.Itoa(i)
}

// bodyParts splits a sink body of about size bytes around its runId, so senders can build bodies
// cheaply (the load generator shares the CPUs with the server under test).
func bodyParts(size int) (prefix, suffix []byte) {
	const tmpl = `{"workspaceId":"e95cb8d1-f212-4c04-ace1-c0f77e8708c7","project":{"id":"482bf507","name":"bench"},"projectJob":{"id":"bench-job"},"projectJobRun":{"id":"08523ea6-5c6b-413e-995a-40e4f6fd7846"},"apiInfo":{"name":"details","runId":"RUNID","parameters":{},"result":{"status":"completed","statusCode":200,"result":{"pad":"PAD"}}}}`
	pad := max(0, size-len(tmpl)+len("PAD")-len("RUNID")-12) // ~12 bytes of run id
	full := strings.Replace(tmpl, "PAD", strings.Repeat("x", pad), 1)
	p, s, _ := strings.Cut(full, "RUNID")
	return []byte(p), []byte(s)
}

// load runs b.conns senders against base for d and returns the latencies of 2xx answers, the
// number of failures and the elapsed seconds.
func (b *bench) load(base, prefix string, d time.Duration) ([]time.Duration, int, float64) {
	url := base + "/webhooks/intuned"
	pre, suf := bodyParts(b.bodySize)
	tr := &http.Transport{MaxIdleConnsPerHost: b.conns, MaxConnsPerHost: b.conns, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	var mu sync.Mutex
	var all []time.Duration
	errs := 0
	start := time.Now()
	end := start.Add(d)
	var wg sync.WaitGroup
	for g := range b.conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]time.Duration, 0, 4096)
			bad := 0
			buf := make([]byte, 0, len(pre)+len(suf)+64)
			for i := 0; time.Now().Before(end); i++ {
				buf = append(append(append(append(append(buf[:0], pre...), prefix...), '-'), b.runID(g*10_000_000+i)...), suf...)
				req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(buf))
				req.Header.Set("Authorization", "Bearer bench-token")
				req.Header.Set("Content-Type", "application/json")
				t0 := time.Now()
				res, err := client.Do(req)
				if err != nil {
					bad++
					continue
				}
				io.Copy(io.Discard, res.Body) //nolint:errcheck
				res.Body.Close()
				if res.StatusCode/100 != 2 {
					bad++
					continue
				}
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			all = append(all, lat...)
			errs += bad
			mu.Unlock()
		}()
	}
	wg.Wait()
	return all, errs, time.Since(start).Seconds()
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

func (b *bench) print(servers []*server, duration time.Duration, rounds int, phases []phase) {
	gen := "wrk (" + strconv.Itoa(b.wrkThreads) + " threads)"
	if b.loadGen == "go" {
		gen = "the Go client in this process"
	}
	fmt.Printf("\nreceiver ingest benchmark: ~%d-byte sink bodies, %s per case in %d rounds, %d CPUs, %s,\nload average now %s (other work on the machine skews absolute numbers; compare ratios)\n",
		b.bodySize, duration, rounds, runtime.NumCPU(), runtime.Version(), loadAvg())
	fmt.Printf("\nsaturation (closed loop): %d keep-alive connections driven by %s\n\n", b.conns, gen)
	var ceiling, ceilingCPU float64
	for _, s := range servers {
		if s.name == "ceiling" && s.answered() > 0 {
			ceiling = float64(s.answered()) / s.seconds
			ceilingCPU = float64(s.cpu.Microseconds()) / float64(s.answered())
		}
	}
	targets := map[string]string{"sqlite": ">=0.5x CPU<=2x", "postgres": ">=0.35x RSS<=100MiB"}
	// The store-size axis compares each @rows case with the same receiver on an empty store.
	empty := map[string]float64{}
	for _, s := range servers {
		if s.spec.rows == 0 && s.answered() > 0 {
			empty[s.spec.kind] = float64(s.answered()) / s.seconds
		}
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "case\treq/s\tp50\tp99\tx ceiling\tx empty\tpeak RSS\tCPU/req\tCPU x\tclient CPU/req\terrors\tbatch\tcommit\tpruned/s\ttarget\t")
	for _, s := range servers {
		n := s.answered()
		rps := float64(n) / s.seconds
		ratio, xEmpty, batch, commit, cpuPerReq, cpuX, clientCPU, pruned := "-", "-", "-", "-", "-", "-", "-", "-"
		if ceiling > 0 {
			ratio = fmt.Sprintf("%.2f", rps/ceiling)
		}
		e := empty[s.spec.kind]
		if e == 0 { // sqlite-base@1M against this branch's sqlite when the run has no sqlite-base
			e = empty[strings.TrimSuffix(s.spec.kind, "-base")]
		}
		if e > 0 && s.spec.rows > 0 {
			xEmpty = fmt.Sprintf("%.2f", rps/e)
		}
		if s.spec.prune {
			pruned = fmt.Sprintf("%.0f", s.pruned/s.seconds)
		}
		target := targets[strings.TrimSuffix(s.spec.kind, "-base")]
		if s.spec.rows > 0 {
			target = ">=0.8x empty"
		}
		if s.batch > 0 {
			batch, commit = fmt.Sprintf("%.1f", s.batch), fmt.Sprintf("%.2f ms", s.commitMs)
		}
		p50, p99, _ := s.percentiles()
		if n > 0 {
			us := float64(s.cpu.Microseconds()) / float64(n)
			cpuPerReq = fmt.Sprintf("%.0f us", us)
			if ceilingCPU > 0 {
				cpuX = fmt.Sprintf("%.2f", us/ceilingCPU)
			}
			if s.clientCPU > 0 {
				clientCPU = fmt.Sprintf("%.0f us", float64(s.clientCPU.Microseconds())/float64(n))
			}
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%s\t%s\t%s\t%s\t%.1f MiB\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t\n", s.name, rps, ms(p50), ms(p99), ratio, xEmpty,
			float64(s.rssBytes)/(1<<20), cpuPerReq, cpuX, clientCPU, s.errors, batch, commit, pruned, target)
	}
	tw.Flush()
	if b.loadGen == "wrk" {
		fmt.Println("(wrk percentiles: the request-weighted mean over the rounds)")
	}
	for i, ph := range phases {
		fmt.Printf("\nfixed rate (open loop): %.0f req/s (%s) offered to every case on %d connections,\nlatency from the scheduled send time\n\n", ph.rate, ph.name, b.conns)
		tw = tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "case\tanswered/s\tp50\tp99\tp99.9\tmax\tCPU/req\terrors\tpruned/s\ttarget\t")
		for _, s := range servers {
			f := &s.fixed[i]
			if len(f.lat) == 0 {
				fmt.Fprintf(tw, "%s\t0\t-\t-\t-\t-\t-\t%d\t-\t\t\n", s.name, f.errors)
				continue
			}
			slices.Sort(f.lat)
			q := func(p float64) time.Duration { return f.lat[min(len(f.lat)-1, int(float64(len(f.lat))*p))] }
			target := ""
			if strings.HasPrefix(s.name, "sqlite") {
				target = "p99<=10ms"
			}
			pruned := "-"
			if s.spec.prune {
				pruned = fmt.Sprintf("%.0f", f.pruned/f.seconds)
			}
			fmt.Fprintf(tw, "%s\t%.0f\t%s\t%s\t%s\t%s\t%.0f us\t%d\t%s\t%s\t\n", s.name, float64(len(f.lat))/f.seconds,
				ms(q(0.50)), ms(q(0.99)), ms(q(0.999)), ms(f.lat[len(f.lat)-1]),
				float64(f.cpu.Microseconds())/float64(len(f.lat)), f.errors, pruned, target)
		}
		tw.Flush()
	}
	fmt.Println("\nCPU/req = server process CPU time per 2xx answer (the PostgreSQL server's own CPU is not included);")
	fmt.Println("CPU x = that over the ceiling's; client CPU/req = wrk's CPU time per answer;")
	fmt.Println("batch = mean deliveries per group-commit transaction; commit = mean time of one commit.")
	for _, s := range servers {
		if s.spec.rows > 0 {
			fmt.Printf("%s: %d pre-filled deliveries (%.2f GB file, seeded in %s)", s.name, s.seed.Rows, float64(s.seed.Bytes)/1e9, s.seed.SeedDuration)
			if s.spec.prune {
				fmt.Printf("; retention max age %s puts the oldest %.0f%% past it; pruned/s = deliveries retention deleted per second of its saturation slices (its pruning also runs in its settles; the process is stopped between its turns)", s.maxAge, 100*b.pruneShare)
			}
			fmt.Println()
		}
	}
}

// percentiles of the saturation phase: exact for -load go, request-weighted means of the rounds'
// for wrk.
func (s *server) percentiles() (p50, p99, p999 time.Duration) {
	if len(s.lat) > 0 {
		slices.Sort(s.lat)
		q := func(p float64) time.Duration { return s.lat[min(len(s.lat)-1, int(float64(len(s.lat))*p))] }
		return q(0.50), q(0.99), q(0.999)
	}
	var n float64
	var a, b, c float64
	for _, w := range s.wrk {
		k := float64(w.requests)
		n += k
		a += k * float64(w.p50)
		b += k * float64(w.p99)
		c += k * float64(w.p999)
	}
	if n == 0 {
		return 0, 0, 0
	}
	return time.Duration(a / n), time.Duration(b / n), time.Duration(c / n)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }
