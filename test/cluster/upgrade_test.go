package cluster

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/testutil/flow"
	"github.com/intuned-operator/intuned-operator/internal/testutil/kcluster"
	"github.com/intuned-operator/intuned-operator/internal/testutil/poll"
	"github.com/intuned-operator/intuned-operator/internal/testutil/scenarios"
	"github.com/intuned-operator/intuned-operator/internal/testutil/testenv"
)

// previousRelease is the commit of this repository whose install
// TestUpgrade starts from: until there are releases, the tip of main when
// the test was written. Move it to the last release's commit when one is
// cut (docs/upgrade.md).
const previousRelease = "265af5c2a1ae2d0a46d7f0b805150b6d21046b00"

// previousImage is the previous release's image on the node (HEAD's is
// kcluster.ProjectImageTag).
const previousImage = "kcluster.local/intuned-operator:prev"

// upgradeRunDuration is the simulated duration of each Run of the JobRun
// that delivers while the upgrade goes on: 12 s at the tests' time scale,
// one Run after the other (maxConcurrentRequests 1), so that its six
// deliveries span the manager's and the receiver's rollouts (about a
// minute). The job's requestTimeout lets a Run last that long.
const upgradeRunDuration = 12 * time.Minute

// TestUpgrade upgrades the operator on the real node with kustomize, as
// docs/upgrade.md says, from the previous release to HEAD: the previous
// release's source (git archive of previousRelease) builds its own image
// and renders its own installer; a WebhookReceiver (SQLite on a PVC) and
// two IntunedJobs that deliver to it (one running, one paused with
// deletionPolicy Orphan) are made with it and deliver; then HEAD's
// installer is applied server-side over it while Intuned (the simulator)
// delivers a JobRun and a sender posts a steady stream through the
// Ingress. The upgrade must roll every operator and receiver Pod to HEAD's
// image, make no write call to Intuned, lose no acknowledged delivery
// (each stored exactly once), keep what was stored before, and leave every
// object Current (Ready, observedGeneration current). Then the operator is
// uninstalled in the order docs/operations.md gives, and nothing may be
// left stuck. HEAD's install is put back for the tests that run after.
func TestUpgrade(t *testing.T) {
	ctx := scenarios.Context(t, 30*time.Minute)
	root := testenv.RepoRoot()
	sim := env.simulator

	// The previous release, built before the cluster is touched.
	oldSrc := exportCommit(t, ctx, root, previousRelease)
	oldDir := t.TempDir()
	tar := filepath.Join(oldDir, "image.tar")
	if _, err := kcluster.BuildProjectImage(ctx, oldSrc, filepath.Join(oldDir, "bin"), tar, previousImage); err != nil {
		t.Fatalf("building the image of %s: %v", previousRelease, err)
	}
	if err := env.kc.ImportImage(ctx, tar); err != nil {
		t.Fatal(err)
	}

	// A cluster that never had the operator: what setup (and every test
	// before this one) installed goes, the documented way.
	t.Cleanup(func() { reinstallHEAD(t, root) })
	uninstallOperator(t, ctx, "before installing the previous release")
	if err := env.kc.InstallOperatorFrom(ctx, oldSrc, oldDir, previousImage, true); err != nil {
		t.Fatalf("installing the previous release %s: %v", previousRelease, err)
	}
	waitOperatorImage(t, ctx, previousImage)

	// The previous release's objects, delivering.
	p := scenarios.NewPair(t, ctx, &env, "upgrade", func(s *flow.Samples) {
		c := s.Job.Spec.Configuration
		c.MaxConcurrentRequests = ptr.To[int32](1)
		c.RequestTimeout = ptr.To[int32](3600)
		s.Job.Spec.Payload[0].RequestTimeout = ptr.To[int32](3600)
	})
	paused := p.Get(ctx).DeepCopy()
	paused.ObjectMeta = metav1.ObjectMeta{Namespace: p.NS, Name: "kc-upgrade-paused"}
	paused.Status = intunedv1alpha1.IntunedJobStatus{}
	paused.Spec.Paused = true
	paused.Spec.DeletionPolicy = intunedv1alpha1.DeletionPolicyOrphan
	paused.Spec.Schedule = &intunedv1alpha1.JobSchedule{Intervals: []intunedv1alpha1.ScheduleInterval{{Every: "1h"}}}
	if err := env.kubeClient.Create(ctx, paused); err != nil {
		t.Fatal(err)
	}
	p.WaitReady(ctx)
	waitCurrent(t, ctx, p.NS, "with the previous release")
	waitReceiverImage(t, ctx, p, previousImage, "")
	waitSimJob(t, ctx, p.Project, paused.Name, true)
	p.Trigger(ctx, "before")
	p.WaitAllDelivered(ctx, flow.QuickstartDeliveries)

	ingest, _, err := flow.ReceiverTokens(ctx, env.kubeClient, p.NS, p.Receiver)
	if err != nil {
		t.Fatal(err)
	}
	// The stream is a job of its own for the receiver, so that Intuned's
	// deliveries of p.Job can be compared with the store on their own.
	stream := &scenarios.Pair{URL: p.URL, Project: p.Project, Job: "kc-upgrade-stream"}
	s := &sender{p: stream, token: ingest, jobRun: "jr-upgrade-stream"}
	s.phase.Store("before")
	s.start(ctx, 2, 25*time.Millisecond)
	waitAcked(t, ctx, s, 50)

	// A JobRun whose deliveries go on through the upgrade: its trigger is
	// the last write to Intuned before the upgrade.
	if err := sim.SetRunDuration(ctx, upgradeRunDuration); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.SetRunDuration(context.Background(), flow.QuickstartRunDuration) })
	triggerAndWaitCall(t, ctx, p, "during")

	before, err := p.RC.List(ctx, "", "")
	if err != nil {
		t.Fatal(err)
	}
	oldPods, err := env.receiverPods(ctx, p.NS, p.Receiver)
	if err != nil {
		t.Fatal(err)
	}
	calls0, err := sim.Calls(ctx)
	if err != nil {
		t.Fatal(err)
	}

	// The upgrade: HEAD's installer (its image already imported by setup)
	// applied server-side over the previous release's.
	s.phase.Store("upgrade")
	start := time.Now()
	if err := env.kc.InstallOperator(ctx, root, env.dir, true); err != nil {
		t.Fatalf("upgrading to HEAD: %v", err)
	}
	waitOperatorImage(t, ctx, kcluster.ProjectImageTag)
	waitReceiverImage(t, ctx, p, kcluster.ProjectImageTag, volumeClaim(&oldPods[0]))
	waitCurrent(t, ctx, p.NS, "after the upgrade")
	upgraded := time.Since(start)
	// Deliveries go on to the new receiver Pod for a moment, then stop.
	s.phase.Store("after")
	waitAcked(t, ctx, s, int(s.count.Load())+50)
	s.stop()
	last := p.WaitJobRunFinished(ctx, "during")
	calls1, err := sim.Calls(ctx)
	if err != nil {
		t.Fatal(err)
	}

	// No write to Intuned from the start of the upgrade until the JobRun
	// that went on through it ended.
	writes, reads := callsBetween(calls0, calls1)
	if len(writes) > 0 {
		t.Errorf("the upgrade made write calls to Intuned: %v", writes)
	}
	if last.Status != "COMPLETED" {
		t.Errorf("the JobRun during the upgrade ended %s, want COMPLETED", last.Status)
	}
	rep, err := flow.WaitAllDelivered(ctx, sim, p.RC, p.Job, 2*flow.QuickstartDeliveries)
	if err != nil {
		t.Errorf("Intuned's deliveries across the upgrade: %v", err)
	}
	lost, dup := checkStored(t, ctx, p, s, before)
	// How many of Intuned's deliveries the receiver's rollout made fail
	// at first (retried until acknowledged; WaitAllDelivered checked them).
	retried := 0
	if ds, err := sim.Deliveries(ctx, p.Job); err == nil {
		for _, d := range ds {
			if len(d.Attempts) > 1 {
				retried++
			}
		}
	}
	// The receiver's rollout as the sender saw it: from its first failed
	// attempt to its last.
	var firstFail, lastFail time.Time
	for _, f := range s.failures() {
		if f.status != 0 && f.status != 502 && f.status != 503 && f.status != 504 {
			t.Errorf("the sender saw %s (the receiver's answers must not change across an upgrade)", f)
		}
		if firstFail.IsZero() {
			firstFail = f.at
		}
		lastFail = f.at
	}
	kept := len(before) - missingAfter(t, ctx, p, before)
	t.Logf("upgrade %s -> HEAD: applied and everything Current again in %.1fs; Intuned writes during the upgrade: %d (reads: %s); "+
		"stream through the Ingress: %d deliveries acknowledged, lost: %d, stored twice: %d; stored before the upgrade: %d, kept: %d; "+
		"Intuned's deliveries: %s, %d of them retried; sender saw: %s over %.1fs",
		previousRelease[:12], upgraded.Seconds(), sum(writes), summarize(reads), len(s.acked()), lost, dup, len(before), kept,
		rep, retried, s.failureSummary(), lastFail.Sub(firstFail).Seconds())

	// The uninstall, in the documented order, with nothing left stuck.
	uninstallOperator(t, ctx, "after the upgrade")
	waitSimJob(t, ctx, p.Project, p.Job, false)
	// The SQLite receiver's claim stays, with the data, where the
	// documented command finds it.
	if out, err := env.kc.Kubectl(ctx, "get", "pvc", "--all-namespaces", "-l", "app.kubernetes.io/managed-by=intuned-operator", "-o", "name"); err != nil ||
		!strings.Contains(out, volumeClaim(&oldPods[0])) {
		t.Errorf("the receiver's claim %s is not what the uninstall's PVC command lists: %v %q", volumeClaim(&oldPods[0]), err, out)
	}
	if ok, err := simJobExists(ctx, p.Project, paused.Name); err != nil || !ok {
		t.Errorf("the Orphan job %s is gone from Intuned after the uninstall (%v)", paused.Name, err)
	}
	if out, err := env.kc.Kubectl(ctx, "delete", "namespace", p.NS, "--timeout=2m"); err != nil {
		t.Errorf("deleting the namespace after the uninstall: %v\n%s", err, out)
	}
	assertNothingStuck(t, ctx)
}

// exportCommit writes the tree of commit into a temporary directory (git
// archive), as a release's source.
func exportCommit(t *testing.T, ctx context.Context, root, commit string) string {
	t.Helper()
	if out, err := exec.CommandContext(ctx, "git", "-C", root, "cat-file", "-e", commit+"^{commit}").CombinedOutput(); err != nil {
		t.Fatalf("the previous release, commit %s, is not in this clone's history (a shallow clone? git fetch --unshallow): %v %s", commit, err, out)
	}
	dir := t.TempDir()
	archive := filepath.Join(t.TempDir(), "src.tar")
	for _, args := range [][]string{
		{"git", "-C", root, "archive", "-o", archive, commit},
		{"tar", "-xf", archive, "-C", dir},
	} {
		if out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("exporting %s: %s: %v\n%s", commit, strings.Join(args, " "), err, out)
		}
	}
	return dir
}

// uninstallOperator runs docs/operations.md's uninstall, step by step, and
// checks each step's outcome: the IntunedJobs (their Jobs deleted on
// Intuned, unless orphaned) and WebhookReceivers go, which releases every
// finalizer; then the admission policy and the install.
func uninstallOperator(t *testing.T, ctx context.Context, when string) {
	t.Helper()
	for _, args := range [][]string{
		{"delete", "intunedjobs", "--all", "--all-namespaces", "--wait=false"},
		{"wait", "--for=delete", "intunedjobs", "--all", "--all-namespaces", "--timeout=10m"},
		{"delete", "webhookreceivers", "--all", "--all-namespaces"},
	} {
		if out, err := env.kc.Kubectl(ctx, args...); err != nil {
			// What keeps an IntunedJob: its Ready condition says (DeletionBlocked).
			left, _ := env.kc.Kubectl(ctx, "get", "intunedjobs", "--all-namespaces", "-o",
				`custom-columns=NS:.metadata.namespace,NAME:.metadata.name,READY:.status.conditions[?(@.type=="Ready")].message`)
			t.Fatalf("uninstall %s: %v\n%s\nIntunedJobs left:\n%s", when, err, out, left)
		}
	}
	// No finalizer of ours is left on anything (the credentials Secrets,
	// a namespaced install's RoleBindings): the manager released them.
	err := poll.Eventually(ctx, 500*time.Millisecond, "every intuned.io finalizer released", func(ctx context.Context) (bool, error) {
		left, err := objectsWithOurFinalizers(ctx)
		return err == nil && len(left) == 0, fmt.Errorf("%v (%v)", left, err)
	})
	if err != nil {
		t.Fatalf("uninstall %s: %v", when, err)
	}
	for _, f := range []string{"admission-policy.yaml", "install.yaml"} {
		if out, err := env.kc.Kubectl(ctx, "delete", "--ignore-not-found", "-f", filepath.Join(env.dir, f)); err != nil {
			t.Fatalf("uninstall %s: %v\n%s", when, err, out)
		}
	}
	assertNothingStuck(t, ctx)
}

// objectsWithOurFinalizers lists the Secrets and RoleBindings (the kinds
// the manager puts finalizers on besides its own) that still carry one.
func objectsWithOurFinalizers(ctx context.Context) ([]string, error) {
	var left []string
	for _, gvk := range []schema.GroupVersionKind{
		corev1.SchemeGroupVersion.WithKind("SecretList"),
		rbacv1.SchemeGroupVersion.WithKind("RoleBindingList"),
	} {
		var list metav1.PartialObjectMetadataList
		list.SetGroupVersionKind(gvk)
		if err := env.kubeClient.List(ctx, &list); err != nil {
			return nil, err
		}
		for _, o := range list.Items {
			for _, f := range o.Finalizers {
				if strings.HasPrefix(f, intunedv1alpha1.GroupVersion.Group+"/") {
					left = append(left, fmt.Sprintf("%s %s/%s (%s)", strings.TrimSuffix(gvk.Kind, "List"), o.Namespace, o.Name, f))
				}
			}
		}
	}
	return left, nil
}

// assertNothingStuck: no CRD of ours, no namespace Terminating, no
// finalizer of ours anywhere.
func assertNothingStuck(t *testing.T, ctx context.Context) {
	t.Helper()
	err := poll.Eventually(ctx, 500*time.Millisecond, "nothing of the operator left", func(ctx context.Context) (bool, error) {
		var problems []string
		out, err := env.kc.Kubectl(ctx, "get", "crd", "-o", "name")
		if err != nil {
			return false, err
		}
		for _, crd := range strings.Fields(out) {
			if strings.HasSuffix(crd, "."+intunedv1alpha1.GroupVersion.Group) {
				problems = append(problems, crd)
			}
		}
		var nss corev1.NamespaceList
		if err := env.kubeClient.List(ctx, &nss); err != nil {
			return false, err
		}
		for _, ns := range nss.Items {
			if ns.Status.Phase == corev1.NamespaceTerminating || ns.Name == operatorNamespace {
				problems = append(problems, fmt.Sprintf("namespace %s %s", ns.Name, ns.Status.Phase))
			}
		}
		left, err := objectsWithOurFinalizers(ctx)
		if err != nil {
			return false, err
		}
		problems = append(problems, left...)
		return len(problems) == 0, fmt.Errorf("left: %s", strings.Join(problems, "; "))
	})
	if err != nil {
		t.Fatal(err)
	}
}

// reinstallHEAD puts HEAD's install back for the tests after this one,
// whatever state the test stopped in (an upgrade over the previous
// release, or an install after the uninstall).
func reinstallHEAD(t *testing.T, root string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := env.kc.InstallOperator(ctx, root, env.dir, true); err != nil {
		t.Errorf("reinstalling HEAD for the tests after this one: %v", err)
	}
}

// waitOperatorImage waits until every Pod of the manager runs img, ready,
// and no Pod of another image is left.
func waitOperatorImage(t *testing.T, ctx context.Context, img string) {
	t.Helper()
	err := poll.Eventually(ctx, 500*time.Millisecond, "every manager Pod on "+img, func(ctx context.Context) (bool, error) {
		var pods corev1.PodList
		if err := env.kubeClient.List(ctx, &pods, client.InNamespace(operatorNamespace), client.MatchingLabels{"control-plane": "controller-manager"}); err != nil {
			return false, err
		}
		var got []string
		ok := len(pods.Items) > 0
		for i := range pods.Items {
			pod := &pods.Items[i]
			got = append(got, fmt.Sprintf("%s %s ready=%v", pod.Name, pod.Spec.Containers[0].Image, podReady(pod)))
			ok = ok && pod.Spec.Containers[0].Image == img && podReady(pod)
		}
		return ok, fmt.Errorf("manager Pods: %v", got)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// waitReceiverImage waits until the receiver's one Pod runs img, ready;
// with claim set, it must mount that claim (the data stays on it).
func waitReceiverImage(t *testing.T, ctx context.Context, p *scenarios.Pair, img, claim string) {
	t.Helper()
	err := poll.Eventually(ctx, 250*time.Millisecond, "the receiver Pod on "+img, func(ctx context.Context) (bool, error) {
		pods, err := env.receiverPods(ctx, p.NS, p.Receiver)
		if err != nil {
			return false, err
		}
		if len(pods) != 1 {
			return false, fmt.Errorf("%d receiver Pods", len(pods))
		}
		pod := &pods[0]
		if claim != "" && volumeClaim(pod) != claim {
			return false, fmt.Errorf("the receiver Pod mounts claim %q, want %q", volumeClaim(pod), claim)
		}
		return pod.Spec.Containers[0].Image == img && podReady(pod), fmt.Errorf("receiver Pod %s ready=%v", pod.Spec.Containers[0].Image, podReady(pod))
	})
	if err != nil {
		t.Fatal(err)
	}
}

// waitCurrent waits until every IntunedJob and WebhookReceiver in ns is
// what kstatus (and so kubectl wait, Flux, Argo CD) calls Current: Ready,
// with status.observedGeneration the object's generation.
func waitCurrent(t *testing.T, ctx context.Context, ns, when string) {
	t.Helper()
	err := poll.Eventually(ctx, 250*time.Millisecond, "every object Current "+when, func(ctx context.Context) (bool, error) {
		var ijs intunedv1alpha1.IntunedJobList
		var whrs intunedv1alpha1.WebhookReceiverList
		if err := env.kubeClient.List(ctx, &ijs, client.InNamespace(ns)); err != nil {
			return false, err
		}
		if err := env.kubeClient.List(ctx, &whrs, client.InNamespace(ns)); err != nil {
			return false, err
		}
		objs := []client.Object{}
		for i := range ijs.Items {
			objs = append(objs, &ijs.Items[i])
		}
		for i := range whrs.Items {
			objs = append(objs, &whrs.Items[i])
		}
		var notCurrent []string
		for _, o := range objs {
			u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
			if err != nil {
				return false, err
			}
			res, err := status.Compute(&unstructured.Unstructured{Object: u})
			if err != nil {
				return false, err
			}
			if res.Status != status.CurrentStatus {
				notCurrent = append(notCurrent, fmt.Sprintf("%T %s: %s (%s)", o, o.GetName(), res.Status, res.Message))
			}
		}
		return len(objs) == 3 && len(notCurrent) == 0, fmt.Errorf("%d objects; not Current: %v", len(objs), notCurrent)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func waitSimJob(t *testing.T, ctx context.Context, project, id string, want bool) {
	t.Helper()
	waitJobOnIntuned(t, ctx, &scenarios.Pair{Project: project, Job: id}, want)
}

func waitAcked(t *testing.T, ctx context.Context, s *sender, n int) {
	t.Helper()
	err := poll.Eventually(ctx, 100*time.Millisecond, fmt.Sprintf("%d deliveries acknowledged", n), func(ctx context.Context) (bool, error) {
		return int(s.count.Load()) >= n, fmt.Errorf("%d acknowledged; sender saw %s", s.count.Load(), s.failureSummary())
	})
	if err != nil {
		t.Fatal(err)
	}
}

// triggerAndWaitCall triggers the job and waits until the simulator has
// seen the operator's write call (the trigger): status shows the handled
// trigger before the call is made.
func triggerAndWaitCall(t *testing.T, ctx context.Context, p *scenarios.Pair, value string) {
	t.Helper()
	c0, err := env.simulator.Calls(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p.Trigger(ctx, value)
	err = poll.Eventually(ctx, 200*time.Millisecond, "the trigger "+value+" sent to Intuned", func(ctx context.Context) (bool, error) {
		c1, err := env.simulator.Calls(ctx)
		if err != nil {
			return false, err
		}
		writes, _ := callsBetween(c0, c1)
		return sum(writes) > 0, fmt.Errorf("no write call yet")
	})
	if err != nil {
		t.Fatal(err)
	}
}

// checkStored reads the stream's deliveries back from the receiver: every
// acknowledged one stored (lost counts those that are not), none stored
// twice, nothing stored that was not acknowledged.
func checkStored(t *testing.T, ctx context.Context, p *scenarios.Pair, s *sender, before []flow.StoredDelivery) (lost, dup int) {
	t.Helper()
	stored, err := p.RC.List(ctx, s.p.Job, s.jobRun)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, d := range stored {
		seen[d.RunID]++
	}
	acked := s.acked()
	for id := range acked {
		if seen[id] == 0 {
			lost++
			if lost <= 5 {
				t.Errorf("run %s acknowledged but not stored", id)
			}
		}
	}
	for id, n := range seen {
		if n > 1 {
			dup++
			t.Errorf("run %s stored %d times", id, n)
		}
		if !acked[id] {
			t.Errorf("run %s stored but never acknowledged", id)
		}
	}
	if lost > 0 {
		t.Errorf("%d deliveries acknowledged, %d lost", len(acked), lost)
	}
	return lost, dup
}

// missingAfter counts what was stored before the upgrade and is not any
// more, or not as it was.
func missingAfter(t *testing.T, ctx context.Context, p *scenarios.Pair, before []flow.StoredDelivery) int {
	t.Helper()
	after, err := p.RC.List(ctx, "", "")
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]flow.StoredDelivery{}
	for _, d := range after {
		byID[d.RunID] = d
	}
	missing := 0
	for _, b := range before {
		a, ok := byID[b.RunID]
		if !ok || !a.ReceivedAt.Equal(b.ReceivedAt) || a.JobRunID != b.JobRunID || !bytes.Equal(a.Body, b.Body) {
			missing++
			if missing <= 5 {
				t.Errorf("run %s, stored before the upgrade, is missing or changed after it", b.RunID)
			}
		}
	}
	return missing
}

// callsBetween splits the simulator's API calls made between two readings
// of its counters into writes and reads, by route.
func callsBetween(c0, c1 map[string]int) (writes, reads map[string]int) {
	writes, reads = map[string]int{}, map[string]int{}
	for k, n := range c1 {
		if d := n - c0[k]; d > 0 {
			if strings.HasPrefix(k, "GET ") {
				reads[k] = d
			} else {
				writes[k] = d
			}
		}
	}
	return writes, reads
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func summarize(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s: %d", k, m[k]))
	}
	return fmt.Sprintf("%d (%s)", sum(m), strings.Join(parts, ", "))
}
