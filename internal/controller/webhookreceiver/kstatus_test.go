package webhookreceiver

import (
	"testing"

	"github.com/intuned-operator/intuned-operator/internal/controller/controllertest"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
)

// TestWebhookReceiverKstatusAndEvents walks a WebhookReceiver through the
// states it reaches and checks, for each, what each GitOps tool computes
// (kstatus; Argo CD with the shipped Lua; Flux with the shipped
// healthCheckExprs: docs/gitops.md) and the Event a user sees.
func TestWebhookReceiverKstatusAndEvents(t *testing.T) {
	f := newWHRFixture(t)
	whr := f.receiver("ks", intunedv1alpha1.WebhookReceiverSpec{
		Storage: &intunedv1alpha1.ReceiverStorage{Postgres: &intunedv1alpha1.PostgresStorage{
			DSNSecretRef: intunedv1alpha1.SecretKeyRef{Name: "ks-dsn", Key: "dsn"},
		}},
	})
	steps := []struct {
		name      string
		receiver  string
		do        func()
		reason    string // of Ready
		want      status.Status
		wantEvent string // an Event reason now recorded for the receiver
	}{
		{"DSN Secret missing", "ks", func() {}, intunedv1alpha1.ReasonSecretNotFound, status.InProgressStatus, intunedv1alpha1.ReasonSecretNotFound},
		{"workload not ready", "ks", func() {
			f.create(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "ks-dsn"}, StringData: map[string]string{"dsn": "postgres://u:p@db/x"}})
		}, intunedv1alpha1.ReasonWorkloadNotReady, status.InProgressStatus, intunedv1alpha1.ReasonWorkloadNotReady},
		{"ready", "ks", func() {
			f.update(whr, func() { whr.Spec.ExternalURL = "https://tunnel.example.com/in" })
			f.setDeploymentAvailable("ks", true)
		}, intunedv1alpha1.ReasonAvailable, status.CurrentStatus, ""},
		{"token rotated", "ks", func() {
			f.update(whr, func() { whr.Annotations = map[string]string{intunedv1alpha1.AnnotationRotateToken: "r1"} })
		}, intunedv1alpha1.ReasonAvailable, status.CurrentStatus, "TokenRotated"},
		{"invalid name", "invalid.name", func() {
			f.receiver("invalid.name", intunedv1alpha1.WebhookReceiverSpec{})
		}, intunedv1alpha1.ReasonInvalidSpec, status.FailedStatus, intunedv1alpha1.ReasonInvalidSpec},
		{"name conflict", "taken", func() {
			f.create(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "taken-token"}, StringData: map[string]string{"token": "users"}})
			f.receiver("taken", intunedv1alpha1.WebhookReceiverSpec{})
		}, intunedv1alpha1.ReasonResourceConflict, status.FailedStatus, intunedv1alpha1.ReasonResourceConflict},
	}
	argoFor := map[status.Status]string{
		status.InProgressStatus: "Progressing", status.FailedStatus: "Degraded", status.CurrentStatus: "Healthy",
	}
	for _, s := range steps {
		s.do()
		var w *intunedv1alpha1.WebhookReceiver
		if s.wantEvent == "TokenRotated" {
			// Staged for 200ms, then swapped: Ready stays Available.
			f.eventually(func() string {
				if !controllertest.HasEvent(t, f.ns, s.receiver, s.wantEvent) {
					return "no TokenRotated Event yet"
				}
				return ""
			})
		}
		ready := metav1.ConditionFalse
		if s.want == status.CurrentStatus {
			ready = metav1.ConditionTrue
		}
		w = f.waitReady(s.receiver, ready, s.reason)
		// The three tools agree: kstatus's verdict, Argo CD's word for it.
		want := controllertest.Health{Kstatus: s.want, Argo: argoFor[s.want], Flux: s.want}
		if got := controllertest.GitOpsHealth(t, w); got != want {
			t.Errorf("%s: health = %s, want %s; conditions %v", s.name, got, want, w.Status.Conditions)
		}
		if s.wantEvent != "" {
			f.eventually(func() string {
				if !controllertest.HasEvent(t, f.ns, s.receiver, s.wantEvent) {
					return s.name + ": no " + s.wantEvent + " Event"
				}
				return ""
			})
		}
	}
}
