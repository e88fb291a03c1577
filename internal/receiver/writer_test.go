package receiver

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestPendingExpired: the writer drops a queued delivery whose request already gave up, by client
// disconnect or by its deadline (the deadline is no longer a context, so both are checked).
func TestPendingExpired(t *testing.T) {
	now := time.Now()
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	cases := []struct {
		name     string
		ctx      context.Context
		deadline time.Time
		want     error
	}{
		{name: "live", ctx: context.Background(), deadline: now.Add(time.Second), want: nil},
		{name: "client gone", ctx: canceled, deadline: now.Add(time.Second), want: context.Canceled},
		{name: "deadline passed", ctx: context.Background(), deadline: now.Add(-time.Millisecond), want: context.DeadlineExceeded},
		{name: "deadline is now", ctx: context.Background(), deadline: now, want: context.DeadlineExceeded},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := &pending{ctx: c.ctx, deadline: c.deadline}
			if got := p.expired(now); !errors.Is(got, c.want) || (c.want == nil) != (got == nil) {
				t.Fatalf("expired = %v, want %v", got, c.want)
			}
		})
	}
}

// TestPendingFirstAnswerWins: the watchdog and the writer may both answer a delivery (deadline,
// then the late commit); the request sees the first answer and neither of them blocks.
func TestPendingFirstAnswerWins(t *testing.T) {
	p := &pending{result: make(chan outcome, 1)}
	p.answer(outcome{err: context.DeadlineExceeded})
	p.answer(outcome{}) // the commit finished after the deadline: dropped, does not block
	if o := <-p.result; !errors.Is(o.err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want the deadline", o.err)
	}
}
