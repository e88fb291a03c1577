// Command release builds the operator's image and release artifacts without
// Docker (docs/release.md).
//
//	go run ./hack/release -version v1.2.3 [-repo ghcr.io/intuned-operator/intuned-operator] [-out dist/release]
//	    writes dist/release/v1.2.3/: the multi-platform OCI image archive, its
//	    index digest, the install manifests with the image pinned by digest,
//	    the SBOM and SHA256SUMS (make release VERSION=v1.2.3)
//	go run ./hack/release -image ghcr.io/org/intuned-operator:dev [-out dist/image]
//	    writes only the image archive, its digest and SBOM (make image IMG=...)
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/intuned-operator/intuned-operator/internal/ociimage"
)

// DefaultRepo is where releases are published.
const DefaultRepo = "ghcr.io/intuned-operator/intuned-operator"

// Options say what to build and where.
type Options struct {
	Root      string   // repository root (with go.mod, Dockerfile, Makefile)
	Out       string   // directory the artifacts go into (created; emptied first)
	Version   string   // vX.Y.Z for a release; empty for an image only
	Ref       string   // the image reference; repo:version for a release
	Platforms []string // ociimage.DefaultPlatforms when empty
}

// Artifact names inside Out.
const (
	ImageArchive = "intuned-operator.oci.tar"
	DigestFile   = "image.digest" // sha256:... of the image index
	RefFile      = "image.ref"    // repo@sha256:..., what the manifests run
	SBOMFile     = "intuned-operator.sbom.cdx.json"
	SumsFile     = "SHA256SUMS"
)

// installers are what `make installer` writes beside install.yaml.
var installers = []string{"install.yaml", "install-namespaced.yaml", "admission-policy.yaml", "admission-policy-namespaced.yaml"}

func main() {
	var o Options
	var platforms string
	flag.StringVar(&o.Version, "version", "", "release version vX.Y.Z (writes the full release)")
	repo := flag.String("repo", DefaultRepo, "image repository of a release (tagged with -version)")
	flag.StringVar(&o.Ref, "image", "", "image reference (repo:tag) to build without a release")
	flag.StringVar(&o.Out, "out", "", "output directory (default dist/release/VERSION, or dist/image)")
	flag.StringVar(&platforms, "platforms", strings.Join(ociimage.DefaultPlatforms, ","), "comma-separated os/arch list")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	// make runs this in the repository root.
	if o.Root, err = filepath.Abs("."); err != nil {
		fail(err)
	}
	o.Platforms = strings.Split(platforms, ",")
	switch {
	case o.Version != "" && o.Ref == "":
		o.Ref = *repo + ":" + o.Version
		if o.Out == "" {
			o.Out = filepath.Join(o.Root, "dist", "release", o.Version)
		}
	case o.Version == "" && o.Ref != "":
		if o.Out == "" {
			o.Out = filepath.Join(o.Root, "dist", "image")
		}
	default:
		fail(fmt.Errorf("give -version (a release) or -image (an image only)"))
	}
	if err := Run(ctx, o, os.Stdout); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "release:", err)
	os.Exit(1)
}

var versionRe = regexp.MustCompile(`^v\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$`)

// Run writes the artifacts into o.Out and lists them on w.
func Run(ctx context.Context, o Options, w io.Writer) error {
	if o.Version != "" && !versionRe.MatchString(o.Version) {
		return fmt.Errorf("version %q: want vMAJOR.MINOR.PATCH[-PRERELEASE]", o.Version)
	}
	tag, err := name.NewTag(o.Ref, name.StrictValidation)
	if err != nil {
		return fmt.Errorf("image %q: want a full registry/repository:tag: %w", o.Ref, err)
	}
	if err := os.RemoveAll(o.Out); err != nil {
		return err
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return err
	}
	bin, err := os.MkdirTemp("", "release-bin-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(bin)

	// 1. The image: every platform's binaries, as the Dockerfile builds them.
	labels := map[string]string{"org.opencontainers.image.title": "intuned-operator"}
	if o.Version != "" {
		labels["org.opencontainers.image.version"] = o.Version
	}
	p, err := ociimage.BuildProject(ctx, ociimage.ProjectOptions{
		RepoRoot: o.Root, Platforms: o.Platforms, BinDir: ociimage.PlatformBinDir(bin), Labels: labels,
	})
	if err != nil {
		return err
	}
	digest, err := ociimage.WriteArchive(filepath.Join(o.Out, ImageArchive), o.Ref, p.Index)
	if err != nil {
		return err
	}
	repo := tag.Context().Name()
	pinned := repo + "@" + digest.String()
	if err := os.WriteFile(filepath.Join(o.Out, DigestFile), []byte(digest.String()+"\n"), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(o.Out, RefFile), []byte(pinned+"\n"), 0o644); err != nil {
		return err
	}

	// 2. Its SBOM, beside it.
	sbom, err := ociimage.SBOM(p, ociimage.SBOMOptions{Name: repo, Version: tag.TagStr()})
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(o.Out, SBOMFile), sbom, 0o644); err != nil {
		return err
	}

	if o.Version != "" {
		// 3. The install manifests, running the image by digest: the
		// Makefile's installer target, so they are what `make installer` writes.
		if err := renderInstallers(ctx, o.Root, o.Out, pinned); err != nil {
			return err
		}
		// 4. The Helm chart, its default image this one by digest (hack/chart:
		// the chart version is the release's without its "v").
		if err := packageChart(ctx, o.Root, o.Out, o.Version, repo, digest.String()); err != nil {
			return err
		}
	}

	// 5. Checksums of everything above, as sha256sum -c reads them.
	if err := writeSums(o.Out); err != nil {
		return err
	}
	fmt.Fprintf(w, "image %s\n  %s\n", o.Ref, pinned)
	entries, err := os.ReadDir(o.Out)
	if err != nil {
		return err
	}
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "%10d  %s\n", info.Size(), filepath.Join(o.Out, e.Name()))
	}
	return nil
}

func packageChart(ctx context.Context, root, out, version, repo, digest string) error {
	cmd := exec.CommandContext(ctx, "go", "run", "./hack/chart", "package",
		"-version", strings.TrimPrefix(version, "v"), "-app-version", version,
		"-repository", repo, "-digest", digest, "-out", out)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("hack/chart package: %w\n%s", err, b)
	}
	return nil
}

func renderInstallers(ctx context.Context, root, out, image string) error {
	cmd := exec.CommandContext(ctx, "make", "-s", "installer", "IMG="+image, "INSTALLER="+filepath.Join(out, "install.yaml"))
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("make installer: %w\n%s", err, b)
	}
	for _, f := range installers {
		b, err := os.ReadFile(filepath.Join(out, f))
		if err != nil {
			return err
		}
		if strings.Contains(f, "install") && !strings.Contains(string(b), "image: "+image) {
			return fmt.Errorf("%s does not run %s", f, image)
		}
	}
	return nil
}

// writeSums writes SHA256SUMS for every file in dir.
func writeSums(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var names []string
	for _, e := range entries {
		if e.Type().IsRegular() && e.Name() != SumsFile {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		sum, err := fileSHA256(filepath.Join(dir, n))
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s  %s\n", sum, n)
	}
	return os.WriteFile(filepath.Join(dir, SumsFile), []byte(b.String()), 0o644)
}

func fileSHA256(file string) (string, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
