// Package emucluster runs a small Kubernetes "cluster" on loopback for
// end-to-end tests and `make demo`: a real kube-apiserver and etcd (the
// envtest binaries), the CRDs and RBAC rendered from config/default, the
// intuned-sim process standing in for Intuned, the operator (cmd/manager)
// as its own process with a ServiceAccount-like identity, and an emulated
// kubelet that runs the real receiver binary for every WebhookReceiver
// workload exactly as its Pod spec says.
//
// Everything is a real process talking over loopback HTTP; nothing is
// mocked. It imports no test package (hack/demo runs it). The only liberties taken are the ones a single machine forces,
// and they are all in kubelet.go/podspec.go/svcproxy.go:
//
//   - container paths (volume mounts) are mapped to host directories, so
//     path arguments and env values under a mountPath are rewritten;
//   - the receiver's listen address is rewritten to 127.0.0.1:<free port>
//     (after checking it equals a declared containerPort), so several
//     replicas can run side by side;
//   - a WebhookReceiver's loopback spec.externalURL is served by a TCP proxy
//     in front of the ready replicas (the role a Service plus a tunnel or a
//     load balancer plays in a real cluster);
//   - Services and cluster DNS, for the manager (a host process that cannot
//     resolve <svc>.<ns>.svc): it runs with HTTP_PROXY set to a forward
//     proxy (svcproxy.go) that takes http://<svc>.<ns>.svc[.cluster.local]:<port>
//     requests, reads the Service, maps its port to the targetPort (number
//     or name) and forwards to a ready replica whose Pod labels match the
//     selector, on its loopback port; 502 for a host that is no Service or a
//     Service without that port or a selector, 503 without ready replicas.
//     NO_PROXY lists loopback, the API server and the simulator (Go never
//     proxies loopback anyway). Plain HTTP only; receiver Pods themselves
//     get no proxy (they call nothing in the cluster).
//
// It starts every process in its own process group and kills all
// of them on Close.
package emucluster
