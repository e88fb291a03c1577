package intunedjob

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sync"

	"github.com/intuned-operator/intuned-operator/internal/controller/report"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/intuned"
)

// Credentials are the contents of a credentials Secret. APIKey is secret:
// it only ever goes into the client (which sends it as x-api-key); never into
// logs, events, status or error messages.
type Credentials struct {
	// Secret is where the credentials came from (for messages).
	Secret      types.NamespacedName
	WorkspaceID string
	APIKey      string
	// BaseURL is empty for Intuned's production API.
	BaseURL string
}

// fingerprint identifies the credentials without revealing them; clients
// are cached under it, so a rotated key (or another base URL) gets a new
// client while every IntunedJob sharing a Secret shares one client.
func (c Credentials) fingerprint() string {
	h := sha256.New()
	for _, s := range []string{c.BaseURL, c.WorkspaceID, c.APIKey} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// credentials reads job's credentials Secret. Missing Secrets or keys are
// reported with reason CredentialsNotFound; the Secret watch re-queues the
// job when the Secret appears.
func (r *Reconciler) credentials(ctx context.Context, job *intunedv1alpha1.IntunedJob) (Credentials, error) {
	ref, ok := job.CredentialsSecret(r.DefaultCredentials)
	if !ok && job.Spec.CredentialsRef == nil && r.DefaultCredentials.Secret.Name != "" {
		// A user cannot fix this by waiting: an admin allows the
		// namespace, or the job names its own Secret.
		return Credentials{}, report.Stalled(intunedv1alpha1.ReasonDefaultCredentialsNotAllowed, fmt.Sprintf(
			"spec.credentialsRef is not set and the manager's default credentials may not be used in namespace %s "+
				"(an admin allows it with --default-credentials-namespaces); set spec.credentialsRef to a Secret of this namespace",
			job.Namespace))
	}
	if !ok {
		return Credentials{}, report.WaitFor(intunedv1alpha1.ReasonCredentialsNotFound,
			"spec.credentialsRef is not set and the manager has no default credentials Secret")
	}
	s, err := r.secret(ctx, ref)
	if err != nil {
		return Credentials{}, err
	}
	return credentialsFrom(ref, s)
}

// credentialsFrom reads the credentials out of Secret s (nil: it does not
// exist) named ref.
func credentialsFrom(ref types.NamespacedName, s *corev1.Secret) (Credentials, error) {
	if s == nil {
		return Credentials{}, report.WaitFor(intunedv1alpha1.ReasonCredentialsNotFound,
			fmt.Sprintf("credentials Secret %s not found", ref))
	}
	c := Credentials{
		Secret:      ref,
		WorkspaceID: string(s.Data[intunedv1alpha1.CredentialsKeyWorkspaceID]),
		APIKey:      string(s.Data[intunedv1alpha1.CredentialsKeyAPIKey]),
		BaseURL:     string(s.Data[intunedv1alpha1.CredentialsKeyBaseURL]),
	}
	for _, key := range []string{intunedv1alpha1.CredentialsKeyWorkspaceID, intunedv1alpha1.CredentialsKeyAPIKey} {
		if len(s.Data[key]) == 0 {
			return Credentials{}, report.WaitFor(intunedv1alpha1.ReasonCredentialsNotFound,
				fmt.Sprintf("credentials Secret %s has no key %q", ref, key))
		}
	}
	return c, nil
}

// secret reads a Secret; nil when it does not exist. Its data comes from
// r.secrets while the metadata informer still shows the resourceVersion it
// was read at, else from the API server (see secretCache).
func (r *Reconciler) secret(ctx context.Context, key types.NamespacedName) (*corev1.Secret, error) {
	cacheable := false
	if r.secretMetadata != nil {
		m := &metav1.PartialObjectMetadata{}
		m.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
		err := r.secretMetadata.Get(ctx, key, m)
		switch {
		case apierrors.IsNotFound(err):
			r.secrets.forget(key)
			return nil, nil
		case err == nil:
			if data, ok := r.secrets.get(key, m.ResourceVersion); ok {
				return &corev1.Secret{ObjectMeta: m.ObjectMeta, Data: data}, nil
			}
			cacheable = true
		}
		// Any other error (a namespace the cache does not hold): read
		// the API server and keep nothing, nothing would revalidate it.
	}
	var s corev1.Secret
	if err := r.Get(ctx, key, &s); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, err
	}
	if cacheable {
		r.secrets.put(key, s.ResourceVersion, s.Data)
	}
	return &s, nil
}

// secretCache holds the data of the Secrets IntunedJobs read (credentials,
// header, S3 and proxy Secrets, receiver tokens), keyed by the
// resourceVersion they were read at. Without it every reconcile (every poll
// of every job) GETs its Secrets from the API server: at 10,000 jobs that
// is a read per job per poll, and more than half of a new job's cost.
//
// It is still right because the manager already watches every Secret's
// metadata (the watch that re-queues jobs on rotation): an entry is used
// only while the metadata informer shows the same resourceVersion, so a
// changed Secret is read again by the very reconcile its watch event
// causes (the informer's store is updated before its handlers run), and a
// deleted one is not found. It holds only Secrets a job referenced, never
// the cluster's (cachepolicy keeps the informer metadata-only), and drops
// an entry when its Secret is gone.
type secretCache struct {
	mu      sync.Mutex
	entries map[types.NamespacedName]cachedSecret
	// fetches counts reads from the API server (tests, debugging).
	fetches int
}

type cachedSecret struct {
	resourceVersion string
	data            map[string][]byte
}

// get returns the data of key if it was read at resourceVersion. The map is
// shared: callers only read it.
func (c *secretCache) get(key types.NamespacedName, resourceVersion string) (map[string][]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	return e.data, ok && e.resourceVersion == resourceVersion
}

func (c *secretCache) put(key types.NamespacedName, resourceVersion string, data map[string][]byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = map[types.NamespacedName]cachedSecret{}
	}
	c.entries[key] = cachedSecret{resourceVersion: resourceVersion, data: data}
	c.fetches++
}

func (c *secretCache) forget(key types.NamespacedName) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.entries, key)
}

// fetched is how many Secrets were read from the API server into the cache.
func (c *secretCache) fetched() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fetches
}

// clientCache holds one Intuned client per distinct credentials. All of
// them share the reconciler's Pacer and Metrics, so the per-path rate limit
// holds across every IntunedJob of the manager.
type clientCache struct {
	mu      sync.Mutex
	clients map[string]intuned.API
}

// maxCachedClients bounds the cache; past it the cache is simply emptied
// (clients are cheap to rebuild; the Pacer that matters is shared anyway).
const maxCachedClients = 256

func (c *clientCache) get(creds Credentials, build func(Credentials) (intuned.API, error)) (intuned.API, error) {
	key := creds.fingerprint()
	c.mu.Lock()
	defer c.mu.Unlock()
	if api, ok := c.clients[key]; ok {
		return api, nil
	}
	api, err := build(creds)
	if err != nil {
		return nil, err
	}
	if c.clients == nil || len(c.clients) >= maxCachedClients {
		c.clients = map[string]intuned.API{}
	}
	c.clients[key] = api
	return api, nil
}

// newIntunedClient is the default client factory: the real client with the
// reconciler's shared Pacer, Metrics and retry options.
func (r *Reconciler) newIntunedClient(c Credentials) (intuned.API, error) {
	cl, err := intuned.New(intuned.Options{
		BaseURL:     c.BaseURL,
		WorkspaceID: c.WorkspaceID,
		APIKey:      c.APIKey,
		Pacer:       r.Pacer,
		Metrics:     r.Metrics,
		Retry:       r.Retry,
		UserAgent:   "intuned-operator",
	})
	if err != nil {
		// intuned.New's errors name the base URL, never the key.
		return nil, report.Stalled(intunedv1alpha1.ReasonCredentialsInvalid,
			fmt.Sprintf("credentials Secret %s: %v", c.Secret, err))
	}
	return cl, nil
}

// apiFor returns the (cached) client for creds.
func (r *Reconciler) apiFor(creds Credentials) (intuned.API, error) {
	build := r.NewClient
	if build == nil {
		build = r.newIntunedClient
	}
	return r.clients.get(creds, build)
}
