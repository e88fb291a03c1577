package config

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// TestSamplesKeepTheUsersCredentials: the README has the user create the
// credentials Secret with their real API key, then apply the samples. No
// way of applying the samples, however often (a GitOps tool re-applies),
// may touch that Secret: the samples hold no Secret at all, and
// `kubectl apply -k`, client- or server-side, leaves the key as it was.
func TestSamplesKeepTheUsersCredentials(t *testing.T) {
	for _, o := range render(t, "samples") {
		if o.GetKind() == "Secret" {
			t.Errorf("config/samples renders Secret %s: applying the samples would overwrite the user's", o.GetName())
		}
	}

	assets := assetsDir(t)
	kubectl := filepath.Join(assets, "kubectl")
	if _, err := os.Stat(kubectl); err != nil {
		t.Skipf("no kubectl in %s", assets)
	}
	env, c := startAPIServer(t, assets)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	createCRDsAndNamespaces(ctx, t, c, renderDefault(t))
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, env.KubeConfig, 0o600); err != nil {
		t.Fatal(err)
	}

	// What the README has the user run first.
	real := map[string]string{"workspaceId": "5b1c6c1e-real-workspace", "apiKey": "in_real_key_do_not_lose"}
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "intuned-credentials"}, StringData: real}
	if err := c.Create(ctx, sec); err != nil {
		t.Fatal(err)
	}
	samples := filepath.Join(repoRoot(t), "config", "samples")
	for _, args := range [][]string{
		{"apply", "--server-side", "-k", samples},
		{"apply", "--server-side", "--force-conflicts", "-k", samples},
		{"apply", "-k", samples},
	} {
		cmd := exec.CommandContext(ctx, kubectl, append([]string{"--kubeconfig", kubeconfig, "-n", "default"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("kubectl %v: %v\n%s", args, err, out)
		}
		var got corev1.Secret
		if err := c.Get(ctx, client.ObjectKeyFromObject(sec), &got); err != nil {
			t.Fatalf("after kubectl %v: %v", args, err)
		}
		for k, v := range real {
			if string(got.Data[k]) != v {
				t.Errorf("after kubectl %v the Secret's %s is %q, want the user's %q", args, k, got.Data[k], v)
			}
		}
	}
}
