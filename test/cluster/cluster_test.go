package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/intuned-operator/intuned-operator/internal/testutil/poll"
	"github.com/intuned-operator/intuned-operator/internal/testutil/scenarios"
)

// TestQuickstart is the README's quickstart on a real node
// (scenarios.Quickstart): the operator installed from its installer
// manifest runs as a Pod of the locally built image; the WebhookReceiver
// becomes a StatefulSet Pod with a provisioned volume, a Service and an
// Ingress; Intuned (the simulator) posts every Run to the Ingress URL; the
// data is read back. Then what a user does next: read the Pod's log and run
// a command in it.
func TestQuickstart(t *testing.T) {
	p := scenarios.Quickstart(t, &env)
	ctx := scenarios.Context(t, time.Minute)
	pods, err := env.receiverPods(ctx, p.NS, p.Receiver)
	if err != nil {
		t.Fatal(err)
	}
	if len(pods) != 1 {
		t.Fatalf("receiver Pods: %d, want 1", len(pods))
	}
	if img := pods[0].Spec.Containers[0].Image; img != "kcluster.local/intuned-operator:dev" {
		t.Errorf("receiver image %q", img)
	}
	// What a user does next on a real cluster: read the Pod's log, run a
	// command in it (both go through the kubelet's streaming server).
	if out, err := env.kc.Kubectl(ctx, "-n", p.NS, "logs", pods[0].Name); err != nil || !strings.Contains(out, `"level"`) {
		t.Errorf("kubectl logs: %v\n%s", err, tailString(out, 500))
	}
	if out, err := env.kc.Kubectl(ctx, "-n", p.NS, "exec", pods[0].Name, "--", "/receiver", "--help"); err != nil || !strings.Contains(out, "--sqlite-path") {
		t.Errorf("kubectl exec: %v\n%s", err, tailString(out, 500))
	}
}

// TestRolesAggregateIntoBuiltins: the install's editor and viewer roles are
// folded into the cluster's built-in edit and view roles by the real
// controller-manager, so a namespace user gets the rights with the role they
// already have.
func TestRolesAggregateIntoBuiltins(t *testing.T) {
	ctx := scenarios.Context(t, 2*time.Minute)
	ns := "kc-rbac"
	if _, err := env.kc.Kubectl(ctx, "create", "namespace", ns); err != nil {
		t.Fatal(err)
	}
	for _, b := range [][]string{{"alice-edit", "edit", "alice"}, {"bob-view", "view", "bob"}} {
		if _, err := env.kc.Kubectl(ctx, "-n", ns, "create", "rolebinding", b[0], "--clusterrole="+b[1], "--user="+b[2]); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		user, verb, resource, want string
	}{
		{"alice", "create", "intunedjobs.intuned.io", "yes"},
		{"alice", "delete", "webhookreceivers.intuned.io", "yes"},
		{"bob", "list", "intunedjobs.intuned.io", "yes"},
		{"bob", "get", "webhookreceivers.intuned.io", "yes"},
		{"bob", "create", "intunedjobs.intuned.io", "no"},
		{"bob", "patch", "webhookreceivers.intuned.io", "no"},
	} {
		err := poll.Eventually(ctx, 250*time.Millisecond, fmt.Sprintf("%s may %s %s: %s", tc.user, tc.verb, tc.resource, tc.want), func(ctx context.Context) (bool, error) {
			out, _ := env.kc.Kubectl(ctx, "auth", "can-i", tc.verb, tc.resource, "-n", ns, "--as="+tc.user)
			return strings.TrimSpace(out) == tc.want, fmt.Errorf("can-i says %q", strings.TrimSpace(out))
		})
		if err != nil {
			t.Error(err)
		}
	}
}

// simJobExists looks the job up in intuned-sim's list of the project's Jobs.
// The list has a path (and so a rate limit) of its own: polling it does not
// take the per-job path's budget from the operator.
func simJobExists(ctx context.Context, project, id string) (bool, error) {
	u := env.simulator.BaseURL + "/" + env.simulator.WorkspaceID + "/projects/" + project + "/jobs"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return false, err
	}
	req.Header.Set("x-api-key", env.simulator.APIKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("GET jobs: %s", resp.Status)
	}
	var jobs []struct {
		ID string `json:"id"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&jobs); err != nil {
		return false, err
	}
	for _, j := range jobs {
		if j.ID == id {
			return true, nil
		}
	}
	return false, nil
}

func waitJobOnIntuned(t *testing.T, ctx context.Context, p *scenarios.Pair, want bool) {
	t.Helper()
	// Under Intuned's 20 requests per minute per path.
	err := poll.Eventually(ctx, 3500*time.Millisecond, fmt.Sprintf("Job %s exists on Intuned: %v", p.Job, want), func(ctx context.Context) (bool, error) {
		ok, err := simJobExists(ctx, p.Project, p.Job)
		return err == nil && ok == want, err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestDeletingNeverOrphansAJob: deleting the samples in the order their
// file lists them (the credentials Secret first, as `kubectl delete -k
// config/samples` does), or deleting their whole namespace (the real
// namespace controller and garbage collector), removes the Job from Intuned:
// the credentials outlive the IntunedJob that needs them.
func TestDeletingNeverOrphansAJob(t *testing.T) {
	ctx := scenarios.Context(t, 5*time.Minute)
	t.Run("samples-secret-first", func(t *testing.T) {
		p := scenarios.NewPair(t, ctx, &env, "delete-samples", nil)
		p.WaitReady(ctx)
		waitJobOnIntuned(t, ctx, p, true)
		manifest := fmt.Sprintf(`apiVersion: v1
kind: Secret
metadata: {name: intuned-credentials}
---
apiVersion: intuned.io/v1alpha1
kind: WebhookReceiver
metadata: {name: %s}
---
apiVersion: intuned.io/v1alpha1
kind: IntunedJob
metadata: {name: %s}
`, p.Receiver, p.Job)
		file := filepath.Join(t.TempDir(), "samples.yaml")
		if err := os.WriteFile(file, []byte(manifest), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := env.kc.Kubectl(ctx, "-n", p.NS, "delete", "-f", file, "--timeout=3m"); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		waitJobOnIntuned(t, ctx, p, false)
		// The receiver's token Secret goes through the garbage collector
		// (owner reference), after kubectl has seen the receiver gone.
		left := ""
		gcCtx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		err := poll.Eventually(gcCtx, 500*time.Millisecond, "nothing left in the namespace", func(ctx context.Context) (bool, error) {
			out, err := env.kc.Kubectl(ctx, "-n", p.NS, "get", "secret,intunedjob,webhookreceiver", "-o", "name")
			left = strings.TrimSpace(out)
			return err == nil && left == "", nil
		})
		if err != nil {
			t.Errorf("left in the namespace: %v %s", err, left)
		}
	})

	t.Run("namespace", func(t *testing.T) {
		p := scenarios.NewPair(t, ctx, &env, "delete-namespace", nil)
		p.WaitReady(ctx)
		waitJobOnIntuned(t, ctx, p, true)
		if out, err := env.kc.Kubectl(ctx, "delete", "namespace", p.NS, "--timeout=3m"); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		waitJobOnIntuned(t, ctx, p, false)
	})
}
