package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	cdx "github.com/CycloneDX/cyclonedx-go"
	packageurl "github.com/package-url/packageurl-go"

	"github.com/intuned-operator/intuned-operator/internal/ociimage"
	"github.com/intuned-operator/intuned-operator/internal/testutil/proc"
)

// A release into a temporary directory, checked as a user would: the
// checksums hold, the manifests run the image by its digest, the archive
// holds the index of that digest with every platform, the SBOM names it,
// and crane pushes it as docs/release.md says.
func TestRelease(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles the binaries for every platform")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	const version = "v0.0.1-test.1"
	ref := "example.com/intuned-operator:" + version
	var log bytes.Buffer
	platforms := testPlatforms()
	if err := Run(context.Background(), Options{Root: root, Out: out, Version: version, Ref: ref, Platforms: platforms}, &log); err != nil {
		t.Fatal(err)
	}
	t.Logf("release:\n%s", log.String())

	// SHA256SUMS covers every other file, and each sum holds.
	sums, err := os.ReadFile(filepath.Join(out, SumsFile))
	if err != nil {
		t.Fatal(err)
	}
	var summed []string
	for _, l := range strings.Split(strings.TrimSpace(string(sums)), "\n") {
		sum, name, ok := strings.Cut(l, "  ")
		if !ok {
			t.Fatalf("SHA256SUMS line %q", l)
		}
		if got, err := fileSHA256(filepath.Join(out, name)); err != nil || got != sum {
			t.Errorf("%s: sha256 %s, SHA256SUMS says %s (%v)", name, got, sum, err)
		}
		summed = append(summed, name)
	}
	chartFile := "intuned-operator-" + strings.TrimPrefix(version, "v") + ".tgz"
	want := append([]string{DigestFile, RefFile, ImageArchive, SBOMFile, chartFile}, installers...)
	sort.Strings(want)
	if !reflect.DeepEqual(summed, want) {
		t.Errorf("SHA256SUMS lists %v, want %v", summed, want)
	}

	// The archive holds the index image.digest names, for every platform.
	digestFile, err := os.ReadFile(filepath.Join(out, DigestFile))
	if err != nil {
		t.Fatal(err)
	}
	digest := strings.TrimSpace(string(digestFile))
	gotRef, idx, err := ociimage.ReadArchive(filepath.Join(out, ImageArchive), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	d, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if gotRef != ref || d.String() != digest {
		t.Fatalf("archive holds %s %s; the release says %s %s", gotRef, d, ref, digest)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, desc := range m.Manifests {
		got = append(got, desc.Platform.String())
	}
	if !reflect.DeepEqual(got, platforms) {
		t.Errorf("index platforms %v, want %v", got, platforms)
	}

	// The manifests run the image by digest, and nothing else.
	pinned := "example.com/intuned-operator@" + digest
	for _, f := range []string{"install.yaml", "install-namespaced.yaml"} {
		b, err := os.ReadFile(filepath.Join(out, f))
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(string(b), "\n") {
			if img, ok := strings.CutPrefix(strings.TrimSpace(l), "image: "); ok && img != pinned {
				t.Errorf("%s runs %s, want %s", f, img, pinned)
			}
		}
		if !strings.Contains(string(b), "image: "+pinned) {
			t.Errorf("%s does not run %s", f, pinned)
		}
	}

	// The SBOM names the image by that digest.
	sb, err := os.ReadFile(filepath.Join(out, SBOMFile))
	if err != nil {
		t.Fatal(err)
	}
	var bom cdx.BOM
	if err := cdx.NewBOMDecoder(bytes.NewReader(sb), cdx.BOMFileFormatJSON).Decode(&bom); err != nil {
		t.Fatal(err)
	}
	c := bom.Metadata.Component
	if purl, err := packageurl.FromString(c.PackageURL); err != nil || c.Version != version || purl.Version != digest {
		t.Errorf("SBOM describes %s %s (%v), want %s at %s", c.Version, c.PackageURL, err, version, digest)
	}

	// The chart's default image is this one, by digest.
	values := chartValues(t, filepath.Join(out, chartFile))
	for _, line := range []string{"  repository: example.com/intuned-operator", `  digest: "` + digest + `"`} {
		if !strings.Contains(values, "\n"+line+"\n") {
			t.Errorf("the chart's values.yaml has no line %q", line)
		}
	}

	pushWithCrane(t, out, digest, platforms)
}

// chartValues is values.yaml of a packaged chart.
func chartValues(t *testing.T, tgz string) string {
	t.Helper()
	f, err := os.Open(tgz)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("%s: no values.yaml (%v)", tgz, err)
		}
		if h.Name == "intuned-operator/values.yaml" {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			return string(b)
		}
	}
}

// testPlatforms are the platforms TestRelease builds: this machine's by
// default, since cross-compiling linux/arm64 the first time compiles every
// dependency again (docs/release.md "Cost": half an hour on a loaded 2-core
// machine); RELEASE_TEST_PLATFORMS=linux/amd64,linux/arm64 builds what
// `make release` builds. ociimage's tests write a two-platform index.
func testPlatforms() []string {
	if s := os.Getenv("RELEASE_TEST_PLATFORMS"); s != "" {
		return strings.Split(s, ",")
	}
	return []string{"linux/" + runtime.GOARCH}
}

// CraneVersion is the crane docs/release.md tells users to run.
const CraneVersion = "v0.22.1"

// pushWithCrane does what docs/release.md says: unpack the archive, crane
// push it (to crane's own registry on loopback), and the registry holds the
// index under image.digest, with the non-root config for each platform.
func pushWithCrane(t *testing.T, out, digest string, platforms []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	bin := t.TempDir()
	install := exec.CommandContext(ctx, "go", "install", "github.com/google/go-containerregistry/cmd/crane@"+CraneVersion)
	install.Env = append(os.Environ(), "GOBIN="+bin)
	if b, err := install.CombinedOutput(); err != nil {
		t.Fatalf("go install crane: %v\n%s", err, b)
	}
	crane := filepath.Join(bin, "crane")
	addr, err := proc.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	reg, err := proc.Start(proc.Spec{Name: "crane-registry", Path: crane, Args: []string{"registry", "serve", "--address", addr},
		LogFile: filepath.Join(t.TempDir(), "registry.log")})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Kill()
	if err := proc.WaitHTTPOK(ctx, "http://"+addr+"/v2/", reg.Done()); err != nil {
		t.Fatalf("%v\n%s", err, reg.LogTail(2000))
	}
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, crane, args...)
		cmd.Dir = out
		b, err := cmd.Output()
		if err != nil {
			t.Fatalf("crane %s: %v", strings.Join(args, " "), err)
		}
		return strings.TrimSpace(string(b))
	}
	layoutDir := filepath.Join(out, "oci")
	if err := os.Mkdir(layoutDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command("tar", "-xf", filepath.Join(out, ImageArchive), "-C", layoutDir).CombinedOutput(); err != nil {
		t.Fatalf("tar: %v\n%s", err, b)
	}
	ref := addr + "/intuned-operator:v1"
	if got := run("push", "oci", ref); got != addr+"/intuned-operator@"+digest {
		t.Errorf("crane push printed %s, want the digest %s", got, digest)
	}
	if got := run("digest", ref); got != digest {
		t.Errorf("crane digest %s, image.digest %s", got, digest)
	}
	for _, plat := range platforms {
		var cfg struct {
			Architecture string
			Config       struct{ User string }
		}
		if err := json.Unmarshal([]byte(run("config", "--platform", plat, ref)), &cfg); err != nil {
			t.Fatal(err)
		}
		if "linux/"+cfg.Architecture != plat || cfg.Config.User != ociimage.NonrootUser {
			t.Errorf("%s config: %+v", plat, cfg)
		}
	}
}
