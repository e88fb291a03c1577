package receiver

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/intuned-operator/intuned-operator/internal/receiver/store"
	"github.com/intuned-operator/intuned-operator/internal/testutil/testenv"
)

// startAPIServer starts an envtest API server (RBAC, ServiceAccount tokens) for one test.
func startAPIServer(t *testing.T) *testenv.Env {
	t.Helper()
	env, err := testenv.Start()
	if errors.Is(err, testenv.ErrNoAssets) && !testenv.InCI() {
		t.Skip("needs the envtest API server:", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { env.Stop() }) //nolint:errcheck
	return env
}

// kubeFixture creates RBAC objects and ServiceAccount tokens on the API server.
type kubeFixture struct {
	t  *testing.T
	cs kubernetes.Interface
}

func (k kubeFixture) must(_ any, err error) {
	k.t.Helper()
	if err != nil {
		k.t.Fatal(err)
	}
}

// serviceAccount creates ns/name and returns a token for it from the TokenRequest API, as
// `kubectl create token` gets one.
func (k kubeFixture) serviceAccount(ns, name string) string {
	k.t.Helper()
	ctx := context.Background()
	k.must(k.cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}))
	tr, err := k.cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)},
	}, metav1.CreateOptions{})
	if err != nil {
		k.t.Fatal(err)
	}
	return tr.Status.Token
}

func (k kubeFixture) roleBinding(ns, name, roleKind, role, sa string) {
	k.t.Helper()
	k.must(k.cs.RbacV1().RoleBindings(ns).Create(context.Background(), &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: roleKind, Name: role},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: sa}},
	}, metav1.CreateOptions{}))
}

// TestKubernetesReadAuth runs receivers against a real API server: the receiver's own identity
// is a ServiceAccount bound to system:auth-delegator and nothing else, readers present
// ServiceAccount tokens from the TokenRequest API, and RBAC (the shipped data-reader
// ClusterRole, a Role limited by resourceNames) decides. Every reader asks the receivers in an
// order that would expose a cache keyed on the token alone: allowed first, then a receiver of
// another name or namespace.
func TestKubernetesReadAuth(t *testing.T) {
	env := startAPIServer(t)
	cs := kubernetes.NewForConfigOrDie(env.Config)
	k := kubeFixture{t: t, cs: cs}
	ctx := context.Background()
	for _, ns := range []string{"team-a", "team-b"} {
		k.must(cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}))
	}
	// The ClusterRole the install ships (without kustomize's name prefix).
	var reader rbacv1.ClusterRole
	b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "rbac", "webhookreceiver_data_reader_role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &reader); err != nil {
		t.Fatal(err)
	}
	k.must(cs.RbacV1().ClusterRoles().Create(ctx, &reader, metav1.CreateOptions{}))

	// The receivers' identity: what the operator grants (system:auth-delegator), no more.
	receiverToken := k.serviceAccount("team-a", "receiver")
	k.must(cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "receiver-auth-delegator"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:auth-delegator"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: "team-a", Name: "receiver"}},
	}, metav1.CreateOptions{}))
	receiverConfig := rest.AnonymousClientConfig(env.Config)
	receiverConfig.BearerToken = receiverToken

	// team-reader may read every receiver of team-a; orders-reader only team-a/orders;
	// stranger nothing.
	teamReader := k.serviceAccount("team-a", "team-reader")
	k.roleBinding("team-a", "team-reader", "ClusterRole", reader.Name, "team-reader")
	ordersReader := k.serviceAccount("team-a", "orders-reader")
	k.must(cs.RbacV1().Roles("team-a").Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "orders-data"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{ReadAuthGroup}, Resources: []string{ReadAuthResource + "/" + ReadAuthSubresource},
			ResourceNames: []string{"orders"}, Verbs: []string{"get"}}},
	}, metav1.CreateOptions{}))
	k.roleBinding("team-a", "orders-reader", "Role", "orders-data", "orders-reader")
	stranger := k.serviceAccount("team-b", "stranger")

	receivers := map[string]*testEnv{}
	for _, key := range []string{"team-a/orders", "team-a/prices", "team-b/orders"} {
		ns, name, _ := strings.Cut(key, "/")
		e := newEnv(t, "sqlite", func(c *Config) {
			c.KubeAuth = &KubeAuth{Config: receiverConfig, Namespace: ns, Name: name}
		})
		if _, err := e.st.Save(ctx, []store.Delivery{{RunID: "run-of-" + name, Project: "p", APIName: "a",
			ResultStatus: "completed", ReceivedAt: time.Now(), Body: []byte(validBody("run-of-" + name))}}); err != nil {
			t.Fatal(err)
		}
		receivers[key] = e
	}
	// A receiver whose ServiceAccount may not create TokenReviews (the binding missing): its
	// readers get 503, not a 401 that would blame their token.
	powerless := rest.AnonymousClientConfig(env.Config)
	powerless.BearerToken = k.serviceAccount("team-a", "powerless")
	receivers["unbound"] = newEnv(t, "sqlite", func(c *Config) {
		c.KubeAuth = &KubeAuth{Config: powerless, Namespace: "team-a", Name: "orders"}
	})
	read := func(receiver, token string) response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, receivers[receiver].url+"/v1/deliveries", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		return do(t, req)
	}

	for _, tt := range []struct {
		who, token, receiver string
		status               int
		code                 string
	}{
		{"team-reader", teamReader, "team-a/orders", 200, ""},
		{"team-reader", teamReader, "team-b/orders", 403, "forbidden"}, // same name, other namespace
		{"team-reader", teamReader, "team-a/prices", 200, ""},
		{"orders-reader", ordersReader, "team-a/orders", 200, ""},
		{"orders-reader", ordersReader, "team-a/prices", 403, "forbidden"}, // same namespace, other name
		{"orders-reader", ordersReader, "team-b/orders", 403, "forbidden"},
		{"orders-reader", ordersReader, "team-a/orders", 200, ""}, // cached allow, still allowed
		{"stranger", stranger, "team-b/orders", 403, "forbidden"},
		{"stranger", stranger, "team-b/orders", 403, "forbidden"}, // cached refusal
		{"the receiver itself", receiverToken, "team-a/orders", 403, "forbidden"},
		{"an invalid token", "not-a-kubernetes-token", "team-a/orders", 401, "unauthorized"},
		{"a token with a forged signature", teamReader[:len(teamReader)-4] + "AAAA", "team-a/orders", 401, "unauthorized"},
		{"no token", "", "team-a/orders", 401, "unauthorized"},
		{"the static read token", readToken, "team-b/orders", 200, ""},
		{"team-reader at a receiver without the review rights", teamReader, "unbound", 503, "auth_unavailable"},
	} {
		r := read(tt.receiver, tt.token)
		if r.status != tt.status || r.code != tt.code {
			t.Errorf("%s reading %s: %d %q (%s), want %d %q", tt.who, tt.receiver, r.status, r.code, r.body, tt.status, tt.code)
			continue
		}
		_, name, _ := strings.Cut(tt.receiver, "/")
		switch tt.status {
		case 200:
			if !strings.Contains(string(r.body), `"runId":"run-of-`+name+`"`) {
				t.Errorf("%s reading %s: body %s lacks its delivery", tt.who, tt.receiver, r.body)
			}
		case 403:
			if ct := r.header.Get("Content-Type"); ct != "application/json" || !strings.Contains(string(r.body), "webhookreceivers/data") {
				t.Errorf("%s reading %s: 403 with %s %s, want a JSON error naming the permission", tt.who, tt.receiver, ct, r.body)
			}
		case 401:
			if r.header.Get("WWW-Authenticate") == "" {
				t.Errorf("%s: 401 without WWW-Authenticate", tt.who)
			}
		}
	}
}
