package ociimage

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/x509"
	"debug/buildinfo"
	"debug/elf"
	"encoding/pem"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	cdx "github.com/CycloneDX/cyclonedx-go"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	packageurl "github.com/package-url/packageurl-go"
)

// testPlatforms are the platforms TestProjectImage builds: the machine's
// own by default. Cross-compiling linux/arm64 the first time compiles every
// dependency again (minutes; docs/release.md): OCIIMAGE_TEST_PLATFORMS=
// linux/amd64,linux/arm64 checks both, as `make release` builds them.
func testPlatforms() []string {
	if s := os.Getenv("OCIIMAGE_TEST_PLATFORMS"); s != "" {
		return strings.Split(s, ",")
	}
	return []string{"linux/amd64"}
}

// The project image, built twice from this tree into two directories: the
// same digest (reproducible), and what the Dockerfile describes.
func TestProjectImage(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles the binaries")
	}
	ctx := context.Background()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	platforms := testPlatforms()
	var projects []*Project
	var archives [][]byte
	for i := range 2 {
		dir := t.TempDir()
		p, err := BuildProject(ctx, ProjectOptions{RepoRoot: root, Platforms: platforms, BinDir: PlatformBinDir(dir)})
		if err != nil {
			t.Fatal(err)
		}
		archive := filepath.Join(dir, "image.tar")
		if _, err := WriteArchive(archive, "example.com/intuned-operator:test", p.Index); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(archive)
		if err != nil {
			t.Fatal(err)
		}
		projects, archives = append(projects, p), append(archives, b)
		d, _ := p.Index.Digest()
		t.Logf("build %d: index %s, archive %d bytes", i+1, d, len(b))
	}
	da, _ := projects[0].Index.Digest()
	db, _ := projects[1].Index.Digest()
	if da != db || !bytes.Equal(archives[0], archives[1]) {
		t.Fatalf("two builds of the same tree differ: %s and %s", da, db)
	}

	p := projects[0]
	df := p.Dockerfile
	imgs := platformImages(t, p.Index)
	if len(imgs) != len(platforms) {
		t.Fatalf("index has %d images, want %v", len(imgs), platforms)
	}
	for _, plat := range platforms {
		img := imgs[plat]
		if img == nil {
			t.Fatalf("no image for %s", plat)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cf.Config.User != df.User || !reflect.DeepEqual(cf.Config.Entrypoint, df.Entrypoint) || cf.Config.WorkingDir != df.WorkingDir {
			t.Errorf("%s config user %q entrypoint %q workdir %q; the Dockerfile says %q %q %q",
				plat, cf.Config.User, cf.Config.Entrypoint, cf.Config.WorkingDir, df.User, df.Entrypoint, df.WorkingDir)
		}
		// The binaries layer holds exactly the Dockerfile's binaries, each
		// built with its flags and environment (as the binary records them).
		var got []string
		walkLayer(t, img, 1, func(h *tar.Header, r io.Reader) {
			if h.Typeflag == tar.TypeDir {
				return
			}
			got = append(got, "/"+h.Name)
			checkBuild(t, plat, h.Name, r, df)
		})
		var want []string
		for dest := range df.Packages {
			want = append(want, dest)
		}
		sort.Strings(want)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s binaries %v, the Dockerfile copies %v", plat, got, want)
		}
		checkBase(t, img)
	}
	checkSBOM(t, root, p)
}

// checkBuild reads a binary's build info: the Dockerfile's go build flags
// and ENV, for the image's platform.
func checkBuild(t *testing.T, plat, name string, r io.Reader, df *Dockerfile) {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), path.Base(name))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(f, r); err != nil {
		t.Fatal(err)
	}
	f.Close()
	bi, err := buildinfo.ReadFile(f.Name())
	if err != nil {
		t.Fatalf("%s %s: %v", plat, name, err)
	}
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	want := map[string]string{"GOOS": strings.Split(plat, "/")[0], "GOARCH": strings.Split(plat, "/")[1]}
	for _, e := range df.BuildEnv {
		k, v, _ := strings.Cut(e, "=")
		want[k] = v
	}
	for _, flag := range df.BuildFlags {
		k, v, ok := strings.Cut(flag, "=")
		if !ok {
			v = "true"
		}
		if k == "-ldflags" {
			// With -trimpath, go build does not record -ldflags: check
			// their effect on the ELF file instead.
			checkLinkFlags(t, plat, name, f.Name(), strings.Fields(v))
			continue
		}
		want[k] = v
	}
	for k, v := range want {
		if settings[k] != v {
			t.Errorf("%s /%s built with %s=%q, the Dockerfile says %q", plat, name, k, settings[k], v)
		}
	}
	if "./"+bi.Path[strings.Index(bi.Path, "cmd/"):] != df.Packages["/"+name] {
		t.Errorf("%s /%s is %s, the Dockerfile builds %s", plat, name, bi.Path, df.Packages["/"+name])
	}
}

// checkLinkFlags: -s leaves no symbol table, -w no DWARF.
func checkLinkFlags(t *testing.T, plat, name, file string, flags []string) {
	t.Helper()
	ef, err := elf.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer ef.Close()
	for _, flag := range flags {
		var section string
		switch flag {
		case "-s":
			section = ".symtab"
		case "-w":
			section = ".debug_info"
		default:
			t.Errorf("the Dockerfile links with %s, which this test cannot check", flag)
			continue
		}
		if ef.Section(section) != nil || ef.Section(strings.Replace(section, ".debug_", ".zdebug_", 1)) != nil {
			t.Errorf("%s /%s has %s: not linked with %s", plat, name, section, flag)
		}
	}
}

// checkBase: the nonroot user, /tmp, CA certificates Go can parse, the
// time zone database.
func checkBase(t *testing.T, img v1.Image) {
	t.Helper()
	content := map[string][]byte{}
	modes := map[string]int64{}
	walkLayer(t, img, 0, func(h *tar.Header, r io.Reader) {
		b, _ := io.ReadAll(r)
		content["/"+strings.TrimSuffix(h.Name, "/")] = b
		modes["/"+strings.TrimSuffix(h.Name, "/")] = h.Mode
	})
	if !strings.Contains(string(content["/etc/passwd"]), "nonroot:x:65532:65532:") || modes["/tmp"] != 0o1777 {
		t.Errorf("no nonroot user or world-writable /tmp: passwd %q, /tmp %o", content["/etc/passwd"], modes["/tmp"])
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(content[CACertificates]) || strings.Count(string(content[CACertificates]), "BEGIN CERTIFICATE") < 100 {
		t.Errorf("%s holds %d certificates", CACertificates, strings.Count(string(content[CACertificates]), "BEGIN CERTIFICATE"))
	}
	if b, _ := pem.Decode(content[CACertificates]); b == nil {
		t.Errorf("%s is not PEM", CACertificates)
	}
	loc, err := time.LoadLocationFromTZData("Europe/Berlin", content[ZoneInfo+"/Europe/Berlin"])
	if err != nil || time.Date(2026, 7, 1, 12, 0, 0, 0, loc).Format("MST") != "CEST" {
		t.Errorf("%s/Europe/Berlin: %v", ZoneInfo, err)
	}
}

// checkSBOM: the SBOM parses as CycloneDX, names the image by digest and
// lists every module compiled into the binaries at go.mod's version.
func checkSBOM(t *testing.T, root string, p *Project) {
	t.Helper()
	data, err := SBOM(p, SBOMOptions{Name: "example.com/intuned-operator", Version: "v0.0.0-test"})
	if err != nil {
		t.Fatal(err)
	}
	var bom cdx.BOM
	if err := cdx.NewBOMDecoder(bytes.NewReader(data), cdx.BOMFileFormatJSON).Decode(&bom); err != nil {
		t.Fatal(err)
	}
	digest, _ := p.Index.Digest()
	if bom.Metadata == nil || bom.Metadata.Component == nil {
		t.Fatal("SBOM has no metadata.component")
	}
	if purl, err := packageurl.FromString(bom.Metadata.Component.PackageURL); err != nil || purl.Version != digest.String() {
		t.Fatalf("SBOM names the image %s (%v), want %s", bom.Metadata.Component.PackageURL, err, digest)
	}
	listed := map[string]string{}
	for _, c := range *bom.Components {
		if c.Type == cdx.ComponentTypeLibrary {
			listed[c.Name] = c.Version
		}
	}
	// go.mod's build list: what every dependency's version must be.
	cmd := exec.Command("go", "list", "-m", "all")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	buildList := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(l); len(f) >= 2 {
			buildList[f[0]] = f[1]
		}
	}
	n := 0
	for _, bins := range p.Binaries {
		for _, file := range bins {
			bi, err := buildinfo.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range bi.Deps {
				n++
				if listed[m.Path] == "" || listed[m.Path] != buildList[m.Path] {
					t.Errorf("SBOM lists %s at %q; go.mod's build list has %q", m.Path, listed[m.Path], buildList[m.Path])
				}
			}
		}
	}
	if n == 0 {
		t.Fatal("the binaries record no modules")
	}
	t.Logf("SBOM: %d bytes, %d components", len(data), len(*bom.Components))
}
