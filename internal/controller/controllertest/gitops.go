package controllertest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	celgo "github.com/google/cel-go/cel"
	celtypes "github.com/google/cel-go/common/types"
	"github.com/google/cel-go/ext"
	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// Health is what each GitOps tool makes of an object as stored: the
// kstatus library (kubectl wait via kstatus, Flux's default), Argo CD with
// the shipped Lua health check (config/gitops/argocd) and Flux with the
// shipped healthCheckExprs (config/gitops/flux).
type Health struct {
	Kstatus status.Status
	Argo    string // Argo CD health status: Healthy, Progressing, Degraded, Suspended, ...
	Flux    status.Status
}

func (h Health) String() string {
	return fmt.Sprintf("{kstatus %s, argo %s, flux %s}", h.Kstatus, h.Argo, h.Flux)
}

// GitOpsHealth computes obj's Health the way each tool does.
func GitOpsHealth(t *testing.T, obj client.Object) Health {
	t.Helper()
	m, err := k8sruntime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		t.Fatal(err)
	}
	// The typed object carries no apiVersion/kind after a Get; the tools
	// see them (Flux picks its expressions by them).
	gvk, err := Env.Client.GroupVersionKindFor(obj)
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{Object: m}
	u.SetGroupVersionKind(gvk)
	argo, msg, err := ArgoHealth(u)
	if err != nil {
		t.Fatalf("Argo CD health check: %v", err)
	}
	if msg == "" {
		t.Errorf("Argo CD health check gave no message for %s", argo)
	}
	flux, err := FluxHealth(u)
	if err != nil {
		t.Fatalf("Flux healthCheckExprs: %v", err)
	}
	return Health{Kstatus: Kstatus(t, obj), Argo: argo, Flux: flux}
}

// repoRoot is the repository root, from this file's location.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}

// argoScripts renders config/gitops/argocd into an argocd-cm ConfigMap, as
// a user's Argo CD kustomization would, and returns its data: the health
// checks Argo CD reads, keyed resource.customizations.health.<group>_<kind>.
var argoScripts = sync.OnceValues(func() (map[string]string, error) {
	dir, err := os.MkdirTemp("", "argocd-cm")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	// kustomize takes components by relative path only.
	abs, err := filepath.Abs(filepath.Join(repoRoot(), "config", "gitops", "argocd"))
	if err != nil {
		return nil, err
	}
	component, err := filepath.Rel(dir, abs)
	if err != nil {
		return nil, err
	}
	// Like Argo CD's install.yaml, argocd-cm has no namespace of its own:
	// the installing kustomization sets it.
	files := map[string]string{
		"argocd-cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: argocd-cm\ndata:\n  url: https://argocd.example.com\n",
		"kustomization.yaml": "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: argocd\nresources:\n- argocd-cm.yaml\ncomponents:\n- " +
			component + "\n",
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			return nil, err
		}
	}
	res, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build with the component: %w", err)
	}
	if n := len(res.Resources()); n != 1 {
		return nil, fmt.Errorf("the component made %d objects, want argocd-cm only", n)
	}
	cm := res.Resources()[0]
	if cm.GetName() != "argocd-cm" {
		return nil, fmt.Errorf("the component renamed argocd-cm to %s", cm.GetName())
	}
	data := cm.GetDataMap()
	if data["url"] == "" {
		return nil, fmt.Errorf("the component dropped argocd-cm's own keys: %v", data)
	}
	return data, nil
})

// argoValidStatus are Argo CD's health status codes; anything else it
// reports as Unknown.
var argoValidStatus = map[string]bool{
	"Healthy": true, "Progressing": true, "Degraded": true, "Suspended": true, "Missing": true, "Unknown": true,
}

// ArgoHealth is the health Argo CD reports for u: like gitops-engine's
// GetResourceHealth, an object being deleted is Progressing without a
// script; otherwise the Lua from argocd-cm for u's group and kind runs the
// way Argo CD's util/lua runs it (only the package, base and table
// libraries, the object as the global obj, the returned table read as
// {status, message}).
func ArgoHealth(u *unstructured.Unstructured) (string, string, error) {
	if u.GetDeletionTimestamp() != nil {
		return "Progressing", "Pending deletion", nil
	}
	scripts, err := argoScripts()
	if err != nil {
		return "", "", err
	}
	gvk := u.GroupVersionKind()
	script, ok := scripts["resource.customizations.health."+gvk.Group+"_"+gvk.Kind]
	if !ok {
		return "", "", fmt.Errorf("argocd-cm has no health check for %s", gvk.GroupKind())
	}
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for name, open := range map[string]lua.LGFunction{lua.LoadLibName: lua.OpenPackage, lua.BaseLibName: lua.OpenBase, lua.TabLibName: lua.OpenTable} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(open), Protect: true}, lua.LString(name)); err != nil {
			return "", "", err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", luaValue(l, u.Object))
	if err := l.DoString(script); err != nil {
		return "", "", err
	}
	ret, ok := l.Get(-1).(*lua.LTable)
	if !ok {
		return "", "", fmt.Errorf("the script returned %s, want a table", l.Get(-1).Type())
	}
	st, msg := lua.LVAsString(ret.RawGetString("status")), lua.LVAsString(ret.RawGetString("message"))
	if !argoValidStatus[st] {
		return "Unknown", "invalid health status " + st, nil
	}
	return st, msg, nil
}

// luaValue converts decoded JSON to Lua values as Argo CD does: objects
// and arrays become tables (arrays 1-based), numbers LNumber.
func luaValue(l *lua.LState, v any) lua.LValue {
	switch v := v.(type) {
	case map[string]any:
		t := l.NewTable()
		for k, e := range v {
			t.RawSetString(k, luaValue(l, e))
		}
		return t
	case []any:
		t := l.NewTable()
		for _, e := range v {
			t.Append(luaValue(l, e))
		}
		return t
	case string:
		return lua.LString(v)
	case bool:
		return lua.LBool(v)
	case int64:
		return lua.LNumber(v)
	case float64:
		return lua.LNumber(v)
	case nil:
		return lua.LNil
	}
	return lua.LString(fmt.Sprint(v))
}

// fluxCheck is one entry of a Flux Kustomization's spec.healthCheckExprs.
type fluxCheck struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	InProgress string `json:"inProgress"`
	Failed     string `json:"failed"`
	Current    string `json:"current"`
}

// fluxChecks reads the healthCheckExprs shipped in config/gitops/flux.
var fluxChecks = sync.OnceValues(func() ([]fluxCheck, error) {
	b, err := os.ReadFile(filepath.Join(repoRoot(), "config", "gitops", "flux", "healthcheckexprs.yaml"))
	if err != nil {
		return nil, err
	}
	var ks struct {
		Spec struct {
			HealthCheckExprs []fluxCheck `json:"healthCheckExprs"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(b, &ks); err != nil {
		return nil, err
	}
	return ks.Spec.HealthCheckExprs, nil
})

// FluxHealth is the status Flux's kustomize-controller computes for u with
// the shipped healthCheckExprs, mirroring fluxcd/pkg/runtime/cel
// (StatusEvaluator, RFC 0009): a status.observedGeneration different from
// metadata.generation is InProgress; else inProgress, failed and current
// are evaluated in that order, the first true one wins, none is
// InProgress. The expressions are parsed, not type-checked, in Flux's CEL
// environment, with the object's top-level fields as variables.
func FluxHealth(u *unstructured.Unstructured) (status.Status, error) {
	checks, err := fluxChecks()
	if err != nil {
		return "", err
	}
	var check *fluxCheck
	for i := range checks {
		if checks[i].APIVersion == u.GetAPIVersion() && checks[i].Kind == u.GetKind() {
			check = &checks[i]
		}
	}
	if check == nil {
		return "", fmt.Errorf("no healthCheckExprs entry for %s %s", u.GetAPIVersion(), u.GetKind())
	}
	if check.Current == "" {
		return "", fmt.Errorf("%s: current is required", u.GetKind())
	}
	if og, ok, _ := unstructured.NestedInt64(u.Object, "status", "observedGeneration"); ok && og != u.GetGeneration() {
		return status.InProgressStatus, nil
	}
	for _, e := range []struct {
		expr string
		st   status.Status
	}{{check.InProgress, status.InProgressStatus}, {check.Failed, status.FailedStatus}, {check.Current, status.CurrentStatus}} {
		if e.expr == "" {
			continue
		}
		ok, err := evalFluxExpr(e.expr, u.Object)
		if err != nil {
			return "", err
		}
		if ok {
			return e.st, nil
		}
	}
	return status.InProgressStatus, nil
}

// evalFluxExpr parses and evaluates one expression in the CEL environment
// of fluxcd/pkg/runtime/cel NewExpression.
func evalFluxExpr(expr string, obj map[string]any) (bool, error) {
	env, err := celgo.NewEnv(
		celgo.HomogeneousAggregateLiterals(),
		celgo.EagerlyValidateDeclarations(true),
		celgo.DefaultUTCTimeZone(true),
		celgo.CrossTypeNumericComparisons(true),
		celgo.OptionalTypes(),
		ext.Strings(),
		ext.Sets(),
		ext.Encoders(),
	)
	if err != nil {
		return false, err
	}
	ast, iss := env.Parse(expr)
	if iss.Err() != nil {
		return false, fmt.Errorf("parse %q: %w", expr, iss.Err())
	}
	prg, err := env.Program(ast, celgo.EvalOptions(celgo.OptOptimize), celgo.InterruptCheckFrequency(100))
	if err != nil {
		return false, err
	}
	val, _, err := prg.Eval(obj)
	if err != nil {
		return false, fmt.Errorf("evaluate %q: %w", expr, err)
	}
	b, ok := val.(celtypes.Bool)
	if !ok {
		return false, fmt.Errorf("%q is not a boolean: %v", expr, val)
	}
	return bool(b), nil
}
