package emucluster

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/intuned-operator/intuned-operator/internal/testutil/flow"
	"github.com/intuned-operator/intuned-operator/internal/testutil/proc"
)

// mapSource is an ObjectSource over fixed maps (the unit tests' API server).
type mapSource struct {
	secrets map[string]map[string][]byte
}

func (m mapSource) SecretData(ns, name string) (map[string][]byte, error) {
	d, ok := m.secrets[name]
	if !ok {
		return nil, fmt.Errorf("Secret %s/%s: %w", ns, name, ErrNotFound)
	}
	return d, nil
}

// receiverPodSpec is a hand-written receiver Pod, the shape the
// WebhookReceiver controller is expected to produce.
func receiverPodSpec() *corev1.PodSpec {
	grace := int64(5)
	return &corev1.PodSpec{
		TerminationGracePeriodSeconds: &grace,
		Containers: []corev1.Container{{
			Name:    "receiver",
			Command: []string{"/receiver"},
			Args: []string{
				"--listen-addr=:8080",
				"--token-file=/etc/receiver/token/token",
				"--previous-token-file=/etc/receiver/token/previous-token",
				"--read-token-file=/etc/receiver/token/read-token",
				"--sqlite-path=/data/receiver.db",
				"--shutdown-grace=2s",
			},
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
			ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Path: "/readyz", Port: intstr.FromString("http")}}},
			LivenessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Path: "/healthz", Port: intstr.FromInt32(8080)}}},
			VolumeMounts: []corev1.VolumeMount{
				{Name: "token", MountPath: "/etc/receiver/token", ReadOnly: true},
				{Name: "data", MountPath: "/data"},
			},
		}},
		Volumes: []corev1.Volume{{Name: "token", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "rcv-token"}}}},
	}
}

func tokenSource() mapSource {
	return mapSource{secrets: map[string]map[string][]byte{
		"rcv-token": {"token": []byte("tok-1"), "read-token": []byte("read-1")},
	}}
}

func TestPlanContainerRejectsBadSpecs(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*corev1.PodSpec)
		want   string
	}{
		{"no command runs the image entrypoint", func(s *corev1.PodSpec) { s.Containers[0].Command = nil }, `runs "/manager"`},
		{"unknown binary", func(s *corev1.PodSpec) { s.Containers[0].Command = []string{"/bin/receiver"} }, "not a binary of the image"},
		{"listen port not declared", func(s *corev1.PodSpec) { s.Containers[0].Args[0] = "--listen-addr=:9090" }, "declares ports [8080]"},
		{"probe on another port", func(s *corev1.PodSpec) {
			s.Containers[0].ReadinessProbe.HTTPGet.Port = intstr.FromInt32(8081)
		}, "readinessProbe targets port 8081"},
		{"probe on unknown named port", func(s *corev1.PodSpec) {
			s.Containers[0].LivenessProbe.HTTPGet.Port = intstr.FromString("metrics")
		}, `port "metrics" is not a named port`},
		{"no readiness probe", func(s *corev1.PodSpec) { s.Containers[0].ReadinessProbe = nil }, "no httpGet readinessProbe"},
		{"token file outside volumes", func(s *corev1.PodSpec) { s.Containers[0].Args[1] = "--token-file=/etc/token" }, "--token-file \"/etc/token\" is not inside any volumeMount"},
		{"sqlite on root filesystem", func(s *corev1.PodSpec) { s.Containers[0].Args[4] = "--sqlite-path=/var/receiver.db" }, "read-only and not persistent"},
		{"sqlite default path", func(s *corev1.PodSpec) { s.Containers[0].Args = s.Containers[0].Args[:4] }, `"receiver.db" (/receiver.db)`},
		{"sqlite on a secret volume", func(s *corev1.PodSpec) {
			s.Containers[0].Args[4] = "--sqlite-path=/etc/receiver/token/db"
		}, "read-only mount /etc/receiver/token"},
		{"mount of a missing volume", func(s *corev1.PodSpec) {
			s.Containers[0].VolumeMounts = append(s.Containers[0].VolumeMounts, corev1.VolumeMount{Name: "nope", MountPath: "/x"})
		}, `volumeMount "nope" names no volume`},
		{"environment, which the operator never sets", func(s *corev1.PodSpec) {
			s.Containers[0].Env = []corev1.EnvVar{{Name: "RECEIVER_LOG_LEVEL", Value: "debug"}}
		}, "sets env/envFrom"},
		{"a configMap volume, which the operator never mounts", func(s *corev1.PodSpec) {
			s.Volumes = append(s.Volumes, corev1.Volume{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{}}})
			s.Containers[0].VolumeMounts = append(s.Containers[0].VolumeMounts, corev1.VolumeMount{Name: "cfg", MountPath: "/cfg"})
		}, "only emptyDir, persistentVolumeClaim and secret volumes"},
		{"two containers", func(s *corev1.PodSpec) { s.Containers = append(s.Containers, s.Containers[0]) }, "exactly one container"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := receiverPodSpec()
			// a PVC-backed data volume, as a StatefulSet claim template
			tt.mutate(spec)
			dir := t.TempDir()
			_, err := PlanContainer(spec, PodIdentity{Namespace: "ns", Name: "rcv-0", ClaimNames: map[string]string{"data": "data-rcv-0"}},
				Layout{PodDir: filepath.Join(dir, "pod"), PVCDir: filepath.Join(dir, "pvc")},
				Images{Binaries: map[string]string{"/receiver": "/bin/true"}, Entrypoint: "/manager"},
				tokenSource(), 12345)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestPlanContainerMapsPathsAndPort(t *testing.T) {
	dir := t.TempDir()
	spec := receiverPodSpec()
	p, err := PlanContainer(spec, PodIdentity{Namespace: "ns", Name: "rcv-0", ClaimNames: map[string]string{"data": "data-rcv-0"}},
		Layout{PodDir: filepath.Join(dir, "pod"), PVCDir: filepath.Join(dir, "pvc")},
		Images{Binaries: map[string]string{"/receiver": "/x/receiver"}, Entrypoint: "/manager"}, tokenSource(), 12345)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"--listen-addr=127.0.0.1:12345",
		"--token-file=" + filepath.Join(dir, "pod/volumes/secret/token/token"),
		"--previous-token-file=" + filepath.Join(dir, "pod/volumes/secret/token/previous-token"),
		"--read-token-file=" + filepath.Join(dir, "pod/volumes/secret/token/read-token"),
		"--sqlite-path=" + filepath.Join(dir, "pvc/data-rcv-0/receiver.db"),
		"--shutdown-grace=2s",
	}
	if strings.Join(p.Args, " ") != strings.Join(want, " ") {
		t.Errorf("args\n got %q\nwant %q", p.Args, want)
	}
	if len(p.DataDirs) != 1 || p.DataDirs[0] != filepath.Join(dir, "pvc/data-rcv-0") {
		t.Errorf("data dirs = %q", p.DataDirs)
	}
	if p.Path != "/x/receiver" || p.ContainerPort != 8080 || p.ReadyPath != "/readyz" || p.GraceSeconds != 5 {
		t.Errorf("plan = %+v", p)
	}
	if env := strings.Join(p.Env, "\n"); !strings.Contains(env, "HOSTNAME=rcv-0") {
		t.Errorf("env lacks HOSTNAME=rcv-0: %s", env)
	}
}

func TestPlanContainerListenAddr(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*corev1.Container)
		wantArg string
	}{
		{"flag with separate value", func(c *corev1.Container) {
			c.Args[0] = "--listen-addr"
			c.Args = append(c.Args[:1], append([]string{":8080"}, c.Args[1:]...)...)
		}, "127.0.0.1:12345"},
		{"default", func(c *corev1.Container) { c.Args = c.Args[1:] }, "--listen-addr=127.0.0.1:12345"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := receiverPodSpec()
			tt.mutate(&spec.Containers[0])
			dir := t.TempDir()
			p, err := PlanContainer(spec, PodIdentity{Namespace: "ns", Name: "rcv-0", ClaimNames: map[string]string{"data": "d"}},
				Layout{PodDir: dir, PVCDir: dir}, Images{Binaries: map[string]string{"/receiver": "/x"}}, tokenSource(), 12345)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(strings.Join(p.Args, " "), tt.wantArg) {
				t.Errorf("args %q lack %q", p.Args, tt.wantArg)
			}
		})
	}
}

func TestProjectedVolumeFollowsSecret(t *testing.T) {
	dir := t.TempDir()
	src := tokenSource()
	v := projectedVolume{hostDir: dir, secret: "rcv-token", mode: 0o644}
	if _, err := v.materialise("ns", src); err != nil {
		t.Fatal(err)
	}
	src.secrets["rcv-token"] = map[string][]byte{"token": []byte("tok-2"), "previous-token": []byte("tok-1")}
	changed, err := v.materialise("ns", src)
	if err != nil || !changed {
		t.Fatalf("changed=%v err=%v", changed, err)
	}
	for f, want := range map[string]string{"token": "tok-2", "previous-token": "tok-1"} {
		if b, _ := os.ReadFile(filepath.Join(dir, f)); string(b) != want {
			t.Errorf("%s = %q, want %q", f, b, want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "read-token")); !os.IsNotExist(err) {
		t.Errorf("read-token should be gone: %v", err)
	}
	if changed, _ := v.materialise("ns", src); changed {
		t.Error("no change expected on a second refresh")
	}
}

// TestPlanRunsTheRealReceiver runs cmd/receiver from a hand-written Pod
// spec: it must come up ready, accept a delivery with the token from the
// Secret file, and keep its SQLite data across a SIGKILL.
func TestPlanRunsTheRealReceiver(t *testing.T) {
	if testing.Short() {
		t.Skip("builds binaries")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	bins := testBinaries(t)
	port, _ := proc.FreePort()
	lay := Layout{PodDir: filepath.Join(dir, "pod"), PVCDir: filepath.Join(dir, "pvc")}
	start := func() (*proc.Process, *Plan) {
		p, err := PlanContainer(receiverPodSpec(), PodIdentity{Namespace: "ns", Name: "rcv-0", ClaimNames: map[string]string{"data": "data-rcv-0"}},
			lay, Images{Binaries: map[string]string{"/receiver": bins.Receiver}}, tokenSource(), port)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range p.Files {
			if _, err := f.materialise("ns", tokenSource()); err != nil {
				t.Fatal(err)
			}
		}
		process, err := proc.Start(proc.Spec{Name: "receiver", Path: p.Path, Args: p.Args, Env: p.Env, Dir: p.Dir, LogFile: filepath.Join(dir, "rcv.log")})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { process.Kill() })
		if err := proc.WaitHTTPOK(ctx, "http://"+proc.Loopback(port)+p.ReadyPath, process.Done()); err != nil {
			t.Fatalf("%v\n%s", err, process.LogTail(2000))
		}
		return process, p
	}
	process, _ := start()
	body := `{"workspaceId":"w","project":{"id":"p","name":"ecommerce-scraper-quickstart"},"projectJob":{"id":"job-1234"},"projectJobRun":{"id":"jr1"},"apiInfo":{"name":"list","parameters":{},"runId":"run-1","result":{"status":"completed","result":[],"statusCode":200}}}`
	req, _ := http.NewRequest(http.MethodPost, "http://"+proc.Loopback(port)+"/webhooks/intuned", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer tok-1")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST = %s", resp.Status)
	}
	process.Kill()
	start()
	raw, err := flow.ReceiverClient{BaseURL: "http://" + proc.Loopback(port), ReadToken: "read-1"}.Raw(ctx, "run-1")
	if err != nil {
		t.Fatal(err)
	}
	if string(raw) != body {
		t.Fatalf("stored body after restart = %q", raw)
	}
}
