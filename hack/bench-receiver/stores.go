package main

// The store-size axis: cases named like sqlite@1M or sqlite@10M+prune run the same receiver on a
// copy of a store pre-filled with that many realistic deliveries (see seedStore), and with +prune
// with retention pruning the oldest of them while the case is measured.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/intuned-operator/intuned-operator/internal/receiver/store"
	"github.com/intuned-operator/intuned-operator/internal/receiver/store/realistic"
	"github.com/intuned-operator/intuned-operator/internal/receiver/store/sqlite"
)

// caseSpec is a parsed case name: kind[@rows][+prune[N][pD]], e.g. sqlite@1M+prune100p5ms.
type caseSpec struct {
	kind       string        // ceiling, sqlite, postgres, sqlite-base, postgres-base
	rows       int           // deliveries stored before the benchmark starts
	prune      bool          // retention prunes the oldest pre-filled deliveries while measured
	pruneBatch int           // --retention-batch (+pruneN); 0: the receiver's default
	prunePause time.Duration // --retention-pause (+prunepD); 0: the receiver's default
}

func parseCase(name string) (caseSpec, error) {
	var c caseSpec
	rest, batch, prune := strings.Cut(name, "+prune")
	c.prune = prune
	batch, pause, paused := strings.Cut(batch, "p")
	if prune && batch != "" {
		n, err := strconv.Atoi(batch)
		if err != nil || n <= 0 {
			return c, fmt.Errorf("case %s: +pruneN takes a batch size, e.g. +prune100", name)
		}
		c.pruneBatch = n
	}
	if paused {
		d, err := time.ParseDuration(pause)
		if err != nil || d <= 0 {
			return c, fmt.Errorf("case %s: +prunepD takes a pause, e.g. +prunep5ms", name)
		}
		c.prunePause = d
	}
	kind, rows, sized := strings.Cut(rest, "@")
	c.kind = kind
	if sized {
		n, err := parseCount(rows)
		if err != nil {
			return c, fmt.Errorf("case %s: %w", name, err)
		}
		c.rows = n
	}
	if (c.rows > 0 || c.prune) && !strings.HasPrefix(c.kind, "sqlite") {
		return c, fmt.Errorf("case %s: only sqlite cases take a store size or +prune", name)
	}
	if c.prune && c.rows == 0 {
		return c, fmt.Errorf("case %s: +prune needs pre-filled deliveries to prune (e.g. sqlite@1M+prune)", name)
	}
	return c, nil
}

// parseCount reads 1000000, 1M or 10k.
func parseCount(s string) (int, error) {
	mult := 1
	switch {
	case strings.HasSuffix(s, "M"):
		mult, s = 1_000_000, strings.TrimSuffix(s, "M")
	case strings.HasSuffix(s, "k"):
		mult, s = 1_000, strings.TrimSuffix(s, "k")
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("bad row count %q (want e.g. 1000000, 1M, 500k)", s)
	}
	return n * mult, nil
}

// Seed parameters. The pre-filled deliveries are the guide's "details" sink body
// (realistic.Delivery) of about seedBodyBytes, with random 21-character runIds, in JobRuns
// of 200 Runs of which seedActiveJobRuns run at once (their rows interleave, as concurrent JobRuns'
// do), spread over seedJobs jobs. Their receive times grow with the row and span seedSpan, ending
// seedAge before the seeding: all are past retention's 2-hour floor, so +prune can delete them.
const (
	seedBodyBytes     = 900
	seedRunsPerJobRun = 200
	seedActiveJobRuns = 50
	seedJobs          = 20
	seedSpan          = 30 * 24 * time.Hour
	seedAge           = 3 * time.Hour
	seedBatch         = 50_000
	// seedBytesPerRow estimates a seeded file before it exists (measured: ~1.5 KB a delivery).
	seedBytesPerRow = 1700
)

// seedMeta is stored next to a cached seed file.
type seedMeta struct {
	Rows          int           `json:"rows"`
	OldestMicros  int64         `json:"oldestMicros"`
	NewestMicros  int64         `json:"newestMicros"`
	SeedDuration  time.Duration `json:"seedDuration"`
	Bytes         int64         `json:"bytes"`
	SchemaVersion int           `json:"schemaVersion"`
}

// seedName keys a cached store by everything that shapes its content.
func seedName(rows int) string {
	return fmt.Sprintf("sqlite-v%d-rows%d-body%d-jr%dx%d-jobs%d-span%s.db", sqlite.SchemaVersion(), rows,
		seedBodyBytes, seedRunsPerJobRun, seedActiveJobRuns, seedJobs, seedSpan)
}

// seedBodies builds pre-filled deliveries cheaply: realistic.Delivery costs ~30 us (it
// formats every product), so it makes a pool of bodies once, and each delivery is a copy of one
// with a fresh random runId and its JobRun id written over the pool's (both have fixed lengths).
type seedBodies struct {
	r    *rand.Rand
	pool []store.Delivery
}

const seedPool = 1024

func newSeedBodies(r *rand.Rand) *seedBodies {
	g := &seedBodies{r: r}
	for i := range seedPool {
		g.pool = append(g.pool, realistic.Delivery(r, i*100, seedBodyBytes, time.Time{}))
	}
	return g
}

// delivery is pre-filled delivery i of n (see the seed parameters).
func (g *seedBodies) delivery(i, n int, oldest time.Time) store.Delivery {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
	block := i / (seedRunsPerJobRun * seedActiveJobRuns)
	jobRun := block*seedActiveJobRuns + i%seedActiveJobRuns
	d := g.pool[i%seedPool]
	body := bytes.Clone(d.Body)
	id := make([]byte, 21)
	for k := range id {
		id[k] = alphabet[g.r.IntN(len(alphabet))]
	}
	copy(body[bytes.Index(body, []byte(d.RunID)):], id)
	d.RunID = string(id)
	jr := fmt.Sprintf("%08x-5c6b-413e-995a-%012x", jobRun, jobRun) // realistic.Delivery's form
	copy(body[bytes.Index(body, []byte(d.JobRunID)):], jr)
	d.JobRunID, d.Body = jr, body
	d.JobID = fmt.Sprintf("job-%02d", jobRun%seedJobs)
	if i%50 == 0 {
		d.ResultStatus = "failed"
	}
	d.ReceivedAt = oldest.Add(time.Duration(float64(seedSpan) * float64(i) / float64(max(1, n-1))))
	return d
}

// seededStore returns the cached store file of rows deliveries, seeding it first when the cache
// has none.
func (b *bench) seededStore(rows int) (string, seedMeta, error) {
	path := filepath.Join(b.storeCache, seedName(rows))
	var meta seedMeta
	if raw, err := os.ReadFile(path + ".json"); err == nil && json.Unmarshal(raw, &meta) == nil {
		if _, err := os.Stat(path); err == nil {
			return path, meta, nil
		}
	}
	if err := os.MkdirAll(b.storeCache, 0o755); err != nil {
		return "", meta, err
	}
	tmp := path + ".seeding"
	for _, f := range []string{tmp, tmp + "-wal", tmp + "-shm"} {
		os.Remove(f)
	}
	fmt.Fprintf(os.Stderr, "seeding %d deliveries into %s ...\n", rows, tmp)
	start := time.Now()
	oldest := start.Add(-seedAge - seedSpan).Truncate(time.Second)
	// Bodies are built on another goroutine (the other CPU) while SQLite inserts.
	ch := make(chan []store.Delivery, 4)
	go func() {
		g := newSeedBodies(rand.New(rand.NewPCG(uint64(rows), 23)))
		for i := 0; i < rows; {
			batch := make([]store.Delivery, 0, 1000)
			for ; i < rows && len(batch) < cap(batch); i++ {
				batch = append(batch, g.delivery(i, rows, oldest))
			}
			ch <- batch
		}
		close(ch)
	}()
	var cur []store.Delivery
	done := 0
	next := func() (store.Delivery, bool) {
		if len(cur) == 0 {
			var ok bool
			if cur, ok = <-ch; !ok {
				return store.Delivery{}, false
			}
		}
		d := cur[0]
		cur = cur[1:]
		if done++; done%1_000_000 == 0 {
			fmt.Fprintf(os.Stderr, "  %d deliveries, %s\n", done, time.Since(start).Round(time.Second))
		}
		return d, true
	}
	if err := sqlite.BulkLoad(context.Background(), tmp, seedBatch, next); err != nil {
		return "", meta, err
	}
	for _, f := range []string{tmp + "-wal", tmp + "-shm"} {
		os.Remove(f)
	}
	fi, err := os.Stat(tmp)
	if err != nil {
		return "", meta, err
	}
	meta = seedMeta{Rows: rows, OldestMicros: oldest.UnixMicro(), NewestMicros: oldest.Add(seedSpan).UnixMicro(),
		SeedDuration: time.Since(start).Round(time.Second), Bytes: fi.Size(), SchemaVersion: sqlite.SchemaVersion()}
	raw, _ := json.Marshal(meta)
	if err := os.WriteFile(path+".json", raw, 0o644); err != nil {
		return "", meta, err
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", meta, err
	}
	fmt.Fprintf(os.Stderr, "seeded %d deliveries in %s: %.2f GB (%.0f bytes a delivery), cached as %s\n",
		rows, meta.SeedDuration, float64(meta.Bytes)/1e9, float64(meta.Bytes)/float64(rows), path)
	return path, meta, nil
}

// copyFile copies a cached store for one case (copy_file_range: in the kernel, no user-space
// buffers; a reflink where the file system has them).
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := out.ReadFrom(in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// checkDisk refuses a run whose seeds (and with copies, the cases' copies of them) do not fit on
// the disks, before any is made.
func (b *bench) checkDisk(specs []caseSpec, copies bool) error {
	need := map[string]int64{} // directory -> bytes
	seeded := map[int]bool{}
	for _, c := range specs {
		if c.rows == 0 {
			continue
		}
		size := int64(c.rows) * seedBytesPerRow
		if fi, err := os.Stat(filepath.Join(b.storeCache, seedName(c.rows))); err == nil {
			size = fi.Size()
		} else if !seeded[c.rows] {
			need[b.storeCache] += size
		}
		seeded[c.rows] = true
		if copies {
			need[b.tmp] += size + size/10 // the copy and what the benchmark adds to it
		}
	}
	const margin = 4 << 30 // for everything else on the machine
	byFS := map[uint64]int64{}
	free := map[uint64]int64{}
	for dir, n := range need {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		var st syscall.Statfs_t
		if err := syscall.Statfs(dir, &st); err != nil {
			return err
		}
		fsid := uint64(st.Fsid.X__val[0])<<32 | uint64(uint32(st.Fsid.X__val[1]))
		byFS[fsid] += n
		free[fsid] = int64(st.Bavail) * st.Bsize
	}
	for fsid, n := range byFS {
		if n+margin > free[fsid] {
			return fmt.Errorf("the store cases need about %.1f GB on disk (seeds in %s, copies in %s) plus %d GB to spare, but %.1f GB are free: free space, set TMPDIR or -store-cache elsewhere, or run fewer or smaller @rows cases",
				float64(n)/1e9, b.storeCache, b.tmp, margin>>30, float64(free[fsid])/1e9)
		}
	}
	return nil
}

// seedOnly fills the store cache for the @rows cases of cases (-seed-only).
func (b *bench) seedOnly(cases []string) error {
	var specs []caseSpec
	for _, c := range cases {
		spec, err := parseCase(c)
		if err != nil {
			return err
		}
		specs = append(specs, spec)
	}
	if err := b.checkDisk(specs, false); err != nil {
		return err
	}
	for _, c := range specs {
		if c.rows > 0 {
			if _, _, err := b.seededStore(c.rows); err != nil {
				return err
			}
		}
	}
	return nil
}
