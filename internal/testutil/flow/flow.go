package flow

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/testutil/proc"
	"github.com/intuned-operator/intuned-operator/internal/testutil/testenv"
)

// Annotations users set on the custom resources (the API's public contract).
const (
	AnnotationTrigger     = "intuned.io/trigger"
	AnnotationRotateToken = "intuned.io/rotate-token"
)

// Kustomize renders config/<dir> with the kustomize built into kubectl.
func Kustomize(ctx context.Context, kubectl, dir string) ([]*unstructured.Unstructured, error) {
	cmd := exec.CommandContext(ctx, kubectl, "kustomize", filepath.Join(proc.RepoRoot(), "config", dir))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("kubectl kustomize config/%s: %v: %s", dir, err, stderr.String())
	}
	objs, err := testenv.DecodeManifests(out)
	if err != nil {
		return nil, fmt.Errorf("parse config/%s as rendered: %w", dir, err)
	}
	return objs, nil
}

// Samples are the objects of config/samples (the webhook guide's quickstart).
type Samples struct {
	Credentials *corev1.Secret
	Receiver    *intunedv1alpha1.WebhookReceiver
	Job         *intunedv1alpha1.IntunedJob
}

// LoadSamples renders config/samples with the kustomize of the given kubectl;
// Credentials is the Secret the IntunedJob names, which a user creates
// beside the samples (UseSim fills it in).
func LoadSamples(ctx context.Context, kubectl string) (*Samples, error) {
	objs, err := Kustomize(ctx, kubectl, "samples")
	if err != nil {
		return nil, err
	}
	s := &Samples{}
	for _, u := range objs {
		var target any
		switch u.GetKind() {
		case "Secret":
			// Applying the samples again would overwrite the user's key.
			return nil, fmt.Errorf("config/samples must not hold a Secret (%s): the user creates the credentials Secret with kubectl create secret", u.GetName())
		case "WebhookReceiver":
			s.Receiver = &intunedv1alpha1.WebhookReceiver{}
			target = s.Receiver
		case "IntunedJob":
			s.Job = &intunedv1alpha1.IntunedJob{}
			target = s.Job
		default:
			continue
		}
		if err := k8sruntime.DefaultUnstructuredConverter.FromUnstructured(u.Object, target); err != nil {
			return nil, fmt.Errorf("%s %s: %w", u.GetKind(), u.GetName(), err)
		}
	}
	if s.Receiver == nil || s.Job == nil || s.Job.Spec.CredentialsRef == nil {
		return nil, errors.New("config/samples must hold a WebhookReceiver and an IntunedJob with spec.credentialsRef")
	}
	// The Secret the README has the user create (kubectl create secret).
	s.Credentials = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: s.Job.Spec.CredentialsRef.Name}}
	return s, nil
}

// UseSim moves the samples into namespace with credentials that point at
// the simulator (the files stay as they are).
func (s *Samples) UseSim(namespace string, sim *Sim) {
	s.Credentials.Namespace = namespace
	s.Credentials.StringData = map[string]string{
		intunedv1alpha1.CredentialsKeyWorkspaceID: sim.WorkspaceID,
		intunedv1alpha1.CredentialsKeyAPIKey:      sim.APIKey,
		intunedv1alpha1.CredentialsKeyBaseURL:     sim.BaseURL,
	}
	s.Credentials.Data = nil
	s.Receiver.Namespace = namespace
	s.Job.Namespace = namespace
}

// UseExternalURL has the receiver reached at externalURL (on this machine:
// a loopback address, as a user would with a tunnel) instead of the
// sample's Ingress.
func (s *Samples) UseExternalURL(externalURL string) {
	s.Receiver.Spec.Ingress = nil
	s.Receiver.Spec.ExternalURL = externalURL
}

// Apply creates the samples.
func (s *Samples) Apply(ctx context.Context, c client.Client) error {
	for _, o := range []client.Object{s.Credentials, s.Receiver, s.Job} {
		if err := c.Create(ctx, o); err != nil {
			return fmt.Errorf("create %T %s: %w", o, o.GetName(), err)
		}
	}
	return nil
}

// Trigger sets the intuned.io/trigger annotation to value.
func Trigger(ctx context.Context, c client.Client, ns, name, value string) error {
	return annotate(ctx, c, &intunedv1alpha1.IntunedJob{}, ns, name, AnnotationTrigger, value)
}

// Backfill sets the intuned.io/backfill annotation of IntunedJob ns/name to
// a JobRun id.
func Backfill(ctx context.Context, c client.Client, ns, name, jobRunID string) error {
	return annotate(ctx, c, &intunedv1alpha1.IntunedJob{}, ns, name, intunedv1alpha1.AnnotationBackfill, jobRunID)
}

// RotateToken sets the intuned.io/rotate-token annotation to value.
func RotateToken(ctx context.Context, c client.Client, ns, name, value string) error {
	return annotate(ctx, c, &intunedv1alpha1.WebhookReceiver{}, ns, name, AnnotationRotateToken, value)
}

func annotate(ctx context.Context, c client.Client, obj client.Object, ns, name, k, v string) error {
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{k: v}}})
	obj.SetNamespace(ns)
	obj.SetName(name)
	return c.Patch(ctx, obj, client.RawPatch(types.MergePatchType, patch))
}

// ReceiverTokens reads the WebhookReceiver's token Secret
// (status.tokenSecretName): the ingest token and the read API token.
func ReceiverTokens(ctx context.Context, c client.Client, ns, name string) (ingest, read string, err error) {
	var whr intunedv1alpha1.WebhookReceiver
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &whr); err != nil {
		return "", "", err
	}
	if whr.Status.TokenSecretName == "" {
		return "", "", fmt.Errorf("WebhookReceiver %s/%s has no status.tokenSecretName yet", ns, name)
	}
	var sec corev1.Secret
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: whr.Status.TokenSecretName}, &sec); err != nil {
		return "", "", err
	}
	return string(sec.Data["token"]), string(sec.Data["read-token"]), nil
}

// DeliveryReport compares the simulator's delivery log of one job with what
// the receiver stored.
type DeliveryReport struct {
	Sent      int      // deliveries in the simulator's log (excluding skipped)
	Delivered int      // of those, acknowledged with 2xx
	Pending   int      // still being retried
	Exhausted int      // given up after all retries
	Stored    int      // rows in the receiver store for the job
	Attempts  int      // HTTP attempts the simulator made
	Problems  []string // anything that is not "every delivery stored exactly once, byte-identical"
}

// OK is true when every delivery arrived exactly once with the same bytes.
func (r DeliveryReport) OK() bool { return len(r.Problems) == 0 && r.Pending == 0 && r.Exhausted == 0 }

func (r DeliveryReport) String() string {
	s := fmt.Sprintf("sent=%d delivered=%d pending=%d exhausted=%d stored=%d attempts=%d", r.Sent, r.Delivered, r.Pending, r.Exhausted, r.Stored, r.Attempts)
	if len(r.Problems) > 0 {
		s += "; problems: " + strings.Join(r.Problems, "; ")
	}
	return s
}

// CompareDeliveries checks that every delivery of jobID in the simulator's
// log is in the receiver store exactly once, with a byte-identical body
// (the store's raw body hashed against the simulator's hash of the bytes it
// sent), and that the store holds nothing else for the job.
//
// With jobRunID set, only that JobRun's deliveries are compared.
func CompareDeliveries(ctx context.Context, sim *Sim, rc ReceiverClient, jobID, jobRunID string) (DeliveryReport, error) {
	var rep DeliveryReport
	sent, err := sim.Deliveries(ctx, jobID)
	if err != nil {
		return rep, fmt.Errorf("simulator delivery log: %w", err)
	}
	stored, err := rc.List(ctx, jobID, jobRunID)
	if err != nil {
		return rep, fmt.Errorf("receiver read API: %w", err)
	}
	rep.Stored = len(stored)
	count := map[string]int{}
	for _, d := range stored {
		count[d.RunID]++
	}
	want := map[string]bool{}
	for _, d := range sent {
		if d.SinkType != "webhook" || d.Outcome == "skipped" || (jobRunID != "" && d.JobRunID != jobRunID) {
			continue
		}
		rep.Sent++
		rep.Attempts += len(d.Attempts)
		want[d.RunID] = true
		switch d.Outcome {
		case "delivered":
			rep.Delivered++
		case "pending":
			rep.Pending++
			continue
		case "exhausted":
			rep.Exhausted++
			rep.Problems = append(rep.Problems, fmt.Sprintf("run %s (%s): simulator gave up after %d attempts (%s)", d.RunID, d.APIName, len(d.Attempts), attemptSummary(d.Attempts)))
			continue
		}
		switch n := count[d.RunID]; n {
		case 1:
		case 0:
			rep.Problems = append(rep.Problems, fmt.Sprintf("run %s: acknowledged but not in the store", d.RunID))
			continue
		default:
			rep.Problems = append(rep.Problems, fmt.Sprintf("run %s: stored %d times", d.RunID, n))
		}
		raw, err := rc.Raw(ctx, d.RunID)
		if err != nil {
			rep.Problems = append(rep.Problems, fmt.Sprintf("run %s: read back: %v", d.RunID, err))
			continue
		}
		sum := sha256.Sum256(raw)
		if hex.EncodeToString(sum[:]) != d.BodySHA256 {
			rep.Problems = append(rep.Problems, fmt.Sprintf("run %s: stored body differs from the bytes sent", d.RunID))
		}
	}
	var extra []string
	for id := range count {
		if !want[id] {
			extra = append(extra, id)
		}
	}
	sort.Strings(extra)
	for _, id := range extra {
		rep.Problems = append(rep.Problems, fmt.Sprintf("run %s: in the store but not acknowledged by the simulator's log", id))
	}
	return rep, nil
}

// attemptSummary counts attempts by outcome, e.g. "201 x1, 401 x32".
func attemptSummary(as []SimAttempt) string {
	counts := map[string]int{}
	var order []string
	for _, a := range as {
		k := fmt.Sprint(a.StatusCode)
		if a.Error != "" {
			k = "error " + a.Error
		}
		if counts[k] == 0 {
			order = append(order, k)
		}
		counts[k]++
	}
	parts := make([]string, 0, len(order))
	for _, k := range order {
		parts = append(parts, fmt.Sprintf("%s x%d", k, counts[k]))
	}
	return strings.Join(parts, ", ")
}
