package intunedjob

import (
	"context"
	"errors"
	"fmt"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/intuned"
)

// update writes the spec to the Job (planSync decided it can change
// something), reads it back and records what Intuned made of it in
// status.lastApplied.
func (x *executor) update(ctx context.Context) error {
	job := x.job
	project, id := job.Spec.Project, job.EffectiveJobID()
	have := x.digest(x.remote.Spec())
	if _, err := x.api.UpdateJob(ctx, project, id, x.desired); err != nil {
		if intuned.IsManagedInCode(err) {
			// Remembered, so the refused write is not sent again until
			// the spec or the Job on Intuned changes.
			job.Status.LastApplied = &intunedv1alpha1.AppliedRecord{SpecDigest: x.digest(x.desired), ServerDigest: have,
				Refused: intunedv1alpha1.ReasonManagedInCode}
			x.r.event(job, "Warning", intunedv1alpha1.ReasonManagedInCode, "Update", "Intuned refused to update Job "+id+": "+apiMessage(err))
			return nil
		}
		return intunedWriteError(err)
	}
	x.r.event(job, "Normal", "Updated", "Update", fmt.Sprintf("Updated Job %s on Intuned to match the spec", id))
	after, err := getJob(ctx, x.api, project, id)
	if err != nil {
		return asTransient(err)
	}
	job.Status.LastApplied = appliedAfterUpdate(x.key, job.Status.LastApplied, have, x.desired, after)
	x.remote = after
	return nil
}

// apiMessage is Intuned's message of an error, or the error text.
func apiMessage(err error) string {
	var e *intuned.APIError
	if errors.As(err, &e) && e.Message != "" {
		return e.Message
	}
	return err.Error()
}
