package intunedjob

import (
	"context"
	"errors"
	"fmt"

	"github.com/intuned-operator/intuned-operator/internal/controller/report"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/intuned"
)

// The update protocol: write only when a write can change something, read
// back, and record what Intuned made of it (status.lastApplied) — see
// converge.

// converge makes the Job on Intuned match desired, writing only when a write
// can change something. A real server may normalise fields in ways no
// document describes (defaults, rounding, stripping), so "observed equals
// desired" is not the only way to be in sync:
//
//   - observed equals desired: in sync.
//   - Neither the spec nor Intuned's answer changed since the last write
//     (status.lastApplied digests): in sync as far as Intuned can hold the
//     spec; writing again would get the same answer.
//   - Right after this object created the Job, when the read-back after the
//     create failed (Intuned's answer not seen yet, so drift and
//     normalisation look alike), a difference is written once and
//     whatever Intuned then answers is its answer to this spec.
//   - Otherwise write, read back, and record the digests and the fields
//     Intuned holds differently. A write that leaves Intuned's answer
//     unchanged is tried once more (it may have raced another writer); a
//     second one stops the writes with Synced=False, reason
//     ServerNormalises, until the spec or the Job on Intuned changes.
//
// It returns the Job as last read, and a notice for the conditions.
func (r *Reconciler) converge(ctx context.Context, api intuned.API, job *intunedv1alpha1.IntunedJob, key string,
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
			r.event(job, "Warning", intunedv1alpha1.ReasonManagedInCode, "Update", "Intuned refused to update Job "+id+": "+apiMessage(err))
			return observed, managedInCode(id), nil
		}
		return nil, nil, intunedWriteError(err)
	}
	r.event(job, "Normal", "Updated", "Update", fmt.Sprintf("Updated Job %s on Intuned to match the spec", id))
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
	return report.Stalled(intunedv1alpha1.ReasonManagedInCode, "Job "+id+
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
		return report.WaitFor(intunedv1alpha1.ReasonServerNormalises, fmt.Sprintf(
			"writing Job %s did not change %s on Intuned; writing once more at the next poll to rule out a race", id, fields))
	}
	return report.Stalled(intunedv1alpha1.ReasonServerNormalises, fmt.Sprintf(
		"Intuned rewrites %s of Job %s: %d writes in a row changed nothing, so the operator stops writing until the spec or the Job on Intuned changes. Set these fields in the spec to the values Intuned holds (kubectl get ij -o yaml shows status.lastApplied)",
		fields, id, rec.UnchangedWrites))
}
