package intunedjob

import (
	"errors"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/controller/report"
	"github.com/intuned-operator/intuned-operator/internal/intuned"
)

// asSyncError turns any error of a sync into a failure: a *report.Failure as is,
// Intuned errors by their status, anything else (the Kubernetes API) as
// transient. secretName names the credentials Secret for the 401 message.
func asSyncError(err error, secretName string) *report.Failure {
	var f *report.Failure
	if errors.As(err, &f) {
		return f
	}
	switch {
	case intuned.IsUnauthorized(err):
		return report.Stalled(intunedv1alpha1.ReasonCredentialsInvalid,
			"Intuned rejected the workspace id or API key in Secret "+secretName+" (401/403); fix the Secret")
	case intuned.IsRateLimited(err):
		f := report.Retryable(intunedv1alpha1.ReasonRateLimited, err.Error(), err)
		f.RetryAfter = intuned.RetryAfter(err)
		return f
	}
	return report.Retryable(intunedv1alpha1.ReasonSyncFailed, err.Error(), err)
}

// failureOf is asSyncError for job, naming job's credentials Secret.
func (r *Reconciler) failureOf(job *intunedv1alpha1.IntunedJob, err error) *report.Failure {
	secretName := ""
	if ref, ok := job.CredentialsSecret(r.DefaultCredentials); ok {
		secretName = ref.String()
	}
	return asSyncError(err, secretName)
}

// reportOutcome sets the conditions from a sync's outcome. Synced says whether
// Intuned holds the spec; Ready says whether, beyond that, the Job is in
// the asked state with a usable sink (see readiness).
func reportOutcome(job *intunedv1alpha1.IntunedJob, synced bool, f *report.Failure) {
	conds, gen := &job.Status.Conditions, job.Generation
	if synced {
		report.SetCondition(conds, gen, intunedv1alpha1.ConditionSynced, metav1.ConditionTrue, intunedv1alpha1.ReasonSynced, syncedMessage(job))
	} else if f != nil {
		report.SetCondition(conds, gen, intunedv1alpha1.ConditionSynced, metav1.ConditionFalse, f.Reason, f.Message)
	}
	if f == nil {
		f = readiness(job)
	}
	if f != nil {
		report.Failed(conds, gen, f)
		return
	}
	report.Ready(conds, gen, intunedv1alpha1.ReasonSynced, syncedMessage(job))
}

// readiness is nil when a synced Job is ready: in the state spec.paused
// asks for and, with a receiverRef, pushing the receiver's token.
func readiness(job *intunedv1alpha1.IntunedJob) *report.Failure {
	want := intunedv1alpha1.JobStateActive
	if job.Spec.Paused {
		want = intunedv1alpha1.JobStatePaused
	}
	if job.Status.JobState != want {
		return report.Retryable(intunedv1alpha1.ReasonProgressing, fmt.Sprintf("Job %s is %s on Intuned; waiting for %s", job.EffectiveJobID(), job.Status.JobState, want), nil)
	}
	if s := job.Spec.Sink; s != nil && s.Webhook != nil && s.Webhook.ReceiverRef != nil &&
		(job.Status.Sink == nil || job.Status.Sink.TokenFingerprint == "") {
		return report.Retryable(intunedv1alpha1.ReasonReceiverNotReady, "the sink's WebhookReceiver token is not on Intuned yet", nil)
	}
	return nil
}

// syncedMessage explains Synced=True.
func syncedMessage(job *intunedv1alpha1.IntunedJob) string {
	msg := "Job " + job.EffectiveJobID() + " on Intuned matches the spec"
	if job.Spec.Paused {
		msg += " (paused)"
	}
	if a := job.Status.LastApplied; a != nil && len(a.NormalisedFields) > 0 {
		msg += "; Intuned holds " + intuned.FormatPaths(a.NormalisedFields, 5) +
			" differently (it rewrote them when the spec was written); they are not written again until the spec or the Job on Intuned changes"
	}
	return msg
}

// reportSuspended records that spec.suspend stops all reconciliation.
// Suspended is a settled state the user asked for, so Ready is True
// (reason Suspended): kstatus computes Current, `kubectl wait
// --for=condition=Ready` returns, and Flux and Argo CD health checks pass
// instead of waiting forever (Flux's own suspended objects never turn
// InProgress either). Synced is Unknown: nobody looks at Intuned meanwhile.
// docs/status.md explains the choice.
func reportSuspended(job *intunedv1alpha1.IntunedJob) {
	const msg = "spec.suspend is true: no Intuned API calls are made; the status is as last observed"
	conds, gen := &job.Status.Conditions, job.Generation
	report.Ready(conds, gen, intunedv1alpha1.ReasonSuspended, msg)
	report.SetCondition(conds, gen, intunedv1alpha1.ConditionSynced, metav1.ConditionUnknown, intunedv1alpha1.ReasonSuspended, msg)
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
