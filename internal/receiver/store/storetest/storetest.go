// Package storetest is the behaviour every store.Store must have, written once and run against each
// implementation (SQLite and a real PostgreSQL) from their own tests.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/intuned-operator/intuned-operator/internal/receiver/store"
)

// Open returns a new, empty store; it must register its own cleanup.
type Open func(t *testing.T) store.Store

// Delivery builds a test delivery whose body embeds the run id.
func Delivery(runID, job, jobRun, api, status string, at time.Time) store.Delivery {
	body := fmt.Sprintf(`{"workspaceId":"ws","project":{"name":"p"},"projectJob":{"id":%q},"projectJobRun":{"id":%q},"apiInfo":{"name":%q,"runId":%q,"result":{"status":%q}}}`,
		job, jobRun, api, runID, status)
	return store.Delivery{RunID: runID, JobID: job, JobRunID: jobRun, Project: "p", APIName: api,
		ResultStatus: status, ReceivedAt: at, Body: []byte(body)}
}

// Run runs the whole suite.
func Run(t *testing.T, open Open) {
	t.Run("SaveGetByteForByte", func(t *testing.T) { testSaveGet(t, open(t)) })
	t.Run("Duplicates", func(t *testing.T) { testDuplicates(t, open(t)) })
	t.Run("ConcurrentDuplicates", func(t *testing.T) { testConcurrent(t, open(t)) })
	t.Run("ListFiltersAndCursor", func(t *testing.T) { testList(t, open(t)) })
	t.Run("QuarantineAndPing", func(t *testing.T) { testQuarantine(t, open(t)) })
	t.Run("ListMaxBytes", func(t *testing.T) { testListMaxBytes(t, open(t)) })
	t.Run("JobRunSummaries", func(t *testing.T) { testJobRunSummaries(t, open(t)) })
	t.Run("Backfilled", func(t *testing.T) { testBackfilled(t, open(t)) })
	t.Run("QuarantineOnce", func(t *testing.T) { testQuarantineOnce(t, open(t)) })
	t.Run("Prune", func(t *testing.T) { testPrune(t, open(t)) })
	t.Run("PruneKeepsCursor", func(t *testing.T) { testPruneKeepsCursor(t, open(t)) })
}

func testSaveGet(t *testing.T, s store.Store) {
	ctx := context.Background()
	at := time.Date(2026, 1, 2, 3, 4, 5, 123456000, time.UTC)
	d := Delivery("run-a", "job-1", "jr-1", "list", "completed", at)
	d.Body = []byte("{ \"odd\" :\t\"spacing\\u00e9\", \"é\": [1,2 ] }\n") // stored as-is, not re-encoded
	noJob := Delivery("run-b", "", "", "details", "failed", at)
	res, err := s.Save(ctx, []store.Delivery{d, noJob})
	if err != nil {
		t.Fatal(err)
	}
	if res[0] != (store.Result{}) || res[1] != (store.Result{}) {
		t.Fatalf("results = %+v, want both stored", res)
	}
	for _, want := range []store.Delivery{d, noJob} {
		got, err := s.Get(ctx, want.RunID)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Body, want.Body) {
			t.Errorf("body changed:\n got %q\nwant %q", got.Body, want.Body)
		}
		got.Body, want.Body = nil, nil
		if !got.ReceivedAt.Equal(want.ReceivedAt) {
			t.Errorf("receivedAt %v, want %v", got.ReceivedAt, want.ReceivedAt)
		}
		got.ReceivedAt = want.ReceivedAt
		if got.Delivery.RunID != want.RunID || got.JobID != want.JobID || got.JobRunID != want.JobRunID ||
			got.Project != want.Project || got.APIName != want.APIName || got.ResultStatus != want.ResultStatus {
			t.Errorf("got %+v, want %+v", got.Delivery, want)
		}
	}
	if _, err := s.Get(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get(missing) = %v, want ErrNotFound", err)
	}
}

func testDuplicates(t *testing.T, s store.Store) {
	ctx := context.Background()
	now := time.Now()
	first := Delivery("r1", "j", "jr", "a", "completed", now)
	r2 := Delivery("r2", "j", "jr", "a", "completed", now)
	r4 := Delivery("r4", "j", "jr", "a", "completed", now)
	stored, same := store.Result{}, func(d store.Delivery) store.Result {
		return store.Result{Dup: true, StoredBytes: int64(len(d.Body))}
	}
	conflict := func(d store.Delivery) store.Result {
		return store.Result{Dup: true, Conflict: true, StoredBytes: int64(len(d.Body))}
	}
	steps := []saveStep{
		{"new", []store.Delivery{first, r2}, []store.Result{stored, stored}},
		{"same body again", []store.Delivery{r2}, []store.Result{same(r2)}},
		{"other body, and a new one", []store.Delivery{Delivery("r2", "j", "jr", "a", "failed", now), Delivery("r3", "j", "jr", "a", "completed", now)},
			[]store.Result{conflict(r2), stored}},
		{"same run twice in one batch", []store.Delivery{r4, r4}, []store.Result{stored, same(r4)}},
		{"conflict within one batch", []store.Delivery{Delivery("r5", "j", "jr", "a", "completed", now), Delivery("r5", "j", "jr", "a", "failed", now)},
			[]store.Result{stored, conflict(Delivery("r5", "j", "jr", "a", "completed", now))}},
	}
	saveSteps(t, s, steps)
	// The first body wins; duplicates never overwrite.
	for _, id := range []string{"r2", "r4", "r5"} {
		got, err := s.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if got.ResultStatus != "completed" || !bytes.Contains(got.Body, []byte(`"completed"`)) {
			t.Errorf("%s was overwritten by a duplicate", id)
		}
	}
	recs, err := s.List(ctx, store.Filter{}, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 5 {
		t.Errorf("stored %d deliveries, want 5", len(recs))
	}
}

// saveStep is one Save of a batch and the results it must give.
type saveStep struct {
	name  string
	batch []store.Delivery
	want  []store.Result
}

// saveSteps saves each step's batch in turn and checks its results.
func saveSteps(t *testing.T, s store.Store, steps []saveStep) {
	t.Helper()
	for _, st := range steps {
		res, err := s.Save(context.Background(), st.batch)
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if fmt.Sprint(res) != fmt.Sprint(st.want) {
			t.Errorf("%s: results = %+v, want %+v", st.name, res, st.want)
		}
	}
}

func testConcurrent(t *testing.T, s store.Store) {
	ctx := context.Background()
	const writers, ids = 8, 20
	var mu sync.Mutex
	stored := map[string]int{}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range ids {
				id := fmt.Sprintf("c%d", (i+w)%ids)
				res, err := s.Save(ctx, []store.Delivery{Delivery(id, "j", "jr", "a", "completed", time.Now())})
				if err != nil {
					t.Error(err)
					return
				}
				if res[0].Conflict {
					t.Errorf("%s: identical bodies reported as a conflict", id)
				}
				if !res[0].Dup {
					mu.Lock()
					stored[id]++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	for i := range ids {
		if n := stored[fmt.Sprintf("c%d", i)]; n != 1 {
			t.Errorf("c%d reported stored %d times, want 1", i, n)
		}
	}
}

func testList(t *testing.T, s store.Store) {
	ctx := context.Background()
	t0 := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	var batch []store.Delivery
	for i := range 10 {
		job, status := "job-a", "completed"
		if i%2 == 1 {
			job = "job-b"
		}
		if i%3 == 0 {
			status = "failed"
		}
		batch = append(batch, Delivery(fmt.Sprintf("l%02d", i), job, "jr-"+job, "api", status, t0.Add(time.Duration(i)*time.Minute)))
	}
	if _, err := s.Save(ctx, batch); err != nil {
		t.Fatal(err)
	}
	ids := func(f store.Filter, limit int) []string {
		recs, err := s.List(ctx, f, limit)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range recs {
			out = append(out, r.RunID)
		}
		return out
	}
	cases := []struct {
		name string
		f    store.Filter
		want string
	}{
		{"all", store.Filter{}, "[l00 l01 l02 l03 l04 l05 l06 l07 l08 l09]"},
		{"job", store.Filter{JobID: "job-b"}, "[l01 l03 l05 l07 l09]"},
		{"job run", store.Filter{JobRunID: "jr-job-a"}, "[l00 l02 l04 l06 l08]"},
		{"status", store.Filter{ResultStatus: "failed"}, "[l00 l03 l06 l09]"},
		{"api", store.Filter{APIName: "other"}, "[]"},
		{"since", store.Filter{Since: t0.Add(7 * time.Minute)}, "[l07 l08 l09]"},
		{"job and status", store.Filter{JobID: "job-a", ResultStatus: "failed"}, "[l00 l06]"},
	}
	for _, c := range cases {
		if got := fmt.Sprint(ids(c.f, 100)); got != c.want {
			t.Errorf("%s: got %s, want %s", c.name, got, c.want)
		}
	}
	// Page through with a cursor, 3 at a time: every delivery exactly once, in order.
	var all []string
	f := store.Filter{}
	for {
		recs, err := s.List(ctx, f, 3)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			break
		}
		for _, r := range recs {
			all = append(all, r.RunID)
		}
		f.AfterSeq = recs[len(recs)-1].Seq
	}
	if got := fmt.Sprint(all); got != cases[0].want {
		t.Errorf("paged: got %s", got)
	}
}

func testQuarantine(t *testing.T, s store.Store) {
	ctx := context.Background()
	if err := s.Quarantine(ctx, store.Rejected{Reason: "invalid_json", ReceivedAt: time.Now(), Body: []byte("{nope")}); err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}
}

// testListMaxBytes: a page stops before the body that would take it past MaxBytes, holds at least
// one delivery however large, and paging by cursor still returns everything once.
func testListMaxBytes(t *testing.T, s store.Store) {
	ctx := context.Background()
	sizes := []int{100, 300, 5000, 200, 200, 200}
	var batch []store.Delivery
	for i, n := range sizes {
		d := Delivery(fmt.Sprintf("b%d", i), "j", "jr", "a", "completed", time.Now())
		d.Body = []byte(fmt.Sprintf(`{"pad":"%s"}`, bytes.Repeat([]byte("x"), n-10)))
		batch = append(batch, d)
	}
	if _, err := s.Save(ctx, batch); err != nil {
		t.Fatal(err)
	}
	var pages []string
	f := store.Filter{MaxBytes: 1000}
	for len(pages) < 10 {
		recs, err := s.List(ctx, f, 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			break
		}
		var ids []string
		for _, r := range recs {
			ids = append(ids, r.RunID)
		}
		pages = append(pages, fmt.Sprint(ids))
		f.AfterSeq = recs[len(recs)-1].Seq
	}
	if got, want := fmt.Sprint(pages), "[[b0 b1] [b2] [b3 b4 b5]]"; got != want {
		t.Errorf("pages by 1000 bytes = %s, want %s", got, want)
	}
	recs, err := s.List(ctx, store.Filter{MaxBytes: 1000, JobID: "j"}, 1)
	if err != nil || len(recs) != 1 {
		t.Fatalf("limit 1 with a byte bound: %d %v", len(recs), err)
	}
}

// testJobRunSummaries: counts by API and status, conflicts and quarantined bodies per JobRun, the
// receive time bounds, and paging through the JobRuns by id.
func testJobRunSummaries(t *testing.T, s store.Store) {
	ctx := context.Background()
	t0 := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	at := func(min int) time.Time { return t0.Add(time.Duration(min) * time.Minute) }
	batches := [][]store.Delivery{
		{
			Delivery("a1", "job", "jr-a", "list", "completed", at(3)),
			Delivery("a2", "job", "jr-a", "list", "completed", at(1)),
			Delivery("a3", "job", "jr-a", "list", "failed", at(2)),
			Delivery("a4", "job", "jr-a", "details", "completed", at(7)),
			Delivery("b1", "job", "jr-b", "list", "completed", at(5)),
			Delivery("api-run", "", "", "list", "completed", at(4)), // Run API: no JobRun
		},
		// A conflicting duplicate of a1 (another status): kept aside, counted as jr-a's conflict.
		{Delivery("a1", "job", "jr-a", "list", "failed", at(9))},
	}
	for _, b := range batches {
		if _, err := s.Save(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range []store.Rejected{
		{Reason: "not_sink_body: missing apiInfo.runId", JobRunID: "jr-a"},
		{Reason: "not_sink_body: missing apiInfo.runId", JobRunID: "jr-q"}, // only quarantined bodies
		{Reason: "invalid_json: body is not valid JSON"},                   // JobRun unknown
	} {
		r.ReceivedAt, r.Body = at(8), []byte("{}")
		if err := s.Quarantine(ctx, r); err != nil {
			t.Fatal(err)
		}
	}

	got, err := s.SummarizeJobRuns(ctx, []string{"jr-a", "jr-none", "jr-b", "jr-q"})
	if err != nil {
		t.Fatal(err)
	}
	rc := func(api, status string, n int64) store.ResultCount {
		return store.ResultCount{APIName: api, ResultStatus: status, Count: n}
	}
	want := []store.JobRunSummary{
		{JobRunID: "jr-a", Results: []store.ResultCount{rc("details", "completed", 1), rc("list", "completed", 2), rc("list", "failed", 1)},
			Conflicts: 1, Quarantined: 1, FirstReceivedAt: at(1), LastReceivedAt: at(7)},
		{JobRunID: "jr-none"},
		{JobRunID: "jr-b", Results: []store.ResultCount{rc("list", "completed", 1)}, FirstReceivedAt: at(5), LastReceivedAt: at(5)},
		{JobRunID: "jr-q", Quarantined: 1},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d summaries, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if fmt.Sprint(g.Results) != fmt.Sprint(w.Results) || g.JobRunID != w.JobRunID || g.Conflicts != w.Conflicts ||
			g.Quarantined != w.Quarantined || !g.FirstReceivedAt.Equal(w.FirstReceivedAt) || !g.LastReceivedAt.Equal(w.LastReceivedAt) {
			t.Errorf("summary %d:\n got %+v\nwant %+v", i, g, w)
		}
	}
	if got[0].Stored() != 4 || !got[1].Empty() || got[3].Empty() {
		t.Errorf("Stored() = %d, want 4; Empty() of jr-none %v, of jr-q %v", got[0].Stored(), got[1].Empty(), got[3].Empty())
	}

	pages := []struct {
		after string
		limit int
		want  string
	}{
		{"", 2, "[jr-a jr-b]"},
		{"jr-b", 10, "[jr-q]"},
		{"jr-a", 1, "[jr-b]"},
		{"jr-q", 10, "[]"},
		{"jr-", 10, "[jr-a jr-b jr-q]"}, // any string works as a lower bound
	}
	for _, p := range pages {
		ids, err := s.JobRunsAfter(ctx, p.after, p.limit)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(ids) != p.want {
			t.Errorf("JobRunsAfter(%q, %d) = %v, want %s", p.after, p.limit, ids, p.want)
		}
	}
}

// CheckMigrated checks a store opened on a database made by the previous schema that held d and a
// conflicting duplicate of it: both count in d's JobRun summary, and List by JobRun still works.
func CheckMigrated(t *testing.T, s store.Store, d store.Delivery) {
	t.Helper()
	ctx := context.Background()
	sums, err := s.SummarizeJobRuns(ctx, []string{d.JobRunID})
	if err != nil {
		t.Fatal(err)
	}
	if got := sums[0]; got.Stored() != 1 || got.Conflicts != 1 || got.Quarantined != 0 || !got.FirstReceivedAt.Equal(d.ReceivedAt) {
		t.Errorf("summary after migration = %+v, want 1 stored, 1 conflict", got)
	}
	if got := sums[0].Backfilled; got != 0 {
		t.Errorf("%d backfilled after migration, want 0", got)
	}
	if recs, err := s.List(ctx, store.Filter{JobRunID: d.JobRunID}, 10); err != nil || len(recs) != 1 || recs[0].Backfilled {
		t.Errorf("List by JobRun after migration: %d records (%+v), %v; want 1, not backfilled", len(recs), recs, err)
	}
	// A backfilled copy of the migrated delivery is a plain duplicate.
	res, err := s.Save(ctx, []store.Delivery{Backfilled(d)})
	if err != nil || !res[0].Dup || res[0].Conflict {
		t.Errorf("backfilled copy after migration: %+v, %v; want a duplicate, no conflict", res, err)
	}
}

// Backfilled returns d marked as built from a results-file line, with a body of another shape
// than the webhook's (as a results-file line wrapped by the receiver is).
func Backfilled(d store.Delivery) store.Delivery {
	d.Backfilled = true
	d.Body = append([]byte(`{"backfilled":1,`), d.Body[1:]...)
	return d
}

// testBackfilled: a backfilled delivery is stored and read back marked; a run id stored by one
// side is a plain duplicate for the other, in either order and in one batch (the first stays,
// nothing is quarantined as a conflict, whatever the bodies); the summary counts the backfilled.
func testBackfilled(t *testing.T, s store.Store) {
	ctx := context.Background()
	at := time.Date(2026, 6, 2, 0, 0, 0, 0, time.UTC)
	d := func(id string) store.Delivery { return Delivery(id, "job", "jr-bf", "list", "completed", at) }
	dup := store.Result{Dup: true}
	steps := []saveStep{
		{"backfilled, new", []store.Delivery{Backfilled(d("b1")), Backfilled(d("b2"))}, []store.Result{{}, {}}},
		{"webhook after backfill", []store.Delivery{d("b1")}, []store.Result{{Dup: true, StoredBytes: int64(len(Backfilled(d("b1")).Body))}}},
		{"webhook first", []store.Delivery{d("w1"), d("w2")}, []store.Result{{}, {}}},
		{"backfill after webhook", []store.Delivery{Backfilled(d("w1"))}, []store.Result{dup}},
		{"backfill again", []store.Delivery{Backfilled(d("b2")), Backfilled(d("b3"))}, []store.Result{dup, {}}},
		{"both in one batch", []store.Delivery{Backfilled(d("b4")), d("b4"), d("w3"), Backfilled(d("w3"))},
			[]store.Result{{}, {Dup: true, StoredBytes: int64(len(Backfilled(d("b4")).Body))}, {}, dup}},
	}
	saveSteps(t, s, steps)
	for id, backfilled := range map[string]bool{"b1": true, "b2": true, "b3": true, "b4": true, "w1": false, "w2": false, "w3": false} {
		got, err := s.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		want := d(id)
		if backfilled {
			want = Backfilled(want)
		}
		if got.Backfilled != backfilled || !bytes.Equal(got.Body, want.Body) {
			t.Errorf("%s: backfilled %v, body %s; want %v, %s (the first one stays)", id, got.Backfilled, got.Body, backfilled, want.Body)
		}
	}
	recs, err := s.List(ctx, store.Filter{JobRunID: "jr-bf"}, 100)
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	for _, r := range recs {
		listed = append(listed, fmt.Sprint(r.RunID, "=", r.Backfilled))
	}
	if got, want := fmt.Sprint(listed), "[b1=true b2=true w1=false w2=false b3=true b4=true w3=false]"; got != want {
		t.Errorf("listed %s, want %s", got, want)
	}
	sums, err := s.SummarizeJobRuns(ctx, []string{"jr-bf"})
	if err != nil {
		t.Fatal(err)
	}
	if got := sums[0]; got.Stored() != 7 || got.Backfilled != 4 || got.Conflicts != 0 || got.Quarantined != 0 {
		t.Errorf("summary %+v, want 7 stored, 4 backfilled, no conflicts", got)
	}
}

// testQuarantineOnce: a body quarantined Once is kept once per JobRun and body, whether it comes
// again in the same call or a later one; other bodies are kept every time.
func testQuarantineOnce(t *testing.T, s store.Store) {
	ctx := context.Background()
	r := func(jobRun, body string, once bool) store.Rejected {
		return store.Rejected{Reason: "backfill: invalid_json: x", ReceivedAt: time.Now(), Body: []byte(body), JobRunID: jobRun, Once: once}
	}
	calls := [][]store.Rejected{
		{r("jr-1", "{a", true), r("jr-1", "{a", true), r("jr-1", "{b", true)},
		{r("jr-1", "{a", true), r("jr-2", "{a", true)},
		{r("jr-1", "{a", false), r("jr-1", "{a", false)},
		{},
	}
	for _, c := range calls {
		if err := s.Quarantine(ctx, c...); err != nil {
			t.Fatal(err)
		}
	}
	sums, err := s.SummarizeJobRuns(ctx, []string{"jr-1", "jr-2"})
	if err != nil {
		t.Fatal(err)
	}
	if sums[0].Quarantined != 4 || sums[1].Quarantined != 1 {
		t.Errorf("quarantined %d and %d, want 4 (2 once, 2 not) and 1", sums[0].Quarantined, sums[1].Quarantined)
	}
}
