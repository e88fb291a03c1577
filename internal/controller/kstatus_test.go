package controller

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/intunedsim"
)

// kstatusOf is what a GitOps tool (Flux, Argo CD, kubectl wait via
// kstatus) computes from the object as stored.
func kstatusOf(t *testing.T, obj client.Object) status.Status {
	t.Helper()
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		t.Fatal(err)
	}
	res, err := status.Compute(&unstructured.Unstructured{Object: u})
	if err != nil {
		t.Fatal(err)
	}
	return res.Status
}

// TestIntunedJobKstatus drives the real reconciler (envtest + the simulator
// over HTTP) into each state an IntunedJob reaches and checks the status a
// GitOps tool computes from it with the kstatus library: InProgress while
// working or waiting, Current when done, Failed when a human must act,
// Terminating while the finalizer cannot finish.
func TestIntunedJobKstatus(t *testing.T) {
	f := newIJFixture(t, fixtureOptions{})
	ctx := context.Background()
	jobsRoute := intunedsim.APIPrefix + "/{ws}/projects/{p}/jobs"

	tests := []struct {
		name string
		// reach brings the object named name into the state and returns it
		// as stored once it is there.
		reach func(name string) *intunedv1alpha1.IntunedJob
		want  status.Status
	}{
		{"creating", func(name string) *intunedv1alpha1.IntunedJob {
			// Intuned takes its time to answer the create: the create intent
			// is recorded (Reconciling) before the call.
			f.sim.SetFaults([]intunedsim.FaultRule{{Match: "POST " + jobsRoute, LatencyMS: 3000, Times: 1}})
			defer f.sim.SetFaults(nil)
			f.create(f.newJob(name))
			return f.waitCondition(name, intunedv1alpha1.ConditionReconciling, metav1.ConditionTrue, intunedv1alpha1.ReasonProgressing)
		}, status.InProgressStatus},
		{"intuned-400", func(name string) *intunedv1alpha1.IntunedJob {
			f.sim.SetFaults([]intunedsim.FaultRule{{Match: "POST " + jobsRoute, Status: 400, ErrorRate: 1}})
			defer f.sim.SetFaults(nil)
			f.create(f.newJob(name))
			return f.waitCondition(name, intunedv1alpha1.ConditionStalled, metav1.ConditionTrue, intunedv1alpha1.ReasonInvalidSpec)
		}, status.FailedStatus},
		{"synced", func(name string) *intunedv1alpha1.IntunedJob {
			f.create(f.newJob(name))
			return f.waitReady(name)
		}, status.CurrentStatus},
		{"paused", func(name string) *intunedv1alpha1.IntunedJob {
			f.create(f.newJob(name, func(j *intunedv1alpha1.IntunedJob) { j.Spec.Paused = true }))
			j := f.waitReady(name)
			if j.Status.JobState != intunedv1alpha1.JobStatePaused {
				t.Errorf("Ready with job state %s, want PAUSED", j.Status.JobState)
			}
			return j
		}, status.CurrentStatus},
		{"bad-credentials", func(name string) *intunedv1alpha1.IntunedJob {
			f.createSecret("wrong-key-"+name, map[string]string{
				intunedv1alpha1.CredentialsKeyWorkspaceID: f.sim.WorkspaceID,
				intunedv1alpha1.CredentialsKeyAPIKey:      "not-the-key",
				intunedv1alpha1.CredentialsKeyBaseURL:     f.sim.APIBase,
			})
			f.create(f.newJob(name, func(j *intunedv1alpha1.IntunedJob) { j.Spec.CredentialsRef.Name = "wrong-key-" + name }))
			return f.waitCondition(name, intunedv1alpha1.ConditionStalled, metav1.ConditionTrue, intunedv1alpha1.ReasonCredentialsInvalid)
		}, status.FailedStatus},
		{"receiver-not-ready", func(name string) *intunedv1alpha1.IntunedJob {
			whr := &intunedv1alpha1.WebhookReceiver{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "not-ready"}}
			if err := k8sClient().Create(ctx, whr); err != nil {
				t.Fatal(err)
			}
			f.create(f.newJob(name, func(j *intunedv1alpha1.IntunedJob) {
				j.Spec.Sink.Webhook.URL = ""
				j.Spec.Sink.Webhook.ReceiverRef = &intunedv1alpha1.LocalObjectReference{Name: "not-ready"}
			}))
			return f.waitCondition(name, intunedv1alpha1.ConditionSynced, metav1.ConditionFalse, intunedv1alpha1.ReasonReceiverNotReady)
		}, status.InProgressStatus},
		{"synced-runs-unreadable", func(name string) *intunedv1alpha1.IntunedJob {
			// Synced and Ready mean different things: Intuned holds the
			// spec, but the reconcile could not finish.
			f.create(f.newJob(name))
			f.waitReady(name)
			f.sim.SetFaults([]intunedsim.FaultRule{{Match: "GET " + jobsRoute + "/{jobId}/runs", Status: 500, ErrorRate: 1}})
			defer f.sim.SetFaults(nil)
			j := f.waitCondition(name, intunedv1alpha1.ConditionReady, metav1.ConditionFalse, intunedv1alpha1.ReasonSyncFailed)
			if !meta.IsStatusConditionTrue(j.Status.Conditions, intunedv1alpha1.ConditionSynced) {
				t.Errorf("Synced is not True while only the JobRuns are unreadable: %v", j.Status.Conditions)
			}
			return j
		}, status.InProgressStatus},
		{"deleting", func(name string) *intunedv1alpha1.IntunedJob {
			f.create(f.newJob(name))
			f.waitReady(name)
			f.sim.SetFaults([]intunedsim.FaultRule{{Match: "DELETE", Status: 500, ErrorRate: 1}})
			defer f.sim.SetFaults(nil)
			if err := k8sClient().Delete(ctx, f.get(name)); err != nil {
				t.Fatal(err)
			}
			var j *intunedv1alpha1.IntunedJob
			f.eventually(30*time.Second, func() string {
				j = f.get(name)
				if c := meta.FindStatusCondition(j.Status.Conditions, intunedv1alpha1.ConditionReady); c == nil || c.Reason != intunedv1alpha1.ReasonDeletionBlocked {
					return "Ready does not say DeletionBlocked yet"
				}
				return ""
			})
			return j
		}, status.TerminatingStatus},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			j := tc.reach("ks-" + tc.name)
			if got := kstatusOf(t, j); got != tc.want {
				t.Errorf("kstatus = %s, want %s; conditions %v", got, tc.want, j.Status.Conditions)
			}
		})
	}
}

// TestWebhookReceiverKstatusAndEvents walks a WebhookReceiver through the
// states it reaches and checks, for each, the status a GitOps tool computes
// (kstatus) and the Event a user sees.
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
	for _, s := range steps {
		s.do()
		var w *intunedv1alpha1.WebhookReceiver
		if s.wantEvent == "TokenRotated" {
			// Staged for 200ms, then swapped: Ready stays Available.
			f.eventually(func() string {
				if !whrHasEvent(t, f.ns, s.receiver, s.wantEvent) {
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
		if got := kstatusOf(t, w); got != s.want {
			t.Errorf("%s: kstatus = %s, want %s; conditions %v", s.name, got, s.want, w.Status.Conditions)
		}
		if s.wantEvent != "" {
			f.eventually(func() string {
				if !whrHasEvent(t, f.ns, s.receiver, s.wantEvent) {
					return s.name + ": no " + s.wantEvent + " Event"
				}
				return ""
			})
		}
	}
}

// whrHasEvent reports whether an Event with reason exists for the named
// object.
func whrHasEvent(t *testing.T, ns, name, reason string) bool {
	t.Helper()
	var list eventsv1.EventList
	if err := k8sClient().List(context.Background(), &list, client.InNamespace(ns)); err != nil {
		t.Fatalf("list events: %v", err)
	}
	for _, e := range list.Items {
		if e.Regarding.Name == name && e.Reason == reason {
			return true
		}
	}
	return false
}
