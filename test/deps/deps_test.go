// Package deps checks what the programs of this repository link.
package deps

import (
	"os/exec"
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
	for program, deps := range programs {
		for _, f := range forbidden {
			for _, dep := range deps {
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

func exitStderr(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}
