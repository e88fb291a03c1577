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
