package cluster

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/testutil/flow"
	"github.com/intuned-operator/intuned-operator/internal/testutil/poll"
	"github.com/intuned-operator/intuned-operator/internal/testutil/scenarios"
)

// The install's names (config/rbac, with kustomize's prefix).
const (
	readAuthBinding = "intuned-operator-receiver-auth-delegator"
	dataReaderRole  = "intuned-operator-webhookreceiver-data-reader"
)

// TestReadAuth: reading a receiver's data with one's own Kubernetes token, as docs/security.md
// tells a user to: `kubectl create token` (here for ServiceAccounts, as a user's kubeconfig
// token would be), `kubectl port-forward` to the receiver's Service, curl with the token. The
// receiver Pod checks the token with TokenReview and the right with SubjectAccessReview through
// its own ServiceAccount, which the operator put on the install's binding to
// system:auth-delegator. A reader bound to the data-reader ClusterRole reads; one with `view`
// of the namespace gets 403; an invalid token 401. The API server's service proxy does not
// forward the caller's token (it authenticates the caller itself and drops the header), so the
// receiver answers 401 there. Deleting the receiver takes its ServiceAccount off the binding.
func TestReadAuth(t *testing.T) {
	ctx := scenarios.Context(t, 5*time.Minute)
	p := scenarios.NewPair(t, ctx, &env, "readauth", nil)
	p.WaitReady(ctx)
	ingest, _, err := flow.ReceiverTokens(ctx, env.Client(), p.NS, p.Receiver)
	if err != nil {
		t.Fatal(err)
	}
	if status, answer, err := postDelivery(ctx, p, ingest, sinkBody(p, "jr-readauth", "run-readauth-1")); err != nil || status != http.StatusCreated {
		t.Fatalf("store a delivery: %d %s (%v)", status, answer, err)
	}
	subject := "ServiceAccount:" + p.NS + "/" + p.Receiver
	if got := authDelegatorSubjects(t, ctx); !slices.Contains(got, subject) {
		t.Fatalf("the binding %s has subjects %v, want %s among them", readAuthBinding, got, subject)
	}

	kubectl := func(args ...string) string {
		t.Helper()
		out, err := env.kc.Kubectl(ctx, append([]string{"-n", p.NS}, args...)...)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(out)
	}
	kubectl("create", "serviceaccount", "reader")
	kubectl("create", "rolebinding", "reader-data", "--clusterrole="+dataReaderRole, "--serviceaccount="+p.NS+":reader")
	kubectl("create", "serviceaccount", "viewer")
	kubectl("create", "rolebinding", "viewer-view", "--clusterrole=view", "--serviceaccount="+p.NS+":viewer")
	// Both may use the service proxy, to show what it does with their token.
	kubectl("create", "role", "service-proxy", "--verb=get", "--resource=services/proxy")
	kubectl("create", "rolebinding", "service-proxy", "--role=service-proxy", "--serviceaccount="+p.NS+":reader", "--serviceaccount="+p.NS+":viewer")
	// One receiver only, as docs/security.md shows it.
	kubectl("create", "serviceaccount", "one-reader")
	kubectl("create", "role", "one-receiver-data", "--verb=get", "--resource=webhookreceivers.intuned.io/data", "--resource-name="+p.Receiver)
	kubectl("create", "rolebinding", "one-receiver-data", "--role=one-receiver-data", "--serviceaccount="+p.NS+":one-reader")
	if got := kubectl("auth", "can-i", "get", "webhookreceivers.intuned.io/"+p.Receiver, "--subresource=data", "--as=system:serviceaccount:"+p.NS+":one-reader"); got != "yes" {
		t.Errorf("can-i get webhookreceivers/data as one-reader: %q, want yes", got)
	}
	readerToken := kubectl("create", "token", "reader", "--duration=10m")
	oneToken := kubectl("create", "token", "one-reader", "--duration=10m")
	viewerToken := kubectl("create", "token", "viewer", "--duration=10m")

	base := portForward(t, ctx, p.NS, p.Receiver)
	for _, tt := range []struct {
		who, token string
		status     int
		code       string
	}{
		{"reader (data-reader role)", readerToken, http.StatusOK, ""},
		{"one-reader (a Role with resourceNames)", oneToken, http.StatusOK, ""},
		{"viewer (view role)", viewerToken, http.StatusForbidden, "forbidden"},
		{"an invalid token", "not-a-token", http.StatusUnauthorized, "unauthorized"},
	} {
		var status int
		var body, code string
		// The first read waits for the RBAC objects to reach the API server's authorizer cache.
		err := poll.Eventually(ctx, 500*time.Millisecond, tt.who+" reads", func(ctx context.Context) (bool, error) {
			status, body, code, err = readDeliveries(ctx, base, tt.token)
			return err == nil && status == tt.status, fmt.Errorf("%d %s (%v)", status, body, err)
		})
		if err != nil || code != tt.code {
			t.Errorf("%s: %d %q %s (%v), want %d %q", tt.who, status, code, body, err, tt.status, tt.code)
			continue
		}
		if tt.status == http.StatusOK && !strings.Contains(body, `"runId":"run-readauth-1"`) {
			t.Errorf("%s: read %s, want the stored delivery", tt.who, body)
		}
		t.Logf("%s: %d %s", tt.who, status, strings.TrimSpace(body))
	}

	// The API server's service proxy: the reader's token authenticates the reader to the API
	// server (services/proxy is allowed), which drops the Authorization header before proxying.
	cfg, err := clientcmd.BuildConfigFromFlags("", env.kc.Config().AdminKubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	asReader := rest.AnonymousClientConfig(cfg)
	asReader.BearerToken = readerToken
	cs := kubernetes.NewForConfigOrDie(asReader)
	body, err := cs.CoreV1().Services(p.NS).ProxyGet("http", p.Receiver, "8080", "v1/deliveries", nil).DoRaw(ctx)
	if !apierrors.IsUnauthorized(err) && !strings.Contains(string(body), "unauthorized") {
		t.Errorf("through the service proxy: %s (%v), want the receiver's 401: the proxy does not forward the caller's token", body, err)
	} else {
		t.Logf("through the API server's service proxy: %v %s (the Authorization header is not forwarded)", err, body)
	}

	whr := &intunedv1alpha1.WebhookReceiver{ObjectMeta: metav1.ObjectMeta{Namespace: p.NS, Name: p.Receiver}}
	if err := env.kubeClient.Delete(ctx, whr); err != nil {
		t.Fatal(err)
	}
	err = poll.Eventually(ctx, 250*time.Millisecond, "the receiver deleted and off the binding", func(ctx context.Context) (bool, error) {
		err := env.kubeClient.Get(ctx, client.ObjectKeyFromObject(whr), whr)
		subjects := authDelegatorSubjects(t, ctx)
		return apierrors.IsNotFound(err) && !slices.Contains(subjects, subject), fmt.Errorf("receiver: %v; subjects %v", err, subjects)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// authDelegatorSubjects lists the install's read-auth binding's subjects as Kind:namespace/name.
func authDelegatorSubjects(t *testing.T, ctx context.Context) []string {
	t.Helper()
	var b rbacv1.ClusterRoleBinding
	if err := env.kubeClient.Get(ctx, client.ObjectKey{Name: readAuthBinding}, &b); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range b.Subjects {
		out = append(out, s.Kind+":"+s.Namespace+"/"+s.Name)
	}
	return out
}

var forwardingFrom = regexp.MustCompile(`Forwarding from 127\.0\.0\.1:(\d+)`)

// portForward runs `kubectl port-forward svc/<receiver> :8080` (as the admin: port-forward
// needs pods/portforward, which the data-reader role does not grant) until the test ends and
// returns the local base URL.
func portForward(t *testing.T, ctx context.Context, ns, receiver string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	cmd := exec.CommandContext(ctx, env.kc.Config().Kubectl(), "--kubeconfig", env.kc.Config().AdminKubeconfig(),
		"-n", ns, "port-forward", "svc/"+receiver, ":8080")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); cmd.Wait() }) //nolint:errcheck // killed
	port := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if m := forwardingFrom.FindStringSubmatch(sc.Text()); m != nil {
				port <- m[1]
			}
		}
		io.Copy(io.Discard, out) //nolint:errcheck
	}()
	select {
	case p := <-port:
		return "http://127.0.0.1:" + p
	case <-time.After(30 * time.Second):
		t.Fatal("kubectl port-forward printed no local port within 30s")
	}
	return ""
}

// readDeliveries GETs /v1/deliveries with a bearer token and returns the status, the body and
// the error code of a JSON error body.
func readDeliveries(ctx context.Context, base, token string) (int, string, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/deliveries", nil)
	if err != nil {
		return 0, "", "", err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := nodeHTTP.Do(req)
	if err != nil {
		return 0, "", "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	json.Unmarshal(b, &e) //nolint:errcheck // not every body is an error
	return resp.StatusCode, string(b), e.Error.Code, err
}
