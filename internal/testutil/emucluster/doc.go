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
// and they are all in kubelet.go/podspec.go:
//
//   - container paths (volume mounts) are mapped to host directories, so
//     path arguments and env values under a mountPath are rewritten;
//   - the receiver's listen address is rewritten to 127.0.0.1:<free port>
//     (after checking it equals a declared containerPort), so several
//     replicas can run side by side;
//   - a WebhookReceiver's loopback spec.externalURL is served by a TCP proxy
//     in front of the ready replicas (the role a Service plus a tunnel or a
//     load balancer plays in a real cluster).
//
// It starts every process in its own process group and kills all
// of them on Close.
package emucluster
