package ociimage

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func TestParseDockerfileOfRepository(t *testing.T) {
	df, err := ParseDockerfile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	// This pins the parse of the repository's Dockerfile, so a change to
	// its stages (paths, user, entrypoint, static build) that the parser
	// would misread fails here; TestProjectImage checks the built image
	// against whatever the parse says.
	want := &Dockerfile{
		Packages:   map[string]string{"/manager": "./cmd/manager", "/receiver": "./cmd/receiver", "/intuned-sim": "./cmd/intuned-sim"},
		BuildFlags: []string{"-trimpath", "-ldflags=-s -w"},
		BuildEnv:   []string{"CGO_ENABLED=0"},
		User:       "65532:65532",
		Entrypoint: []string{"/manager"},
		WorkingDir: "/",
	}
	if !reflect.DeepEqual(df, want) {
		t.Fatalf("Dockerfile parsed as\n%+v\nwant\n%+v", df, want)
	}
}

func TestFilesArchiveIsReproducibleAndReadable(t *testing.T) {
	dir := t.TempDir()
	files := Files{"/bin/hello": {Mode: 0o755, Data: []byte("hi")}, "/tmp": {Mode: 0o1777}}
	cfg := Config{User: "65532:65532", Entrypoint: []string{"/bin/hello"}}
	a, b := filepath.Join(dir, "a.tar"), filepath.Join(dir, "b.tar")
	const ref = "kcluster.local/t:1"
	da, err := WriteFilesArchive(a, ref, "linux/arm64", files, cfg)
	if err != nil {
		t.Fatal(err)
	}
	db, err := WriteFilesArchive(b, ref, "linux/arm64", files, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ab, _ := os.ReadFile(a)
	bb, _ := os.ReadFile(b)
	if da != db || !bytes.Equal(ab, bb) {
		t.Fatalf("two archives of the same inputs differ (%s, %s)", da, db)
	}
	gotRef, idx, err := ReadArchive(a, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := idx.Digest(); gotRef != ref || d != da {
		t.Fatalf("archive names %s %s, want %s %s", gotRef, d, ref, da)
	}
	imgs := platformImages(t, idx)
	img := imgs["linux/arm64"]
	if img == nil || len(imgs) != 1 {
		t.Fatalf("index platforms %v, want linux/arm64", imgs)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.User != cfg.User || !reflect.DeepEqual(cf.Config.Entrypoint, cfg.Entrypoint) || !cf.Created.Time.Equal(Epoch) {
		t.Fatalf("config = %+v", cf)
	}
	entries := layerEntries(t, img, 0)
	var names []string
	for _, h := range entries {
		names = append(names, h.Name)
		if h.Uid != 0 || h.Gid != 0 || !h.ModTime.Equal(Epoch) {
			t.Errorf("%s: owner %d:%d mtime %s, want root and the epoch", h.Name, h.Uid, h.Gid, h.ModTime)
		}
	}
	if got := strings.Join(names, ","); got != "bin/,bin/hello,tmp/" {
		t.Fatalf("layer entries %s", got)
	}
	if entries[2].Mode != 0o1777 {
		t.Errorf("/tmp mode %o, want 1777", entries[2].Mode)
	}
}

// platformImages are idx's images by "os/arch".
func platformImages(t *testing.T, idx v1.ImageIndex) map[string]v1.Image {
	t.Helper()
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.MediaType != types.OCIImageIndex {
		t.Errorf("index media type %s", m.MediaType)
	}
	out := map[string]v1.Image{}
	for _, d := range m.Manifests {
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		if d.MediaType != types.OCIManifestSchema1 || d.Platform == nil {
			t.Fatalf("manifest %s: media type %s platform %v", d.Digest, d.MediaType, d.Platform)
		}
		out[d.Platform.String()] = img
	}
	return out
}

// layerEntries are the tar headers of img's i-th layer (with content in
// Xattrs-free headers; content read by layerFile).
func layerEntries(t *testing.T, img v1.Image, i int) []*tar.Header {
	t.Helper()
	var out []*tar.Header
	walkLayer(t, img, i, func(h *tar.Header, _ io.Reader) { out = append(out, h) })
	return out
}

func walkLayer(t *testing.T, img v1.Image, i int, f func(*tar.Header, io.Reader)) {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if mt, _ := layers[i].MediaType(); mt != types.OCILayer {
		t.Errorf("layer media type %s", mt)
	}
	rc, err := layers[i].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		f(h, tr)
	}
}

// A multi-platform index as BuildProject writes it: one image per platform,
// each found by its platform, sharing the base layer.
func TestIndexOfPlatforms(t *testing.T) {
	base, err := Layer(Files{"/etc/passwd": {Mode: 0o644, Data: []byte("root:x:0:0::/:\n")}})
	if err != nil {
		t.Fatal(err)
	}
	var images []v1.Image
	for _, s := range DefaultPlatforms {
		plat, err := Platform(s)
		if err != nil {
			t.Fatal(err)
		}
		app, err := Layer(Files{"/app": {Mode: 0o755, Data: []byte("binary for " + s)}})
		if err != nil {
			t.Fatal(err)
		}
		img, err := Image(plat, Config{User: NonrootUser, Entrypoint: []string{"/app"}}, base, app)
		if err != nil {
			t.Fatal(err)
		}
		images = append(images, img)
	}
	idx, err := Index(images...)
	if err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(t.TempDir(), "index.tar")
	if _, err := WriteArchive(archive, "example.com/multi:v1", idx); err != nil {
		t.Fatal(err)
	}
	_, got, err := ReadArchive(archive, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	imgs := platformImages(t, got)
	baseDigest, _ := base.Digest()
	for _, s := range DefaultPlatforms {
		img := imgs[s]
		if img == nil {
			t.Fatalf("no image for %s in %v", s, imgs)
		}
		cf, _ := img.ConfigFile()
		layers, _ := img.Layers()
		if d, _ := layers[0].Digest(); cf.Platform().String() != s || d != baseDigest {
			t.Errorf("%s: config platform %s, base layer %s (want %s)", s, cf.Platform(), d, baseDigest)
		}
		var data []byte
		walkLayer(t, img, 1, func(h *tar.Header, r io.Reader) { data, _ = io.ReadAll(r) })
		if string(data) != "binary for "+s {
			t.Errorf("%s runs %q", s, data)
		}
	}
}
