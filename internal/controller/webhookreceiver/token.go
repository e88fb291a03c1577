package webhookreceiver

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/intuned-operator/intuned-operator/internal/controller/index"
	"github.com/intuned-operator/intuned-operator/internal/controller/report"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/resources"
	"github.com/intuned-operator/intuned-operator/internal/token"
)

// DefaultTokenPropagationDelay is how long a new token is staged before it
// becomes current: kubelet refreshes mounted Secrets on its periodic Pod
// sync (1 minute by default, plus jitter), and the receiver re-reads its
// files every 2 seconds.
const DefaultTokenPropagationDelay = 90 * time.Second

// reconcileToken keeps the controller-owned token Secret: it reads the
// Secret and what the referencing IntunedJobs report, takes one step of the
// rotation (token.Step, pure: see internal/token and
// docs/token-rotation.md), and writes the result. It returns the state now
// stored.
//
// When the user's Secret is missing it returns the Secret's existing content
// (the Pods keep working with it) together with a *report.Failure.
func (r *Reconciler) reconcileToken(ctx context.Context, whr *intunedv1alpha1.WebhookReceiver) (*tokenState, error) {
	// Observe. Uncached: the rotation decision must see our last write.
	key := client.ObjectKey{Namespace: whr.Namespace, Name: resources.TokenSecretName(whr)}
	var cur corev1.Secret
	exists := true
	if err := r.APIReader.Get(ctx, key, &cur); err != nil {
		if !apierrors.IsNotFound(err) {
			return nil, err
		}
		exists = false
	}
	if exists && !metav1.IsControlledBy(&cur, whr) {
		return nil, conflictError(
			"Secret %s already exists and is not owned by this WebhookReceiver; the operator keeps the receiver's token there, so rename or delete it",
			key.Name)
	}
	stored := tokenStateOf(&cur)
	in := token.Inputs{
		RotateRequest: whr.Annotations[intunedv1alpha1.AnnotationRotateToken],
		Delay:         r.delay(),
		Grace:         r.grace(),
	}
	if ref := whr.Spec.TokenSecretRef; ref != nil {
		user, err := r.userToken(ctx, whr.Namespace, ref)
		if err != nil {
			if exists {
				return &tokenState{State: stored}, err
			}
			return nil, err
		}
		in.User = user
	}
	jobs, err := r.referencingJobs(ctx, whr)
	if err != nil {
		return nil, err
	}
	in.Jobs = tokenJobs(jobs)
	// Step has no randomness of its own: it is handed fresh tokens and
	// uses them only when it needs a new one.
	if in.Fresh, err = token.Generate(r.random()); err != nil {
		return nil, err
	}
	if in.FreshRead, err = token.Generate(r.random()); err != nil {
		return nil, err
	}

	// Decide.
	next, out := token.Step(stored, in, r.now())

	// Act.
	secret := resources.TokenSecret(whr, secretData(next))
	if exists {
		// Optimistic lock: if the Secret changed since we read it, the apply
		// fails and the next reconcile decides again from the new content.
		secret.ResourceVersion = cur.ResourceVersion
	}
	if err := r.apply(ctx, secret); err != nil {
		return nil, err
	}
	return &tokenState{State: next, Outcome: out}, nil
}

// DefaultPreviousTokenGrace keeps the previous token after every job
// carries the new one: a JobRun keeps the sink it started with, and
// Intuned retries a failed delivery for up to an hour.
const DefaultPreviousTokenGrace = time.Hour

// tokenState is the token Secret's content after a reconcile and what the
// rotation step found.
type tokenState struct {
	token.State
	token.Outcome
}

// tokenStateOf reads the rotation state from the token Secret (an empty
// one when it does not exist). The Secret keeps one second token under
// previous-token: the staged next token while staged-at is set, else the
// retiring previous one.
func tokenStateOf(s *corev1.Secret) token.State {
	second := string(s.Data[intunedv1alpha1.TokenSecretKeyPreviousToken])
	st := token.State{
		Current:         string(s.Data[intunedv1alpha1.TokenSecretKeyToken]),
		ReadToken:       string(s.Data[intunedv1alpha1.TokenSecretKeyReadToken]),
		RotationHandled: s.Annotations[resources.AnnotationRotationHandled],
		CaughtUpAt:      parseTime(s.Annotations[resources.AnnotationJobsCaughtUpAt]),
	}
	stagedAt, staged := s.Annotations[resources.AnnotationTokenStagedAt]
	switch {
	case staged && stagedAt != "" && second != "":
		st.Next, st.Staged, st.StagedAt = second, true, parseTime(stagedAt)
	default:
		// A staged token removed by hand cancels the rotation.
		st.Previous = second
	}
	return st
}

// secretData is the token Secret's content for a rotation state.
func secretData(st token.State) resources.TokenData {
	d := resources.TokenData{
		Token:           st.Current,
		PreviousToken:   st.Previous,
		ReadToken:       st.ReadToken,
		RotationHandled: st.RotationHandled,
		CaughtUpAt:      formatTime(st.CaughtUpAt),
	}
	if st.Staged {
		d.PreviousToken, d.StagedAt = st.Next, formatTime(st.StagedAt)
	}
	return d
}

// tokenJobs is what the referencing IntunedJobs report to the rotation.
func tokenJobs(jobs []intunedv1alpha1.IntunedJob) []token.Job {
	out := make([]token.Job, 0, len(jobs))
	for i := range jobs {
		j := token.Job{Name: jobs[i].Name, Fingerprint: jobFingerprint(&jobs[i])}
		if run := jobs[i].Status.LastJobRun; run != nil {
			j.HasRun = true
			if run.Start != nil {
				j.RunStart = &run.Start.Time
			}
			if run.End != nil {
				j.RunEnd = &run.End.Time
			}
		}
		out = append(out, j)
	}
	return out
}

// parseTime reads an RFC 3339 annotation; unreadable (edited by hand)
// reads as zero, which the rotation treats as "start this wait over".
func parseTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}
	}
	return t
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// fingerprints returns the status fingerprints: current, previous (after a
// swap) and next (while staged).
func (st *tokenState) fingerprints() (current, previous, next string) {
	return token.Fingerprint(st.Current), token.Fingerprint(st.Previous), token.Fingerprint(st.Next)
}

func (r *Reconciler) delay() time.Duration {
	if r.TokenPropagationDelay == 0 {
		return DefaultTokenPropagationDelay
	}
	return r.TokenPropagationDelay
}

func (r *Reconciler) grace() time.Duration {
	if r.PreviousTokenGrace == 0 {
		return DefaultPreviousTokenGrace
	}
	return r.PreviousTokenGrace
}

func (r *Reconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// userToken reads the token from the user's Secret. Surrounding whitespace
// (a trailing newline from `kubectl create secret --from-file`) is removed:
// the receiver trims its files too, and the IntunedJob controller sends the
// token in a header.
func (r *Reconciler) userToken(ctx context.Context, namespace string, ref *intunedv1alpha1.TokenSecretReference) (string, error) {
	k := ref.Key
	if k == "" {
		k = intunedv1alpha1.DefaultTokenSecretKey
	}
	var s corev1.Secret
	if err := r.Get(ctx, client.ObjectKey{Namespace: namespace, Name: ref.Name}, &s); err != nil {
		if apierrors.IsNotFound(err) {
			return "", report.WaitForf(intunedv1alpha1.ReasonSecretNotFound,
				"token Secret %s (spec.tokenSecretRef) not found", ref.Name)
		}
		return "", err
	}
	tok := strings.TrimSpace(string(s.Data[k]))
	if tok == "" {
		return "", report.WaitForf(intunedv1alpha1.ReasonSecretNotFound,
			"token Secret %s has no key %q or it is empty (spec.tokenSecretRef)", ref.Name, k)
	}
	for _, c := range []byte(tok) {
		if c < 0x20 || c > 0x7e {
			return "", invalidSpecf(
				"the token in Secret %s key %q must be printable ASCII (it is sent in an HTTP header)", ref.Name, k)
		}
	}
	return tok, nil
}

// referencingJobs lists the IntunedJobs whose sink references this
// receiver, sorted by name.
func (r *Reconciler) referencingJobs(ctx context.Context, whr *intunedv1alpha1.WebhookReceiver) ([]intunedv1alpha1.IntunedJob, error) {
	var jobs intunedv1alpha1.IntunedJobList
	if err := r.List(ctx, &jobs, client.InNamespace(whr.Namespace),
		client.MatchingFields{index.IntunedJobReceiverRef: whr.Name}); err != nil {
		return nil, fmt.Errorf("list IntunedJobs referencing the receiver: %w", err)
	}
	sort.Slice(jobs.Items, func(i, k int) bool { return jobs.Items[i].Name < jobs.Items[k].Name })
	return jobs.Items, nil
}
