// Command bench-operator measures the IntunedJob controller against envtest
// and the Intuned simulator (`make bench-operator`; not a test).
//
// Run 1, rate limit off: N IntunedJobs (-jobs) are applied at once and the
// time until all are Ready is compared with a floor measured in the same
// run: the same N objects created, plus one status write each, by a plain
// client with the same concurrency, on the bare API server. Then the
// optional admission policy (config/admission, for Kubernetes 1.36+: the
// finalizer on create) is added, the floor is measured again with it for
// reference, and the operator runs. Both floors have the benchmark's own
// Ready watch open, as the operator run does. After the operator run, a
// third floor makes the operator's own API requests with a plain client
// (the create, a status write of the status the operator wrote, one Event,
// two watches open): the time to all Ready against it is what the
// operator's own work costs beyond its requests. It reports the API requests and
// Intuned calls per job to converge, the manager's CPU per job, writes
// (Intuned and API server) in a steady state of polls (0), a restart of
// the manager with every job existing under Intuned's real limit (calls
// per job, 429 answers, writes, time until every job was re-read) and the
// manager's peak RSS. -apiserver-cpuprofile profiles kube-apiserver.
// The manager runs as a child process (cmd/manager, built here) against the
// envtest API server, so its RSS and CPU are its own.
//
// Run 2, Intuned's real limit of 20 requests per minute per path, on the
// simulator and in the manager: time to create M jobs against the
// rate-limit floor. All creates share one path (POST .../jobs), so M creates
// need at least ceil(M/20)-1 full minutes after the first batch; every other
// call of the first sync is on a per-job path. 429 answers are counted.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/intunedsim"
	"github.com/intuned-operator/intuned-operator/internal/testutil/proc"
	"github.com/intuned-operator/intuned-operator/internal/testutil/procstat"
	"github.com/intuned-operator/intuned-operator/internal/testutil/testenv"
)

type options struct {
	jobs         int
	limitJobs    int
	workers      int
	applyWorkers int
	steady       time.Duration
	poll         time.Duration
	timeout      time.Duration
	profile      string
	mgrProfile   string
	policyFloor  bool
}

func main() {
	var o options
	flag.IntVar(&o.jobs, "jobs", 1000, "IntunedJobs in the unlimited run")
	flag.IntVar(&o.limitJobs, "limit-jobs", 100, "IntunedJobs in the run with the real 20/min limit (0 skips it; 100 takes about 4.5 minutes)")
	flag.IntVar(&o.workers, "manager-workers", 64, "--intunedjob-workers of the manager")
	flag.IntVar(&o.applyWorkers, "apply-workers", 16, "concurrent creates when applying the objects (same for the floor)")
	flag.DurationVar(&o.poll, "poll", time.Minute, "spec.pollInterval of the benchmark jobs (longer than convergence takes, so converge calls are not polls)")
	flag.DurationVar(&o.steady, "steady", 75*time.Second, "steady-state window after convergence in which writes (Intuned and API server) are counted (at least one -poll)")
	flag.DurationVar(&o.timeout, "timeout", 15*time.Minute, "give up waiting for convergence after this long")
	flag.StringVar(&o.profile, "apiserver-cpuprofile", "", "write CPU profiles of kube-apiserver (10 s) during the operator run to this file and during the floor to <file without .prof>.floor.prof (go tool pprof)")
	flag.BoolVar(&o.policyFloor, "policy-floor", true, "also measure the floor with the admission policy installed, for reference (false saves its time at 10,000 jobs)")
	flag.StringVar(&o.mgrProfile, "manager-profile", "", "write the manager's CPU profile (the first 30 s of the operator run) to <prefix>.cpu.prof and its heap (after the steady state) to <prefix>.heap.prof (go tool pprof)")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "bench-operator:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	ctx := context.Background()
	fmt.Println("starting envtest ...")
	env, err := testenv.Start()
	if err != nil {
		return err
	}
	defer env.Stop()

	// The manager gets an admin kubeconfig; the benchmark's own client, like
	// the manager's, has no client-side rate limit.
	cfg := rest.CopyConfig(env.Config)
	cfg.QPS, cfg.Burst = -1, 0
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: env.Client.Scheme()})
	if err != nil {
		return err
	}
	user, err := env.Environment.AddUser(envtest.User{Name: "bench-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return err
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "bench-operator-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	kcPath := filepath.Join(tmp, "kubeconfig")
	if err := os.WriteFile(kcPath, kubeconfig, 0o600); err != nil {
		return err
	}
	fmt.Println("building cmd/manager ...")
	bins, err := proc.Build{Dir: tmp, Packages: []string{"./cmd/manager"}}.Run(ctx)
	if err != nil {
		return fmt.Errorf("build manager: %w", err)
	}
	bin := bins[0]

	// ---- run 1: rate limit off ----
	sim, err := startSim(intunedsim.Options{RateLimit: intunedsim.RateLimitOff, Seed: 1})
	if err != nil {
		return err
	}
	defer sim.close()

	// The floor is measured on a bare API server. The optional admission
	// policy (config/admission) sets the finalizer on create; the benchmark
	// measures the operator with it, installed after the floor, so its cost counts against
	// the operator. The floor is measured once more with it, for reference.
	// A short unmeasured round first, so the floor is not slowed by a cold
	// API server (that would flatter the operator).
	warm := o
	warm.jobs = max(1, o.jobs/5)
	if _, err := measureFloor(ctx, c, cfg, warm, "bench-warmup", plainFloor); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	floorProfile := ""
	if o.profile != "" {
		floorProfile = strings.TrimSuffix(o.profile, ".prof") + ".floor.prof"
	}
	stopFloorProfile := profileAPIServer(cfg, floorProfile)
	floor, err := measureFloor(ctx, c, cfg, o, "bench-floor", plainFloor)
	stopFloorProfile()
	if err != nil {
		return fmt.Errorf("floor: %w", err)
	}
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "bench-probe"}}); err != nil {
		return err
	}
	if err := testenv.InstallAdmissionPolicies(ctx, c, "bench-probe"); err != nil {
		return err
	}
	var floorPolicy time.Duration
	if o.policyFloor {
		if floorPolicy, err = measureFloor(ctx, c, cfg, o, "bench-floor-policy", plainFloor); err != nil {
			return fmt.Errorf("floor with admission policy: %w", err)
		}
	}

	ns := "bench-unlimited"
	if err := setupNamespace(ctx, c, ns, sim); err != nil {
		return err
	}
	mgr, err := startManager(bin, kcPath, tmp, o.workers, 0, o.mgrProfile != "")
	if err != nil {
		return err
	}
	defer mgr.stop()
	stopMgrProfile := func() {}
	if o.mgrProfile != "" {
		stopMgrProfile = fetchProfile(http.DefaultClient, "http://"+mgr.pprof+"/debug/pprof/profile?seconds=30", o.mgrProfile+".cpu.prof")
	}

	sim.srv.ResetCalls()
	w := watchReady(ctx, c, ns)
	defer w.cancel()
	stopProfile := profileAPIServer(cfg, o.profile)
	cpu0, req0 := cpuSnapshot(), apiRequests(cfg)
	start := time.Now()
	if err := applyJobs(ctx, c, ns, o.jobs, o.applyWorkers, o.poll); err != nil {
		return err
	}
	applied := time.Since(start)
	if err := w.wait(o.jobs, o.timeout); err != nil {
		return err
	}
	converge := time.Since(start)
	cpu1, req1 := cpuSnapshot(), apiRequests(cfg)
	cpuDiff("operator run", cpu0, cpu1)
	requestDiff("operator run", req0, req1, o.jobs)
	stopProfile()
	fmt.Printf("Intuned calls to converge: %v\n", sim.srv.Calls())
	convergeCalls := total(sim.srv.Calls())
	convergeWrites := sim.srv.WriteCalls()
	// The benchmark's own create of each object is not the operator's.
	jobWrites := writes(req0, req1, "intunedjobs") - float64(o.jobs)
	events := writes(req0, req1, "events")
	mgrCPU := cpu1["manager"] - cpu0["manager"]
	fmt.Printf("converged in %s (objects applied in %s)\n", converge.Round(time.Millisecond), applied.Round(time.Millisecond))
	if err := printEventReasons(ctx, c, ns); err != nil {
		return err
	}
	var converged intunedv1alpha1.IntunedJob
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: benchJob(ns, 0, o.poll).Name}, &converged); err != nil {
		return err
	}

	// Steady state: the same manager polls every job (-poll) and must
	// write nothing, to Intuned or to the API server.
	fmt.Printf("steady state for %s (polls every %s) ...\n", o.steady, o.poll)
	sim.srv.ResetCalls()
	before, err := jobsByName(ctx, c, ns)
	if err != nil {
		return err
	}
	req0 = apiRequests(cfg)
	time.Sleep(o.steady)
	req1 = apiRequests(cfg)
	if err := printStatusChanges(ctx, c, ns, before); err != nil {
		return err
	}
	steadyCalls := sim.srv.Calls()
	steadyWrites := sim.srv.WriteCalls()
	steadyAPIWrites := writes(req0, req1, "intunedjobs") + writes(req0, req1, "events")
	rss, err := procstat.PeakRSS(mgr.proc.Pid())
	if err != nil {
		return err
	}
	stopMgrProfile()
	if o.mgrProfile != "" {
		fetchProfile(http.DefaultClient, "http://"+mgr.pprof+"/debug/pprof/heap", o.mgrProfile+".heap.prof")()
	}
	mgr.stop()

	// Restart with every job existing, against Intuned's real limit (20
	// requests per minute per path, on the simulator and in the manager):
	// the new manager re-reads each job once and must neither storm
	// Intuned nor write. Done when every job was read (Get Job); all stay
	// Ready.
	sim.srv.SetRateLimit(20)
	sim.srv.ResetCalls()
	sim.count429.Store(0)
	fmt.Println("restarting the manager (rate limit 20/min per path) ...")
	req0 = apiRequests(cfg)
	start = time.Now()
	mgr, err = startManager(bin, kcPath, tmp, o.workers, 20, false)
	if err != nil {
		return err
	}
	defer mgr.stop()
	if err := waitCalls(sim.srv, "GET ", "/jobs/{jobId}", o.jobs, o.timeout); err != nil {
		return err
	}
	restart := time.Since(start)
	time.Sleep(2 * time.Second) // whatever a re-read still causes
	req1 = apiRequests(cfg)
	restartCalls := total(sim.srv.Calls())
	restart429 := sim.count429.Load()
	restartAPIWrites := writes(req0, req1, "intunedjobs") + writes(req0, req1, "events")
	readyAfter := w.n()
	if rss2, err := procstat.PeakRSS(mgr.proc.Pid()); err == nil && rss2 > rss {
		rss = rss2
	}
	mgr.stop()
	sim.srv.SetRateLimit(intunedsim.RateLimitOff)

	n := float64(o.jobs)
	fmt.Println()
	fmt.Printf("IntunedJob controller, %d jobs, rate limit off (manager: %d workers, child process)\n", o.jobs, o.workers)
	fmt.Printf("%-52s %14s %14s %8s %8s\n", "measure", "operator", "floor/target", "ratio", "ok")
	row := func(name string, got, ref float64, unit string, ok bool) {
		ratio := "-"
		if ref > 0 {
			ratio = fmt.Sprintf("%.2fx", got/ref)
		}
		fmt.Printf("%-52s %14s %14s %8s %8v\n", name, fmt.Sprintf("%.2f%s", got, unit), fmt.Sprintf("%.2f%s", ref, unit), ratio, ok)
	}
	row("time to all Ready vs create+status floor (<=1.5x)", converge.Seconds(), floor.Seconds(), "s", converge.Seconds() <= 1.5*floor.Seconds())
	if o.policyFloor {
		row("  same, floor with the finalizer policy", converge.Seconds(), floorPolicy.Seconds(), "s", converge.Seconds() <= 1.5*floorPolicy.Seconds())
	}
	row("  ms per job", 1000*converge.Seconds()/n, 1000*floor.Seconds()/n, "", true)
	row("manager CPU ms per job", 1000*mgrCPU/n, 0, "", true)
	// GetJob (404), CreateJob, and the read-back that puts nextRunTime and
	// Intuned's answer into the first status.
	row("Intuned calls per job to converge (<=3)", float64(convergeCalls)/n, 3, "", float64(convergeCalls)/n <= 3)
	row("Intuned writes per job to converge", float64(convergeWrites)/n, 1, "", convergeWrites == o.jobs)
	// The floor's writes are the object's create and one status write.
	// Allow 1% for reconciles that are retried (and write again).
	row("API writes per job on IntunedJobs (floor: 1 + create)", jobWrites/n, 1, "", jobWrites <= 1.01*n)
	row("Events per job (one per Intuned write)", events/n, 1, "", true)
	row(fmt.Sprintf("steady state, %s: Intuned writes", o.steady), float64(steadyWrites), 0, "", steadyWrites == 0)
	row(fmt.Sprintf("steady state, %s: API writes", o.steady), steadyAPIWrites, 0, "", steadyAPIWrites == 0)
	row("steady state: Intuned calls per job", float64(total(steadyCalls))/n, 0, "", true)
	row("restart: time until every job re-read", restart.Seconds(), 0, "s", true)
	row("restart: Intuned calls per job (<=1)", float64(restartCalls)/n, 1, "", float64(restartCalls)/n <= 1)
	row("restart: 429 answers", float64(restart429), 0, "", restart429 == 0)
	row("restart: API writes", restartAPIWrites, 0, "", restartAPIWrites == 0)
	row("restart: jobs Ready", float64(readyAfter), n, "", readyAfter == o.jobs)
	row("manager peak RSS, MiB (<=300)", float64(rss)/(1<<20), 300, "", rss <= 300<<20)
	fmt.Printf("steady-state calls: %v\n", steadyCalls)

	// The floor of the operator's own requests, on an API server without
	// the operator run's objects (as the other floors had it).
	if err := deleteJobs(ctx, c, ns, o.applyWorkers); err != nil {
		return err
	}
	fmt.Println()
	floorRequests, err := measureFloor(ctx, c, cfg, o, "bench-floor-requests", requestsFloor(converged.Status))
	if err != nil {
		return fmt.Errorf("floor of the operator's requests: %w", err)
	}

	row("time to all Ready vs the floor of the operator's own API requests", converge.Seconds(), floorRequests.Seconds(), "s", converge.Seconds() <= 1.5*floorRequests.Seconds())

	// ---- run 2: Intuned's real limit ----
	if o.limitJobs <= 0 {
		return nil
	}
	limited, err := startSim(intunedsim.Options{Seed: 2}) // default: 20/min per path
	if err != nil {
		return err
	}
	defer limited.close()
	ns2 := "bench-limited"
	if err := setupNamespace(ctx, c, ns2, limited); err != nil {
		return err
	}
	mgr2, err := startManager(bin, kcPath, tmp, o.workers, 20, false)
	if err != nil {
		return err
	}
	defer mgr2.stop()
	start = time.Now()
	w2 := watchReady(ctx, c, ns2)
	defer w2.cancel()
	if err := applyJobs(ctx, c, ns2, o.limitJobs, o.applyWorkers, o.poll); err != nil {
		return err
	}
	if err := w2.wait(o.limitJobs, o.timeout); err != nil {
		return err
	}
	took := time.Since(start)
	mgr2.stop()
	// Creates share one path: batches of 20, one window (60 s) apart.
	batches := (o.limitJobs + 19) / 20
	limitFloor := time.Duration(batches-1) * time.Minute
	fmt.Println()
	fmt.Printf("IntunedJob controller, %d jobs, Intuned's limit of 20 requests/min per path (simulator and pacer on)\n", o.limitJobs)
	fmt.Printf("time to all Ready: %s; rate-limit floor (ceil(%d/20)-1 windows of 60 s on POST .../jobs): %s; ratio %.3f (target <= 1.10)\n",
		took.Round(time.Millisecond), o.limitJobs, limitFloor, took.Seconds()/limitFloor.Seconds())
	fmt.Printf("429 answers: %d (target 0); Intuned calls: %d\n", limited.count429.Load(), total(limited.srv.Calls()))
	return nil
}

// simServer is a simulator on a loopback port that counts 429 answers.
type simServer struct {
	srv      *intunedsim.Server
	http     *http.Server
	base     string
	count429 atomic.Int64
}

func startSim(o intunedsim.Options) (*simServer, error) {
	srv, err := intunedsim.New(o)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &simServer{srv: srv, base: "http://" + ln.Addr().String() + intunedsim.APIPrefix}
	s.http = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w}
		srv.ServeHTTP(rec, r)
		if rec.status == http.StatusTooManyRequests {
			s.count429.Add(1)
		}
	})}
	go func() { _ = s.http.Serve(ln) }()
	return s, nil
}

func (s *simServer) close() {
	_ = s.http.Close()
	_ = s.srv.Close()
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

// setupNamespace creates the namespace and the credentials Secret.
func setupNamespace(ctx context.Context, c client.Client, ns string, sim *simServer) error {
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		return err
	}
	return c.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "intuned-creds"},
		StringData: map[string]string{
			intunedv1alpha1.CredentialsKeyWorkspaceID: intunedsim.DefaultWorkspaceID,
			intunedv1alpha1.CredentialsKeyAPIKey:      intunedsim.DefaultAPIKey,
			intunedv1alpha1.CredentialsKeyBaseURL:     sim.base,
		},
	})
}

func benchJob(ns string, i int, poll time.Duration) *intunedv1alpha1.IntunedJob {
	return &intunedv1alpha1.IntunedJob{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("bench-job-%05d", i)},
		Spec: intunedv1alpha1.IntunedJobSpec{
			Project:        "bench-project",
			CredentialsRef: &intunedv1alpha1.LocalObjectReference{Name: "intuned-creds"},
			Payload: []intunedv1alpha1.JobPayload{{
				APIName:    "list",
				Parameters: &apiextensionsv1.JSON{Raw: []byte(`{"page":` + strconv.Itoa(i) + `}`)},
			}},
			// Intervals fire at multiples of `every` since the Unix epoch
			// (Temporal's semantics, which the simulator follows): "1h" fires
			// every job at the top of each hour, and a steady state across it
			// counts the runs' status writes. 7d fires on Thursdays 00:00 UTC.
			Schedule: &intunedv1alpha1.JobSchedule{Intervals: []intunedv1alpha1.ScheduleInterval{{Every: "7d"}}},
			Sink: &intunedv1alpha1.JobSink{Webhook: &intunedv1alpha1.WebhookSink{
				URL: "https://hooks.example.com/intuned/" + strconv.Itoa(i),
			}},
			PollInterval: &metav1.Duration{Duration: poll},
		},
	}
}

// parallel runs fn(i) for i in [0,n) on workers goroutines.
func parallel(n, workers int, fn func(i int) error) error {
	var (
		next atomic.Int64
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func applyJobs(ctx context.Context, c client.Client, ns string, n, workers int, poll time.Duration) error {
	return parallel(n, workers, func(i int) error { return c.Create(ctx, benchJob(ns, i, poll)) })
}

// floorWrites is what a floor writes per object beside its create: the
// status write, and optionally the Event the operator posts with it; and
// how many watches of the namespace are open meanwhile (each watch makes
// the API server encode every change once more).
type floorWrites struct {
	status  func(j *intunedv1alpha1.IntunedJob)
	event   bool
	watches int
}

// plainFloor is the floor of the create and one small status write, with
// the benchmark's own Ready watch open as it is during the operator run.
var plainFloor = floorWrites{
	status: func(j *intunedv1alpha1.IntunedJob) {
		j.Status.JobID = j.Name
		meta.SetStatusCondition(&j.Status.Conditions, metav1.Condition{Type: intunedv1alpha1.ConditionSynced,
			Status: metav1.ConditionTrue, Reason: intunedv1alpha1.ReasonSynced, Message: "floor"})
	},
	watches: 1,
}

// requestsFloor is the floor of the operator's own API requests, made by a
// plain client: the create, one status write of the status the operator
// wrote (template, from a converged job), one Event, and two watches open
// (the benchmark's and the manager's informer). What the operator run
// needs beyond it is the operator's own work.
func requestsFloor(template intunedv1alpha1.IntunedJobStatus) floorWrites {
	return floorWrites{
		status: func(j *intunedv1alpha1.IntunedJob) {
			j.Status = *template.DeepCopy()
			j.Status.JobID = j.Name
		},
		event:   true,
		watches: 2,
	}
}

// measureFloor creates the same objects plus the writes of f each with a
// plain client, before any manager runs, then removes them.
func measureFloor(ctx context.Context, c client.WithWatch, cfg *rest.Config, o options, ns string, f floorWrites) (time.Duration, error) {
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		return 0, err
	}
	for range f.watches {
		w := watchReady(ctx, c, ns)
		defer w.cancel()
	}
	cpu0, req0 := cpuSnapshot(), apiRequests(cfg)
	start := time.Now()
	err := parallel(o.jobs, o.applyWorkers, func(i int) error {
		j := benchJob(ns, i, o.poll)
		if err := c.Create(ctx, j); err != nil {
			return err
		}
		patch := client.MergeFrom(j.DeepCopy())
		f.status(j)
		if err := c.Status().Patch(ctx, j, patch); err != nil {
			return err
		}
		if !f.event {
			return nil
		}
		return c.Create(ctx, createdEvent(j))
	})
	took := time.Since(start)
	if err != nil {
		return 0, err
	}
	cpuDiff(ns, cpu0, cpuSnapshot())
	requestDiff(ns, req0, apiRequests(cfg), o.jobs)
	fmt.Printf("%s: %d creates + %d status writes in %s\n", ns, o.jobs, o.jobs, took.Round(time.Millisecond))
	// Gone before the manager starts: the admission policy gave them the
	// finalizer, and finalizing them must not count against the operator.
	return took, deleteJobs(ctx, c, ns, o.applyWorkers)
}

// deleteJobs deletes a namespace's IntunedJobs and strips their finalizers
// (no manager finalizes them). A collection of 10,000 can outlast the API
// server's request timeout (the stream is reset); what was not deleted yet
// is deleted again.
func deleteJobs(ctx context.Context, c client.Client, ns string, workers int) error {
	for range 10 {
		if err := c.DeleteAllOf(ctx, &intunedv1alpha1.IntunedJob{}, client.InNamespace(ns)); err != nil {
			fmt.Printf("%s: delete the objects again (%v)\n", ns, err)
		}
		if err := stripFinalizers(ctx, c, ns, workers); err != nil {
			return err
		}
		var left intunedv1alpha1.IntunedJobList
		if err := c.List(ctx, &left, client.InNamespace(ns), client.Limit(1)); err != nil {
			return err
		}
		if len(left.Items) == 0 {
			return nil
		}
	}
	return fmt.Errorf("%s: IntunedJobs left after 10 rounds of deletes", ns)
}

func jobsByName(ctx context.Context, c client.Client, ns string) (map[string]intunedv1alpha1.IntunedJob, error) {
	var list intunedv1alpha1.IntunedJobList
	if err := c.List(ctx, &list, client.InNamespace(ns)); err != nil {
		return nil, err
	}
	out := make(map[string]intunedv1alpha1.IntunedJob, len(list.Items))
	for _, j := range list.Items {
		out[j.Name] = j
	}
	return out, nil
}

// printStatusChanges prints, for up to 10 jobs written since before, what
// their status was and is (a steady state must write nothing: when it
// does, this says which field moved).
func printStatusChanges(ctx context.Context, c client.Client, ns string, before map[string]intunedv1alpha1.IntunedJob) error {
	after, err := jobsByName(ctx, c, ns)
	if err != nil {
		return err
	}
	changed := 0
	for name, j := range after {
		old, ok := before[name]
		if ok && old.ResourceVersion == j.ResourceVersion {
			continue
		}
		changed++
		if changed <= 10 {
			was, _ := json.Marshal(old.Status)
			is, _ := json.Marshal(j.Status)
			fmt.Printf("written in the steady state: %s\n  status was %s\n  status is  %s\n", name, was, is)
		}
	}
	if changed > 0 {
		fmt.Printf("%d jobs written in the steady state\n", changed)
	}
	return nil
}

// printEventReasons prints how many Events of each reason the namespace
// got: one Created per job is by design; anything else is worth a look.
func printEventReasons(ctx context.Context, c client.Client, ns string) error {
	var events eventsv1.EventList
	if err := c.List(ctx, &events, client.InNamespace(ns)); err != nil {
		return err
	}
	reasons := map[string]int{}
	var series []string
	for _, e := range events.Items {
		reasons[e.Type+"/"+e.Reason]++
		if e.Series != nil {
			series = append(series, fmt.Sprintf("%s %s ×%d: %s", e.Regarding.Name, e.Reason, e.Series.Count, e.Note))
		}
	}
	fmt.Printf("Events by reason: %v\n", reasons)
	// A series is an Event the manager recorded again within 6 minutes; the
	// events library writes its final count 6 minutes later, into the
	// steady state.
	fmt.Printf("Events recorded more than once: %d\n", len(series))
	for _, s := range series[:min(len(series), 5)] {
		fmt.Printf("  %s\n", s)
	}
	return nil
}

// createdEvent is an Event like the one the manager's recorder posts when
// it created a Job on Intuned (events.k8s.io/v1).
func createdEvent(j *intunedv1alpha1.IntunedJob) *eventsv1.Event {
	now := metav1.NowMicro()
	return &eventsv1.Event{
		ObjectMeta:          metav1.ObjectMeta{Namespace: j.Namespace, Name: fmt.Sprintf("%s.%x", j.Name, now.UnixNano())},
		EventTime:           now,
		ReportingController: "intunedjob-controller",
		ReportingInstance:   "bench-floor",
		Action:              "Create",
		Reason:              "Created",
		Regarding:           corev1.ObjectReference{APIVersion: intunedv1alpha1.GroupVersion.String(), Kind: "IntunedJob", Namespace: j.Namespace, Name: j.Name, UID: j.UID},
		Note:                "created Job " + j.Name + " on Intuned",
		Type:                corev1.EventTypeNormal,
	}
}

func stripFinalizers(ctx context.Context, c client.Client, ns string, workers int) error {
	var list intunedv1alpha1.IntunedJobList
	if err := c.List(ctx, &list, client.InNamespace(ns)); err != nil {
		return err
	}
	return parallel(len(list.Items), workers, func(i int) error {
		j := &list.Items[i]
		patch := client.MergeFrom(j.DeepCopy())
		j.Finalizers = nil
		return client.IgnoreNotFound(c.Patch(ctx, j, patch))
	})
}

// readyWatcher counts the jobs of a namespace that report Ready=True, from
// a watch: the API server sends each change once, where polling lists of
// N objects would cost it far more than the controller under test.
type readyWatcher struct {
	mu     sync.Mutex
	synced map[string]bool
	count  int
	cancel context.CancelFunc
}

func watchReady(ctx context.Context, c client.WithWatch, ns string) *readyWatcher {
	ctx, cancel := context.WithCancel(ctx)
	w := &readyWatcher{synced: map[string]bool{}, cancel: cancel}
	go func() {
		for ctx.Err() == nil {
			wi, err := c.Watch(ctx, &intunedv1alpha1.IntunedJobList{}, client.InNamespace(ns))
			if err != nil {
				time.Sleep(time.Second)
				continue
			}
			for ev := range wi.ResultChan() {
				j, ok := ev.Object.(*intunedv1alpha1.IntunedJob)
				if !ok {
					continue
				}
				on := ev.Type != watch.Deleted && meta.IsStatusConditionTrue(j.Status.Conditions, intunedv1alpha1.ConditionReady)
				w.mu.Lock()
				if on != w.synced[j.Name] {
					w.synced[j.Name] = on
					if on {
						w.count++
					} else {
						w.count--
					}
				}
				w.mu.Unlock()
			}
			wi.Stop()
		}
	}()
	return w
}

func (w *readyWatcher) n() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.count
}

// wait blocks until n jobs are Ready.
func (w *readyWatcher) wait(n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	last := time.Now()
	for {
		got := w.n()
		if got >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d jobs Ready after %s", got, n, timeout)
		}
		if time.Since(last) > 15*time.Second {
			fmt.Printf("  ... %d of %d Ready\n", got, n)
			last = time.Now()
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// manager is the cmd/manager child process.
type manager struct {
	proc  *proc.Process
	once  sync.Once
	pprof string // host:port of /debug/pprof, when asked for
}

func startManager(bin, kubeconfig, dir string, workers, rateLimit int, pprof bool) (*manager, error) {
	probe, err := proc.FreeAddr()
	if err != nil {
		return nil, err
	}
	m := &manager{}
	if pprof {
		if m.pprof, err = proc.FreeAddr(); err != nil {
			return nil, err
		}
	}
	// The log stays after the run (in the system temp dir) for inspection,
	// under a name of its own: another run must not overwrite it.
	f, err := os.CreateTemp("", fmt.Sprintf("bench-operator-manager-ratelimit%d-*.log", rateLimit))
	if err != nil {
		return nil, err
	}
	logFile := f.Name()
	_ = f.Close()
	fmt.Printf("manager (rate limit %d/min) logs to %s\n", rateLimit, logFile)
	p, err := proc.Start(proc.Spec{Name: "manager", Path: bin, LogFile: logFile, Args: []string{
		"--kubeconfig", kubeconfig,
		"--leader-elect=false",
		"--metrics-bind-address=0",
		"--health-probe-bind-address", probe,
		"--intunedjob-workers", strconv.Itoa(workers),
		"--intuned-rate-limit", strconv.Itoa(rateLimit),
		"--pprof-bind-address", m.pprof,
	}})
	if err != nil {
		return nil, err
	}
	m.proc = p
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := proc.WaitHTTPOK(ctx, "http://"+probe+"/readyz", p.Done()); err != nil {
		m.stop()
		return nil, fmt.Errorf("manager not ready: %w; log:\n%s", err, p.LogTail(8000))
	}
	return m, nil
}

// stop sends SIGTERM and waits (SIGKILL after 20 s).
func (m *manager) stop() {
	m.once.Do(func() { _ = m.proc.Stop(20 * time.Second) })
}

// cpuSnapshot is CPU seconds used so far by this process (client and
// simulator) and each direct child (etcd, kube-apiserver, manager), by
// command name.
func cpuSnapshot() map[string]float64 {
	out := map[string]float64{"bench+sim": procstat.CPUTime(os.Getpid()).Seconds()}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		s := string(b)
		open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || closing < 0 {
			continue
		}
		f := strings.Fields(s[closing+2:])
		if len(f) > 2 && f[1] == strconv.Itoa(os.Getpid()) {
			out[s[open+1:closing]] += procstat.CPUTime(pid).Seconds()
		}
	}
	return out
}

// cpuDiff prints CPU seconds per process between two snapshots.
func cpuDiff(label string, a, b map[string]float64) {
	var parts []string
	for k, v := range b {
		if d := v - a[k]; d >= 0.05 {
			parts = append(parts, fmt.Sprintf("%s %.1fs", k, d))
		}
	}
	fmt.Printf("CPU during %s: %s\n", label, strings.Join(parts, ", "))
}

func total(calls map[string]int) int {
	n := 0
	for _, v := range calls {
		n += v
	}
	return n
}

// profileAPIServer starts a CPU profile of kube-apiserver (its
// /debug/pprof, 10 s) into file; the returned func waits for it. No file:
// nothing.
func profileAPIServer(cfg *rest.Config, file string) func() {
	if file == "" {
		return func() {}
	}
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "apiserver profile:", err)
		return func() {}
	}
	return fetchProfile(hc, strings.TrimSuffix(cfg.Host, "/")+"/debug/pprof/profile?seconds=10", file)
}

// fetchProfile starts reading a pprof endpoint into file; the returned
// func waits until it is written. Failures are printed, not fatal.
func fetchProfile(hc *http.Client, url, file string) func() {
	done := make(chan struct{})
	go func() {
		defer close(done)
		res, err := hc.Get(url)
		if err != nil {
			fmt.Fprintln(os.Stderr, "profile:", err)
			return
		}
		defer res.Body.Close()
		out, err := os.Create(file)
		if err != nil {
			fmt.Fprintln(os.Stderr, "profile:", err)
			return
		}
		defer out.Close()
		if _, err := io.Copy(out, res.Body); err != nil {
			fmt.Fprintln(os.Stderr, "profile:", err)
		}
	}()
	return func() { <-done }
}

// apiRequests reads kube-apiserver's apiserver_request_total and sums it by
// "VERB resource[/subresource]" (empty on error), to show which requests a
// phase made.
func apiRequests(cfg *rest.Config) map[string]float64 {
	out := map[string]float64{}
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return out
	}
	res, err := hc.Get(strings.TrimSuffix(cfg.Host, "/") + "/metrics")
	if err != nil {
		return out
	}
	defer res.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(res.Body)
	if err != nil {
		return out
	}
	for _, m := range families["apiserver_request_total"].GetMetric() {
		l := map[string]string{}
		for _, lp := range m.GetLabel() {
			l[lp.GetName()] = lp.GetValue()
		}
		key := l["verb"] + " " + l["resource"]
		if l["subresource"] != "" {
			key += "/" + l["subresource"]
		}
		out[key] += m.GetCounter().GetValue()
	}
	return out
}

// requestDiff prints the API requests per job made between two
// apiRequests snapshots, writes first.
func requestDiff(label string, a, b map[string]float64, jobs int) {
	var writes, reads []string
	for k, v := range b {
		d := v - a[k]
		if d <= 0 {
			continue
		}
		part := fmt.Sprintf("%s %.2f", k, d/float64(jobs))
		switch verb, _, _ := strings.Cut(k, " "); verb {
		case "GET", "LIST", "WATCH":
			reads = append(reads, part)
		default:
			writes = append(writes, part)
		}
	}
	slices.Sort(writes)
	slices.Sort(reads)
	fmt.Printf("API requests per job during %s: writes: %s; reads: %s\n", label, strings.Join(writes, ", "), strings.Join(reads, ", "))
}

// writes sums the write requests (not GET, LIST, WATCH) on resource and its
// subresources between two apiRequests snapshots.
func writes(a, b map[string]float64, resource string) float64 {
	sum := 0.0
	for k, v := range b {
		verb, res, _ := strings.Cut(k, " ")
		if verb == "GET" || verb == "LIST" || verb == "WATCH" || (res != resource && !strings.HasPrefix(res, resource+"/")) {
			continue
		}
		sum += v - a[k]
	}
	return sum
}

// waitCalls blocks until the simulator counted n calls of the route with
// that method prefix and path suffix.
func waitCalls(srv *intunedsim.Server, method, suffix string, n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		got := 0
		for k, v := range srv.Calls() {
			if strings.HasPrefix(k, method) && strings.HasSuffix(k, suffix) {
				got += v
			}
		}
		if got >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d %s...%s calls after %s", got, n, method, suffix, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
