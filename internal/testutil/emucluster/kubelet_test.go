package emucluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"

	"github.com/intuned-operator/intuned-operator/internal/testutil/poll"
	"github.com/intuned-operator/intuned-operator/internal/testutil/proc"
)

var (
	buildOnce sync.Once
	buildDir  string
	built     Binaries
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// testBinaries builds the binaries once per test binary.
func testBinaries(t *testing.T) Binaries {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "emucluster-bin-")
		if buildErr != nil {
			return
		}
		built, buildErr = BuildBinaries(context.Background(), buildDir)
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return built
}

// TestKubeletRunsHandWrittenStatefulSet runs the kubelet against a real API
// server with a hand-written receiver StatefulSet owned by a
// WebhookReceiver (no operator involved): the receiver must come up, get
// its status written, take a delivery through the externalURL, and a broken
// Pod template (an unknown flag) must be reported as a failure.
func TestKubeletRunsHandWrittenStatefulSet(t *testing.T) {
	if _, err := AssetsDir(); err != nil {
		if os.Getenv("CI") != "true" {
			t.Skip(err)
		}
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bins := testBinaries(t)
	dir := t.TempDir()
	cp, err := startControlPlane(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer cp.stop()
	c := cp.client

	var procs proc.Group
	defer procs.StopAll(5 * time.Second)
	k := newKubelet(c, Images{Binaries: map[string]string{"/receiver": bins.Receiver}, Entrypoint: "/manager"}, dir, &procs, t.Logf)
	kctx, kcancel := context.WithCancel(ctx)
	kdone := make(chan struct{})
	go func() { defer close(kdone); k.run(kctx) }()
	defer func() { kcancel(); <-kdone }()

	const ns = "default"
	port, _ := proc.FreePort()
	ext := fmt.Sprintf("http://127.0.0.1:%d/webhooks/intuned", port)
	whr := &intunedv1alpha1.WebhookReceiver{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "rcv"},
		Spec: intunedv1alpha1.WebhookReceiverSpec{ExternalURL: ext}}
	if err := c.Create(ctx, whr); err != nil {
		t.Fatal(err)
	}
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "rcv-token"},
		Data: map[string][]byte{"token": []byte("tok-1"), "read-token": []byte("read-1")}}
	if err := c.Create(ctx, sec); err != nil {
		t.Fatal(err)
	}
	spec := receiverPodSpec()
	spec.Containers[0].Image = "intuned-operator:e2e"
	labels := map[string]string{"app": "rcv"}
	sts := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "rcv", OwnerReferences: []metav1.OwnerReference{{
			APIVersion: intunedv1alpha1.GroupVersion.String(), Kind: "WebhookReceiver", Name: whr.Name, UID: whr.UID, Controller: ptr.To(true)}}},
		Spec: appsv1.StatefulSetSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: *spec},
			VolumeClaimTemplates: []corev1.PersistentVolumeClaim{{ObjectMeta: metav1.ObjectMeta{Name: "data"},
				Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
					Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}}}},
		},
	}
	if err := c.Create(ctx, sts); err != nil {
		t.Fatal(err)
	}

	err = poll.Eventually(ctx, 100*time.Millisecond, "StatefulSet ready", func(ctx context.Context) (bool, error) {
		var got appsv1.StatefulSet
		if err := c.Get(ctx, client.ObjectKeyFromObject(sts), &got); err != nil {
			return false, err
		}
		return got.Status.ReadyReplicas == 1 && got.Status.AvailableReplicas == 1 && got.Status.ObservedGeneration == got.Generation,
			fmt.Errorf("status %+v; failures %v", got.Status, k.Failures())
	})
	if err != nil {
		t.Fatal(err)
	}

	// The receiver's metrics through a Service, as the manager reads them.
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "rcv"},
		Spec: corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{Name: "http", Port: 8080, TargetPort: intstr.FromString("http")}}}}
	if err := c.Create(ctx, svc); err != nil {
		t.Fatal(err)
	}
	sp, err := startServiceProxy(c, k)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.close()
	proxyURL, _ := url.Parse(sp.URL())
	viaProxy := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}}
	mres, err := viaProxy.Get("http://rcv." + ns + ".svc:8080/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(mres.Body)
	mres.Body.Close()
	if mres.StatusCode != http.StatusOK || !strings.Contains(string(metrics), "receiver_store_volume_near_full") {
		t.Fatalf("metrics through the Service: %d %.300s", mres.StatusCode, metrics)
	}

	// A delivery through the externalURL, with the token from the Secret file.
	body := `{"workspaceId":"w","project":{"id":"p","name":"x"},"projectJob":{"id":"job-1234"},"projectJobRun":{"id":"jr1"},"apiInfo":{"name":"list","parameters":{},"runId":"run-1","result":{"status":"completed","result":[],"statusCode":200}}}`
	post := func(token string) int {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, ext, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := post("tok-1"); got != http.StatusCreated {
		t.Fatalf("POST with the Secret's token = %d", got)
	}

	// The Secret changes; the kubelet updates the mounted file and the
	// receiver (re-reading every 2s) accepts the new token.
	sec.Data["token"] = []byte("tok-2")
	if err := c.Update(ctx, sec); err != nil {
		t.Fatal(err)
	}
	err = poll.Eventually(ctx, 200*time.Millisecond, "new token accepted", func(context.Context) (bool, error) {
		return post("tok-2") == http.StatusOK, nil // duplicate runId: 200
	})
	if err != nil {
		t.Fatal(err)
	}
	if f := k.Failures(); len(f) > 0 {
		t.Fatalf("unexpected failures: %v", f)
	}

	// A wrong flag in the Pod template must fail here, with the receiver's
	// own message.
	var cur appsv1.StatefulSet
	if err := c.Get(ctx, client.ObjectKeyFromObject(sts), &cur); err != nil {
		t.Fatal(err)
	}
	cur.Spec.Template.Spec.Containers[0].Args = append(cur.Spec.Template.Spec.Containers[0].Args, "--no-such-flag=1")
	if err := c.Update(ctx, &cur); err != nil {
		t.Fatal(err)
	}
	err = poll.Eventually(ctx, 100*time.Millisecond, "failure reported", func(context.Context) (bool, error) {
		for _, f := range k.Failures() {
			if strings.Contains(f, "no-such-flag") {
				return true, nil
			}
		}
		return false, errors.New("no failure yet")
	})
	if err != nil {
		t.Fatal(err)
	}
	// The SQLite file lives on the claim's directory.
	if _, err := os.Stat(filepath.Join(dir, "pvc", ns, "data-rcv-0", "receiver.db")); err != nil {
		t.Errorf("SQLite file not on the PVC directory: %v", err)
	}
}
