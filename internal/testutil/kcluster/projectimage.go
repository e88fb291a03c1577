package kcluster

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/intuned-operator/intuned-operator/internal/testutil/proc"
)

// DockerfileImage is what the repository's Dockerfile says the image is:
// which binaries its build stage compiles (and how), where its runtime
// stage puts them, and as whom and with what entrypoint it runs. The local
// image is built from this, so the two cannot drift apart.
type DockerfileImage struct {
	Packages   map[string]string // image path -> Go package, e.g. "/manager" -> "./cmd/manager"
	BuildFlags []string          // go build flags of the build stage, e.g. -trimpath -ldflags=-s -w
	BuildEnv   []string          // ENV of the build stage, e.g. CGO_ENABLED=0
	User       string
	Entrypoint []string
	WorkingDir string
}

var goBuildRe = regexp.MustCompile(`go build (.*?)-o (\S+) (\./\S+)`)

// ParseDockerfile reads the two-stage Dockerfile: a build stage that runs
// `go build ... -o /out/<name> ./cmd/<name>` and a runtime stage that copies
// /out/<name> into the image.
func ParseDockerfile(file string) (*DockerfileImage, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	cur := ""
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(l, "#") || (l == "" && cur == "") {
			continue
		}
		if strings.HasSuffix(l, "\\") {
			cur += strings.TrimSuffix(l, "\\") + " "
			continue
		}
		lines = append(lines, cur+l)
		cur = ""
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	img := &DockerfileImage{Packages: map[string]string{}, WorkingDir: "/"}
	outputs := map[string]string{} // build output path -> package
	stage := 0
	for _, l := range lines {
		instr, rest, _ := strings.Cut(l, " ")
		switch strings.ToUpper(instr) {
		case "FROM":
			stage++
		case "ENV":
			if stage == 1 {
				img.BuildEnv = append(img.BuildEnv, strings.Fields(rest)...)
			}
		case "RUN":
			for _, m := range goBuildRe.FindAllStringSubmatch(rest, -1) {
				outputs[m[2]] = m[3]
				img.BuildFlags = buildFlags(m[1])
			}
		case "COPY":
			if stage < 2 || !strings.Contains(rest, "--from=") {
				continue
			}
			f := strings.Fields(rest)
			dest := f[len(f)-1]
			for _, src := range f[1 : len(f)-1] {
				pkg, ok := outputs[src]
				if !ok {
					return nil, fmt.Errorf("%s: COPY of %s, which no go build in the build stage writes", file, src)
				}
				img.Packages[path.Join(dest, path.Base(src))] = pkg
			}
		case "USER":
			img.User = strings.TrimSpace(rest)
		case "WORKDIR":
			if stage >= 2 {
				img.WorkingDir = strings.TrimSpace(rest)
			}
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(rest), &img.Entrypoint); err != nil {
				return nil, fmt.Errorf("%s: ENTRYPOINT must be in exec form: %w", file, err)
			}
		}
	}
	if stage != 2 || len(img.Packages) == 0 || img.User == "" || len(img.Entrypoint) == 0 {
		return nil, fmt.Errorf("%s: expected a build and a runtime stage with COPY --from, USER and ENTRYPOINT", file)
	}
	return img, nil
}

// buildFlags splits `-trimpath -ldflags="-s -w"` into arguments.
func buildFlags(s string) []string {
	var out []string
	for _, m := range regexp.MustCompile(`(\S+="[^"]*"|\S+)`).FindAllString(s, -1) {
		out = append(out, strings.ReplaceAll(m, `"`, ""))
	}
	return out
}

// nonrootEtc is what the distroless/static base contributes that matters:
// the nonroot user (65532) and group, and a world-writable /tmp.
var nonrootEtc = map[string]ImageFile{
	"/etc/passwd":   {Mode: 0o644, Data: []byte("root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
	"/etc/group":    {Mode: 0o644, Data: []byte("root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n")},
	"/tmp":          {Mode: 0o1777},
	"/home/nonroot": {Mode: 0o755},
}

// BuildProjectImage compiles the binaries the Dockerfile's build stage
// compiles, with the same flags and environment, into bin (where they stay,
// for tests that run one of them outside the cluster), and writes an image
// archive laid out as its runtime stage.
func BuildProjectImage(ctx context.Context, repoRoot, bin, out, tag string) (*DockerfileImage, error) {
	img, err := ParseDockerfile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return nil, err
	}
	files := map[string]ImageFile{}
	for k, v := range nonrootEtc {
		files[k] = v
	}
	build := proc.Build{Root: repoRoot, Dir: bin, Flags: img.BuildFlags, Env: append(append([]string(nil), img.BuildEnv...), "GOOS=linux", "GOARCH=amd64")}
	for dest, pkg := range img.Packages {
		if path.Base(dest) != path.Base(pkg) {
			return nil, fmt.Errorf("Dockerfile builds %s into %s: want the command's own name", pkg, dest)
		}
		build.Packages = append(build.Packages, pkg)
		files[dest] = ImageFile{Mode: 0o755, Src: build.Binary(pkg)}
	}
	if _, err := build.Run(ctx); err != nil {
		return nil, err
	}
	err = WriteDockerArchive(out, tag, files, ImageConfig{
		User: img.User, Entrypoint: img.Entrypoint, WorkingDir: img.WorkingDir,
		Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
	})
	return img, err
}

// OperatorNamespace is where the installer puts the manager.
const OperatorNamespace = "intuned-operator-system"

// InstallOperator installs the operator as a user does: it renders the
// installer into dir (make installer with image ProjectImageTag: install.yaml,
// admission-policy.yaml and the namespaced variants), applies install.yaml and,
// with admissionPolicy, the optional admission policy (Kubernetes 1.36+), and
// waits for the manager's rollout. The image must be imported already.
func (c *Cluster) InstallOperator(ctx context.Context, repoRoot, dir string, admissionPolicy bool) error {
	return c.InstallOperatorFrom(ctx, repoRoot, dir, ProjectImageTag, admissionPolicy)
}

// InstallOperatorFrom is InstallOperator with the installer of another tree
// (src: e.g. an older commit of this repository, exported) and image img.
// Applied over an install that is already there, it is the kustomize
// upgrade docs/upgrade.md describes.
func (c *Cluster) InstallOperatorFrom(ctx context.Context, src, dir, img string, admissionPolicy bool) error {
	install := filepath.Join(dir, "install.yaml")
	cmd := exec.CommandContext(ctx, "make", "-s", "installer", "IMG="+img, "INSTALLER="+install)
	cmd.Dir = src
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("make installer in %s: %w\n%s", src, err, out)
	}
	files := []string{install}
	if admissionPolicy {
		files = append(files, filepath.Join(dir, "admission-policy.yaml"))
	}
	for _, f := range files {
		if _, err := c.Kubectl(ctx, "apply", "--server-side", "-f", f); err != nil {
			return err
		}
	}
	_, err := c.Kubectl(ctx, "-n", OperatorNamespace, "rollout", "status", "deployment/intuned-operator-controller-manager", "--timeout=3m")
	return err
}
