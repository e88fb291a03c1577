package emucluster

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// serviceProxy plays cluster DNS plus Services for the processes that run
// on the host outside any Pod (the manager), which cannot resolve
// <svc>.<ns>.svc. It is an HTTP forward proxy: the manager runs with
// HTTP_PROXY pointing at it, so a request for
// http://<svc>.<ns>.svc[.cluster.local]:<port>/path arrives here in
// absolute form; the proxy reads the Service, maps its port to the target
// container port, and forwards to a ready replica (round robin) of a
// workload whose Pod labels match the Service's selector, on that
// replica's loopback port. A host that is no Service, or a Service that
// does not exist or lacks the port, answers 502 (where a real client would
// fail to resolve or connect); a Service with no ready replica answers 503.
// Only plain HTTP: nothing in the cluster serves TLS inside.
type serviceProxy struct {
	c    client.Client
	k    *Kubelet
	ln   net.Listener
	srv  *http.Server
	next atomic.Uint64
}

func startServiceProxy(c client.Client, k *Kubelet) (*serviceProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &serviceProxy{c: c, k: k, ln: ln}
	p.srv = &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

// URL is the proxy's address, the manager's HTTP_PROXY.
func (p *serviceProxy) URL() string { return "http://" + p.ln.Addr().String() }

func (p *serviceProxy) close() { _ = p.srv.Close() }

// serviceHost splits <svc>.<ns>.svc or <svc>.<ns>.svc.cluster.local.
func serviceHost(host string) (name, namespace string, ok bool) {
	rest, ok := strings.CutSuffix(strings.TrimSuffix(host, "."), ".svc.cluster.local")
	if !ok {
		rest, ok = strings.CutSuffix(host, ".svc")
	}
	if !ok {
		return "", "", false
	}
	name, namespace, ok = strings.Cut(rest, ".")
	return name, namespace, ok && name != "" && namespace != "" && !strings.Contains(namespace, ".")
}

func (p *serviceProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodConnect || !r.URL.IsAbs() || r.URL.Scheme != "http" {
		http.Error(w, "emucluster service proxy: only absolute-form plain-HTTP requests to Services", http.StatusNotImplemented)
		return
	}
	name, ns, ok := serviceHost(r.URL.Hostname())
	if !ok {
		http.Error(w, fmt.Sprintf("emucluster service proxy: %s is not a Service host (<svc>.<ns>.svc)", r.URL.Hostname()), http.StatusBadGateway)
		return
	}
	port := 80
	if s := r.URL.Port(); s != "" {
		port, _ = strconv.Atoi(s)
	}
	addr, status, why := p.backend(r.Context(), ns, name, port)
	if status != 0 {
		http.Error(w, "emucluster service proxy: "+why, status)
		return
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(&url.URL{Scheme: "http", Host: addr})
			pr.Out.Host = pr.In.Host // the Pod sees the Service name, as in a cluster
		},
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			http.Error(w, fmt.Sprintf("emucluster service proxy: %s/%s: %v", ns, name, err), http.StatusBadGateway)
		},
	}
	rp.ServeHTTP(w, r)
}

// backend picks a ready replica behind Service ns/name's port, or says
// which status to answer and why.
func (p *serviceProxy) backend(ctx context.Context, ns, name string, port int) (addr string, status int, why string) {
	var svc corev1.Service
	if err := p.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &svc); err != nil {
		if apierrors.IsNotFound(err) {
			return "", http.StatusBadGateway, fmt.Sprintf("no Service %s/%s", ns, name)
		}
		return "", http.StatusBadGateway, fmt.Sprintf("Service %s/%s: %v", ns, name, err)
	}
	var sp *corev1.ServicePort
	for i := range svc.Spec.Ports {
		if int(svc.Spec.Ports[i].Port) == port {
			sp = &svc.Spec.Ports[i]
		}
	}
	if sp == nil || len(svc.Spec.Selector) == 0 {
		return "", http.StatusBadGateway, fmt.Sprintf("Service %s/%s has no port %d with a selector", ns, name, port)
	}
	addrs := p.k.serviceBackends(ns, labels.SelectorFromSet(svc.Spec.Selector), sp.TargetPort, port)
	if len(addrs) == 0 {
		return "", http.StatusServiceUnavailable, fmt.Sprintf("Service %s/%s port %d has no ready endpoints", ns, name, port)
	}
	return addrs[p.next.Add(1)%uint64(len(addrs))], 0, ""
}

// serviceBackends lists the loopback addresses of the ready replicas in ns
// whose Pod labels match sel and whose container listens on target (a
// port number or name; unset means the Service port).
func (k *Kubelet) serviceBackends(ns string, sel labels.Selector, target intstr.IntOrString, servicePort int) []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []string
	for _, kk := range sortedKeys(k.workloads) {
		w := k.workloads[kk]
		if w.namespace != ns || !sel.Matches(labels.Set(w.podLabels)) {
			continue
		}
		port := servicePort
		switch {
		case target.Type == intstr.String:
			port = w.namedPorts[target.StrVal]
		case target.IntVal != 0:
			port = int(target.IntVal)
		}
		out = append(out, w.readyAddrs(port)...)
	}
	return out
}
