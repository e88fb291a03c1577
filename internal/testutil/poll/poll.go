// Package poll has the one polling helper of the tests, the local-cluster
// toolkit and the programs under hack/. It imports no test package, so
// programs may use it too.
package poll

import (
	"context"
	"fmt"
	"time"
)

// Eventually calls cond every interval until it returns true or ctx ends.
// An error from cond does not stop the polling: the last one explains a
// timeout, so conditions return why they do not hold yet.
func Eventually(ctx context.Context, interval time.Duration, what string, cond func(ctx context.Context) (bool, error)) error {
	var last error
	for {
		ok, err := cond(ctx)
		if ok {
			return nil
		}
		if err != nil && ctx.Err() == nil {
			last = err
		}
		select {
		case <-ctx.Done():
			if last != nil {
				return fmt.Errorf("%s: %w (last error: %v)", what, ctx.Err(), last)
			}
			return fmt.Errorf("%s: %w", what, ctx.Err())
		case <-time.After(interval):
		}
	}
}
