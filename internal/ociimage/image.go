// Package ociimage builds this repository's container images without Docker,
// with go-containerregistry: layers from a map of files, an OCI config, a
// multi-platform OCI image index, written as an OCI image layout in a tar
// archive (what `ctr images import`, `docker load`, `skopeo copy oci-archive:`
// and, unpacked, `crane push` read).
//
// Everything is reproducible: files are written in sorted order, owned by
// root, with a fixed mtime, and no timestamp of the build enters a config or
// a manifest, so the same inputs give the same digests.
package ociimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Epoch is every file's mtime and every config's creation time.
var Epoch = time.Unix(0, 0).UTC()

// File is one entry of a layer. One with neither Src nor Data is a directory.
type File struct {
	Mode int64  // permission bits (with the sticky bit for /tmp)
	Src  string // file on this machine to copy, or
	Data []byte // the content itself
}

// Files maps absolute paths in the image to their content. Parent
// directories are added (0755) where the map has none.
type Files map[string]File

// Config is the part of an OCI image config that matters to a container.
type Config struct {
	User       string
	Entrypoint []string
	Cmd        []string
	Env        []string
	WorkingDir string
	Labels     map[string]string
}

// Platform parses "linux/amd64" (os/arch[/variant]).
func Platform(s string) (v1.Platform, error) {
	p, err := v1.ParsePlatform(s)
	if err != nil {
		return v1.Platform{}, err
	}
	if p.OS == "" || p.Architecture == "" {
		return v1.Platform{}, fmt.Errorf("platform %q: want os/arch", s)
	}
	return *p, nil
}

// Layer is an OCI (gzip) layer holding files.
func Layer(files Files) (v1.Layer, error) {
	data, err := layerTar(files)
	if err != nil {
		return nil, err
	}
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil },
		tarball.WithMediaType(types.OCILayer), tarball.WithCompressionLevel(gzip.DefaultCompression), tarball.WithCompressedCaching)
}

// Image is an OCI image for platform of the layers in order, with cfg.
func Image(platform v1.Platform, cfg Config, layers ...v1.Layer) (v1.Image, error) {
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.ConfigFile(img, &v1.ConfigFile{
		Architecture: platform.Architecture,
		OS:           platform.OS,
		Variant:      platform.Variant,
		Created:      v1.Time{Time: Epoch},
		Config: v1.Config{
			User: cfg.User, Entrypoint: cfg.Entrypoint, Cmd: cfg.Cmd, Env: cfg.Env,
			WorkingDir: cfg.WorkingDir, Labels: cfg.Labels,
		},
		RootFS: v1.RootFS{Type: "layers"},
	})
	if err != nil {
		return nil, err
	}
	adds := make([]mutate.Addendum, len(layers))
	for i, l := range layers {
		adds[i] = mutate.Addendum{Layer: l, MediaType: types.OCILayer,
			History: v1.History{Created: v1.Time{Time: Epoch}, CreatedBy: "intuned-operator internal/ociimage"}}
	}
	return mutate.Append(img, adds...)
}

// Index is an OCI image index of images, each described by the platform
// of its config (so a runtime picks its own).
func Index(images ...v1.Image) (v1.ImageIndex, error) {
	adds := make([]mutate.IndexAddendum, len(images))
	for i, img := range images {
		cf, err := img.ConfigFile()
		if err != nil {
			return nil, err
		}
		adds[i] = mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: cf.Platform()}}
	}
	return mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), adds...), nil
}

// Annotations of the index.json entry: the OCI image layout's name of the
// image (its tag) and the full name containerd imports it under.
const (
	annotationRefName   = "org.opencontainers.image.ref.name"
	annotationImageName = "io.containerd.image.name"
)

// WriteArchive writes idx as an OCI image layout in a tar archive at out,
// its index.json naming it ref (a full reference such as
// ghcr.io/org/image:v1): containerd imports it under that name. It returns
// the digest of idx, the image's digest in any registry it is pushed to.
func WriteArchive(out, ref string, idx v1.ImageIndex) (v1.Hash, error) {
	digest, err := idx.Digest()
	if err != nil {
		return v1.Hash{}, err
	}
	tag, err := name.NewTag(ref, name.StrictValidation)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("image reference %q: want a full registry/repository:tag: %w", ref, err)
	}
	top := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), mutate.IndexAddendum{
		Add: idx,
		Descriptor: v1.Descriptor{Annotations: map[string]string{
			// The OCI name of the entry (the tag) and containerd's full name.
			annotationRefName:   tag.TagStr(),
			annotationImageName: ref,
		}},
	})
	dir, err := os.MkdirTemp(filepath.Dir(out), ".oci-layout-")
	if err != nil {
		return v1.Hash{}, err
	}
	defer os.RemoveAll(dir)
	if _, err := layout.Write(dir, top); err != nil {
		return v1.Hash{}, err
	}
	return digest, tarDir(dir, out)
}

// tarDir writes dir's regular files to a tar archive at out, sorted, owned
// by root, with a fixed mtime.
func tarDir(dir, out string) error {
	var names []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		names = append(names, filepath.ToSlash(rel))
		return err
	})
	if err != nil {
		return err
	}
	sort.Strings(names)
	tmp := out + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	tw := tar.NewWriter(f)
	written := map[string]bool{}
	for _, name := range names {
		for _, d := range parents(name) {
			if !written[d] {
				written[d] = true
				if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755, ModTime: Epoch, Format: tar.FormatPAX}); err != nil {
					return err
				}
			}
		}
		if err := copyInto(tw, filepath.Join(dir, filepath.FromSlash(name)), name, 0o644); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, out)
}

// parents of a slash path, outermost first ("a/b/c" -> a, a/b).
func parents(name string) []string {
	var out []string
	for d := path.Dir(name); d != "." && d != "/"; d = path.Dir(d) {
		out = append([]string{d}, out...)
	}
	return out
}

func copyInto(tw *tar.Writer, src, name string, mode int64) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: st.Size(), ModTime: Epoch, Format: tar.FormatPAX}); err != nil {
		return err
	}
	_, err = io.Copy(tw, f)
	return err
}

// layerTar is the uncompressed tar of a layer: every path and its parents,
// sorted, owned by root, with a fixed mtime.
func layerTar(files Files) ([]byte, error) {
	names := make([]string, 0, len(files))
	seen := map[string]bool{}
	for name := range files {
		if !path.IsAbs(name) || path.Clean(name) != name {
			return nil, fmt.Errorf("image path %q is not absolute and clean", name)
		}
		rel := strings.TrimPrefix(name, "/")
		for _, d := range append(parents(rel), rel) {
			if !seen[d] {
				seen[d] = true
				names = append(names, d)
			}
		}
	}
	sort.Strings(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, rel := range names {
		f, ok := files["/"+rel]
		switch {
		case !ok || (f.Src == "" && f.Data == nil):
			mode := int64(0o755)
			if ok {
				mode = f.Mode
			}
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: rel + "/", Mode: mode, ModTime: Epoch, Format: tar.FormatPAX}); err != nil {
				return nil, err
			}
		case f.Src != "":
			if err := copyInto(tw, f.Src, rel, f.Mode); err != nil {
				return nil, err
			}
		default:
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: rel, Mode: f.Mode, Size: int64(len(f.Data)), ModTime: Epoch, Format: tar.FormatPAX}); err != nil {
				return nil, err
			}
			if _, err := tw.Write(f.Data); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// WriteFilesArchive writes a one-layer image of files with cfg for platform
// (e.g. "linux/amd64") as an archive named ref: the small single-binary
// images the test cluster and benchmarks run beside the project image.
func WriteFilesArchive(out, ref, platform string, files Files, cfg Config) (v1.Hash, error) {
	plat, err := Platform(platform)
	if err != nil {
		return v1.Hash{}, err
	}
	layer, err := Layer(files)
	if err != nil {
		return v1.Hash{}, err
	}
	img, err := Image(plat, cfg, layer)
	if err != nil {
		return v1.Hash{}, err
	}
	idx, err := Index(img)
	if err != nil {
		return v1.Hash{}, err
	}
	return WriteArchive(out, ref, idx)
}

// ReadArchive unpacks an archive WriteArchive wrote into dir (an OCI image
// layout, what `crane push DIR REF` pushes) and returns the reference it
// names and its image index.
func ReadArchive(archive, dir string) (string, v1.ImageIndex, error) {
	f, err := os.Open(archive)
	if err != nil {
		return "", nil, err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", nil, err
		}
		name := filepath.Join(dir, filepath.FromSlash(path.Clean("/"+h.Name)))
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(name, 0o755)
		case tar.TypeReg:
			var out *os.File
			if out, err = os.Create(name); err == nil {
				_, err = io.Copy(out, tr)
				if cerr := out.Close(); err == nil {
					err = cerr
				}
			}
		default:
			err = fmt.Errorf("%s: unexpected entry %s", archive, h.Name)
		}
		if err != nil {
			return "", nil, err
		}
	}
	top, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return "", nil, err
	}
	m, err := top.IndexManifest()
	if err != nil {
		return "", nil, err
	}
	if len(m.Manifests) != 1 || m.Manifests[0].MediaType != types.OCIImageIndex {
		return "", nil, fmt.Errorf("%s: index.json should name one image index, has %+v", archive, m.Manifests)
	}
	idx, err := top.ImageIndex(m.Manifests[0].Digest)
	return m.Manifests[0].Annotations[annotationImageName], idx, err
}
