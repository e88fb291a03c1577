package emucluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/intuned-operator/intuned-operator/internal/testutil/flow"
	"github.com/intuned-operator/intuned-operator/internal/testutil/proc"
	"github.com/intuned-operator/intuned-operator/internal/testutil/testenv"
)

// The envtest binaries and the scheme are shared with the other envtest
// users through internal/testutil/testenv.
var (
	// ErrNoAssets means the envtest binaries are not built.
	ErrNoAssets = testenv.ErrNoAssets
	// AssetsDir returns the directory with kube-apiserver, etcd and kubectl.
	AssetsDir = testenv.AssetsDir
	// Scheme has the built-in kinds and this project's API.
	Scheme = testenv.Scheme
)

// installManifests is config/default rendered by kustomize, split into
// what the emulated cluster installs and what it runs itself.
type installManifests struct {
	crds    []*apiextensionsv1.CustomResourceDefinition
	objects []*unstructured.Unstructured // Namespace, ServiceAccount, RBAC (and admission policies, were config/default to render any)
	manager *appsv1.Deployment           // run as a process instead
}

// renderInstall renders config/default with the kustomize built into
// kubectl: the same manifests `make build-installer` ships.
func renderInstall(ctx context.Context, kubectl string) (*installManifests, error) {
	objs, err := flow.Kustomize(ctx, kubectl, "default")
	if err != nil {
		return nil, err
	}
	m := &installManifests{}
	for _, u := range objs {
		switch u.GetKind() {
		case "CustomResourceDefinition":
			var crd apiextensionsv1.CustomResourceDefinition
			if err := k8sruntime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &crd); err != nil {
				return nil, fmt.Errorf("CRD %s: %w", u.GetName(), err)
			}
			m.crds = append(m.crds, &crd)
		case "Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
			"MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding":
			m.objects = append(m.objects, u)
		case "Deployment":
			var d appsv1.Deployment
			if err := k8sruntime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &d); err != nil {
				return nil, fmt.Errorf("Deployment %s: %w", u.GetName(), err)
			}
			m.manager = &d
		default:
			// Services, ServiceMonitors, ...: nothing runs behind them here.
		}
	}
	if len(m.crds) == 0 {
		return nil, errors.New("config/default renders no CustomResourceDefinitions")
	}
	if m.manager == nil {
		return nil, errors.New("config/default renders no manager Deployment")
	}
	// Namespaces first, then the rest in file order.
	sort.SliceStable(m.objects, func(i, j int) bool {
		return m.objects[i].GetKind() == "Namespace" && m.objects[j].GetKind() != "Namespace"
	})
	return m, nil
}

// controlPlane is kube-apiserver + etcd with the project installed.
type controlPlane struct {
	env        *envtest.Environment
	client     client.Client // admin
	kubeconfig string        // admin kubeconfig file
	kubectl    string

	managerKubeconfig string // the manager's ServiceAccount-like identity
	manager           *appsv1.Deployment
	managerNamespace  string
}

func startControlPlane(ctx context.Context, dir string) (*controlPlane, error) {
	assets, err := AssetsDir()
	if err != nil {
		return nil, err
	}
	cp := &controlPlane{kubectl: filepath.Join(assets, "kubectl")}
	inst, err := renderInstall(ctx, cp.kubectl)
	if err != nil {
		return nil, err
	}
	cp.env = &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDs:                  inst.crds,
		Scheme:                Scheme(),
	}
	if _, err := cp.env.Start(); err != nil {
		return nil, fmt.Errorf("start kube-apiserver and etcd: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			_ = cp.env.Stop()
		}
	}()

	// An admin for users and kubectl (system:masters), written as a
	// self-contained kubeconfig file.
	admin, err := cp.env.AddUser(envtest.User{Name: "e2e-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return nil, fmt.Errorf("add admin user: %w", err)
	}
	cp.kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := writeKubeconfig(admin, cp.kubeconfig); err != nil {
		return nil, err
	}
	cfg := admin.Config()
	cfg.QPS, cfg.Burst = 200, 400 // tests poll; the default client-side limit would slow them
	cp.client, err = client.New(cfg, client.Options{Scheme: cp.env.Scheme})
	if err != nil {
		return nil, err
	}

	hasPolicy := false
	for _, o := range inst.objects {
		if err := cp.client.Create(ctx, o); err != nil && !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("install %s %s: %w", o.GetKind(), o.GetName(), err)
		}
		hasPolicy = hasPolicy || o.GetKind() == "MutatingAdmissionPolicy"
	}
	// Tests run against the install as users get it: wait until the API
	// server enforces its admission policy (it loads policies asynchronously).
	if hasPolicy {
		if err := testenv.WaitForAdmissionPolicies(ctx, cp.client, inst.manager.Namespace); err != nil {
			return nil, err
		}
	}

	// The manager authenticates as its ServiceAccount would: the RBAC from
	// config/rbac is all it may do.
	cp.manager = inst.manager
	cp.managerNamespace = inst.manager.Namespace
	sa := inst.manager.Spec.Template.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	user := envtest.User{
		Name:   "system:serviceaccount:" + cp.managerNamespace + ":" + sa,
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + cp.managerNamespace, "system:authenticated"},
	}
	mu, err := cp.env.AddUser(user, nil)
	if err != nil {
		return nil, fmt.Errorf("add manager user: %w", err)
	}
	cp.managerKubeconfig = filepath.Join(dir, "manager.kubeconfig")
	if err := writeKubeconfig(mu, cp.managerKubeconfig); err != nil {
		return nil, err
	}
	ok = true
	return cp, nil
}

func writeKubeconfig(u *envtest.AuthenticatedUser, path string) error {
	b, err := u.KubeConfig()
	if err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	return os.WriteFile(path, b, 0o600)
}

func (cp *controlPlane) stop() error { return cp.env.Stop() }

// managerCommand derives the manager's command line from the rendered
// Deployment: its args, with bind addresses moved to loopback ports and the
// leader election namespace made explicit (outside a cluster the manager
// cannot discover its own namespace).
func managerCommand(d *appsv1.Deployment, namespace string, probePort, metricsPort int) (args []string, env []string, err error) {
	if len(d.Spec.Template.Spec.Containers) == 0 {
		return nil, nil, errors.New("manager Deployment has no container")
	}
	c := d.Spec.Template.Spec.Containers[0]
	if len(c.Command) > 1 {
		args = append(args, c.Command[1:]...)
	}
	hasLENS := false
	for _, a := range c.Args {
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		switch name {
		case "health-probe-bind-address":
			a = "--health-probe-bind-address=" + proc.Loopback(probePort)
		case "metrics-bind-address":
			a = "--metrics-bind-address=" + proc.Loopback(metricsPort)
		case "leader-election-namespace":
			hasLENS = true
		case "receiver-read-auth-binding":
			// Off: the emulated kubelet projects no ServiceAccount tokens, which
			// the receivers' Kubernetes read auth needs (proven by envtest in
			// internal/receiver and on the real node in test/cluster).
			a = "--receiver-read-auth-binding="
		}
		args = append(args, a)
	}
	if !hasLENS {
		args = append(args, "--leader-election-namespace="+namespace)
	}
	if !containsFlag(args, "health-probe-bind-address") {
		args = append(args, "--health-probe-bind-address="+proc.Loopback(probePort))
	}
	// The manager runs as a process, not in a Pod it could read its image
	// from (internal/ownpod): give it what it would read there.
	if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "RECEIVER_IMAGE" }) {
		env = append(env, "RECEIVER_IMAGE="+c.Image)
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env = append(env, e.Name+"="+e.Value)
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.namespace":
			env = append(env, e.Name+"="+namespace)
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name":
			env = append(env, e.Name+"=manager-0")
		}
	}
	return args, env, nil
}

func containsFlag(args []string, name string) bool {
	for _, a := range args {
		n, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if n == name {
			return true
		}
	}
	return false
}
