package intunedjob

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/intuned"
	"github.com/intuned-operator/intuned-operator/internal/receiver/receiverapi"
	"github.com/intuned-operator/intuned-operator/internal/testutil/proc"
	"github.com/intuned-operator/intuned-operator/internal/testutil/procstat"
)

// BenchmarkBackfillResultsFile measures the manager's backfill path end to
// end on a large results file: resultsPass reads the file through
// intuned.OpenResults from a loopback HTTP server (Range resume between
// slices, as the controller resumes between reconciles) and sends 1 MiB
// batches with receiverapi.Client.Backfill to a real receiver (the built
// cmd/receiver, SQLite, its own process). It prints a table and is meant to
// run once, with -benchtime 1x (make bench-backfill):
//
//	go test ./internal/controller/intunedjob -run '^$' -bench BackfillResultsFile -benchtime 1x -timeout 60m
//
// Environment: BACKFILL_BYTES (size of the results file, default 1GB; also
// 200MB, 1.5GiB, plain bytes), BACKFILL_SLICE (how long one pass streams,
// default the controller's backfillSlice), BACKFILL_FLOOR_BYTES (sample the
// receiver ingests without the manager, default 64MiB), BACKFILL_CPUPROFILE
// (file for a CPU profile of the two backfill rows only). Everything is
// written under a temp dir that is removed at the end: the file, and the
// receiver's SQLite, which grows to about 1.7 times the file.
//
// The manager side runs in this test process, which also serves the file
// (http.ServeContent of a temp file: sendfile, little CPU) and, through the
// package's TestMain, holds an envtest client; its peak RSS is reset just
// before each row (/proc/self/clear_refs), so it shows what the row added
// to a baseline that is printed too.
func BenchmarkBackfillResultsFile(b *testing.B) {
	size := envBytes(b, "BACKFILL_BYTES", 1e9)
	floorSize := envBytes(b, "BACKFILL_FLOOR_BYTES", 64<<20)
	slice := backfillSlice
	if v := os.Getenv("BACKFILL_SLICE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			b.Fatalf("BACKFILL_SLICE=%q: want a duration such as 5s", v)
		}
		slice = d
	}
	dir := b.TempDir()
	// The file, the receiver's database (about the file again, plus the
	// floor sample) and some slack.
	if free, need := freeBytes(b, dir), 3*size+floorSize+(512<<20); free < need {
		b.Fatalf("%s has %d MB free, the benchmark needs about %d MB: set BACKFILL_BYTES lower", dir, free/1e6, need/1e6)
	}
	ctx := context.Background()
	start := time.Now()

	file := filepath.Join(dir, "results.jsonl")
	lines, err := writeResultsFile(file, size, 1)
	if err != nil {
		b.Fatal(err)
	}
	st, err := os.Stat(file)
	if err != nil {
		b.Fatal(err)
	}
	fileBytes := st.Size()
	b.Logf("wrote %s: %d bytes, %d lines, in %s", file, fileBytes, lines, time.Since(start).Round(time.Millisecond))

	files := &fileServer{path: file}
	srv := httptest.NewServer(files)
	b.Cleanup(srv.Close)
	results := &intuned.JobRunResults{
		SignedURL: srv.URL + "/results/jr-bench.jsonl?X-Amz-Expires=3600&X-Amz-Signature=bench",
		Format:    "jsonl", Size: &fileBytes,
	}

	rcv := startReceiver(b, dir)
	ledger := receiverapi.Client{BaseURL: rcv.url, HTTP: &http.Client{Timeout: time.Minute}} // as receiverHTTP

	// The receiver slows as its store grows (probably its run_id index:
	// runIds are random): its floor is measured on the empty store before
	// the backfill rows and on the full one after.
	floorEmpty := receiverAlone(b, ctx, ledger, rcv, floorSize, 2, "empty store")
	settle()

	target := receiverapi.BackfillTarget{JobRunID: "jr-bench", JobID: "job-bench", Project: "bench", WorkspaceID: "ws-bench"}
	stopProfile := startProfile(b)
	newRow := backfillRow(b, ctx, "backfill, new", ledger, rcv, files, target, results, slice)
	settle()
	presentRow := backfillRow(b, ctx, "backfill, all present", ledger, rcv, files, target, results, slice)
	stopProfile()
	settle()
	floorFull := receiverAlone(b, ctx, ledger, rcv, floorSize, 3, "full store")

	// Every line is stored once, by the first pass; the second found them all.
	sums, err := ledger.Summaries(ctx, readTokenValue, []string{target.JobRunID})
	if err != nil {
		b.Fatal(err)
	}
	if s := sums[0]; s.Stored != lines || s.Backfilled != lines || newRow.stored != lines || presentRow.present != lines {
		b.Fatalf("receiver holds %d (backfilled %d) of %d lines; first pass stored %d, second found %d present",
			s.Stored, s.Backfilled, lines, newRow.stored, presentRow.present)
	}
	for _, r := range []*rowStats{newRow, presentRow} {
		if r.bytes != fileBytes || r.lines != lines {
			b.Fatalf("%s: read %d bytes, %d lines of %d, %d", r.name, r.bytes, r.lines, fileBytes, lines)
		}
	}

	printReport(os.Stdout, [2]*rowStats{newRow, presentRow}, floorEmpty, floorFull, rcv, time.Since(start))
	b.ReportMetric(newRow.mbps(), "MB/s")
	b.ReportMetric(float64(newRow.lines)/newRow.wall.Seconds(), "results/s")
	b.ReportMetric(float64(newRow.peakManager)/(1<<20), "manager-peak-MiB")
	b.ReportMetric(float64(newRow.peakReceiver)/(1<<20), "receiver-peak-MiB")
}

// startProfile starts a CPU profile into $BACKFILL_CPUPROFILE, if set.
func startProfile(b *testing.B) (stop func()) {
	path := os.Getenv("BACKFILL_CPUPROFILE")
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		b.Logf("no CPU profile of the rows: %v", err) // go test -cpuprofile runs one already
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			b.Error(err)
		}
	}
}

// rowStats is one measured row of the report.
type rowStats struct {
	name                     string
	bytes, lines             int64
	wall, inSend             time.Duration
	batches, slices, ranges  int
	errors                   int
	stored, present, invalid int64
	cpuManager, cpuReceiver  time.Duration
	baseManager              int64 // RSS of this process when the row started
	peakManager              int64 // VmHWM of this process during the row
	peakReceiver             int64 // VmHWM of the receiver during the row
}

func (r *rowStats) mbps() float64 { return float64(r.bytes) / 1e6 / r.wall.Seconds() }

// backfillRow runs the pass over the whole file as the controller does:
// one pass per slice, each from a fresh OpenResults at the offset the
// receiver acknowledged, progress carried in a BackfillProgress.
func backfillRow(b *testing.B, ctx context.Context, name string, ledger receiverapi.Client, rcv *receiverProc,
	files *fileServer, target receiverapi.BackfillTarget, results *intuned.JobRunResults, slice time.Duration) *rowStats {
	b.Helper()
	r := &rowStats{name: name}
	progress := &intunedv1alpha1.BackfillProgress{}
	send := func(ctx context.Context, ndjson []byte) (receiverapi.BackfillResult, error) {
		t := time.Now()
		res, err := ledger.Backfill(ctx, "Authorization", "Bearer "+ingestTokenValue, target, ndjson)
		r.inSend += time.Since(t)
		r.batches++
		r.stored += int64(res.Stored)
		r.present += int64(res.Present)
		r.invalid += int64(res.Invalid)
		return res, err
	}
	rangesBefore := files.ranges.Load()
	startRow(b, r, rcv)
	t0 := time.Now()
	for !progress.Done {
		r.slices++
		pass := &resultsPass{progress: progress, send: send, size: *results.Size, deadline: time.Now().Add(slice)}
		body, err := intuned.OpenResults(ctx, http.DefaultClient, results, progress.Offset) // as resultsHTTP
		if err == nil {
			err = pass.run(ctx, body)
			body.Close()
		}
		if err != nil {
			// The controller records the progress and comes back at the
			// next reconcile (a second later while Backfilling).
			r.errors++
			b.Logf("%s: slice %d at byte %d: %v", name, r.slices, progress.Offset, err)
			if r.errors > 10 {
				b.Fatalf("%s: too many failed slices", name)
			}
			time.Sleep(time.Second)
		}
	}
	r.wall = time.Since(t0)
	endRow(b, r, rcv)
	r.ranges = int(files.ranges.Load() - rangesBefore)
	r.bytes, r.lines = progress.Offset, progress.Lines
	if progress.Invalid != 0 || r.invalid != 0 {
		b.Fatalf("%s: %d invalid lines (%d by the receiver): %v", name, progress.Invalid, r.invalid, progress)
	}
	return r
}

// receiverAlone is the floor: the receiver's own ingest of 1 MiB batches
// like the pass's (lines of the same generator with seed: other runIds),
// built in memory first and POSTed one at a time, first new, then all
// present.
func receiverAlone(b *testing.B, ctx context.Context, ledger receiverapi.Client, rcv *receiverProc, size int64, seed uint64, store string) [2]*rowStats {
	b.Helper()
	var batches [][]byte
	var batch []byte
	var lines int64
	gen := newLineGen(seed)
	for total := int64(0); total < size; lines++ {
		line := gen.line(lines)
		if len(batch) > 0 && len(batch)+len(line) > backfillBatchBytes {
			batches = append(batches, batch)
			batch = nil
		}
		batch = append(batch, line...)
		total += int64(len(line))
	}
	batches = append(batches, batch)
	target := receiverapi.BackfillTarget{JobRunID: fmt.Sprintf("jr-floor-%d", seed), JobID: "job-bench", Project: "bench", WorkspaceID: "ws-bench"}
	post := func(name string) *rowStats {
		r := &rowStats{name: name, lines: lines, batches: len(batches)}
		startRow(b, r, rcv)
		t0 := time.Now()
		for _, body := range batches {
			res, err := ledger.Backfill(ctx, "Authorization", "Bearer "+ingestTokenValue, target, body)
			if err != nil {
				b.Fatalf("%s: %v", name, err)
			}
			r.bytes += int64(len(body))
			r.stored += int64(res.Stored)
			r.present += int64(res.Present)
		}
		r.wall = time.Since(t0)
		r.inSend = r.wall
		endRow(b, r, rcv)
		return r
	}
	newRow := post("receiver alone, new, " + store)
	settle()
	presentRow := post("receiver alone, all present, " + store)
	if newRow.stored != lines || presentRow.present != lines {
		b.Fatalf("receiver alone: stored %d, then %d present, of %d lines", newRow.stored, presentRow.present, lines)
	}
	return [2]*rowStats{newRow, presentRow}
}

// startRow frees what setup left on the heap and resets both peaks, so each
// row's VmHWM is its own; endRow reads them and the CPU both sides used.
func startRow(b *testing.B, r *rowStats, rcv *receiverProc) {
	runtime.GC()
	debug.FreeOSMemory()
	for _, pid := range []int{os.Getpid(), rcv.pid()} {
		// Writing 5 to clear_refs resets VmHWM to the current RSS.
		if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
			b.Logf("cannot reset the peak RSS of %d (the peak is then the process's lifetime peak): %v", pid, err)
		}
	}
	r.baseManager, _ = procstat.RSS(os.Getpid())
	r.cpuManager = -procstat.CPUTime(os.Getpid())
	r.cpuReceiver = -procstat.CPUTime(rcv.pid())
}

func endRow(b *testing.B, r *rowStats, rcv *receiverProc) {
	r.cpuManager += procstat.CPUTime(os.Getpid())
	r.cpuReceiver += procstat.CPUTime(rcv.pid())
	var err error
	if r.peakManager, err = procstat.PeakRSS(os.Getpid()); err != nil {
		b.Fatal(err)
	}
	if r.peakReceiver, err = procstat.PeakRSS(rcv.pid()); err != nil {
		b.Fatal(err)
	}
}

// settle waits out the SQLite checkpoint an idle receiver runs about a
// second after its last write, so it does not land in the next row.
func settle() { time.Sleep(2 * time.Second) }

// printReport writes the table: the backfill rows (new, all present), each
// with its throughput divided by the receiver's alone on the empty and on
// the full store, then the rows of the receiver alone.
func printReport(w *os.File, rows, floorEmpty, floorFull [2]*rowStats, rcv *receiverProc, total time.Duration) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w)
	fmt.Fprintln(tw, "row\tMB\tlines\twall\tMB/s\tresults/s\tbatches\tslices\tRange GETs\tin receiver\tCPU mgr\tCPU rcv\tpeak RSS mgr\tpeak RSS rcv\t÷ alone, empty\t÷ alone, full\t")
	line := func(r *rowStats, peakManager, ratios string) {
		fmt.Fprintf(tw, "%s\t%.0f\t%d\t%s\t%.1f\t%.0f\t%d\t%d\t%d\t%.0f%%\t%.1fs\t%.1fs\t%s\t%s\t%s\t\n",
			r.name, float64(r.bytes)/1e6, r.lines, r.wall.Round(100*time.Millisecond), r.mbps(),
			float64(r.lines)/r.wall.Seconds(), r.batches, r.slices, r.ranges, 100*r.inSend.Seconds()/r.wall.Seconds(),
			r.cpuManager.Seconds(), r.cpuReceiver.Seconds(), peakManager, mib(r.peakReceiver), ratios)
	}
	for i, r := range rows {
		line(r, mib(r.peakManager), fmt.Sprintf("%.2f\t%.2f", r.mbps()/floorEmpty[i].mbps(), r.mbps()/floorFull[i].mbps()))
	}
	for _, r := range append(floorEmpty[:], floorFull[:]...) {
		line(r, "-", "\t")
	}
	tw.Flush()
	fmt.Fprintf(w, "\nmanager side: this test process (pass, HTTP client, the file server); its RSS before a row was %s.\n", mib(rows[0].baseManager))
	fmt.Fprintf(w, "in receiver: share of the wall time the pass waited for the receiver's answers (the pass is serial).\n")
	fmt.Fprintf(w, "receiver alone: 1 MiB batches of %.0f MB of other lines POSTed from memory, on the empty store (before\n", float64(floorEmpty[0].bytes)/1e6)
	fmt.Fprintf(w, "the backfill rows) and on the full one (after); ÷ alone is the row's MB/s divided by theirs.\n")
	fmt.Fprintf(w, "receiver's SQLite: %s on disk; whole benchmark %s.\n\n", mib(rcv.diskBytes()), total.Round(time.Second))
}

func mib(n int64) string { return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20)) }

// fileServer serves the results file with Range support, as object
// storage does, and counts the ranged requests.
type fileServer struct {
	path   string
	ranges atomic.Int64
}

func (s *fileServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f, err := os.Open(s.path)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	defer f.Close()
	if r.Header.Get("Range") != "" {
		s.ranges.Add(1)
	}
	http.ServeContent(w, r, "results.jsonl", time.Time{}, f)
}

// lineGen makes a results file's lines deterministically from their index:
// the apiInfo of a Run of an e-commerce "details" API, as intuned-sim's
// resultsJSONL writes them (a 21-character nanoid runId), 1 to 2 KiB each.
type lineGen struct{ seed uint64 }

func newLineGen(seed uint64) lineGen { return lineGen{seed: seed} }

const nanoidAlphabet = "useandom-26T198340PX75pxJACKVERYMINDBUSHWOLF_GQZbfghjklqvwyzrict"

var words = strings.Fields(`the a with for and of in durable lightweight premium compact wireless ergonomic
stainless steel cotton leather waterproof adjustable rechargeable battery design comfort everyday
travel outdoor kitchen office studio classic modern edition warranty includes size colour fit`)

type benchProduct struct {
	SKU         string            `json:"sku"`
	Title       string            `json:"title"`
	Price       float64           `json:"price"`
	Currency    string            `json:"currency"`
	InStock     bool              `json:"inStock"`
	Rating      float64           `json:"rating"`
	Reviews     int               `json:"reviews"`
	Description string            `json:"description"`
	Images      []string          `json:"images"`
	Specs       map[string]string `json:"specs"`
}

func (g lineGen) line(i int64) []byte {
	rng := rand.New(rand.NewPCG(g.seed, uint64(i)))
	id := make([]byte, 21)
	for k := range id {
		id[k] = nanoidAlphabet[rng.IntN(len(nanoidAlphabet))]
	}
	sku := fmt.Sprintf("SKU-%08d", rng.IntN(1e8))
	var desc strings.Builder
	for want := 700 + rng.IntN(1000); desc.Len() < want; {
		if desc.Len() > 0 {
			desc.WriteByte(' ')
		}
		desc.WriteString(words[rng.IntN(len(words))])
	}
	p := benchProduct{
		SKU:   sku,
		Title: fmt.Sprintf("%s %s %s", words[rng.IntN(len(words))], words[rng.IntN(len(words))], sku),
		Price: float64(rng.IntN(50000))/100 + 0.99, Currency: "USD", InStock: rng.IntN(10) > 0,
		Rating: float64(10+rng.IntN(41)) / 10, Reviews: rng.IntN(5000),
		Description: desc.String(),
		Specs: map[string]string{"colour": words[rng.IntN(len(words))], "weight": fmt.Sprintf("%d g", 50+rng.IntN(3000)),
			"material": words[rng.IntN(len(words))]},
	}
	for range 1 + rng.IntN(4) {
		p.Images = append(p.Images, fmt.Sprintf("https://cdn.shop.example.com/i/%016x.jpg", rng.Uint64()))
	}
	result, _ := json.Marshal(p)
	line, _ := json.Marshal(map[string]any{
		"name":       "details",
		"runId":      string(id),
		"parameters": map[string]any{"url": "https://shop.example.com/p/" + sku, "page": 1 + rng.IntN(50)},
		"result":     map[string]any{"status": "completed", "result": json.RawMessage(result), "statusCode": 200},
	})
	return append(line, '\n')
}

// writeResultsFile writes lines of lineGen(seed) to path until it holds at
// least size bytes, and returns how many.
func writeResultsFile(path string, size int64, seed uint64) (int64, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	gen := newLineGen(seed)
	var n, written int64
	for ; written < size; n++ {
		k, err := w.Write(gen.line(n))
		if err != nil {
			f.Close()
			return 0, err
		}
		written += int64(k)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return 0, err
	}
	return n, f.Close()
}

const (
	ingestTokenValue = "bench-ingest-token"
	readTokenValue   = "bench-read-token"
)

// receiverProc is cmd/receiver running on loopback with SQLite in dir.
type receiverProc struct {
	p      *proc.Process
	url    string
	dbPath string
}

func (r *receiverProc) pid() int { return r.p.Pid() }

// diskBytes is the size of the database and its WAL.
func (r *receiverProc) diskBytes() int64 {
	var n int64
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if st, err := os.Stat(r.dbPath + suffix); err == nil {
			n += st.Size()
		}
	}
	return n
}

func startReceiver(b *testing.B, dir string) *receiverProc {
	b.Helper()
	bins, err := proc.Build{Dir: filepath.Join(dir, "bin"), Packages: []string{"./cmd/receiver"}}.Run(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	for name, v := range map[string]string{"token": ingestTokenValue, "read-token": readTokenValue} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(v), 0o600); err != nil {
			b.Fatal(err)
		}
	}
	addr, err := proc.FreeAddr()
	if err != nil {
		b.Fatal(err)
	}
	r := &receiverProc{url: "http://" + addr, dbPath: filepath.Join(dir, "receiver.db")}
	r.p, err = proc.Start(proc.Spec{Name: "receiver", Path: bins[0], Args: []string{
		"--listen-addr", addr, "--store", "sqlite", "--sqlite-path", r.dbPath, "--log-level", "error",
		"--token-file", filepath.Join(dir, "token"), "--read-token-file", filepath.Join(dir, "read-token"),
	}, LogFile: filepath.Join(dir, "receiver.log")})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := r.p.Stop(30 * time.Second); err != nil {
			b.Logf("receiver: %v\n%s", err, r.p.LogTail(4096))
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := proc.WaitHTTPOK(ctx, r.url+"/readyz", r.p.Done()); err != nil {
		b.Fatalf("%v\n%s", err, r.p.LogTail(4096))
	}
	return r
}

// envBytes reads a size such as 1GB, 200MB, 64MiB or 1000000 from the
// environment variable name (decimal and binary units), def when unset.
func envBytes(b *testing.B, name string, def int64) int64 {
	v := strings.TrimSpace(os.Getenv(name))
	if v == "" {
		return def
	}
	units := []struct {
		suffix string
		mult   float64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"K", 1e3}, {"M", 1e6}, {"G", 1e9}, {"B", 1}}
	num, mult := v, 1.0
	for _, u := range units {
		if rest, ok := strings.CutSuffix(v, u.suffix); ok {
			num, mult = strings.TrimSpace(rest), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f*mult < 1 {
		b.Fatalf("%s=%q: want a size such as 1GB, 200MB or 64MiB", name, v)
	}
	return int64(f * mult)
}

// freeBytes is the space available to this user on dir's file system.
func freeBytes(b *testing.B, dir string) int64 {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		b.Fatal(err)
	}
	return int64(st.Bavail) * st.Bsize
}
