package intunedjob

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/receiver/receiverapi"
)

// Backfill streams a JobRun's results file (Intuned's Get Job Run
// results.signed_url: one JSON line per Run, the apiInfo of its sink body)
// and sends the lines the sink would have delivered to the receiver, in
// batches. Memory stays bounded by one batch (or one line larger than a
// batch) whatever the file's size. The receiver stores each result once by
// runId, so a batch sent twice (the manager stopped before recording its
// progress) changes nothing; progress (the file offset the receiver has
// acknowledged) is kept in status so a restarted manager resumes there.

const (
	// backfillBatchBytes is the size of one request to the receiver.
	backfillBatchBytes = 1 << 20
	// maxResultLine bounds one line held in memory; a longer line is
	// skipped and reported (the receiver's own limit is lower).
	maxResultLine = 32 << 20
	// maxReportedLines bounds the invalid lines named in status.
	maxReportedLines = 3
)

// resultsPass is one pass over a results file: it counts the results the
// sink would have delivered and, with send set, sends them.
type resultsPass struct {
	filter sinkFilter
	// send stores one batch in the receiver; nil counts only.
	send func(ctx context.Context, ndjson []byte) (receiverapi.BackfillResult, error)
	// progress is advanced as the receiver acknowledges batches.
	progress *intunedv1alpha1.BackfillProgress
	// size is the file's size as Intuned reported it (0: unknown), to tell
	// a truncated download from the end of the file.
	size int64
	// deadline ends the pass early (without error) after the batch in
	// flight: a reconcile does not hold its worker for a whole large file.
	deadline time.Time
	// notes names the first lines that were not stored.
	notes []string

	batch      bytes.Buffer
	batchLines []int64 // file line number of each line in batch
	pos        int64   // bytes of the file consumed so far
	line       int64   // lines consumed so far
	// matched and invalid count lines since the last commit;
	// batchInvalid the lines of the batch judged invalid here.
	matched, invalid, batchInvalid int64
}

// errSliceEnd ends a pass at its deadline.
var errSliceEnd = errors.New("backfill slice ended")

// errTruncated means the results file ended before its reported size.
var errTruncated = errors.New("the results file ended early")

// run reads body (the file from progress.Offset on) to its end or the
// deadline. It returns nil with progress.Done set at the end of the file.
func (p *resultsPass) run(ctx context.Context, body io.Reader) error {
	p.pos, p.line = p.progress.Offset, p.progress.Lines
	r := bufio.NewReaderSize(body, 64<<10)
	for {
		line, n, tooLong, err := readLine(r)
		if n > 0 {
			p.pos += n
			p.line++
			if err := p.take(ctx, line, tooLong); errors.Is(err, errSliceEnd) {
				return nil // every line before this one is acknowledged: resume here
			} else if err != nil {
				return err
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("reading the results file at byte %d: %w", p.pos, err)
		}
	}
	if err := p.flush(ctx); err != nil {
		return err
	}
	if p.size > 0 && p.pos < p.size {
		return fmt.Errorf("%w: after %d of %d bytes", errTruncated, p.pos, p.size)
	}
	p.progress.Done = true
	return nil
}

// take handles one line: skipped when the sink would not have sent it,
// else counted and, when sending, batched.
func (p *resultsPass) take(ctx context.Context, line []byte, tooLong bool) error {
	send := p.send != nil
	switch {
	case tooLong:
		p.invalid++
		p.note(p.line, fmt.Sprintf("longer than %d MiB, not stored", maxResultLine>>20))
		return p.ackIfIdle()
	case len(bytes.TrimSpace(line)) == 0:
		return p.ackIfIdle()
	}
	judged := true
	if !p.filter.all() || !send {
		// Reading the line costs most of the manager's CPU here
		// (make bench-backfill): only done when a filter or a count needs
		// it; otherwise the receiver judges the line.
		var res struct {
			Name   string `json:"name"`
			Result struct {
				Status string `json:"status"`
			} `json:"result"`
		}
		judged = json.Unmarshal(line, &res) == nil && res.Name != ""
		if judged && !p.filter.delivers(res.Name, res.Result.Status) {
			return p.ackIfIdle()
		}
	}
	if send && p.batch.Len() > 0 && p.batch.Len()+len(line) > backfillBatchBytes {
		// Send what is batched first; the progress it records must end
		// before this line.
		p.pos -= int64(len(line))
		p.line--
		if err := p.flush(ctx); err != nil {
			return err
		}
		if !p.deadline.IsZero() && time.Now().After(p.deadline) {
			return errSliceEnd // this line is read again by the next pass
		}
		p.pos += int64(len(line))
		p.line++
	}
	if judged {
		p.matched++
	} else {
		// Not a result we can judge: sent all the same, so the receiver
		// keeps it in quarantine and nothing is lost.
		p.invalid++
		p.batchInvalid++
		if !send {
			p.note(p.line, "not a JSON result")
		}
	}
	if !send {
		return p.ackIfIdle()
	}
	p.batch.Write(bytes.TrimRight(line, "\r\n"))
	p.batch.WriteByte('\n')
	p.batchLines = append(p.batchLines, p.line)
	if p.batch.Len() >= backfillBatchBytes {
		return p.flush(ctx)
	}
	return nil
}

// ackIfIdle records a line that needs no receiver answer as done when no
// batch is waiting for one.
func (p *resultsPass) ackIfIdle() error {
	if p.batch.Len() == 0 {
		p.commit()
	}
	return nil
}

// flush sends the batch and, once the receiver has stored it, records the
// progress up to the end of its last line.
func (p *resultsPass) flush(ctx context.Context) error {
	if p.batch.Len() == 0 {
		p.commit()
		return nil
	}
	res, err := p.send(ctx, p.batch.Bytes())
	var apiErr *receiverapi.APIError
	if errors.As(err, &apiErr) && apiErr.StatusCode == http.StatusRequestEntityTooLarge && len(p.batchLines) == 1 {
		// One line larger than the receiver ever takes: named, counted
		// invalid, and passed, so the rest of the file still gets in.
		p.note(p.batchLines[0], "too large for the receiver ("+apiErr.Code+"), not stored")
		res, err = receiverapi.BackfillResult{Invalid: 1}, nil
	}
	if err != nil {
		return err
	}
	for _, e := range res.Errors {
		if e.Line >= 1 && e.Line <= len(p.batchLines) {
			p.note(p.batchLines[e.Line-1], e.Code+": "+e.Message)
		}
	}
	// The receiver judges a result more strictly than the filter above: a
	// line it refused (and quarantined) is invalid, not a stored result.
	if extra := int64(res.Invalid) - p.batchInvalid; extra > 0 {
		p.matched -= extra
		p.invalid += extra
	}
	p.batch.Reset()
	p.batchLines, p.batchInvalid = p.batchLines[:0], 0
	p.commit()
	return nil
}

// commit moves the counts of acknowledged lines into progress.
func (p *resultsPass) commit() {
	p.progress.Offset, p.progress.Lines = p.pos, p.line
	p.progress.Matched += p.matched
	p.progress.Invalid += p.invalid
	p.matched, p.invalid = 0, 0
}

func (p *resultsPass) note(line int64, why string) {
	if len(p.notes) < maxReportedLines {
		p.notes = append(p.notes, fmt.Sprintf("line %d: %s", line, why))
	}
}

// readLine reads one line with its newline. n is the number of bytes
// consumed; a line longer than maxResultLine is consumed but not returned
// (tooLong).
func readLine(r *bufio.Reader) (line []byte, n int64, tooLong bool, err error) {
	for {
		chunk, err := r.ReadSlice('\n')
		n += int64(len(chunk))
		if !tooLong {
			if len(line)+len(chunk) > maxResultLine {
				tooLong, line = true, nil
			} else {
				line = append(line, chunk...)
			}
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		return line, n, tooLong, err
	}
}
