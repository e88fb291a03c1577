package kcluster

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
)

// Config names the cluster's directories and addresses. The zero value is
// not usable; start from DefaultConfig.
type Config struct {
	// Name is the network namespace, the veth prefix and the node's label.
	Name string
	// Dir holds all state: PKI, kubeconfigs, etcd, containerd, kubelet, logs.
	Dir string
	// K8sBin holds etcd, kube-apiserver, kube-controller-manager,
	// kube-scheduler, kubelet, kube-proxy and kubectl.
	K8sBin string
	// ToolsBin holds traefik, coredns, metrics-server, kube-network-policies,
	// pause and kcluster (the provisioner).
	ToolsBin string

	HostIP      string // host end of the veth pair
	NodeIP      string // namespace end: the node's address, API server, cluster DNS, Ingress entry point
	PodCIDR     string
	ServiceCIDR string
	NodeName    string
	// IngressHosts resolve to NodeIP for processes started with
	// Cluster.CommandInNamespace (intuned-sim posts to these names).
	IngressHosts []string
}

// DefaultConfig places the cluster under dir with address ranges that no
// real network here uses (10.213–10.215 are only routed into the namespace).
func DefaultConfig(dir, k8sBin, toolsBin string) Config {
	return Config{
		Name:         "intuned-kc",
		Dir:          dir,
		K8sBin:       k8sBin,
		ToolsBin:     toolsBin,
		HostIP:       "10.213.0.1",
		NodeIP:       "10.213.0.2",
		PodCIDR:      "10.214.0.0/24",
		ServiceCIDR:  "10.215.0.0/24",
		NodeName:     "kcluster-node",
		IngressHosts: []string{"hooks.kcluster.test", "receiver.kcluster.test"},
	}
}

// APIServiceIP is the ClusterIP of the "kubernetes" Service: the first
// address of the Service range.
func (c Config) APIServiceIP() string { return firstAddress(c.ServiceCIDR) }

// PodGatewayIP is the node's address on the Pod bridge (the first address
// of PodCIDR, the bridge plugin's gateway): what a Pod sees as the source
// of a connection from a process of the node, such as Traefik. A
// NetworkPolicy admits the node's Ingress controller with an ipBlock of it.
func (c Config) PodGatewayIP() string { return firstAddress(c.PodCIDR) }

// firstAddress is the first host address of an IPv4 range.
func firstAddress(cidr string) string {
	_, n, err := net.ParseCIDR(cidr)
	if err != nil {
		panic(fmt.Sprintf("kcluster: range %q: %v", cidr, err))
	}
	ip := n.IP.To4()
	return net.IPv4(ip[0], ip[1], ip[2], ip[3]+1).String()
}

// APIServerURL is where the host and the Pods reach the API server.
func (c Config) APIServerURL() string { return "https://" + c.NodeIP + ":6443" }

// AdminKubeconfig is a cluster-admin kubeconfig usable from the host.
func (c Config) AdminKubeconfig() string {
	return filepath.Join(c.Dir, "kubeconfig", "admin.kubeconfig")
}

// Kubectl is the kubectl binary matching the cluster.
func (c Config) Kubectl() string { return filepath.Join(c.K8sBin, "kubectl") }

// dnsReadyAddr is where CoreDNS's ready plugin answers (on the node address,
// so the host can poll it).
func (c Config) dnsReadyAddr() string { return c.NodeIP + ":8181" }

// netpolMetricsAddr is where kube-network-policies serves its metrics.
func (c Config) netpolMetricsAddr() string { return c.NodeIP + ":9080" }

func (c Config) pki() string       { return filepath.Join(c.Dir, "pki") }
func (c Config) logs() string      { return filepath.Join(c.Dir, "logs") }
func (c Config) run() string       { return filepath.Join(c.Dir, "run") }
func (c Config) netnsPath() string { return "/run/netns/" + c.Name }
func (c Config) vethHost() string  { return c.Name + "-h" }
func (c Config) vethNode() string  { return c.Name + "-n" }
func (c Config) bridge() string    { return c.Name + "-br" }
func (c Config) etcNetns() string  { return "/etc/netns/" + c.Name }
func (c Config) containerdSock() string {
	return filepath.Join(c.Dir, "containerd", "containerd.sock")
}
func (c Config) traefikKubeconfig() string { return filepath.Join(c.Dir, "traefik", "kubeconfig") }
func (c Config) kubeconfig(name string) string {
	return filepath.Join(c.Dir, "kubeconfig", name+".kubeconfig")
}

// LogFile is the log of one component (containerd, etcd, kube-apiserver, …).
func (c Config) LogFile(component string) string { return filepath.Join(c.logs(), component+".log") }

func (c Config) validate() error {
	for _, p := range []string{c.Dir, c.K8sBin, c.ToolsBin} {
		if !filepath.IsAbs(p) {
			return fmt.Errorf("kcluster: %q must be an absolute path", p)
		}
	}
	if len(c.Name) > 11 {
		return fmt.Errorf("kcluster: name %q is longer than 11 characters (interface names are limited to 15)", c.Name)
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("kcluster: needs root (network namespaces, mounts, containerd)")
	}
	return nil
}

// ProjectImageTag is the tag of this repository's image in the node.
const ProjectImageTag = "kcluster.local/intuned-operator:dev"

// Layout is where a checkout keeps the cluster's binaries and state.
type Layout struct{ Dir, K8sBin, ToolsBin string }

// K8sVersion is the Kubernetes version of the node binaries
// (hack/setup-envtest.sh's default).
const K8sVersion = "1.37.2"

// DefaultLayout: binaries under bin/ (built by hack/setup-kcluster.sh), state
// under .kcluster/ (git-ignored).
func DefaultLayout(repoRoot string) Layout {
	return Layout{
		Dir:      filepath.Join(repoRoot, ".kcluster"),
		K8sBin:   filepath.Join(repoRoot, "bin", "k8s", K8sVersion),
		ToolsBin: filepath.Join(repoRoot, "bin", "kcluster"),
	}
}
