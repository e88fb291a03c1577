package kcluster

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// The local image must be what the Dockerfile builds: this pins the parse of
// the repository's Dockerfile, so a change to its runtime stage (paths,
// user, entrypoint, static build) that the parser would misread fails here.
func TestParseDockerfileOfRepository(t *testing.T) {
	img, err := ParseDockerfile("../../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	want := &DockerfileImage{
		Packages:   map[string]string{"/manager": "./cmd/manager", "/receiver": "./cmd/receiver", "/intuned-sim": "./cmd/intuned-sim"},
		BuildFlags: []string{"-trimpath", "-ldflags=-s -w"},
		BuildEnv:   []string{"CGO_ENABLED=0"},
		User:       "65532:65532",
		Entrypoint: []string{"/manager"},
		WorkingDir: "/",
	}
	if !reflect.DeepEqual(img, want) {
		t.Fatalf("Dockerfile parsed as\n%+v\nwant\n%+v", img, want)
	}
}

func TestWriteDockerArchiveIsReproducibleAndReadable(t *testing.T) {
	dir := t.TempDir()
	files := map[string]ImageFile{"/bin/hello": {Mode: 0o755, Data: []byte("hi")}, "/tmp": {Mode: 0o1777}}
	cfg := ImageConfig{User: "65532:65532", Entrypoint: []string{"/bin/hello"}}
	a, b := filepath.Join(dir, "a.tar"), filepath.Join(dir, "b.tar")
	if err := WriteDockerArchive(a, "kcluster.local/t:1", files, cfg); err != nil {
		t.Fatal(err)
	}
	if err := WriteDockerArchive(b, "kcluster.local/t:1", files, cfg); err != nil {
		t.Fatal(err)
	}
	ab, _ := os.ReadFile(a)
	bb, _ := os.ReadFile(b)
	if !bytes.Equal(ab, bb) {
		t.Fatal("two archives of the same inputs differ")
	}
	entries := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(ab))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		entries[h.Name] = data
	}
	var manifest []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	if err := json.Unmarshal(entries["manifest.json"], &manifest); err != nil || len(manifest) != 1 {
		t.Fatalf("manifest.json: %v %s", err, entries["manifest.json"])
	}
	var config struct {
		Config struct {
			User       string
			Entrypoint []string
		}
	}
	if err := json.Unmarshal(entries[manifest[0].Config], &config); err != nil {
		t.Fatal(err)
	}
	if config.Config.User != "65532:65532" || !reflect.DeepEqual(config.Config.Entrypoint, []string{"/bin/hello"}) {
		t.Fatalf("config = %+v", config.Config)
	}
	layer := tar.NewReader(bytes.NewReader(entries[manifest[0].Layers[0]]))
	var names []string
	for {
		h, err := layer.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		if h.Name == "tmp/" && h.Mode != 0o1777 {
			t.Errorf("/tmp mode %o, want 1777", h.Mode)
		}
	}
	if got := strings.Join(names, ","); got != "bin/,bin/hello,tmp/" {
		t.Fatalf("layer entries %s", got)
	}
}
