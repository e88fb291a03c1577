package flow

import (
	"context"
	"errors"
	"fmt"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/testutil/poll"
)

// WaitAllDelivered waits until the simulator has sent want deliveries of
// the job and none is pending, then requires that every one was
// acknowledged and is stored exactly once with the bytes sent, and nothing
// else is stored for the job.
func WaitAllDelivered(ctx context.Context, sim *Sim, rc ReceiverClient, job string, want int) (DeliveryReport, error) {
	var rep DeliveryReport
	err := poll.Eventually(ctx, 200*time.Millisecond, "every delivery acknowledged", func(ctx context.Context) (bool, error) {
		var err error
		rep, err = CompareDeliveries(ctx, sim, rc, job, "")
		if err != nil {
			return false, err
		}
		return rep.Sent >= want && rep.Pending == 0, errors.New(rep.String())
	})
	switch {
	case err != nil:
		return rep, err
	case !rep.OK():
		return rep, fmt.Errorf("deliveries: %s", rep)
	case rep.Sent != want || rep.Stored != want:
		return rep, fmt.Errorf("deliveries: %s; want exactly %d, each stored once", rep, want)
	}
	return rep, nil
}

// WaitFailedAttempts waits until n deliveries of the job have had an
// attempt that failed: proof that a fault hit the run.
func WaitFailedAttempts(ctx context.Context, sim *Sim, job string, n int) error {
	return poll.Eventually(ctx, 100*time.Millisecond, fmt.Sprintf("%d deliveries with a failed attempt", n), func(ctx context.Context) (bool, error) {
		ds, err := sim.Deliveries(ctx, job)
		failed := 0
		for _, d := range ds {
			for _, a := range d.Attempts {
				if a.StatusCode < 200 || a.StatusCode > 299 {
					failed++
					break
				}
			}
		}
		return failed >= n, err
	})
}

// JobRunFinished: the JobRun statuses Intuned's SDK knows as final.
func JobRunFinished(status string) bool {
	switch status {
	case "COMPLETED", "SUCCESS", "FAILURE", "TERMINATED", "CANCELED":
		return true
	}
	return false
}

// WaitJobRunFinished waits until the IntunedJob's status.lastJobRun names a
// finished JobRun (started by the given trigger value, unless it is empty)
// and returns it.
func WaitJobRunFinished(ctx context.Context, c client.Client, ns, name, trigger string) (*intunedv1alpha1.JobRunSummary, error) {
	var last *intunedv1alpha1.JobRunSummary
	err := poll.Eventually(ctx, 250*time.Millisecond, "status.lastJobRun finished", func(ctx context.Context) (bool, error) {
		var ij intunedv1alpha1.IntunedJob
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &ij); err != nil {
			return false, err
		}
		last = ij.Status.LastJobRun
		if trigger != "" && ij.Status.LastHandledTrigger != trigger {
			return false, fmt.Errorf("lastHandledTrigger %q", ij.Status.LastHandledTrigger)
		}
		if last == nil {
			return false, errors.New("no lastJobRun")
		}
		return JobRunFinished(last.Status), fmt.Errorf("lastJobRun %+v", *last)
	})
	return last, err
}
