// Package deps checks what the programs of this repository link.
package deps

import (
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/intuned-operator/intuned-operator/internal/testutil/proc"
)

const module = "github.com/intuned-operator/intuned-operator"

// TestProgramsLinkNoTestCode: no program under cmd/ or hack/ links the
// testing package, httptest, or a package under test/ — directly or through
// any package it imports. Test helpers programs share (the local-cluster
// toolkit under internal/testutil) must take a log function, not a
// testing.TB; what needs testing lives in a package only tests import.
func TestProgramsLinkNoTestCode(t *testing.T) {
	forbidden := []struct {
		what  string
		match func(dep string) bool
	}{
		{"the testing package", func(dep string) bool { return dep == "testing" || strings.HasPrefix(dep, "testing/") }},
		{"net/http/httptest", func(dep string) bool { return dep == "net/http/httptest" }},
		{"a package under test/", func(dep string) bool { return strings.HasPrefix(dep, module+"/test/") }},
	}
	programs := mainPackageDeps(t, "./cmd/...", "./hack/...")
	if len(programs) < 2 {
		t.Fatalf("found %d programs under cmd/ and hack/: the listing is broken", len(programs))
	}
	importers := testingImporters(t)
	for program, deps := range programs {
		for _, f := range forbidden {
			for _, dep := range deps {
				if dep == "testing" && onlyTestingTesting(append([]string{program}, deps...), importers) {
					continue
				}
				if f.match(dep) {
					t.Errorf("%s links %s (%s); `go list -deps %s` shows the path", program, f.what, dep, program)
				}
			}
		}
	}
}

// mainPackageDeps maps every main package matching patterns to everything
// it links (go list's Deps: its imports, recursively).
func mainPackageDeps(t *testing.T, patterns ...string) map[string][]string {
	t.Helper()
	args := append([]string{"list", "-f", `{{if eq .Name "main"}}{{.ImportPath}} {{join .Deps " "}}{{end}}`}, patterns...)
	cmd := exec.Command("go", args...)
	cmd.Dir = proc.RepoRoot()
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, exitStderr(err))
	}
	programs := map[string][]string{}
	for line := range strings.Lines(string(out)) {
		fields := strings.Fields(line)
		if len(fields) > 0 {
			programs[fields[0]] = fields[1:]
		}
	}
	return programs
}

// testingTestingOnly are the libraries' packages that import testing only
// to call testing.Testing() (Helm's version and capabilities: defaults
// that differ under `go test`). That links the package, not test code.
var testingTestingOnly = map[string]bool{
	"helm.sh/helm/v4/internal/version": true,
	"helm.sh/helm/v4/pkg/chart/common": true,
}

// onlyTestingTesting reports whether every package among deps that imports
// testing is one of testingTestingOnly.
func onlyTestingTesting(deps []string, importers map[string]bool) bool {
	for _, dep := range deps {
		if importers[dep] && !testingTestingOnly[dep] {
			return false
		}
	}
	return true
}

// testingImporters are the packages the programs link that import the
// testing package themselves.
func testingImporters(t *testing.T) map[string]bool {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps", "-f", `{{.ImportPath}} {{join .Imports " "}}`, "./cmd/...", "./hack/...")
	cmd.Dir = proc.RepoRoot()
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, exitStderr(err))
	}
	importers := map[string]bool{}
	for line := range strings.Lines(string(out)) {
		fields := strings.Fields(line)
		if len(fields) > 0 && slices.Contains(fields[1:], "testing") {
			importers[fields[0]] = true
		}
	}
	return importers
}

func exitStderr(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}
