package resources

import (
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/intuned-operator/intuned-operator/api/v1alpha1"
)

func TestWebhookReceiverRetentionArgs(t *testing.T) {
	both := &v1alpha1.ReceiverRetention{MaxAge: &metav1.Duration{Duration: 48 * time.Hour}, MaxSize: ptr.To(resource.MustParse("500Mi"))}
	for _, tt := range []struct {
		name      string
		whr       *v1alpha1.WebhookReceiver
		retention *v1alpha1.ReceiverRetention
		want      []string
	}{
		{"unset: keep everything", minimal(), nil, nil},
		{"sqlite", minimal(), both, []string{"--retention-max-age=48h0m0s", "--retention-max-bytes=524288000"}},
		// CEL refuses maxSize with postgres; the receiver would refuse to start with it.
		{"postgres: age only", maximalPostgres(), both, []string{"--retention-max-age=48h0m0s"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.whr.Spec.Retention = tt.retention
			var got []string
			for _, a := range ReceiverArgs(tt.whr) {
				if strings.HasPrefix(a, "--retention-") {
					got = append(got, a)
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("retention args = %q, want %q", got, tt.want)
			}
		})
	}
}
