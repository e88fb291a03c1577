package kcluster

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"sort"
	"strings"
	"time"
)

// ImageFile is one file of an image layer.
type ImageFile struct {
	Mode int64  // permission bits; directories are added for every parent
	Src  string // file on this machine to copy (or Data)
	Data []byte
}

// ImageConfig is the part of an OCI image config that matters to a Pod.
type ImageConfig struct {
	User       string
	Entrypoint []string
	Cmd        []string
	Env        []string
	WorkingDir string
}

// epoch is every file's mtime: the same inputs give the same image digest.
var epoch = time.Unix(0, 0).UTC()

// WriteDockerArchive writes a single-layer image in the format `docker save`
// writes (manifest.json, config, layer.tar), which `ctr images import` reads.
// Files are written in sorted order, owned by root, with a fixed mtime, so the
// archive is reproducible.
func WriteDockerArchive(out, tag string, files map[string]ImageFile, cfg ImageConfig) error {
	layer, err := buildLayer(files)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(layer)
	layerID := hex.EncodeToString(sum[:])
	config := map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"created":      epoch.Format(time.RFC3339),
		"config": map[string]any{
			"User": cfg.User, "Entrypoint": cfg.Entrypoint, "Cmd": cfg.Cmd, "Env": cfg.Env, "WorkingDir": cfg.WorkingDir,
		},
		"rootfs":  map[string]any{"type": "layers", "diff_ids": []string{"sha256:" + layerID}},
		"history": []map[string]any{{"created": epoch.Format(time.RFC3339), "created_by": "kcluster.WriteDockerArchive"}},
	}
	cb, err := json.Marshal(config)
	if err != nil {
		return err
	}
	csum := sha256.Sum256(cb)
	configName := hex.EncodeToString(csum[:]) + ".json"
	manifest, err := json.Marshal([]map[string]any{{
		"Config": configName, "RepoTags": []string{tag}, "Layers": []string{layerID + "/layer.tar"},
	}})
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range []struct {
		name string
		data []byte
	}{{configName, cb}, {layerID + "/layer.tar", layer}, {"manifest.json", manifest}} {
		if strings.Contains(e.name, "/") {
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: path.Dir(e.name) + "/", Mode: 0o755, ModTime: epoch}); err != nil {
				return err
			}
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: e.name, Mode: 0o644, Size: int64(len(e.data)), ModTime: epoch}); err != nil {
			return err
		}
		if _, err := tw.Write(e.data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	tmp := out + ".tmp"
	if err := os.WriteFile(tmp, buf.Bytes(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, out)
}

func buildLayer(files map[string]ImageFile) ([]byte, error) {
	dirs := map[string]bool{}
	var names []string
	for name := range files {
		if !path.IsAbs(name) {
			return nil, fmt.Errorf("image path %q is not absolute", name)
		}
		names = append(names, name)
		for d := path.Dir(name); d != "/"; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	for d := range dirs {
		if _, ok := files[d]; !ok {
			names = append(names, d)
		}
	}
	sort.Strings(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, name := range names {
		f, isFile := files[name]
		rel := strings.TrimPrefix(name, "/")
		if !isFile || (f.Src == "" && f.Data == nil) {
			mode := int64(0o755)
			if isFile {
				mode = f.Mode
			}
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: rel + "/", Mode: mode, ModTime: epoch}); err != nil {
				return nil, err
			}
			continue
		}
		data := f.Data
		if f.Src != "" {
			b, err := os.ReadFile(f.Src)
			if err != nil {
				return nil, err
			}
			data = b
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: rel, Mode: f.Mode, Size: int64(len(data)), ModTime: epoch}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
