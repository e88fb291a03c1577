package webhookreceiver

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
)

// TestWebhookReceiverRetentionReachesReceiver: spec.retention becomes the receiver container's
// flags, a change rolls out, and removing it drops them (the receiver keeps everything again).
func TestWebhookReceiverRetentionReachesReceiver(t *testing.T) {
	f := newWHRFixture(t)
	whr := f.receiver("ret", intunedv1alpha1.WebhookReceiverSpec{
		Retention: &intunedv1alpha1.ReceiverRetention{
			MaxAge:  &metav1.Duration{Duration: 720 * time.Hour},
			MaxSize: ptr.To(resource.MustParse("800Mi")),
		},
	})
	retentionArgs := func() []string {
		var sts appsv1.StatefulSet
		if err := f.get("ret", &sts); err != nil {
			return []string{err.Error()}
		}
		var out []string
		for _, a := range sts.Spec.Template.Spec.Containers[0].Args {
			if strings.HasPrefix(a, "--retention-") {
				out = append(out, a)
			}
		}
		return out
	}
	want := func(args ...string) func() string {
		return func() string {
			if got := retentionArgs(); !slices.Equal(got, args) {
				return fmt.Sprintf("retention args %q, want %q", got, args)
			}
			return ""
		}
	}
	f.eventually(want("--retention-max-age=720h0m0s", "--retention-max-bytes=838860800"))

	f.update(whr, func() {
		whr.Spec.Retention = &intunedv1alpha1.ReceiverRetention{MaxAge: &metav1.Duration{Duration: 48 * time.Hour}}
	})
	f.eventually(want("--retention-max-age=48h0m0s"))

	f.update(whr, func() { whr.Spec.Retention = nil })
	f.eventually(want())
}
