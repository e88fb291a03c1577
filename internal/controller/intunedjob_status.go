package controller

import (
	"errors"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/intuned"
)

// syncError is every way a reconcile can end other than "in sync". Its
// kind decides both the conditions and how the reconcile is retried.
type syncError struct {
	kind    syncErrorKind
	reason  string // condition reason (api/v1alpha1 Reason*)
	message string // human text; never contains a secret
	// retryAfter, for kindTransient, is a server's Retry-After.
	retryAfter time.Duration
	err        error
}

type syncErrorKind int

const (
	// kindWaiting: waiting for something a watch reports (a Secret, a
	// WebhookReceiver becoming Ready). No requeue beyond the poll interval.
	kindWaiting syncErrorKind = iota
	// kindStalled: retrying cannot help until a human changes the spec or a
	// Secret (400, 401, conflict). No requeue beyond the poll interval.
	kindStalled
	// kindTransient: 5xx, timeouts, 429; retried with back-off and jitter.
	kindTransient
)

func (e *syncError) Error() string { return e.reason + ": " + e.message }
func (e *syncError) Unwrap() error { return e.err }

func waitFor(reason, message string) *syncError {
	return &syncError{kind: kindWaiting, reason: reason, message: message}
}

func stalled(reason, message string) *syncError {
	return &syncError{kind: kindStalled, reason: reason, message: message}
}

// asSyncError turns any error into a syncError: *syncError as is, Intuned
// errors by their status, anything else (the Kubernetes API) as transient.
// secretName names the credentials Secret for the 401 message.
func asSyncError(err error, secretName string) *syncError {
	var se *syncError
	if errors.As(err, &se) {
		return se
	}
	switch {
	case intuned.IsUnauthorized(err):
		return stalled(intunedv1alpha1.ReasonCredentialsInvalid,
			"Intuned rejected the workspace id or API key in Secret "+secretName+" (401/403); fix the Secret")
	case intuned.IsRateLimited(err):
		return &syncError{kind: kindTransient, reason: intunedv1alpha1.ReasonRateLimited,
			message: err.Error(), retryAfter: intuned.RetryAfter(err), err: err}
	}
	return &syncError{kind: kindTransient, reason: intunedv1alpha1.ReasonSyncFailed, message: err.Error(), err: err}
}

// setCondition sets one condition for the current generation.
func setCondition(job *intunedv1alpha1.IntunedJob, typ string, status metav1.ConditionStatus, reason, message string) {
	meta.SetStatusCondition(&job.Status.Conditions, metav1.Condition{
		Type:               typ,
		Status:             status,
		Reason:             reason,
		Message:            message,
		ObservedGeneration: job.Generation,
	})
}

// reportSynced records success: the Job on Intuned matches the spec.
func reportSynced(job *intunedv1alpha1.IntunedJob) {
	msg := "Job " + job.EffectiveJobID() + " on Intuned matches the spec"
	if job.Spec.Paused {
		msg += " (paused)"
	}
	if a := job.Status.LastApplied; a != nil && len(a.NormalisedFields) > 0 {
		msg += "; Intuned holds " + intuned.FormatPaths(a.NormalisedFields, 5) +
			" differently (it rewrote them when the spec was written); they are not written again until the spec or the Job on Intuned changes"
	}
	setCondition(job, intunedv1alpha1.ConditionReady, metav1.ConditionTrue, intunedv1alpha1.ReasonSynced, msg)
	setCondition(job, intunedv1alpha1.ConditionSynced, metav1.ConditionTrue, intunedv1alpha1.ReasonSynced, msg)
	setCondition(job, intunedv1alpha1.ConditionStalled, metav1.ConditionFalse, intunedv1alpha1.ReasonSynced, "")
}

// reportError records why the Job is not (known to be) in sync. Ready goes
// False for every error: a job whose Intuned state is unknown or wrong is
// not ready. Stalled is True only for errors a retry cannot fix.
func reportError(job *intunedv1alpha1.IntunedJob, e *syncError) {
	setCondition(job, intunedv1alpha1.ConditionReady, metav1.ConditionFalse, e.reason, e.message)
	setCondition(job, intunedv1alpha1.ConditionSynced, metav1.ConditionFalse, e.reason, e.message)
	if e.kind == kindStalled {
		setCondition(job, intunedv1alpha1.ConditionStalled, metav1.ConditionTrue, e.reason, e.message)
	} else {
		setCondition(job, intunedv1alpha1.ConditionStalled, metav1.ConditionFalse, e.reason, "")
	}
}

// reportSuspended records that spec.suspend stops all reconciliation.
func reportSuspended(job *intunedv1alpha1.IntunedJob) {
	const msg = "spec.suspend is true: no Intuned API calls are made"
	setCondition(job, intunedv1alpha1.ConditionReady, metav1.ConditionFalse, intunedv1alpha1.ReasonSuspended, msg)
	setCondition(job, intunedv1alpha1.ConditionSynced, metav1.ConditionFalse, intunedv1alpha1.ReasonSuspended, msg)
	setCondition(job, intunedv1alpha1.ConditionStalled, metav1.ConditionFalse, intunedv1alpha1.ReasonSuspended, "")
}

// observeJob copies what Intuned reports about the Job into status.
func observeJob(job *intunedv1alpha1.IntunedJob, j *intuned.Job) {
	job.Status.JobState = intunedv1alpha1.JobState(j.State)
	job.Status.NextRunTime = metaTime(j.NextRunTime.Ptr())
	job.Status.LastRunTime = metaTime(j.LastRunTime.Ptr())
}

// runSummary is the status view of a JobRun.
func runSummary(jr intuned.JobRun) *intunedv1alpha1.JobRunSummary {
	s := &intunedv1alpha1.JobRunSummary{
		ID:         jr.ID,
		Type:       string(jr.Type),
		Status:     string(jr.Status),
		Payloads:   int64Ptr(jr.Payloads),
		Successful: int64Ptr(jr.SuccessfulRuns),
		Failed:     int64Ptr(jr.FailedRuns),
		End:        metaTime(jr.EndTime.Ptr()),
	}
	if jr.Reason != nil {
		s.Reason = jr.Reason.Type
	}
	if jr.Error != nil {
		s.ErrorCode = jr.Error.Code
	}
	s.Message = runMessage(jr)
	if !jr.StartTime.IsZero() {
		t := metav1.NewTime(jr.StartTime.Time)
		s.Start = &t
	}
	return s
}

// runActive reports whether the last JobRun may still change, so status
// should be refreshed sooner than the poll interval.
func runActive(s *intunedv1alpha1.JobRunSummary) bool {
	return s != nil && !intuned.JobRunStatus(s.Status).Terminal()
}

func metaTime(t *time.Time) *metav1.Time {
	if t == nil || t.IsZero() {
		return nil
	}
	mt := metav1.NewTime(t.Truncate(time.Second))
	return &mt
}

func int64Ptr(v *int) *int64 {
	if v == nil {
		return nil
	}
	i := int64(*v)
	return &i
}

// maxRunMessage bounds Intuned's text copied into status and Events.
const maxRunMessage = 512

// runMessage is Intuned's explanation of a JobRun: its error's message,
// else its reason's, shortened to maxRunMessage.
func runMessage(jr intuned.JobRun) string {
	var m string
	switch {
	case jr.Error != nil && jr.Error.Message != "":
		m = jr.Error.Code + ": " + jr.Error.Message
	case jr.Reason != nil && jr.Reason.Message != "":
		m = jr.Reason.Type + ": " + jr.Reason.Message
	}
	if r := []rune(m); len(r) > maxRunMessage {
		m = string(r[:maxRunMessage]) + "..."
	}
	return m
}
