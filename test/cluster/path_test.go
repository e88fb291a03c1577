package cluster

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/testutil/poll"
	"github.com/intuned-operator/intuned-operator/internal/testutil/scenarios"
)

// The path in between: from Intuned through the Ingress to a receiver, and
// from the manager through cluster DNS and the Service to a receiver.

// TestIngressAnswers503WithoutReadyPod: while a receiver has no ready Pod,
// its Ingress path answers 503, which a webhook sender retries, and not 404,
// which it may take as final (Traefik's allowEmptyServices; docs/ingress.md
// says what to set on other controllers).
func TestIngressAnswers503WithoutReadyPod(t *testing.T) {
	ctx := scenarios.Context(t, 3*time.Minute)
	p := scenarios.NewPair(t, ctx, &env, "empty-backend", nil)
	p.WaitReady(ctx)
	// Ready: once Traefik has the Pod's address (it may answer 503 until
	// then), the receiver itself answers, and refuses a delivery without a token.
	err := poll.Eventually(ctx, 200*time.Millisecond, "the receiver answers through the Ingress", func(ctx context.Context) (bool, error) {
		code, err := postIngest(ctx, p)
		return code == http.StatusUnauthorized, fmt.Errorf("POST without a token: %d (%v), want 401 from the receiver", code, err)
	})
	if err != nil {
		t.Fatal(err)
	}

	patch := client.RawPatch("application/merge-patch+json", []byte(`{"spec":{"replicas":0}}`))
	whr := &intunedv1alpha1.WebhookReceiver{ObjectMeta: metav1.ObjectMeta{Namespace: p.NS, Name: p.Receiver}}
	if err := env.kubeClient.Patch(ctx, whr, patch); err != nil {
		t.Fatal(err)
	}
	p.WaitReplicasReady(ctx, 0)
	// Traefik applies the emptied EndpointSlice a moment later (it throttles
	// reloads to one per 2 s), and even without allowEmptyServices it answers
	// 503 in between, before it drops the route: so the 503 must last.
	var code int
	err = poll.Eventually(ctx, 200*time.Millisecond, "the Ingress answers 503", func(ctx context.Context) (bool, error) {
		var err error
		code, err = postIngest(ctx, p)
		return code == http.StatusServiceUnavailable || code == http.StatusNotFound, fmt.Errorf("answered %d (%v)", code, err)
	})
	for end := time.Now().Add(6 * time.Second); err == nil && code == http.StatusServiceUnavailable && time.Now().Before(end); {
		time.Sleep(250 * time.Millisecond)
		code, err = postIngest(ctx, p)
	}
	if err != nil || code != http.StatusServiceUnavailable {
		t.Fatalf("the Ingress answered %d (%v) for a receiver with no ready Pod, want 503 for as long as it has none", code, err)
	}
}

// postIngest posts an empty delivery without a token to the receiver's
// Ingress path and returns the status code.
func postIngest(ctx context.Context, p *scenarios.Pair) (int, error) {
	code, _, err := postDeliveryOnce(ctx, p, "", "{}")
	return code, err
}

// nodeHTTP reaches the node directly, never through a proxy from the environment.
var nodeHTTP = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil}}

// TestVolumeCheckOverClusterDNS: the manager reads a SQLite receiver's free
// space from http://<service>.<namespace>.svc:<port>/metrics. On the real
// node that name resolves through the cluster DNS (CoreDNS) and the Service
// routes to the Pod, so VolumeNearlyFull reports the free space (False, or
// True on a host whose disk is nearly full), not Unknown.
func TestVolumeCheckOverClusterDNS(t *testing.T) {
	ctx := scenarios.Context(t, 3*time.Minute)
	p := scenarios.NewPair(t, ctx, &env, "volume-dns", nil)
	p.WaitReady(ctx)
	var cond *metav1.Condition
	// The first check may run before the Service routes to the new Pod; the
	// next comes a minute later (DefaultVolumeCheckInterval).
	err := poll.Eventually(ctx, time.Second, "the volume check reads the receiver", func(ctx context.Context) (bool, error) {
		var whr intunedv1alpha1.WebhookReceiver
		if err := env.kubeClient.Get(ctx, client.ObjectKey{Namespace: p.NS, Name: p.Receiver}, &whr); err != nil {
			return false, err
		}
		cond = meta.FindStatusCondition(whr.Status.Conditions, intunedv1alpha1.ConditionVolumeNearlyFull)
		if cond == nil {
			return false, fmt.Errorf("no %s condition yet", intunedv1alpha1.ConditionVolumeNearlyFull)
		}
		return volumeRead(cond), fmt.Errorf("%s=%s %s: %s", cond.Type, cond.Status, cond.Reason, cond.Message)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("VolumeNearlyFull=%s %s: %s", cond.Status, cond.Reason, cond.Message)
}
