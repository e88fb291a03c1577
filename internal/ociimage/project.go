package ociimage

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
	"sort"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Dockerfile is what the repository's Dockerfile says the image is: which
// binaries its build stage compiles (and how), where its runtime stage puts
// them, and as whom and with what entrypoint it runs. The library build
// follows it, so the Dockerfile (kept for people who use Docker) and the
// images built here cannot drift apart.
type Dockerfile struct {
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
func ParseDockerfile(file string) (*Dockerfile, error) {
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
	img := &Dockerfile{Packages: map[string]string{}, WorkingDir: "/"}
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

var flagRe = regexp.MustCompile(`(\S+="[^"]*"|\S+)`)

// buildFlags splits `-trimpath -ldflags="-s -w"` into arguments.
func buildFlags(s string) []string {
	var out []string
	for _, m := range flagRe.FindAllString(s, -1) {
		out = append(out, strings.ReplaceAll(m, `"`, ""))
	}
	return out
}

// DefaultPlatforms are the platforms a release image is built for.
var DefaultPlatforms = []string{"linux/amd64", "linux/arm64"}

// Env is the PATH distroless sets; the binaries need nothing else.
var Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}

// Project is the repository's image: one per platform, built from one source tree.
type Project struct {
	Dockerfile *Dockerfile
	Index      v1.ImageIndex
	// Binaries per platform ("linux/amd64"), image path -> file on this machine.
	Binaries map[string]map[string]string
}

// ProjectOptions say what BuildProject builds.
type ProjectOptions struct {
	// RepoRoot is the source tree (with its Dockerfile) to build.
	RepoRoot string
	// Platforms, e.g. "linux/amd64"; DefaultPlatforms when empty.
	Platforms []string
	// BinDir receives the binaries of a platform; BinDir(bin) puts them in
	// bin/<os>_<arch>.
	BinDir func(platform v1.Platform) string
	// Labels go into every image's config (e.g. org.opencontainers.image.version).
	Labels map[string]string
}

// PlatformBinDir puts a platform's binaries in bin/<os>_<arch>[_<variant>].
func PlatformBinDir(bin string) func(v1.Platform) string {
	return func(p v1.Platform) string {
		return filepath.Join(bin, strings.Join(strings.Fields(p.OS+" "+p.Architecture+" "+p.Variant), "_"))
	}
}

// BuildProject compiles, for each platform, the binaries the Dockerfile's
// build stage compiles, with its flags and environment (CGO_ENABLED=0: static
// binaries), and lays them out as its runtime stage does on Base: one layer
// for the base (the same for every platform), one for the binaries.
func BuildProject(ctx context.Context, o ProjectOptions) (*Project, error) {
	df, err := ParseDockerfile(filepath.Join(o.RepoRoot, "Dockerfile"))
	if err != nil {
		return nil, err
	}
	base, err := Base(ctx)
	if err != nil {
		return nil, err
	}
	baseLayer, err := Layer(base)
	if err != nil {
		return nil, err
	}
	platforms := o.Platforms
	if len(platforms) == 0 {
		platforms = DefaultPlatforms
	}
	dests := make([]string, 0, len(df.Packages))
	for dest, pkg := range df.Packages {
		if path.Base(dest) != path.Base(pkg) {
			return nil, fmt.Errorf("Dockerfile builds %s into %s: want the command's own name", pkg, dest)
		}
		dests = append(dests, dest)
	}
	sort.Strings(dests)
	p := &Project{Dockerfile: df, Binaries: map[string]map[string]string{}}
	var images []v1.Image
	for _, s := range platforms {
		plat, err := Platform(s)
		if err != nil {
			return nil, err
		}
		dir, err := filepath.Abs(o.BinDir(plat))
		if err != nil {
			return nil, err
		}
		pkgs := make([]string, len(dests))
		files := Files{}
		bins := map[string]string{}
		for i, dest := range dests {
			pkgs[i] = df.Packages[dest]
			bins[dest] = filepath.Join(dir, path.Base(dest))
			files[dest] = File{Mode: 0o755, Src: bins[dest]}
		}
		if err := goBuild(ctx, o.RepoRoot, plat, df, dir, pkgs); err != nil {
			return nil, err
		}
		appLayer, err := Layer(files)
		if err != nil {
			return nil, err
		}
		img, err := Image(plat, Config{User: df.User, Entrypoint: df.Entrypoint, WorkingDir: df.WorkingDir, Env: Env, Labels: o.Labels},
			baseLayer, appLayer)
		if err != nil {
			return nil, err
		}
		images = append(images, img)
		p.Binaries[s] = bins
	}
	p.Index, err = Index(images...)
	return p, err
}

// goBuild runs the Dockerfile's go build for plat in root, in one go
// command (the build cache makes a repeat cheap). GOAMD64/GOARM64 are
// pinned to Go's defaults so an environment that sets them cannot change
// the image.
func goBuild(ctx context.Context, root string, plat v1.Platform, df *Dockerfile, dir string, pkgs []string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	args := append(append([]string{"build"}, df.BuildFlags...), "-o", dir+string(filepath.Separator))
	args = append(args, pkgs...)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	cmd.Env = append(append(os.Environ(), df.BuildEnv...),
		"GOOS="+plat.OS, "GOARCH="+plat.Architecture, "GOAMD64=v1", "GOARM64=v8.0", "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s go %s: %v\n%s", plat, strings.Join(args, " "), err, out)
	}
	return nil
}
