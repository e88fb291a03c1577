package main

// -ingress: the receiver and the bare ceiling handler as Pods on the real single-node test cluster
// (internal/testutil/kcluster, as test/cluster brings it up), each reached through Traefik's
// Ingress (node IP, Host header, a path each) and directly on its Pod address, so the Ingress
// hop's own cost shows. wrk runs in the cluster's network namespace, where Intuned's requests
// would come from; the four cases take turns in rounds, as the local cases do.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/ociimage"
	"github.com/intuned-operator/intuned-operator/internal/resources"
	"github.com/intuned-operator/intuned-operator/internal/testutil/kcluster"
	"github.com/intuned-operator/intuned-operator/internal/testutil/poll"
	"github.com/intuned-operator/intuned-operator/internal/testutil/proc"
)

const (
	ingressNS    = "bench"
	ingressWHR   = "bench"
	ingestPath   = "/webhooks/bench"
	ceilingPath  = "/ceiling"
	ceilingImage = "kcluster.local/bench-ceiling:dev"
)

// ingressCase is one target: a server reached one way.
type ingressCase struct {
	name, route, base string
	target
	sat, light []wrkResult
	fixed      fixedResult
}

// fixedJob is one fixed-rate slice, run by this command inside the cluster's network namespace
// (-fixed-client reads it on stdin and writes a fixedReport to stdout).
type fixedJob struct {
	Base, Path, Token, Host, Prefix string
	Rate, Seconds                   float64
	Conns, BodyBytes                int
}

type fixedReport struct {
	Sent, Errors int
	Seconds      float64
	LatencyUS    []int64
}

// runFixedClient is the -fixed-client side: b.fixedRate with the job's target.
func runFixedClient() error {
	var job fixedJob
	if err := json.NewDecoder(os.Stdin).Decode(&job); err != nil {
		return err
	}
	b := &bench{conns: job.Conns, bodySize: job.BodyBytes, randomRunIDs: true, target: target{path: job.Path, token: job.Token, host: job.Host}}
	var f fixedResult
	b.fixedRate(job.Base, &f, job.Prefix, job.Rate, time.Duration(job.Seconds*float64(time.Second)))
	r := fixedReport{Sent: f.sent, Errors: f.errors, Seconds: f.seconds}
	for _, l := range f.lat {
		r.LatencyUS = append(r.LatencyUS, l.Microseconds())
	}
	return json.NewEncoder(os.Stdout).Encode(r)
}

// fixedInNamespace runs one fixed-rate slice against c from the cluster's network namespace and
// adds it to c.fixed.
func (b *bench) fixedInNamespace(kc *kcluster.Cluster, c *ingressCase, prefix string, rate float64, d time.Duration) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	job, err := json.Marshal(fixedJob{Base: c.base, Path: c.path, Token: c.token, Host: c.host, Prefix: prefix,
		Rate: rate, Seconds: d.Seconds(), Conns: b.conns, BodyBytes: b.bodySize})
	if err != nil {
		return err
	}
	cmd := kc.CommandInNamespace(self, "-fixed-client")
	cmd.Stdin, cmd.Stderr = bytes.NewReader(job), os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("fixed-rate client: %w", err)
	}
	var r fixedReport
	if err := json.Unmarshal(out, &r); err != nil {
		return fmt.Errorf("fixed-rate client output: %w", err)
	}
	c.fixed.sent += r.Sent
	c.fixed.errors += r.Errors
	c.fixed.seconds += r.Seconds
	for _, us := range r.LatencyUS {
		c.fixed.lat = append(c.fixed.lat, time.Duration(us)*time.Microsecond)
	}
	return nil
}

func (b *bench) runIngress(duration time.Duration, rounds int, warmup time.Duration) (err error) {
	if runtime.GOOS != "linux" || os.Geteuid() != 0 {
		return errors.New("-ingress brings up the real test cluster (network namespaces, containerd): run it as root on Linux")
	}
	wrkBin, err := exec.LookPath("wrk")
	if err != nil {
		return errors.New("wrk not found (hack/bench-receiver/ensure-wrk.sh installs it)")
	}
	root := proc.RepoRoot()
	lay := kcluster.DefaultLayout(root)
	if _, err := os.Stat(filepath.Join(lay.ToolsBin, "traefik")); err != nil {
		return errors.New("cluster binaries not built: run hack/setup-kcluster.sh")
	}
	kc, err := kcluster.New(kcluster.DefaultConfig(lay.Dir, lay.K8sBin, lay.ToolsBin), func(f string, a ...any) {
		fmt.Fprintf(os.Stderr, f+"\n", a...)
	})
	if err != nil {
		return err
	}
	if b.tmp, err = os.MkdirTemp("", "bench-receiver-ingress-"); err != nil {
		return err
	}
	defer os.RemoveAll(b.tmp)
	// A previous run that died keeps nothing running into this one.
	if err := kc.Down(true); err != nil {
		return fmt.Errorf("cleaning up a previous cluster: %w", err)
	}
	defer func() {
		err = errors.Join(err, kc.Down(true))
		if left := kc.Leftovers(); len(left) > 0 {
			err = errors.Join(err, fmt.Errorf("teardown left behind: %s", strings.Join(left, ", ")))
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cases, err := b.deployIngressCases(ctx, kc, root)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(b.tmp, "ingest.lua"), []byte(wrkScript(b.bodySize, true)), 0o600); err != nil {
		return err
	}
	b.wrkCommand = func(args ...string) *exec.Cmd { return kc.CommandInNamespace(wrkBin, args...) }
	run := func(c *ingressCase, conns int, prefix string, d time.Duration) (wrkResult, error) {
		args := []string{prefix, c.path, c.token}
		if c.host != "" {
			args = append(args, c.host)
		}
		return b.runWrk(c.base, conns, d, args...)
	}
	for _, c := range cases {
		fmt.Fprintf(os.Stderr, "warming up %s ...\n", c.name)
		if _, err := run(c, b.conns, c.name+"-warm", warmup); err != nil {
			return fmt.Errorf("%s: %w", c.name, err)
		}
	}
	slice := duration / time.Duration(rounds)
	for r := range rounds {
		for _, c := range cases {
			fmt.Fprintf(os.Stderr, "round %d/%d: %s for %s + %s on one connection ...\n", r+1, rounds, c.name, slice, slice/2)
			w, err := run(c, b.conns, fmt.Sprintf("%s-r%d", c.name, r), slice)
			if err != nil {
				return fmt.Errorf("%s: %w", c.name, err)
			}
			l, err := run(c, 1, fmt.Sprintf("%s-l%d", c.name, r), slice/2)
			if err != nil {
				return fmt.Errorf("%s: %w", c.name, err)
			}
			c.sat, c.light = append(c.sat, w), append(c.light, l)
		}
	}
	// The fixed rate: -rate, or -rate-fraction of the slowest case's (the receiver via Traefik)
	// saturation rate, so that every case can keep up with it.
	rate := b.rate
	if rate == 0 {
		slowest, _, _, _ := wrkMean(cases[0].sat)
		rate = b.rateFraction * slowest
	}
	if rate > 0 {
		fslice := b.fixedDuration / time.Duration(rounds)
		for r := range rounds {
			for _, c := range cases {
				fmt.Fprintf(os.Stderr, "fixed rate %.0f req/s, round %d/%d: %s via %s for %s ...\n", rate, r+1, rounds, c.name, c.route, fslice)
				if err := b.fixedInNamespace(kc, c, fmt.Sprintf("%s-%s-f%d", c.name, c.route, r), rate, fslice); err != nil {
					return fmt.Errorf("%s: %w", c.name, err)
				}
			}
		}
	}
	printIngress(cases, b, duration, rounds, rate)
	return nil
}

// deployIngressCases brings the cluster up, installs the operator from the installer manifest (as
// test/cluster does) with a SQLite WebhookReceiver behind Traefik, runs the ceiling handler in its
// own image as a Deployment + Service + Ingress on the same host, and returns the four targets.
func (b *bench) deployIngressCases(ctx context.Context, kc *kcluster.Cluster, root string) ([]*ingressCase, error) {
	if err := kc.Up(ctx); err != nil {
		return nil, err
	}
	tar := filepath.Join(b.tmp, "intuned-operator.tar")
	if _, err := kcluster.BuildProjectImage(ctx, root, filepath.Join(b.tmp, "bin"), tar, kcluster.ProjectImageTag); err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	if err := kc.ImportImage(ctx, tar); err != nil {
		return nil, fmt.Errorf("import image: %w", err)
	}
	// The ceiling: this command, static, alone in a scratch-like image.
	build := proc.Build{Packages: []string{"./hack/bench-receiver"}, Dir: filepath.Join(b.tmp, "ceiling"),
		Env: []string{"CGO_ENABLED=0", "GOOS=linux", "GOARCH=" + runtime.GOARCH}, Flags: []string{"-trimpath"}}
	bins, err := build.Run(ctx)
	if err != nil {
		return nil, err
	}
	ctar := filepath.Join(b.tmp, "ceiling.tar")
	if _, err := ociimage.WriteFilesArchive(ctar, ceilingImage, kcluster.NodePlatform, ociimage.Files{"/ceiling": {Mode: 0o755, Src: bins[0]}},
		ociimage.Config{User: ociimage.NonrootUser, Entrypoint: []string{"/ceiling", "-serve-ceiling", ":8080"}}); err != nil {
		return nil, err
	}
	if err := kc.ImportImage(ctx, ctar); err != nil {
		return nil, fmt.Errorf("import ceiling image: %w", err)
	}
	if err := kc.InstallOperator(ctx, root, b.tmp, false); err != nil {
		return nil, err
	}
	host := kc.Config().IngressHosts[0]
	manifests := filepath.Join(b.tmp, "bench.yaml")
	if err := os.WriteFile(manifests, []byte(strings.NewReplacer("HOST", host, "NS", ingressNS, "WHR", ingressWHR,
		"INGEST", ingestPath, "CEILPATH", ceilingPath, "IMAGE", ceilingImage).Replace(benchManifests)), 0o600); err != nil {
		return nil, err
	}
	steps := [][]string{
		{"apply", "--server-side", "-f", manifests},
		{"-n", ingressNS, "rollout", "status", "deployment/ceiling", "--timeout=3m"},
		{"-n", ingressNS, "wait", "--for=condition=Ready", "webhookreceiver/" + ingressWHR, "--timeout=5m"},
	}
	for _, args := range steps {
		if out, err := kc.Kubectl(ctx, args...); err != nil {
			return nil, fmt.Errorf("%w: %s", err, out)
		}
	}
	get := func(args ...string) (string, error) {
		out, err := kc.Kubectl(ctx, append([]string{"-n", ingressNS, "get"}, args...)...)
		return strings.TrimSpace(out), err
	}
	secret, err := get("webhookreceiver", ingressWHR, "-o", "jsonpath={.status.tokenSecretName}")
	if err != nil {
		return nil, err
	}
	token, err := get("secret", secret, "-o", "go-template={{.data.token | base64decode}}")
	if err != nil {
		return nil, err
	}
	// Without Traefik: the Pod's address and port from the Service's EndpointSlice (where
	// Traefik sends requests too). The Service's ClusterIP is not routed inside the node's
	// network namespace, where the load comes from.
	endpoint := func(svc string) (string, error) {
		return get("endpointslices", "-l", "kubernetes.io/service-name="+svc, "-o", "jsonpath={.items[0].endpoints[0].addresses[0]}:{.items[0].ports[0].port}")
	}
	receiverPod, err := endpoint(resources.ChildName(&intunedv1alpha1.WebhookReceiver{ObjectMeta: metav1.ObjectMeta{Name: ingressWHR}}))
	if err != nil {
		return nil, err
	}
	ceilingPod, err := endpoint("ceiling")
	if err != nil {
		return nil, err
	}
	node := "http://" + kc.Config().NodeIP + ":80" // fixedRate dials host:port
	cases := []*ingressCase{
		{name: "receiver", route: "Ingress", base: node, target: target{path: ingestPath, token: token, host: host}},
		{name: "ceiling", route: "Ingress", base: node, target: target{path: ceilingPath, token: "-", host: host}},
		{name: "receiver", route: "Pod", base: "http://" + receiverPod, target: target{path: ingestPath, token: token}},
		{name: "ceiling", route: "Pod", base: "http://" + ceilingPod, target: target{path: ceilingPath, token: "-"}},
	}
	// Traefik picks a new route up a moment after the Ingress exists: wait until each case
	// answers a delivery with 2xx.
	for _, c := range cases {
		if err := poll.Eventually(ctx, 500*time.Millisecond, c.name+" via its "+c.route+" answers 2xx", func(ctx context.Context) (bool, error) {
			code, err := b.probe(kc, c)
			return err == nil && code/100 == 2, fmt.Errorf("status %d, %v", code, err)
		}); err != nil {
			return nil, err
		}
	}
	return cases, nil
}

// probe POSTs one delivery to c from the cluster's network namespace and returns the status.
func (b *bench) probe(kc *kcluster.Cluster, c *ingressCase) (int, error) {
	pre, suf := bodyParts(b.bodySize)
	args := []string{"-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", "-H", "Authorization: Bearer " + c.token,
		"-H", "Content-Type: application/json", "--data-binary", string(pre) + fmt.Sprintf("probe-%d", time.Now().UnixNano()) + string(suf)}
	if c.host != "" {
		args = append(args, "-H", "Host: "+c.host)
	}
	curl, err := exec.LookPath("curl")
	if err != nil {
		return 0, err
	}
	out, err := kc.CommandInNamespace(curl, append(args, c.base+c.path)...).Output()
	code, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	return code, err
}

// benchManifests: the namespace, the receiver (the sample's SQLite store, plain HTTP on the
// cluster's Ingress host) and the ceiling's Deployment, Service and Ingress on the same host.
const benchManifests = `apiVersion: v1
kind: Namespace
metadata: {name: NS}
---
apiVersion: intuned.io/v1alpha1
kind: WebhookReceiver
metadata: {name: WHR, namespace: NS}
spec:
  storage: {sqlite: {size: 1Gi}}
  ingress: {host: HOST, path: INGEST, className: traefik}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: ceiling, namespace: NS}
spec:
  replicas: 1
  selector: {matchLabels: {app: ceiling}}
  template:
    metadata: {labels: {app: ceiling}}
    spec:
      containers:
      - name: ceiling
        image: IMAGE
        imagePullPolicy: Never
        ports: [{containerPort: 8080}]
        readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}
        securityContext: {runAsNonRoot: true, allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
---
apiVersion: v1
kind: Service
metadata: {name: ceiling, namespace: NS}
spec:
  selector: {app: ceiling}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: ceiling, namespace: NS}
spec:
  ingressClassName: traefik
  rules:
  - host: HOST
    http:
      paths:
      - path: CEILPATH
        pathType: Prefix
        backend: {service: {name: ceiling, port: {number: 80}}}
`

// wrkMean is the request-weighted mean of the rounds' rate and percentiles.
func wrkMean(ws []wrkResult) (rps float64, p50, p99 time.Duration, errs int) {
	var n, secs, a, c float64
	for _, w := range ws {
		k := float64(w.requests)
		n, secs = n+k, secs+w.seconds
		a += k * float64(w.p50)
		c += k * float64(w.p99)
		errs += w.errors
	}
	if n == 0 {
		return 0, 0, 0, errs
	}
	return n / secs, time.Duration(a / n), time.Duration(c / n), errs
}

func printIngress(cases []*ingressCase, b *bench, duration time.Duration, rounds int, rate float64) {
	fmt.Printf("\nreceiver behind the real node's Ingress (Traefik) and directly on its Pod: ~%d-byte sink bodies, random runIds, %s per case in %d rounds\n"+
		"(+ half that on one connection), wrk (%d threads) in the cluster's network namespace, %d CPUs, load average now %s\n\n",
		b.bodySize, duration, rounds, b.wrkThreads, runtime.NumCPU(), loadAvg())
	ceiling := map[string]float64{}
	direct := map[string]float64{}
	for _, c := range cases {
		rps, _, _, _ := wrkMean(c.sat)
		if c.name == "ceiling" {
			ceiling[c.route] = rps
		}
		if c.route == "Pod" {
			direct[c.name] = rps
		}
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "case\tvia\treq/s (%d conns)\tx ceiling\tx Pod\tp50\tp99\tp50 (1 conn)\tp99 (1 conn)\terrors\t\n", b.conns)
	for _, c := range cases {
		rps, p50, p99, errs := wrkMean(c.sat)
		_, l50, l99, lerrs := wrkMean(c.light)
		fmt.Fprintf(tw, "%s\t%s\t%.0f\t%.2f\t%.2f\t%s\t%s\t%s\t%s\t%d\t\n", c.name, c.route, rps, rps/ceiling[c.route], rps/direct[c.name],
			ms(p50), ms(p99), ms(l50), ms(l99), errs+lerrs)
	}
	tw.Flush() //nolint:errcheck
	fmt.Println("\nx ceiling: the bare handler reached the same way; x Pod: the same server on its Pod's address (no Traefik).\n" +
		"p50/p99 here are wrk's closed-loop ones (at saturation, and on one connection).")
	if rate == 0 {
		return
	}
	fmt.Printf("\nfixed rate (open loop, latency from the scheduled send time): %.0f req/s on %d connections, %s per case in %d rounds\n\n",
		rate, b.conns, b.fixedDuration, rounds)
	tw = tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "case\tvia\tp50\tp99\tp99.9\tsent\terrors\t")
	for _, c := range cases {
		s := &server{lat: c.fixed.lat}
		p50, p99, p999 := s.percentiles()
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t\n", c.name, c.route, ms(p50), ms(p99), ms(p999), c.fixed.sent, c.fixed.errors)
	}
	tw.Flush() //nolint:errcheck
}
