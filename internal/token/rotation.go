package token

import (
	"fmt"
	"time"
)

// State is what the token Secret holds, each token named for what it is.
// The receiver accepts Current, Next and Previous; IntunedJobs push Current.
//
// A rotation has three steps (docs/token-rotation.md):
//
//  1. stage: the new token becomes Next (the receiver Pods learn it while
//     IntunedJobs go on pushing Current);
//  2. after the propagation delay, swap: Previous = Current, Current = Next;
//  3. drop Previous once every referencing IntunedJob pushes Current, no
//     JobRun that started with the old sink still runs, and the grace
//     window (Intuned's retries) has passed.
type State struct {
	// Current is the token IntunedJobs push to Intuned.
	Current string
	// Next is a staged token: accepted by the receiver, not pushed yet.
	// Set only while Staged.
	Next string
	// Staged is true while Next waits for the Pods to learn it.
	// StagedAt is when it was staged (zero: unknown, e.g. edited by hand;
	// the delay starts over).
	Staged   bool
	StagedAt time.Time
	// Previous is the token before Current, still accepted while IntunedJobs
	// and their JobRuns may send it. Never set while Staged.
	Previous string
	// CaughtUpAt is when every IntunedJob was first seen pushing Current
	// (zero: not yet).
	CaughtUpAt time.Time
	// ReadToken guards the receiver's read API.
	ReadToken string
	// RotationHandled is the last rotation request acted on. It is written
	// with the new token, so one request never rotates twice.
	RotationHandled string
}

// Job is what one IntunedJob referencing the receiver reports.
type Job struct {
	Name string
	// Fingerprint of the token Intuned holds for it (status.sink).
	Fingerprint string
	// HasRun: it reports a last JobRun; RunStart and RunEnd are its times
	// (nil: unknown / still running).
	HasRun   bool
	RunStart *time.Time
	RunEnd   *time.Time
}

// Inputs is everything Step needs besides the state and the clock.
type Inputs struct {
	// User is the token from spec.tokenSecretRef; "" means the operator
	// generates tokens.
	User string
	// RotateRequest is the intuned.io/rotate-token value ("" none).
	RotateRequest string
	// Jobs are the IntunedJobs referencing the receiver, by name.
	Jobs []Job
	// Fresh and FreshRead are newly generated tokens, used only when a new
	// ingest or read token is needed (Step itself has no randomness).
	Fresh, FreshRead string
	// Delay is how long a token stays staged (< 0: no staging).
	Delay time.Duration
	// Grace keeps Previous after every job caught up (< 0: drop at once).
	Grace time.Duration
}

// Outcome is what Step found, for status and scheduling.
type Outcome struct {
	// RequeueAfter is when the next step is due (0: no timer needed).
	RequeueAfter time.Duration
	// Note explains a rotation that waits.
	Note string
	// JobsBehind still push Previous; RunsInFlight may still send it from
	// a JobRun started before the swap; PreviousUntil is when the grace
	// window ends (zero: Previous is not kept for grace).
	JobsBehind, RunsInFlight []string
	PreviousUntil            time.Time
}

// PromotionTime is when a staged token becomes Current.
func (s State) PromotionTime(delay time.Duration) time.Time { return s.StagedAt.Add(delay) }

// Step takes one step of the rotation from s at now and returns the state
// to write. It is pure: the same arguments always give the same answer.
func Step(s State, in Inputs, now time.Time) (State, Outcome) {
	var out Outcome
	// Step 3 of a finished rotation first: it may unblock a new one.
	dropPreviousIfDone(&s, in, now, &out)
	moveTowards(&s, nextToken(&s, in, &out), in.Delay, now, &out)
	if s.ReadToken == "" {
		s.ReadToken = in.FreshRead
	}
	// A swap just now starts step 3 for the new token.
	dropPreviousIfDone(&s, in, now, &out)
	return s, out
}

// nextToken is the token that should be Current: the user's, the staged
// one, or a fresh one (a first token, or a new rotation request).
func nextToken(s *State, in Inputs, out *Outcome) string {
	switch {
	case in.User != "":
		return in.User
	case s.Staged:
		return s.Next
	case s.Current != "" && (in.RotateRequest == "" || in.RotateRequest == s.RotationHandled):
		return s.Current
	case s.Current != "" && s.Previous != "":
		out.Note = fmt.Sprintf("rotation %q waits until the previous rotation has finished", in.RotateRequest)
		return s.Current
	}
	s.RotationHandled = in.RotateRequest
	return in.Fresh
}

// moveTowards takes one step towards next being Current.
func moveTowards(s *State, next string, delay time.Duration, now time.Time, out *Outcome) {
	switch {
	case next == "":
		// Nothing to move to; keep everything.
	case next == s.Current:
		s.Next, s.Staged, s.StagedAt = "", false, time.Time{} // back before the swap
	case s.Current == "":
		s.Current = next // the first token: nothing was pushed yet
	case !s.Staged && s.Previous != "":
		out.Note = "a new token waits until the previous rotation has finished"
	case delay < 0:
		s.Previous, s.Current = s.Current, next
		s.Next, s.Staged, s.StagedAt = "", false, time.Time{}
	case !s.Staged || s.Next != next:
		s.Next, s.Staged, s.StagedAt = next, true, now
		requeueIn(out, delay)
	default:
		if s.StagedAt.IsZero() {
			s.StagedAt = now // unknown staging time: start over
		}
		if remaining := s.StagedAt.Add(delay).Sub(now); remaining > 0 {
			requeueIn(out, remaining)
			return
		}
		s.Previous, s.Current = s.Current, next
		s.Next, s.Staged, s.StagedAt = "", false, time.Time{}
	}
}

// dropPreviousIfDone removes Previous once nobody can still send it, or
// records why not.
func dropPreviousIfDone(s *State, in Inputs, now time.Time, out *Outcome) {
	out.JobsBehind, out.RunsInFlight, out.PreviousUntil = nil, nil, time.Time{}
	if s.Staged || s.Previous == "" {
		s.CaughtUpAt = time.Time{}
		return
	}
	current := Fingerprint(s.Current)
	for _, j := range in.Jobs {
		if j.Fingerprint != current {
			out.JobsBehind = append(out.JobsBehind, j.Name)
		}
	}
	if len(out.JobsBehind) > 0 {
		s.CaughtUpAt = time.Time{}
		return
	}
	if in.Grace < 0 {
		s.Previous, s.CaughtUpAt = "", time.Time{}
		return
	}
	if s.CaughtUpAt.IsZero() {
		s.CaughtUpAt = now
	}
	until := s.CaughtUpAt.Add(in.Grace)
	for _, j := range in.Jobs {
		if !j.HasRun || (j.RunStart != nil && j.RunStart.After(s.CaughtUpAt)) {
			continue // no run, or one that started with the new sink
		}
		if j.RunEnd == nil {
			out.RunsInFlight = append(out.RunsInFlight, j.Name)
			continue
		}
		if t := j.RunEnd.Add(in.Grace); t.After(until) {
			until = t
		}
	}
	if len(out.RunsInFlight) == 0 && !now.Before(until) {
		s.Previous, s.CaughtUpAt = "", time.Time{}
		return
	}
	out.PreviousUntil = until
	if len(out.RunsInFlight) == 0 {
		requeueIn(out, until.Sub(now))
	}
}

// requeueIn asks for a step after d (the earliest request wins).
func requeueIn(out *Outcome, d time.Duration) {
	if d <= 0 {
		d = time.Second
	}
	if out.RequeueAfter == 0 || d < out.RequeueAfter {
		out.RequeueAfter = d
	}
}
