package resources

import (
	"strconv"

	"github.com/intuned-operator/intuned-operator/api/v1alpha1"
)

// retentionArgs are the receiver flags of spec.retention; none when it is unset (the receiver
// keeps everything). maxSize applies to SQLite only (CEL refuses it with postgres storage; a
// receiver given --retention-max-bytes on PostgreSQL would refuse to start).
func retentionArgs(whr *v1alpha1.WebhookReceiver) []string {
	r := whr.Spec.Retention
	if r == nil {
		return nil
	}
	var args []string
	if r.MaxAge != nil && r.MaxAge.Duration > 0 {
		args = append(args, "--retention-max-age="+r.MaxAge.Duration.String())
	}
	if r.MaxSize != nil && r.MaxSize.Sign() > 0 && !UsesPostgres(whr) {
		args = append(args, "--retention-max-bytes="+strconv.FormatInt(r.MaxSize.Value(), 10))
	}
	return args
}
