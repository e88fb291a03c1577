// Command demo runs the Intuned webhook quickstart end to end on this
// machine (`make demo`): a local kube-apiserver and etcd with the operator's
// CRDs and RBAC, intuned-sim standing in for Intuned, the operator as its own
// process, and the receiver Pods it deploys run by a small local kubelet
// (see internal/testutil/emucluster). It applies config/samples, triggers the job,
// prints progress until every delivery is stored, then prints the commands
// to look at the data, and stays up until Ctrl-C.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/testutil/emucluster"
	"github.com/intuned-operator/intuned-operator/internal/testutil/flow"
	"github.com/intuned-operator/intuned-operator/internal/testutil/poll"
	"github.com/intuned-operator/intuned-operator/internal/testutil/proc"
	"github.com/intuned-operator/intuned-operator/internal/testutil/testenv"
)

type options struct {
	exitWhenDone bool
	dir          string
	timeScale    float64
	products     int
	runDuration  time.Duration
	verbose      bool
	timeout      time.Duration
}

func main() {
	var o options
	flag.BoolVar(&o.exitWhenDone, "exit-when-done", false, "exit (and stop everything) once the JobRun's data is stored, instead of staying up until Ctrl-C")
	flag.StringVar(&o.dir, "dir", "", "working directory for kubeconfig, logs and receiver data (default: a new temporary directory, removed on exit)")
	flag.Float64Var(&o.timeScale, "time-scale", 10, "intuned-sim --time-scale: simulated seconds per real second (Run durations, schedules, retries)")
	flag.IntVar(&o.products, "products", 5, "products the simulated ecommerce-scraper-quickstart `list` API returns (one `details` Run each)")
	flag.DurationVar(&o.runDuration, "run-duration", 10*time.Second, "simulated duration of each API Run (intuned-sim --run-duration; real time = this / -time-scale)")
	flag.BoolVar(&o.verbose, "v", false, "also print the operator's log")
	flag.DurationVar(&o.timeout, "timeout", 5*time.Minute, "give up if the flow has not finished by then")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

var t0 = time.Now()

func say(format string, args ...any) {
	fmt.Printf("[%6.1fs] %s\n", time.Since(t0).Seconds(), fmt.Sprintf(format, args...))
}

func run(ctx context.Context, o options) error {
	ctrllog.SetLogger(logr.Discard()) // envtest logs through controller-runtime; keep the output to ours
	if _, err := testenv.AssetsDir(); err != nil {
		say("envtest binaries missing: building them with hack/setup-envtest.sh (first time only, a few minutes)")
		dir, err := setupEnvtest(ctx)
		if err != nil {
			return err
		}
		os.Setenv("KUBEBUILDER_ASSETS", dir)
	}
	keepDir := o.dir != ""
	if o.dir == "" {
		d, err := os.MkdirTemp("", "intuned-demo-")
		if err != nil {
			return err
		}
		o.dir = d
	} else if err := os.MkdirAll(o.dir, 0o755); err != nil {
		return err
	}
	o.dir, _ = filepath.Abs(o.dir)
	if !keepDir {
		defer os.RemoveAll(o.dir)
	}

	say("building manager, receiver and intuned-sim")
	bins, err := emucluster.BuildBinaries(ctx, filepath.Join(o.dir, "bin"))
	if err != nil {
		return err
	}
	hopts := emucluster.Options{
		Dir:       o.dir,
		Binaries:  &bins,
		TimeScale: o.timeScale,
		SimArgs:   []string{"--products", strconv.Itoa(o.products), "--run-duration", o.runDuration.String()},
		Logf: func(format string, args ...any) {
			msg := fmt.Sprintf(format, args...)
			if o.verbose || !strings.HasPrefix(msg, "kubelet:") || strings.Contains(msg, "started receiver") || strings.Contains(msg, "cannot run") || strings.Contains(msg, "exited") {
				say("%s", msg)
			}
		},
	}
	if o.verbose {
		hopts.ProcessOutput = os.Stdout
	}
	say("starting kube-apiserver, etcd, intuned-sim and the operator")
	h, err := emucluster.Start(ctx, hopts)
	if err != nil {
		return err
	}
	defer func() {
		say("stopping every process")
		h.Close()
		if keepDir {
			say("kept %s", o.dir)
		}
	}()

	flowStart := time.Now()
	if err := quickstart(ctx, h, o); err != nil {
		if f := h.Kubelet.Failures(); len(f) > 0 {
			fmt.Fprintf(os.Stderr, "receiver Pod failures:\n%s\n", strings.Join(f, "\n"))
		}
		fmt.Fprintf(os.Stderr, "operator log: %s\n", h.ManagerLog())
		return err
	}
	say("quickstart flow took %s (apply → JobRun finished in the IntunedJob status, every delivery stored)", time.Since(flowStart).Round(100*time.Millisecond))
	if o.exitWhenDone {
		return nil
	}
	say("everything keeps running; press Ctrl-C to stop and clean up")
	<-ctx.Done()
	return nil
}

// quickstart applies config/samples, triggers the job and follows it.
func quickstart(ctx context.Context, h *emucluster.Cluster, o options) error {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	const ns = "default"
	s, err := flow.LoadSamples(ctx, h.Kubectl)
	if err != nil {
		return err
	}
	port, err := proc.FreePort()
	if err != nil {
		return err
	}
	ext := fmt.Sprintf("http://127.0.0.1:%d/webhooks/intuned", port)
	s.UseSim(ns, h.Sim)
	s.UseExternalURL(ext)
	if err := h.CreateCredentials(ctx, ns, s.Credentials.Name); err != nil {
		return err
	}
	s.Credentials = nil
	for _, obj := range []client.Object{s.Receiver, s.Job} {
		if err := h.Client.Create(ctx, obj); err != nil {
			return fmt.Errorf("apply %s: %w", obj.GetName(), err)
		}
	}
	whrName, jobName := s.Receiver.Name, s.Job.Name
	say("applied config/samples into namespace %q: Secret intuned-credentials (→ intuned-sim), WebhookReceiver %s (externalURL %s instead of the sample's Ingress), IntunedJob %s (project %s)",
		ns, whrName, ext, jobName, s.Job.Spec.Project)

	// Receiver Ready.
	var whr intunedv1alpha1.WebhookReceiver
	err = poll.Eventually(ctx, 200*time.Millisecond, "WebhookReceiver Ready", func(ctx context.Context) (bool, error) {
		if err := h.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: whrName}, &whr); err != nil {
			return false, err
		}
		return meta.IsStatusConditionTrue(whr.Status.Conditions, intunedv1alpha1.ConditionReady), nil
	})
	if err != nil {
		return err
	}
	say("WebhookReceiver %s Ready: url %s, token in Secret %s", whrName, whr.Status.URL, whr.Status.TokenSecretName)

	// Job synced to Intuned.
	var ij intunedv1alpha1.IntunedJob
	err = poll.Eventually(ctx, 200*time.Millisecond, "IntunedJob Synced", func(ctx context.Context) (bool, error) {
		if err := h.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: jobName}, &ij); err != nil {
			return false, err
		}
		return meta.IsStatusConditionTrue(ij.Status.Conditions, intunedv1alpha1.ConditionSynced), nil
	})
	if err != nil {
		return err
	}
	say("synced: Job %s exists on Intuned (intuned-sim) with its webhook sink → %s", ij.EffectiveJobID(), sinkURL(&ij))

	trigger := strconv.FormatInt(time.Now().Unix(), 10)
	if err := flow.Trigger(ctx, h.Client, ns, jobName, trigger); err != nil {
		return err
	}
	say("triggered: kubectl annotate ij %s %s=%s --overwrite", jobName, flow.AnnotationTrigger, trigger)

	_, readToken, err := flow.ReceiverTokens(ctx, h.Client, ns, whrName)
	if err != nil {
		return err
	}
	rc := flow.ReceiverClient{BaseURL: strings.TrimSuffix(ext, "/webhooks/intuned"), ReadToken: readToken}
	jobID := ij.EffectiveJobID()

	var jobRun, finished string
	lastN, lastTotal := -1, -1
	var rep flow.DeliveryReport
	err = poll.Eventually(ctx, 200*time.Millisecond, "JobRun finished and every delivery stored", func(ctx context.Context) (bool, error) {
		if err := h.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: jobName}, &ij); err != nil {
			return false, err
		}
		if jobRun == "" {
			if lr := ij.Status.LastJobRun; lr != nil && ij.Status.LastHandledTrigger == trigger {
				jobRun = lr.ID
			} else if ds, _ := h.Sim.Deliveries(ctx, jobID); len(ds) > 0 {
				jobRun = ds[0].JobRunID
			}
			if jobRun != "" {
				say("JobRun %s started", jobRun)
			}
		}
		if jobRun == "" {
			return false, nil
		}
		r, err := flow.CompareDeliveries(ctx, h.Sim, rc, jobID, jobRun)
		if err != nil {
			return false, err
		}
		rep = r
		if r.Sent > 0 && (r.Stored != lastN || r.Sent != lastTotal) {
			if r.Attempts > r.Sent {
				say("deliveries received %d/%d (%d retried attempts so far)", r.Stored, r.Sent, r.Attempts-r.Sent)
			} else {
				say("deliveries received %d/%d", r.Stored, r.Sent)
			}
			lastN, lastTotal = r.Stored, r.Sent
		}
		if lr := ij.Status.LastJobRun; finished == "" && lr != nil && lr.ID == jobRun && flow.JobRunFinished(lr.Status) {
			finished = lr.Status
			say("JobRun %s finished: %s (%s payloads, %s successful, %s failed)", jobRun, lr.Status, num(lr.Payloads), num(lr.Successful), num(lr.Failed))
		}
		return finished != "" && r.Pending == 0 && r.Stored == r.Sent, nil
	})
	if err != nil {
		return err
	}
	if !rep.OK() {
		return fmt.Errorf("deliveries do not match the simulator's log: %s", rep)
	}
	say("every delivery is stored exactly once, byte for byte as Intuned sent it (%d deliveries, %d HTTP attempts)", rep.Stored, rep.Attempts)
	printWhere(h, ns, whrName, whr.Status.TokenSecretName, jobName, jobID, rc)
	return nil
}

func sinkURL(ij *intunedv1alpha1.IntunedJob) string {
	if ij.Status.Sink != nil {
		return ij.Status.Sink.URL
	}
	return "(status.sink not set)"
}

func num(p *int64) string {
	if p == nil {
		return "?"
	}
	return strconv.FormatInt(*p, 10)
}

func printWhere(h *emucluster.Cluster, ns, whr, tokenSecret, job, jobID string, rc flow.ReceiverClient) {
	reps := h.Kubelet.ReceiverReplicas(ns, whr)
	kc := "kubectl --kubeconfig " + h.Kubeconfig
	if _, err := exec.LookPath("kubectl"); err != nil {
		kc = h.Kubectl + " --kubeconfig " + h.Kubeconfig
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "\nWhere the data is\n")
	for _, r := range reps {
		fmt.Fprintf(&b, "  receiver Pod %s/%s listens on 127.0.0.1:%d (log %s)\n", ns, r.Pod, r.HostPort, r.LogFile)
		for _, d := range r.DataDirs {
			fmt.Fprintf(&b, "  its volume: %s\n", d)
		}
	}
	fmt.Fprintf(&b, "\nLook at it\n")
	fmt.Fprintf(&b, "  %s get intunedjobs,webhookreceivers -o wide\n", kc)
	fmt.Fprintf(&b, "  %s get ij %s -o jsonpath='{.status.lastJobRun}'; echo\n", kc, job)
	fmt.Fprintf(&b, "  %s get ij %s -o jsonpath='{.status.deliveries}'; echo   # did every result arrive? (docs/data-completeness.md)\n", kc, job)
	fmt.Fprintf(&b, "  %s get statefulsets,secrets,services -l app.kubernetes.io/instance=%s\n", kc, whr)
	fmt.Fprintf(&b, "  READ_TOKEN=$(%s get secret %s -o jsonpath='{.data.read-token}' | base64 -d)\n", kc, tokenSecret)
	fmt.Fprintf(&b, "  curl -s -H \"Authorization: Bearer $READ_TOKEN\" '%s/v1/deliveries?job=%s'   # NDJSON, one line per Run\n", rc.BaseURL, jobID)
	fmt.Fprintf(&b, "  curl -s -H \"Authorization: Bearer $READ_TOKEN\" '%s/v1/deliveries/<runId>'     # one body, byte for byte\n", rc.BaseURL)
	fmt.Fprintf(&b, "  curl -s -H \"Authorization: Bearer $READ_TOKEN\" '%s/v1/jobruns'     # what is stored per JobRun: counts by API and status, conflicts, quarantined\n", rc.BaseURL)
	fmt.Fprintf(&b, "  curl -s %s/_sim/deliveries?jobId=%s   # what intuned-sim sent\n", h.Sim.URL, jobID)
	fmt.Fprintf(&b, "  %s annotate ij %s %s=\"$(date +%%s)\" --overwrite   # run it again\n", kc, job, flow.AnnotationTrigger)
	fmt.Fprintf(&b, "\nLogs: %s\n", filepath.Join(h.Dir, "logs"))
	fmt.Print(b.String())
}

// setupEnvtest runs hack/setup-envtest.sh, which prints the assets directory.
func setupEnvtest(ctx context.Context) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(proc.RepoRoot(), "hack", "setup-envtest.sh"))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("hack/setup-envtest.sh: %w", err)
	}
	dir := strings.TrimSpace(string(out))
	if dir == "" {
		return "", errors.New("hack/setup-envtest.sh printed no directory")
	}
	return dir, nil
}
