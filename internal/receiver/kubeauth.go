package receiver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apiserver/pkg/apis/apiserver"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/authenticatorfactory"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/apiserver/pkg/authorization/authorizerfactory"
	authenticationv1 "k8s.io/client-go/kubernetes/typed/authentication/v1"
	authorizationv1 "k8s.io/client-go/kubernetes/typed/authorization/v1"
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
// are cached briefly by the maintained k8s.io/apiserver delegating authenticator and
// authorizer (the ones kube-rbac-proxy and controller-runtime's metrics filter use); the cache
// keys hold the token's hash and the whole request attributes (user, namespace, name).
type KubeAuth struct {
	Config          *rest.Config  // how to reach the API server (in a Pod: rest.InClusterConfig)
	Namespace, Name string        // the WebhookReceiver whose data this receiver serves
	CacheTTL        time.Duration // default DefaultKubeAuthCacheTTL
	DenyTTL         time.Duration // default min(CacheTTL, DefaultKubeAuthDenyTTL)
}

// kubeAuth is a KubeAuth ready to answer requests.
type kubeAuth struct {
	authn authenticator.Request
	authz authorizer.Authorizer
	attrs authorizer.AttributesRecord // without User
}

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
	authnClient, err := authenticationv1.NewForConfig(c.Config)
	if err != nil {
		return nil, err
	}
	authzClient, err := authorizationv1.NewForConfig(c.Config)
	if err != nil {
		return nil, err
	}
	// What the apiserver's own delegating options use: a few quick retries when the API server
	// is briefly unreachable, then the request fails with 503.
	backoff := &wait.Backoff{Duration: 500 * time.Millisecond, Factor: 1.5, Jitter: 0.2, Steps: 5}
	authn, _, err := authenticatorfactory.DelegatingAuthenticatorConfig{
		Anonymous:                &apiserver.AnonymousAuthConfig{Enabled: false},
		TokenAccessReviewClient:  authnClient,
		TokenAccessReviewTimeout: 10 * time.Second,
		WebhookRetryBackoff:      backoff,
		CacheTTL:                 ttl,
	}.New()
	if err != nil {
		return nil, fmt.Errorf("kubernetes read auth: %w", err)
	}
	authz, err := authorizerfactory.DelegatingAuthorizerConfig{
		SubjectAccessReviewClient: authzClient,
		AllowCacheTTL:             ttl,
		DenyCacheTTL:              deny,
		WebhookRetryBackoff:       backoff,
	}.New()
	if err != nil {
		return nil, fmt.Errorf("kubernetes read auth: %w", err)
	}
	return &kubeAuth{authn: authn, authz: authz, attrs: authorizer.AttributesRecord{
		Verb: ReadAuthVerb, Namespace: c.Namespace, APIGroup: ReadAuthGroup, APIVersion: "*",
		Resource: ReadAuthResource, Subresource: ReadAuthSubresource, Name: c.Name, ResourceRequest: true,
	}}, nil
}

// check answers the request itself and returns false unless its bearer token belongs to a
// user the API server allows to read this receiver's data: 401 for a missing, unknown or
// expired token, 403 for a known user without the right, 503 when the API server cannot
// answer.
func (k *kubeAuth) check(r *Receiver, w http.ResponseWriter, req *http.Request) bool {
	res, ok, err := k.authn.AuthenticateRequest(req)
	if !ok {
		// The authenticator reports an invalid token as an error too (TokenReview's
		// status.error, or "invalid bearer token"); only a failed call to the API server is an
		// outage (logged rate-limited, never with the token).
		if unreachable(err) {
			r.storeErrs.Error("read auth: TokenReview failed", "err", err)
			r.retryLater(w, http.StatusServiceUnavailable, "auth_unavailable", "cannot check the token with the Kubernetes API server; retry later")
			return false
		}
		unauthorized(w)
		return false
	}
	attrs := k.attrs
	attrs.User = res.User
	decision, _, err := k.authz.Authorize(req.Context(), attrs)
	if err != nil && decision != authorizer.DecisionAllow {
		r.storeErrs.Error("read auth: SubjectAccessReview failed", "err", err)
		r.retryLater(w, http.StatusServiceUnavailable, "auth_unavailable", "cannot check the permission with the Kubernetes API server; retry later")
		return false
	}
	if decision != authorizer.DecisionAllow {
		writeError(w, http.StatusForbidden, "forbidden", fmt.Sprintf(
			"%s may not %s %s/%s %q in namespace %q (a cluster admin grants it with the ClusterRole intuned-operator-webhookreceiver-data-reader)",
			res.User.GetName(), ReadAuthVerb, ReadAuthResource, ReadAuthSubresource, k.attrs.Name, k.attrs.Namespace))
		return false
	}
	return true
}

// unreachable reports whether err is the API server not answering or refusing the receiver
// itself (a network error, a timeout, an API status such as 403 when its ServiceAccount may not
// create TokenReviews), as opposed to a token it judged invalid.
func unreachable(err error) bool {
	// The union of authenticators folds its errors into an Aggregate, which errors.As does
	// not look into.
	if agg, ok := err.(utilerrors.Aggregate); ok {
		return slices.ContainsFunc(agg.Errors(), unreachable)
	}
	var status apierrors.APIStatus
	var netErr net.Error
	return errors.As(err, &status) || errors.As(err, &netErr) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}

// unauthorized answers 401 with the Bearer challenge.
func unauthorized(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="intuned-receiver-read"`)
	writeError(w, http.StatusUnauthorized, "unauthorized", "missing or invalid read token in Authorization header")
}
