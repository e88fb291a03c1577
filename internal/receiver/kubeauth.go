package receiver

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/cache"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
)

// The rule a read is authorised against: verb get on the subresource "data" of the
// WebhookReceiver this receiver serves. No such subresource is served by the API server; RBAC
// does not need one, and a name of its own keeps reading data apart from reading the object
// (the aggregated view role grants get on webhookreceivers, never webhookreceivers/data).
const (
	ReadAuthGroup       = "intuned.io"
	ReadAuthResource    = "webhookreceivers"
	ReadAuthSubresource = "data"
	ReadAuthVerb        = "get"
)

// DefaultKubeAuthCacheTTL is how long a TokenReview's and an allowed SubjectAccessReview's
// answer is reused; a refusal is reused for at most DefaultKubeAuthDenyTTL, so a fresh grant
// takes effect soon.
const (
	DefaultKubeAuthCacheTTL = 30 * time.Second
	DefaultKubeAuthDenyTTL  = 10 * time.Second
)

// KubeAuth lets the read API accept Kubernetes bearer tokens (a user's kubeconfig token, a
// ServiceAccount token): the API server authenticates them (TokenReview) and decides whether
// the user may get webhookreceivers/data of Namespace/Name (SubjectAccessReview). Both answers
// are cached briefly (an allowed answer for CacheTTL, a refusal for DenyTTL); the cache keys
// hold the token's SHA-256 and the whole review (user, groups, extra, namespace, name).
type KubeAuth struct {
	Config          *rest.Config  // how to reach the API server (in a Pod: rest.InClusterConfig)
	Namespace, Name string        // the WebhookReceiver whose data this receiver serves
	CacheTTL        time.Duration // default DefaultKubeAuthCacheTTL
	DenyTTL         time.Duration // default min(CacheTTL, DefaultKubeAuthDenyTTL)
}

// kubeAuth is a KubeAuth ready to answer requests: a TokenReview and a SubjectAccessReview
// client and two small caches of their answers.
type kubeAuth struct {
	tokenReviews      reviews[authnv1.TokenReview]
	accessReviews     reviews[authzv1.SubjectAccessReview]
	resource          authzv1.ResourceAttributes // what every read asks for
	allowTTL, denyTTL time.Duration
	// users maps the SHA-256 of a token (never the token) to its TokenReview's answer; access
	// maps a whole SubjectAccessReview spec (user, groups, extra, the resource) to allowed.
	users, access *cache.LRUExpireCache
}

// The caches' sizes: a reader is one entry in each, so these bound memory, not readers.
const kubeAuthCacheSize = 4096

// kubeAuthCallTimeout bounds one review call; reviewBackoff retries a transient failure a few
// times (the values the apiserver's delegating authenticator uses) before the read gets 503.
const kubeAuthCallTimeout = 10 * time.Second

var reviewBackoff = wait.Backoff{Duration: 500 * time.Millisecond, Factor: 1.5, Jitter: 0.2, Steps: 5}

func newKubeAuth(c *KubeAuth) (*kubeAuth, error) {
	if c.Config == nil || c.Namespace == "" || c.Name == "" {
		return nil, errors.New("kubernetes read auth needs an API server config and the receiver's namespace and name")
	}
	ttl := c.CacheTTL
	if ttl <= 0 {
		ttl = DefaultKubeAuthCacheTTL
	}
	deny := c.DenyTTL
	if deny <= 0 {
		deny = min(ttl, DefaultKubeAuthDenyTTL)
	}
	tokenReviews, err := newReviews[authnv1.TokenReview](c.Config, authnv1.SchemeGroupVersion, "tokenreviews")
	if err != nil {
		return nil, fmt.Errorf("kubernetes read auth: %w", err)
	}
	accessReviews, err := newReviews[authzv1.SubjectAccessReview](c.Config, authzv1.SchemeGroupVersion, "subjectaccessreviews")
	if err != nil {
		return nil, fmt.Errorf("kubernetes read auth: %w", err)
	}
	return &kubeAuth{
		tokenReviews:  tokenReviews,
		accessReviews: accessReviews,
		resource: authzv1.ResourceAttributes{
			Namespace: c.Namespace, Verb: ReadAuthVerb, Group: ReadAuthGroup, Version: "*",
			Resource: ReadAuthResource, Subresource: ReadAuthSubresource, Name: c.Name,
		},
		allowTTL: ttl, denyTTL: deny,
		users:  cache.NewLRUExpireCache(kubeAuthCacheSize),
		access: cache.NewLRUExpireCache(kubeAuthCacheSize),
	}, nil
}

// check answers the request itself and returns false unless its bearer token belongs to a
// user the API server allows to read this receiver's data: 401 for a missing, unknown or
// expired token, 403 for a known user without the right, 503 when the API server cannot
// answer (or refuses the receiver's own reviews).
func (k *kubeAuth) check(r *Receiver, w http.ResponseWriter, req *http.Request) bool {
	token := bearerToken(req)
	if token == "" {
		unauthorized(w)
		return false
	}
	user, err := k.authenticate(req.Context(), token)
	if err != nil {
		r.storeErrs.Error("read auth: TokenReview failed", "err", err)
		r.retryLater(w, http.StatusServiceUnavailable, "auth_unavailable", "cannot check the token with the Kubernetes API server; retry later")
		return false
	}
	if user == nil {
		unauthorized(w)
		return false
	}
	allowed, err := k.authorize(req.Context(), user)
	if err != nil {
		r.storeErrs.Error("read auth: SubjectAccessReview failed", "err", err)
		r.retryLater(w, http.StatusServiceUnavailable, "auth_unavailable", "cannot check the permission with the Kubernetes API server; retry later")
		return false
	}
	if !allowed {
		writeError(w, http.StatusForbidden, "forbidden", fmt.Sprintf(
			"%s may not %s %s/%s %q in namespace %q (a cluster admin grants it with the ClusterRole intuned-operator-webhookreceiver-data-reader)",
			user.Username, ReadAuthVerb, ReadAuthResource, ReadAuthSubresource, k.resource.Name, k.resource.Namespace))
		return false
	}
	return true
}

// authenticate returns the token's user, nil for a token the API server does not accept
// (unknown, expired, forged), or an error when it cannot answer. Both answers are cached under
// the token's hash: an accepted token for the allow TTL, a refused one for the deny TTL.
func (k *kubeAuth) authenticate(ctx context.Context, token string) (*authnv1.UserInfo, error) {
	sum := sha256.Sum256([]byte(token))
	key := string(sum[:])
	if v, ok := k.users.Get(key); ok {
		return v.(*authnv1.UserInfo), nil
	}
	var res *authnv1.TokenReview
	err := retryReview(ctx, func(ctx context.Context) (err error) {
		res, err = k.tokenReviews.Create(ctx, &authnv1.TokenReview{Spec: authnv1.TokenReviewSpec{Token: token}})
		return err
	})
	if err != nil {
		return nil, err
	}
	if !res.Status.Authenticated {
		k.users.Add(key, (*authnv1.UserInfo)(nil), k.denyTTL)
		return nil, nil
	}
	k.users.Add(key, &res.Status.User, k.allowTTL)
	return &res.Status.User, nil
}

// authorize asks whether user may get webhookreceivers/data of this receiver's object; the
// answer is cached under the whole review spec, so no user, group set or object shares
// another's answer.
func (k *kubeAuth) authorize(ctx context.Context, user *authnv1.UserInfo) (bool, error) {
	spec := authzv1.SubjectAccessReviewSpec{
		User: user.Username, UID: user.UID, Groups: user.Groups,
		ResourceAttributes: new(k.resource),
	}
	if len(user.Extra) > 0 {
		spec.Extra = make(map[string]authzv1.ExtraValue, len(user.Extra))
		for name, v := range user.Extra {
			spec.Extra[name] = authzv1.ExtraValue(v)
		}
	}
	keyBytes, err := json.Marshal(spec) // map keys come out sorted: one key per spec
	if err != nil {
		return false, err
	}
	key := string(keyBytes)
	if v, ok := k.access.Get(key); ok {
		return v.(bool), nil
	}
	var res *authzv1.SubjectAccessReview
	err = retryReview(ctx, func(ctx context.Context) (err error) {
		res, err = k.accessReviews.Create(ctx, &authzv1.SubjectAccessReview{Spec: spec})
		return err
	})
	if err != nil {
		return false, err
	}
	// Denied or no opinion: either way not allowed.
	allowed := res.Status.Allowed && !res.Status.Denied
	ttl := k.denyTTL
	if allowed {
		ttl = k.allowTTL
	}
	k.access.Add(key, allowed, ttl)
	return allowed, nil
}

// reviewScheme knows only the two review kinds. client-go's typed clients
// (kubernetes/typed/authentication/v1, .../authorization/v1) would do the same POST, but they
// link client-go's scheme of every built-in API group and the apply configurations: 14 MB more
// binary and 11 MB more resident memory in every receiver, with read auth on or off.
var reviewScheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(authnv1.AddToScheme(s))
	utilruntime.Must(authzv1.AddToScheme(s))
	return s
}()

// reviews creates review objects of kind T (TokenReview, SubjectAccessReview): POST
// /apis/GROUP/VERSION/RESOURCE, the API server's answer in the returned object's status.
type reviews[T any] struct {
	client   *rest.RESTClient
	resource string
}

func newReviews[T any](cfg *rest.Config, gv schema.GroupVersion, resource string) (reviews[T], error) {
	cfg = rest.CopyConfig(cfg)
	cfg.APIPath = "/apis"
	cfg.GroupVersion = &gv
	cfg.NegotiatedSerializer = serializer.NewCodecFactory(reviewScheme).WithoutConversion()
	if cfg.UserAgent == "" {
		cfg.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	client, err := rest.RESTClientFor(cfg)
	return reviews[T]{client: client, resource: resource}, err
}

func (r reviews[T]) Create(ctx context.Context, review *T) (*T, error) {
	out := new(T)
	err := r.client.Post().Resource(r.resource).Body(any(review).(runtime.Object)).Do(ctx).Into(any(out).(runtime.Object))
	return out, err
}

// retryReview runs call, each try bounded by kubeAuthCallTimeout, and retries it with
// reviewBackoff while the failure is transient (the rules of the apiserver's webhook
// clients: a reset or lost connection, 500, 504, 429, or an answer asking to retry later).
func retryReview(ctx context.Context, call func(context.Context) error) error {
	var err error
	backoff := reviewBackoff
	for {
		callCtx, cancel := context.WithTimeout(ctx, kubeAuthCallTimeout)
		err = call(callCtx)
		cancel()
		if err == nil || !transient(err) || backoff.Steps <= 1 {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(backoff.Step()):
		}
	}
}

func transient(err error) bool {
	if utilnet.IsConnectionReset(err) || utilnet.IsHTTP2ConnectionLost(err) ||
		apierrors.IsInternalError(err) || apierrors.IsTimeout(err) || apierrors.IsTooManyRequests(err) {
		return true
	}
	_, retry := apierrors.SuggestsClientDelay(err)
	return retry
}

// bearerToken is the token of an "Authorization: Bearer <token>" header ("bearer" in any
// case), or "".
func bearerToken(req *http.Request) string {
	scheme, token, ok := strings.Cut(strings.TrimSpace(req.Header.Get("Authorization")), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(token)
}

// unauthorized answers 401 with the Bearer challenge.
func unauthorized(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="intuned-receiver-read"`)
	writeError(w, http.StatusUnauthorized, "unauthorized", "missing or invalid read token in Authorization header")
}
