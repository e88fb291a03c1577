package intunedjob

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/controller/report"
	"github.com/intuned-operator/intuned-operator/internal/intuned"
	"github.com/intuned-operator/intuned-operator/internal/receiver/receiverapi"
	"github.com/intuned-operator/intuned-operator/internal/resources"
)

// backfillSlice is how long one reconcile streams a results file before
// it records its progress and lets the worker go (the next reconcile
// resumes at once).
const backfillSlice = 20 * time.Second

// deliveryEnv is what accounting needs from the sync before it: Intuned,
// and the receiver's API with its tokens.
type deliveryEnv struct {
	api  intuned.API
	refs resolvedRefs
}

// receiverAPI is where the manager reaches a receiver's read and backfill
// API: its Service, inside the cluster.
func (r *Reconciler) receiverAPI(whr *intunedv1alpha1.WebhookReceiver) string {
	if r.ReceiverAPIURL != nil {
		return r.ReceiverAPIURL(whr)
	}
	return resources.ServiceURL(whr)
}

func (r *Reconciler) receiverHTTP() *http.Client {
	if r.ReceiverHTTP != nil {
		return r.ReceiverHTTP
	}
	return &http.Client{Timeout: time.Minute}
}

func (r *Reconciler) retryWindow() time.Duration {
	if r.DeliveryRetryWindow > 0 {
		return r.DeliveryRetryWindow
	}
	return DefaultDeliveryRetryWindow
}

// accountDeliveries compares what the job's recent JobRuns produced with
// what its receiver stored (status.deliveries, condition DataComplete) and
// backfills a gap. It returns when to look again (0: at the next poll).
// Its failures never fail the reconcile: a data gap, or a receiver that
// cannot be read, is not a sync failure.
func (r *Reconciler) accountDeliveries(ctx context.Context, status *report.StatusPatch, job *intunedv1alpha1.IntunedJob, env deliveryEnv) time.Duration {
	s := job.Spec.Sink
	if s == nil || s.Webhook == nil || s.Webhook.ReceiverRef == nil {
		job.Status.Deliveries = nil
		r.setDataComplete(job, metav1.ConditionUnknown, intunedv1alpha1.ReasonNotApplicable,
			"delivery accounting needs a webhook sink with receiverRef: only then does the operator hold both ends")
		return 0
	}
	// The annotation names a JobRun, optionally followed by @ and anything
	// to ask again for the same one.
	request := job.Annotations[intunedv1alpha1.AnnotationBackfill]
	if request == job.Status.LastHandledBackfill {
		request = ""
	}
	requested, _, _ := strings.Cut(request, "@")
	var last *intunedv1alpha1.JobRunSummary
	ids := []string{requested}
	if last = job.Status.LastJobRun; last != nil {
		ids = append(ids, last.ID)
	}
	before := job.Status.Deliveries
	list := trackJobRuns(append([]intunedv1alpha1.JobRunDelivery(nil), before...), ids...)

	ledger := receiverapi.Client{BaseURL: env.refs.ReceiverAPI, HTTP: r.receiverHTTP()}
	var open []string
	for _, d := range list {
		if !settledFor(d) || d.JobRunID == requested {
			open = append(open, d.JobRunID)
		}
	}
	sums, sumErr := r.summaries(ctx, ledger, env.refs.ReceiverReadToken, open)

	now := intuned.ServerNow(env.api) // JobRun end times are Intuned's
	streamed := false
	unknown := map[string]bool{}
	for i, d := range list {
		if settledFor(d) && d.JobRunID != requested {
			continue
		}
		f := runFacts{filter: filterOf(s.Webhook), now: now, window: r.retryWindow(),
			auto: s.Webhook.Backfill != intunedv1alpha1.BackfillManual, requested: d.JobRunID == requested, summary: sums[d.JobRunID]}
		switch {
		case last != nil && d.JobRunID == last.ID:
			f.run = last
		case d.SettlesAt == nil:
			resp, err := env.api.GetJobRun(ctx, job.Spec.Project, job.EffectiveJobID(), d.JobRunID)
			if intuned.IsNotFound(err) && f.requested {
				r.event(job, "Warning", "BackfillFailed", "Backfill", fmt.Sprintf("%s names JobRun %s, which Intuned does not have for Job %s",
					intunedv1alpha1.AnnotationBackfill, requested, job.EffectiveJobID()))
				job.Status.LastHandledBackfill = request
				unknown[d.JobRunID] = true
				continue
			}
			if err == nil {
				f.run = runSummary(resp.JobRun)
			}
		}
		nd, stream := assess(d, f)
		if f.requested && nd.State != intunedv1alpha1.DeliveryPending {
			// Handled: the backfill it asked for is recorded (persisted
			// with the intent below), or there is nothing to backfill.
			job.Status.LastHandledBackfill = request
		}
		if stream && !streamed && sumErr == nil {
			streamed = true // one results file per reconcile
			list[i] = nd
			job.Status.Deliveries = list
			nd = r.stream(ctx, status, job, env, ledger, nd, f)
		}
		list[i] = nd
	}
	list = slices.DeleteFunc(list, func(d intunedv1alpha1.JobRunDelivery) bool { return unknown[d.JobRunID] })
	job.Status.Deliveries = list
	r.reportDeliveries(job, before, list)

	if sumErr != nil {
		r.setDataComplete(job, metav1.ConditionUnknown, intunedv1alpha1.ReasonReceiverUnreachable,
			"cannot read the receiver's per-JobRun summary: "+sumErr.Error())
		return time.Minute
	}
	st, reason, msg := deliveryCondition(list)
	r.setDataComplete(job, st, reason, msg)
	return nextLook(list, now)
}

// settledFor reports whether a JobRun's accounting is final: every
// expected result is stored. A Gap is counted again on every look: a late
// delivery (or a result stored by hand) may still close it.
func settledFor(d intunedv1alpha1.JobRunDelivery) bool {
	return d.State == intunedv1alpha1.DeliveryComplete || d.State == intunedv1alpha1.DeliveryBackfilled
}

// summaries reads what the receiver holds of ids, by JobRun id.
func (r *Reconciler) summaries(ctx context.Context, ledger receiverapi.Client, readToken string, ids []string) (map[string]*receiverapi.Summary, error) {
	out := map[string]*receiverapi.Summary{}
	if len(ids) == 0 {
		return out, nil
	}
	sums, err := ledger.Summaries(ctx, readToken, ids)
	if err != nil {
		return out, err
	}
	for i := range sums {
		out[sums[i].JobRunID] = &sums[i]
	}
	return out, nil
}

// stream reads the JobRun's results file: to count what apisToSend lets
// through, or (Backfilling) to send the receiver what it lacks. The
// decision to backfill is persisted before the first result is sent.
func (r *Reconciler) stream(ctx context.Context, status *report.StatusPatch, job *intunedv1alpha1.IntunedJob,
	env deliveryEnv, ledger receiverapi.Client, d intunedv1alpha1.JobRunDelivery, f runFacts) intunedv1alpha1.JobRunDelivery {
	sending := d.State == intunedv1alpha1.DeliveryBackfilling
	project, jobID := job.Spec.Project, job.EffectiveJobID()
	results, msg, err := jobRunResults(ctx, env.api, project, jobID, d.JobRunID)
	if err != nil {
		d.Message = "cannot read the JobRun's results file from Intuned: " + err.Error()
		return d
	}
	if msg != "" {
		if !sending {
			d.Message = msg
			return d
		}
		d.Backfill.Done, d.Backfill.Error = true, msg
		d.State, d.Message = intunedv1alpha1.DeliveryGap, "backfill stopped: "+msg
		return d
	}
	progress := &intunedv1alpha1.BackfillProgress{}
	if sending {
		progress = d.Backfill
		if progress.Offset == 0 && progress.Lines == 0 {
			if err := status.Persist(ctx, job); err != nil {
				d.Message = "cannot record the backfill before starting it: " + err.Error()
				return d
			}
		}
	}
	target := receiverapi.BackfillTarget{JobRunID: d.JobRunID, JobID: jobID, Project: project, WorkspaceID: job.Status.WorkspaceID}
	pass := &resultsPass{filter: f.filter, progress: progress}
	if sending {
		pass.deadline = time.Now().Add(backfillSlice)
		pass.send = func(ctx context.Context, ndjson []byte) (receiverapi.BackfillResult, error) {
			res, err := ledger.Backfill(ctx, "Authorization", "Bearer "+env.refs.ReceiverToken, target, ndjson)
			if err == nil {
				backfilledResults.WithLabelValues(job.Namespace, job.Name).Add(float64(res.Stored))
			}
			return res, err
		}
	}
	err = r.readResults(ctx, results, pass, func(ctx context.Context) (*intuned.JobRunResults, error) {
		results, msg, err := jobRunResults(ctx, env.api, project, jobID, d.JobRunID)
		if err == nil && msg != "" {
			err = errors.New(msg)
		}
		return results, err
	})
	notes := ""
	if len(pass.notes) > 0 {
		notes = fmt.Sprintf("; %d lines of the results file are not results (kept in the receiver's quarantine): %s", progress.Invalid, strings.Join(pass.notes, "; "))
	}
	switch {
	case !sending && progress.Done:
		d.Expected = ptrTo(progress.Matched + progress.Invalid)
		return d
	case !sending:
		if err != nil {
			d.Message = "cannot count the results apisToSend lets through: " + err.Error()
		}
		return d
	case err != nil:
		d.Message = fmt.Sprintf("backfilling: %d results sent so far; will resume at byte %d: %v", progress.Matched, progress.Offset, err)
		return d
	case !progress.Done:
		d.Message = fmt.Sprintf("backfilling: %d results sent, %d bytes of the results file read", progress.Matched, progress.Offset)
		return d
	}
	// The whole file was sent: count again.
	sums, err := r.summaries(ctx, ledger, env.refs.ReceiverReadToken, []string{d.JobRunID})
	if err != nil {
		d.Message = "backfill sent every result; cannot read the receiver's summary: " + err.Error()
		return d
	}
	f.summary, f.requested, f.run = sums[d.JobRunID], false, nil
	d.Message = fmt.Sprintf("%d results are missing after backfill%s", progress.Invalid, notes)
	nd, _ := assess(d, f)
	if nd.State == intunedv1alpha1.DeliveryGap && nd.Missing != nil {
		nd.Message = fmt.Sprintf("%d of %d expected results are still missing after backfill%s", *nd.Missing, *nd.Expected, notes)
	}
	return nd
}

// readResults runs pass over the results file from the pass's offset.
// Intuned signs a results URL for a limited time: one that was refused as
// expired is requested again (again: Get Job Run), once.
func (r *Reconciler) readResults(ctx context.Context, results *intuned.JobRunResults, pass *resultsPass,
	again func(context.Context) (*intuned.JobRunResults, error)) error {
	for attempt := 0; ; attempt++ {
		pass.size = 0
		if results.Size != nil {
			pass.size = *results.Size
		}
		body, err := intuned.OpenResults(ctx, r.resultsHTTP(), results, pass.progress.Offset)
		if err == nil {
			defer body.Close()
			return pass.run(ctx, body)
		}
		if !errors.Is(err, intuned.ErrResultsURLExpired) || attempt > 0 {
			return err
		}
		if results, err = again(ctx); err != nil {
			return err
		}
	}
}

func (r *Reconciler) resultsHTTP() *http.Client {
	if r.ResultsHTTP != nil {
		return r.ResultsHTTP
	}
	return http.DefaultClient
}

// jobRunResults asks Get Job Run for the JobRun's results file: Intuned
// signs a new URL every time. unusable says why the answer gives nothing
// to read (no file, or a format other than jsonl).
func jobRunResults(ctx context.Context, api intuned.API, project, jobID, jobRunID string) (res *intuned.JobRunResults, unusable string, err error) {
	resp, err := api.GetJobRun(ctx, project, jobID, jobRunID)
	if err != nil {
		return nil, "", err
	}
	res = resp.Results
	switch {
	case res == nil || res.SignedURL == "":
		return res, "Intuned reports no results file for this JobRun", nil
	case res.Format != "jsonl":
		return res, fmt.Sprintf("Intuned's results file has format %q; backfill reads jsonl only", res.Format), nil
	}
	return res, "", nil
}

// reportDeliveries records Events on the transitions that need a human:
// a gap found (once per JobRun), a backfill that completed or failed.
func (r *Reconciler) reportDeliveries(job *intunedv1alpha1.IntunedJob, before, after []intunedv1alpha1.JobRunDelivery) {
	was := map[string]intunedv1alpha1.DeliveryState{}
	for _, d := range before {
		was[d.JobRunID] = d.State
	}
	for _, d := range after {
		prev := was[d.JobRunID]
		if prev == d.State {
			continue
		}
		switch {
		case d.State == intunedv1alpha1.DeliveryGap && d.Backfill != nil:
			r.event(job, "Warning", "BackfillFailed", "Backfill", fmt.Sprintf("JobRun %s: %s", d.JobRunID, d.Message))
		case (d.State == intunedv1alpha1.DeliveryGap || d.State == intunedv1alpha1.DeliveryBackfilling) &&
			prev != intunedv1alpha1.DeliveryGap && prev != intunedv1alpha1.DeliveryBackfilling:
			r.event(job, "Warning", "DeliveryGap", "Account", gapNote(d))
		case d.State == intunedv1alpha1.DeliveryBackfilled:
			r.event(job, "Normal", "Backfilled", "Backfill", fmt.Sprintf("JobRun %s: %s", d.JobRunID, d.Message))
		}
	}
	observeDeliveries(job, after)
}

func gapNote(d intunedv1alpha1.JobRunDelivery) string {
	what := "results are missing"
	if d.Missing != nil && d.Expected != nil {
		what = fmt.Sprintf("%d of %d expected results are missing", *d.Missing, *d.Expected)
	}
	note := fmt.Sprintf("JobRun %s: %s after Intuned's retry window", d.JobRunID, what)
	if d.State == intunedv1alpha1.DeliveryBackfilling {
		return note + "; backfilling them from Intuned's results file"
	}
	return note + "; " + d.Message
}

// setDataComplete sets condition DataComplete.
func (r *Reconciler) setDataComplete(job *intunedv1alpha1.IntunedJob, st metav1.ConditionStatus, reason, msg string) {
	report.SetCondition(&job.Status.Conditions, job.Generation, intunedv1alpha1.ConditionDataComplete, st, reason, msg)
}

// nextLook is when accounting must run again: at once while backfilling,
// when a Pending JobRun's retry window ends, else at the next poll.
func nextLook(list []intunedv1alpha1.JobRunDelivery, now time.Time) time.Duration {
	var next time.Duration
	sooner := func(d time.Duration) {
		if next == 0 || d < next {
			next = d
		}
	}
	for _, d := range list {
		switch {
		case d.State == intunedv1alpha1.DeliveryBackfilling:
			sooner(time.Second)
		case d.State == intunedv1alpha1.DeliveryPending && d.SettlesAt != nil:
			sooner(max(d.SettlesAt.Sub(now), 0) + time.Second)
		}
	}
	return next
}
