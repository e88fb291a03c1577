package webhookreceiver

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/intuned-operator/intuned-operator/internal/controller/controllertest"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/controller/sharding"
	"github.com/intuned-operator/intuned-operator/internal/resources"
)

const whrTestImage = "example.com/intuned-operator:test"

// whrFixture runs the WebhookReceiver controller in its own namespace.
type whrFixture struct {
	t   *testing.T
	ns  string
	ctx context.Context
}

// newWHRFixture starts the controller; tokens are staged for 200ms (real
// time) and the previous token is dropped as soon as the jobs caught up, so
// rotations run through every step quickly.
func newWHRFixture(t *testing.T, configure ...func(*Reconciler)) *whrFixture {
	t.Helper()
	return newWHRFixtureShards(t, []sharding.Shard{sharding.Default}, configure...)
}

// newWHRFixtureShards starts one manager per shard (shard_test.go).
func newWHRFixtureShards(t *testing.T, shards []sharding.Shard, configure ...func(*Reconciler)) *whrFixture {
	t.Helper()
	f := &whrFixture{t: t, ns: controllertest.NewNamespace(t), ctx: context.Background()}
	for _, shard := range shards {
		controllertest.StartShardManager(t, shard, func(mgr ctrl.Manager) error {
			return f.setup(mgr, configure)
		})
	}
	return f
}

// setup registers the test's WebhookReceiver reconciler with mgr.
func (f *whrFixture) setup(mgr ctrl.Manager, configure []func(*Reconciler)) error {
	r := &Reconciler{
		Client: mgr.GetClient(), Scheme: mgr.GetScheme(), ReceiverImage: whrTestImage,
		Recorder:              mgr.GetEventRecorder("webhookreceiver-controller"),
		TokenPropagationDelay: 200 * time.Millisecond,
		PreviousTokenGrace:    -1, // TestWebhookReceiverPreviousTokenGrace covers the grace window
		// No receiver runs under envtest (and the network is loopback only): never look its
		// Service up. TestWebhookReceiverVolumeNearlyFull serves metrics of its own.
		ReceiverMetrics: func(context.Context, *intunedv1alpha1.WebhookReceiver) ([]byte, error) {
			return nil, errors.New("no receiver Pods run under envtest")
		},
	}
	for _, c := range configure {
		c(r)
	}
	return r.SetupWithManager(mgr)
}

func (f *whrFixture) key(name string) client.ObjectKey {
	return client.ObjectKey{Namespace: f.ns, Name: name}
}

func (f *whrFixture) create(obj client.Object) {
	f.t.Helper()
	obj.SetNamespace(f.ns)
	if err := controllertest.Client().Create(f.ctx, obj); err != nil {
		f.t.Fatalf("create %T %s: %v", obj, obj.GetName(), err)
	}
}

func (f *whrFixture) receiver(name string, spec intunedv1alpha1.WebhookReceiverSpec) *intunedv1alpha1.WebhookReceiver {
	f.t.Helper()
	w := &intunedv1alpha1.WebhookReceiver{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: spec}
	f.create(w)
	return w
}

// postgresStorage creates a Secret "dsn" holding a DSN and returns postgres
// storage that points at it.
func (f *whrFixture) postgresStorage() *intunedv1alpha1.ReceiverStorage {
	f.t.Helper()
	f.create(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "dsn"}, StringData: map[string]string{"dsn": "postgres://x"}})
	return &intunedv1alpha1.ReceiverStorage{Postgres: &intunedv1alpha1.PostgresStorage{
		DSNSecretRef: intunedv1alpha1.SecretKeyRef{Name: "dsn", Key: "dsn"}}}
}

// update re-reads obj, applies mutate and writes it back (retrying on
// conflicts with the controller).
func (f *whrFixture) update(obj client.Object, mutate func()) {
	f.t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := controllertest.Client().Get(f.ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
			return err
		}
		mutate()
		return controllertest.Client().Update(f.ctx, obj)
	})
	if err != nil {
		f.t.Fatalf("update %T %s: %v", obj, obj.GetName(), err)
	}
}

// updateStatus does what a kubelet or ingress controller would: write status.
func (f *whrFixture) updateStatus(obj client.Object, mutate func()) {
	f.t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := controllertest.Client().Get(f.ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
			return err
		}
		mutate()
		return controllertest.Client().Status().Update(f.ctx, obj)
	})
	if err != nil {
		f.t.Fatalf("update status of %T %s: %v", obj, obj.GetName(), err)
	}
}

// eventually polls cond until it returns "" (done) or 30s pass.
func (f *whrFixture) eventually(cond func() string) {
	f.t.Helper()
	controllertest.Eventually(f.t, 30*time.Second, cond)
}

func (f *whrFixture) get(name string, obj client.Object) error {
	return controllertest.Client().Get(f.ctx, f.key(name), obj)
}

func (f *whrFixture) getWHR(name string) *intunedv1alpha1.WebhookReceiver {
	f.t.Helper()
	var w intunedv1alpha1.WebhookReceiver
	if err := f.get(name, &w); err != nil {
		f.t.Fatalf("get WebhookReceiver %s: %v", name, err)
	}
	return &w
}

// waitReady waits for the Ready condition with this status and reason on
// the current generation.
func (f *whrFixture) waitReady(name string, status metav1.ConditionStatus, reason string) *intunedv1alpha1.WebhookReceiver {
	f.t.Helper()
	var w *intunedv1alpha1.WebhookReceiver
	f.eventually(func() string {
		w = f.getWHR(name)
		c := meta.FindStatusCondition(w.Status.Conditions, intunedv1alpha1.ConditionReady)
		if c == nil || c.Status != status || c.Reason != reason || w.Status.ObservedGeneration != w.Generation {
			return fmt.Sprintf("Ready = %+v (generation %d, observed %d), want %s/%s", c, w.Generation, w.Status.ObservedGeneration, status, reason)
		}
		return ""
	})
	return w
}

// waitGone waits until the object no longer exists.
func (f *whrFixture) waitGone(name string, obj client.Object) {
	f.t.Helper()
	f.eventually(func() string {
		if err := f.get(name, obj); !apierrors.IsNotFound(err) {
			return fmt.Sprintf("%T %s still exists (err %v)", obj, name, err)
		}
		return ""
	})
}

// waitExists waits until the object exists and returns it read into obj.
func (f *whrFixture) waitExists(name string, obj client.Object) {
	f.t.Helper()
	f.eventually(func() string {
		if err := f.get(name, obj); err != nil {
			return fmt.Sprintf("%T %s: %v", obj, name, err)
		}
		return ""
	})
}

// tokenSecret returns the controller-owned token Secret's data.
func (f *whrFixture) tokenSecret(whrName string) map[string][]byte {
	f.t.Helper()
	var s corev1.Secret
	f.waitExists(whrName+"-token", &s)
	return s.Data
}

func (f *whrFixture) setDeploymentAvailable(name string, available bool) {
	var d appsv1.Deployment
	f.waitExists(name, &d)
	f.updateStatus(&d, func() {
		st := corev1.ConditionFalse
		ready := int32(0)
		if available {
			st, ready = corev1.ConditionTrue, 1
		}
		d.Status.ObservedGeneration = d.Generation
		d.Status.Replicas, d.Status.ReadyReplicas, d.Status.AvailableReplicas = 1, ready, ready
		d.Status.Conditions = []appsv1.DeploymentCondition{{
			Type: appsv1.DeploymentAvailable, Status: st, Reason: "Test",
			Message: "set by the test", LastUpdateTime: metav1.Now(), LastTransitionTime: metav1.Now(),
		}}
	})
}

func (f *whrFixture) setStatefulSetReady(name string, ready int32) {
	var s appsv1.StatefulSet
	f.waitExists(name, &s)
	f.updateStatus(&s, func() {
		s.Status.ObservedGeneration = s.Generation
		s.Status.Replicas, s.Status.ReadyReplicas, s.Status.AvailableReplicas = 1, ready, ready
	})
}

// job creates an IntunedJob referencing the receiver (no IntunedJob
// controller runs here: tests set its status by hand).
func (f *whrFixture) job(name, receiver string) *intunedv1alpha1.IntunedJob {
	j := &intunedv1alpha1.IntunedJob{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: intunedv1alpha1.IntunedJobSpec{
			Project: "ecommerce-scraper",
			Payload: []intunedv1alpha1.JobPayload{{
				APIName: "list", Parameters: &apiextensionsv1.JSON{Raw: []byte(`{}`)},
			}},
			Sink: &intunedv1alpha1.JobSink{Webhook: &intunedv1alpha1.WebhookSink{
				ReceiverRef: &intunedv1alpha1.LocalObjectReference{Name: receiver},
			}},
		},
	}
	f.create(j)
	return j
}

// jobCarries records that the job's Intuned sink carries this token.
func (f *whrFixture) jobCarries(j *intunedv1alpha1.IntunedJob, token string) {
	f.updateStatus(j, func() {
		j.Status.Sink = &intunedv1alpha1.SinkStatus{TokenFingerprint: resources.Fingerprint(token)}
	})
}

func assertOwned(t *testing.T, obj client.Object, whr *intunedv1alpha1.WebhookReceiver) {
	t.Helper()
	if !metav1.IsControlledBy(obj, whr) {
		t.Errorf("%T %s is not controlled by the WebhookReceiver: ownerReferences %+v", obj, obj.GetName(), obj.GetOwnerReferences())
	}
	if obj.GetLabels()[resources.LabelManagedBy] != resources.ManagedBy {
		t.Errorf("%T %s labels %v", obj, obj.GetName(), obj.GetLabels())
	}
}

// TestWebhookReceiverCreatesChildren: a sqlite receiver with a TLS Ingress
// gets its ServiceAccount, token Secret, Service, StatefulSet and Ingress,
// all controlled by it (the garbage collector deletes them with it; envtest
// has none, so owner references are what we check), and nothing else.
func TestWebhookReceiverCreatesChildren(t *testing.T) {
	f := newWHRFixture(t)
	f.receiver("hooks", intunedv1alpha1.WebhookReceiverSpec{
		Ingress: &intunedv1alpha1.ReceiverIngress{
			Host: "hooks.example.com", ClassName: ptr.To("nginx"),
			TLS: &intunedv1alpha1.ReceiverIngressTLS{SecretName: "hooks-tls"},
		},
	})
	w := f.waitReady("hooks", metav1.ConditionFalse, intunedv1alpha1.ReasonWorkloadNotReady)

	children := []struct {
		name string
		obj  client.Object
	}{
		{"hooks", &corev1.ServiceAccount{}},
		{"hooks-token", &corev1.Secret{}},
		{"hooks", &corev1.Service{}},
		{"hooks", &appsv1.StatefulSet{}},
		{"hooks", &networkingv1.Ingress{}},
	}
	for _, c := range children {
		f.waitExists(c.name, c.obj)
		assertOwned(t, c.obj, w)
	}
	for _, obj := range []client.Object{&appsv1.Deployment{}, &autoscalingv2.HorizontalPodAutoscaler{},
		&policyv1.PodDisruptionBudget{}, &networkingv1.NetworkPolicy{}} {
		if err := f.get("hooks", obj); !apierrors.IsNotFound(err) {
			t.Errorf("%T exists for a minimal sqlite receiver (err %v)", obj, err)
		}
	}

	var sts appsv1.StatefulSet
	f.waitExists("hooks", &sts)
	c := sts.Spec.Template.Spec.Containers[0]
	if c.Image != whrTestImage || c.Command[0] != "/receiver" {
		t.Errorf("container image %q command %v", c.Image, c.Command)
	}
	if got := sts.Spec.VolumeClaimTemplates[0].Spec.Resources.Requests.Storage().String(); got != "1Gi" {
		t.Errorf("PVC size %s, want the 1Gi default", got)
	}

	data := f.tokenSecret("hooks")
	tok := string(data[intunedv1alpha1.TokenSecretKeyToken])
	if len(tok) != 43 || len(data[intunedv1alpha1.TokenSecretKeyReadToken]) != 43 {
		t.Errorf("generated tokens have lengths %d and %d, want 43", len(tok), len(data[intunedv1alpha1.TokenSecretKeyReadToken]))
	}
	if _, ok := data[intunedv1alpha1.TokenSecretKeyPreviousToken]; ok {
		t.Error("previous-token present without a rotation")
	}
	if w.Status.TokenSecretName != "hooks-token" || w.Status.TokenFingerprint != resources.Fingerprint(tok) {
		t.Errorf("status token fields %q %q", w.Status.TokenSecretName, w.Status.TokenFingerprint)
	}
	if w.Status.URL != "https://hooks.example.com/webhooks/intuned" {
		t.Errorf("status.url = %q", w.Status.URL)
	}

	// The kubelet would report the Pod ready.
	f.setStatefulSetReady("hooks", 1)
	w = f.waitReady("hooks", metav1.ConditionTrue, intunedv1alpha1.ReasonAvailable)
	if w.Status.ReadyReplicas != 1 {
		t.Errorf("readyReplicas = %d", w.Status.ReadyReplicas)
	}
}

// TestWebhookReceiverReadyTransitions walks Ready through each reason it
// can be False for, in the order a user meets them.
func TestWebhookReceiverReadyTransitions(t *testing.T) {
	f := newWHRFixture(t)
	whr := f.receiver("pg", intunedv1alpha1.WebhookReceiverSpec{
		Storage: &intunedv1alpha1.ReceiverStorage{Postgres: &intunedv1alpha1.PostgresStorage{
			DSNSecretRef: intunedv1alpha1.SecretKeyRef{Name: "pg-dsn", Key: "dsn"},
		}},
	})
	steps := []struct {
		name   string
		do     func()
		status metav1.ConditionStatus
		reason string
	}{
		{"DSN Secret missing", func() {}, metav1.ConditionFalse, intunedv1alpha1.ReasonSecretNotFound},
		{"DSN Secret created, Pods not available", func() {
			f.create(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "pg-dsn"},
				StringData: map[string]string{"dsn": "postgres://u:p@db:5432/x"}})
		}, metav1.ConditionFalse, intunedv1alpha1.ReasonWorkloadNotReady},
		{"Deployment available, no URL", func() { f.setDeploymentAvailable("pg", true) },
			metav1.ConditionFalse, intunedv1alpha1.ReasonURLUnknown},
		{"externalURL set", func() {
			f.update(whr, func() { whr.Spec.ExternalURL = "https://tunnel.example.com/in" })
		}, metav1.ConditionTrue, intunedv1alpha1.ReasonAvailable},
		{"Deployment unavailable again", func() { f.setDeploymentAvailable("pg", false) },
			metav1.ConditionFalse, intunedv1alpha1.ReasonWorkloadNotReady},
		{"Deployment recovers", func() { f.setDeploymentAvailable("pg", true) },
			metav1.ConditionTrue, intunedv1alpha1.ReasonAvailable},
	}
	for _, s := range steps {
		s.do()
		w := f.waitReady("pg", s.status, s.reason)
		t.Logf("%s: Ready=%s %s: %s", s.name, s.status, s.reason, meta.FindStatusCondition(w.Status.Conditions, "Ready").Message)
	}
	w := f.getWHR("pg")
	if w.Status.URL != "https://tunnel.example.com/in" {
		t.Errorf("status.url = %q", w.Status.URL)
	}
	var d appsv1.Deployment
	f.waitExists("pg", &d)
	if args := strings.Join(d.Spec.Template.Spec.Containers[0].Args, " "); !strings.Contains(args, "--ingest-path=/in") {
		t.Errorf("ingest path does not follow externalURL: %s", args)
	}
	cond := meta.FindStatusCondition(w.Status.Conditions, "Ready")
	if strings.Contains(cond.Message, "postgres://") {
		t.Errorf("condition leaks the DSN: %s", cond.Message)
	}
}

// TestWebhookReceiverSpecChangesRollOut: changed resources, image and
// Ingress host reach the children and status.url.
func TestWebhookReceiverSpecChangesRollOut(t *testing.T) {
	f := newWHRFixture(t)
	whr := f.receiver("roll", intunedv1alpha1.WebhookReceiverSpec{
		Ingress: &intunedv1alpha1.ReceiverIngress{Host: "a.example.com"},
	})
	f.waitReady("roll", metav1.ConditionFalse, intunedv1alpha1.ReasonWorkloadNotReady)
	f.update(whr, func() {
		whr.Spec.Resources = &corev1.ResourceRequirements{Requests: corev1.ResourceList{
			corev1.ResourceCPU: resource.MustParse("300m")}}
		whr.Spec.Image = "example.com/other:2"
		whr.Spec.Ingress.Host = "b.example.com"
		whr.Spec.Ingress.Path = "/hooks"
	})
	f.setStatefulSetReady("roll", 1)
	f.eventually(func() string {
		var sts appsv1.StatefulSet
		var ing networkingv1.Ingress
		if err := f.get("roll", &sts); err != nil {
			return err.Error()
		}
		if err := f.get("roll", &ing); err != nil {
			return err.Error()
		}
		c := sts.Spec.Template.Spec.Containers[0]
		switch {
		case c.Resources.Requests.Cpu().String() != "300m":
			return "cpu request " + c.Resources.Requests.Cpu().String()
		case c.Image != "example.com/other:2":
			return "image " + c.Image
		case ing.Spec.Rules[0].Host != "b.example.com" || ing.Spec.Rules[0].HTTP.Paths[0].Path != "/hooks":
			return "ingress rule " + ing.Spec.Rules[0].Host + ing.Spec.Rules[0].HTTP.Paths[0].Path
		case f.getWHR("roll").Status.URL != "http://b.example.com/hooks":
			return "status.url " + f.getWHR("roll").Status.URL
		}
		return ""
	})

	// The SQLite volume template is immutable: a new size or class is not
	// applied to it (the apply would fail). A size reaches the claim itself
	// (TestWebhookReceiverVolumeGrows); a class cannot, and Ready says so.
	f.update(whr, func() {
		whr.Spec.Storage = &intunedv1alpha1.ReceiverStorage{SQLite: &intunedv1alpha1.SQLiteStorage{
			Size: ptr.To(resource.MustParse("5Gi")), StorageClassName: ptr.To("other")}}
	})
	w := f.waitReady("roll", metav1.ConditionTrue, intunedv1alpha1.ReasonAvailable)
	if msg := meta.FindStatusCondition(w.Status.Conditions, "Ready").Message; !strings.Contains(msg, "storageClassName does not reach the existing volume") {
		t.Errorf("Ready message does not explain the ignored class change: %s", msg)
	}
	var sts appsv1.StatefulSet
	if err := f.get("roll", &sts); err != nil || sts.Spec.VolumeClaimTemplates[0].Spec.Resources.Requests.Storage().String() != "1Gi" ||
		sts.Spec.VolumeClaimTemplates[0].Spec.StorageClassName != nil {
		t.Errorf("volume template changed (err %v)", err)
	}
}

// TestWebhookReceiverSharesFieldsWithOtherManagers: an HPA's replica count
// and annotations other tools add survive our applies, while fields we own
// are put back.
func TestWebhookReceiverSharesFieldsWithOtherManagers(t *testing.T) {
	f := newWHRFixture(t)
	whr := f.receiver("scaled", intunedv1alpha1.WebhookReceiverSpec{
		Storage:  f.postgresStorage(),
		Replicas: ptr.To[int32](3),
	})
	var d appsv1.Deployment
	f.eventually(func() string {
		if err := f.get("scaled", &d); err != nil || d.Spec.Replicas == nil || *d.Spec.Replicas != 3 {
			return fmt.Sprintf("Deployment replicas not 3 (err %v)", err)
		}
		return ""
	})

	// Enabling autoscaling hands spec.replicas over without resetting it.
	f.update(whr, func() {
		whr.Spec.Autoscaling = &intunedv1alpha1.ReceiverAutoscaling{MinReplicas: ptr.To[int32](2), MaxReplicas: 6}
	})
	var hpa autoscalingv2.HorizontalPodAutoscaler
	f.waitExists("scaled", &hpa)
	f.eventually(func() string {
		if err := f.get("scaled", &d); err != nil {
			return err.Error()
		}
		if managesField(&d, FieldOwner, "f:spec", "f:replicas") {
			return "the operator still owns spec.replicas"
		}
		return ""
	})
	if *d.Spec.Replicas != 3 {
		t.Errorf("replicas = %d after enabling autoscaling, want 3 kept until the HPA decides", *d.Spec.Replicas)
	}
	var pdb policyv1.PodDisruptionBudget
	f.waitExists("scaled", &pdb) // minReplicas 2: a default PDB
	if pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() != 1 {
		t.Errorf("default PDB %+v", pdb.Spec)
	}

	// The HPA (another field manager, through the scale subresource as the
	// real one does) scales to 5; another tool annotates the Deployment.
	err := controllertest.Client().SubResource("scale").Update(f.ctx, &d,
		client.WithSubResourceBody(&autoscalingv1.Scale{
			ObjectMeta: metav1.ObjectMeta{Name: d.Name, Namespace: d.Namespace},
			Spec:       autoscalingv1.ScaleSpec{Replicas: 5},
		}),
		client.FieldOwner("horizontal-pod-autoscaler"))
	if err != nil {
		t.Fatalf("scale: %v", err)
	}
	f.update(&d, func() {
		if d.Annotations == nil {
			d.Annotations = map[string]string{}
		}
		d.Annotations["example.com/tool"] = "keep-me"
		// A field we own, changed behind our back: must come back.
		d.Spec.Template.Spec.Containers[0].Image = "example.com/hijacked:1"
	})

	// A spec change makes the controller apply again.
	f.update(whr, func() {
		whr.Spec.Resources = &corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m")}}
	})
	f.eventually(func() string {
		if err := f.get("scaled", &d); err != nil {
			return err.Error()
		}
		if cpu := d.Spec.Template.Spec.Containers[0].Resources.Requests.Cpu().String(); cpu != "250m" {
			return "spec change not applied yet: cpu " + cpu
		}
		return ""
	})
	if *d.Spec.Replicas != 5 {
		t.Errorf("replicas = %d: the controller fought the HPA", *d.Spec.Replicas)
	}
	if d.Annotations["example.com/tool"] != "keep-me" {
		t.Errorf("another tool's annotation was removed: %v", d.Annotations)
	}
	if img := d.Spec.Template.Spec.Containers[0].Image; img != whrTestImage {
		t.Errorf("image %q: a field we own was not restored", img)
	}
}

// TestWebhookReceiverRemovesUnneededChildren: disabling Ingress, HPA, PDB
// and NetworkPolicy deletes them; switching postgres -> sqlite replaces the
// Deployment with a StatefulSet.
func TestWebhookReceiverRemovesUnneededChildren(t *testing.T) {
	f := newWHRFixture(t)
	whr := f.receiver("full", intunedv1alpha1.WebhookReceiverSpec{
		Storage:       f.postgresStorage(),
		Autoscaling:   &intunedv1alpha1.ReceiverAutoscaling{MaxReplicas: 3},
		Ingress:       &intunedv1alpha1.ReceiverIngress{Host: "full.example.com"},
		NetworkPolicy: &intunedv1alpha1.ReceiverNetworkPolicy{Enabled: true},
		PodDisruptionBudget: &intunedv1alpha1.ReceiverPodDisruptionBudget{
			MaxUnavailable: ptr.To(intstr.FromInt32(1))},
	})
	optional := []client.Object{&networkingv1.Ingress{}, &autoscalingv2.HorizontalPodAutoscaler{},
		&policyv1.PodDisruptionBudget{}, &networkingv1.NetworkPolicy{}, &appsv1.Deployment{}}
	for _, obj := range optional {
		f.waitExists("full", obj)
	}
	f.update(whr, func() {
		whr.Spec.Ingress = nil
		whr.Spec.Autoscaling = nil
		whr.Spec.PodDisruptionBudget = nil
		whr.Spec.NetworkPolicy = nil
		whr.Spec.ExternalURL = "https://full.example.com/webhooks/intuned"
	})
	for _, obj := range optional[:4] {
		f.waitGone("full", obj)
	}
	f.update(whr, func() {
		whr.Spec.Storage = &intunedv1alpha1.ReceiverStorage{SQLite: &intunedv1alpha1.SQLiteStorage{}}
	})
	f.waitGone("full", &appsv1.Deployment{})
	var sts appsv1.StatefulSet
	f.waitExists("full", &sts)
	for _, obj := range []client.Object{&corev1.Service{}, &corev1.ServiceAccount{}} {
		if err := f.get("full", obj); err != nil {
			t.Errorf("%T: %v", obj, err)
		}
	}
}

// TestWebhookReceiverTokenFromSecretRef: the user's token is copied
// (trimmed) into the owned Secret; changing it keeps the previous token
// until every referencing IntunedJob reports the new fingerprint.
func TestWebhookReceiverTokenFromSecretRef(t *testing.T) {
	f := newWHRFixture(t)
	user := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "my-token"}, StringData: map[string]string{"value": "  tok-one\n"}}
	f.create(user)
	jobA, jobB := f.job("job-a-12", "byref"), f.job("job-b-12", "byref")
	f.job("job-other", "another-receiver") // must not hold up the rotation
	f.receiver("byref", intunedv1alpha1.WebhookReceiverSpec{
		TokenSecretRef: &intunedv1alpha1.TokenSecretReference{Name: "my-token", Key: "value"},
		ExternalURL:    "https://byref.example.com/webhooks/intuned",
	})
	f.eventually(func() string {
		if got := string(f.tokenSecret("byref")["token"]); got != "tok-one" {
			return "token " + got
		}
		return ""
	})
	f.setStatefulSetReady("byref", 1)
	w := f.waitReady("byref", metav1.ConditionTrue, intunedv1alpha1.ReasonAvailable)
	if w.Status.TokenFingerprint != resources.Fingerprint("tok-one") || w.Status.PreviousTokenFingerprint != "" {
		t.Errorf("fingerprints %q %q", w.Status.TokenFingerprint, w.Status.PreviousTokenFingerprint)
	}
	f.jobCarries(jobA, "tok-one")
	f.jobCarries(jobB, "tok-one")

	// The user rotates their Secret.
	f.update(user, func() { user.Data = map[string][]byte{"value": []byte("tok-two")} })
	f.eventually(func() string {
		d := f.tokenSecret("byref")
		if string(d["token"]) != "tok-two" || string(d["previous-token"]) != "tok-one" {
			return fmt.Sprintf("token %q previous %q", d["token"], d["previous-token"])
		}
		w = f.getWHR("byref")
		if w.Status.TokenFingerprint != resources.Fingerprint("tok-two") || w.Status.PreviousTokenFingerprint != resources.Fingerprint("tok-one") {
			return "status fingerprints not updated"
		}
		return ""
	})
	if msg := meta.FindStatusCondition(w.Status.Conditions, "Ready").Message; !strings.Contains(msg, "job-a-12, job-b-12") {
		t.Errorf("Ready message does not name the jobs still on the old token: %s", msg)
	}

	// One job catches up: the previous token must stay.
	f.jobCarries(jobA, "tok-two")
	f.eventually(func() string {
		if msg := meta.FindStatusCondition(f.getWHR("byref").Status.Conditions, "Ready").Message; strings.Contains(msg, "job-a-12") {
			return "job-a-12 still listed: " + msg
		}
		return ""
	})
	if d := f.tokenSecret("byref"); string(d["previous-token"]) != "tok-one" {
		t.Fatalf("previous token dropped while job-b-12 still sends it")
	}

	// The last one catches up: dropped.
	f.jobCarries(jobB, "tok-two")
	f.eventually(func() string {
		d := f.tokenSecret("byref")
		if _, ok := d["previous-token"]; ok {
			return "previous-token still present"
		}
		if fp := f.getWHR("byref").Status.PreviousTokenFingerprint; fp != "" {
			return "previousTokenFingerprint " + fp
		}
		return ""
	})
	if got := string(f.tokenSecret("byref")["token"]); got != "tok-two" {
		t.Errorf("token %q", got)
	}
}

// TestWebhookReceiverTokenGeneratedAndRotated: a generated token is kept
// across reconciles; intuned.io/rotate-token rotates it exactly once per
// value; the previous one is dropped once the referencing job caught up.
func TestWebhookReceiverTokenGeneratedAndRotated(t *testing.T) {
	f := newWHRFixture(t)
	job := f.job("rotating-job", "gen")
	whr := f.receiver("gen", intunedv1alpha1.WebhookReceiverSpec{})
	f.waitReady("gen", metav1.ConditionFalse, intunedv1alpha1.ReasonWorkloadNotReady)
	first := string(f.tokenSecret("gen")["token"])
	read := string(f.tokenSecret("gen")["read-token"])
	f.jobCarries(job, first)

	// Unrelated spec change: same token.
	f.update(whr, func() { whr.Spec.Image = "example.com/x:1" })
	f.waitReady("gen", metav1.ConditionFalse, intunedv1alpha1.ReasonWorkloadNotReady)
	if got := string(f.tokenSecret("gen")["token"]); got != first {
		t.Fatal("generated token changed on an unrelated reconcile")
	}

	f.update(whr, func() { whr.Annotations = map[string]string{intunedv1alpha1.AnnotationRotateToken: "r1"} })
	var second string
	f.eventually(func() string {
		d := f.tokenSecret("gen")
		second = string(d["token"])
		if second == first || string(d["previous-token"]) != first {
			return "not rotated yet"
		}
		return ""
	})
	if string(f.tokenSecret("gen")["read-token"]) != read {
		t.Error("the read token changed with the ingest token")
	}
	// Another annotation change with the same rotate value: no new rotation.
	f.update(whr, func() { whr.Annotations["example.com/touch"] = "1" })
	f.waitReady("gen", metav1.ConditionFalse, intunedv1alpha1.ReasonWorkloadNotReady)
	time.Sleep(500 * time.Millisecond) // give a wrong second rotation a chance to show
	if d := f.tokenSecret("gen"); string(d["token"]) != second || string(d["previous-token"]) != first {
		t.Fatalf("one rotate-token value rotated twice")
	}
	if fp := f.getWHR("gen").Status.TokenFingerprint; fp != resources.Fingerprint(second) {
		t.Errorf("status.tokenFingerprint %q", fp)
	}

	f.jobCarries(job, second)
	f.eventually(func() string {
		if _, ok := f.tokenSecret("gen")["previous-token"]; ok {
			return "previous-token still present after the job caught up"
		}
		return ""
	})

	// Deleting the job while a rotation waits for it ends the wait too.
	f.update(whr, func() { whr.Annotations[intunedv1alpha1.AnnotationRotateToken] = "r2" })
	f.eventually(func() string {
		if _, ok := f.tokenSecret("gen")["previous-token"]; !ok {
			return "rotation r2 not started"
		}
		return ""
	})
	if err := controllertest.Client().Delete(f.ctx, job); err != nil {
		t.Fatal(err)
	}
	f.eventually(func() string {
		if _, ok := f.tokenSecret("gen")["previous-token"]; ok {
			return "previous-token kept for a deleted job"
		}
		return ""
	})
}

// TestWebhookReceiverConflictsAndInvalidNames: the operator never takes
// over a Secret it does not own, and rejects names its children cannot use.
func TestWebhookReceiverConflictsAndInvalidNames(t *testing.T) {
	f := newWHRFixture(t)
	foreign := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "taken-token"}, StringData: map[string]string{"token": "users"}}
	f.create(foreign)
	f.receiver("taken", intunedv1alpha1.WebhookReceiverSpec{})
	f.waitReady("taken", metav1.ConditionFalse, intunedv1alpha1.ReasonResourceConflict)
	var s corev1.Secret
	if err := f.get("taken-token", &s); err != nil || string(s.Data["token"]) != "users" || len(s.OwnerReferences) > 0 {
		t.Errorf("foreign Secret changed: %v %+v", err, s)
	}

	// Nor a child-named object without our labels, which the manager's
	// cache does not hold (CacheOptions): the API server is asked.
	foreignSvc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "svc-taken"},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}},
	}
	f.create(foreignSvc)
	f.receiver("svc-taken", intunedv1alpha1.WebhookReceiverSpec{})
	f.waitReady("svc-taken", metav1.ConditionFalse, intunedv1alpha1.ReasonResourceConflict)
	var svc corev1.Service
	if err := f.get("svc-taken", &svc); err != nil || len(svc.Labels) > 0 || len(svc.OwnerReferences) > 0 {
		t.Errorf("foreign Service changed: %v %+v", err, svc.ObjectMeta)
	}

	f.receiver("dotted.name", intunedv1alpha1.WebhookReceiverSpec{})
	f.waitReady("dotted.name", metav1.ConditionFalse, intunedv1alpha1.ReasonInvalidSpec)

	f.receiver("missing-ref", intunedv1alpha1.WebhookReceiverSpec{
		TokenSecretRef: &intunedv1alpha1.TokenSecretReference{Name: "nope"},
	})
	w := f.waitReady("missing-ref", metav1.ConditionFalse, intunedv1alpha1.ReasonSecretNotFound)
	if w.Status.TokenSecretName != "" {
		t.Errorf("tokenSecretName %q before any token exists", w.Status.TokenSecretName)
	}
	// The rest still converges: the Pods start once the Secret appears.
	f.waitExists("missing-ref", &appsv1.StatefulSet{})
	f.create(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "nope"}, StringData: map[string]string{"token": "late"}})
	f.waitReady("missing-ref", metav1.ConditionFalse, intunedv1alpha1.ReasonWorkloadNotReady)
	if got := string(f.tokenSecret("missing-ref")["token"]); got != "late" {
		t.Errorf("token %q", got)
	}
}

// fakeClock is a settable clock shared with the controller's goroutines.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// TestWebhookReceiverTokenStaging: a new token first reaches the Pods (as
// previous-token) while IntunedJobs keep pushing the current one; only
// after the propagation delay does it become current. A new rotation waits
// for the previous one to finish.
func TestWebhookReceiverTokenStaging(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)}
	f := newWHRFixture(t, func(r *Reconciler) {
		r.TokenPropagationDelay = time.Hour
		r.Now = clock.Now
	})
	user := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "tok"}, StringData: map[string]string{"token": "old"}}
	f.create(user)
	job := f.job("staged-job", "staged")
	whr := f.receiver("staged", intunedv1alpha1.WebhookReceiverSpec{
		TokenSecretRef: &intunedv1alpha1.TokenSecretReference{Name: "tok"},
	})
	f.eventually(func() string {
		if got := string(f.tokenSecret("staged")["token"]); got != "old" {
			return "first token not copied: " + got
		}
		return ""
	})
	f.jobCarries(job, "old")

	// poke makes the controller reconcile (it would requeue by itself
	// after the delay, but the delay is on the fake clock).
	poke := func(v string) {
		f.update(whr, func() {
			if whr.Annotations == nil {
				whr.Annotations = map[string]string{}
			}
			whr.Annotations["test/poke"] = v
		})
	}
	f.update(user, func() { user.Data = map[string][]byte{"token": []byte("new")} })
	f.eventually(func() string {
		d := f.tokenSecret("staged")
		w := f.getWHR("staged")
		switch {
		case string(d["token"]) != "old" || string(d["previous-token"]) != "new":
			return fmt.Sprintf("not staged: token %q previous %q", d["token"], d["previous-token"])
		case w.Status.TokenFingerprint != resources.Fingerprint("old") ||
			w.Status.NextTokenFingerprint != resources.Fingerprint("new") || w.Status.PreviousTokenFingerprint != "":
			return fmt.Sprintf("status while staged: %+v", w.Status)
		}
		return ""
	})

	// Half the delay: still staged.
	clock.Advance(30 * time.Minute)
	poke("1")
	f.waitReady("staged", metav1.ConditionFalse, intunedv1alpha1.ReasonWorkloadNotReady)
	time.Sleep(300 * time.Millisecond) // give a wrong promotion a chance to show
	if d := f.tokenSecret("staged"); string(d["token"]) != "old" {
		t.Fatalf("promoted before the propagation delay")
	}

	// The delay is over: swapped; the old token stays accepted.
	clock.Advance(31 * time.Minute)
	poke("2")
	f.eventually(func() string {
		d := f.tokenSecret("staged")
		if string(d["token"]) != "new" || string(d["previous-token"]) != "old" {
			return fmt.Sprintf("not swapped: token %q previous %q", d["token"], d["previous-token"])
		}
		if w := f.getWHR("staged"); w.Status.NextTokenFingerprint != "" || w.Status.PreviousTokenFingerprint != resources.Fingerprint("old") {
			return fmt.Sprintf("status after the swap: %+v", w.Status)
		}
		return ""
	})

	// Another change while the job still sends "old": it waits.
	f.update(user, func() { user.Data = map[string][]byte{"token": []byte("newer")} })
	poke("3")
	f.waitReady("staged", metav1.ConditionFalse, intunedv1alpha1.ReasonWorkloadNotReady)
	time.Sleep(300 * time.Millisecond)
	if d := f.tokenSecret("staged"); string(d["token"]) != "new" || string(d["previous-token"]) != "old" {
		t.Fatalf("a rotation overtook an unfinished one: token %q previous %q", d["token"], d["previous-token"])
	}

	// The job catches up: "old" is dropped and "newer" is staged.
	f.jobCarries(job, "new")
	f.eventually(func() string {
		d := f.tokenSecret("staged")
		if string(d["token"]) != "new" || string(d["previous-token"]) != "newer" {
			return fmt.Sprintf("next rotation not staged: token %q previous %q", d["token"], d["previous-token"])
		}
		return ""
	})
}

// TestWebhookReceiverMaximalSpecApplies: every optional field at once is
// accepted by the API server (CRD validation and each child's validation)
// and reaches the children. The NetworkPolicy admits the manager's Pods
// next to spec.networkPolicy.from.
func TestWebhookReceiverMaximalSpecApplies(t *testing.T) {
	manager := &resources.ManagerPods{Namespace: "intuned-operator-system", Labels: map[string]string{"control-plane": "controller-manager"}}
	f := newWHRFixture(t, func(r *Reconciler) { r.ManagerPods = manager })
	f.create(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "pg"}, StringData: map[string]string{"url": "postgres://x"}})
	f.create(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "own-token"}, StringData: map[string]string{"token": "mine"}})
	f.receiver("max", intunedv1alpha1.WebhookReceiverSpec{
		Autoscaling: &intunedv1alpha1.ReceiverAutoscaling{
			MinReplicas: ptr.To[int32](2), MaxReplicas: 8, TargetCPUUtilizationPercentage: ptr.To[int32](65)},
		Image: "example.com/receiver:9",
		Resources: &corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("300Mi")}},
		PodTemplate: &intunedv1alpha1.ReceiverPodTemplate{
			Labels:       map[string]string{"team": "data"},
			Annotations:  map[string]string{"example.com/a": "b"},
			NodeSelector: map[string]string{"kubernetes.io/os": "linux"},
			Tolerations:  []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}},
			Affinity: &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{
				PreferredDuringSchedulingIgnoredDuringExecution: []corev1.WeightedPodAffinityTerm{{Weight: 50,
					PodAffinityTerm: corev1.PodAffinityTerm{TopologyKey: "kubernetes.io/hostname",
						LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{resources.LabelInstance: "max"}}}}}}},
			PriorityClassName: "system-cluster-critical",
			ImagePullSecrets:  []corev1.LocalObjectReference{{Name: "registry"}},
			Env:               []corev1.EnvVar{{Name: "TZ", Value: "UTC"}},
		},
		Settings: &intunedv1alpha1.ReceiverSettings{
			MaxBodyBytes: ptr.To(resource.MustParse("4Mi")),
			Deadline:     &metav1.Duration{Duration: 3 * time.Second},
			LogLevel:     "warn",
		},
		TokenSecretRef: &intunedv1alpha1.TokenSecretReference{Name: "own-token"},
		Storage: &intunedv1alpha1.ReceiverStorage{Postgres: &intunedv1alpha1.PostgresStorage{
			DSNSecretRef: intunedv1alpha1.SecretKeyRef{Name: "pg", Key: "url"}}},
		Ingress: &intunedv1alpha1.ReceiverIngress{ClassName: ptr.To("nginx"), Host: "max.example.com", Path: "/in",
			TLS: &intunedv1alpha1.ReceiverIngressTLS{SecretName: "max-tls"}, Annotations: map[string]string{"cert-manager.io/cluster-issuer": "le"}},
		PodDisruptionBudget: &intunedv1alpha1.ReceiverPodDisruptionBudget{MinAvailable: ptr.To(intstr.FromString("50%"))},
		NetworkPolicy: &intunedv1alpha1.ReceiverNetworkPolicy{Enabled: true, From: []networkingv1.NetworkPolicyPeer{{
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "ingress-nginx"}}}}},
	})
	for _, obj := range []client.Object{&corev1.ServiceAccount{}, &corev1.Service{}, &appsv1.Deployment{},
		&networkingv1.Ingress{}, &autoscalingv2.HorizontalPodAutoscaler{}, &policyv1.PodDisruptionBudget{}, &networkingv1.NetworkPolicy{}} {
		f.waitExists("max", obj)
	}
	var np networkingv1.NetworkPolicy
	f.waitExists("max", &np)
	if from := np.Spec.Ingress[0].From; len(from) != 2 || from[1].NamespaceSelector.MatchLabels[corev1.LabelMetadataName] != manager.Namespace ||
		from[1].PodSelector.MatchLabels["control-plane"] != "controller-manager" {
		t.Errorf("NetworkPolicy peers %+v, want ingress-nginx and the manager's Pods", from)
	}
	var d appsv1.Deployment
	f.waitExists("max", &d)
	ps := d.Spec.Template.Spec
	if len(ps.Tolerations) != 1 || ps.Affinity == nil || ps.PriorityClassName != "system-cluster-critical" ||
		ps.NodeSelector["kubernetes.io/os"] != "linux" || d.Spec.Template.Labels["team"] != "data" ||
		d.Spec.Template.Annotations["example.com/a"] != "b" || ps.Containers[0].Image != "example.com/receiver:9" {
		t.Errorf("pod template allow-list not applied: %+v", d.Spec.Template)
	}
	c := ps.Containers[0]
	args := strings.Join(c.Args, " ")
	if !strings.Contains(args, "--max-body-bytes=4194304 --deadline=3s --log-level=warn") ||
		len(c.Env) != 1 || c.Env[0].Name != "TZ" || len(ps.ImagePullSecrets) != 1 || ps.ImagePullSecrets[0].Name != "registry" {
		t.Errorf("settings did not reach the Pod: args %q env %v imagePullSecrets %v", args, c.Env, ps.ImagePullSecrets)
	}
	f.setDeploymentAvailable("max", true)
	w := f.waitReady("max", metav1.ConditionTrue, intunedv1alpha1.ReasonAvailable)
	if w.Status.URL != "https://max.example.com/in" || w.Status.ReadyReplicas != 1 {
		t.Errorf("status url %q readyReplicas %d", w.Status.URL, w.Status.ReadyReplicas)
	}
}

// TestWebhookReceiverPreviousTokenGrace: after every job carries the new
// token, the previous one stays while a JobRun that started with the old
// sink runs, and for the retry window after it ended.
func TestWebhookReceiverPreviousTokenGrace(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)}
	f := newWHRFixture(t, func(r *Reconciler) {
		r.TokenPropagationDelay = -1 // swap at once; staging has its own test
		r.PreviousTokenGrace = time.Hour
		r.Now = clock.Now
	})
	user := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "tok"}, StringData: map[string]string{"token": "old"}}
	f.create(user)
	job := f.job("graced-job", "graced")
	whr := f.receiver("graced", intunedv1alpha1.WebhookReceiverSpec{
		TokenSecretRef: &intunedv1alpha1.TokenSecretReference{Name: "tok"},
		ExternalURL:    "https://graced.example.com/webhooks/intuned",
	})
	f.setStatefulSetReady("graced", 1)
	f.waitReady("graced", metav1.ConditionTrue, intunedv1alpha1.ReasonAvailable)
	// A JobRun started with the old token is running.
	started := metav1.NewTime(clock.Now().Add(-10 * time.Minute))
	f.updateStatus(job, func() {
		job.Status.Sink = &intunedv1alpha1.SinkStatus{TokenFingerprint: resources.Fingerprint("old")}
		job.Status.LastJobRun = &intunedv1alpha1.JobRunSummary{ID: "jr1", Start: &started}
	})
	f.update(user, func() { user.Data = map[string][]byte{"token": []byte("new")} })
	f.eventually(func() string {
		if d := f.tokenSecret("graced"); string(d["token"]) != "new" || string(d["previous-token"]) != "old" {
			return "not swapped"
		}
		return ""
	})
	f.jobCarries(job, "new")
	readyMessage := func() string {
		return meta.FindStatusCondition(f.getWHR("graced").Status.Conditions, "Ready").Message
	}
	f.eventually(func() string {
		if msg := readyMessage(); !strings.Contains(msg, "JobRuns of IntunedJob(s) graced-job") {
			return "Ready does not name the running JobRun: " + msg
		}
		return ""
	})
	hasPrevious := func() bool { _, ok := f.tokenSecret("graced")["previous-token"]; return ok }
	if !hasPrevious() {
		t.Fatal("previous token dropped while a JobRun started with it still runs")
	}

	// The run ends: the previous token stays for the retry window.
	clock.Advance(20 * time.Minute)
	ended := metav1.NewTime(clock.Now())
	f.updateStatus(job, func() { job.Status.LastJobRun.End = &ended })
	f.eventually(func() string {
		if msg := readyMessage(); !strings.Contains(msg, "stays accepted for Intuned's retries until 2026-11-27T13:20:00Z") {
			return "Ready does not give the end of the grace window: " + msg
		}
		return ""
	})
	if !hasPrevious() {
		t.Fatal("previous token dropped inside the retry window")
	}

	// The window is over.
	clock.Advance(61 * time.Minute)
	f.update(whr, func() { whr.Annotations = map[string]string{"test/poke": "1"} })
	f.eventually(func() string {
		if hasPrevious() {
			return "previous-token still present after the grace window"
		}
		return ""
	})
}
