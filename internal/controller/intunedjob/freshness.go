package intunedjob

import (
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/controller/report"
)

// Freshness: does a scheduled job keep producing data? Intuned's own
// monitoring is batched over hours and lives outside Kubernetes; the
// operator sees every poll.

// DefaultScheduleGrace is how late a scheduled JobRun may start before the
// job is reported stale (ScheduleMissed).
const DefaultScheduleGrace = 10 * time.Minute

// scheduleClockSkew tolerates the difference between Intuned's clock
// (next_run_time, a JobRun's start_time) and the operator's.
const scheduleClockSkew = 30 * time.Second

func (r *Reconciler) scheduleGrace() time.Duration {
	if r.ScheduleGrace > 0 {
		return r.ScheduleGrace
	}
	return DefaultScheduleGrace
}

// freshness decides condition Fresh from what status holds: the run time
// Intuned announced (nextRunTime), the last JobRun and its accounting. It
// returns when it must look again (0: at the next poll).
func freshness(job *intunedv1alpha1.IntunedJob, now time.Time, grace time.Duration) (metav1.ConditionStatus, string, string, time.Duration) {
	st := job.Status
	if job.Spec.Schedule == nil || job.Spec.Paused || st.JobState != intunedv1alpha1.JobStateActive {
		return metav1.ConditionUnknown, intunedv1alpha1.ReasonNotScheduled, "the Job has no schedule, or is paused", 0
	}
	if due := st.NextRunTime; due != nil {
		late := now.Sub(due.Time)
		started := st.LastJobRun != nil && st.LastJobRun.Start != nil && !st.LastJobRun.Start.Add(scheduleClockSkew).Before(due.Time)
		switch {
		case late > grace && !started:
			return metav1.ConditionFalse, intunedv1alpha1.ReasonScheduleMissed, fmt.Sprintf(
				"the run Intuned scheduled for %s has not started %s later (grace %s)", due.UTC().Format(time.RFC3339), late.Truncate(time.Second), grace), 0
		case late <= grace && !started:
			return freshData(job, max(grace-late, 0)+time.Second)
		}
	}
	return freshData(job, 0)
}

// freshData is Fresh once the schedule is kept: False when the newest
// settled JobRun stored nothing in the receiver.
func freshData(job *intunedv1alpha1.IntunedJob, wait time.Duration) (metav1.ConditionStatus, string, string, time.Duration) {
	for _, d := range job.Status.Deliveries {
		if d.State == intunedv1alpha1.DeliveryPending || d.State == intunedv1alpha1.DeliveryBackfilling || d.Stored == nil {
			continue
		}
		if *d.Stored == 0 {
			produced := "no"
			if d.Produced != nil {
				produced = fmt.Sprint(*d.Produced)
			}
			return metav1.ConditionFalse, intunedv1alpha1.ReasonNothingDelivered, fmt.Sprintf(
				"JobRun %s finished and its retry window passed with nothing stored in the receiver (Intuned produced %s results)", d.JobRunID, produced), wait
		}
		break // the newest settled JobRun delivered
	}
	return metav1.ConditionTrue, intunedv1alpha1.ReasonOnSchedule, "scheduled runs start on time", wait
}

// reportFreshness sets condition Fresh and its metric.
func (r *Reconciler) reportFreshness(job *intunedv1alpha1.IntunedJob, now time.Time) time.Duration {
	st, reason, msg, wait := freshness(job, now, r.scheduleGrace())
	prev := meta.FindStatusCondition(job.Status.Conditions, intunedv1alpha1.ConditionFresh)
	if st == metav1.ConditionFalse && (prev == nil || prev.Status != metav1.ConditionFalse || prev.Reason != reason) {
		r.event(job, "Warning", reason, "Freshness", msg)
	}
	report.SetCondition(&job.Status.Conditions, job.Generation, intunedv1alpha1.ConditionFresh, st, reason, msg)
	observeFreshness(job, st == metav1.ConditionFalse)
	return wait
}
