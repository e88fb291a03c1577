package controller

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/intuned"
)

// Defaults of the reconciler's timing.
const (
	// defaultPollInterval applies when spec.pollInterval is unset (the CRD
	// defaults it to 10m as well).
	defaultPollInterval = 10 * time.Minute
	// activeRunPoll is how often a job with an active JobRun is refreshed.
	activeRunPoll = 15 * time.Second

	// triggerVerifyDelay is how long a pending trigger waits after its claim
	// before a missing JobRun is taken to mean the call never reached
	// Intuned: a call that timed out may still be completing there.
	triggerVerifyDelay = 5 * time.Second
	// triggerClockSkew: lastTriggerTime is read from the operator's clock,
	// a JobRun's start_time from Intuned's. A run up to this much "before"
	// the claim still counts. The price: if two trigger values come within
	// this window and the second one's call is lost, the first one's run is
	// taken for it (that value is lost, never doubled).
	triggerClockSkew = 30 * time.Second
	// triggerRunsPage is how many of the newest JobRuns are searched for a
	// pending trigger's run; only runs since the claim can match.
	triggerRunsPage = 10
)

// EventRecorder is the part of the events API the reconciler uses
// (mgr.GetEventRecorder returns one).
type EventRecorder interface {
	Eventf(regarding, related runtime.Object, eventtype, reason, action, note string, args ...any)
}

// IntunedJobReconciler keeps a Job on Intuned equal to its IntunedJob.
//
// One reconcile: read the object → deletion (finalizer) → suspend → read
// credentials and referenced Secrets/receiver → build the desired Job →
// observe it on Intuned (GetJob) → create / update / nothing → pause or
// resume → trigger → refresh the last JobRun → one status patch.
type IntunedJobReconciler struct {
	client.Client
	Scheme *runtime.Scheme
	// DefaultCredentials names the manager-wide credentials Secret used when
	// an IntunedJob has no spec.credentialsRef (empty Name: none).
	DefaultCredentials types.NamespacedName
	// Recorder receives an Event for every write to Intuned and every error;
	// nil records nothing.
	Recorder EventRecorder

	// Pacer is shared by every Intuned client (one per credentials); nil
	// means intuned.DefaultPacer(). Metrics likewise (nil records nothing).
	Pacer   *intuned.Pacer
	Metrics *intuned.Metrics
	// Retry bounds the client's own retries inside one call.
	Retry intuned.RetryOptions
	// NewClient builds the client for one set of credentials; nil means the
	// real client (intuned.New with Pacer, Metrics and Retry).
	NewClient func(Credentials) (intuned.API, error)

	// MaxConcurrentReconciles defaults to 8: Intuned calls wait on the
	// network and on the per-path pacer, not on the CPU.
	MaxConcurrentReconciles int
	// PollIntervalOverride replaces every spec.pollInterval when > 0. For
	// tests and benchmarks that cannot wait the 10 s minimum.
	PollIntervalOverride time.Duration

	clients clientCache
	// ours remembers, per object UID, Jobs this process created or tried to
	// create with an unknown outcome (5xx, timeout), so a Job found on
	// Intuned afterwards is recognised as ours even before status.managed
	// is visible in the cache. In memory only: after a restart, a Job whose
	// create outcome was never seen reports AlreadyExists until spec.adopt
	// is set.
	ours sync.Map
}

// Reconcile brings one IntunedJob's Job on Intuned to its spec.
func (r *IntunedJobReconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	log := logf.FromContext(ctx)
	job := &intunedv1alpha1.IntunedJob{}
	if err := r.Get(ctx, req.NamespacedName, job); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}

	if !job.DeletionTimestamp.IsZero() {
		return r.finalize(ctx, job)
	}

	// One status patch per reconcile, with whatever the steps below found.
	before := job.DeepCopy()
	defer func() {
		if equality.Semantic.DeepEqual(before.Status, job.Status) {
			return
		}
		if err := r.Status().Patch(ctx, job, client.MergeFrom(before)); err != nil && !apierrors.IsNotFound(err) {
			log.Error(err, "patching status")
			if retErr == nil {
				retErr = err
			}
		}
	}()

	if !job.Spec.Suspend && !controllerutil.ContainsFinalizer(job, intunedv1alpha1.Finalizer) {
		// Added before anything exists on Intuned, so no Job can outlive
		// its object unnoticed. Usually the install's admission policy
		// (config/admission) set it at create and this write is skipped.
		// The patch refreshes job from the server.
		patch := client.MergeFrom(job.DeepCopy())
		controllerutil.AddFinalizer(job, intunedv1alpha1.Finalizer)
		if err := r.Patch(ctx, job, patch); err != nil {
			return ctrl.Result{}, err
		}
		*before = *job.DeepCopy()
	}

	job.Status.JobID = job.EffectiveJobID()
	job.Status.ObservedGeneration = job.Generation
	if job.Spec.Suspend {
		reportSuspended(job)
		return ctrl.Result{}, nil
	}

	secretName := ""
	if ref, ok := r.credentialsSecret(job); ok {
		secretName = ref.String()
	}
	err := r.sync(ctx, job)
	if err == nil {
		reportSynced(job)
		job.Status.LastSyncTime = ptrNow()
		return ctrl.Result{RequeueAfter: r.nextPoll(job)}, nil
	}
	se := asSyncError(err, secretName)
	reportError(job, se)
	if se.kind != kindTransient {
		r.event(job, "Warning", se.reason, "Sync", se.message)
		return ctrl.Result{RequeueAfter: r.pollInterval(job)}, nil
	}
	r.event(job, "Warning", se.reason, "Sync", se.message)
	if se.retryAfter > 0 {
		return ctrl.Result{RequeueAfter: afterRetryAfter(se.retryAfter)}, nil
	}
	// The controller's rate limiter backs off exponentially, with jitter.
	return ctrl.Result{}, se
}

// sync observes the Job on Intuned and makes it match the spec. It returns
// nil when the Job is in sync (and paused, triggered and refreshed as asked).
func (r *IntunedJobReconciler) sync(ctx context.Context, job *intunedv1alpha1.IntunedJob) error {
	creds, err := r.credentials(ctx, job)
	if err != nil {
		return err
	}
	job.Status.WorkspaceID = creds.WorkspaceID
	if err := r.checkConflict(ctx, job); err != nil {
		return err
	}
	refs, err := r.resolveRefs(ctx, job)
	if err != nil {
		return err
	}
	desired, err := desiredJob(job, refs)
	if err != nil {
		return stalled(intunedv1alpha1.ReasonInvalidSpec, err.Error())
	}
	api, err := r.apiFor(creds)
	if err != nil {
		return err
	}

	project, id := job.Spec.Project, job.EffectiveJobID()
	observed, err := getJob(ctx, api, project, id)
	state := intuned.JobStateActive
	created := false
	// notice is an outcome that is reported (Synced=False) but does not
	// stop the rest of the sync: the Job exists, so pause/resume, trigger
	// and the JobRun status still work.
	var notice error
	switch {
	case intuned.IsNotFound(err):
		if err := r.create(ctx, api, job, desired); err != nil {
			return err
		}
		created = true
		// Intuned's answer to this spec is read at the next poll (no
		// read-back here: the first sync stays at two calls); an empty
		// ServerDigest marks it as not seen yet (see converge).
		job.Status.LastApplied = &intunedv1alpha1.AppliedRecord{SpecDigest: intuned.SpecDigest(creds.APIKey, desired)}
	case err != nil:
		return err
	default:
		if !job.Status.Managed {
			_, mine := r.ours.Load(job.UID)
			if !mine && !job.Spec.Adopt {
				return waitFor(intunedv1alpha1.ReasonAlreadyExists, fmt.Sprintf(
					"a Job %q already exists in project %s and was not created by this object; set spec.adopt: true to take it over (it will be overwritten with this spec)", id, project))
			}
			if !mine {
				r.event(job, "Normal", "Adopted", "Adopt", "Took over the existing Job %s on Intuned", id)
			}
			job.Status.Managed = true
			r.ours.Store(job.UID, true)
		}
		current, n, err := r.converge(ctx, api, job, creds.APIKey, desired, observed)
		if err != nil {
			return err
		}
		notice = n
		observeJob(job, current)
		state = current.State
	}
	r.recordSink(job, refs)

	if err := r.pauseOrResume(ctx, api, job, state); err != nil {
		return err
	}
	triggered, err := r.trigger(ctx, api, job)
	if err != nil {
		return err
	}
	// A Job created just now has no runs yet; skipping the list keeps the
	// first sync at two calls (GetJob, CreateJob).
	if !created || triggered {
		if err := r.refreshLastRun(ctx, api, job); err != nil {
			return err
		}
	}
	return notice
}

// getJob reads a Job. The SDK's Get Job schema has payload optional; when
// the answer lacks it, the payload comes from the Get Jobs list item (where
// it is required), so a missing payload never reads as "the payload was
// removed" and causes a write.
func getJob(ctx context.Context, api intuned.API, project, id string) (*intuned.Job, error) {
	j, err := api.GetJob(ctx, project, id)
	if err != nil || j.Payload != nil {
		return j, err
	}
	list, err := api.ListJobs(ctx, project)
	if err != nil {
		return nil, err
	}
	for _, it := range list {
		if it.ID == id {
			j.Payload = it.Payload
			break
		}
	}
	return j, nil
}

// converge makes the Job on Intuned match desired, writing only when a write
// can change something. A real server may normalise fields in ways no
// document describes (defaults, rounding, stripping), so "observed equals
// desired" is not the only way to be in sync:
//
//   - observed equals desired: in sync.
//   - Neither the spec nor Intuned's answer changed since the last write
//     (status.lastApplied digests): in sync as far as Intuned can hold the
//     spec; writing again would get the same answer.
//   - Right after this object created the Job (its answer not read yet, so
//     drift and normalisation look alike), a difference is written once and
//     whatever Intuned then answers is its answer to this spec.
//   - Otherwise write, read back, and record the digests and the fields
//     Intuned holds differently. A write that leaves Intuned's answer
//     unchanged is tried once more (it may have raced another writer); a
//     second one stops the writes with Synced=False, reason
//     ServerNormalises, until the spec or the Job on Intuned changes.
//
// It returns the Job as last read, and a notice for the conditions.
func (r *IntunedJobReconciler) converge(ctx context.Context, api intuned.API, job *intunedv1alpha1.IntunedJob, key string,
	desired intuned.UpdateJobRequest, observed *intuned.Job) (current *intuned.Job, notice, err error) {
	project, id := job.Spec.Project, job.EffectiveJobID()
	want := intuned.SpecDigest(key, desired)
	have := intuned.SpecDigest(key, observed.Spec())
	last := job.Status.LastApplied
	if inSync(desired, observed) {
		job.Status.LastApplied = &intunedv1alpha1.AppliedRecord{SpecDigest: want, ServerDigest: have}
		return observed, nil, nil
	}
	justCreated := last != nil && last.SpecDigest == want && last.ServerDigest == "" && last.Refused == ""
	if last != nil && last.SpecDigest == want && last.ServerDigest == have {
		if last.Refused == intunedv1alpha1.ReasonManagedInCode {
			return observed, managedInCode(id), nil
		}
		if last.UnchangedWrites != 1 {
			return observed, normalisedNotice(id, last), nil
		}
	}
	if _, err := api.UpdateJob(ctx, project, id, desired); err != nil {
		if intuned.IsManagedInCode(err) {
			// Remembered, so the refused write is not sent again until
			// the spec or the Job on Intuned changes.
			job.Status.LastApplied = &intunedv1alpha1.AppliedRecord{SpecDigest: want, ServerDigest: have,
				Refused: intunedv1alpha1.ReasonManagedInCode}
			r.event(job, "Warning", intunedv1alpha1.ReasonManagedInCode, "Update", "%s", "Intuned refused to update Job "+id+": "+apiMessage(err))
			return observed, managedInCode(id), nil
		}
		return nil, nil, intunedWriteError(err)
	}
	r.event(job, "Normal", "Updated", "Update", "Updated Job %s on Intuned to match the spec", id)
	after, err := getJob(ctx, api, project, id)
	if err != nil {
		return nil, nil, asTransient(err)
	}
	rec := appliedRecord(key, desired, after)
	if len(rec.NormalisedFields) > 0 && rec.ServerDigest == have && !justCreated {
		rec.UnchangedWrites = 1
		if last != nil && last.SpecDigest == want && last.ServerDigest == have && last.UnchangedWrites > 0 {
			rec.UnchangedWrites = last.UnchangedWrites + 1
		}
	}
	job.Status.LastApplied = rec
	return after, normalisedNotice(id, rec), nil
}

// managedInCode is the condition of a Job defined in code: Intuned refuses
// updates and deletion through the API, everything else still works.
func managedInCode(id string) error {
	return stalled(intunedv1alpha1.ReasonManagedInCode, "Job "+id+
		" is defined in code on Intuned (origin CODE): Intuned refuses to update or delete it through the API, so the operator does not write it; it still observes, pauses/resumes and triggers it. Change it in the project's job files, or delete this IntunedJob with deletionPolicy: Orphan")
}

// apiMessage is Intuned's message of an error, or the error text.
func apiMessage(err error) string {
	var e *intuned.APIError
	if errors.As(err, &e) && e.Message != "" {
		return e.Message
	}
	return err.Error()
}

// appliedRecord describes desired as written and after as Intuned then
// returned it.
func appliedRecord(key string, desired intuned.UpdateJobRequest, after *intuned.Job) *intunedv1alpha1.AppliedRecord {
	return &intunedv1alpha1.AppliedRecord{
		SpecDigest:       intuned.SpecDigest(key, desired),
		ServerDigest:     intuned.SpecDigest(key, after.Spec()),
		NormalisedFields: intuned.SpecDiff(desired, after.Spec()),
	}
}

// normalisedNotice is the condition for a Job Intuned holds differently
// from the spec: nil while that is merely a normalisation Intuned applied
// to a write it accepted (reportSynced names the fields), Synced=False
// while writes stop changing anything.
func normalisedNotice(id string, rec *intunedv1alpha1.AppliedRecord) error {
	fields := intuned.FormatPaths(rec.NormalisedFields, 5)
	switch {
	case len(rec.NormalisedFields) == 0 || rec.UnchangedWrites == 0:
		return nil
	case rec.UnchangedWrites == 1:
		return waitFor(intunedv1alpha1.ReasonServerNormalises, fmt.Sprintf(
			"writing Job %s did not change %s on Intuned; writing once more at the next poll to rule out a race", id, fields))
	}
	return stalled(intunedv1alpha1.ReasonServerNormalises, fmt.Sprintf(
		"Intuned rewrites %s of Job %s: %d writes in a row changed nothing, so the operator stops writing until the spec or the Job on Intuned changes. Set these fields in the spec to the values Intuned holds (kubectl get ij -o yaml shows status.lastApplied)",
		fields, id, rec.UnchangedWrites))
}

// create creates the Job on Intuned. A duplicate id means someone else's
// Job exists (or ours, after an ambiguous create): the next reconcile
// re-observes it and decides by status.managed and spec.adopt.
func (r *IntunedJobReconciler) create(ctx context.Context, api intuned.API, job *intunedv1alpha1.IntunedJob, desired intuned.UpdateJobRequest) error {
	project, id := job.Spec.Project, job.EffectiveJobID()
	_, err := api.CreateJob(ctx, project, createRequest(id, desired))
	switch {
	case err == nil:
	case intuned.IsConflict(err):
		return &syncError{kind: kindTransient, reason: intunedv1alpha1.ReasonSyncFailed,
			message: "Job " + id + " appeared on Intuned while creating it; re-observing", err: err}
	case intuned.IsNotFound(err):
		return waitFor(intunedv1alpha1.ReasonProjectNotFound, fmt.Sprintf(
			"project %s does not exist in workspace %s (deploy it on Intuned first)", project, job.Status.WorkspaceID))
	default:
		if intuned.IsAmbiguous(err) {
			r.ours.Store(job.UID, true)
		}
		return intunedWriteError(err)
	}
	verb := "Created"
	if job.Status.Managed {
		verb = "Recreated" // deleted on Intuned behind our back
	}
	r.event(job, "Normal", verb, "Create", "%s Job %s in project %s on Intuned", verb, id, project)
	job.Status.Managed = true
	r.ours.Store(job.UID, true)
	job.Status.JobState = intunedv1alpha1.JobStateActive
	job.Status.NextRunTime, job.Status.LastRunTime = nil, nil
	return nil
}

// intunedWriteError maps an error from CreateJob/UpdateJob: 400 means
// Intuned's validation refused the spec, which no retry fixes.
func intunedWriteError(err error) error {
	if intuned.IsBadRequest(err) && !intuned.IsConflict(err) {
		var apiErr *intuned.APIError
		msg := err.Error()
		if errors.As(err, &apiErr) && apiErr.Message != "" {
			msg = apiErr.Message
		}
		return stalled(intunedv1alpha1.ReasonInvalidSpec, "Intuned rejected the Job: "+msg)
	}
	return err
}

// recordSink publishes the resolved sink. The token fingerprint is the one
// Intuned now holds: sync only gets here after Intuned accepted the create
// or update, or already had this exact sink.
func (r *IntunedJobReconciler) recordSink(job *intunedv1alpha1.IntunedJob, refs resolvedRefs) {
	s := job.Spec.Sink
	if s == nil || s.Webhook == nil {
		job.Status.Sink = nil
		return
	}
	st := &intunedv1alpha1.SinkStatus{URL: s.Webhook.URL}
	if s.Webhook.ReceiverRef != nil {
		st.URL = refs.ReceiverURL
		st.TokenFingerprint = tokenFingerprint(refs.ReceiverToken)
	}
	job.Status.Sink = st
}

// pauseOrResume makes the Job's state match spec.paused.
func (r *IntunedJobReconciler) pauseOrResume(ctx context.Context, api intuned.API, job *intunedv1alpha1.IntunedJob, state intuned.JobState) error {
	project, id := job.Spec.Project, job.EffectiveJobID()
	switch {
	case job.Spec.Paused && state != intuned.JobStatePaused:
		if err := api.PauseJob(ctx, project, id); err != nil {
			return asTransient(err)
		}
		r.event(job, "Normal", "Paused", "Pause", "Paused Job %s on Intuned", id)
		job.Status.JobState = intunedv1alpha1.JobStatePaused
		job.Status.NextRunTime = nil
	case !job.Spec.Paused && state == intuned.JobStatePaused:
		if err := api.ResumeJob(ctx, project, id); err != nil {
			return asTransient(err)
		}
		r.event(job, "Normal", "Resumed", "Resume", "Resumed Job %s on Intuned", id)
		job.Status.JobState = intunedv1alpha1.JobStateActive
	}
	return nil
}

// trigger starts exactly one JobRun for each new value of the
// intuned.io/trigger annotation, crossplane-style: intent recorded, then
// verified.
//
//  1. Claim: status.lastHandledTrigger = value and lastTriggerTime = now are
//     persisted BEFORE the call, with optimistic locking, so a stale cached
//     object can never claim a value (or re-send it) twice.
//  2. Call TriggerJob once. Success records the JobRun id. A definite
//     refusal (400, 401, 404) clears lastTriggerTime: the value is handled,
//     not retried; the user sets a new one. Any other failure leaves the
//     trigger pending.
//  3. A pending trigger (claimed, no JobRun id, lastTriggerTime set: the
//     operator stopped during the call, or it failed ambiguously) is
//     verified on a later reconcile: a MANUAL JobRun started since the claim
//     is recorded as its run; only when none has appeared is it claimed and
//     called again.
func (r *IntunedJobReconciler) trigger(ctx context.Context, api intuned.API, job *intunedv1alpha1.IntunedJob) (bool, error) {
	want := job.Annotations[intunedv1alpha1.AnnotationTrigger]
	if want == "" {
		return false, nil
	}
	if want == job.Status.LastHandledTrigger {
		if !triggerPending(job) {
			return false, nil
		}
		run, err := r.findTriggeredRun(ctx, api, job)
		if err != nil {
			return false, asTransient(err)
		}
		if run != "" {
			job.Status.LastTriggeredJobRunID = run
			r.event(job, "Normal", "Triggered", "Trigger", "Triggered Job %s (trigger %q): JobRun %s (recovered)", job.EffectiveJobID(), want, run)
			return true, nil
		}
		if time.Since(job.Status.LastTriggerTime.Time) < triggerVerifyDelay {
			return false, nil // nextPoll comes back once the delay has passed
		}
		// No JobRun: the earlier call never reached Intuned. Send it again.
	}
	if err := r.writeTrigger(ctx, job, want, ptrNow()); err != nil {
		return false, err // conflict: a newer object exists; retry reads it
	}

	id := job.EffectiveJobID()
	resp, err := api.TriggerJob(ctx, job.Spec.Project, id)
	switch {
	case err == nil:
		job.Status.LastTriggeredJobRunID = resp.JobRunID
		r.event(job, "Normal", "Triggered", "Trigger", "Triggered Job %s (trigger %q): JobRun %s", id, want, resp.JobRunID)
		return true, nil
	case triggerRefused(err):
		if err := r.writeTrigger(ctx, job, want, nil); err != nil {
			return false, err // still pending: verified and sent again
		}
		r.event(job, "Warning", "TriggerFailed", "Trigger",
			"Intuned refused trigger %q of Job %s; it will not be retried (set a new intuned.io/trigger value to try again): %v", want, id, err)
	default:
		r.event(job, "Warning", "TriggerUnknown", "Trigger",
			"Outcome of trigger %q of Job %s is unknown; it will be verified and sent again only if no JobRun started: %v", want, id, err)
	}
	return false, nil
}

// writeTrigger sets the trigger fields of status (the handled value, no
// JobRun id, pending since at) and persists them at once, with optimistic
// locking. They are not left to the reconcile's final status patch: that
// one diffs against the object as read before this write.
func (r *IntunedJobReconciler) writeTrigger(ctx context.Context, job *intunedv1alpha1.IntunedJob, value string, at *metav1.Time) error {
	changed := job.DeepCopy()
	changed.Status.LastHandledTrigger = value
	changed.Status.LastTriggeredJobRunID = ""
	changed.Status.LastTriggerTime = at
	if err := r.Status().Patch(ctx, changed, client.MergeFromWithOptions(job, client.MergeFromWithOptimisticLock{})); err != nil {
		return err
	}
	job.Status.LastHandledTrigger = value
	job.Status.LastTriggeredJobRunID = ""
	job.Status.LastTriggerTime = at
	job.ResourceVersion = changed.ResourceVersion
	return nil
}

// triggerPending reports whether the handled trigger's outcome is unknown.
func triggerPending(job *intunedv1alpha1.IntunedJob) bool {
	return job.Status.LastTriggerTime != nil && job.Status.LastTriggeredJobRunID == ""
}

// triggerRefused reports whether Intuned answered the trigger with a
// definite client error (4xx other than 429): it certainly started nothing,
// and sending it again would fail the same way.
func triggerRefused(err error) bool {
	var apiErr *intuned.APIError
	return errors.As(err, &apiErr) && apiErr.StatusCode >= 400 && apiErr.StatusCode < 500 &&
		!intuned.IsRateLimited(err)
}

// findTriggeredRun returns the id of the newest MANUAL JobRun that started
// at or after the pending trigger's claim (less triggerClockSkew), or "".
func (r *IntunedJobReconciler) findTriggeredRun(ctx context.Context, api intuned.API, job *intunedv1alpha1.IntunedJob) (string, error) {
	runs, err := api.ListJobRuns(ctx, job.Spec.Project, job.EffectiveJobID(),
		intuned.ListRunsOptions{PageSize: triggerRunsPage, SortBy: "start_time,desc"})
	if err != nil {
		return "", err
	}
	since := job.Status.LastTriggerTime.Add(-triggerClockSkew)
	for _, run := range runs.JobRuns {
		started := run.StartTime.Time
		if started.IsZero() {
			started = run.CreatedAt.Time
		}
		if run.Type == intuned.JobRunManual && !started.Before(since) {
			return run.ID, nil
		}
	}
	return "", nil
}

// refreshLastRun reads the newest JobRun into status.lastJobRun.
func (r *IntunedJobReconciler) refreshLastRun(ctx context.Context, api intuned.API, job *intunedv1alpha1.IntunedJob) error {
	runs, err := api.ListJobRuns(ctx, job.Spec.Project, job.EffectiveJobID(),
		intuned.ListRunsOptions{PageSize: 1, SortBy: "start_time,desc"})
	if err != nil {
		return asTransient(err)
	}
	if len(runs.JobRuns) == 0 {
		job.Status.LastJobRun = nil
		return nil
	}
	prev := job.Status.LastJobRun
	job.Status.LastJobRun = runSummary(runs.JobRuns[0])
	r.reportRunEnd(job, prev, runs.JobRuns[0])
	return nil
}

// reportRunEnd records a Warning Event, once, when the last JobRun ends
// FAILURE or CANCELED, with Intuned's own message.
func (r *IntunedJobReconciler) reportRunEnd(job *intunedv1alpha1.IntunedJob, prev *intunedv1alpha1.JobRunSummary, run intuned.JobRun) {
	if run.Status != intuned.JobRunFailure && run.Status != intuned.JobRunCanceled {
		return
	}
	if prev != nil && prev.ID == run.ID && prev.Status == string(run.Status) {
		return // already reported
	}
	note := fmt.Sprintf("JobRun %s of Job %s ended %s", run.ID, job.EffectiveJobID(), run.Status)
	if run.Payloads != nil && run.FailedRuns != nil {
		note += fmt.Sprintf(" (%d of %d payloads failed)", *run.FailedRuns, *run.Payloads)
	}
	if m := runMessage(run); m != "" {
		note += ": " + m
	}
	// The note is Intuned's text: passed as an argument, never as the
	// format, so a % in it is printed as is.
	r.event(job, "Warning", "JobRunFailed", "JobRun", "%s", note)
}

// asTransient reports a failed read or pause/resume as retriable: a 400 or
// 404 there means the Job changed under us, and the next reconcile
// re-observes it.
func asTransient(err error) error {
	if intuned.IsUnauthorized(err) || intuned.IsRateLimited(err) {
		return err
	}
	return &syncError{kind: kindTransient, reason: intunedv1alpha1.ReasonSyncFailed, message: err.Error(), err: err}
}

// finalize runs when the object is being deleted: with deletionPolicy
// Delete it deletes the Job on Intuned (a 404 counts as done), then removes
// the finalizer. Jobs this object does not manage (AlreadyExists, Conflict)
// and suspended objects are never touched.
func (r *IntunedJobReconciler) finalize(ctx context.Context, job *intunedv1alpha1.IntunedJob) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(job, intunedv1alpha1.Finalizer) {
		return ctrl.Result{}, nil
	}
	id := job.EffectiveJobID()
	if job.Spec.DeletionPolicy != intunedv1alpha1.DeletionPolicyOrphan && job.Status.Managed && !job.Spec.Suspend {
		creds, err := r.credentials(ctx, job)
		if err != nil {
			// Without credentials the Job cannot be deleted; do not block
			// the object (a namespace deletion removes the Secret too).
			r.event(job, "Warning", "DeleteSkipped", "Delete",
				"Job %s was left on Intuned: %v", id, err)
		} else {
			api, err := r.apiFor(creds)
			if err != nil {
				return ctrl.Result{}, err
			}
			switch err := api.DeleteJob(ctx, job.Spec.Project, id); {
			case err == nil || intuned.IsNotFound(err):
				r.event(job, "Normal", "Deleted", "Delete", "Deleted Job %s on Intuned", id)
			case intuned.IsManagedInCode(err):
				// No retry can delete it: say so and let the object go.
				r.event(job, "Warning", "DeleteRefused", "Delete", "%s", "Job "+id+
					" was left on Intuned: it is defined in code (origin CODE) and Intuned refuses to delete it through the API; remove it from the project's job files and deploy. Intuned said: "+apiMessage(err))
			default:
				r.event(job, "Warning", intunedv1alpha1.ReasonSyncFailed, "Delete", "Deleting Job %s on Intuned failed: %v", id, err)
				if d := intuned.RetryAfter(err); d > 0 {
					return ctrl.Result{RequeueAfter: afterRetryAfter(d)}, nil
				}
				return ctrl.Result{}, err
			}
		}
	}
	r.ours.Delete(job.UID)
	controllerutil.RemoveFinalizer(job, intunedv1alpha1.Finalizer)
	if err := r.Update(ctx, job); err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, err
	}
	return ctrl.Result{}, nil
}

// pollInterval is how often the Job is re-read from Intuned (drift repair).
func (r *IntunedJobReconciler) pollInterval(job *intunedv1alpha1.IntunedJob) time.Duration {
	if r.PollIntervalOverride > 0 {
		return r.PollIntervalOverride
	}
	if p := job.Spec.PollInterval; p != nil && p.Duration > 0 {
		return p.Duration
	}
	return defaultPollInterval
}

// nextPoll is the poll interval, shorter while a trigger is pending (to
// verify it) or a JobRun is active (so its progress shows up in status).
func (r *IntunedJobReconciler) nextPoll(job *intunedv1alpha1.IntunedJob) time.Duration {
	p := r.pollInterval(job)
	if triggerPending(job) {
		return min(p, triggerVerifyDelay)
	}
	if runActive(job.Status.LastJobRun) && p > activeRunPoll {
		return activeRunPoll
	}
	return p
}

// event records a Kubernetes Event; notes never contain secrets (errors
// from the client are redacted, and Secret values are never formatted in).
func (r *IntunedJobReconciler) event(job *intunedv1alpha1.IntunedJob, typ, reason, action, note string, args ...any) {
	if r.Recorder == nil {
		return
	}
	r.Recorder.Eventf(job, nil, typ, reason, action, note, args...)
}
