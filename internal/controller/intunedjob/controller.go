package intunedjob

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/intuned-operator/intuned-operator/internal/controller/report"
	"github.com/intuned-operator/intuned-operator/internal/controller/sharding"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/intuned"
	"github.com/intuned-operator/intuned-operator/internal/token"
)

// Defaults of the reconciler's timing.
const (
	// defaultPollInterval applies when spec.pollInterval is unset (the CRD
	// defaults it to 10m as well).
	defaultPollInterval = 10 * time.Minute
	// activeRunPoll is how often a job with an active JobRun is refreshed.
	activeRunPoll = 15 * time.Second
	// cacheLagRetry is how soon a reconcile that read a version of the
	// object its own last write superseded looks again (the status-only
	// update that brings the cache up to date does not queue the object).
	cacheLagRetry = 200 * time.Millisecond
)

// Reconciler keeps a Job on Intuned equal to its IntunedJob.
//
// One reconcile: read the object → deletion (finalizer) → suspend → read
// credentials and referenced Secrets/receiver → build the desired Job →
// observe it on Intuned (GetJob) → create / update / nothing (every write
// is read back) → pause or resume → trigger → refresh the last JobRun →
// one status patch.
type Reconciler struct {
	client.Client
	Scheme *runtime.Scheme
	// DefaultCredentials is the manager-wide credentials Secret used when an
	// IntunedJob has no spec.credentialsRef, and where it may be used.
	DefaultCredentials intunedv1alpha1.DefaultCredentials
	// Recorder receives an Event for every write to Intuned and every error;
	// nil records nothing.
	Recorder report.EventRecorder

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

	// DeliveryRetryWindow is how long Intuned retries a webhook delivery:
	// results still missing after it are a gap (zero:
	// DefaultDeliveryRetryWindow). ScheduleGrace is how late a scheduled
	// run may start before the job is stale (zero: DefaultScheduleGrace).
	DeliveryRetryWindow, ScheduleGrace time.Duration
	// ReceiverAPIURL is where a receiver's read and backfill API is
	// reached (nil: its Service, http://<name>.<namespace>.svc:<port>).
	ReceiverAPIURL func(whr *intunedv1alpha1.WebhookReceiver) string
	// ReceiverHTTP calls receivers and ResultsHTTP downloads Intuned's
	// results files (nil: defaults; both honour HTTP_PROXY).
	ReceiverHTTP, ResultsHTTP *http.Client

	// Shard is the manager's shard (sharding): its cache holds only the
	// shard's IntunedJobs and WebhookReceivers. It names the shards when a
	// job's receiver is in another one.
	Shard sharding.Shard

	clients clientCache
	// apiReader reads from the API server what the shard's cache cannot
	// hold (a receiver of another shard); nil: never.
	apiReader client.Reader
	// secretMetadata reads the Secrets metadata informer the Secret watch
	// keeps (SetupWithManager: the manager's cache); nil reads every
	// Secret from the API server. secrets holds the data it revalidates.
	secretMetadata client.Reader
	secrets        secretCache
	// ownWrites: see report.OwnWrites.
	ownWrites report.OwnWrites
}

// Reconcile brings one IntunedJob's Job on Intuned to its spec: the
// finalizer first, then sync (read, plan, execute: see plan.go), then
// report (the conditions, in one status patch).
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, retErr error) {
	job := &intunedv1alpha1.IntunedJob{}
	if err := r.Get(ctx, req.NamespacedName, job); err != nil {
		if apierrors.IsNotFound(err) {
			// Deleted, or moved to another shard (its label changed, so it
			// left this shard's cache): the new shard reports it now.
			forgetJobMetrics(&intunedv1alpha1.IntunedJob{ObjectMeta: metav1.ObjectMeta{Namespace: req.Namespace, Name: req.Name}})
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if r.ownWrites.Behind(job) {
		return ctrl.Result{RequeueAfter: cacheLagRetry}, nil
	}
	readVersion := job.ResourceVersion
	defer r.ownWrites.Wrote(job, readVersion) // after the status patch (defers run last-in first-out)
	if !job.DeletionTimestamp.IsZero() {
		return r.finalize(ctx, job)
	}
	status := report.StartStatusPatch(r.Client, job)
	defer status.Finish(ctx, job, &retErr)

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
		status.Rebase(job)
	}
	job.Status.JobID = job.EffectiveJobID()
	job.Status.ObservedGeneration = job.Generation
	if job.Spec.Suspend {
		reportSuspended(job)
		return ctrl.Result{}, nil
	}

	synced, env, err := r.sync(ctx, status, job)
	if err == nil {
		reportOutcome(job, synced, nil)
		next := r.nextPoll(job)
		// Then the data: did the results arrive, and do runs keep coming?
		// Both compare Intuned's times with Intuned's clock; their waits
		// are bounded by the poll interval.
		for _, wait := range []time.Duration{r.accountDeliveries(ctx, status, job, env), r.reportFreshness(job, intuned.ServerNow(env.api))} {
			if wait > 0 {
				next = min(next, wait)
			}
		}
		// lastSyncTime moves only with a status that changed anyway: a
		// poll that finds everything as it was writes nothing (at 10,000
		// jobs, a timestamp per poll would be a status write every 60 ms
		// for no news).
		if status.Changed(job) {
			job.Status.LastSyncTime = report.Now()
		}
		return ctrl.Result{RequeueAfter: next}, nil
	}
	f := r.failureOf(job, err)
	reportOutcome(job, synced, f)
	r.event(job, "Warning", f.Reason, "Sync", f.Message)
	return report.Result(f, r.pollInterval(job))
}

// sync reads the Job on Intuned and makes it match the spec: read the
// facts, then let the planner pick each next action and execute it (see
// plan.go). synced reports whether Intuned holds the spec; err is nil
// when, beyond that, the Job is paused, triggered and refreshed as asked.
//
// env is what delivery accounting needs next: Intuned and the receiver.
func (r *Reconciler) sync(ctx context.Context, status *report.StatusPatch, job *intunedv1alpha1.IntunedJob) (synced bool, env deliveryEnv, err error) {
	synced, err = r.syncJob(ctx, status, job, &env)
	return synced, env, err
}

func (r *Reconciler) syncJob(ctx context.Context, status *report.StatusPatch, job *intunedv1alpha1.IntunedJob, env *deliveryEnv) (synced bool, err error) {
	// Read.
	creds, err := r.credentials(ctx, job)
	if err != nil {
		return false, err
	}
	job.Status.WorkspaceID = creds.WorkspaceID
	if err := r.checkConflict(ctx, job); err != nil {
		return false, err
	}
	refs, err := r.resolveRefs(ctx, job)
	if err != nil {
		return false, err
	}
	desired, err := desiredJob(job, refs)
	if err != nil {
		return false, report.Stalled(intunedv1alpha1.ReasonInvalidSpec, err.Error())
	}
	api, err := r.apiFor(creds)
	if err != nil {
		return false, err
	}
	env.api, env.refs = api, refs
	remote, err := getJob(ctx, api, job.Spec.Project, job.EffectiveJobID())
	switch {
	case intuned.IsNotFound(err):
		remote = nil // Intuned has no such Job
	case err != nil:
		return false, err
	}
	x := &executor{r: r, api: api, status: status, key: creds.APIKey, facts: facts{
		job:     job,
		desired: desired,
		digest:  func(s intuned.UpdateJobRequest) string { return intuned.SpecDigest(creds.APIKey, s) },
		remote:  remote,
		now:     time.Now(),
		done:    map[action]bool{},
		// Before observeJob below overwrites them.
		knownNextRun: job.Status.NextRunTime,
		knownLastRun: job.Status.LastRunTime,
	}}

	// Plan and execute: first make Intuned hold the spec...
	var notice *report.Failure
	for {
		p := planSync(x.facts)
		if p.stop != nil {
			return false, p.stop
		}
		if p.next == actNone {
			if p.remember != nil {
				job.Status.LastApplied = p.remember
			}
			notice = p.notice
			break
		}
		if err := x.execute(ctx, p.next); err != nil {
			// A create that Intuned accepted holds the spec even when
			// reading it back failed.
			return x.created, err
		}
	}
	observeJob(job, x.remote)
	r.recordSink(job, refs)
	synced = notice == nil

	// ... then its state, a new trigger and the newest JobRun.
	for next := planFollowUp(x.facts); next != actNone; next = planFollowUp(x.facts) {
		if err := x.execute(ctx, next); err != nil {
			return synced, err
		}
	}
	if notice != nil {
		return synced, notice
	}
	return synced, nil
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

// recordSink publishes the resolved sink. The token fingerprint is the one
// Intuned now holds: sync only gets here after Intuned accepted the create
// or update, or already had this exact sink.
func (r *Reconciler) recordSink(job *intunedv1alpha1.IntunedJob, refs resolvedRefs) {
	s := job.Spec.Sink
	if s == nil || s.Webhook == nil {
		job.Status.Sink = nil
		return
	}
	st := &intunedv1alpha1.SinkStatus{URL: s.Webhook.URL}
	if s.Webhook.ReceiverRef != nil {
		st.URL = refs.ReceiverURL
		st.TokenFingerprint = token.Fingerprint(refs.ReceiverToken)
	}
	job.Status.Sink = st
}

// reportRunEnd records a Warning Event, once, when the last JobRun ends
// FAILURE or CANCELED, with Intuned's own message.
func (r *Reconciler) reportRunEnd(job *intunedv1alpha1.IntunedJob, prev *intunedv1alpha1.JobRunSummary, run intuned.JobRun) {
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
	r.event(job, "Warning", "JobRunFailed", "JobRun", note)
}

// asTransient reports a failed read or pause/resume as retriable: a 400 or
// 404 there means the Job changed under us, and the next reconcile
// re-observes it.
func asTransient(err error) error {
	if intuned.IsUnauthorized(err) || intuned.IsRateLimited(err) {
		return err
	}
	return report.Retryable(intunedv1alpha1.ReasonSyncFailed, err.Error(), err)
}

// pollInterval is how often the Job is re-read from Intuned (drift repair).
func (r *Reconciler) pollInterval(job *intunedv1alpha1.IntunedJob) time.Duration {
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
func (r *Reconciler) nextPoll(job *intunedv1alpha1.IntunedJob) time.Duration {
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
func (r *Reconciler) event(job *intunedv1alpha1.IntunedJob, typ, reason, action, note string) {
	report.Event(r.Recorder, job, typ, reason, action, note)
}
