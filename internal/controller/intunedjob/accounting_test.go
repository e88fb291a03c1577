package intunedjob

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/receiver/receiverapi"
)

// TestAssess answers "where does this JobRun's accounting stand, and does
// its results file have to be read?" for every case, without a cluster.
func TestAssess(t *testing.T) {
	end := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	window := time.Hour
	inWindow, settled := end.Add(30*time.Minute), end.Add(61*time.Minute)
	run := func(status string, ok, failed int64) *intunedv1alpha1.JobRunSummary {
		r := &intunedv1alpha1.JobRunSummary{ID: "jr", Status: status, Successful: &ok, Failed: &failed}
		if status == "COMPLETED" || status == "FAILURE" {
			r.End = &metav1.Time{Time: end}
		}
		return r
	}
	stored := func(counts ...any) *receiverapi.Summary {
		s := &receiverapi.Summary{JobRunID: "jr"}
		for i := 0; i < len(counts); i += 3 {
			s.Results = append(s.Results, receiverapi.ResultCount{API: counts[i].(string), Status: counts[i+1].(string), Count: int64(counts[i+2].(int))})
		}
		return s
	}
	withBackfilled := func(s *receiverapi.Summary, n int64) *receiverapi.Summary { s.Backfilled = n; return s }
	backfilling := intunedv1alpha1.JobRunDelivery{JobRunID: "jr", State: intunedv1alpha1.DeliveryBackfilling,
		Backfill: &intunedv1alpha1.BackfillProgress{Offset: 100}}
	doneBackfill := func(matched, invalid int64) intunedv1alpha1.JobRunDelivery {
		return intunedv1alpha1.JobRunDelivery{JobRunID: "jr", State: intunedv1alpha1.DeliveryBackfilling,
			Backfill: &intunedv1alpha1.BackfillProgress{Done: true, Matched: matched, Invalid: invalid}}
	}
	fresh := intunedv1alpha1.JobRunDelivery{JobRunID: "jr", State: intunedv1alpha1.DeliveryPending}
	all, skipFail := sinkFilter{}, sinkFilter{skipOnFail: true}
	onlyA := sinkFilter{apis: []string{"a"}, skipOnFail: true}

	cases := []struct {
		name      string
		d         intunedv1alpha1.JobRunDelivery
		f         runFacts
		state     intunedv1alpha1.DeliveryState
		expected  int64 // -1: unknown
		missing   int64 // -1: unknown
		stream    bool
		backfills bool // a backfill is recorded (started or kept)
	}{
		{"running JobRun is pending", fresh, runFacts{run: run("PENDING", 3, 0), summary: stored("a", "completed", 3), filter: all}, intunedv1alpha1.DeliveryPending, -1, -1, false, false},
		{"all stored early is complete", fresh, runFacts{run: run("COMPLETED", 3, 1), summary: stored("a", "completed", 3, "a", "failed", 1), filter: all, now: inWindow}, intunedv1alpha1.DeliveryComplete, 4, 0, false, false},
		{"short within the window is pending", fresh, runFacts{run: run("COMPLETED", 3, 1), summary: stored("a", "completed", 2), filter: all, now: inWindow, auto: true}, intunedv1alpha1.DeliveryPending, 4, 2, false, false},
		{"short after the window backfills (Auto)", fresh, runFacts{run: run("COMPLETED", 3, 1), summary: stored("a", "completed", 2), filter: all, now: settled, auto: true}, intunedv1alpha1.DeliveryBackfilling, 4, 2, true, true},
		{"short after the window is a gap (Manual)", fresh, runFacts{run: run("COMPLETED", 3, 1), summary: stored("a", "completed", 2), filter: all, now: settled}, intunedv1alpha1.DeliveryGap, 4, 2, false, false},
		{"requested backfill starts within the window", fresh, runFacts{run: run("COMPLETED", 3, 1), summary: stored("a", "completed", 2), filter: all, now: inWindow, requested: true}, intunedv1alpha1.DeliveryBackfilling, 4, 2, true, true},
		{"requested backfill of a complete JobRun does nothing", fresh, runFacts{run: run("COMPLETED", 1, 0), summary: stored("a", "completed", 1), filter: all, now: inWindow, requested: true}, intunedv1alpha1.DeliveryComplete, 1, 0, false, false},
		{"skipOnFail does not expect failed runs", fresh, runFacts{run: run("FAILURE", 2, 5), summary: stored("a", "completed", 2), filter: skipFail, now: settled, auto: true}, intunedv1alpha1.DeliveryComplete, 2, 0, false, false},
		{"skipOnFail: a stored failure does not make up for a missing success", fresh, runFacts{run: run("COMPLETED", 2, 1), summary: stored("a", "completed", 1, "a", "failed", 1), filter: skipFail, now: settled}, intunedv1alpha1.DeliveryGap, 2, 1, false, false},
		{"apisToSend: counted from the results file while pending", fresh, runFacts{run: run("COMPLETED", 3, 1), summary: stored("a", "completed", 1), filter: onlyA, now: inWindow, auto: true}, intunedv1alpha1.DeliveryPending, -1, -1, true, false},
		{"apisToSend: settled and uncounted backfills (Auto)", fresh, runFacts{run: run("COMPLETED", 3, 1), summary: stored("a", "completed", 1), filter: onlyA, now: settled, auto: true}, intunedv1alpha1.DeliveryBackfilling, -1, -1, true, true},
		{"apisToSend: counted and all stored is complete", intunedv1alpha1.JobRunDelivery{JobRunID: "jr", State: intunedv1alpha1.DeliveryPending, Expected: ptrTo[int64](1)}, runFacts{run: run("COMPLETED", 3, 1), summary: stored("a", "completed", 1, "b", "completed", 2), filter: onlyA, now: inWindow}, intunedv1alpha1.DeliveryComplete, 1, 0, false, false},
		{"a backfill in progress goes on", backfilling, runFacts{run: run("COMPLETED", 3, 0), summary: stored("a", "completed", 1), filter: all, now: settled, auto: true}, intunedv1alpha1.DeliveryBackfilling, 3, 2, true, true},
		{"a backfill in progress goes on while the receiver is unreadable", backfilling, runFacts{run: run("COMPLETED", 3, 0), filter: all, now: settled}, intunedv1alpha1.DeliveryBackfilling, 3, -1, true, true},
		{"a finished backfill that stored everything is Backfilled", doneBackfill(3, 0), runFacts{run: run("COMPLETED", 3, 0), summary: withBackfilled(stored("a", "completed", 3), 2), filter: all, now: settled, auto: true}, intunedv1alpha1.DeliveryBackfilled, 3, 0, false, false},
		{"a finished backfill that left a line out is a gap, not retried", doneBackfill(2, 1), runFacts{run: run("COMPLETED", 3, 0), summary: withBackfilled(stored("a", "completed", 2), 1), filter: all, now: settled, auto: true}, intunedv1alpha1.DeliveryGap, 3, 1, false, true},
		{"apisToSend: a finished backfill counts the file", doneBackfill(2, 0), runFacts{run: run("COMPLETED", 3, 1), summary: withBackfilled(stored("a", "completed", 2, "b", "completed", 2), 1), filter: onlyA, now: settled, auto: true}, intunedv1alpha1.DeliveryBackfilled, 2, 0, false, false},
		{"an older JobRun keeps what was recorded", intunedv1alpha1.JobRunDelivery{JobRunID: "jr", State: intunedv1alpha1.DeliveryPending, Expected: ptrTo[int64](2), SettlesAt: &metav1.Time{Time: end.Add(window)}}, runFacts{summary: stored("a", "completed", 1), filter: all, now: settled}, intunedv1alpha1.DeliveryGap, 2, 1, false, false},
		{"an older JobRun not read yet is pending", fresh, runFacts{summary: stored("a", "completed", 1), filter: all, now: settled, auto: true}, intunedv1alpha1.DeliveryPending, -1, -1, false, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := c.f
			f.window = window
			got, stream := assess(c.d, f)
			if got.State != c.state || stream != c.stream || (got.Backfill != nil) != c.backfills {
				t.Fatalf("state %s stream %v backfill %v (message %q); want %s %v %v", got.State, stream, got.Backfill != nil, got.Message, c.state, c.stream, c.backfills)
			}
			if v := orMinus(got.Expected); v != c.expected {
				t.Errorf("expected = %d, want %d", v, c.expected)
			}
			if v := orMinus(got.Missing); v != c.missing {
				t.Errorf("missing = %d, want %d", v, c.missing)
			}
			if got.Message == "" {
				t.Error("no message")
			}
		})
	}
}

func orMinus(p *int64) int64 {
	if p == nil {
		return -1
	}
	return *p
}

func TestDeliveryCondition(t *testing.T) {
	d := func(state intunedv1alpha1.DeliveryState, backfill bool) intunedv1alpha1.JobRunDelivery {
		out := intunedv1alpha1.JobRunDelivery{JobRunID: string(state), State: state, Message: "m"}
		if backfill {
			out.Backfill = &intunedv1alpha1.BackfillProgress{Done: true}
		}
		return out
	}
	cases := []struct {
		list   []intunedv1alpha1.JobRunDelivery
		status metav1.ConditionStatus
		reason string
	}{
		{nil, metav1.ConditionUnknown, intunedv1alpha1.ReasonNoJobRun},
		{[]intunedv1alpha1.JobRunDelivery{d("Complete", false), d("Complete", false)}, metav1.ConditionTrue, intunedv1alpha1.ReasonDeliveriesComplete},
		{[]intunedv1alpha1.JobRunDelivery{d("Complete", false), d("Backfilled", false)}, metav1.ConditionTrue, intunedv1alpha1.ReasonBackfilled},
		{[]intunedv1alpha1.JobRunDelivery{d("Pending", false), d("Complete", false)}, metav1.ConditionUnknown, intunedv1alpha1.ReasonDeliveriesPending},
		{[]intunedv1alpha1.JobRunDelivery{d("Complete", false), d("Gap", false), d("Backfilling", false)}, metav1.ConditionFalse, intunedv1alpha1.ReasonDeliveryGap},
		{[]intunedv1alpha1.JobRunDelivery{d("Gap", true)}, metav1.ConditionFalse, intunedv1alpha1.ReasonBackfillFailed},
		{[]intunedv1alpha1.JobRunDelivery{d("Backfilling", false), d("Pending", false)}, metav1.ConditionUnknown, intunedv1alpha1.ReasonBackfilling},
	}
	for _, c := range cases {
		st, reason, _ := deliveryCondition(c.list)
		seenDataReasons[reason] = true
		if st != c.status || reason != c.reason {
			t.Errorf("%v: %s %s, want %s %s", c.list, st, reason, c.status, c.reason)
		}
	}
}

func TestTrackJobRuns(t *testing.T) {
	var list []intunedv1alpha1.JobRunDelivery
	for _, id := range []string{"1", "2", "3", "4", "5", "6"} {
		list = trackJobRuns(list, "", id)
	}
	list = trackJobRuns(list, "6", "old") // requested first, newest last: newest ends first
	var ids []string
	for _, d := range list {
		ids = append(ids, d.JobRunID)
	}
	if got := len(ids); got != maxTrackedJobRuns || ids[0] != "old" || ids[1] != "6" {
		t.Fatalf("tracked %v", ids)
	}
}

// seenDataReasons collects the DataComplete and Fresh reasons the tables
// produce; TestDataReasons checks them against the source.
var seenDataReasons = map[string]bool{
	// Set by accountDeliveries itself; TestIntunedJobCreateUpdateSteadyState
	// (NotApplicable) and TestIntunedJobReceiverLink (NoJobRun) see them
	// on a real API server; ReceiverUnreachable is the one outcome of a
	// failed summary read.
	intunedv1alpha1.ReasonNotApplicable: true, intunedv1alpha1.ReasonReceiverUnreachable: true,
}

func TestDataReasons(t *testing.T) {
	t.Run("delivery condition", TestDeliveryCondition)
	t.Run("freshness", TestFreshness)
	for _, r := range reasonsInSource(t, func(name string) bool { return dataFiles[name] }) {
		if !seenDataReasons[r] {
			t.Errorf("no table produces condition reason %s, which the accounting or freshness code names", r)
		}
	}
}
