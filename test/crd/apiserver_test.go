package crd

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/utils/ptr"
	kstatus "sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/resources"
	"github.com/intuned-operator/intuned-operator/internal/testutil/testenv"
)

var nsCounter atomic.Int32

// newNamespace creates a namespace for one test and deletes it afterwards.
func newNamespace(t *testing.T, c client.Client) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name: fmt.Sprintf("crd-test-%d-%d", os.Getpid(), nsCounter.Add(1)),
	}}
	if err := c.Create(context.Background(), ns); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	t.Cleanup(func() { _ = c.Delete(context.Background(), ns) })
	return ns.Name
}

// decodeYAML turns one YAML document into an unstructured object.
func decodeYAML(t *testing.T, doc string) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
		t.Fatalf("bad test YAML: %v\n%s", err, doc)
	}
	return u
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestCRDsInstalled checks both CRDs are served with the names, short names,
// categories, status subresource and printer columns users rely on.
func TestCRDsInstalled(t *testing.T) {
	e := needEnv(t)
	s := runtime.NewScheme()
	if err := apiextensionsv1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(e.Config, client.Options{Scheme: s})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		shortName string
		columns   []string
	}{
		// "(wide)": shown by kubectl get -o wide only (priority > 0).
		{"intunedjobs.intuned.io", "ij", []string{"Project", "Job ID", "State", "Synced", "Ready", "Last Run", "Next Run", "Last Run Time (wide)", "Reason (wide)", "Sink (wide)", "Age"}},
		{"webhookreceivers.intuned.io", "whr", []string{"URL", "Ready", "Replicas", "Age"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var crd apiextensionsv1.CustomResourceDefinition
			if err := c.Get(ctxT(t), client.ObjectKey{Name: tt.name}, &crd); err != nil {
				t.Fatalf("get CRD: %v", err)
			}
			established := false
			for _, cond := range crd.Status.Conditions {
				if cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue {
					established = true
				}
			}
			if !established {
				t.Errorf("CRD not Established: %+v", crd.Status.Conditions)
			}
			if got := crd.Spec.Names.ShortNames; len(got) != 1 || got[0] != tt.shortName {
				t.Errorf("shortNames = %v, want [%s]", got, tt.shortName)
			}
			if got := crd.Spec.Names.Categories; len(got) != 1 || got[0] != "intuned" {
				t.Errorf("categories = %v, want [intuned]", got)
			}
			v := crd.Spec.Versions[0]
			if v.Name != "v1alpha1" || v.Subresources == nil || v.Subresources.Status == nil {
				t.Errorf("version %s: want v1alpha1 with a status subresource", v.Name)
			}
			var cols []string
			for _, col := range v.AdditionalPrinterColumns {
				name := col.Name
				if col.Priority > 0 {
					name += " (wide)"
				}
				cols = append(cols, name)
			}
			if strings.Join(cols, ",") != strings.Join(tt.columns, ",") {
				t.Errorf("printer columns = %v, want %v", cols, tt.columns)
			}
		})
	}
}

// TestSamplesApply creates every object of config/samples in a fresh namespace.
func TestSamplesApply(t *testing.T) {
	e := needEnv(t)
	ns := newNamespace(t, e.Client)
	files, err := filepath.Glob(filepath.Join(repoRoot, "config", "samples", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	applied := 0
	for _, f := range files {
		if filepath.Base(f) == "kustomization.yaml" {
			continue
		}
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, doc := range strings.Split(string(raw), "\n---") {
			if strings.TrimSpace(doc) == "" {
				continue
			}
			u := decodeYAML(t, doc)
			if len(u.Object) == 0 {
				continue
			}
			u.SetNamespace(ns)
			if err := e.Client.Create(ctxT(t), u); err != nil {
				t.Errorf("%s: %s %s rejected: %v", filepath.Base(f), u.GetKind(), u.GetName(), err)
				continue
			}
			applied++
		}
	}
	// The credentials Secret is not a sample: the user creates it
	// (test/config TestSamplesKeepTheUsersCredentials).
	if applied < 2 {
		t.Errorf("applied %d sample objects, want at least 2 (receiver, job)", applied)
	}
	// The sample job resolves to the quickstart job id and receiver.
	var job intunedv1alpha1.IntunedJob
	if err := e.Client.Get(ctxT(t), client.ObjectKey{Namespace: ns, Name: "default-with-webhook"}, &job); err != nil {
		t.Fatalf("get sample job: %v", err)
	}
	if job.EffectiveJobID() != "default-with-webhook" || job.Spec.Project != "ecommerce-scraper-quickstart" ||
		job.Spec.Sink == nil || job.Spec.Sink.Webhook == nil || job.Spec.Sink.Webhook.ReceiverRef == nil ||
		job.Spec.Sink.Webhook.ReceiverRef.Name != "quickstart-receiver" {
		t.Errorf("sample job is not the quickstart job: %+v", job.Spec)
	}
}

// Object builders for the validation tables. Each case is the YAML of a spec
// (indented under "spec:"), so a reader sees exactly what is sent.
func jobYAML(name, spec string) string {
	return "apiVersion: intuned.io/v1alpha1\nkind: IntunedJob\nmetadata:\n  name: " + name + "\nspec:\n" + indent(spec)
}

func receiverYAML(name, spec string) string {
	return "apiVersion: intuned.io/v1alpha1\nkind: WebhookReceiver\nmetadata:\n  name: " + name + "\nspec:\n" + indent(spec)
}

func indent(s string) string {
	lines := strings.Split(strings.Trim(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = "  " + l
	}
	return strings.Join(lines, "\n") + "\n"
}

// minimalJob is the smallest valid spec; cases append to it.
const minimalJob = `
project: ecommerce-scraper-quickstart
payload:
- apiName: list
`

// TestInvalidObjectsRejected: each object must be refused by the API server
// with a message that tells the user what to fix.
func TestInvalidObjectsRejected(t *testing.T) {
	e := needEnv(t)
	ns := newNamespace(t, e.Client)
	tests := []struct {
		name    string
		obj     string
		wantMsg string
	}{
		{"job id too short", jobYAML("valid-name", minimalJob+"jobId: abc123"),
			"jobId must be at least 7 characters"},
		{"job id with dots", jobYAML("valid-name", minimalJob+"jobId: my.scraper.job"),
			"jobId may contain only letters, digits, '-' and '_'"},
		{"short metadata.name as job id", jobYAML("short", minimalJob),
			"metadata.name is used as the Intuned job id"},
		{"dotted metadata.name as job id", jobYAML("scraper.example", minimalJob),
			"metadata.name is used as the Intuned job id"},
		{"empty payload", jobYAML("valid-name", "project: p\npayload: []"),
			"payload must list at least one API call"},
		{"both sink kinds", jobYAML("valid-name", minimalJob+`
sink:
  webhook: {url: "https://hooks.example.com/x"}
  s3: {bucket: b, region: us-east-1, credentialsSecretRef: {name: s3}}`),
			"sink must set exactly one of webhook or s3"},
		{"no sink kind", jobYAML("valid-name", minimalJob+"sink: {}"),
			"sink must set exactly one of webhook or s3"},
		{"webhook url and receiverRef", jobYAML("valid-name", minimalJob+`
sink:
  webhook: {url: "https://hooks.example.com/x", receiverRef: {name: r}}`),
			"webhook sink must set exactly one of url or receiverRef"},
		{"webhook without target", jobYAML("valid-name", minimalJob+`
sink:
  webhook: {skipOnFail: true}`),
			"webhook sink must set exactly one of url or receiverRef"},
		{"webhook plain http to a public host", jobYAML("valid-name", minimalJob+`
sink:
  webhook: {url: "http://hooks.example.com/intuned"}`),
			"url must use https unless the host is loopback"},
		{"webhook url without scheme", jobYAML("valid-name", minimalJob+`
sink:
  webhook: {url: "hooks.example.com/intuned"}`),
			"url must be an absolute http(s) URL"},
		{"authorization header with receiverRef", jobYAML("valid-name", minimalJob+`
sink:
  webhook:
    receiverRef: {name: r}
    headers: {authorization: "Bearer x"}`),
			"do not set an Authorization header with receiverRef"},
		{"interval in words", jobYAML("valid-name", minimalJob+`
schedule:
  intervals: [{every: "1 hour"}]`),
			"every must be milliseconds as digits"},
		{"empty schedule", jobYAML("valid-name", minimalJob+"schedule: {}"),
			"schedule needs at least one entry in intervals or calendars"},
		{"calendar hour out of range", jobYAML("valid-name", minimalJob+`
schedule:
  calendars: [{hour: [{start: 24}]}]`),
			"hour values must be between 0 and 23"},
		{"calendar range backwards", jobYAML("valid-name", minimalJob+`
schedule:
  calendars: [{minute: [{start: 30, end: 10}]}]`),
			"range end must be greater than or equal to start"},
		{"weekday range wrapping around the week", jobYAML("valid-name", minimalJob+`
schedule:
  calendars: [{dayOfWeek: [{start: FRIDAY, end: MONDAY}]}]`),
			"dayOfWeek range end comes before its start"},
		{"month range wrapping around the year", jobYAML("valid-name", minimalJob+`
schedule:
  calendars: [{month: [{start: NOVEMBER, end: FEBRUARY}]}]`),
			"month range end comes before its start"},
		{"bad jitter", jobYAML("valid-name", minimalJob+`
schedule:
  intervals: [{every: 1h}]
  jitter: "-5m"`),
			"jitter must be milliseconds as digits"},
		{"poll interval too short", jobYAML("valid-name", minimalJob+"pollInterval: 1s"),
			"pollInterval must be at least 10s"},
		{"poll interval in days", jobYAML("valid-name", minimalJob+"pollInterval: 1d"),
			"days are not a unit: write 24h"},
		{"proxy and proxyFrom", jobYAML("valid-name", minimalJob+`
proxy: "http://proxy.example.com:8080"
proxyFrom: {name: proxy, key: url}`),
			"set at most one of spec.proxy and spec.proxyFrom"},
		{"unknown deletion policy", jobYAML("valid-name", minimalJob+"deletionPolicy: Keep"),
			`supported values: "Delete", "Orphan"`},
		{"bad header name", jobYAML("valid-name", minimalJob+`
sink:
  webhook:
    url: "https://hooks.example.com/x"
    headersFrom: [{name: "X Token", secretKeyRef: {name: s, key: k}}]`),
			"header name must be a valid HTTP token"},
		{"sqlite with two replicas", receiverYAML("recv", "replicas: 2"),
			"sqlite storage supports a single replica"},
		{"sqlite with autoscaling", receiverYAML("recv", "autoscaling: {maxReplicas: 3}"),
			"sqlite storage supports a single replica"},
		{"autoscaling min above max", receiverYAML("recv", `
storage: {postgres: {dsnSecretRef: {name: db, key: dsn}}}
autoscaling: {minReplicas: 5, maxReplicas: 2}`),
			"autoscaling.minReplicas must be less than or equal to autoscaling.maxReplicas"},
		{"both storage kinds", receiverYAML("recv", `
storage: {sqlite: {}, postgres: {dsnSecretRef: {name: db, key: dsn}}}`),
			"storage must set exactly one of sqlite or postgres"},
		{"externalURL plain http to a public host", receiverYAML("recv", `externalURL: "http://hooks.example.com/webhooks/intuned"`),
			"externalURL must use https unless the host is loopback"},
		{"externalURL not a URL", receiverYAML("recv", `externalURL: "hooks"`),
			"externalURL must be an absolute http(s) URL"},
		{"pdb with both bounds", receiverYAML("recv", "podDisruptionBudget: {minAvailable: 1, maxUnavailable: 1}"),
			"podDisruptionBudget must set exactly one of minAvailable or maxUnavailable"},
		{"ingress path without slash", receiverYAML("recv", "ingress: {host: hooks.example.com, path: webhooks}"),
			"ingress.path must start with '/'"},
		{"max body below Intuned's results", receiverYAML("recv", "settings: {maxBodyBytes: 2Mi}"),
			"settings.maxBodyBytes must be at least 2.5Mi"},
		{"max body in bytes below Intuned's results", receiverYAML("recv", "settings: {maxBodyBytes: 2000000}"),
			"settings.maxBodyBytes must be at least 2.5Mi"},
		{"max body too large", receiverYAML("recv", "settings: {maxBodyBytes: 65Mi}"),
			"settings.maxBodyBytes must be at most 64Mi"},
		{"deadline too short", receiverYAML("recv", "settings: {deadline: 50ms}"),
			"settings.deadline must be between 100ms and 5m"},
		{"deadline too long", receiverYAML("recv", "settings: {deadline: 1h}"),
			"settings.deadline must be between 100ms and 5m"},
		{"deadline in words", receiverYAML("recv", `settings: {deadline: "2 seconds"}`),
			"settings.deadline must be a Go duration"},
		{"unknown log level", receiverYAML("recv", "settings: {logLevel: trace}"),
			`supported values: "debug", "info", "warn", "error"`},
		{"env sets an operator flag", receiverYAML("recv", "podTemplate: {env: [{name: TZ, value: UTC}, {name: RECEIVER_MAX_BODY_BYTES, value: '1'}]}"),
			"podTemplate.env must not set the variable of a receiver flag the operator sets"},
		{"env twice", receiverYAML("recv", "podTemplate: {env: [{name: TZ, value: UTC}, {name: TZ, value: CET}]}"),
			"Duplicate value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := decodeYAML(t, tt.obj)
			u.SetNamespace(ns)
			err := e.Client.Create(ctxT(t), u)
			if err == nil {
				t.Fatalf("accepted, want rejection containing %q", tt.wantMsg)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("rejected with\n  %v\nwant message containing %q", err, tt.wantMsg)
			}
		})
	}
}

// TestValidObjectsAccepted covers the edges the rules must let through.
func TestValidObjectsAccepted(t *testing.T) {
	e := needEnv(t)
	ns := newNamespace(t, e.Client)
	tests := []struct{ name, obj string }{
		{"jobId with underscores", jobYAML("a", minimalJob+"jobId: My_Job-01")},
		{"https webhook", jobYAML("https-hook", minimalJob+`sink: {webhook: {url: "https://hooks.example.com/x"}}`)},
		{"http localhost", jobYAML("localhost-hook", minimalJob+`sink: {webhook: {url: "http://localhost:8080/x"}}`)},
		{"http 127.0.0.1", jobYAML("loopback-hook", minimalJob+`sink: {webhook: {url: "http://127.0.0.1:9000/x"}}`)},
		{"http [::1]", jobYAML("ipv6-loop-hook", minimalJob+`sink: {webhook: {url: "http://[::1]:9000/x"}}`)},
		{"http *.svc", jobYAML("svc-hook", minimalJob+`sink: {webhook: {url: "http://recv.team-a.svc:8080/webhooks/intuned"}}`)},
		{"http *.svc.cluster.local", jobYAML("cluster-hook", minimalJob+`sink: {webhook: {url: "http://recv.team-a.svc.cluster.local/webhooks/intuned"}}`)},
		{"full schedule", jobYAML("scheduled", minimalJob+`
schedule:
  intervals: [{every: "3600000"}, {every: 30m}]
  calendars:
  - comment: weekdays at noon
    hour: [{start: 12}]
    minute: [{start: 0, end: 59, step: 15}]
    dayOfWeek: [{start: MONDAY, end: FRIDAY}, {start: SUNDAY, end: SUNDAY}]
    month: [{start: JANUARY}, {start: JULY, end: DECEMBER, step: 2}, {start: MARCH, end: MARCH}]
    year: [{start: 2027}]
  jitter: 6h`)},
		{"s3 sink with everything", jobYAML("s3-sink", minimalJob+`
sink:
  s3:
    bucket: results
    region: auto
    prefix: scrapes/
    endpoint: "https://acct.r2.cloudflarestorage.com"
    forcePathStyle: true
    apisToSend: [list]
    credentialsSecretRef: {name: r2}
proxyFrom: {name: proxy, key: url}
authSession: {id: login-1}`)},
		{"postgres receiver that autoscales", receiverYAML("scaled", `
storage: {postgres: {dsnSecretRef: {name: db, key: dsn}}}
autoscaling: {minReplicas: 2, maxReplicas: 10}
podDisruptionBudget: {minAvailable: "50%"}
networkPolicy: {enabled: true}`)},
		{"receiver settings at their bounds", receiverYAML("bounds", `
settings: {maxBodyBytes: 2560Ki, deadline: 100ms, logLevel: debug}
podTemplate:
  imagePullSecrets: [{name: registry}]
  env: [{name: HTTPS_PROXY, value: "http://proxy:3128"}, {name: RECEIVER_BATCH_SIZE, value: "64"}]`)},
		{"receiver settings at their upper bounds", receiverYAML("upper", "settings: {maxBodyBytes: 67108864, deadline: 5m, logLevel: error}")},
		{"receiver with cluster-local externalURL", receiverYAML("svc-url", `externalURL: "http://recv.team-a.svc:8080/webhooks/intuned"`)},
		{"receiver with no spec", "apiVersion: intuned.io/v1alpha1\nkind: WebhookReceiver\nmetadata:\n  name: empty\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := decodeYAML(t, tt.obj)
			u.SetNamespace(ns)
			if err := e.Client.Create(ctxT(t), u); err != nil {
				t.Fatalf("rejected: %v", err)
			}
		})
	}
}

// TestImmutableIdentity: the project and the effective job id cannot change.
func TestImmutableIdentity(t *testing.T) {
	e := needEnv(t)
	ns := newNamespace(t, e.Client)
	tests := []struct {
		name    string
		create  string
		mutate  func(*intunedv1alpha1.IntunedJob)
		wantMsg string // empty: the update must succeed
	}{
		{"change project", minimalJob, func(j *intunedv1alpha1.IntunedJob) { j.Spec.Project = "other-project" },
			"project is immutable"},
		{"change jobId", minimalJob + "jobId: first-job-id", func(j *intunedv1alpha1.IntunedJob) { j.Spec.JobID = "second-job-id" },
			"is immutable"},
		{"set jobId different from name", minimalJob, func(j *intunedv1alpha1.IntunedJob) { j.Spec.JobID = "another-id" },
			"the Intuned job id (spec.jobId, or metadata.name when unset) is immutable"},
		{"set jobId equal to name", minimalJob, func(j *intunedv1alpha1.IntunedJob) { j.Spec.JobID = j.Name },
			""},
		{"change payload", minimalJob, func(j *intunedv1alpha1.IntunedJob) { j.Spec.Payload[0].APIName = "details" },
			""},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := fmt.Sprintf("immutable-%d", i)
			u := decodeYAML(t, jobYAML(name, tt.create))
			u.SetNamespace(ns)
			if err := e.Client.Create(ctxT(t), u); err != nil {
				t.Fatalf("create: %v", err)
			}
			var job intunedv1alpha1.IntunedJob
			if err := e.Client.Get(ctxT(t), client.ObjectKey{Namespace: ns, Name: name}, &job); err != nil {
				t.Fatal(err)
			}
			tt.mutate(&job)
			err := e.Client.Update(ctxT(t), &job)
			switch {
			case tt.wantMsg == "" && err != nil:
				t.Fatalf("update rejected: %v", err)
			case tt.wantMsg != "" && err == nil:
				t.Fatalf("update accepted, want rejection containing %q", tt.wantMsg)
			case tt.wantMsg != "" && !strings.Contains(err.Error(), tt.wantMsg):
				t.Fatalf("rejected with\n  %v\nwant message containing %q", err, tt.wantMsg)
			}
		})
	}
}

// TestSQLiteSizeOnlyGrows: a receiver's volume size may be raised or kept
// (in any notation), never lowered.
func TestSQLiteSizeOnlyGrows(t *testing.T) {
	e := needEnv(t)
	ns := newNamespace(t, e.Client)
	u := decodeYAML(t, receiverYAML("sized", "storage: {sqlite: {size: 2Gi}}"))
	u.SetNamespace(ns)
	if err := e.Client.Create(ctxT(t), u); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ size, wantMsg string }{
		{"1Gi", "storage.sqlite.size cannot be lowered"},
		{"2047Mi", "storage.sqlite.size cannot be lowered"},
		{"2147483648", ""}, // 2Gi in bytes: unchanged
		{"3Gi", ""},
		{"2Gi", "storage.sqlite.size cannot be lowered"},
	} {
		var whr intunedv1alpha1.WebhookReceiver
		if err := e.Client.Get(ctxT(t), client.ObjectKey{Namespace: ns, Name: "sized"}, &whr); err != nil {
			t.Fatal(err)
		}
		whr.Spec.Storage.SQLite.Size = ptr.To(resource.MustParse(tt.size))
		err := e.Client.Update(ctxT(t), &whr)
		switch {
		case tt.wantMsg == "" && err != nil:
			t.Errorf("size %s: rejected: %v", tt.size, err)
		case tt.wantMsg != "" && (err == nil || !strings.Contains(err.Error(), tt.wantMsg)):
			t.Errorf("size %s: got %v, want rejection containing %q", tt.size, err, tt.wantMsg)
		}
	}
}

// TestEnvCannotOverrideOperatorFlags: every flag the operator passes to the
// receiver has its environment variable (RECEIVER_ + name) refused in
// podTemplate.env, so the CEL list cannot fall behind resources.ReceiverArgs.
func TestEnvCannotOverrideOperatorFlags(t *testing.T) {
	e := needEnv(t)
	ns := newNamespace(t, e.Client)
	settings := &intunedv1alpha1.ReceiverSettings{
		MaxBodyBytes: ptr.To(resource.MustParse("4Mi")), Deadline: &metav1.Duration{Duration: time.Second}, LogLevel: "info"}
	names := map[string]bool{"RECEIVER_POSTGRES_DSN": true} // the DSN file flag wins, but a DSN in env is refused too
	for _, storage := range []*intunedv1alpha1.ReceiverStorage{
		{SQLite: &intunedv1alpha1.SQLiteStorage{}},
		{Postgres: &intunedv1alpha1.PostgresStorage{DSNSecretRef: intunedv1alpha1.SecretKeyRef{Name: "db", Key: "dsn"}}},
	} {
		w := &intunedv1alpha1.WebhookReceiver{Spec: intunedv1alpha1.WebhookReceiverSpec{Settings: settings, Storage: storage,
			Retention: &intunedv1alpha1.ReceiverRetention{
				MaxAge: &metav1.Duration{Duration: 720 * time.Hour}, MaxSize: ptr.To(resource.MustParse("1Gi"))}}}
		for _, a := range resources.ReceiverArgs(w) {
			flag, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
			names["RECEIVER_"+strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))] = true
		}
	}
	for name := range names {
		u := decodeYAML(t, receiverYAML("env", "podTemplate: {env: [{name: "+name+", value: x}]}"))
		u.SetNamespace(ns)
		if err := e.Client.Create(ctxT(t), u); err == nil || !strings.Contains(err.Error(), "podTemplate.env must not set") {
			t.Errorf("env %s: got %v, want it refused", name, err)
		}
	}
}

// TestDefaults: the API server fills in the documented defaults.
func TestDefaults(t *testing.T) {
	e := needEnv(t)
	ns := newNamespace(t, e.Client)

	u := decodeYAML(t, jobYAML("defaults-job", minimalJob+`
sink:
  webhook: {url: "https://hooks.example.com/x"}
authSession: {id: session-1}
configuration: {retry: {}}`))
	u.SetNamespace(ns)
	if err := e.Client.Create(ctxT(t), u); err != nil {
		t.Fatal(err)
	}
	var job intunedv1alpha1.IntunedJob
	if err := e.Client.Get(ctxT(t), client.ObjectKey{Namespace: ns, Name: "defaults-job"}, &job); err != nil {
		t.Fatal(err)
	}
	s := job.Spec
	check := func(field string, got, want any) {
		t.Helper()
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s = %v, want %v", field, got, want)
		}
	}
	check("deletionPolicy", s.DeletionPolicy, intunedv1alpha1.DeletionPolicyDelete)
	check("pollInterval", s.PollInterval != nil && s.PollInterval.Duration == 10*time.Minute, true)
	check("paused", s.Paused, false)
	check("suspend", s.Suspend, false)
	check("adopt", s.Adopt, false)
	check("configuration.requestTimeout", deref(s.Configuration.RequestTimeout), 600)
	check("configuration.retry.maximumAttempts", deref(s.Configuration.Retry.MaximumAttempts), 3)
	check("payload[0].parameters", string(s.Payload[0].Parameters.Raw), "{}")
	check("sink.webhook.retry", deref(s.Sink.Webhook.Retry), 3)
	check("sink.webhook.timeout", deref(s.Sink.Webhook.Timeout), 5000)
	check("sink.webhook.skipOnFail", s.Sink.Webhook.SkipOnFail, false)
	check("authSession.checkAttempts", deref(s.AuthSession.CheckAttempts), 3)
	check("authSession.createAttempts", deref(s.AuthSession.CreateAttempts), 3)

	u = decodeYAML(t, receiverYAML("defaults-recv", `
ingress: {host: hooks.example.com}
tokenSecretRef: {name: my-token}`))
	u.SetNamespace(ns)
	if err := e.Client.Create(ctxT(t), u); err != nil {
		t.Fatal(err)
	}
	var whr intunedv1alpha1.WebhookReceiver
	if err := e.Client.Get(ctxT(t), client.ObjectKey{Namespace: ns, Name: "defaults-recv"}, &whr); err != nil {
		t.Fatal(err)
	}
	r := whr.Spec
	check("replicas", deref(r.Replicas), 1)
	check("storage.sqlite set", r.Storage != nil && r.Storage.SQLite != nil && r.Storage.Postgres == nil, true)
	check("storage.sqlite.size", r.Storage.SQLite.Size.Cmp(resource.MustParse(intunedv1alpha1.DefaultSQLiteSize)), 0)
	check("ingress.path", r.Ingress.Path, intunedv1alpha1.DefaultIngressPath)
	check("tokenSecretRef.key", r.TokenSecretRef.Key, intunedv1alpha1.DefaultTokenSecretKey)

	u = decodeYAML(t, receiverYAML("defaults-hpa", `
storage: {postgres: {dsnSecretRef: {name: db, key: dsn}}}
autoscaling: {maxReplicas: 4}`))
	u.SetNamespace(ns)
	if err := e.Client.Create(ctxT(t), u); err != nil {
		t.Fatal(err)
	}
	if err := e.Client.Get(ctxT(t), client.ObjectKey{Namespace: ns, Name: "defaults-hpa"}, &whr); err != nil {
		t.Fatal(err)
	}
	check("autoscaling.minReplicas", deref(whr.Spec.Autoscaling.MinReplicas), 1)
	check("autoscaling.targetCPUUtilizationPercentage", deref(whr.Spec.Autoscaling.TargetCPUUtilizationPercentage), 80)
	check("storage.sqlite unset with postgres", whr.Spec.Storage.SQLite == nil, true)
}

func deref[T any](p *T) any {
	if p == nil {
		return "<nil>"
	}
	return *p
}

// TestKubectlExplain: `kubectl explain` (the real binary) teaches the sink
// and storage choices from the field docs.
func TestKubectlExplain(t *testing.T) {
	e := needEnv(t)
	assets, err := testenv.AssetsDir()
	if err != nil {
		t.Fatal(err)
	}
	kubectl := e.Environment.ControlPlane.KubeCtl()
	kubectl.Path = filepath.Join(assets, "kubectl")
	tests := []struct {
		field string
		want  []string
	}{
		{"intunedjob.spec.sink", []string{"exactly one of", "webhook", "receiverRef", "s3"}},
		{"intunedjob.spec.sink.webhook.url", []string{"must use https unless the host is loopback"}},
		{"intunedjob.spec.schedule.calendars", []string{"[{start: 0, end: 59, step: 15}]", "dayOfWeek"}},
		{"webhookreceiver.spec.storage", []string{"sqlite", "postgres", "one replica"}},
		{"ij.spec.deletionPolicy", []string{"Orphan"}},
	}
	for _, tt := range tests {
		t.Run(tt.field, func(t *testing.T) {
			stdout, stderr, err := kubectl.Run("explain", tt.field)
			if err != nil {
				b, _ := io.ReadAll(stderr)
				t.Fatalf("kubectl explain %s: %v\n%s", tt.field, err, b)
			}
			b, _ := io.ReadAll(stdout)
			for _, w := range tt.want {
				if !strings.Contains(string(b), w) {
					t.Errorf("kubectl explain %s lacks %q:\n%s", tt.field, w, b)
				}
			}
		})
	}
}

// TestNewObjectsInProgress: an object the controller has not written status
// for yet (its first reconcile is still under way, e.g. an IntunedJob
// whose create on Intuned is slow: nothing is written before it) must not
// read as done. kstatus (kubectl wait, Flux, Argo CD) reads an object with
// no status as Current; the CRDs default status.observedGeneration to 0,
// which it reads as InProgress (generation 1 not yet observed). Defaults
// apply on every read from storage (GET, LIST, watch), before and after
// a metadata write, until the first status write.
func TestNewObjectsInProgress(t *testing.T) {
	e := needEnv(t)
	ns := newNamespace(t, e.Client)
	tests := []struct{ name, obj string }{
		{"IntunedJob", jobYAML("new-job", minimalJob)},
		{"WebhookReceiver", receiverYAML("new-recv", "ingress: {host: hooks.example.com}")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := ctxT(t)
			u := decodeYAML(t, tc.obj)
			u.SetNamespace(ns)
			// A client's status in the create is dropped (status
			// subresource): it cannot make the object look done.
			u.Object["status"] = map[string]any{"observedGeneration": int64(1)}
			if err := e.Client.Create(ctx, u); err != nil {
				t.Fatal(err)
			}
			key := client.ObjectKeyFromObject(u)
			wantKstatus := func(when string, want kstatus.Status) {
				t.Helper()
				got := &unstructured.Unstructured{}
				got.SetGroupVersionKind(u.GroupVersionKind())
				if err := e.Client.Get(ctx, key, got); err != nil {
					t.Fatal(err)
				}
				og, found, _ := unstructured.NestedInt64(got.Object, "status", "observedGeneration")
				res, err := kstatus.Compute(got)
				if err != nil {
					t.Fatal(err)
				}
				if res.Status != want {
					t.Errorf("%s: kstatus %s (%s), want %s; status.observedGeneration %d (present %v), generation %d",
						when, res.Status, res.Message, want, og, found, got.GetGeneration())
				}
			}
			wantKstatus("created", kstatus.InProgressStatus)

			// A metadata write (as the controller's finalizer) does not end it.
			u.SetLabels(map[string]string{"touched": "yes"})
			if err := e.Client.Update(ctx, u); err != nil {
				t.Fatal(err)
			}
			wantKstatus("after a metadata write", kstatus.InProgressStatus)

			// The controller's first status write, through the Go type
			// (omitempty) and a merge patch as internal/controller/report
			// does it: Ready at the generation, Current.
			obj, err := e.Client.Scheme().New(u.GroupVersionKind())
			if err != nil {
				t.Fatal(err)
			}
			typed := obj.(client.Object)
			if err := e.Client.Get(ctx, key, typed); err != nil {
				t.Fatal(err)
			}
			before := typed.DeepCopyObject().(client.Object)
			conds := &metav1.Condition{Type: intunedv1alpha1.ConditionReady, Status: metav1.ConditionTrue,
				Reason: "Test", Message: "done", ObservedGeneration: typed.GetGeneration(), LastTransitionTime: metav1.Now()}
			switch o := typed.(type) {
			case *intunedv1alpha1.IntunedJob:
				o.Status.ObservedGeneration = o.Generation
				o.Status.Conditions = []metav1.Condition{*conds}
			case *intunedv1alpha1.WebhookReceiver:
				o.Status.ObservedGeneration = o.Generation
				o.Status.Conditions = []metav1.Condition{*conds}
			}
			if err := e.Client.Status().Patch(ctx, typed, client.MergeFrom(before)); err != nil {
				t.Fatal(err)
			}
			wantKstatus("after the first status write", kstatus.CurrentStatus)

		})
	}
}
