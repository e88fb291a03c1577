package emucluster

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
)

// TestServiceProxy resolves Service hosts as cluster DNS plus kube-proxy
// would, against replicas the kubelet knows (here set by hand, each an
// httptest server) and Services in a fake API.
func TestServiceProxy(t *testing.T) {
	var gotHost string
	pod := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotHost = r.Host
		_, _ = io.WriteString(w, "metrics of "+r.URL.Path)
	}))
	defer pod.Close()
	podPort, _ := strconv.Atoi(pod.URL[strings.LastIndex(pod.URL, ":")+1:])

	rcvLabels := map[string]string{"app": "rcv"}
	k := newKubelet(nil, Images{}, t.TempDir(), nil, t.Logf)
	k.workloads = map[string]*workload{
		"StatefulSet/ns1/rcv": {namespace: "ns1", name: "rcv", podLabels: rcvLabels, namedPorts: map[string]int{"http": 8080},
			replicas: []*replica{{pod: "rcv-0", hostPort: podPort, ready: true, plan: &Plan{ContainerPort: 8080}}}},
		"StatefulSet/ns1/down": {namespace: "ns1", name: "down", podLabels: map[string]string{"app": "down"},
			replicas: []*replica{{pod: "down-0", hostPort: podPort, ready: false, plan: &Plan{ContainerPort: 8080}}}},
	}
	svc := func(name string, sel map[string]string, port int32, target intstr.IntOrString) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns1", Name: name},
			Spec: corev1.ServiceSpec{Selector: sel, Ports: []corev1.ServicePort{{Port: port, TargetPort: target}}}}
	}
	c := fake.NewClientBuilder().WithScheme(Scheme()).WithObjects(
		svc("rcv", rcvLabels, 8080, intstr.FromInt32(8080)),
		svc("rcv-named", rcvLabels, 80, intstr.FromString("http")),
		svc("rcv-same-port", rcvLabels, 8080, intstr.IntOrString{}),
		svc("rcv-wrong-target", rcvLabels, 8080, intstr.FromInt32(9090)),
		svc("down", map[string]string{"app": "down"}, 8080, intstr.FromInt32(8080)),
		svc("no-selector", nil, 8080, intstr.FromInt32(8080)),
	).Build()
	p, err := startServiceProxy(c, k)
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	proxyURL, _ := url.Parse(p.URL())
	hc := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}}

	cases := []struct {
		url        string
		wantStatus int
	}{
		{"http://rcv.ns1.svc:8080/metrics", 200},
		{"http://rcv.ns1.svc.cluster.local:8080/metrics", 200},
		{"http://rcv-named.ns1.svc/metrics", 200},
		{"http://rcv-same-port.ns1.svc:8080/metrics", 200},
		{"http://rcv.ns1.svc:8081/metrics", 502},              // the Service has no such port
		{"http://rcv.ns2.svc:8080/metrics", 502},              // no such Service
		{"http://no-selector.ns1.svc:8080/metrics", 502},      // endpoints nobody manages here
		{"http://example.com/metrics", 502},                   // never leaves the machine
		{"http://rcv-wrong-target.ns1.svc:8080/metrics", 503}, // nothing listens on 9090
		{"http://down.ns1.svc:8080/metrics", 503},             // no ready replica
	}
	for _, c := range cases {
		t.Run(c.url, func(t *testing.T) {
			gotHost = ""
			resp, err := hc.Get(c.url)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != c.wantStatus {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, c.wantStatus, body)
			}
			u, _ := url.Parse(c.url)
			if c.wantStatus == 200 && (string(body) != "metrics of /metrics" || gotHost != u.Host) {
				t.Fatalf("body %q, Host %q", body, gotHost)
			}
		})
	}
}

func TestServiceHost(t *testing.T) {
	cases := map[string]string{
		"rcv.ns.svc":                "rcv/ns",
		"rcv.ns.svc.cluster.local":  "rcv/ns",
		"rcv.ns.svc.cluster.local.": "rcv/ns",
		"rcv.svc":                   "",
		"a.b.c.svc":                 "",
		"rcv.ns.example.com":        "",
		"127.0.0.1":                 "",
	}
	for host, want := range cases {
		name, ns, ok := serviceHost(host)
		got := ""
		if ok {
			got = name + "/" + ns
		}
		if got != want {
			t.Errorf("serviceHost(%q) = %q, want %q", host, got, want)
		}
	}
}
