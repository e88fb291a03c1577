package token

import (
	"bytes"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestGenerateAndFingerprint(t *testing.T) {
	tok, err := Generate(bytes.NewReader(bytes.Repeat([]byte{0xab}, 32)))
	if err != nil || len(tok) != 43 || strings.ContainsAny(tok, "+/=") {
		t.Fatalf("Generate = %q, %v; want 43 base64url characters", tok, err)
	}
	if _, err := Generate(bytes.NewReader(make([]byte, 5))); err == nil {
		t.Error("Generate with too little randomness succeeded")
	}
	if fp := Fingerprint(tok); len(fp) != 16 || fp == Fingerprint(tok+"x") || strings.Contains(tok, fp) {
		t.Errorf("Fingerprint = %q: want 16 hex characters, distinct per token", fp)
	}
	if Fingerprint("") != "" {
		t.Error(`Fingerprint("") is not ""`)
	}
}

// TestStep is every transition of the rotation state machine.
func TestStep(t *testing.T) {
	t0 := time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	ptr := func(d time.Duration) *time.Time { v := at(d); return &v }
	const delay, grace = 90 * time.Second, time.Hour
	on := func(name, tok string) Job { return Job{Name: name, Fingerprint: Fingerprint(tok)} }

	tests := []struct {
		name string
		s    State
		in   Inputs
		now  time.Time
		want State
		out  Outcome
		// lost: the token jobs push is gone with the Secret (the one
		// case where the receiver stops accepting it).
		lost bool
	}{
		{name: "first token: generated, no staging (nothing pushed yet)",
			in: Inputs{Fresh: "A", FreshRead: "R"}, now: t0,
			want: State{Current: "A", ReadToken: "R"}},
		{name: "steady: nothing to do",
			s:  State{Current: "A", ReadToken: "R"},
			in: Inputs{Fresh: "X", FreshRead: "Y", Jobs: []Job{on("j", "A")}}, now: t0,
			want: State{Current: "A", ReadToken: "R"}},
		{name: "rotation requested: the fresh token is staged",
			s:  State{Current: "A", ReadToken: "R"},
			in: Inputs{RotateRequest: "1", Fresh: "B", Delay: delay}, now: t0,
			want: State{Current: "A", Next: "B", Staged: true, StagedAt: t0, ReadToken: "R", RotationHandled: "1"},
			out:  Outcome{RequeueAfter: delay}},
		{name: "handled request does not rotate again",
			s:  State{Current: "A", ReadToken: "R", RotationHandled: "1"},
			in: Inputs{RotateRequest: "1", Fresh: "B", Delay: delay}, now: t0,
			want: State{Current: "A", ReadToken: "R", RotationHandled: "1"}},
		{name: "staged, delay not over: wait the rest",
			s:  State{Current: "A", Next: "B", Staged: true, StagedAt: t0, ReadToken: "R", RotationHandled: "1"},
			in: Inputs{RotateRequest: "1", Fresh: "X", Delay: delay}, now: at(30 * time.Second),
			want: State{Current: "A", Next: "B", Staged: true, StagedAt: t0, ReadToken: "R", RotationHandled: "1"},
			out:  Outcome{RequeueAfter: 60 * time.Second}},
		{name: "staged with unknown time: the delay starts over",
			s:  State{Current: "A", Next: "B", Staged: true, ReadToken: "R"},
			in: Inputs{Delay: delay}, now: at(time.Hour),
			want: State{Current: "A", Next: "B", Staged: true, StagedAt: at(time.Hour), ReadToken: "R"},
			out:  Outcome{RequeueAfter: delay}},
		{name: "propagated: swap; jobs still push the old token",
			s:  State{Current: "A", Next: "B", Staged: true, StagedAt: t0, ReadToken: "R"},
			in: Inputs{Delay: delay, Grace: grace, Jobs: []Job{on("a", "A"), on("b", "A")}}, now: at(delay),
			want: State{Current: "B", Previous: "A", ReadToken: "R"},
			out:  Outcome{JobsBehind: []string{"a", "b"}}},
		{name: "some jobs lagging: previous kept, no timer (their updates wake us)",
			s:  State{Current: "B", Previous: "A", ReadToken: "R"},
			in: Inputs{Grace: grace, Jobs: []Job{on("a", "B"), on("b", "A")}}, now: at(time.Hour),
			want: State{Current: "B", Previous: "A", ReadToken: "R"},
			out:  Outcome{JobsBehind: []string{"b"}}},
		{name: "all caught up: grace window starts",
			s:  State{Current: "B", Previous: "A", ReadToken: "R"},
			in: Inputs{Grace: grace, Jobs: []Job{on("a", "B"), on("b", "B")}}, now: t0,
			want: State{Current: "B", Previous: "A", CaughtUpAt: t0, ReadToken: "R"},
			out:  Outcome{RequeueAfter: grace, PreviousUntil: at(grace)}},
		{name: "a JobRun started with the old sink still runs: previous kept",
			s:    State{Current: "B", Previous: "A", CaughtUpAt: t0, ReadToken: "R"},
			in:   Inputs{Grace: grace, Jobs: []Job{{Name: "a", Fingerprint: Fingerprint("B"), HasRun: true, RunStart: ptr(-time.Minute)}}},
			now:  at(2 * grace),
			want: State{Current: "B", Previous: "A", CaughtUpAt: t0, ReadToken: "R"},
			out:  Outcome{RunsInFlight: []string{"a"}, PreviousUntil: at(grace)}},
		{name: "that run ended: grace runs from its end",
			s: State{Current: "B", Previous: "A", CaughtUpAt: t0, ReadToken: "R"},
			in: Inputs{Grace: grace, Jobs: []Job{{Name: "a", Fingerprint: Fingerprint("B"), HasRun: true,
				RunStart: ptr(-time.Minute), RunEnd: ptr(30 * time.Minute)}}},
			now:  at(grace),
			want: State{Current: "B", Previous: "A", CaughtUpAt: t0, ReadToken: "R"},
			out:  Outcome{RequeueAfter: 30 * time.Minute, PreviousUntil: at(grace + 30*time.Minute)}},
		{name: "grace over: previous dropped",
			s:  State{Current: "B", Previous: "A", CaughtUpAt: t0, ReadToken: "R"},
			in: Inputs{Grace: grace, Jobs: []Job{on("a", "B")}}, now: at(grace),
			want: State{Current: "B", ReadToken: "R"}},
		{name: "a job that falls behind again resets the grace window",
			s:  State{Current: "B", Previous: "A", CaughtUpAt: t0, ReadToken: "R"},
			in: Inputs{Grace: grace, Jobs: []Job{on("a", "A")}}, now: at(grace),
			want: State{Current: "B", Previous: "A", ReadToken: "R"},
			out:  Outcome{JobsBehind: []string{"a"}}},
		{name: "new request while the previous rotation is unfinished waits",
			s:  State{Current: "B", Previous: "A", ReadToken: "R", RotationHandled: "1"},
			in: Inputs{RotateRequest: "2", Fresh: "C", Delay: delay, Grace: grace, Jobs: []Job{on("a", "A")}}, now: t0,
			want: State{Current: "B", Previous: "A", ReadToken: "R", RotationHandled: "1"},
			out:  Outcome{JobsBehind: []string{"a"}, Note: `rotation "2" waits until the previous rotation has finished`}},
		{name: "no staging (delay < 0): swap at once",
			s:  State{Current: "A", ReadToken: "R"},
			in: Inputs{RotateRequest: "1", Fresh: "B", Delay: -1, Grace: grace, Jobs: []Job{on("a", "A")}}, now: t0,
			want: State{Current: "B", Previous: "A", ReadToken: "R", RotationHandled: "1"},
			out:  Outcome{JobsBehind: []string{"a"}}},
		{name: "no grace (grace < 0): dropped once caught up",
			s:  State{Current: "B", Previous: "A", ReadToken: "R"},
			in: Inputs{Grace: -1, Jobs: []Job{on("a", "B")}}, now: t0,
			want: State{Current: "B", ReadToken: "R"}},
		{name: "user-supplied Secret: first token is the user's",
			in: Inputs{User: "U1", Fresh: "X", FreshRead: "R"}, now: t0,
			want: State{Current: "U1", ReadToken: "R"}},
		{name: "user-supplied Secret changed: the new token is staged",
			s:  State{Current: "U1", ReadToken: "R"},
			in: Inputs{User: "U2", Fresh: "X", Delay: delay}, now: t0,
			want: State{Current: "U1", Next: "U2", Staged: true, StagedAt: t0, ReadToken: "R"},
			out:  Outcome{RequeueAfter: delay}},
		{name: "user-supplied Secret changed again while staged: staging restarts",
			s:  State{Current: "U1", Next: "U2", Staged: true, StagedAt: t0, ReadToken: "R"},
			in: Inputs{User: "U3", Delay: delay}, now: at(time.Minute),
			want: State{Current: "U1", Next: "U3", Staged: true, StagedAt: at(time.Minute), ReadToken: "R"},
			out:  Outcome{RequeueAfter: delay}},
		{name: "user went back before the swap: staging cancelled",
			s:  State{Current: "U1", Next: "U2", Staged: true, StagedAt: t0, ReadToken: "R"},
			in: Inputs{User: "U1", Delay: delay}, now: at(time.Minute),
			want: State{Current: "U1", ReadToken: "R"}},
		{name: "user changed the token during the previous rotation: waits",
			s:  State{Current: "U2", Previous: "U1", ReadToken: "R"},
			in: Inputs{User: "U3", Delay: delay, Grace: grace, Jobs: []Job{on("a", "U1")}}, now: t0,
			want: State{Current: "U2", Previous: "U1", ReadToken: "R"},
			out:  Outcome{JobsBehind: []string{"a"}, Note: "a new token waits until the previous rotation has finished"}},
		{name: "token Secret deleted mid-rotation: a new first token, no staging",
			s:  State{}, // what a missing Secret reads as
			in: Inputs{RotateRequest: "1", Fresh: "C", FreshRead: "R2", Delay: delay, Grace: grace, Jobs: []Job{on("a", "A")}}, now: t0,
			want: State{Current: "C", ReadToken: "R2", RotationHandled: "1"}, lost: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := tc.s
			got, out := Step(tc.s, tc.in, tc.now)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("state\n got %+v\nwant %+v", got, tc.want)
			}
			if !reflect.DeepEqual(out, tc.out) {
				t.Errorf("outcome\n got %+v\nwant %+v", out, tc.out)
			}
			if !reflect.DeepEqual(tc.s, before) {
				t.Error("Step changed its argument")
			}
			// Every token the receiver accepts after the step includes the
			// one IntunedJobs push, and what any job still pushes.
			accepted := []string{got.Current, got.Next, got.Previous}
			for _, j := range tc.in.Jobs {
				if tc.lost {
					break
				}
				if !slices.ContainsFunc(accepted, func(tok string) bool { return tok != "" && Fingerprint(tok) == j.Fingerprint }) {
					t.Errorf("job %s pushes a token the receiver no longer accepts", j.Name)
				}
			}
		})
	}
}
