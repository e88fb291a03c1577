// Package kcluster brings up a real single-node Kubernetes cluster on this
// machine for tests that need what envtest lacks: a kubelet that runs
// containers, kube-proxy Services, cluster DNS, an Ingress controller,
// volumes, the real controller-manager (garbage collection, namespace
// deletion, HorizontalPodAutoscalers), resource metrics (metrics-server)
// and NetworkPolicy enforcement (kube-network-policies).
//
// Everything runs as host processes inside one network namespace that has no
// default route, so nothing in the cluster can reach any address outside this
// machine. The host reaches the namespace over one veth pair, with routes for
// the Pod and Service ranges through it. The pieces:
//
//	containerd, runc, CNI plugins   Debian packages (containerd, runc, containernetworking-plugins)
//	etcd, kube-*, kubelet, kubectl  built from k8s.io/kubernetes by hack/setup-envtest.sh (ENVTEST_NODE=1)
//	traefik, coredns, metrics-server each built from its Go module by hack/setup-kcluster.sh
//	kube-network-policies           the same, with a small patch (hack/kcluster/kube-network-policies.patch)
//	pause, local volume provisioner this repository (hack/kcluster)
//
// Images are OCI archives written by internal/ociimage, the code that
// builds release images too (no registry, no container engine), and
// imported into containerd with ctr. See
// docs/e2e.md for how to keep a cluster up and look around.
package kcluster
