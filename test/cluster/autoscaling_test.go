package cluster

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/resources"
	"github.com/intuned-operator/intuned-operator/internal/testutil/flow"
	"github.com/intuned-operator/intuned-operator/internal/testutil/poll"
	"github.com/intuned-operator/intuned-operator/internal/testutil/scenarios"
)

// Autoscaling settings of TestAutoscaleBurst: a CPU request small enough
// that one busy receiver is far over target, and a short scale-down window
// so that the test sees the scale-in within a minute of the burst's end.
const (
	burstMaxReplicas    = 3
	burstCPURequest     = "100m"
	burstCPUTarget      = 50
	burstScaleDownAfter = 15
	burstSenders        = 32 // concurrent requests, as Intuned with a high maxConcurrentRequests
	steadySeconds       = 10 // the burst goes on this long once every new Pod serves
)

// TestAutoscaleBurst: a PostgreSQL receiver with an HPA (min 1, max 3) on
// the real node, behind the Traefik Ingress. A burst of deliveries through
// the Ingress makes metrics-server report its CPU, the HPA scales it out
// and the new Pods take deliveries; then a trickle goes on while the HPA
// scales it back in, so Pods are terminated with deliveries arriving. Every
// delivery the sender saw acknowledged (2xx) is stored exactly once, and
// the sender saw no failure but 429/503 with Retry-After. The operator
// leaves the replica count to the HPA meanwhile.
func TestAutoscaleBurst(t *testing.T) {
	ctx := scenarios.Context(t, 8*time.Minute)
	dsn := env.PostgresDSN(t, ctx)
	p := scenarios.NewPair(t, ctx, &env, "autoscale", func(s *flow.Samples) {
		sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: s.Receiver.Namespace, Name: "receiver-db"}, StringData: map[string]string{"dsn": dsn}}
		if err := env.kubeClient.Create(ctx, sec); err != nil {
			t.Fatal(err)
		}
		s.Receiver.Spec.Replicas = nil
		s.Receiver.Spec.Storage = &intunedv1alpha1.ReceiverStorage{Postgres: &intunedv1alpha1.PostgresStorage{
			DSNSecretRef: intunedv1alpha1.SecretKeyRef{Name: "receiver-db", Key: "dsn"}}}
		s.Receiver.Spec.Autoscaling = &intunedv1alpha1.ReceiverAutoscaling{
			MinReplicas: ptr.To[int32](1), MaxReplicas: burstMaxReplicas,
			TargetCPUUtilizationPercentage:      ptr.To[int32](burstCPUTarget),
			ScaleDownStabilizationWindowSeconds: ptr.To[int32](burstScaleDownAfter),
		}
		s.Receiver.Spec.Resources = &corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(burstCPURequest), corev1.ResourceMemory: resource.MustParse("64Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("512Mi")},
		}
	})
	p.ScaleToZeroAtEnd()
	p.WaitReady(ctx)
	ingest, _, err := flow.ReceiverTokens(ctx, env.kubeClient, p.NS, p.Receiver)
	if err != nil {
		t.Fatal(err)
	}
	whr := &intunedv1alpha1.WebhookReceiver{ObjectMeta: metav1.ObjectMeta{Namespace: p.NS, Name: p.Receiver}}
	name := resources.ChildName(whr)
	// The HPA reads the one Pod's CPU before the burst: the time to scale
	// out is then the HPA's reaction, not metrics-server's first scrape.
	waitHPA(t, ctx, p.NS, name, "the HPA reads the Pod's CPU", func(h *autoscalingv2.HorizontalPodAutoscaler) bool {
		return len(h.Status.CurrentMetrics) > 0
	})
	// Traefik routes to a new Pod a moment after it is Ready (it answers
	// 503 until its endpoints arrive).
	err = poll.Eventually(ctx, 200*time.Millisecond, "the Ingress reaches the receiver", func(ctx context.Context) (bool, error) {
		code, err := postIngest(ctx, p)
		return code == http.StatusUnauthorized, fmt.Errorf("unauthenticated delivery through the Ingress: %d (%v)", code, err)
	})
	if err != nil {
		t.Fatal(err)
	}

	obs := newScaleObserver(p.NS, p.Receiver)
	obsCtx, stopObs := context.WithCancel(ctx)
	obsDone := make(chan struct{})
	go func() { defer close(obsDone); obs.run(obsCtx) }()

	s := &sender{p: p, token: ingest, jobRun: "jr-" + p.NS}
	start := time.Now()
	obs.burst.Store(true)
	s.start(ctx, burstSenders, 0)
	// Scale-out: the HPA asks for more Pods and each new one serves.
	waitObserved(t, ctx, obs, "every Pod up to the HPA's maximum serving", func() bool {
		return obs.serving() >= burstMaxReplicas
	})
	scaledOut := time.Since(start)
	// The operator reconciles while the HPA owns the count (here: a changed
	// CPU target) and leaves spec.replicas as the HPA set it.
	patch := client.RawPatch("application/merge-patch+json", []byte(fmt.Sprintf(`{"spec":{"autoscaling":{"targetCPUUtilizationPercentage":%d}}}`, burstCPUTarget+1)))
	if err := env.kubeClient.Patch(ctx, whr, patch); err != nil {
		t.Fatal(err)
	}
	waitHPA(t, ctx, p.NS, name, "the operator applied the new target", func(h *autoscalingv2.HorizontalPodAutoscaler) bool {
		return *h.Spec.Metrics[0].Resource.Target.AverageUtilization == burstCPUTarget+1
	})
	var d appsv1.Deployment
	if err := env.kubeClient.Get(ctx, client.ObjectKey{Namespace: p.NS, Name: name}, &d); err != nil {
		t.Fatal(err)
	}
	if d.Spec.Replicas == nil || *d.Spec.Replicas != burstMaxReplicas {
		t.Errorf("after the operator's reconcile the Deployment asks for %v replicas, want the HPA's %d", d.Spec.Replicas, burstMaxReplicas)
	}
	time.Sleep(steadySeconds * time.Second)

	// Scale-in under a trickle: one sender, a delivery every 50 ms.
	burst := s.stop()
	obs.burst.Store(false)
	burstEnd := time.Since(start)
	s.phase.Store("trickle")
	s.start(ctx, 1, 50*time.Millisecond)
	waitObserved(t, ctx, obs, "scaled back in to one Pod, the others gone", func() bool {
		return obs.running() == 1
	})
	scaledIn := time.Since(start)
	// A few more seconds of trickle to the one Pod left.
	time.Sleep(3 * time.Second)
	trickle := s.stop()
	stopObs()
	<-obsDone

	// Every acknowledged delivery stored exactly once: run_id is the
	// table's primary key, so "once" is every acknowledged id present and
	// nothing else stored for this JobRun.
	stored := storedRunIDs(t, ctx, dsn, s.jobRun)
	acked := s.acked()
	missing := 0
	for id := range acked {
		if !stored[id] {
			missing++
			if missing <= 5 {
				t.Errorf("run %s acknowledged but not stored", id)
			}
		}
	}
	if missing > 0 || len(stored) != len(acked) {
		t.Errorf("%d deliveries acknowledged, %d stored, %d acknowledged but missing", len(acked), len(stored), missing)
	}
	// One 502 from Traefik during scale-in is tolerated (seen once in
	// three full runs): Traefik sent a request on a connection the
	// terminating receiver was closing. Intuned retries it, and nothing
	// acknowledged is lost (checked above). Without --shutdown-delay there
	// were three; more than one fails.
	gateway := 0
	for _, f := range s.failures() {
		if f.phase == "trickle" && f.status == http.StatusBadGateway && gateway == 0 {
			gateway++
			t.Logf("tolerated during scale-in: %s", f)
			continue
		}
		if !f.retryable() {
			t.Errorf("the sender saw %s", f)
		}
	}

	t.Logf("burst: %d deliveries acknowledged in %.1fs; trickle: %d; all Pods up to the maximum serving %.1fs after the burst started; burst ended at %.1fs, scaled in at %.1fs (%.1fs later)",
		burst, burstEnd.Seconds(), trickle, scaledOut.Seconds(), burstEnd.Seconds(), scaledIn.Seconds(), (scaledIn - burstEnd).Seconds())
	obs.report(t, start)
	t.Logf("sender saw: %s", s.failureSummary())
	for pod, l := range obs.shutdownLines() {
		t.Logf("pod %s shut down: %s", pod, l)
	}
}

// waitHPA polls the HPA until ok.
func waitHPA(t *testing.T, ctx context.Context, ns, name, what string, ok func(*autoscalingv2.HorizontalPodAutoscaler) bool) {
	t.Helper()
	err := poll.Eventually(ctx, time.Second, what, func(ctx context.Context) (bool, error) {
		var h autoscalingv2.HorizontalPodAutoscaler
		if err := env.kubeClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &h); err != nil {
			return false, err
		}
		return ok(&h), fmt.Errorf("HPA status %+v", h.Status)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func waitObserved(t *testing.T, ctx context.Context, obs *scaleObserver, what string, ok func() bool) {
	t.Helper()
	err := poll.Eventually(ctx, 250*time.Millisecond, what, func(ctx context.Context) (bool, error) {
		return ok(), fmt.Errorf("%s", obs.state())
	})
	if err != nil {
		t.Fatal(err)
	}
}

// storedRunIDs reads the run ids of one JobRun from the receivers' database.
func storedRunIDs(t *testing.T, ctx context.Context, dsn, jobRun string) map[string]bool {
	t.Helper()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, "SELECT run_id FROM deliveries WHERE job_run_id = $1", jobRun)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]bool, len(ids))
	for _, id := range ids {
		out[id] = true
	}
	return out
}

// sender posts sink bodies through the Ingress as Intuned does: each
// delivery until it is acknowledged (2xx), again after a failure. It waits
// 200 ms rather than Retry-After (5 s) before a retry, to keep the test
// short; every failure is recorded.
type sender struct {
	p      *scenarios.Pair
	token  string
	jobRun string
	phase  atomic.Value // e.g. "burst" (the default) or "trickle", recorded with failures

	mu    sync.Mutex
	ok    map[string]bool
	fails []sendFailure
	seq   atomic.Int64
	count atomic.Int64 // acknowledged, for the observer's rate

	stopCh chan struct{}
	wg     sync.WaitGroup
	n0     int64
}

type sendFailure struct {
	at         time.Time
	phase      string
	status     int // 0: no answer
	retryAfter bool
	err        string
}

func (f sendFailure) retryable() bool {
	return (f.status == http.StatusTooManyRequests || f.status == http.StatusServiceUnavailable) && f.retryAfter
}

func (f sendFailure) String() string {
	if f.status == 0 {
		return fmt.Sprintf("%s: no answer (%s)", f.phase, f.err)
	}
	return fmt.Sprintf("%s: %d (Retry-After %v) %s", f.phase, f.status, f.retryAfter, f.err)
}

// start runs n senders; pause > 0 paces each to one delivery per pause.
func (s *sender) start(ctx context.Context, n int, pause time.Duration) {
	s.mu.Lock()
	if s.ok == nil {
		s.ok = map[string]bool{}
	}
	if s.phase.Load() == nil {
		s.phase.Store("burst")
	}
	s.mu.Unlock()
	s.stopCh = make(chan struct{})
	s.n0 = s.count.Load()
	url := "http://" + env.kc.Config().NodeIP + strings.TrimPrefix(s.p.URL, "http://"+env.ingressHost())
	hc := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: n}}
	for range n {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			for {
				select {
				case <-s.stopCh:
					return
				case <-ctx.Done():
					return
				default:
				}
				id := fmt.Sprintf("%s-%d", s.jobRun, s.seq.Add(1))
				for !s.deliver(ctx, hc, url, id) {
					if ctx.Err() != nil {
						return
					}
					time.Sleep(200 * time.Millisecond)
				}
				if pause > 0 {
					time.Sleep(pause)
				}
			}
		}()
	}
}

// stop ends the senders (each finishes the delivery it is on) and returns
// how many deliveries they had acknowledged.
func (s *sender) stop() int64 {
	close(s.stopCh)
	s.wg.Wait()
	return s.count.Load() - s.n0
}

func (s *sender) deliver(ctx context.Context, hc *http.Client, url, id string) bool {
	body := fmt.Sprintf(`{"workspaceId":"ws","project":{"name":%q},"projectJob":{"id":%q},"projectJobRun":{"id":%q},`+
		`"apiInfo":{"name":"list","runId":%q,"result":{"status":"completed","result":{"items":[1,2,3],"page":%q}}}}`,
		s.p.Project, s.p.Job, s.jobRun, id, id)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return false
	}
	req.Host = env.ingressHost()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+s.token)
	resp, err := hc.Do(req)
	phase, _ := s.phase.Load().(string)
	if err != nil {
		s.fail(sendFailure{phase: phase, err: err.Error()})
		return false
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		s.fail(sendFailure{phase: phase, status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After") != "", err: strings.TrimSpace(string(msg))})
		return false
	}
	s.mu.Lock()
	s.ok[id] = true
	s.mu.Unlock()
	s.count.Add(1)
	return true
}

func (s *sender) fail(f sendFailure) {
	f.at = time.Now()
	s.mu.Lock()
	s.fails = append(s.fails, f)
	s.mu.Unlock()
}

func (s *sender) acked() map[string]bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ok
}

func (s *sender) failures() []sendFailure {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sendFailure(nil), s.fails...)
}

// failureSummary counts failures by phase and answer.
func (s *sender) failureSummary() string {
	counts := map[string]int{}
	for _, f := range s.failures() {
		k := fmt.Sprintf("%s %d retry-after=%v", f.phase, f.status, f.retryAfter)
		if f.status == 0 {
			k = f.phase + " no answer"
		}
		counts[k]++
	}
	if len(counts) == 0 {
		return "only 2xx"
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s: %d; ", k, counts[k])
	}
	return b.String()
}

// scaleObserver samples the receiver's Pods once a second: which are
// ready, how many deliveries each has taken (its /metrics, by Pod IP), its
// in-flight deliveries; and it follows each Pod's log to keep its shutdown
// lines.
type scaleObserver struct {
	ns, receiver string

	burst atomic.Bool // the burst's senders run

	mu      sync.Mutex
	pods    map[string]*podTrace
	samples []scaleSample
	logs    map[string]*bytes.Buffer
}

type podTrace struct {
	seen, ready, firstServed, terminating, gone time.Time
	initial                                     bool
}

type scaleSample struct {
	at       time.Time
	ready    int     // ready Pods
	received float64 // deliveries received by all Pods so far
	inFlight float64
	hpaCPU   int32 // the HPA's current average utilisation
	burst    bool
}

func newScaleObserver(ns, receiver string) *scaleObserver {
	return &scaleObserver{ns: ns, receiver: receiver, pods: map[string]*podTrace{}, logs: map[string]*bytes.Buffer{}}
}

func (o *scaleObserver) run(ctx context.Context) {
	first := true
	for ctx.Err() == nil {
		o.sample(ctx, first)
		first = false
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

var (
	receivedRE = regexp.MustCompile(`(?m)^receiver_deliveries_received_total (\S+)$`)
	inFlightRE = regexp.MustCompile(`(?m)^receiver_deliveries_in_flight (\S+)$`)
)

func (o *scaleObserver) sample(ctx context.Context, first bool) {
	pods, err := env.receiverPods(ctx, o.ns, o.receiver)
	if err != nil {
		return
	}
	now := time.Now()
	smp := scaleSample{at: now, burst: o.burst.Load()}
	whr := &intunedv1alpha1.WebhookReceiver{ObjectMeta: metav1.ObjectMeta{Name: o.receiver}}
	var h autoscalingv2.HorizontalPodAutoscaler
	if env.kubeClient.Get(ctx, client.ObjectKey{Namespace: o.ns, Name: resources.ChildName(whr)}, &h) == nil {
		for _, m := range h.Status.CurrentMetrics {
			if m.Resource != nil && m.Resource.Current.AverageUtilization != nil {
				smp.hpaCPU = *m.Resource.Current.AverageUtilization
			}
		}
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	present := map[string]bool{}
	for i := range pods {
		pod := &pods[i]
		present[pod.Name] = true
		tr := o.pods[pod.Name]
		if tr == nil {
			tr = &podTrace{seen: now, initial: first}
			o.pods[pod.Name] = tr
		}
		if pod.DeletionTimestamp != nil && tr.terminating.IsZero() {
			tr.terminating = now
		}
		if podReady(pod) {
			smp.ready++
			if tr.ready.IsZero() {
				tr.ready = now
			}
		}
		if _, ok := o.logs[pod.Name]; !ok && pod.Status.Phase == corev1.PodRunning {
			o.logs[pod.Name] = o.follow(ctx, pod.Name)
		}
		if pod.Status.PodIP == "" || pod.DeletionTimestamp != nil {
			continue
		}
		metrics, err := podMetrics(ctx, pod.Status.PodIP)
		if err != nil {
			continue
		}
		if m := receivedRE.FindStringSubmatch(metrics); m != nil {
			v, _ := strconv.ParseFloat(m[1], 64)
			smp.received += v
			if v > 0 && tr.firstServed.IsZero() {
				tr.firstServed = now
			}
		}
		if m := inFlightRE.FindStringSubmatch(metrics); m != nil {
			v, _ := strconv.ParseFloat(m[1], 64)
			smp.inFlight += v
		}
	}
	for n, tr := range o.pods {
		if !present[n] && tr.gone.IsZero() {
			tr.gone = now
		}
	}
	o.samples = append(o.samples, smp)
}

// follow keeps a Pod's log until its container ends.
func (o *scaleObserver) follow(ctx context.Context, pod string) *bytes.Buffer {
	buf := &bytes.Buffer{}
	cfg := env.kc.Config()
	cmd := exec.CommandContext(ctx, cfg.Kubectl(), "--kubeconfig", cfg.AdminKubeconfig(), "-n", o.ns, "logs", "-f", pod)
	out, err := cmd.StdoutPipe()
	if err != nil || cmd.Start() != nil {
		return buf
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "shutting down") || strings.Contains(sc.Text(), "stopped") {
				o.mu.Lock()
				buf.WriteString(sc.Text() + "\n")
				o.mu.Unlock()
			}
		}
		_ = cmd.Wait()
	}()
	return buf
}

func podMetrics(ctx context.Context, ip string) (string, error) {
	_, body, err := nodeGet(ctx, fmt.Sprintf("http://%s:%d/metrics", ip, resources.HTTPPort), 2*time.Second)
	return body, err
}

// serving counts Pods that are ready and have taken a delivery.
func (o *scaleObserver) serving() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, tr := range o.pods {
		if !tr.firstServed.IsZero() && tr.terminating.IsZero() && tr.gone.IsZero() {
			n++
		}
	}
	return n
}

// running counts Pods that exist, terminating or not.
func (o *scaleObserver) running() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, tr := range o.pods {
		if tr.gone.IsZero() {
			n++
		}
	}
	return n
}

func (o *scaleObserver) state() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var parts []string
	for n, tr := range o.pods {
		parts = append(parts, fmt.Sprintf("%s ready=%v served=%v terminating=%v gone=%v", n,
			!tr.ready.IsZero(), !tr.firstServed.IsZero(), !tr.terminating.IsZero(), !tr.gone.IsZero()))
	}
	sort.Strings(parts)
	return strings.Join(parts, "; ")
}

// report logs, per Pod, when it was seen, ready, first served, terminating
// and gone (seconds after start); per count of ready Pods, the delivery
// rate while the burst's senders ran; and the HPA's CPU reading and the
// in-flight deliveries over time, to compare the two signals.
func (o *scaleObserver) report(t *testing.T, start time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	rel := func(at time.Time) string {
		if at.IsZero() {
			return "-"
		}
		return fmt.Sprintf("%.1fs", at.Sub(start).Seconds())
	}
	names := make([]string, 0, len(o.pods))
	for n := range o.pods {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		tr := o.pods[n]
		t.Logf("pod %s initial=%v seen %s ready %s first delivery %s terminating %s gone %s", n, tr.initial,
			rel(tr.seen), rel(tr.ready), rel(tr.firstServed), rel(tr.terminating), rel(tr.gone))
	}
	type agg struct {
		secs, n float64
	}
	rates := map[int]*agg{}
	var timeline strings.Builder
	for i := 1; i < len(o.samples); i++ {
		a, b := o.samples[i-1], o.samples[i]
		dt := b.at.Sub(a.at).Seconds()
		if d := b.received - a.received; d > 0 && a.ready == b.ready && a.burst && b.burst {
			if rates[b.ready] == nil {
				rates[b.ready] = &agg{}
			}
			rates[b.ready].secs += dt
			rates[b.ready].n += d
		}
		fmt.Fprintf(&timeline, "%s ready=%d inflight=%.0f hpaCPU=%d%%; ", rel(b.at), b.ready, b.inFlight, b.hpaCPU)
	}
	for r := 1; r <= burstMaxReplicas; r++ {
		if a := rates[r]; a != nil && a.secs > 0 {
			t.Logf("throughput with %d ready Pod(s): %.0f deliveries/s over %.0fs", r, a.n/a.secs, a.secs)
		}
	}
	t.Logf("timeline: %s", timeline.String())
}

func (o *scaleObserver) shutdownLines() map[string]string {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := map[string]string{}
	for n, b := range o.logs {
		if b.Len() > 0 {
			out[n] = strings.TrimSpace(b.String())
		}
	}
	return out
}
