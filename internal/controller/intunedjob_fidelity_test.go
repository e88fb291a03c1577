package controller

import (
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/intunedsim"
)

// TestIntunedJobServerNormalises: a server that rewrites a field on every
// write never makes the operator write on every poll.
//
//   - A field rewritten when the Job is created is remembered
//     (status.lastApplied): the same answer for the same spec is in sync,
//     and polls make no writes.
//   - When writes stop changing anything (here: the Job was changed on
//     Intuned to exactly what the server normalises to), the operator
//     writes twice, then reports Synced=False, reason ServerNormalises,
//     with the field path, and makes no more writes.
//   - A spec change that matches what Intuned holds ends it.
func TestIntunedJobServerNormalises(t *testing.T) {
	rule, err := intunedsim.ParseNormaliseRule("configuration.requestTimeout=300")
	if err != nil {
		t.Fatal(err)
	}
	f := newIJFixture(t, fixtureOptions{sim: intunedsim.Options{Normalise: []intunedsim.NormaliseRule{rule}}})
	f.create(f.newJob("normalised-at-create"))
	j := f.waitReady("normalised-at-create")
	if a := j.Status.LastApplied; a == nil || !slices.Equal(a.NormalisedFields, []string{"configuration.requestTimeout"}) || a.UnchangedWrites != 0 {
		t.Fatalf("status.lastApplied = %+v", a)
	}
	f.sim.ResetCalls()
	f.waitPolls(4)
	if w := f.sim.WriteCalls(); w != 0 {
		t.Fatalf("%d writes at rest (%v), want 0", w, f.sim.Calls())
	}
	c := j.Status.Conditions[slices.IndexFunc(j.Status.Conditions, func(c metav1.Condition) bool { return c.Type == intunedv1alpha1.ConditionSynced })]
	if !strings.Contains(c.Message, "configuration.requestTimeout") {
		t.Errorf("Synced message does not explain the rewritten field: %q", c.Message)
	}

	// The Job changes on Intuned to the normalised value itself: desired
	// differs from it, but no write can change it.
	f.sim.SetNormalise(nil)
	f.create(f.newJob("unchanged-by-writes"))
	f.waitReady("unchanged-by-writes")
	f.sim.SetNormalise([]intunedsim.NormaliseRule{rule})
	f.drift("unchanged-by-writes", "modify", `{"configuration":{"requestTimeout":300}}`)
	j = f.waitCondition("unchanged-by-writes", intunedv1alpha1.ConditionSynced, metav1.ConditionFalse, intunedv1alpha1.ReasonServerNormalises)
	f.waitCondition("unchanged-by-writes", intunedv1alpha1.ConditionStalled, metav1.ConditionTrue, intunedv1alpha1.ReasonServerNormalises)
	j = f.get("unchanged-by-writes")
	if a := j.Status.LastApplied; a == nil || a.UnchangedWrites != 2 || !slices.Equal(a.NormalisedFields, []string{"configuration.requestTimeout"}) {
		t.Fatalf("status.lastApplied = %+v", a)
	}
	if n := f.callCount("PUT", "/jobs/{jobId}"); n != 2 {
		t.Errorf("%d updates, want exactly 2 (one retry to rule out a race)", n)
	}
	f.sim.ResetCalls()
	f.waitPolls(4)
	if w := f.sim.WriteCalls(); w != 0 {
		t.Fatalf("%d writes after ServerNormalises (%v), want 0", w, f.sim.Calls())
	}

	// Spec set to what Intuned holds: in sync, without a write.
	f.update("unchanged-by-writes", func(j *intunedv1alpha1.IntunedJob) {
		j.Spec.Configuration.RequestTimeout = int32p(300)
	})
	f.waitReady("unchanged-by-writes")
	if w := f.sim.WriteCalls(); w != 0 {
		t.Errorf("%d writes for a spec equal to Intuned's Job", w)
	}
}
