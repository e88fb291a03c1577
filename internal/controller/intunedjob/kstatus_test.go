package intunedjob

import (
	"context"
	"testing"
	"time"

	"github.com/intuned-operator/intuned-operator/internal/controller/controllertest"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/intunedsim"
)

// TestIntunedJobKstatus drives the real reconciler (envtest + the simulator
// over HTTP) into each state an IntunedJob reaches and checks what each
// GitOps tool computes from the stored object: the kstatus library
// (InProgress while working or waiting, Current when done or suspended,
// Failed when a human must act, Terminating while the finalizer cannot
// finish), Argo CD with the shipped Lua health check and Flux with the
// shipped healthCheckExprs (docs/gitops.md).
func TestIntunedJobKstatus(t *testing.T) {
	f := newIJFixture(t, fixtureOptions{})
	ctx := context.Background()
	jobsRoute := intunedsim.APIPrefix + "/{ws}/projects/{p}/jobs"
	var (
		progressing = controllertest.Health{Kstatus: status.InProgressStatus, Argo: "Progressing", Flux: status.InProgressStatus}
		failed      = controllertest.Health{Kstatus: status.FailedStatus, Argo: "Degraded", Flux: status.FailedStatus}
		current     = controllertest.Health{Kstatus: status.CurrentStatus, Argo: "Healthy", Flux: status.CurrentStatus}
	)

	tests := []struct {
		name string
		// reach brings the object named name into the state and returns it
		// as stored once it is there.
		reach func(name string) *intunedv1alpha1.IntunedJob
		want  controllertest.Health
	}{
		{"creating", func(name string) *intunedv1alpha1.IntunedJob {
			// Intuned fails the create for now (503): retried, in
			// progress. (Nothing is written before a create: see
			// create.go.)
			f.sim.SetFaults([]intunedsim.FaultRule{{Match: "POST " + jobsRoute, Status: 503, ErrorRate: 1}})
			defer f.sim.SetFaults(nil)
			f.create(f.newJob(name))
			return f.waitCondition(name, intunedv1alpha1.ConditionReconciling, metav1.ConditionTrue, "")
		}, progressing},
		{"intuned-400", func(name string) *intunedv1alpha1.IntunedJob {
			f.sim.SetFaults([]intunedsim.FaultRule{{Match: "POST " + jobsRoute, Status: 400, ErrorRate: 1}})
			defer f.sim.SetFaults(nil)
			f.create(f.newJob(name))
			return f.waitCondition(name, intunedv1alpha1.ConditionStalled, metav1.ConditionTrue, intunedv1alpha1.ReasonInvalidSpec)
		}, failed},
		{"synced", func(name string) *intunedv1alpha1.IntunedJob {
			f.create(f.newJob(name))
			return f.waitReady(name)
		}, current},
		{"paused", func(name string) *intunedv1alpha1.IntunedJob {
			f.create(f.newJob(name, func(j *intunedv1alpha1.IntunedJob) { j.Spec.Paused = true }))
			j := f.waitReady(name)
			if j.Status.JobState != intunedv1alpha1.JobStatePaused {
				t.Errorf("Ready with job state %s, want PAUSED", j.Status.JobState)
			}
			return j
		}, current},
		{"bad-credentials", func(name string) *intunedv1alpha1.IntunedJob {
			f.createSecret("wrong-key-"+name, map[string]string{
				intunedv1alpha1.CredentialsKeyWorkspaceID: f.sim.WorkspaceID,
				intunedv1alpha1.CredentialsKeyAPIKey:      "not-the-key",
				intunedv1alpha1.CredentialsKeyBaseURL:     f.sim.APIBase,
			})
			f.create(f.newJob(name, func(j *intunedv1alpha1.IntunedJob) { j.Spec.CredentialsRef.Name = "wrong-key-" + name }))
			return f.waitCondition(name, intunedv1alpha1.ConditionStalled, metav1.ConditionTrue, intunedv1alpha1.ReasonCredentialsInvalid)
		}, failed},
		{"receiver-not-ready", func(name string) *intunedv1alpha1.IntunedJob {
			whr := &intunedv1alpha1.WebhookReceiver{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "not-ready"}}
			if err := controllertest.Client().Create(ctx, whr); err != nil {
				t.Fatal(err)
			}
			f.create(f.newJob(name, func(j *intunedv1alpha1.IntunedJob) {
				j.Spec.Sink.Webhook.URL = ""
				j.Spec.Sink.Webhook.ReceiverRef = &intunedv1alpha1.LocalObjectReference{Name: "not-ready"}
			}))
			return f.waitCondition(name, intunedv1alpha1.ConditionSynced, metav1.ConditionFalse, intunedv1alpha1.ReasonReceiverNotReady)
		}, progressing},
		{"synced-runs-unreadable", func(name string) *intunedv1alpha1.IntunedJob {
			// Synced and Ready mean different things: Intuned holds the
			// spec, but the reconcile could not finish.
			f.create(f.newJob(name))
			f.waitReady(name)
			f.sim.SetFaults([]intunedsim.FaultRule{{Match: "GET " + jobsRoute + "/{jobId}/runs", Status: 500, ErrorRate: 1}})
			defer f.sim.SetFaults(nil)
			// A polled Job lists its JobRuns only when one may be new:
			// a trigger starts one.
			f.setTrigger(name, "1")
			j := f.waitCondition(name, intunedv1alpha1.ConditionReady, metav1.ConditionFalse, intunedv1alpha1.ReasonSyncFailed)
			if !meta.IsStatusConditionTrue(j.Status.Conditions, intunedv1alpha1.ConditionSynced) {
				t.Errorf("Synced is not True while only the JobRuns are unreadable: %v", j.Status.Conditions)
			}
			return j
		}, progressing},
		{"suspended", func(name string) *intunedv1alpha1.IntunedJob {
			// Settled as asked: Ready=True reason Suspended, so kubectl
			// wait, kstatus and Flux are done and Argo CD says Suspended.
			f.create(f.newJob(name, func(j *intunedv1alpha1.IntunedJob) { j.Spec.Suspend = true }))
			return f.waitCondition(name, intunedv1alpha1.ConditionReady, metav1.ConditionTrue, intunedv1alpha1.ReasonSuspended)
		}, controllertest.Health{Kstatus: status.CurrentStatus, Argo: "Suspended", Flux: status.CurrentStatus}},
		{"suspended-after-sync", func(name string) *intunedv1alpha1.IntunedJob {
			f.create(f.newJob(name))
			f.waitReady(name)
			f.update(name, func(j *intunedv1alpha1.IntunedJob) { j.Spec.Suspend = true })
			return f.waitCondition(name, intunedv1alpha1.ConditionReady, metav1.ConditionTrue, intunedv1alpha1.ReasonSuspended)
		}, controllertest.Health{Kstatus: status.CurrentStatus, Argo: "Suspended", Flux: status.CurrentStatus}},
		{"deleting", func(name string) *intunedv1alpha1.IntunedJob {
			f.create(f.newJob(name))
			f.waitReady(name)
			f.sim.SetFaults([]intunedsim.FaultRule{{Match: "DELETE", Status: 500, ErrorRate: 1}})
			defer f.sim.SetFaults(nil)
			if err := controllertest.Client().Delete(ctx, f.get(name)); err != nil {
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
		}, controllertest.Health{Kstatus: status.TerminatingStatus, Argo: "Progressing", Flux: status.InProgressStatus}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			j := tc.reach("ks-" + tc.name)
			if got := controllertest.GitOpsHealth(t, j); got != tc.want {
				t.Errorf("health = %s, want %s; conditions %v", got, tc.want, j.Status.Conditions)
			}
		})
	}
}

// TestIntunedJobKstatusWhileCreating: nothing is written before a create
// (create.go), so while Intuned takes its time to answer, a new job's
// status is only what the API server fills in. A GitOps tool watching it
// (kubectl wait, Flux, Argo CD: kstatus on the object as served) must see
// InProgress at every step until the job is Ready, then Current — never
// Current for a Job that does not exist yet. The CRD's status default
// (observedGeneration 0) is what makes the untouched object InProgress.
func TestIntunedJobKstatusWhileCreating(t *testing.T) {
	f := newIJFixture(t, fixtureOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const name = "ks-slow-create"
	// Intuned answers the create after 2 s: the window a user's
	// `kubectl apply && kubectl wait` falls into.
	f.sim.SetFaults([]intunedsim.FaultRule{{Match: "POST " + intunedsim.APIPrefix + "/{ws}/projects/{p}/jobs", LatencyMS: 2000, Times: 1}})

	wc, err := client.NewWithWatch(controllertest.Env.Config, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(intunedv1alpha1.GroupVersion.WithKind("IntunedJobList"))
	w, err := wc.Watch(ctx, list, client.InNamespace(f.ns), client.MatchingFields{"metadata.name": name})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	f.create(f.newJob(name))

	// Every version of the object, as served, from its creation on.
	untouched := 0
	for {
		var ev watch.Event
		select {
		case ev = <-w.ResultChan():
		case <-ctx.Done():
			t.Fatal("the job did not become Ready")
		}
		u, ok := ev.Object.(*unstructured.Unstructured)
		if !ok {
			t.Fatalf("watch: %v", ev.Object)
		}
		res, err := status.Compute(u)
		if err != nil {
			t.Fatal(err)
		}
		conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
		if len(conds) == 0 {
			untouched++
		}
		ready := false
		for _, c := range conds {
			c, _ := c.(map[string]any)
			ready = ready || (c["type"] == intunedv1alpha1.ConditionReady && c["status"] == string(metav1.ConditionTrue))
		}
		if !ready {
			if res.Status != status.InProgressStatus {
				t.Errorf("resourceVersion %s, before Ready: kstatus %s (%s), want InProgress; status %v",
					u.GetResourceVersion(), res.Status, res.Message, u.Object["status"])
			}
			continue
		}
		if res.Status != status.CurrentStatus {
			t.Errorf("Ready: kstatus %s (%s), want Current", res.Status, res.Message)
		}
		break
	}
	if untouched == 0 {
		t.Error("no version without a status write was seen; the test did not look at the window it is about")
	}
	if n := f.callCount("POST", "/jobs"); n != 1 {
		t.Errorf("%d creates, want 1", n)
	}
}
