package emucluster

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/intuned-operator/intuned-operator/internal/testutil/proc"
	corev1 "k8s.io/api/core/v1"
)

// This file turns a Pod spec into a process plan, the way a kubelet would
// turn it into a container, minus the container. Everything the kubelet
// would refuse (a mount of a volume that does not exist, a Secret key that
// is missing, a command the image does not have) is an error here too.

// ObjectSource reads the Secrets a Pod refers to. A missing Secret returns
// an error wrapping ErrNotFound.
type ObjectSource interface {
	SecretData(namespace, name string) (map[string][]byte, error)
}

// ErrNotFound is returned by an ObjectSource for a missing object.
var ErrNotFound = errors.New("not found")

// PodIdentity is what the volume layout needs.
type PodIdentity struct {
	Namespace, Name string
	// ClaimNames maps a volumeClaimTemplate name to the PVC name the
	// StatefulSet controller would create (<template>-<sts>-<ordinal>).
	ClaimNames map[string]string
}

// Layout says where a Pod's volumes live on the host.
type Layout struct {
	PodDir string // per-Pod scratch: emptyDirs, materialised Secrets, working dir
	PVCDir string // per-namespace persistent volumes: PVCDir/<claim name>
}

// Plan is a container turned into a process.
type Plan struct {
	Path string   // host executable
	Args []string // rewritten arguments
	Env  []string // complete environment
	Dir  string   // working directory on the host

	ContainerPort int    // the port the container listens on (from its args and ports)
	HostPort      int    // the loopback port it listens on here
	ReadyPath     string // readiness probe path
	GraceSeconds  int64  // terminationGracePeriodSeconds

	Files    []projectedVolume // Secret volumes to (re)materialise
	DataDirs []string          // host directories of the writable volumes (emptyDir, PVC)
}

// projectedVolume is a Secret volume materialised as files in hostDir;
// refreshed while the Pod runs, as the kubelet does.
type projectedVolume struct {
	hostDir  string
	secret   string
	items    []corev1.KeyToPath
	optional bool
	mode     os.FileMode
}

type mount struct {
	containerPath, hostPath string
	readOnly                bool
}

// Images maps a container command (its absolute path in the image) to the
// host binary that implements it. The image's ENTRYPOINT is /manager, so a
// container without a command would run the operator.
type Images struct {
	Binaries   map[string]string // e.g. "/receiver" -> /tmp/x/receiver
	Entrypoint string            // the image's ENTRYPOINT, for containers without a command
}

// PlanContainer turns the first container of spec into a process plan that
// listens on 127.0.0.1:hostPort. It creates the Pod's directories.
func PlanContainer(spec *corev1.PodSpec, id PodIdentity, lay Layout, img Images, src ObjectSource, hostPort int) (*Plan, error) {
	if len(spec.InitContainers) > 0 {
		return nil, fmt.Errorf("initContainers are not supported by the e2e kubelet (found %d)", len(spec.InitContainers))
	}
	if len(spec.Containers) != 1 {
		return nil, fmt.Errorf("want exactly one container in the receiver Pod, found %d", len(spec.Containers))
	}
	c := spec.Containers[0]
	p := &Plan{HostPort: hostPort, GraceSeconds: 30}
	if spec.TerminationGracePeriodSeconds != nil {
		p.GraceSeconds = *spec.TerminationGracePeriodSeconds
	}

	// Command: the container's, else the image's entrypoint.
	argv := append([]string(nil), c.Command...)
	if len(argv) == 0 {
		argv = []string{img.Entrypoint}
	}
	bin, ok := img.Binaries[argv[0]]
	if !ok {
		return nil, fmt.Errorf("container %q runs %q, which is not a binary of the image (have %s)", c.Name, argv[0], strings.Join(sortedKeys(img.Binaries), ", "))
	}
	p.Path = bin

	// The operator's receiver Pod sets no environment: the emulated
	// kubelet does not implement env, envFrom or $(VAR) references, and
	// says so rather than run the Pod differently from a real node.
	if len(c.Env) > 0 || len(c.EnvFrom) > 0 {
		return nil, fmt.Errorf("container %q sets env/envFrom, which the emulated kubelet does not run (internal/testutil/emucluster)", c.Name)
	}

	// Volumes and mounts.
	mounts, files, err := volumeMounts(spec, &c, id, lay)
	if err != nil {
		return nil, err
	}
	p.Files = files
	for _, m := range mounts {
		if !m.readOnly {
			p.DataDirs = append(p.DataDirs, m.hostPath)
		}
	}
	sort.Strings(p.DataDirs)

	args := append(argv[1:], c.Args...)

	// Receiver file flags must point into volumes (the root filesystem is
	// read-only in the restricted profile), the SQLite file into a
	// writable one. Check before rewriting paths.
	workDir := c.WorkingDir
	if workDir == "" {
		workDir = "/"
	}
	if err := checkReceiverPaths(args, workDir, mounts); err != nil {
		return nil, err
	}

	// Listen address: must equal a declared containerPort; rewritten to
	// the loopback port.
	listen, where := findFlag(args, "listen-addr", ":8080")
	_, portStr, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("receiver --listen-addr %q: %v", listen, err)
	}
	p.ContainerPort, _ = strconv.Atoi(portStr)
	if !declaresPort(&c, p.ContainerPort) {
		return nil, fmt.Errorf("receiver listens on port %d but container %q declares ports %v", p.ContainerPort, c.Name, portNumbers(&c))
	}
	newListen := proc.Loopback(hostPort)
	if where.arg >= 0 {
		args = setFlagAt(args, where, "listen-addr", newListen)
	} else {
		args = append(args, "--listen-addr="+newListen)
	}

	// Probes must target the port the receiver listens on.
	if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil {
		return nil, fmt.Errorf("container %q has no httpGet readinessProbe: a Service would route to it before its store is open", c.Name)
	}
	for _, pr := range []struct {
		name  string
		probe *corev1.Probe
	}{{"readinessProbe", c.ReadinessProbe}, {"livenessProbe", c.LivenessProbe}, {"startupProbe", c.StartupProbe}} {
		if pr.probe == nil || pr.probe.HTTPGet == nil {
			continue
		}
		port, err := resolvePort(&c, pr.probe.HTTPGet.Port.String())
		if err != nil {
			return nil, fmt.Errorf("%s: %v", pr.name, err)
		}
		if port != p.ContainerPort {
			return nil, fmt.Errorf("%s targets port %d but the receiver listens on %d", pr.name, port, p.ContainerPort)
		}
	}
	p.ReadyPath = c.ReadinessProbe.HTTPGet.Path
	if p.ReadyPath == "" {
		p.ReadyPath = "/"
	}

	// Map container paths to host paths in args.
	for i := range args {
		args[i] = rewriteArg(args[i], mounts)
	}
	p.Args = args
	p.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOSTNAME=" + id.Name}
	p.Dir = mapPath(workDir, mounts)
	if p.Dir == workDir { // not in a volume: an empty stand-in for the image's filesystem
		p.Dir = filepath.Join(lay.PodDir, "rootfs")
		if err := os.MkdirAll(p.Dir, 0o755); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// volumeMounts maps the container's volume mounts to host directories.
func volumeMounts(spec *corev1.PodSpec, c *corev1.Container, id PodIdentity, lay Layout) ([]mount, []projectedVolume, error) {
	vols := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		vols[v.Name] = v
	}
	hostDirs := map[string]string{}
	var files []projectedVolume
	hostDir := func(name string) (string, error) {
		if d, ok := hostDirs[name]; ok {
			return d, nil
		}
		var d string
		v, ok := vols[name]
		switch {
		case !ok:
			claim, ok := id.ClaimNames[name]
			if !ok {
				return "", fmt.Errorf("volumeMount %q names no volume and no volumeClaimTemplate", name)
			}
			d = filepath.Join(lay.PVCDir, claim)
		case v.EmptyDir != nil:
			d = filepath.Join(lay.PodDir, "volumes", "empty-dir", name)
		case v.PersistentVolumeClaim != nil:
			d = filepath.Join(lay.PVCDir, v.PersistentVolumeClaim.ClaimName)
		case v.Secret != nil:
			d = filepath.Join(lay.PodDir, "volumes", "secret", name)
			files = append(files, projectedVolume{hostDir: d, secret: v.Secret.SecretName, items: v.Secret.Items,
				optional: v.Secret.Optional != nil && *v.Secret.Optional, mode: fileMode(v.Secret.DefaultMode)})
		default:
			return "", fmt.Errorf("volume %q: only emptyDir, persistentVolumeClaim and secret volumes are supported by the emulated kubelet", name)
		}
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", err
		}
		hostDirs[name] = d
		return d, nil
	}
	var mounts []mount
	for _, vm := range c.VolumeMounts {
		if !path.IsAbs(vm.MountPath) {
			return nil, nil, fmt.Errorf("volumeMount %q: mountPath %q is not absolute", vm.Name, vm.MountPath)
		}
		d, err := hostDir(vm.Name)
		if err != nil {
			return nil, nil, err
		}
		if vm.SubPath != "" {
			d = filepath.Join(d, vm.SubPath)
			if err := os.MkdirAll(d, 0o755); err != nil {
				return nil, nil, err
			}
		}
		readOnly := vm.ReadOnly
		if v, ok := vols[vm.Name]; ok && v.Secret != nil {
			readOnly = true // the kubelet always mounts these read-only
		}
		mounts = append(mounts, mount{containerPath: path.Clean(vm.MountPath), hostPath: d, readOnly: readOnly})
	}
	// Longest container path first, so nested mounts win.
	sort.Slice(mounts, func(i, j int) bool { return len(mounts[i].containerPath) > len(mounts[j].containerPath) })
	return mounts, files, nil
}

func fileMode(m *int32) os.FileMode {
	if m == nil {
		return 0o644
	}
	return os.FileMode(*m) & 0o777
}

// findMount returns the mount holding container path p.
func findMount(p string, mounts []mount) (mount, bool) {
	for _, m := range mounts {
		if p == m.containerPath || strings.HasPrefix(p, m.containerPath+"/") || m.containerPath == "/" {
			return m, true
		}
	}
	return mount{}, false
}

// mapPath maps an absolute container path inside a mount to its host path;
// anything else is returned unchanged.
func mapPath(p string, mounts []mount) string {
	if !path.IsAbs(p) {
		return p
	}
	m, ok := findMount(path.Clean(p), mounts)
	if !ok {
		return p
	}
	rest := strings.TrimPrefix(path.Clean(p), m.containerPath)
	return filepath.Join(m.hostPath, filepath.FromSlash(rest))
}

// rewriteArg maps a path argument, bare or as the value of --flag=value.
func rewriteArg(a string, mounts []mount) string {
	if strings.HasPrefix(a, "-") {
		if k, v, ok := strings.Cut(a, "="); ok {
			return k + "=" + mapPath(v, mounts)
		}
		return a
	}
	return mapPath(a, mounts)
}

// flagPos says where a flag was found: an index into args (-1: not there;
// the value in the same argument when inline, else in the next).
type flagPos struct {
	arg    int
	inline bool
}

// findFlag finds --name (or -name) in args the way cmd/receiver reads its
// flags (the last occurrence wins). It returns the effective value.
func findFlag(args []string, name, def string) (string, flagPos) {
	pos := flagPos{arg: -1}
	value := def
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break
		}
		trimmed := strings.TrimLeft(a, "-")
		if len(a)-len(trimmed) < 1 || len(a)-len(trimmed) > 2 {
			continue
		}
		k, v, inline := strings.Cut(trimmed, "=")
		if k != name {
			continue
		}
		if !inline {
			if i+1 >= len(args) {
				continue
			}
			v = args[i+1]
		}
		value = v
		pos.arg, pos.inline = i, inline
		if !inline {
			i++
		}
	}
	return value, pos
}

func setFlagAt(args []string, pos flagPos, name, value string) []string {
	if pos.inline {
		args[pos.arg] = "--" + name + "=" + value
	} else {
		args[pos.arg+1] = value
	}
	return args
}

// checkReceiverPaths checks the receiver's file flags against the mounts:
// inputs must be in a volume, the SQLite database in a writable one.
func checkReceiverPaths(args []string, workDir string, mounts []mount) error {
	abs := func(p string) string {
		if path.IsAbs(p) {
			return path.Clean(p)
		}
		return path.Join(workDir, p)
	}
	for _, f := range []string{"token-file", "previous-token-file", "read-token-file", "postgres-dsn-file"} {
		v, _ := findFlag(args, f, "")
		if v == "" {
			continue
		}
		if _, ok := findMount(abs(v), mounts); !ok {
			return fmt.Errorf("receiver --%s %q is not inside any volumeMount", f, v)
		}
	}
	if kind, _ := findFlag(args, "store", "sqlite"); kind == "sqlite" {
		v, _ := findFlag(args, "sqlite-path", "receiver.db")
		m, ok := findMount(abs(v), mounts)
		if !ok {
			return fmt.Errorf("receiver --sqlite-path %q (%s) is not inside any volumeMount: the root filesystem is read-only and not persistent", v, abs(v))
		}
		if m.readOnly {
			return fmt.Errorf("receiver --sqlite-path %q is on the read-only mount %s", v, m.containerPath)
		}
	}
	return nil
}

func declaresPort(c *corev1.Container, port int) bool {
	for _, p := range c.Ports {
		if int(p.ContainerPort) == port {
			return true
		}
	}
	return false
}

func portNumbers(c *corev1.Container) []int32 {
	var out []int32
	for _, p := range c.Ports {
		out = append(out, p.ContainerPort)
	}
	return out
}

// resolvePort resolves a probe port (number or container port name).
func resolvePort(c *corev1.Container, port string) (int, error) {
	if n, err := strconv.Atoi(port); err == nil {
		return n, nil
	}
	for _, p := range c.Ports {
		if p.Name == port {
			return int(p.ContainerPort), nil
		}
	}
	return 0, fmt.Errorf("port %q is not a named port of container %q", port, c.Name)
}

// materialise writes the volume's files into its host directory, replacing
// changed files atomically and removing ones that went away. It reports
// whether anything changed.
func (v projectedVolume) materialise(namespace string, src ObjectSource) (bool, error) {
	data, err := src.SecretData(namespace, v.secret)
	if err != nil {
		if errors.Is(err, ErrNotFound) && v.optional {
			data = map[string][]byte{}
		} else {
			return false, err
		}
	}
	want := map[string][]byte{}
	if len(v.items) == 0 {
		for k, b := range data {
			want[k] = b
		}
	} else {
		for _, it := range v.items {
			b, ok := data[it.Key]
			if !ok {
				if v.optional {
					continue
				}
				return false, fmt.Errorf("key %q is missing", it.Key)
			}
			want[it.Path] = b
		}
	}
	changed := false
	for rel, b := range want {
		p := filepath.Join(v.hostDir, filepath.FromSlash(rel))
		if old, err := os.ReadFile(p); err == nil && bytes.Equal(old, b) {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return false, err
		}
		tmp := p + ".tmp"
		if err := os.WriteFile(tmp, b, v.mode); err != nil {
			return false, err
		}
		if err := os.Rename(tmp, p); err != nil {
			return false, err
		}
		changed = true
	}
	entries, _ := os.ReadDir(v.hostDir)
	for _, e := range entries {
		if _, ok := want[e.Name()]; !ok && !e.IsDir() {
			_ = os.Remove(filepath.Join(v.hostDir, e.Name()))
			changed = true
		}
	}
	return changed, nil
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
