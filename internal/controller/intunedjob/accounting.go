package intunedjob

import (
	"fmt"
	"slices"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/intuned"
	"github.com/intuned-operator/intuned-operator/internal/receiver/receiverapi"
)

// Delivery accounting answers "did every result of this JobRun reach the
// receiver?" (docs/data-completeness.md). This file decides, from facts
// alone, where one JobRun stands; deliveries.go reads the facts and acts
// (backfill), backfill.go streams the results file.

// DefaultDeliveryRetryWindow is how long Intuned retries a webhook delivery
// (intuned-api.md §6.3): a result missing before it has passed may still
// arrive, so it is never called a gap.
const DefaultDeliveryRetryWindow = time.Hour

// maxTrackedJobRuns bounds status.deliveries.
const maxTrackedJobRuns = 5

// sinkFilter is what a webhook sink sends of a JobRun's Runs: apisToSend
// and skipOnFail (intuned-api.md §6.1). Intuned's results file has every
// Run; the sink only these.
type sinkFilter struct {
	apis       []string // empty: every API
	skipOnFail bool
}

func filterOf(s *intunedv1alpha1.WebhookSink) sinkFilter {
	return sinkFilter{apis: s.APIsToSend, skipOnFail: s.SkipOnFail}
}

// all reports whether the sink sends every Run.
func (f sinkFilter) all() bool { return len(f.apis) == 0 && !f.skipOnFail }

// delivers reports whether the sink sends a Run of api that ended status.
func (f sinkFilter) delivers(api, status string) bool {
	if f.skipOnFail && status != "completed" {
		return false
	}
	return len(f.apis) == 0 || slices.Contains(f.apis, api)
}

// expectedFromCounts is how many results the sink should have sent, from
// Intuned's counters alone: possible only without apisToSend (the counters
// are not split by API).
func (f sinkFilter) expectedFromCounts(run *intunedv1alpha1.JobRunSummary) (int64, bool) {
	if len(f.apis) > 0 || run.Successful == nil || run.Failed == nil {
		return 0, false
	}
	if f.skipOnFail {
		return *run.Successful, true
	}
	return *run.Successful + *run.Failed, true
}

// storedOf counts what the receiver holds of a JobRun that the sink would
// have sent: results of other APIs (apisToSend changed since) or failed
// ones (skipOnFail) do not make up for missing ones.
func (f sinkFilter) storedOf(s *receiverapi.Summary) (stored, backfilled int64) {
	for _, c := range s.Results {
		if f.delivers(c.API, c.Status) {
			stored += c.Count
		}
	}
	// Backfill only sends results the filter lets through.
	return stored, min(s.Backfilled, stored)
}

// runFacts is what accounting knows of one JobRun.
type runFacts struct {
	// run is Intuned's view; nil while unknown.
	run *intunedv1alpha1.JobRunSummary
	// summary is what the receiver holds; nil when it could not be read.
	summary *receiverapi.Summary
	filter  sinkFilter
	now     time.Time
	// window is Intuned's retry window (DefaultDeliveryRetryWindow).
	window time.Duration
	// auto: spec.sink.webhook.backfill is Auto; requested: the
	// intuned.io/backfill annotation names this JobRun.
	auto, requested bool
}

// assess is where one JobRun's accounting stands now, and whether its
// results file must be streamed (to backfill, or to count what apisToSend
// lets through). It never forgets a backfill in progress.
func assess(d intunedv1alpha1.JobRunDelivery, f runFacts) (_ intunedv1alpha1.JobRunDelivery, stream bool) {
	run := f.run
	if (run != nil && !intuned.JobRunStatus(run.Status).Terminal()) || (run == nil && d.SettlesAt == nil) {
		d.State, d.Message = intunedv1alpha1.DeliveryPending, "the JobRun is running"
		if run != nil && run.Status != "" {
			d.Message = "the JobRun is " + run.Status
		}
		d.Stored, d.Missing = storedIf(f), nil
		return d, false
	}
	if run != nil {
		// Intuned's view of a finished JobRun; an older JobRun (run nil)
		// keeps what was recorded when it finished.
		if run.Successful != nil && run.Failed != nil {
			d.Produced = ptrTo(*run.Successful + *run.Failed)
		}
		switch {
		case run.End != nil:
			d.SettlesAt = &metav1.Time{Time: run.End.Add(f.window)}
		case d.SettlesAt == nil:
			d.SettlesAt = &metav1.Time{Time: f.now.Add(f.window).Truncate(time.Second)}
		}
		if n, ok := f.filter.expectedFromCounts(run); ok {
			d.Expected = &n
		}
	}
	if b := d.Backfill; b != nil && b.Done && b.Error == "" && len(f.filter.apis) > 0 {
		d.Expected = ptrTo(b.Matched + b.Invalid)
	}
	var backfilled int64
	if f.summary != nil {
		stored, bf := f.filter.storedOf(f.summary)
		d.Stored, backfilled = &stored, bf
		d.Backfilled = nil
		if bf > 0 {
			d.Backfilled = &bf
		}
	}
	d.Missing = nil
	if d.Expected != nil && d.Stored != nil {
		d.Missing = ptrTo(max(*d.Expected-*d.Stored, 0))
	}
	settled := d.SettlesAt == nil || !f.now.Before(d.SettlesAt.Time)
	backfilling := d.Backfill != nil && !d.Backfill.Done

	switch {
	case d.Stored == nil:
		// The receiver could not be read: nothing new is known.
		if d.Message == "" {
			d.Message = "the receiver's summary could not be read"
		}
		return d, backfilling
	case d.Missing != nil && *d.Missing == 0 && !backfilling:
		d.Backfill = nil
		if backfilled > 0 {
			d.State, d.Message = intunedv1alpha1.DeliveryBackfilled,
				fmt.Sprintf("all %d expected results are stored, %d of them backfilled from Intuned's results file", *d.Expected, backfilled)
		} else {
			d.State, d.Message = intunedv1alpha1.DeliveryComplete, fmt.Sprintf("all %d expected results are stored", *d.Expected)
		}
		return d, false
	case backfilling:
		d.State = intunedv1alpha1.DeliveryBackfilling
		if d.Message == "" {
			d.Message = "backfilling from the JobRun's results file"
		}
		return d, true
	case f.requested:
		return startBackfill(d, f.now), true
	case d.Backfill != nil:
		// A finished backfill that left results missing: the lines it could
		// not store are in the message; only a new request sends it again.
		d.State = intunedv1alpha1.DeliveryGap
		if d.Message == "" {
			d.Message = "results are still missing after backfill"
		}
		return d, false
	case !settled:
		d.State = intunedv1alpha1.DeliveryPending
		d.Message = fmt.Sprintf("%d results stored so far; Intuned retries deliveries until %s", *d.Stored, d.SettlesAt.UTC().Format(time.RFC3339))
		if d.Expected == nil {
			// Count what apisToSend lets through now: the JobRun is over,
			// so its results file is complete.
			return d, true
		}
		return d, false
	case d.Expected == nil:
		// Settled, not countable from Intuned's counters, and the count
		// from the results file was not finished: stream it.
		if f.auto {
			return startBackfill(d, f.now), true
		}
		d.State = intunedv1alpha1.DeliveryPending
		return d, true
	case f.auto:
		return startBackfill(d, f.now), true
	}
	d.State = intunedv1alpha1.DeliveryGap
	d.Message = fmt.Sprintf("%d of %d expected results are missing after Intuned's retry window; spec.sink.webhook.backfill is Manual: set the %s annotation to %s to backfill them",
		*d.Missing, *d.Expected, intunedv1alpha1.AnnotationBackfill, d.JobRunID)
	return d, false
}

// startBackfill records the decision to backfill (persisted before the
// first result is sent).
func startBackfill(d intunedv1alpha1.JobRunDelivery, now time.Time) intunedv1alpha1.JobRunDelivery {
	d.State = intunedv1alpha1.DeliveryBackfilling
	d.Backfill = &intunedv1alpha1.BackfillProgress{StartedAt: metav1.NewTime(now.Truncate(time.Second))}
	d.Message = "fetching the JobRun's results file from Intuned to store the missing results"
	return d
}

func storedIf(f runFacts) *int64 {
	if f.summary == nil {
		return nil
	}
	n, _ := f.filter.storedOf(f.summary)
	return &n
}

// trackJobRuns puts the newest JobRun (and a requested one) first in the
// accounting list and keeps it bounded, dropping the oldest first.
func trackJobRuns(list []intunedv1alpha1.JobRunDelivery, ids ...string) []intunedv1alpha1.JobRunDelivery {
	for _, id := range ids {
		if id == "" || slices.ContainsFunc(list, func(d intunedv1alpha1.JobRunDelivery) bool { return d.JobRunID == id }) {
			continue
		}
		list = append([]intunedv1alpha1.JobRunDelivery{{JobRunID: id, State: intunedv1alpha1.DeliveryPending}}, list...)
	}
	if len(list) > maxTrackedJobRuns {
		list = list[:maxTrackedJobRuns]
	}
	return list
}

// deliveryCondition sums up the tracked JobRuns: the worst state wins.
func deliveryCondition(list []intunedv1alpha1.JobRunDelivery) (metav1.ConditionStatus, string, string) {
	if len(list) == 0 {
		return metav1.ConditionUnknown, intunedv1alpha1.ReasonNoJobRun, "the Job has not run yet"
	}
	rank := map[intunedv1alpha1.DeliveryState]int{
		intunedv1alpha1.DeliveryComplete: 0, intunedv1alpha1.DeliveryBackfilled: 1, intunedv1alpha1.DeliveryPending: 2,
		intunedv1alpha1.DeliveryBackfilling: 3, intunedv1alpha1.DeliveryGap: 4,
	}
	worst := list[0]
	for _, d := range list[1:] {
		if rank[d.State] > rank[worst.State] {
			worst = d
		}
	}
	msg := "JobRun " + worst.JobRunID + ": " + worst.Message
	switch worst.State {
	case intunedv1alpha1.DeliveryComplete:
		return metav1.ConditionTrue, intunedv1alpha1.ReasonDeliveriesComplete, msg
	case intunedv1alpha1.DeliveryBackfilled:
		return metav1.ConditionTrue, intunedv1alpha1.ReasonBackfilled, msg
	case intunedv1alpha1.DeliveryBackfilling:
		return metav1.ConditionUnknown, intunedv1alpha1.ReasonBackfilling, msg
	case intunedv1alpha1.DeliveryGap:
		if worst.Backfill != nil {
			return metav1.ConditionFalse, intunedv1alpha1.ReasonBackfillFailed, msg
		}
		return metav1.ConditionFalse, intunedv1alpha1.ReasonDeliveryGap, msg
	}
	return metav1.ConditionUnknown, intunedv1alpha1.ReasonDeliveriesPending, msg
}

func ptrTo[T any](v T) *T { return &v }
