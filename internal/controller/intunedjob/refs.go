package intunedjob

import (
	"context"
	"fmt"

	"github.com/intuned-operator/intuned-operator/internal/controller/report"
	"github.com/intuned-operator/intuned-operator/internal/controller/sharding"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
)

// This file reads what an IntunedJob's spec points at: header, S3 and proxy
// Secrets and the WebhookReceiver of the link. The values go into
// resolvedRefs and from there only into the request sent to Intuned.

// receiverTokenKey is the key of the receiver's token Secret holding the
// current token (the WebhookReceiver controller owns that Secret).
const receiverTokenKey = intunedv1alpha1.TokenSecretKeyToken

// resolveRefs reads every Secret and the WebhookReceiver the spec references.
// A missing Secret or key is reported as SecretNotFound; a missing receiver
// as ReceiverNotFound; a receiver that is not Ready, has no URL or no token
// yet as ReceiverNotReady. All of these wait for a watch event.
func (r *Reconciler) resolveRefs(ctx context.Context, job *intunedv1alpha1.IntunedJob) (resolvedRefs, error) {
	var refs resolvedRefs
	if s := job.Spec.Sink; s != nil && s.Webhook != nil {
		for _, h := range s.Webhook.HeadersFrom {
			v, err := r.secretValue(ctx, job.Namespace, h.SecretKeyRef.Name, h.SecretKeyRef.Key)
			if err != nil {
				return refs, err
			}
			if refs.Headers == nil {
				refs.Headers = map[string]string{}
			}
			refs.Headers[h.Name] = v
		}
		if rr := s.Webhook.ReceiverRef; rr != nil {
			if err := r.receiverLink(ctx, job.Namespace, rr.Name, &refs); err != nil {
				return refs, err
			}
		}
	}
	if s := job.Spec.Sink; s != nil && s.S3 != nil {
		name := s.S3.CredentialsSecretRef.Name
		var err error
		if refs.S3AccessKeyID, err = r.secretValue(ctx, job.Namespace, name, intunedv1alpha1.S3KeyAccessKeyID); err != nil {
			return refs, err
		}
		if refs.S3SecretAccessKey, err = r.secretValue(ctx, job.Namespace, name, intunedv1alpha1.S3KeySecretAccessKey); err != nil {
			return refs, err
		}
	}
	if p := job.Spec.ProxyFrom; p != nil {
		v, err := r.secretValue(ctx, job.Namespace, p.Name, p.Key)
		if err != nil {
			return refs, err
		}
		refs.Proxy = v
	}
	return refs, nil
}

// secretValue returns one non-empty key of a Secret in namespace.
func (r *Reconciler) secretValue(ctx context.Context, namespace, name, key string) (string, error) {
	s, err := r.secret(ctx, types.NamespacedName{Namespace: namespace, Name: name})
	if err != nil {
		return "", err
	}
	return valueFrom(namespace, name, key, s)
}

// valueFrom is key of Secret namespace/name (s; nil: it does not exist),
// or why the job must wait for it.
func valueFrom(namespace, name, key string, s *corev1.Secret) (string, error) {
	if s == nil {
		return "", report.WaitFor(intunedv1alpha1.ReasonSecretNotFound, fmt.Sprintf("Secret %s/%s not found", namespace, name))
	}
	v := s.Data[key]
	if len(v) == 0 {
		return "", report.WaitFor(intunedv1alpha1.ReasonSecretNotFound, fmt.Sprintf("Secret %s/%s has no key %q", namespace, name, key))
	}
	return string(v), nil
}

// receiverLink sets the URL, token and API of a WebhookReceiver in refs, or
// returns why the job must wait for it. Nothing is pushed to Intuned until
// the receiver is Ready and both URL and token are known, so Intuned never
// gets an unreachable URL. The token Secret is read only once the receiver
// is usable.
func (r *Reconciler) receiverLink(ctx context.Context, namespace, name string, refs *resolvedRefs) error {
	var whr intunedv1alpha1.WebhookReceiver
	if err := r.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, &whr); err != nil {
		if !apierrors.IsNotFound(err) {
			return err
		}
		return r.receiverMissing(ctx, namespace, name)
	}
	if err := receiverUsable(namespace, name, &whr); err != nil {
		return err
	}
	tokenSecret, err := r.secret(ctx, types.NamespacedName{Namespace: namespace, Name: whr.Status.TokenSecretName})
	if err != nil {
		return err
	}
	token, err := receiverToken(name, &whr, tokenSecret)
	if err != nil {
		return err
	}
	refs.ReceiverURL, refs.ReceiverToken = whr.Status.URL, token
	refs.ReceiverAPI = r.receiverAPI(&whr)
	refs.ReceiverReadToken = string(tokenSecret.Data[intunedv1alpha1.TokenSecretKeyReadToken])
	return nil
}

// receiverMissing is why a job waits for a WebhookReceiver the manager's
// cache does not hold: it does not exist, or (the cache holds only the
// manager's shard) another shard reconciles it. Only the API server knows
// which; it is asked only while the job waits.
func (r *Reconciler) receiverMissing(ctx context.Context, namespace, name string) error {
	if r.apiReader != nil {
		m := &metav1.PartialObjectMetadata{}
		m.SetGroupVersionKind(intunedv1alpha1.GroupVersion.WithKind("WebhookReceiver"))
		err := r.apiReader.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, m)
		if err == nil && sharding.Of(m.Labels) != r.Shard {
			return receiverInOtherShard(name, sharding.Of(m.Labels), r.Shard)
		}
	}
	return receiverUsable(namespace, name, nil)
}

// receiverInOtherShard is why a job of shard ours waits for WebhookReceiver
// name of shard theirs.
func receiverInOtherShard(name string, theirs, ours sharding.Shard) error {
	return report.WaitFor(intunedv1alpha1.ReasonReceiverInOtherShard, fmt.Sprintf(
		"WebhookReceiver %s is in manager shard %s and this IntunedJob in shard %s: a job and its receiver must be in one shard; give both the same %s label",
		name, theirs, ours, sharding.Label))
}

// receiverUsable is nil when the WebhookReceiver namespace/name (whr; nil:
// it does not exist) is Ready with a URL and a token Secret, else why the
// job must wait for it.
func receiverUsable(namespace, name string, whr *intunedv1alpha1.WebhookReceiver) error {
	if whr == nil {
		return report.WaitFor(intunedv1alpha1.ReasonReceiverNotFound,
			fmt.Sprintf("WebhookReceiver %s not found in namespace %s", name, namespace))
	}
	switch {
	case !meta.IsStatusConditionTrue(whr.Status.Conditions, intunedv1alpha1.ConditionReady):
		return receiverNotReady(name, "is not Ready")
	case whr.Status.URL == "":
		return receiverNotReady(name, "has no status.url yet")
	case whr.Status.TokenSecretName == "":
		return receiverNotReady(name, "has no token Secret yet")
	}
	return nil
}

// receiverToken is the current token in the receiver's token Secret
// (tokenSecret; nil: it does not exist yet).
func receiverToken(name string, whr *intunedv1alpha1.WebhookReceiver, tokenSecret *corev1.Secret) (string, error) {
	if tokenSecret == nil {
		return "", receiverNotReady(name, "token Secret "+whr.Status.TokenSecretName+" does not exist yet")
	}
	tok := string(tokenSecret.Data[receiverTokenKey])
	if tok == "" {
		return "", receiverNotReady(name, fmt.Sprintf("token Secret %s has no key %q yet", whr.Status.TokenSecretName, receiverTokenKey))
	}
	return tok, nil
}

func receiverNotReady(name, why string) error {
	return report.WaitFor(intunedv1alpha1.ReasonReceiverNotReady,
		fmt.Sprintf("WebhookReceiver %s %s; waiting before pushing the sink to Intuned", name, why))
}
