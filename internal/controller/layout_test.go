package controller_test

import (
	"encoding/json"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/intuned-operator/intuned-operator/"

// TestPackageLayout: the kind packages build on the shared ones and never
// on each other, and the shared ones know no kind, so a kind can be read,
// changed and tested alone (doc.go).
func TestPackageLayout(t *testing.T) {
	kinds := []string{"intunedjob", "webhookreceiver", "guard"}
	shared := []string{"report", "index", "cachepolicy", "sharding"}
	imports := map[string][]string{}
	out, err := exec.Command("go", "list", "-json=ImportPath,Deps", "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p struct {
			ImportPath string
			Deps       []string
		}
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		imports[strings.TrimPrefix(p.ImportPath, module+"internal/controller/")] = p.Deps
	}
	for _, pkg := range append(slices.Clone(kinds), shared...) {
		deps, ok := imports[pkg]
		if !ok {
			t.Fatalf("package internal/controller/%s not found by go list", pkg)
		}
		for _, kind := range kinds {
			if kind != pkg && slices.Contains(deps, module+"internal/controller/"+kind) {
				t.Errorf("internal/controller/%s depends on the kind package %s", pkg, kind)
			}
		}
	}
}
