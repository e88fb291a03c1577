package intunedjob

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/intuned"
	"github.com/intuned-operator/intuned-operator/internal/intunedsim"
	"github.com/intuned-operator/intuned-operator/internal/intunedsim/simtest"
	"github.com/intuned-operator/intuned-operator/internal/receiver/receiverapi"
)

// resultsFile is a results file of n Runs of APIs a and b, every third one
// failed, each line padded to about lineBytes.
func resultsFile(n, lineBytes int) []byte {
	var b bytes.Buffer
	for i := range n {
		api, status := "a", "completed"
		if i%2 == 1 {
			api = "b"
		}
		if i%3 == 2 {
			status = "failed"
		}
		pad := strings.Repeat("x", max(lineBytes-80, 0))
		fmt.Fprintf(&b, `{"name":%q,"runId":"run-%05d","parameters":{"pad":%q},"result":{"status":%q}}`+"\n", api, i, pad, status)
	}
	return b.Bytes()
}

// sentRuns records what a pass sends; the receiver side is tested with the
// real receiver in test/e2e and internal/receiver.
type sentRuns struct {
	lines   map[string]int // line → times sent
	batches int
}

func (s *sentRuns) send(_ context.Context, ndjson []byte) (receiverapi.BackfillResult, error) {
	s.batches++
	var res receiverapi.BackfillResult
	for i, l := range bytes.Split(bytes.TrimSuffix(ndjson, []byte("\n")), []byte("\n")) {
		s.lines[string(l)]++
		if !bytes.HasPrefix(l, []byte("{")) {
			res.Invalid++
			res.Errors = append(res.Errors, receiverapi.LineError{Line: i + 1, Code: "invalid_json", Message: "not JSON"})
		}
	}
	return res, nil
}

func TestResultsPass(t *testing.T) {
	file := resultsFile(3000, 1000) // ~3 MB: several batches
	cases := []struct {
		name    string
		filter  sinkFilter
		want    int64
		slices  bool // a deadline in the past: one batch per pass, resumed from progress
		corrupt bool
	}{
		{"every result, one pass", sinkFilter{}, 3000, false, false},
		{"every result, resumed after every batch", sinkFilter{}, 3000, true, false},
		{"apisToSend and skipOnFail", sinkFilter{apis: []string{"a"}, skipOnFail: true}, 1000, true, false},
		{"a line that is not JSON is sent and counted invalid", sinkFilter{}, 2999, false, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := file
			if c.corrupt {
				f = bytes.Replace(file, []byte(`{"name":"a","runId":"run-00010"`), []byte(`garbage"run-00010"`), 1)
			}
			sent := &sentRuns{lines: map[string]int{}}
			progress := &intunedv1alpha1.BackfillProgress{}
			passes := 0
			for !progress.Done {
				passes++
				p := &resultsPass{filter: c.filter, progress: progress, size: int64(len(f)), send: sent.send}
				if c.slices {
					p.deadline = time.Unix(1, 0)
				}
				if err := p.run(context.Background(), bytes.NewReader(f[progress.Offset:])); err != nil {
					t.Fatal(err)
				}
				if passes > 10000 {
					t.Fatal("no progress")
				}
			}
			if progress.Matched != c.want || progress.Offset != int64(len(f)) || progress.Lines != 3000 {
				t.Fatalf("progress %+v, want matched %d, offset %d, 3000 lines", progress, c.want, len(f))
			}
			sentValid := 0
			for l, n := range sent.lines {
				if n != 1 {
					t.Fatalf("line sent %d times: %.60s", n, l)
				}
				if strings.HasPrefix(l, "{") {
					sentValid++
				}
			}
			if int64(sentValid) != c.want {
				t.Fatalf("sent %d results, want %d", sentValid, c.want)
			}
			if c.corrupt {
				garbage := 0
				for l, n := range sent.lines {
					if strings.HasPrefix(l, "garbage") {
						garbage += n
					}
				}
				if progress.Invalid != 1 || garbage != 1 {
					t.Fatalf("invalid %d, sent %d times; the corrupt line must be counted and sent once, for quarantine", progress.Invalid, garbage)
				}
			}
			t.Logf("%d passes, %d batches", passes, sent.batches)
		})
	}
}

// A pass that stops between a batch's commit on the receiver and the
// progress in status re-sends that batch only: the receiver's runId
// de-duplication makes it harmless.
func TestResultsPassResendsAtMostOneBatch(t *testing.T) {
	file := resultsFile(2500, 1000)
	sent := &sentRuns{lines: map[string]int{}}
	progress := &intunedv1alpha1.BackfillProgress{}
	crash := errors.New("manager killed")
	calls := 0
	p := &resultsPass{progress: progress, size: int64(len(file)), send: func(ctx context.Context, b []byte) (receiverapi.BackfillResult, error) {
		calls++
		res, _ := sent.send(ctx, b)
		if calls == 2 {
			return res, crash // stored, but the answer never came back
		}
		return res, nil
	}}
	if err := p.run(context.Background(), bytes.NewReader(file)); !errors.Is(err, crash) {
		t.Fatalf("err %v", err)
	}
	resumed := &resultsPass{progress: progress, size: int64(len(file)), send: sent.send}
	if err := resumed.run(context.Background(), bytes.NewReader(file[progress.Offset:])); err != nil || !progress.Done {
		t.Fatalf("resume: %v, %+v", err, progress)
	}
	twice := 0
	for _, n := range sent.lines {
		if n > 1 {
			twice++
		}
	}
	if len(sent.lines) != 2500 || twice == 0 || twice > backfillBatchBytes/1000+1 {
		t.Fatalf("%d distinct lines, %d sent twice; want 2500 and at most one batch again", len(sent.lines), twice)
	}
	if progress.Matched != 2500 {
		t.Fatalf("matched %d, want 2500 (a re-sent batch is counted once)", progress.Matched)
	}
}

func TestResultsPassTruncated(t *testing.T) {
	file := resultsFile(10, 200)
	cut := file[:len(file)-50]
	progress := &intunedv1alpha1.BackfillProgress{}
	sent := &sentRuns{lines: map[string]int{}}
	p := &resultsPass{progress: progress, size: int64(len(file)), send: sent.send}
	if err := p.run(context.Background(), bytes.NewReader(cut)); !errors.Is(err, errTruncated) || progress.Done {
		t.Fatalf("err %v, progress %+v: a short file must not finish the backfill", err, progress)
	}
}

// An expired results URL is requested again (Get Job Run signs a new one)
// and the pass goes on; a second refusal in a row is an error.
func TestReadResultsRequestsAnExpiredURLAgain(t *testing.T) {
	sim := simtest.New(t, intunedsim.Options{Clock: intunedsim.NewFakeClock(time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)),
		RateLimit: intunedsim.RateLimitOff, Catalogue: intunedsim.CatalogueOptions{Products: 3}})
	api, err := intuned.New(intuned.Options{BaseURL: sim.APIBase, WorkspaceID: sim.WorkspaceID, APIKey: sim.APIKey,
		Pacer: intuned.NewPacer(intuned.PacerOptions{Disabled: true})})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := api.CreateJob(ctx, testProject, intuned.CreateJobRequest{ID: "expiring", Payload: []intuned.PayloadItem{{APIName: "list", Parameters: []byte(`{}`)}}}); err != nil {
		t.Fatal(err)
	}
	trig, err := api.TriggerJob(ctx, testProject, "expiring")
	if err != nil {
		t.Fatal(err)
	}
	sim.Advance(time.Hour)
	getResults := func(ctx context.Context) (*intuned.JobRunResults, error) {
		resp, err := api.GetJobRun(ctx, testProject, "expiring", trig.JobRunID)
		if err != nil {
			return nil, err
		}
		return resp.Results, nil
	}
	stale, err := getResults(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sim.Advance(2 * time.Hour) // past the URL's hour

	r := &Reconciler{}
	progress := &intunedv1alpha1.BackfillProgress{}
	if err := r.readResults(ctx, stale, &resultsPass{progress: progress}, getResults); err != nil || !progress.Done || progress.Matched != 4 {
		t.Fatalf("err %v, progress %+v; want the whole file (4 Runs) through a new URL", err, progress)
	}
	again := 0
	err = r.readResults(ctx, stale, &resultsPass{progress: &intunedv1alpha1.BackfillProgress{}}, func(context.Context) (*intuned.JobRunResults, error) {
		again++
		return stale, nil
	})
	if !errors.Is(err, intuned.ErrResultsURLExpired) || again != 1 {
		t.Fatalf("err %v after %d new URLs; want ErrResultsURLExpired after one", err, again)
	}
}

// A line the receiver refuses as too large (413) is named and counted
// invalid; the lines after it still get in.
func TestResultsPassPassesALineTooLargeForTheReceiver(t *testing.T) {
	file := append(resultsFile(3, 200), resultsFile(1, 3<<20)...)
	file = append(file, bytes.Replace(resultsFile(1, 200), []byte("run-00000"), []byte("run-after"), 1)...)
	sent := &sentRuns{lines: map[string]int{}}
	progress := &intunedv1alpha1.BackfillProgress{}
	p := &resultsPass{progress: progress, size: int64(len(file)), send: func(ctx context.Context, b []byte) (receiverapi.BackfillResult, error) {
		if len(b) > 2<<20 {
			return receiverapi.BackfillResult{}, &receiverapi.APIError{StatusCode: 413, Code: "too_large", Message: "request body too large"}
		}
		return sent.send(ctx, b)
	}}
	if err := p.run(context.Background(), bytes.NewReader(file)); err != nil || !progress.Done {
		t.Fatalf("err %v, progress %+v", err, progress)
	}
	if progress.Matched != 4 || progress.Invalid != 1 || len(sent.lines) != 4 || len(p.notes) != 1 || !strings.Contains(p.notes[0], "line 4: too large") {
		t.Fatalf("progress %+v, %d lines sent, notes %q", progress, len(sent.lines), p.notes)
	}
}
