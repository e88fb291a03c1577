package emucluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/testutil/proc"
)

// Kubelet runs the Pods of WebhookReceiver workloads (the StatefulSets and
// Deployments a WebhookReceiver owns) as local processes and writes the
// workloads' status from their readiness probes. Other workloads are left
// alone. It polls the API server; simple and fast enough on loopback.
type Kubelet struct {
	c      client.Client
	img    Images
	root   string // data root: pods/, pvc/, logs/
	procs  *proc.Group
	logf   func(format string, args ...any)
	period time.Duration

	mu        sync.Mutex
	workloads map[string]*workload
	failures  []string
	seen      map[string]bool // failure messages already reported
}

type workload struct {
	kind, namespace, name string
	receiver              string // owning WebhookReceiver
	templateHash          string
	generation            int64
	replicas              []*replica
	proxy                 *frontProxy
	proxyAddr             string
	// podLabels and namedPorts come from the Pod template: the service
	// proxy matches Service selectors and named targetPorts against them.
	podLabels  map[string]string
	namedPorts map[string]int
}

// readyAddrs lists the loopback addresses of the ready replicas that
// listen on containerPort (0: any). The caller holds k.mu.
func (w *workload) readyAddrs(containerPort int) []string {
	var out []string
	for _, r := range w.replicas {
		if r.ready && r.plan != nil && (containerPort == 0 || r.plan.ContainerPort == containerPort) {
			out = append(out, proc.Loopback(r.hostPort))
		}
	}
	return out
}

// dropFromProxy routes the externalURL only to the replicas still listed,
// before the removed ones are stopped: a Pod leaves its Service's endpoints
// as it starts terminating, while the receiver keeps serving for its
// --shutdown-delay. The caller holds k.mu.
func (w *workload) dropFromProxy() {
	if w.proxy != nil {
		w.proxy.setBackends(w.readyAddrs(0))
	}
}

type replica struct {
	pod        string
	ordinal    int
	hostPort   int
	plan       *Plan
	proc       *proc.Process
	ready      bool
	restarts   int
	nextStart  time.Time
	expectExit bool // we killed or stopped it: not a failure
	logFile    string
}

// ReplicaInfo describes one running receiver replica.
type ReplicaInfo struct {
	Pod      string
	HostPort int // the loopback port it listens on
	Ready    bool
	Restarts int
	LogFile  string
	Args     []string // as run (paths mapped to the host)
	Env      []string
	DataDirs []string // host directories of its volumes
}

func newKubelet(c client.Client, img Images, root string, procs *proc.Group, logf func(string, ...any)) *Kubelet {
	return &Kubelet{c: c, img: img, root: root, procs: procs, logf: logf, period: 250 * time.Millisecond,
		workloads: map[string]*workload{}, seen: map[string]bool{}}
}

// run syncs until ctx ends, then stops every replica.
func (k *Kubelet) run(ctx context.Context) {
	t := time.NewTicker(k.period)
	defer t.Stop()
	for {
		k.sync(ctx)
		select {
		case <-ctx.Done():
			k.stopAll()
			return
		case <-t.C:
		}
	}
}

// Failures lists what went wrong running receiver Pods: specs that cannot
// run, processes that exited on their own. Tests assert it stays empty.
func (k *Kubelet) Failures() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]string(nil), k.failures...)
}

func (k *Kubelet) fail(msg string) {
	if k.seen[msg] {
		return
	}
	k.seen[msg] = true
	k.failures = append(k.failures, msg)
	k.logf("kubelet: %s", msg)
}

func key(ns, name string) string { return ns + "/" + name }

// desiredWorkload is the part of a StatefulSet/Deployment the kubelet needs.
type desiredWorkload struct {
	obj        client.Object
	kind       string
	replicas   int
	template   corev1.PodTemplateSpec
	claimNames []string // StatefulSet volumeClaimTemplates
	receiver   string
}

func ownerReceiver(o metav1.Object) string {
	for _, ref := range o.GetOwnerReferences() {
		if ref.Kind == "WebhookReceiver" && strings.HasPrefix(ref.APIVersion, intunedv1alpha1.GroupVersion.Group+"/") {
			return ref.Name
		}
	}
	return ""
}

func (k *Kubelet) list(ctx context.Context) ([]desiredWorkload, error) {
	var out []desiredWorkload
	var sts appsv1.StatefulSetList
	if err := k.c.List(ctx, &sts); err != nil {
		return nil, err
	}
	for i := range sts.Items {
		s := &sts.Items[i]
		r := ownerReceiver(s)
		if r == "" || s.DeletionTimestamp != nil {
			continue
		}
		d := desiredWorkload{obj: s, kind: "StatefulSet", replicas: 1, template: s.Spec.Template, receiver: r}
		if s.Spec.Replicas != nil {
			d.replicas = int(*s.Spec.Replicas)
		}
		for _, t := range s.Spec.VolumeClaimTemplates {
			d.claimNames = append(d.claimNames, t.Name)
		}
		out = append(out, d)
	}
	var deps appsv1.DeploymentList
	if err := k.c.List(ctx, &deps); err != nil {
		return nil, err
	}
	for i := range deps.Items {
		d := &deps.Items[i]
		r := ownerReceiver(d)
		if r == "" || d.DeletionTimestamp != nil {
			continue
		}
		w := desiredWorkload{obj: d, kind: "Deployment", replicas: 1, template: d.Spec.Template, receiver: r}
		if d.Spec.Replicas != nil {
			w.replicas = int(*d.Spec.Replicas)
		}
		out = append(out, w)
	}
	return out, nil
}

func (k *Kubelet) sync(ctx context.Context) {
	ws, err := k.list(ctx)
	if err != nil {
		if ctx.Err() == nil {
			k.logf("kubelet: list workloads: %v", err)
		}
		return
	}
	alive := map[string]bool{}
	for _, d := range ws {
		kk := d.kind + "/" + key(d.obj.GetNamespace(), d.obj.GetName())
		alive[kk] = true
		k.mu.Lock()
		w := k.workloads[kk]
		if w == nil {
			w = &workload{kind: d.kind, namespace: d.obj.GetNamespace(), name: d.obj.GetName(), receiver: d.receiver}
			k.workloads[kk] = w
		}
		k.mu.Unlock()
		k.syncWorkload(ctx, w, d)
	}
	k.mu.Lock()
	var gone []*workload
	for kk, w := range k.workloads {
		if !alive[kk] {
			gone = append(gone, w)
			delete(k.workloads, kk)
		}
	}
	k.mu.Unlock()
	for _, w := range gone {
		k.stopWorkload(w)
	}
}

func templateHash(t *corev1.PodTemplateSpec) string {
	b, _ := json.Marshal(t)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])[:10]
}

func (k *Kubelet) syncWorkload(ctx context.Context, w *workload, d desiredWorkload) {
	h := templateHash(&d.template)
	k.mu.Lock()
	if w.templateHash != "" && w.templateHash != h {
		// A changed Pod template rolls the Pods: stop them all, start anew.
		old := w.replicas
		w.replicas = nil
		w.dropFromProxy()
		k.mu.Unlock()
		k.logf("kubelet: %s %s/%s: Pod template changed; restarting %d replica(s)", w.kind, w.namespace, w.name, len(old))
		for _, r := range old {
			k.stopReplica(r)
		}
		k.mu.Lock()
	}
	w.templateHash = h
	w.generation = d.obj.GetGeneration()
	w.podLabels = d.template.Labels
	w.namedPorts = map[string]int{}
	for _, c := range d.template.Spec.Containers {
		for _, cp := range c.Ports {
			if cp.Name != "" {
				w.namedPorts[cp.Name] = int(cp.ContainerPort)
			}
		}
	}
	for len(w.replicas) > d.replicas {
		r := w.replicas[len(w.replicas)-1]
		w.replicas = w.replicas[:len(w.replicas)-1]
		w.dropFromProxy()
		k.mu.Unlock()
		k.stopReplica(r)
		k.mu.Lock()
	}
	for len(w.replicas) < d.replicas {
		i := len(w.replicas)
		pod := fmt.Sprintf("%s-%d", w.name, i)
		if w.kind == "Deployment" {
			pod = fmt.Sprintf("%s-%s-%d", w.name, h[:5], i)
		}
		w.replicas = append(w.replicas, &replica{pod: pod, ordinal: i,
			logFile: filepath.Join(k.root, "logs", w.namespace+"_"+pod+".log")})
	}
	reps := append([]*replica(nil), w.replicas...)
	k.mu.Unlock()

	for _, r := range reps {
		k.syncReplica(ctx, w, d, r)
	}
	k.syncProxy(ctx, w)
	k.writeStatus(ctx, w, d)
}

type clientSource struct {
	ctx context.Context
	c   client.Client
}

func (s clientSource) SecretData(ns, name string) (map[string][]byte, error) {
	var sec corev1.Secret
	if err := s.c.Get(s.ctx, client.ObjectKey{Namespace: ns, Name: name}, &sec); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("Secret %s/%s: %w", ns, name, ErrNotFound)
		}
		return nil, err
	}
	data := map[string][]byte{}
	for k, v := range sec.Data {
		data[k] = v
	}
	for k, v := range sec.StringData {
		data[k] = []byte(v)
	}
	return data, nil
}

func (k *Kubelet) syncReplica(ctx context.Context, w *workload, d desiredWorkload, r *replica) {
	src := clientSource{ctx: ctx, c: k.c}
	k.mu.Lock()
	process := r.proc
	k.mu.Unlock()
	if process != nil {
		if exited, err := process.Exited(); exited {
			k.mu.Lock()
			if !r.expectExit {
				k.fail(fmt.Sprintf("receiver %s/%s exited on its own (%v); last output:\n%s", w.namespace, r.pod, err, process.LogTail(1500)))
				r.restarts++
				backoff := time.Duration(1<<min(r.restarts, 4)) * 250 * time.Millisecond
				r.nextStart = time.Now().Add(backoff)
			}
			r.proc, r.ready, r.expectExit = nil, false, false
			k.mu.Unlock()
			process = nil
		}
	}
	if process == nil {
		k.mu.Lock()
		wait := time.Now().Before(r.nextStart)
		k.mu.Unlock()
		if wait {
			return
		}
		if err := k.startReplica(src, w, d, r); err != nil {
			k.mu.Lock()
			k.fail(fmt.Sprintf("cannot run %s %s/%s Pod %s: %v", w.kind, w.namespace, w.name, r.pod, err))
			r.nextStart = time.Now().Add(time.Second)
			k.mu.Unlock()
		}
		return
	}
	// Running: keep Secret volumes current (the kubelet does this within
	// about a minute; we do it on every sync), then probe readiness.
	for _, f := range r.plan.Files {
		if _, err := f.materialise(w.namespace, src); err != nil && ctx.Err() == nil {
			k.mu.Lock()
			k.fail(fmt.Sprintf("refresh volume of %s/%s: %v", w.namespace, r.pod, err))
			k.mu.Unlock()
		}
	}
	ready := probe("http://" + proc.Loopback(r.hostPort) + r.plan.ReadyPath)
	k.mu.Lock()
	if ready != r.ready {
		k.logf("kubelet: %s/%s ready=%v", w.namespace, r.pod, ready)
	}
	r.ready = ready
	k.mu.Unlock()
}

func probe(u string) bool {
	c := &http.Client{Timeout: time.Second}
	resp, err := c.Get(u)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode >= 200 && resp.StatusCode < 400
}

func (k *Kubelet) startReplica(src ObjectSource, w *workload, d desiredWorkload, r *replica) error {
	if r.hostPort == 0 {
		p, err := proc.FreePort()
		if err != nil {
			return err
		}
		r.hostPort = p
	}
	id := PodIdentity{Namespace: w.namespace, Name: r.pod, ClaimNames: map[string]string{}}
	for _, c := range d.claimNames {
		id.ClaimNames[c] = fmt.Sprintf("%s-%s-%d", c, w.name, r.ordinal)
	}
	lay := Layout{PodDir: filepath.Join(k.root, "pods", w.namespace, r.pod), PVCDir: filepath.Join(k.root, "pvc", w.namespace)}
	plan, err := PlanContainer(&d.template.Spec, id, lay, k.img, src, r.hostPort)
	if err != nil {
		return err
	}
	for _, f := range plan.Files {
		if _, err := f.materialise(w.namespace, src); err != nil {
			return fmt.Errorf("volume %s: %w", filepath.Base(f.hostDir), err)
		}
	}
	if err := os.MkdirAll(filepath.Dir(r.logFile), 0o755); err != nil {
		return err
	}
	process, err := k.procs.Start(proc.Spec{Name: "receiver " + w.namespace + "/" + r.pod, Path: plan.Path,
		Args: plan.Args, Env: plan.Env, Dir: plan.Dir, LogFile: r.logFile})
	if err != nil {
		return err
	}
	k.mu.Lock()
	r.plan, r.proc, r.ready, r.expectExit = plan, process, false, false
	k.mu.Unlock()
	k.logf("kubelet: started receiver %s/%s (pid %d) on %s", w.namespace, r.pod, process.Pid(), proc.Loopback(r.hostPort))
	return nil
}

func (k *Kubelet) stopReplica(r *replica) {
	k.mu.Lock()
	process := r.proc
	r.expectExit = true
	grace := 30 * time.Second
	if r.plan != nil {
		grace = time.Duration(r.plan.GraceSeconds) * time.Second
	}
	k.mu.Unlock()
	if process != nil {
		_ = process.Stop(grace)
	}
}

func (k *Kubelet) stopWorkload(w *workload) {
	k.mu.Lock()
	reps := w.replicas
	w.replicas = nil
	px := w.proxy
	w.proxy = nil
	k.mu.Unlock()
	if px != nil {
		px.close()
	}
	for _, r := range reps {
		k.stopReplica(r)
	}
}

func (k *Kubelet) stopAll() {
	k.mu.Lock()
	var ws []*workload
	for _, w := range k.workloads {
		ws = append(ws, w)
	}
	k.mu.Unlock()
	for _, w := range ws {
		k.stopWorkload(w)
	}
}

// syncProxy serves the owning WebhookReceiver's loopback externalURL.
func (k *Kubelet) syncProxy(ctx context.Context, w *workload) {
	var whr intunedv1alpha1.WebhookReceiver
	addr := ""
	if err := k.c.Get(ctx, client.ObjectKey{Namespace: w.namespace, Name: w.receiver}, &whr); err == nil && whr.Spec.ExternalURL != "" {
		if u, err := url.Parse(whr.Spec.ExternalURL); err == nil && isLoopback(u.Hostname()) && u.Port() != "" {
			addr = net.JoinHostPort(u.Hostname(), u.Port())
		}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if w.proxyAddr != addr && w.proxy != nil {
		w.proxy.close()
		w.proxy = nil
	}
	w.proxyAddr = addr
	if addr == "" {
		return
	}
	if w.proxy == nil {
		px, err := newFrontProxy(addr)
		if err != nil {
			k.fail(fmt.Sprintf("serve externalURL of WebhookReceiver %s/%s on %s: %v", w.namespace, w.receiver, addr, err))
			return
		}
		w.proxy = px
	}
	w.proxy.setBackends(w.readyAddrs(0))
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// writeStatus writes what a kubelet plus the workload controllers would.
func (k *Kubelet) writeStatus(ctx context.Context, w *workload, d desiredWorkload) {
	k.mu.Lock()
	running, ready := 0, 0
	for _, r := range w.replicas {
		if r.proc != nil {
			running++
		}
		if r.ready {
			ready++
		}
	}
	hash := w.templateHash
	k.mu.Unlock()
	switch o := d.obj.(type) {
	case *appsv1.StatefulSet:
		orig := o.DeepCopy()
		rev := o.Name + "-" + hash
		o.Status.ObservedGeneration = o.Generation
		o.Status.Replicas = int32(running)
		o.Status.ReadyReplicas = int32(ready)
		o.Status.AvailableReplicas = int32(ready)
		o.Status.CurrentReplicas = int32(running)
		o.Status.UpdatedReplicas = int32(running)
		o.Status.CurrentRevision = rev
		o.Status.UpdateRevision = rev
		if equalJSON(orig.Status, o.Status) {
			return
		}
		if err := k.c.Status().Patch(ctx, o, client.MergeFrom(orig)); err != nil && ctx.Err() == nil && !apierrors.IsNotFound(err) {
			k.logf("kubelet: status of StatefulSet %s/%s: %v", o.Namespace, o.Name, err)
		}
	case *appsv1.Deployment:
		orig := o.DeepCopy()
		o.Status.ObservedGeneration = o.Generation
		o.Status.Replicas = int32(running)
		o.Status.UpdatedReplicas = int32(running)
		o.Status.ReadyReplicas = int32(ready)
		o.Status.AvailableReplicas = int32(ready)
		o.Status.UnavailableReplicas = int32(max(d.replicas-ready, 0))
		avail := corev1.ConditionFalse
		reason := "MinimumReplicasUnavailable"
		if ready >= d.replicas {
			avail, reason = corev1.ConditionTrue, "MinimumReplicasAvailable"
		}
		setDeploymentCondition(o, appsv1.DeploymentAvailable, avail, reason)
		setDeploymentCondition(o, appsv1.DeploymentProgressing, corev1.ConditionTrue, "NewReplicaSetAvailable")
		if equalJSON(orig.Status, o.Status) {
			return
		}
		if err := k.c.Status().Patch(ctx, o, client.MergeFrom(orig)); err != nil && ctx.Err() == nil && !apierrors.IsNotFound(err) {
			k.logf("kubelet: status of Deployment %s/%s: %v", o.Namespace, o.Name, err)
		}
	}
}

func setDeploymentCondition(d *appsv1.Deployment, t appsv1.DeploymentConditionType, s corev1.ConditionStatus, reason string) {
	now := metav1.Now()
	for i := range d.Status.Conditions {
		c := &d.Status.Conditions[i]
		if c.Type == t {
			if c.Status != s {
				c.Status, c.LastTransitionTime = s, now
			}
			c.Reason = reason
			return
		}
	}
	d.Status.Conditions = append(d.Status.Conditions, appsv1.DeploymentCondition{Type: t, Status: s, Reason: reason,
		LastTransitionTime: now, LastUpdateTime: now})
}

func equalJSON(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// ReceiverReplicas describes the replicas of the workload that belongs to
// WebhookReceiver ns/receiver (nil when none runs yet).
func (k *Kubelet) ReceiverReplicas(ns, receiver string) []ReplicaInfo {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []ReplicaInfo
	names := sortedKeys(k.workloads)
	for _, kk := range names {
		w := k.workloads[kk]
		if w.namespace != ns || w.receiver != receiver {
			continue
		}
		for _, r := range w.replicas {
			ri := ReplicaInfo{Pod: r.pod, HostPort: r.hostPort, Ready: r.ready, Restarts: r.restarts, LogFile: r.logFile}
			if r.plan != nil {
				ri.Args, ri.Env, ri.DataDirs = r.plan.Args, r.plan.Env, r.plan.DataDirs
			}
			out = append(out, ri)
		}
	}
	return out
}

// KillReceiver SIGKILLs replica ordinal of WebhookReceiver ns/receiver's
// workload (a crash, or a node going away) and keeps it down for down
// before the kubelet restarts it.
func (k *Kubelet) KillReceiver(ns, receiver string, ordinal int, down time.Duration) error {
	k.mu.Lock()
	var r *replica
	for _, w := range k.workloads {
		if w.namespace == ns && w.receiver == receiver && ordinal < len(w.replicas) {
			r = w.replicas[ordinal]
		}
	}
	if r == nil || r.proc == nil {
		k.mu.Unlock()
		return fmt.Errorf("no running replica %d of WebhookReceiver %s/%s", ordinal, ns, receiver)
	}
	process := r.proc
	r.expectExit = true
	r.ready = false
	r.nextStart = time.Now().Add(down)
	k.mu.Unlock()
	process.Kill()
	return nil
}

// WaitReceiverReady waits until n replicas of WebhookReceiver ns/receiver
// are ready.
func (k *Kubelet) WaitReceiverReady(ctx context.Context, ns, receiver string, n int) error {
	for {
		ready := 0
		for _, r := range k.ReceiverReplicas(ns, receiver) {
			if r.Ready {
				ready++
			}
		}
		if ready >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("WebhookReceiver %s/%s: %d of %d replicas ready: %w (kubelet failures: %v)", ns, receiver, ready, n, ctx.Err(), k.Failures())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// ReleaseReceiver ends the hold-down of a replica stopped by KillReceiver:
// the kubelet restarts it on its next sync.
func (k *Kubelet) ReleaseReceiver(ns, receiver string, ordinal int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, w := range k.workloads {
		if w.namespace == ns && w.receiver == receiver && ordinal < len(w.replicas) {
			w.replicas[ordinal].nextStart = time.Time{}
		}
	}
}

// PartitionReceiver cuts (on) or heals (off) the network path from the
// receiver's externalURL to its Pods, as a broken tunnel or load balancer
// would: connections are accepted and closed at once while the Pods stay
// up and Ready. Open connections are cut too.
func (k *Kubelet) PartitionReceiver(ns, receiver string, on bool) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, w := range k.workloads {
		if w.namespace == ns && w.receiver == receiver && w.proxy != nil {
			w.proxy.cut.Store(on)
			if on {
				w.proxy.mu.Lock()
				for c := range w.proxy.conns {
					_ = c.Close()
				}
				w.proxy.mu.Unlock()
			}
			return nil
		}
	}
	return fmt.Errorf("WebhookReceiver %s/%s has no externalURL being served", ns, receiver)
}
