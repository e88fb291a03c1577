package kcluster

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/intuned-operator/intuned-operator/internal/testutil/poll"
)

// StorageClassName is the cluster's default StorageClass: node-local
// directories handed out by the provisioner (hack/kcluster provisioner).
const StorageClassName = "kcluster-local"

// ProvisionerName is what the StorageClass names as its provisioner.
const ProvisionerName = "kcluster.intuned.io/local"

// IngressClassName is the default IngressClass, served by Traefik.
const IngressClassName = "traefik"

// metricsServerPort is metrics-server's port on the node address.
const metricsServerPort = 4443

// ClusterDomain is the DNS domain of Services (<name>.<namespace>.svc.cluster.local).
const ClusterDomain = "cluster.local"

func (c *Cluster) writeConfigs() error {
	cfg := c.cfg
	for _, d := range []string{"containerd", "cni/net.d", "kubelet", "etcd", "coredns"} {
		if err := os.MkdirAll(filepath.Join(cfg.Dir, d), 0o755); err != nil {
			return err
		}
	}
	files := map[string]string{
		"containerd/config.toml": fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
[grpc]
  address = %[3]q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[4]q
  # The VM's capability bounding set lacks CAP_SYS_RESOURCE: runc cannot
  # lower a container's oom_score_adj, so containerd must not ask it to.
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = %[5]q
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %[6]q
`, filepath.Join(cfg.Dir, "containerd", "root"), filepath.Join(cfg.Dir, "containerd", "state"), cfg.containerdSock(),
			PauseImage, filepath.Join(cfg.Dir, "containerd", "runc"), filepath.Join(cfg.Dir, "cni", "net.d")),

		"cni/net.d/10-kcluster.conflist": fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": %[1]q,
  "plugins": [
    {"type": "bridge", "bridge": %[2]q, "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": %[3]q, "ranges": [[{"subnet": %[4]q}]], "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`, cfg.Name, cfg.bridge(), filepath.Join(cfg.Dir, "cni", "ipam"), cfg.PodCIDR),

		"kubelet/config.yaml": fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %[1]s
port: 10250
readOnlyPort: 0
healthzBindAddress: %[1]s
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: %[2]q}
authorization: {mode: Webhook}
tlsCertFile: %[3]q
tlsPrivateKeyFile: %[4]q
containerRuntimeEndpoint: unix://%[5]s
cgroupDriver: cgroupfs
# This VM's host is cgroup v1 (hybrid); kubelet 1.37 runs there only when told.
failCgroupV1: false
failSwapOn: false
podCIDR: %[6]s
# CoreDNS runs on the node address (see the Corefile): Pods resolve
# <service>.<namespace>.svc as on any cluster.
clusterDNS: [%[1]s]
clusterDomain: %[8]s
resolvConf: %[7]q
# A small test disk: evict only when it is really full, and never collect
# images (they are imported locally; there is no registry to pull them back).
evictionHard: {memory.available: "50Mi", nodefs.available: "1%%", imagefs.available: "1%%", nodefs.inodesFree: "1%%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
maxPods: 60
syncFrequency: 10s
`, cfg.NodeIP, filepath.Join(cfg.pki(), "ca.crt"), filepath.Join(cfg.pki(), "kubelet-serving.crt"), filepath.Join(cfg.pki(), "kubelet-serving.key"),
			cfg.containerdSock(), cfg.PodCIDR, filepath.Join(cfg.Dir, "kubelet", "resolv.conf"), ClusterDomain),

		"kubelet/resolv.conf": "# no upstream resolver inside the cluster's namespace\noptions timeout:1 attempts:1\n",

		// Only the cluster's own names: there is no forward plugin, as there is
		// no resolver to forward to (the namespace has no default route), so a
		// name outside the zone is refused at once. The admin kubeconfig, as
		// Traefik's: a test node has no separate identity for it.
		"coredns/Corefile": fmt.Sprintf(`%[1]s:53 {
    errors
    ready %[2]s
    kubernetes %[1]s {
        kubeconfig %[3]q
    }
    cache 30
}
`, ClusterDomain, cfg.dnsReadyAddr(), cfg.AdminKubeconfig()),

		"kube-proxy.yaml": fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: %[1]q}
mode: iptables
clusterCIDR: %[2]s
hostnameOverride: %[3]s
bindAddress: 0.0.0.0
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
# Leave the machine's conntrack table size alone (a VM may not allow changing it).
conntrack: {maxPerCore: 0}
`, cfg.kubeconfig("kube-proxy"), cfg.PodCIDR, cfg.NodeName),
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(cfg.Dir, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	return c.writeTraefikCredentials()
}

// traefikUID is the user Traefik runs as. An Ingress controller is an
// unprivileged Pod on a real cluster, and so must it be here: the
// NetworkPolicy implementation (kube-network-policies) lets every
// connection a root process of the node opens pass, as the kubelet's
// probes must, so a root Traefik would pass any receiver policy untested.
const traefikUID = 65531

// writeTraefikCredentials gives Traefik copies of the admin credentials it
// can read as traefikUID (the PKI directory is root's alone). A test node
// has no separate identity for its Ingress controller.
func (c *Cluster) writeTraefikCredentials() error {
	dir := filepath.Dir(c.cfg.traefikKubeconfig())
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for _, f := range []string{"ca.crt", "admin.crt", "admin.key"} {
		b, err := os.ReadFile(filepath.Join(c.cfg.pki(), f))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o600); err != nil {
			return err
		}
	}
	if err := writeKubeconfig(c.cfg.traefikKubeconfig(), dir, "admin", c.cfg.APIServerURL()); err != nil {
		return err
	}
	for _, f := range []string{"", "ca.crt", "admin.crt", "admin.key", filepath.Base(c.cfg.traefikKubeconfig())} {
		if err := os.Chown(filepath.Join(dir, f), traefikUID, traefikUID); err != nil {
			return err
		}
	}
	return nil
}

// component returns how to run one named component.
func (c *Cluster) component(name string) (component, error) {
	cfg := c.cfg
	pki := func(f string) string { return filepath.Join(cfg.pki(), f) }
	k8s := func(b string) string { return filepath.Join(cfg.K8sBin, b) }
	switch name {
	case "containerd":
		return component{name: name, bin: "/usr/bin/containerd", args: []string{"--config", filepath.Join(cfg.Dir, "containerd", "config.toml")}}, nil
	case "etcd":
		return component{name: name, bin: k8s("etcd"), args: []string{
			"--name=kcluster", "--data-dir=" + filepath.Join(cfg.Dir, "etcd"),
			"--listen-client-urls=http://127.0.0.1:2379", "--advertise-client-urls=http://127.0.0.1:2379",
			"--listen-peer-urls=http://127.0.0.1:2380", "--initial-advertise-peer-urls=http://127.0.0.1:2380",
			"--initial-cluster=kcluster=http://127.0.0.1:2380",
			"--log-level=warn",
			// A throw-away test cluster: durability across power loss buys nothing.
			"--unsafe-no-fsync",
		}}, nil
	case "kube-apiserver":
		return component{name: name, bin: k8s("kube-apiserver"), args: []string{
			"--etcd-servers=http://127.0.0.1:2379",
			"--advertise-address=" + cfg.NodeIP, "--bind-address=0.0.0.0", "--secure-port=6443",
			"--service-cluster-ip-range=" + cfg.ServiceCIDR,
			"--tls-cert-file=" + pki("apiserver.crt"), "--tls-private-key-file=" + pki("apiserver.key"),
			"--client-ca-file=" + pki("ca.crt"),
			"--kubelet-client-certificate=" + pki("apiserver-kubelet-client.crt"), "--kubelet-client-key=" + pki("apiserver-kubelet-client.key"),
			"--kubelet-certificate-authority=" + pki("ca.crt"),
			"--kubelet-preferred-address-types=InternalIP",
			"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
			"--service-account-key-file=" + pki("sa.pub"), "--service-account-signing-key-file=" + pki("sa.key"),
			// The aggregation layer, for metrics.k8s.io (metrics-server): the API
			// server proxies to the APIService's endpoint directly (no ClusterIP
			// hop), authenticating as front-proxy-client.
			"--requestheader-client-ca-file=" + pki("ca.crt"),
			"--requestheader-allowed-names=" + frontProxyClientName,
			"--requestheader-username-headers=X-Remote-User",
			"--requestheader-group-headers=X-Remote-Group",
			"--requestheader-extra-headers-prefix=X-Remote-Extra-",
			"--proxy-client-cert-file=" + pki(frontProxyClientName+".crt"), "--proxy-client-key-file=" + pki(frontProxyClientName+".key"),
			"--enable-aggregator-routing=true",
			"--authorization-mode=Node,RBAC",
			"--enable-admission-plugins=NodeRestriction",
			"--allow-privileged=true",
			"--profiling=false",
		}}, nil
	case "kube-controller-manager":
		kc := cfg.kubeconfig("controller-manager")
		return component{name: name, bin: k8s("kube-controller-manager"), args: []string{
			"--kubeconfig=" + kc, "--authentication-kubeconfig=" + kc, "--authorization-kubeconfig=" + kc,
			"--bind-address=127.0.0.1", "--secure-port=10257",
			"--use-service-account-credentials",
			"--service-account-private-key-file=" + pki("sa.key"), "--root-ca-file=" + pki("ca.crt"),
			"--cluster-signing-cert-file=" + pki("ca.crt"), "--cluster-signing-key-file=" + pki("ca.key"),
			"--allocate-node-cidrs=false", "--cluster-cidr=" + cfg.PodCIDR, "--service-cluster-ip-range=" + cfg.ServiceCIDR,
			"--leader-elect=false",
		}}, nil
	case "kube-scheduler":
		kc := cfg.kubeconfig("scheduler")
		return component{name: name, bin: k8s("kube-scheduler"), args: []string{
			"--kubeconfig=" + kc, "--authentication-kubeconfig=" + kc, "--authorization-kubeconfig=" + kc,
			"--bind-address=127.0.0.1", "--secure-port=10259", "--leader-elect=false",
		}}, nil
	case "kubelet":
		return component{name: name, bin: k8s("kubelet"), args: []string{
			"--config=" + filepath.Join(cfg.Dir, "kubelet", "config.yaml"),
			"--kubeconfig=" + cfg.kubeconfig("kubelet"),
			"--root-dir=" + filepath.Join(cfg.Dir, "kubelet", "root"),
			"--node-ip=" + cfg.NodeIP, "--hostname-override=" + cfg.NodeName,
			"--node-labels=kcluster.intuned.io/node=true",
		}}, nil
	case "kube-proxy":
		return component{name: name, bin: k8s("kube-proxy"), args: []string{"--config=" + filepath.Join(cfg.Dir, "kube-proxy.yaml")}}, nil
	case "coredns":
		return component{name: name, bin: filepath.Join(cfg.ToolsBin, "coredns"), args: []string{
			"-conf", filepath.Join(cfg.Dir, "coredns", "Corefile"),
		}}, nil
	case "traefik":
		return component{name: name, bin: filepath.Join(cfg.ToolsBin, "traefik"), uid: traefikUID, env: []string{"KUBECONFIG=" + cfg.traefikKubeconfig()}, args: []string{
			"--entryPoints.web.address=" + cfg.NodeIP + ":80",
			"--entryPoints.traefik.address=" + cfg.NodeIP + ":9000",
			"--ping=true",
			"--providers.kubernetesingress=true",
			"--providers.kubernetesingress.ingressendpoint.ip=" + cfg.NodeIP,
			// Keep the route of an Ingress whose Service has no ready endpoint,
			// so that Traefik answers 503 (try again) rather than 404 (no such
			// path), which a webhook sender may take as final.
			"--providers.kubernetesingress.allowEmptyServices=true",
			// Traefik otherwise asks the Internet for new versions and sends usage statistics.
			"--global.checkNewVersion=false", "--global.sendAnonymousUsage=false",
			"--log.level=INFO", "--accesslog=true",
		}}, nil
	case "metrics-server":
		// As on any cluster but as a process on the node, like CoreDNS: it
		// reads each kubelet's /metrics/resource, trusting the kubelet's
		// serving certificate through the cluster CA (no insecure TLS).
		// --metric-resolution as in metrics-server's own manifests.
		kc := cfg.AdminKubeconfig()
		return component{name: name, bin: filepath.Join(cfg.ToolsBin, "metrics-server"), args: []string{
			"--kubeconfig=" + kc, "--authentication-kubeconfig=" + kc, "--authorization-kubeconfig=" + kc,
			"--bind-address=" + cfg.NodeIP, "--secure-port=" + strconv.Itoa(metricsServerPort),
			"--tls-cert-file=" + pki("metrics-server.crt"), "--tls-private-key-file=" + pki("metrics-server.key"),
			"--kubelet-certificate-authority=" + pki("ca.crt"),
			"--kubelet-preferred-address-types=InternalIP",
			"--kubelet-use-node-status-port",
			"--metric-resolution=15s",
		}}, nil
	case "kube-network-policies":
		// NetworkPolicy on the node (the bridge CNI plugin has none): the
		// first packet of each new connection to or from a Pod that a
		// policy selects goes to this process (nfqueue), which answers
		// accept or drop. Fail-open: while it does not run,
		// packets pass, so a crash cannot cut off the Pods of other tests.
		// It learns Pod addresses from the API server (it tries NRI first,
		// which containerd here does not enable; v0.8.0 ignores
		// --disable-nri). The DNS race workaround is for kernels older
		// than 6.12.
		return component{name: name, bin: filepath.Join(cfg.ToolsBin, "kube-network-policies"), env: []string{"KUBECONFIG=" + cfg.AdminKubeconfig()}, args: []string{
			"--hostname-override=" + cfg.NodeName,
			"--fail-open",
			"--metrics-bind-address=" + cfg.netpolMetricsAddr(),
			"--netfilter-bug-1766-fix=false",
		}}, nil
	case "provisioner":
		return component{name: name, bin: filepath.Join(cfg.ToolsBin, "kcluster"), args: []string{
			"provisioner", "--kubeconfig=" + cfg.AdminKubeconfig(), "--dir=" + filepath.Join(cfg.Dir, "volumes"),
			"--node=" + cfg.NodeName, "--name=" + ProvisionerName,
		}}, nil
	}
	return component{}, fmt.Errorf("unknown component %q", name)
}

// kubeletReady waits for the kubelet's health endpoint: it answers once the
// kubelet has connected to containerd (before that, a kubelet that cannot
// reach the runtime exits).
func (c *Cluster) kubeletReady(ctx context.Context) error {
	return httpReady(ctx, plainHTTP, "http://"+c.cfg.NodeIP+":10248/healthz")
}

// plainHTTP reaches the node directly (never through a proxy from the environment).
var plainHTTP = &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil}}

// httpReady polls url until it answers 200.
func httpReady(ctx context.Context, hc *http.Client, url string) error {
	return poll.Eventually(ctx, 200*time.Millisecond, url+" answers 200", func(ctx context.Context) (bool, error) {
		resp, err := hc.Get(url)
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, fmt.Errorf("%s: %s", url, resp.Status)
	})
}

func (c *Cluster) containerdReady(ctx context.Context) error {
	return poll.Eventually(ctx, 100*time.Millisecond, "containerd answers", func(ctx context.Context) (bool, error) {
		err := run("ctr", "--address", c.cfg.containerdSock(), "version")
		return err == nil, err
	})
}

func (c *Cluster) importPause(ctx context.Context) error {
	return c.ImportImage(ctx, filepath.Join(c.cfg.ToolsBin, "pause.tar"))
}

// ImportImage imports an image archive (OCI, as internal/ociimage writes) into the node's containerd,
// where Pods find it under its tag (with imagePullPolicy IfNotPresent or Never).
func (c *Cluster) ImportImage(ctx context.Context, tarball string) error {
	return run("ctr", "--address", c.cfg.containerdSock(), "-n", "k8s.io", "images", "import", tarball)
}

func (c *Cluster) apiserverReady(ctx context.Context) error {
	hc, err := c.httpsClient()
	if err != nil {
		return err
	}
	return httpReady(ctx, hc, c.cfg.APIServerURL()+"/readyz")
}

// rbacReady waits until the API server's authorizer holds the bootstrap
// bindings: /readyz can answer before that, and the controller-manager
// exits at once when its first request is forbidden.
func (c *Cluster) rbacReady(ctx context.Context) error {
	return poll.Eventually(ctx, 200*time.Millisecond, "RBAC bootstrapped", func(ctx context.Context) (bool, error) {
		out, err := c.Kubectl(ctx, "auth", "can-i", "get", "configmaps", "-n", "kube-system", "--as=system:kube-controller-manager")
		return strings.TrimSpace(out) == "yes", err
	})
}

func (c *Cluster) applyAddons(ctx context.Context) error {
	ca, err := os.ReadFile(filepath.Join(c.cfg.pki(), "ca.crt"))
	if err != nil {
		return err
	}
	addons := fmt.Sprintf(`apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: %[1]s
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: %[2]s
reclaimPolicy: Delete
volumeBindingMode: WaitForFirstConsumer
allowVolumeExpansion: true
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: %[3]s
  annotations: {ingressclass.kubernetes.io/is-default-class: "true"}
spec:
  controller: traefik.io/ingress-controller
---
# metrics-server runs on the node address: a Service without selector whose
# Endpoints name it, and the resource metrics API served from there.
apiVersion: v1
kind: Service
metadata:
  name: metrics-server
  namespace: kube-system
spec:
  ports: [{name: https, port: 443, targetPort: %[4]d, protocol: TCP}]
---
apiVersion: v1
kind: Endpoints
metadata:
  name: metrics-server
  namespace: kube-system
subsets:
- addresses: [{ip: %[5]s}]
  ports: [{name: https, port: %[4]d, protocol: TCP}]
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata:
  name: v1beta1.metrics.k8s.io
spec:
  group: metrics.k8s.io
  version: v1beta1
  service: {name: metrics-server, namespace: kube-system, port: 443}
  caBundle: %[6]s
  groupPriorityMinimum: 100
  versionPriority: 100
`, StorageClassName, ProvisionerName, IngressClassName, metricsServerPort, c.cfg.NodeIP, base64.StdEncoding.EncodeToString(ca))
	f := filepath.Join(c.cfg.Dir, "addons.yaml")
	if err := os.WriteFile(f, []byte(addons), 0o644); err != nil {
		return err
	}
	return poll.Eventually(ctx, 500*time.Millisecond, "addons applied", func(ctx context.Context) (bool, error) {
		_, err := c.Kubectl(ctx, "apply", "--server-side", "-f", f)
		return err == nil, err
	})
}

// corednsReady waits for CoreDNS's ready plugin: it answers 200 once the
// kubernetes plugin has synced its caches of Services and EndpointSlices.
func (c *Cluster) corednsReady(ctx context.Context) error {
	return httpReady(ctx, plainHTTP, "http://"+c.cfg.dnsReadyAddr()+"/ready")
}

// metricsReady waits for the resource metrics API: the APIService is
// Available once the API server reaches metrics-server, and the node's
// metrics are there after metrics-server's first scrape of the kubelet.
func (c *Cluster) metricsReady(ctx context.Context) error {
	return poll.Eventually(ctx, time.Second, "node metrics served", func(ctx context.Context) (bool, error) {
		_, err := c.Kubectl(ctx, "get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes/"+c.cfg.NodeName)
		return err == nil, err
	})
}

// netpolReady waits for kube-network-policies' metrics endpoint.
func (c *Cluster) netpolReady(ctx context.Context) error {
	return httpReady(ctx, plainHTTP, "http://"+c.cfg.netpolMetricsAddr()+"/metrics")
}

func (c *Cluster) traefikReady(ctx context.Context) error {
	return httpReady(ctx, plainHTTP, "http://"+c.cfg.NodeIP+":9000/ping")
}

func (c *Cluster) nodeReady(ctx context.Context) error {
	return poll.Eventually(ctx, 500*time.Millisecond, "node Ready", func(ctx context.Context) (bool, error) {
		out, err := c.Kubectl(ctx, "get", "node", c.cfg.NodeName, "-o", "json")
		if err != nil {
			return false, err
		}
		var n struct {
			Status struct {
				Conditions []struct{ Type, Status, Message string }
			}
		}
		if err := json.Unmarshal([]byte(out), &n); err != nil {
			return false, err
		}
		for _, cond := range n.Status.Conditions {
			if cond.Type == "Ready" {
				return cond.Status == "True", fmt.Errorf("node Ready=%s: %s", cond.Status, cond.Message)
			}
		}
		return false, fmt.Errorf("node has no Ready condition yet")
	})
}

// defaultServiceAccount waits for the controller-manager to create the
// "default" ServiceAccount: until then no Pod can be created.
func (c *Cluster) defaultServiceAccount(ctx context.Context) error {
	return poll.Eventually(ctx, 250*time.Millisecond, "default ServiceAccount", func(ctx context.Context) (bool, error) {
		_, err := c.Kubectl(ctx, "get", "serviceaccount", "default", "-n", "default")
		return err == nil, err
	})
}
