package intunedjob

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
)

func TestFreshness(t *testing.T) {
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	grace := 10 * time.Minute
	at := func(d time.Duration) *metav1.Time { return &metav1.Time{Time: now.Add(d)} }
	job := func(mutate func(*intunedv1alpha1.IntunedJob)) *intunedv1alpha1.IntunedJob {
		j := &intunedv1alpha1.IntunedJob{}
		j.Spec.Schedule = &intunedv1alpha1.JobSchedule{}
		j.Status.JobState = intunedv1alpha1.JobStateActive
		mutate(j)
		return j
	}
	stored := func(n int64) intunedv1alpha1.JobRunDelivery {
		return intunedv1alpha1.JobRunDelivery{JobRunID: "jr", State: intunedv1alpha1.DeliveryComplete, Stored: &n}
	}
	cases := []struct {
		name   string
		job    *intunedv1alpha1.IntunedJob
		status metav1.ConditionStatus
		reason string
		wait   bool
	}{
		{"no schedule", job(func(j *intunedv1alpha1.IntunedJob) { j.Spec.Schedule = nil }), metav1.ConditionUnknown, intunedv1alpha1.ReasonNotScheduled, false},
		{"paused", job(func(j *intunedv1alpha1.IntunedJob) { j.Spec.Paused = true }), metav1.ConditionUnknown, intunedv1alpha1.ReasonNotScheduled, false},
		{"next run in the future: look again once it is late", job(func(j *intunedv1alpha1.IntunedJob) { j.Status.NextRunTime = at(time.Hour) }), metav1.ConditionTrue, intunedv1alpha1.ReasonOnSchedule, true},
		{"run due, within grace: look again after it", job(func(j *intunedv1alpha1.IntunedJob) { j.Status.NextRunTime = at(-5 * time.Minute) }), metav1.ConditionTrue, intunedv1alpha1.ReasonOnSchedule, true},
		{"run due past grace, none started", job(func(j *intunedv1alpha1.IntunedJob) {
			j.Status.NextRunTime = at(-11 * time.Minute)
			j.Status.LastJobRun = &intunedv1alpha1.JobRunSummary{ID: "old", Start: at(-2 * time.Hour)}
		}), metav1.ConditionFalse, intunedv1alpha1.ReasonScheduleMissed, false},
		{"run due past grace, it started", job(func(j *intunedv1alpha1.IntunedJob) {
			j.Status.NextRunTime = at(-11 * time.Minute)
			j.Status.LastJobRun = &intunedv1alpha1.JobRunSummary{ID: "new", Start: at(-10 * time.Minute)}
		}), metav1.ConditionTrue, intunedv1alpha1.ReasonOnSchedule, false},
		{"newest settled JobRun stored nothing", job(func(j *intunedv1alpha1.IntunedJob) {
			j.Status.Deliveries = []intunedv1alpha1.JobRunDelivery{{JobRunID: "running", State: intunedv1alpha1.DeliveryPending}, stored(0), stored(5)}
		}), metav1.ConditionFalse, intunedv1alpha1.ReasonNothingDelivered, false},
		{"newest settled JobRun stored results", job(func(j *intunedv1alpha1.IntunedJob) {
			j.Status.Deliveries = []intunedv1alpha1.JobRunDelivery{stored(3), stored(0)}
		}), metav1.ConditionTrue, intunedv1alpha1.ReasonOnSchedule, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st, reason, msg, wait := freshness(c.job, now, grace)
			seenDataReasons[reason] = true
			if st != c.status || reason != c.reason || (wait > 0) != c.wait || msg == "" {
				t.Fatalf("%s %s %q wait %s; want %s %s wait %v", st, reason, msg, wait, c.status, c.reason, c.wait)
			}
		})
	}
}
