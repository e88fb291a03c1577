package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
)

// TestPackage: the package carries the version, appVersion and digest it
// was given (the digest in the values a user sees with `helm show values`),
// lints, and is the same bytes when packaged again.
func TestPackage(t *testing.T) {
	const digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	chartDir := filepath.Join("..", "..", "charts", "intuned-operator")
	var archives [][]byte
	for range 2 {
		path, err := packageChart(options{version: "1.2.3", appVersion: "v1.2.3", digest: digest, chartDir: chartDir, outDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		if filepath.Base(path) != "intuned-operator-1.2.3.tgz" {
			t.Errorf("package %s", path)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		archives = append(archives, b)

		ch, err := loader.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		if ch.Metadata.Version != "1.2.3" || ch.Metadata.AppVersion != "v1.2.3" {
			t.Errorf("version %q appVersion %q", ch.Metadata.Version, ch.Metadata.AppVersion)
		}
		if got := ch.Values["image"].(map[string]any)["digest"]; got != digest {
			t.Errorf("image.digest = %v", got)
		}
		for _, f := range ch.Raw {
			if f.Name == "values.yaml" && !strings.Contains(string(f.Data), "# sha256:") {
				t.Error("values.yaml lost its comments")
			}
		}
		lint := action.NewLint()
		lint.Strict = true
		if res := lint.Run([]string{path}, nil); len(res.Errors) > 0 {
			t.Errorf("helm lint %s: %v", path, res.Errors)
		}
	}
	if !bytes.Equal(archives[0], archives[1]) {
		t.Error("packaging twice gave different bytes")
	}

	for _, o := range []options{
		{version: "", chartDir: chartDir},
		{version: "1.2.3", digest: "sha256:short", chartDir: chartDir},
		{version: "not semver", chartDir: chartDir},
	} {
		o.outDir = t.TempDir()
		if _, err := packageChart(o); err == nil {
			t.Errorf("%+v packaged", o)
		}
	}
}
