// Command manager runs the intuned-operator: the IntunedJob controller (keeps
// Jobs on Intuned equal to their Kubernetes spec) and the WebhookReceiver
// controller (deploys in-cluster receivers for Intuned's webhook sink).
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	// Client auth plugins (OIDC, exec, ...) for running outside a cluster.
	_ "k8s.io/client-go/plugin/pkg/client/auth"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	intunedv1alpha1 "github.com/intuned-operator/intuned-operator/api/v1alpha1"
	"github.com/intuned-operator/intuned-operator/internal/controller/cachepolicy"
	"github.com/intuned-operator/intuned-operator/internal/controller/guard"
	"github.com/intuned-operator/intuned-operator/internal/controller/index"
	"github.com/intuned-operator/intuned-operator/internal/controller/intunedjob"
	"github.com/intuned-operator/intuned-operator/internal/controller/sharding"
	"github.com/intuned-operator/intuned-operator/internal/controller/webhookreceiver"
	"github.com/intuned-operator/intuned-operator/internal/intuned"
	"github.com/intuned-operator/intuned-operator/internal/ownpod"
	"github.com/intuned-operator/intuned-operator/internal/resources"
)

// leaderElectionID names the Lease that elects the active manager replica
// (of the default shard; a named shard prefixes its name: see
// sharding.Shard.LeaderElectionID).
const leaderElectionID = "intuned-operator.intuned.io"

// options are the command-line flags.
type options struct {
	metricsAddr          string
	metricsSecure        bool
	metricsCertPath      string
	metricsCertName      string
	metricsCertKey       string
	enableHTTP2          bool
	probeAddr            string
	leaderElect          bool
	defaultCredentials   string
	defaultCredsNS       []string
	receiverImage        string
	tokenPropagation     time.Duration
	deliveryRetryWindow  time.Duration
	scheduleGrace        time.Duration
	previousTokenGrace   time.Duration
	leaderElectNamespace string
	intunedRateLimit     int
	intunedJobWorkers    int
	watchNamespaces      []string
	accessRoleBinding    string
	readAuthBinding      string
	pprofAddr            string
	shard                string
}

func main() {
	var o options
	flag.StringVar(&o.metricsAddr, "metrics-bind-address", "0",
		"Address the metrics endpoint binds to, e.g. :8443 (https) or :8080 (http). \"0\" disables it.")
	flag.BoolVar(&o.metricsSecure, "metrics-secure", true,
		"Serve metrics over https, allowing only callers authenticated and authorized by the API server.")
	flag.StringVar(&o.metricsCertPath, "metrics-cert-path", "",
		"Directory with the metrics server certificate; empty uses a self-signed certificate.")
	flag.StringVar(&o.metricsCertName, "metrics-cert-name", "tls.crt", "Metrics server certificate file name.")
	flag.StringVar(&o.metricsCertKey, "metrics-cert-key", "tls.key", "Metrics server key file name.")
	flag.BoolVar(&o.enableHTTP2, "enable-http2", false,
		"Enable HTTP/2 for the metrics server (off by default: HTTP/2 Rapid Reset and Stream Cancellation CVEs).")
	flag.StringVar(&o.pprofAddr, "pprof-bind-address", "",
		"Address of Go's /debug/pprof endpoints (plain http, e.g. 127.0.0.1:6060: profiling only, never exposed); empty disables them.")
	flag.StringVar(&o.probeAddr, "health-probe-bind-address", ":8081", "Address of the /healthz and /readyz probes.")
	flag.BoolVar(&o.leaderElect, "leader-elect", true,
		"Elect a leader so only one manager replica reconciles at a time.")
	flag.StringVar(&o.leaderElectNamespace, "leader-election-namespace", "",
		"Namespace of the leader election Lease (default: the manager's namespace).")
	flag.StringVar(&o.defaultCredentials, "default-credentials-secret", "",
		"namespace/name of a Secret (keys workspaceId, apiKey, optional baseURL) used by IntunedJobs without spec.credentialsRef.")
	flag.Func("default-credentials-namespaces",
		"Comma-separated namespaces (besides the default credentials Secret's own) whose IntunedJobs without spec.credentialsRef may use --default-credentials-secret; \"*\" is every namespace. Elsewhere such a job is Stalled (reason DefaultCredentialsNotAllowed) and calls nothing: whoever may create IntunedJobs in a namespace would otherwise spend, adopt and delete the default workspace's Jobs.",
		func(s string) error {
			o.defaultCredsNS = parseNamespaces(s)
			return nil
		})
	flag.IntVar(&o.intunedRateLimit, "intuned-rate-limit", 20,
		"Requests per minute per Intuned URI path, shared by all IntunedJobs (Intuned allows 20). 0 turns pacing off (intuned-sim without limits, benchmarks).")
	flag.IntVar(&o.intunedJobWorkers, "intunedjob-workers", 8,
		"IntunedJobs reconciled concurrently (calls wait on the network and the rate limit, not the CPU).")
	flag.StringVar(&o.receiverImage, "receiver-image", os.Getenv("RECEIVER_IMAGE"),
		"Default container image of WebhookReceiver pods (env RECEIVER_IMAGE). Empty: the image of the manager's own container, read from its Pod (POD_NAMESPACE, POD_NAME), so the receiver follows the manager's image however that was set.")
	zapOpts := zap.Options{Development: false}
	flag.DurationVar(&o.tokenPropagation, "token-propagation-delay", webhookreceiver.DefaultTokenPropagationDelay,
		"How long a rotated receiver token is accepted before it becomes current (time for the kubelet to update the mounted Secret in every receiver Pod).")
	flag.DurationVar(&o.previousTokenGrace, "previous-token-grace", webhookreceiver.DefaultPreviousTokenGrace,
		"How long receivers keep accepting the previous token after every IntunedJob carries the new one (Intuned retries a delivery for up to 1h).")
	flag.DurationVar(&o.deliveryRetryWindow, "delivery-retry-window", intunedjob.DefaultDeliveryRetryWindow,
		"How long Intuned retries a webhook delivery: results still missing from a WebhookReceiver after this long past the end of their JobRun are a gap (condition DataComplete) and are backfilled. Shorten it only against intuned-sim.")
	flag.DurationVar(&o.scheduleGrace, "schedule-grace", intunedjob.DefaultScheduleGrace,
		"How late a scheduled JobRun may start before its IntunedJob is reported stale (condition Fresh, reason ScheduleMissed).")
	flag.Func("watch-namespaces",
		"Comma-separated namespaces whose IntunedJobs and WebhookReceivers (and their Secrets and children) the manager watches; empty: every namespace. The RBAC must allow these namespaces (config/namespaced).",
		func(s string) error {
			o.watchNamespaces = parseNamespaces(s)
			return nil
		})
	flag.StringVar(&o.accessRoleBinding, "access-role-binding", "",
		"Name of the RoleBinding that grants the manager its rights in each of --watch-namespaces (config/namespaced). The manager keeps it with a finalizer while IntunedJobs there still have Jobs to delete on Intuned, so deleting such a namespace cannot revoke the manager's rights first. Needs get and patch on that RoleBinding.")
	flag.StringVar(&o.readAuthBinding, "receiver-read-auth-binding", "",
		"Name of the install's ClusterRoleBinding to system:auth-delegator (config/rbac: intuned-operator-receiver-auth-delegator). Each WebhookReceiver's ServiceAccount is made a subject of it (kept with the finalizer intuned.io/read-auth-binding), and its Pods then accept Kubernetes bearer tokens on the read API: TokenReview, then SubjectAccessReview of get webhookreceivers/data (docs/security.md). Empty: off, the static read token only (the namespaced install). Needs get and update on that binding.")
	flag.StringVar(&o.shard, "shard", "",
		"Reconcile only the IntunedJobs and WebhookReceivers labelled sharding.intuned.io/key=<shard> (and their children); its replicas elect their own leader. Empty: the default shard, the objects without that label. Run one manager Deployment per shard (config/sharding, docs/sharding.md).")
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))

	if err := run(o); err != nil {
		ctrl.Log.WithName("setup").Error(err, "manager exited with an error")
		os.Exit(1)
	}
}

// run builds the manager from the options and blocks until a signal stops it.
func run(o options) error {
	log := ctrl.Log.WithName("setup")

	shard, err := sharding.Parse(o.shard)
	if err != nil {
		return fmt.Errorf("--shard: %w", err)
	}
	defaultCreds, err := parseNamespacedName(o.defaultCredentials)
	if err != nil {
		return fmt.Errorf("--default-credentials-secret: %w", err)
	}
	if err := checkWatched(o.watchNamespaces, defaultCreds); err != nil {
		return fmt.Errorf("--default-credentials-secret: %w", err)
	}
	if len(o.defaultCredsNS) > 0 && defaultCreds.Name == "" {
		return errors.New("--default-credentials-namespaces needs --default-credentials-secret")
	}
	defaults := intunedv1alpha1.DefaultCredentials{Secret: defaultCreds, Namespaces: o.defaultCredsNS}

	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(intunedv1alpha1.AddToScheme(scheme))

	var tlsOpts []func(*tls.Config)
	if !o.enableHTTP2 {
		tlsOpts = append(tlsOpts, func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} })
	}

	metricsOpts := metricsserver.Options{
		BindAddress:   o.metricsAddr,
		SecureServing: o.metricsSecure,
		TLSOpts:       tlsOpts,
	}
	if o.metricsSecure {
		// Only callers the API server authenticates and authorizes (RBAC on
		// the /metrics non-resource URL) may scrape.
		metricsOpts.FilterProvider = filters.WithAuthenticationAndAuthorization
	}
	var certWatcher *certwatcher.CertWatcher
	if o.metricsCertPath != "" {
		certWatcher, err = certwatcher.New(
			filepath.Join(o.metricsCertPath, o.metricsCertName),
			filepath.Join(o.metricsCertPath, o.metricsCertKey))
		if err != nil {
			return fmt.Errorf("load metrics certificate: %w", err)
		}
		metricsOpts.TLSOpts = append(metricsOpts.TLSOpts, func(c *tls.Config) {
			c.GetCertificate = certWatcher.GetCertificate
		})
	}

	mgr, err := ctrl.NewManager(ctrl.GetConfigOrDie(), ctrl.Options{
		Scheme:                  scheme,
		Cache:                   cachepolicy.CacheOptions(o.watchNamespaces, shard),
		Client:                  cachepolicy.ClientOptions(shard),
		Metrics:                 metricsOpts,
		HealthProbeBindAddress:  o.probeAddr,
		PprofBindAddress:        o.pprofAddr,
		LeaderElection:          o.leaderElect,
		LeaderElectionID:        shard.LeaderElectionID(leaderElectionID),
		LeaderElectionNamespace: o.leaderElectNamespace,
		// Step down quickly on shutdown so a new replica takes over at once;
		// safe because the manager exits right after the controllers stop.
		LeaderElectionReleaseOnCancel: true,
	})
	if err != nil {
		return fmt.Errorf("create manager: %w", err)
	}

	// The manager's own Pod: its image is the receivers' default (package
	// ownpod says why it is read here, not copied into the manifest), and
	// its namespace and labels are the peer receiver NetworkPolicies admit.
	self, inPod, selfErr := ownpod.Pod(context.Background(), mgr.GetAPIReader())
	if o.receiverImage == "" && inPod {
		if selfErr != nil {
			return fmt.Errorf("default receiver image (set --receiver-image to skip this): %w", selfErr)
		}
		img, err := ownpod.ContainerImage(self, ownpod.ManagerContainer)
		if err != nil {
			return fmt.Errorf("default receiver image (set --receiver-image to skip this): %w", err)
		}
		o.receiverImage = img
		log.Info("receivers default to the manager's image", "image", img)
	}
	var managerPods *resources.ManagerPods
	switch {
	case inPod && selfErr == nil:
		managerPods = &resources.ManagerPods{Namespace: self.Namespace, Labels: ownpod.ReplicaLabels(self)}
	case inPod:
		// Every Pod of the manager's namespace rather than none: a receiver
		// policy without the manager cuts off its volume check and backfill.
		managerPods = &resources.ManagerPods{Namespace: os.Getenv(ownpod.EnvPodNamespace)}
		log.Error(selfErr, "receiver NetworkPolicies admit every Pod of the manager's namespace")
	}

	// The field indexes every controller's watches and lists use, once.
	if err := index.Register(context.Background(), mgr.GetFieldIndexer(), index.Options{DefaultCredentials: defaults}); err != nil {
		return fmt.Errorf("register field indexes: %w", err)
	}

	// One pacer and one metrics set for every Intuned client: Intuned's
	// limit is per path for the whole workspace, not per IntunedJob.
	intunedMetrics, err := intuned.NewMetrics(metrics.Registry)
	if err != nil {
		return fmt.Errorf("register Intuned client metrics: %w", err)
	}
	pacer := intuned.NewPacer(intuned.PacerOptions{Limit: o.intunedRateLimit, Disabled: o.intunedRateLimit <= 0})
	if err := (&intunedjob.Reconciler{
		Client:                  mgr.GetClient(),
		Scheme:                  mgr.GetScheme(),
		DefaultCredentials:      defaults,
		Recorder:                mgr.GetEventRecorder("intunedjob-controller"),
		Pacer:                   pacer,
		Metrics:                 intunedMetrics,
		MaxConcurrentReconciles: o.intunedJobWorkers,
		DeliveryRetryWindow:     o.deliveryRetryWindow,
		ScheduleGrace:           o.scheduleGrace,
		Shard:                   shard,
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("set up IntunedJob controller: %w", err)
	}
	if err := (&guard.CredentialsInUse{
		Client:             mgr.GetClient(),
		DefaultCredentials: defaults,
		Recorder:           mgr.GetEventRecorder("credentials-in-use"),
		Shard:              shard,
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("set up credentials-in-use controller: %w", err)
	}
	if o.accessRoleBinding != "" {
		if len(o.watchNamespaces) == 0 {
			return errors.New("--access-role-binding needs --watch-namespaces (a cluster-wide install has no RoleBinding to keep)")
		}
		if err := (&guard.ManagerAccess{
			Client:      mgr.GetClient(),
			BindingName: o.accessRoleBinding,
			Shard:       shard,
		}).SetupWithManager(mgr); err != nil {
			return fmt.Errorf("set up manager-access controller: %w", err)
		}
	}
	if err := (&webhookreceiver.Reconciler{
		Client:                mgr.GetClient(),
		Scheme:                mgr.GetScheme(),
		Recorder:              mgr.GetEventRecorder("webhookreceiver-controller"),
		ReceiverImage:         o.receiverImage,
		ManagerPods:           managerPods,
		TokenPropagationDelay: o.tokenPropagation,
		PreviousTokenGrace:    o.previousTokenGrace,
		ReadAuthBinding:       o.readAuthBinding,
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("set up WebhookReceiver controller: %w", err)
	}

	if certWatcher != nil {
		if err := mgr.Add(certWatcher); err != nil {
			return fmt.Errorf("add metrics certificate watcher: %w", err)
		}
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return fmt.Errorf("add health check: %w", err)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return fmt.Errorf("add ready check: %w", err)
	}

	log.Info("starting manager", "leaderElection", o.leaderElect, "metrics", o.metricsAddr, "watchNamespaces", o.watchNamespaces,
		"shard", shard.String(), "shardSelector", shard.Selector().String())
	return mgr.Start(ctrl.SetupSignalHandler())
}

// parseNamespaces splits a comma-separated list, ignoring blanks and
// repeats ("a, b,,a" is [a b]).
func parseNamespaces(s string) []string {
	var out []string
	for ns := range strings.SplitSeq(s, ",") {
		if ns = strings.TrimSpace(ns); ns != "" && !slices.Contains(out, ns) {
			out = append(out, ns)
		}
	}
	return out
}

// checkWatched fails when the manager watches only some namespaces and the
// default credentials Secret is in none of them: the manager could neither
// see it change nor, with the namespaced RBAC, read it.
func checkWatched(namespaces []string, secret types.NamespacedName) error {
	if len(namespaces) == 0 || secret.Namespace == "" || slices.Contains(namespaces, secret.Namespace) {
		return nil
	}
	return fmt.Errorf("namespace %s is not in --watch-namespaces %s", secret.Namespace, strings.Join(namespaces, ","))
}

// parseNamespacedName parses "namespace/name"; empty input means "none".
func parseNamespacedName(s string) (types.NamespacedName, error) {
	if s == "" {
		return types.NamespacedName{}, nil
	}
	ns, name, ok := strings.Cut(s, "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return types.NamespacedName{}, errors.New(`want "namespace/name"`)
	}
	return types.NamespacedName{Namespace: ns, Name: name}, nil
}
