package intunedjob

import (
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/controller/report"
	"github.com/intuned-operator/intuned-operator/internal/controller/sharding"
	"github.com/intuned-operator/intuned-operator/internal/intuned"
)

// TestPlanner decides every case from tables, without an API server or
// Intuned: how to make Intuned hold the spec (planSync), what follows
// (planFollowUp), and what the user then sees (the conditions). Its last
// part checks that between them the tables produce every action and every
// condition reason this package's code can produce, so a new decision
// comes with a row here.
func TestPlanner(t *testing.T) {
	t.Run("sync", testPlanSync)
	t.Run("follow-up", testPlanFollowUp)
	t.Run("deletion", testPlanDeletion)
	t.Run("conditions", testConditions)
	t.Run("covers every action and reason", testCoverage)
}

var (
	planNow = time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	// seen collects the actions and reasons the tables produced.
	seenActions = map[action]bool{}
	seenReasons = map[string]bool{}
)

func seeFailure(err error) {
	var f *report.Failure
	if errors.As(err, &f) && f != nil {
		seenReasons[f.Reason] = true
	}
}

// planFacts are the facts of a managed job whose Job on Intuned equals
// the spec; each row changes what it is about.
func planFacts(mutate ...func(*facts)) facts {
	job := desiredTestJob(nil)
	job.Status.Managed = true
	desired, err := desiredJob(job, resolvedRefs{})
	if err != nil {
		panic(err)
	}
	spec := desired // the Job on Intuned holds exactly the spec
	f := facts{
		job:     job,
		desired: desired,
		digest:  func(s intuned.UpdateJobRequest) string { return intuned.SpecDigest("key", s) },
		remote: &intuned.Job{
			ID: job.EffectiveJobID(), Payload: spec.Payload, Configuration: spec.Configuration,
			State: intuned.JobStateActive, CreatedAt: intuned.Time{Time: planNow.Add(-time.Hour)},
		},
		now:  planNow,
		done: map[action]bool{},
	}
	for _, m := range mutate {
		m(&f)
	}
	return f
}

// drifted: someone changed the Job on Intuned.
func drifted(f *facts) {
	f.remote.Payload = []intuned.PayloadItem{{APIName: "other", Parameters: []byte(`{}`)}}
}

// lastApplied records a write of the spec that Intuned answered with the
// Job as it is now.
func lastApplied(unchangedWrites int32, refused string) func(*facts) {
	return func(f *facts) {
		f.job.Status.LastApplied = &intunedv1alpha1.AppliedRecord{
			SpecDigest: f.digest(f.desired), ServerDigest: f.digest(f.remote.Spec()),
			NormalisedFields: intuned.SpecDiff(f.desired, f.remote.Spec()), UnchangedWrites: unchangedWrites, Refused: refused,
		}
	}
}

func done(actions ...action) func(*facts) {
	return func(f *facts) {
		for _, a := range actions {
			f.done[a] = true
		}
	}
}

func testPlanSync(t *testing.T) {
	tests := []struct {
		name       string
		facts      facts
		want       action
		stop       string // reason
		notice     string // reason
		noticeKind report.Kind
		remembers  bool
	}{
		{name: "not on Intuned: create", want: actCreate,
			facts: planFacts(func(f *facts) { f.remote = nil })},
		{name: "deleted on Intuned behind our back: create again", want: actCreate,
			facts: planFacts(func(f *facts) { f.remote = nil; f.job.Status.Managed = true })},
		{name: "found, not ours, created after this object with our spec: our lost create", want: actClaimCreated,
			facts: planFacts(func(f *facts) {
				f.job.Status.Managed = false
				f.job.CreationTimestamp = metav1.NewTime(planNow.Add(-2 * time.Hour))
			})},
		{name: "found, not ours, created within the clock skew before this object: our lost create", want: actClaimCreated,
			facts: planFacts(func(f *facts) {
				f.job.Status.Managed = false
				f.job.CreationTimestamp = metav1.NewTime(f.remote.CreatedAt.Add(createClockSkew - time.Second))
			})},
		{name: "found, not ours, created before this object: someone else's", stop: intunedv1alpha1.ReasonAlreadyExists,
			facts: planFacts(func(f *facts) {
				f.job.Status.Managed = false
				f.job.CreationTimestamp = metav1.NewTime(planNow)
			})},
		{name: "found, not ours, after this object but another spec: someone else's", stop: intunedv1alpha1.ReasonAlreadyExists,
			facts: planFacts(drifted, func(f *facts) {
				f.job.Status.Managed = false
				f.job.CreationTimestamp = metav1.NewTime(planNow.Add(-2 * time.Hour))
			})},
		{name: "found, not ours, no creation time on Intuned: someone else's", stop: intunedv1alpha1.ReasonAlreadyExists,
			facts: planFacts(func(f *facts) {
				f.job.Status.Managed = false
				f.remote.CreatedAt = intuned.Time{}
			})},
		{name: "found, not ours, spec.adopt: adopt", want: actAdopt,
			facts: planFacts(drifted, func(f *facts) { f.job.Status.Managed = false; f.job.Spec.Adopt = true })},
		{name: "created in this reconcile: Intuned's answer stands", want: actNone,
			facts: planFacts(drifted, done(actCreate))},
		{name: "equal to the spec: nothing to write, digests remembered", want: actNone, remembers: true,
			facts: planFacts()},
		{name: "drifted: update", want: actUpdate,
			facts: planFacts(drifted)},
		{name: "drifted since the last write: update", want: actUpdate,
			facts: planFacts(lastApplied(0, ""), drifted)},
		{name: "spec changed since the last write: update", want: actUpdate,
			facts: planFacts(drifted, lastApplied(2, ""), func(f *facts) { f.desired.Payload[0].APIName = "details" })},
		{name: "normalised by Intuned on an accepted write: not written again", want: actNone,
			facts: planFacts(drifted, lastApplied(0, ""))},
		{name: "one write changed nothing: written once more", want: actUpdate,
			facts: planFacts(drifted, lastApplied(1, ""))},
		{name: "one write changed nothing, and this reconcile wrote: wait for the next poll", want: actNone,
			notice: intunedv1alpha1.ReasonServerNormalises, noticeKind: report.NeedsUser,
			facts: planFacts(drifted, lastApplied(1, ""), done(actUpdate))},
		{name: "two writes changed nothing: writes stop", want: actNone,
			notice: intunedv1alpha1.ReasonServerNormalises, noticeKind: report.Terminal,
			facts: planFacts(drifted, lastApplied(2, ""))},
		{name: "written in this reconcile, Intuned answered differently: the next poll decides", want: actNone,
			facts: planFacts(drifted, done(actUpdate))},
		{name: "defined in code, nothing changed since Intuned refused: not written", want: actNone,
			notice: intunedv1alpha1.ReasonManagedInCode, noticeKind: report.Terminal,
			facts: planFacts(drifted, lastApplied(0, intunedv1alpha1.ReasonManagedInCode))},
		{name: "defined in code, the spec changed since: written again", want: actUpdate,
			facts: planFacts(drifted, lastApplied(0, intunedv1alpha1.ReasonManagedInCode), func(f *facts) { f.desired.Payload[0].APIName = "details" })},
		{name: "created, read-back lost (no server digest): written once", want: actUpdate,
			facts: planFacts(drifted, func(f *facts) {
				f.job.Status.LastApplied = &intunedv1alpha1.AppliedRecord{SpecDigest: f.digest(f.desired)}
			})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := planSync(tt.facts)
			seenActions[p.next] = true
			if p.next != tt.want {
				t.Errorf("next = %q, want %q", p.next, tt.want)
			}
			if got := reasonOf(p.stop); got != tt.stop {
				t.Errorf("stop = %q, want %q (%v)", got, tt.stop, p.stop)
			}
			if got := reasonOf(p.notice); got != tt.notice {
				t.Errorf("notice = %q, want %q (%v)", got, tt.notice, p.notice)
			} else if p.notice != nil && p.notice.Kind != tt.noticeKind {
				t.Errorf("notice kind = %v, want %v", p.notice.Kind, tt.noticeKind)
			}
			if (p.remember != nil) != tt.remembers {
				t.Errorf("remember = %+v, want one: %v", p.remember, tt.remembers)
			}
			if p.stop != nil {
				seeFailure(p.stop)
				// What the user then sees: kstatus InProgress, waiting.
				job := tt.facts.job.DeepCopy()
				reportOutcome(job, false, p.stop)
				wantCondition(t, job, intunedv1alpha1.ConditionSynced, metav1.ConditionFalse, tt.stop)
			}
			seeFailure(p.notice)
		})
	}
}

func reasonOf(f *report.Failure) string {
	if f == nil {
		return ""
	}
	return f.Reason
}

func testPlanFollowUp(t *testing.T) {
	paused := func(f *facts) { f.remote.State = intuned.JobStatePaused }
	specPaused := func(f *facts) { f.job.Spec.Paused = true }
	trigger := func(value string) func(*facts) {
		return func(f *facts) {
			f.job.Annotations = map[string]string{intunedv1alpha1.AnnotationTrigger: value}
		}
	}
	handled := func(value string, claimedAgo time.Duration, runID string) func(*facts) {
		return func(f *facts) {
			f.job.Status.LastHandledTrigger = value
			f.job.Status.LastTriggeredJobRunID = runID
			if claimedAgo >= 0 {
				f.job.Status.LastTriggerTime = &metav1.Time{Time: planNow.Add(-claimedAgo)}
			}
		}
	}
	tests := []struct {
		name  string
		facts facts
		want  action
	}{
		{"run times as status knew them, no JobRun active: nothing new to read", planFacts(), actNone},
		{"last run time moved (a JobRun ended): read the newest JobRun", planFacts(func(f *facts) {
			f.remote.LastRunTime = &intuned.Time{Time: planNow.Add(-time.Minute)}
		}), actRefreshRun},
		{"next run time moved (a scheduled JobRun started): read the newest JobRun", planFacts(func(f *facts) {
			f.knownNextRun = &metav1.Time{Time: planNow.Add(-time.Minute)}
			f.remote.NextRunTime = &intuned.Time{Time: planNow.Add(time.Hour)}
		}), actRefreshRun},
		{"last JobRun still active: read it again", planFacts(func(f *facts) {
			f.job.Status.LastJobRun = &intunedv1alpha1.JobRunSummary{ID: "run-1", Status: string(intuned.JobRunPending)}
		}), actRefreshRun},
		{"JobRun read: nothing left", planFacts(done(actRefreshRun)), actNone},
		{"spec.paused, Job active: pause", planFacts(specPaused), actPause},
		{"spec.paused, Job paused: nothing to change", planFacts(specPaused, paused, done(actRefreshRun)), actNone},
		{"pause sent and Intuned still active: not again", planFacts(specPaused, done(actPause, actRefreshRun)), actNone},
		{"unpaused spec, Job paused: resume", planFacts(paused), actResume},
		{"new trigger value: trigger", planFacts(trigger("1")), actTrigger},
		{"next trigger value: trigger", planFacts(trigger("2"), handled("1", time.Hour, "run-1")), actTrigger},
		{"paused Job, new trigger: pause first", planFacts(specPaused, trigger("1")), actPause},
		{"trigger handled: read the JobRun", planFacts(trigger("1"), handled("1", time.Hour, "run-1")), actRefreshRun},
		{"trigger refused earlier (no claim time): never again", planFacts(trigger("1"), handled("1", -1, ""), done(actRefreshRun)), actNone},
		{"trigger outcome unknown: look for its JobRun", planFacts(trigger("1"), handled("1", time.Minute, "")), actFindTriggeredRun},
		{"outcome unknown, no JobRun yet, within the verify delay: wait", planFacts(trigger("1"), handled("1", time.Second, ""), done(actFindTriggeredRun)), actRefreshRun},
		{"outcome unknown, no JobRun after the verify delay: trigger again", planFacts(trigger("1"), handled("1", triggerVerifyDelay, ""), done(actFindTriggeredRun)), actTrigger},
		{"triggered in this reconcile (outcome unknown): not again", planFacts(trigger("1"), handled("1", 0, ""), done(actTrigger, actRefreshRun)), actNone},
		{"created in this reconcile: no JobRun to read", planFacts(done(actCreate)), actNone},
		{"created and triggered in this reconcile: read the JobRun", planFacts(done(actCreate, actTrigger), func(f *facts) { f.runStarted = true }), actRefreshRun},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := planFollowUp(tt.facts)
			seenActions[got] = true
			if got != tt.want {
				t.Errorf("next = %q, want %q", got, tt.want)
			}
		})
	}
}

func testPlanDeletion(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*intunedv1alpha1.IntunedJob)
		want   action
	}{
		{"ours: delete it", nil, actDelete},
		{"ours, deletionPolicy Orphan: leave it", func(j *intunedv1alpha1.IntunedJob) { j.Spec.DeletionPolicy = intunedv1alpha1.DeletionPolicyOrphan }, actNone},
		{"someone else's: never touched", func(j *intunedv1alpha1.IntunedJob) { j.Status.Managed = false }, actNone},
		{"suspended: no call at all", func(j *intunedv1alpha1.IntunedJob) { j.Spec.Suspend = true }, actNone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			job := desiredTestJob(nil)
			job.Status.Managed = true
			if tt.mutate != nil {
				tt.mutate(job)
			}
			got := planDeletion(job)
			seenActions[got] = true
			if got != tt.want {
				t.Errorf("planDeletion = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestAppliedAfterUpdate: what a write leaves in status.lastApplied decides
// whether the next poll writes again.
func TestAppliedAfterUpdate(t *testing.T) {
	f := planFacts(drifted)
	have := f.digest(f.remote.Spec())
	normalised := f.remote // Intuned answered the write with its old Job
	accepted := &intuned.Job{Payload: f.desired.Payload, Configuration: f.desired.Configuration}
	tests := []struct {
		name  string
		last  *intunedv1alpha1.AppliedRecord
		after *intuned.Job
		want  int32
	}{
		{"write accepted", nil, accepted, 0},
		{"write changed nothing", nil, normalised, 1},
		{"second write changed nothing", &intunedv1alpha1.AppliedRecord{SpecDigest: f.digest(f.desired), ServerDigest: have, UnchangedWrites: 1}, normalised, 2},
		{"first write after our create, its answer unseen", &intunedv1alpha1.AppliedRecord{SpecDigest: f.digest(f.desired)}, normalised, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := appliedAfterUpdate("key", tt.last, have, f.desired, tt.after)
			if rec.UnchangedWrites != tt.want {
				t.Errorf("unchangedWrites = %d, want %d", rec.UnchangedWrites, tt.want)
			}
			if rec.SpecDigest != f.digest(f.desired) || rec.ServerDigest != f.digest(tt.after.Spec()) {
				t.Errorf("digests %+v", rec)
			}
		})
	}
}

// TestConditions: what the user sees after a sync, for every outcome the
// reads, the planner and Intuned's answers can give.
func testConditions(t *testing.T) {
	credsRef := types.NamespacedName{Namespace: "ns", Name: "creds"}
	readyReceiver := &intunedv1alpha1.WebhookReceiver{Status: intunedv1alpha1.WebhookReceiverStatus{
		URL: "https://hooks.example.com/webhooks/intuned", TokenSecretName: "hooks-token",
		Conditions: []metav1.Condition{{Type: intunedv1alpha1.ConditionReady, Status: metav1.ConditionTrue}},
	}}
	other := desiredTestJob(func(j *intunedv1alpha1.IntunedJob) {
		j.Name, j.UID = "earlier", "other"
		j.CreationTimestamp = metav1.Time{Time: planNow.Add(-time.Hour)}
	})
	tooMany := &intuned.APIError{StatusCode: http.StatusTooManyRequests, RetryAfter: 7 * time.Second}

	tests := []struct {
		name    string
		synced  bool
		err     error
		mutate  func(*intunedv1alpha1.IntunedJob)
		reason  string // Ready's reason
		ready   metav1.ConditionStatus
		stalled metav1.ConditionStatus
	}{
		{name: "synced and active", synced: true,
			reason: intunedv1alpha1.ReasonSynced, ready: metav1.ConditionTrue, stalled: metav1.ConditionFalse},
		{name: "synced, not yet paused", synced: true, mutate: func(j *intunedv1alpha1.IntunedJob) { j.Spec.Paused = true },
			reason: intunedv1alpha1.ReasonProgressing, ready: metav1.ConditionFalse, stalled: metav1.ConditionFalse},
		{name: "synced, receiver token not on Intuned", synced: true,
			mutate: func(j *intunedv1alpha1.IntunedJob) {
				j.Spec.Sink = &intunedv1alpha1.JobSink{Webhook: &intunedv1alpha1.WebhookSink{ReceiverRef: &intunedv1alpha1.LocalObjectReference{Name: "hooks"}}}
			},
			reason: intunedv1alpha1.ReasonReceiverNotReady, ready: metav1.ConditionFalse, stalled: metav1.ConditionFalse},
		{name: "no credentials configured", err: func() error {
			_, err := (&Reconciler{}).credentials(t.Context(), desiredTestJob(nil))
			return err
		}(), reason: intunedv1alpha1.ReasonCredentialsNotFound, ready: metav1.ConditionFalse, stalled: metav1.ConditionFalse},
		{name: "default credentials not allowed in the job's namespace", err: func() error {
			r := &Reconciler{DefaultCredentials: intunedv1alpha1.DefaultCredentials{Secret: types.NamespacedName{Namespace: "platform", Name: "intuned"}}}
			_, err := r.credentials(t.Context(), desiredTestJob(func(j *intunedv1alpha1.IntunedJob) { j.Spec.CredentialsRef = nil }))
			return err
		}(), reason: intunedv1alpha1.ReasonDefaultCredentialsNotAllowed, ready: metav1.ConditionFalse, stalled: metav1.ConditionTrue},
		{name: "credentials Secret missing", err: func() error { _, err := credentialsFrom(credsRef, nil); return err }(),
			reason: intunedv1alpha1.ReasonCredentialsNotFound, ready: metav1.ConditionFalse, stalled: metav1.ConditionFalse},
		{name: "credentials Secret without apiKey", err: func() error {
			_, err := credentialsFrom(credsRef, &corev1.Secret{Data: map[string][]byte{intunedv1alpha1.CredentialsKeyWorkspaceID: []byte("ws")}})
			return err
		}(), reason: intunedv1alpha1.ReasonCredentialsNotFound, ready: metav1.ConditionFalse, stalled: metav1.ConditionFalse},
		{name: "header Secret missing", err: func() error { _, err := valueFrom("ns", "headers", "x", nil); return err }(),
			reason: intunedv1alpha1.ReasonSecretNotFound, ready: metav1.ConditionFalse, stalled: metav1.ConditionFalse},
		{name: "receiver missing", err: receiverUsable("ns", "hooks", nil),
			reason: intunedv1alpha1.ReasonReceiverNotFound, ready: metav1.ConditionFalse, stalled: metav1.ConditionFalse},
		{name: "receiver in another manager shard", err: receiverInOtherShard("hooks", shardB, sharding.Default),
			reason: intunedv1alpha1.ReasonReceiverInOtherShard, ready: metav1.ConditionFalse, stalled: metav1.ConditionFalse},
		{name: "receiver's token Secret not there yet", err: func() error { _, err := receiverToken("hooks", readyReceiver, nil); return err }(),
			reason: intunedv1alpha1.ReasonReceiverNotReady, ready: metav1.ConditionFalse, stalled: metav1.ConditionFalse},
		{name: "another IntunedJob claims the Job", err: conflictWith(desiredTestJob(func(j *intunedv1alpha1.IntunedJob) {
			j.CreationTimestamp = metav1.Time{Time: planNow}
		}), []intunedv1alpha1.IntunedJob{*other}),
			reason: intunedv1alpha1.ReasonConflict, ready: metav1.ConditionFalse, stalled: metav1.ConditionTrue},
		{name: "spec not a Job", err: func() error {
			_, err := desiredJob(desiredTestJob(func(j *intunedv1alpha1.IntunedJob) {
				j.Spec.Payload[0].Parameters = jsonOf(`[1]`)
			}), resolvedRefs{})
			return report.Stalled(intunedv1alpha1.ReasonInvalidSpec, err.Error())
		}(), reason: intunedv1alpha1.ReasonInvalidSpec, ready: metav1.ConditionFalse, stalled: metav1.ConditionTrue},
		{name: "Intuned refused the spec (400)", err: asSyncError(intunedWriteError(&intuned.APIError{StatusCode: http.StatusBadRequest, Message: "bad"}), ""),
			reason: intunedv1alpha1.ReasonInvalidSpec, ready: metav1.ConditionFalse, stalled: metav1.ConditionTrue},
		{name: "bad API key (401)", err: asSyncError(&intuned.APIError{StatusCode: http.StatusUnauthorized}, "ns/creds"),
			reason: intunedv1alpha1.ReasonCredentialsInvalid, ready: metav1.ConditionFalse, stalled: metav1.ConditionTrue},
		{name: "rate limited (429)", err: asSyncError(tooMany, ""),
			reason: intunedv1alpha1.ReasonRateLimited, ready: metav1.ConditionFalse, stalled: metav1.ConditionFalse},
		{name: "Intuned failed (5xx)", err: asSyncError(&intuned.APIError{StatusCode: http.StatusBadGateway}, ""),
			reason: intunedv1alpha1.ReasonSyncFailed, ready: metav1.ConditionFalse, stalled: metav1.ConditionFalse},
		{name: "Job appeared while creating it", synced: false, err: report.Retryable(intunedv1alpha1.ReasonSyncFailed, "appeared", nil),
			reason: intunedv1alpha1.ReasonSyncFailed, ready: metav1.ConditionFalse, stalled: metav1.ConditionFalse},
		{name: "project not deployed", err: report.WaitFor(intunedv1alpha1.ReasonProjectNotFound, "deploy it"),
			reason: intunedv1alpha1.ReasonProjectNotFound, ready: metav1.ConditionFalse, stalled: metav1.ConditionFalse},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			job := desiredTestJob(tt.mutate)
			job.Status.JobState = intunedv1alpha1.JobStateActive
			var f *report.Failure
			if tt.err != nil {
				f = asSyncError(tt.err, "ns/creds")
				seeFailure(f)
			}
			reportOutcome(job, tt.synced, f)
			wantCondition(t, job, intunedv1alpha1.ConditionReady, tt.ready, tt.reason)
			wantCondition(t, job, intunedv1alpha1.ConditionStalled, tt.stalled, "")
			seenReasons[tt.reason] = true
			if tt.synced {
				wantCondition(t, job, intunedv1alpha1.ConditionSynced, metav1.ConditionTrue, intunedv1alpha1.ReasonSynced)
			} else {
				wantCondition(t, job, intunedv1alpha1.ConditionSynced, metav1.ConditionFalse, tt.reason)
			}
			if tt.name == "rate limited (429)" {
				if res, _ := report.Result(f, time.Minute); res.RequeueAfter < tooMany.RetryAfter {
					t.Errorf("a 429's Retry-After is not honoured: %+v", res)
				}
			}
		})
	}

	t.Run("suspended", func(t *testing.T) {
		job := desiredTestJob(nil)
		reportSuspended(job)
		wantCondition(t, job, intunedv1alpha1.ConditionReady, metav1.ConditionTrue, intunedv1alpha1.ReasonSuspended)
		wantCondition(t, job, intunedv1alpha1.ConditionSynced, metav1.ConditionUnknown, intunedv1alpha1.ReasonSuspended)
		wantCondition(t, job, intunedv1alpha1.ConditionStalled, metav1.ConditionFalse, "")
		wantCondition(t, job, intunedv1alpha1.ConditionReconciling, metav1.ConditionFalse, "")
		seenReasons[intunedv1alpha1.ReasonSuspended] = true
	})
	t.Run("deletion blocked", func(t *testing.T) {
		job := desiredTestJob(nil)
		f := deletionBlocked(job, report.WaitFor(intunedv1alpha1.ReasonCredentialsNotFound, "no Secret"))
		if f.Kind != report.Terminal || f.Reason != intunedv1alpha1.ReasonDeletionBlocked ||
			!strings.Contains(f.Message, "deletionPolicy") {
			t.Errorf("deletion blocked by missing credentials: %+v", f)
		}
		seeFailure(f)
	})
}

func jsonOf(s string) *apiextensionsv1.JSON { return &apiextensionsv1.JSON{Raw: []byte(s)} }

func wantCondition(t *testing.T, job *intunedv1alpha1.IntunedJob, typ string, status metav1.ConditionStatus, reason string) {
	t.Helper()
	for _, c := range job.Status.Conditions {
		if c.Type != typ {
			continue
		}
		if c.Status != status || (reason != "" && c.Reason != reason) || c.ObservedGeneration != job.Generation {
			t.Errorf("%s = %s/%s (%q), want %s/%s", typ, c.Status, c.Reason, c.Message, status, reason)
		}
		return
	}
	t.Errorf("no %s condition in %+v", typ, job.Status.Conditions)
}

// testCoverage: every action the executor knows and every condition reason
// this package's code names was produced by the tables above.
func testCoverage(t *testing.T) {
	for _, a := range []action{actNone, actCreate, actClaimCreated, actAdopt, actUpdate, actPause, actResume,
		actFindTriggeredRun, actTrigger, actRefreshRun, actDelete} {
		if !seenActions[a] {
			t.Errorf("no planner row produces action %q", a)
		}
	}
	for _, r := range reasonsInSource(t, func(name string) bool { return !dataFiles[name] }) {
		if !seenReasons[r] {
			t.Errorf("no row produces condition reason %s, which this package's code names", r)
		}
	}
	if t.Failed() {
		t.Logf("seen reasons: %v", slices.Sorted(maps.Keys(seenReasons)))
	}
}

// reasonsInSource lists the intunedv1alpha1.Reason* constants that the
// package's non-test files name.
// dataFiles decide conditions DataComplete and Fresh; their reasons are
// covered by TestDataReasons, not by the planner's table.
var dataFiles = map[string]bool{"accounting.go": true, "deliveries.go": true, "freshness.go": true}

// reasonsInSource lists the condition reasons the package's files (those
// include accepts) name.
func reasonsInSource(t *testing.T, include func(name string) bool) []string {
	t.Helper()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	set := map[string]bool{}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") || !include(name) {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		file, err := parser.ParseFile(token.NewFileSet(), name, src, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			if sel, ok := n.(*ast.SelectorExpr); ok {
				if x, ok := sel.X.(*ast.Ident); ok && x.Name == "intunedv1alpha1" && strings.HasPrefix(sel.Sel.Name, "Reason") {
					set[reasonValue(t, sel.Sel.Name)] = true
				}
			}
			return true
		})
	}
	return slices.Sorted(maps.Keys(set))
}

// reasonValue is the value of the api/v1alpha1 constant name.
func reasonValue(t *testing.T, name string) string {
	t.Helper()
	if reasonValues == nil {
		reasonValues = map[string]string{}
		file, err := parser.ParseFile(token.NewFileSet(), filepath.Join("..", "..", "..", "api", "v1alpha1", "conditions.go"), nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			if v, ok := n.(*ast.ValueSpec); ok && len(v.Values) == 1 {
				if lit, ok := v.Values[0].(*ast.BasicLit); ok && lit.Kind == token.STRING {
					reasonValues[v.Names[0].Name] = strings.Trim(lit.Value, `"`)
				}
			}
			return true
		})
	}
	v, ok := reasonValues[name]
	if !ok {
		t.Fatalf("%s is not a constant of api/v1alpha1/conditions.go", name)
	}
	return v
}

var reasonValues map[string]string
