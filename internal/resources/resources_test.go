package resources

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/intuned-operator/intuned-operator/api/v1alpha1"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.yaml from the current builders")

// minimal is what a user gets from `spec: {}` after API defaulting.
func minimal() *v1alpha1.WebhookReceiver {
	return &v1alpha1.WebhookReceiver{
		ObjectMeta: metav1.ObjectMeta{Name: "hooks", Namespace: "scrapers", UID: types.UID("0f4e6a2c-uid")},
		Spec: v1alpha1.WebhookReceiverSpec{
			Replicas: ptr.To[int32](1),
			Storage:  &v1alpha1.ReceiverStorage{SQLite: &v1alpha1.SQLiteStorage{Size: ptr.To(resource.MustParse("1Gi"))}},
		},
	}
}

// podTemplate sets every allow-listed Pod field.
func fullPodTemplate() *v1alpha1.ReceiverPodTemplate {
	return &v1alpha1.ReceiverPodTemplate{
		Labels:       map[string]string{"team": "data", LabelName: "user-cannot-override"},
		Annotations:  map[string]string{"prometheus.io/scrape": "true"},
		NodeSelector: map[string]string{"kubernetes.io/os": "linux"},
		Tolerations:  []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "scrapers", Effect: corev1.TaintEffectNoSchedule}},
		Affinity: &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{
			PreferredDuringSchedulingIgnoredDuringExecution: []corev1.WeightedPodAffinityTerm{{
				Weight: 100,
				PodAffinityTerm: corev1.PodAffinityTerm{
					TopologyKey:   "kubernetes.io/hostname",
					LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{LabelInstance: "hooks"}},
				},
			}},
		}},
		PriorityClassName: "high",
		ImagePullSecrets:  []corev1.LocalObjectReference{{Name: "registry-creds"}},
		Env: []corev1.EnvVar{
			{Name: "HTTPS_PROXY", Value: "http://proxy.example.com:3128"},
			{Name: "GOMEMLIMIT", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{
				ContainerName: ContainerName, Resource: "limits.memory"}}},
		},
	}
}

// fullSettings sets every receiver setting.
func fullSettings() *v1alpha1.ReceiverSettings {
	return &v1alpha1.ReceiverSettings{
		MaxBodyBytes: ptr.To(resource.MustParse("2.5Mi")),
		Deadline:     &metav1.Duration{Duration: 1500 * time.Millisecond},
		LogLevel:     "debug",
	}
}

func resources() *corev1.ResourceRequirements {
	return &corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("200m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")},
	}
}

// maximalPostgres sets every field that applies to postgres storage.
func maximalPostgres() *v1alpha1.WebhookReceiver {
	w := minimal()
	w.Spec = v1alpha1.WebhookReceiverSpec{
		Replicas: ptr.To[int32](3),
		Autoscaling: &v1alpha1.ReceiverAutoscaling{
			MinReplicas: ptr.To[int32](2), MaxReplicas: 10, TargetCPUUtilizationPercentage: ptr.To[int32](60),
			ScaleDownStabilizationWindowSeconds: ptr.To[int32](30),
		},
		Image:          "registry.example.com/intuned-operator:v1.2.3",
		Resources:      resources(),
		PodTemplate:    fullPodTemplate(),
		Settings:       fullSettings(),
		TokenSecretRef: &v1alpha1.TokenSecretReference{Name: "my-token", Key: "value"},
		Storage: &v1alpha1.ReceiverStorage{Postgres: &v1alpha1.PostgresStorage{
			DSNSecretRef: v1alpha1.SecretKeyRef{Name: "pg", Key: "dsn"},
		}},
		Ingress: &v1alpha1.ReceiverIngress{
			ClassName:   ptr.To("nginx"),
			Host:        "hooks.example.com",
			Path:        "/intuned/deliveries",
			TLS:         &v1alpha1.ReceiverIngressTLS{SecretName: "hooks-tls"},
			Annotations: map[string]string{"cert-manager.io/cluster-issuer": "letsencrypt"},
		},
		ExternalURL: "https://public.example.com/intuned/deliveries",
		PodDisruptionBudget: &v1alpha1.ReceiverPodDisruptionBudget{
			MinAvailable: ptr.To(intstr.FromString("50%")),
		},
		NetworkPolicy: &v1alpha1.ReceiverNetworkPolicy{
			Enabled: true,
			From: []networkingv1.NetworkPolicyPeer{{
				NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "ingress-nginx"}},
			}},
		},
	}
	w.Spec.Retention = &v1alpha1.ReceiverRetention{MaxAge: &metav1.Duration{Duration: 168 * time.Hour}}
	return w
}

// maximalSQLite sets every field that applies to sqlite storage.
func maximalSQLite() *v1alpha1.WebhookReceiver {
	w := minimal()
	w.Spec = v1alpha1.WebhookReceiverSpec{
		Replicas:    ptr.To[int32](1),
		Image:       "registry.example.com/intuned-operator:v1.2.3",
		Resources:   resources(),
		PodTemplate: fullPodTemplate(),
		Settings:    fullSettings(),
		Storage: &v1alpha1.ReceiverStorage{SQLite: &v1alpha1.SQLiteStorage{
			Size: ptr.To(resource.MustParse("20Gi")), StorageClassName: ptr.To("fast-ssd"),
		}},
		Ingress:             &v1alpha1.ReceiverIngress{Host: "hooks.example.com", Path: "/webhooks/intuned"},
		PodDisruptionBudget: &v1alpha1.ReceiverPodDisruptionBudget{MaxUnavailable: ptr.To(intstr.FromInt32(1))},
		NetworkPolicy:       &v1alpha1.ReceiverNetworkPolicy{Enabled: true},
	}
	w.Spec.Retention = &v1alpha1.ReceiverRetention{MaxAge: &metav1.Duration{Duration: 720 * time.Hour}, MaxSize: ptr.To(resource.MustParse("15Gi"))}
	return w
}

const managerImage = "ghcr.io/intuned-operator/intuned-operator:v0.1.0"

// managerPods are the manager's Pods as config/default installs them.
var managerPods = &ManagerPods{
	Namespace: "intuned-operator-system",
	Labels:    map[string]string{"control-plane": "controller-manager", "app.kubernetes.io/name": "intuned-operator"},
}

// TestWebhookReceiverGolden compares every builder's apply document for the minimal and
// maximal specs with testdata/<builder>-<spec>.golden.yaml. Run
// `go test ./internal/resources -update` after an intended change and
// review the diff.
func TestWebhookReceiverGolden(t *testing.T) {
	specs := map[string]func() *v1alpha1.WebhookReceiver{
		"minimal": minimal, "maximal-postgres": maximalPostgres, "maximal-sqlite": maximalSQLite,
	}
	tokens := TokenData{Token: "current-token", ReadToken: "read-token"}
	rotating := TokenData{Token: "new-token", PreviousToken: "old-token", ReadToken: "read-token", RotationHandled: "2026-11-27"}
	builders := map[string]func(*v1alpha1.WebhookReceiver) runtime.Object{
		"serviceaccount": func(w *v1alpha1.WebhookReceiver) runtime.Object { return ServiceAccount(w) },
		"secret": func(w *v1alpha1.WebhookReceiver) runtime.Object {
			if w.Spec.TokenSecretRef != nil {
				return TokenSecret(w, rotating)
			}
			return TokenSecret(w, tokens)
		},
		"deployment":  func(w *v1alpha1.WebhookReceiver) runtime.Object { return nilIfNil(Deployment(w, managerImage)) },
		"statefulset": func(w *v1alpha1.WebhookReceiver) runtime.Object { return nilIfNil(StatefulSet(w, managerImage)) },
		"service":     func(w *v1alpha1.WebhookReceiver) runtime.Object { return Service(w) },
		"ingress":     func(w *v1alpha1.WebhookReceiver) runtime.Object { return nilIfNil(Ingress(w)) },
		"hpa":         func(w *v1alpha1.WebhookReceiver) runtime.Object { return nilIfNil(HorizontalPodAutoscaler(w)) },
		"pdb":         func(w *v1alpha1.WebhookReceiver) runtime.Object { return nilIfNil(PodDisruptionBudget(w)) },
		"networkpolicy": func(w *v1alpha1.WebhookReceiver) runtime.Object {
			return nilIfNil(NetworkPolicy(w, managerPods))
		},
		// The workload with Kubernetes read auth on (the controller's ReadAuthBinding).
		"readauth-workload": func(w *v1alpha1.WebhookReceiver) runtime.Object {
			if d := Deployment(w, managerImage); d != nil {
				EnableKubernetesReadAuth(w, &d.Spec.Template)
				return d
			}
			s := StatefulSet(w, managerImage)
			EnableKubernetesReadAuth(w, &s.Spec.Template)
			return s
		},
	}
	for specName, spec := range specs {
		for builderName, build := range builders {
			t.Run(builderName+"-"+specName, func(t *testing.T) {
				obj := build(spec())
				var got []byte
				if obj == nil {
					got = []byte("# not built for this spec\n")
				} else {
					u, err := ForApply(obj)
					if err != nil {
						t.Fatal(err)
					}
					if got, err = yaml.Marshal(u.Object); err != nil {
						t.Fatal(err)
					}
				}
				compareGolden(t, filepath.Join("testdata", builderName+"-"+specName+".golden.yaml"), got)
			})
		}
	}
}

// nilIfNil turns a typed nil pointer into an untyped nil interface.
func nilIfNil[T any](p *T) runtime.Object {
	if p == nil {
		return nil
	}
	return any(p).(runtime.Object)
}

func compareGolden(t *testing.T, file string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(file, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (run with -update and review the diff):\n--- got\n%s\n--- want\n%s", file, got, want)
	}
}

// TestWebhookReceiverPodContract checks the parts of the Pod other components rely on,
// for both storage kinds, independently of the golden files.
func TestWebhookReceiverPodContract(t *testing.T) {
	tests := []struct {
		name      string
		whr       *v1alpha1.WebhookReceiver
		wantArgs  []string
		wantMount string
	}{
		{"sqlite", minimal(), []string{"--store=sqlite", "--sqlite-path=/var/lib/intuned-receiver/receiver.db"}, DataDir},
		{"postgres", maximalPostgres(), []string{"--store=postgres", "--postgres-dsn-file=/etc/intuned-receiver/postgres/dsn"}, PostgresDSNDir},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var tmpl corev1.PodTemplateSpec
			if d := Deployment(tt.whr, ""); d != nil {
				tmpl = d.Spec.Template
			} else {
				tmpl = StatefulSet(tt.whr, "").Spec.Template
			}
			c := tmpl.Spec.Containers[0]
			args := strings.Join(c.Args, " ")
			for _, want := range append(tt.wantArgs,
				"--token-file=/etc/intuned-receiver/token/token",
				"--previous-token-file=/etc/intuned-receiver/token/previous-token",
				"--read-token-file=/etc/intuned-receiver/token/read-token") {
				if !strings.Contains(args, want) {
					t.Errorf("args %q lack %q", args, want)
				}
			}
			var userEnv int
			if pt := tt.whr.Spec.PodTemplate; pt != nil {
				userEnv = len(pt.Env)
			}
			if strings.Contains(args, "dsn=") || len(c.Env) != userEnv {
				t.Errorf("the DSN must come from a file, never args or env (only the user's env is set): args %q env %v", args, c.Env)
			}
			mounted := map[string]bool{}
			for _, m := range c.VolumeMounts {
				mounted[m.MountPath] = true
				if m.SubPath != "" {
					t.Errorf("mount %s uses subPath: Secret updates would never reach the Pod", m.MountPath)
				}
			}
			for _, dir := range []string{TokenDir, TmpDir, tt.wantMount} {
				if !mounted[dir] {
					t.Errorf("%s not mounted (mounts %v)", dir, c.VolumeMounts)
				}
			}
			sc := c.SecurityContext
			if !*sc.ReadOnlyRootFilesystem || *sc.AllowPrivilegeEscalation || !*sc.RunAsNonRoot ||
				len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" ||
				tmpl.Spec.SecurityContext.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Errorf("container is not restricted: %+v", sc)
			}
			if c.Image != DefaultReceiverImage && c.Image != tt.whr.Spec.Image {
				t.Errorf("image %q", c.Image)
			}
			for k, v := range SelectorLabels(tt.whr) {
				if tmpl.Labels[k] != v {
					t.Errorf("pod label %s=%q, want %q (selector must match)", k, tmpl.Labels[k], v)
				}
			}
		})
	}
}

// TestWebhookReceiverSettings: spec.settings become the receiver's flags,
// unset fields add none (the receiver keeps its defaults and existing Pods
// are not rolled), and the user's registry Secrets and env reach the Pod.
func TestWebhookReceiverSettings(t *testing.T) {
	w := minimal()
	for _, a := range ReceiverArgs(w) {
		if strings.HasPrefix(a, "--max-body-bytes") || strings.HasPrefix(a, "--deadline") || strings.HasPrefix(a, "--log-level") {
			t.Errorf("flag %s without spec.settings", a)
		}
	}
	w.Spec.Settings = fullSettings()
	args := strings.Join(ReceiverArgs(w), " ")
	for _, want := range []string{"--max-body-bytes=2621440", "--deadline=1.5s", "--log-level=debug"} {
		if !strings.Contains(args, want) {
			t.Errorf("args %q lack %q", args, want)
		}
	}
	w.Spec.Settings = &v1alpha1.ReceiverSettings{LogLevel: "warn"}
	if args := strings.Join(ReceiverArgs(w), " "); !strings.Contains(args, "--log-level=warn") || strings.Contains(args, "--deadline") {
		t.Errorf("only logLevel set: args %q", args)
	}

	w.Spec.PodTemplate = fullPodTemplate()
	ps := StatefulSet(w, "").Spec.Template.Spec
	if len(ps.ImagePullSecrets) != 1 || ps.ImagePullSecrets[0].Name != "registry-creds" {
		t.Errorf("imagePullSecrets %v", ps.ImagePullSecrets)
	}
	if env := ps.Containers[0].Env; len(env) != 2 || env[0].Name != "HTTPS_PROXY" || env[1].ValueFrom == nil {
		t.Errorf("env %v", env)
	}
}

func TestWebhookReceiverImage(t *testing.T) {
	w := minimal()
	for _, tt := range []struct{ spec, def, want string }{
		{"", "", DefaultReceiverImage},
		{"", "mgr:1", "mgr:1"},
		{"mine:2", "mgr:1", "mine:2"},
	} {
		w.Spec.Image = tt.spec
		if got := Image(w, tt.def); got != tt.want {
			t.Errorf("Image(spec %q, default %q) = %q, want %q", tt.spec, tt.def, got, tt.want)
		}
	}
}

func TestWebhookReceiverIngestPath(t *testing.T) {
	for _, tt := range []struct {
		name string
		spec v1alpha1.WebhookReceiverSpec
		want string
	}{
		{"default", v1alpha1.WebhookReceiverSpec{}, "/webhooks/intuned"},
		{"ingress path", v1alpha1.WebhookReceiverSpec{Ingress: &v1alpha1.ReceiverIngress{Host: "h", Path: "/x/y"}}, "/x/y"},
		{"ingress wins over externalURL", v1alpha1.WebhookReceiverSpec{
			Ingress: &v1alpha1.ReceiverIngress{Host: "h", Path: "/x"}, ExternalURL: "https://e/other"}, "/x"},
		{"externalURL path", v1alpha1.WebhookReceiverSpec{ExternalURL: "https://e.example.com/hooks/in"}, "/hooks/in"},
		{"externalURL without path", v1alpha1.WebhookReceiverSpec{ExternalURL: "https://e.example.com/"}, "/webhooks/intuned"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := IngestPath(&v1alpha1.WebhookReceiver{Spec: tt.spec}); got != tt.want {
				t.Errorf("IngestPath = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestWebhookReceiverPodDisruptionBudgetDefault(t *testing.T) {
	for _, tt := range []struct {
		name string
		spec v1alpha1.WebhookReceiverSpec
		want bool
	}{
		{"one replica", v1alpha1.WebhookReceiverSpec{Replicas: ptr.To[int32](1)}, false},
		{"two replicas", v1alpha1.WebhookReceiverSpec{Replicas: ptr.To[int32](2)}, true},
		{"autoscaling min 1", v1alpha1.WebhookReceiverSpec{Replicas: ptr.To[int32](5),
			Autoscaling: &v1alpha1.ReceiverAutoscaling{MinReplicas: ptr.To[int32](1), MaxReplicas: 4}}, false},
		{"autoscaling min 2", v1alpha1.WebhookReceiverSpec{
			Autoscaling: &v1alpha1.ReceiverAutoscaling{MinReplicas: ptr.To[int32](2), MaxReplicas: 4}}, true},
		{"explicit", v1alpha1.WebhookReceiverSpec{Replicas: ptr.To[int32](1),
			PodDisruptionBudget: &v1alpha1.ReceiverPodDisruptionBudget{MinAvailable: ptr.To(intstr.FromInt32(1))}}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := PodDisruptionBudget(&v1alpha1.WebhookReceiver{Spec: tt.spec}) != nil; got != tt.want {
				t.Errorf("PDB built = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestWebhookReceiverNetworkPolicyPeers: the manager's Pods are admitted
// next to the peers of spec.networkPolicy.from (its volume check, delivery
// accounting and backfill call the receiver); an empty from admits every
// source already and stays empty.
func TestWebhookReceiverNetworkPolicyPeers(t *testing.T) {
	ingress := networkingv1.NetworkPolicyPeer{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "traefik"}}}
	for _, tt := range []struct {
		name      string
		from      []networkingv1.NetworkPolicyPeer
		manager   *ManagerPods
		wantPeers int
	}{
		{"no from: any source", nil, managerPods, 0},
		{"from and the manager", []networkingv1.NetworkPolicyPeer{ingress}, managerPods, 2},
		{"from, manager outside a Pod", []networkingv1.NetworkPolicyPeer{ingress}, nil, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := minimal()
			w.Spec.NetworkPolicy = &v1alpha1.ReceiverNetworkPolicy{Enabled: true, From: tt.from}
			from := NetworkPolicy(w, tt.manager).Spec.Ingress[0].From
			if len(from) != tt.wantPeers {
				t.Fatalf("%d peers %v, want %d", len(from), from, tt.wantPeers)
			}
			if tt.wantPeers == 2 {
				m := from[1]
				if ns := m.NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"]; ns != tt.manager.Namespace ||
					!reflect.DeepEqual(m.PodSelector.MatchLabels, tt.manager.Labels) {
					t.Errorf("manager peer %+v, want namespace %s and Pod labels %v", m, tt.manager.Namespace, tt.manager.Labels)
				}
			}
		})
	}
}

// TestWebhookReceiverReplicasOmittedWithHPA: with autoscaling the applied workload has no
// replicas field, so server-side apply never resets the HPA's choice.
func TestWebhookReceiverReplicasOmittedWithHPA(t *testing.T) {
	w := maximalPostgres()
	u, err := ForApply(Deployment(w, ""))
	if err != nil {
		t.Fatal(err)
	}
	spec := u.Object["spec"].(map[string]any)
	if _, ok := spec["replicas"]; ok {
		t.Errorf("replicas present with autoscaling: %v", spec["replicas"])
	}
	w.Spec.Autoscaling = nil
	if got := *Deployment(w, "").Spec.Replicas; got != 3 {
		t.Errorf("replicas = %d without autoscaling, want 3", got)
	}
}

func TestWebhookReceiverTokens(t *testing.T) {
	tok, err := GenerateToken(bytes.NewReader(bytes.Repeat([]byte{0xab}, 32)))
	if err != nil {
		t.Fatal(err)
	}
	if len(tok) != 43 || strings.ContainsAny(tok, "+/= \n") {
		t.Errorf("token %q is not 43 base64url characters", tok)
	}
	if _, err := GenerateToken(bytes.NewReader(make([]byte, 5))); err == nil {
		t.Error("short random source: want an error")
	}
	if fp := Fingerprint("secret"); fp != "2bb80d537b1da3e3" {
		t.Errorf("Fingerprint = %q", fp)
	}
	if Fingerprint("") != "" {
		t.Error("fingerprint of no token must be empty")
	}
	s := TokenSecret(minimal(), TokenData{Token: "a", ReadToken: "r"})
	if _, ok := s.Data[v1alpha1.TokenSecretKeyPreviousToken]; ok {
		t.Error("previous-token present without a rotation")
	}
}

// TestWebhookReceiverShardLabel: every child object carries its receiver's
// shard label (each manager shard caches only its own children), while
// the Pod template, the selectors and the volumeClaimTemplate never do
// (moving a receiver between shards must not restart its Pods or change an
// immutable field). A receiver without the label gives children without it.
func TestWebhookReceiverShardLabel(t *testing.T) {
	for _, shard := range []string{"", "shard-a"} {
		for name, spec := range map[string]func() *v1alpha1.WebhookReceiver{"sqlite": maximalSQLite, "postgres": maximalPostgres} {
			t.Run(name+"/"+shard, func(t *testing.T) {
				w := spec()
				if shard != "" {
					w.Labels = map[string]string{v1alpha1.LabelShard: shard}
				}
				children := []metav1.Object{ServiceAccount(w), Service(w), TokenSecret(w, TokenData{Token: "t"})}
				for _, c := range []metav1.Object{Deployment(w, ""), StatefulSet(w, ""), Ingress(w), HorizontalPodAutoscaler(w), PodDisruptionBudget(w), NetworkPolicy(w, managerPods)} {
					if !reflect.ValueOf(c).IsNil() {
						children = append(children, c)
					}
				}
				for _, c := range children {
					got, ok := c.GetLabels()[v1alpha1.LabelShard]
					if got != shard || ok != (shard != "") {
						t.Errorf("%T labels %v: want shard label %q", c, c.GetLabels(), shard)
					}
				}
				var templates []map[string]string
				if d := Deployment(w, ""); d != nil {
					templates = append(templates, d.Spec.Template.Labels, d.Spec.Selector.MatchLabels)
				}
				if s := StatefulSet(w, ""); s != nil {
					templates = append(templates, s.Spec.Template.Labels, s.Spec.Selector.MatchLabels, s.Spec.VolumeClaimTemplates[0].Labels)
				}
				templates = append(templates, Service(w).Spec.Selector)
				for _, l := range templates {
					if _, ok := l[v1alpha1.LabelShard]; ok {
						t.Errorf("template or selector labels %v carry the shard label", l)
					}
				}
			})
		}
	}
}
