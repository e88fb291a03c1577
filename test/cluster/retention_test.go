package cluster

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/receiver/store"
	"github.com/intuned-operator/intuned-operator/internal/receiver/store/sqlite"
	"github.com/intuned-operator/intuned-operator/internal/testutil/flow"
	"github.com/intuned-operator/intuned-operator/internal/testutil/poll"
	"github.com/intuned-operator/intuned-operator/internal/testutil/scenarios"
)

// TestRetentionOnNode: spec.retention prunes a receiver's store on the real node's volume, and
// never inside Intuned's retry window. Deliveries received 3h and 30 min ago are restored into a
// new receiver with maxAge 2h and a size bound every store exceeds (the envtest and receiver tests
// cannot age a delivery on a real volume; a restore can). The 3h-old ones go; the 30-min-old ones
// stay although the store stays over its bound, and Intuned's retry of one, through the Ingress,
// is answered as a duplicate and not stored again. (A pruned runId is at least 2h old, past
// Intuned's last retry at 1h: none arrives to be stored as new; the receiver tests show the floor.)
func TestRetentionOnNode(t *testing.T) {
	ctx := scenarios.Context(t, 4*time.Minute)
	p := scenarios.NewPair(t, ctx, &env, "retention", func(s *flow.Samples) {
		s.Receiver.Spec.Retention = &intunedv1alpha1.ReceiverRetention{
			MaxAge: &metav1.Duration{Duration: 2 * time.Hour}, MaxSize: ptr.To(resource.MustParse("1Ki"))}
		// A pruning round every second (the default is a minute), so the test need not wait.
		s.Receiver.Spec.PodTemplate = &intunedv1alpha1.ReceiverPodTemplate{
			Env: []corev1.EnvVar{{Name: "RECEIVER_RETENTION_INTERVAL", Value: "1s"}}}
	})
	p.WaitReady(ctx)

	// The store to restore: old deliveries of one JobRun, young ones of another.
	file := filepath.Join(t.TempDir(), "aged.db")
	st, err := sqlite.Open(ctx, file)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	var ds []store.Delivery
	for i := range 6 {
		jobRun, at := "jr-old", now.Add(-3*time.Hour)
		if i%2 == 1 {
			jobRun, at = "jr-young", now.Add(-30*time.Minute)
		}
		id := fmt.Sprintf("%s-%d", jobRun, i)
		ds = append(ds, store.Delivery{RunID: id, JobID: p.Job, JobRunID: jobRun, Project: p.Project, APIName: "details",
			ResultStatus: "completed", ReceivedAt: at, Body: []byte(sinkBody(p, jobRun, id))})
	}
	if _, err := st.Save(ctx, ds); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	backup, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	ingest, _, err := flow.ReceiverTokens(ctx, env.Client(), p.NS, p.Receiver)
	if err != nil {
		t.Fatal(err)
	}
	if err := poll.Eventually(ctx, 250*time.Millisecond, "restore into the new receiver", func(ctx context.Context) (bool, error) {
		_, err := p.RC.Restore(ctx, ingest, backup)
		return err == nil, err
	}); err != nil {
		t.Fatal(err)
	}

	kept := func(ctx context.Context) ([]string, error) {
		got, err := p.RC.List(ctx, p.Job, "")
		var ids []string
		for _, d := range got {
			ids = append(ids, d.RunID)
		}
		return ids, err
	}
	want := "jr-young-1 jr-young-3 jr-young-5"
	if err := poll.Eventually(ctx, 250*time.Millisecond, "the 3h-old deliveries pruned, the young ones kept", func(ctx context.Context) (bool, error) {
		ids, err := kept(ctx)
		return err == nil && strings.Join(ids, " ") == want, fmt.Errorf("stored %v (%v), want %s", ids, err, want)
	}); err != nil {
		t.Fatal(err)
	}

	// Intuned retries a young delivery (its Run is within the hour): the same body through the
	// Ingress is a duplicate, and the store still holds it once.
	status, answer, err := postDelivery(ctx, p, ingest, sinkBody(p, "jr-young", "jr-young-3"))
	if err != nil || status != http.StatusOK || !strings.Contains(answer, `"duplicate"`) {
		t.Fatalf("retry of a kept delivery: %d %s (%v), want 200 duplicate", status, answer, err)
	}
	// A few more rounds: the young ones stay although the store is over maxSize.
	time.Sleep(3 * time.Second)
	if ids, err := kept(ctx); err != nil || strings.Join(ids, " ") != want {
		t.Fatalf("after more pruning rounds: stored %v (%v), want %s", ids, err, want)
	}
}

// sinkBody is a sink body of p's job for run id in jobRun.
func sinkBody(p *scenarios.Pair, jobRun, id string) string {
	return fmt.Sprintf(`{"workspaceId":"ws","project":{"id":"p1","name":%q},"projectJob":{"id":%q},"projectJobRun":{"id":%q},`+
		`"apiInfo":{"name":"details","runId":%q,"parameters":{},"result":{"status":"completed","result":[1],"statusCode":200}}}`,
		p.Project, p.Job, jobRun, id)
}

// postDelivery posts a body, with the ingest token unless it is empty, to the receiver's Ingress
// path as Intuned does (from the host, to the node's entry point, with the Ingress host name), and
// returns the status and answer. Like Intuned, it retries a 502/503/504 from the Ingress
// controller for a while: right after a receiver turns Ready, Traefik may not yet have its
// endpoint ("no available server").
func postDelivery(ctx context.Context, p *scenarios.Pair, token, body string) (status int, answer string, err error) {
	_ = poll.Eventually(ctxTimeout(ctx, 30*time.Second), time.Second, "a delivery past the Ingress controller", func(context.Context) (bool, error) {
		status, answer, err = postDeliveryOnce(ctx, p, token, body)
		gateway := status == http.StatusBadGateway || status == http.StatusServiceUnavailable || status == http.StatusGatewayTimeout
		return err != nil || !gateway, nil
	})
	return status, answer, err
}

func postDeliveryOnce(ctx context.Context, p *scenarios.Pair, token, body string) (int, string, error) {
	path := strings.TrimPrefix(p.URL, "http://"+env.ingressHost())
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+env.kc.Config().NodeIP+path, strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Host = env.ingressHost()
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := nodeHTTP.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	var b strings.Builder
	_, err = io.Copy(&b, resp.Body)
	return resp.StatusCode, b.String(), err
}
