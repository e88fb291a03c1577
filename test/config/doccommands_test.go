package config

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"mvdan.cc/sh/v3/syntax"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// docCommand is one simple shell command from a code block of a doc.
type docCommand struct {
	where string   // file:line
	args  []string // literal words; "" where a word is not literal ($VAR, $(...))
}

// placeholder matches the <...> placeholders docs put into commands
// (<Intuned API key>, <your image>): to the shell they would be redirects.
var placeholder = regexp.MustCompile(`<[A-Za-z][^<>\n]*>`)

// docCommands parses the sh/bash code blocks of a Markdown file with a real
// shell parser and returns their simple commands.
func docCommands(name, markdown string) ([]docCommand, error) {
	var out []docCommand
	lines := strings.Split(markdown, "\n")
	for i := 0; i < len(lines); i++ {
		fence := strings.TrimLeft(lines[i], " ")
		lang, ok := strings.CutPrefix(fence, "```")
		if !ok || !slices.Contains([]string{"sh", "bash", "shell"}, strings.TrimSpace(lang)) {
			continue
		}
		indent := len(lines[i]) - len(fence)
		start := i + 1
		var block strings.Builder
		for i++; i < len(lines) && strings.TrimSpace(lines[i]) != "```"; i++ {
			l := lines[i]
			if len(l) >= indent && strings.TrimSpace(l[:indent]) == "" {
				l = l[indent:]
			}
			block.WriteString(l + "\n")
		}
		src := placeholder.ReplaceAllString(block.String(), "PLACEHOLDER")
		f, err := syntax.NewParser().Parse(strings.NewReader(src), name)
		if err != nil {
			return nil, fmt.Errorf("%s: the sh block at line %d is not valid shell: %w", name, start, err)
		}
		syntax.Walk(f, func(n syntax.Node) bool {
			call, ok := n.(*syntax.CallExpr)
			if !ok || len(call.Args) == 0 {
				return true
			}
			c := docCommand{where: fmt.Sprintf("%s:%d", name, start+int(call.Pos().Line())-1)}
			for _, w := range call.Args {
				c.args = append(c.args, w.Lit()) // "" unless the word is one literal
			}
			out = append(out, c)
			return true
		})
	}
	return out, nil
}

// repoPath reports whether arg names a path in this repository (as the
// docs run commands from its root), as opposed to a URL, a flag or a
// placeholder.
func repoPath(arg string) bool {
	for _, dir := range []string{"config/", "docs/", "hack/", "internal/", "cmd/", "dist/", "test/", "api/", "bin/", "./"} {
		if strings.HasPrefix(arg, dir) {
			return true
		}
	}
	return false
}

// commandChecker checks doc commands against the repository at root
// without a cluster: what can be run here is run (kustomize builds), what
// names something must name what exists (make targets, files, packages).
type commandChecker struct {
	root      string
	targets   map[string]bool // Makefile targets
	generated map[string]bool // files `make` writes (dist/...)
	built     map[string]error
}

func newCommandChecker(t *testing.T, root string) *commandChecker {
	t.Helper()
	mk, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	cc := &commandChecker{root: root, targets: map[string]bool{}, built: map[string]error{}, generated: map[string]bool{
		// `make installer` / `build-installer` (Makefile INSTALLER and its siblings).
		"dist/install.yaml": true, "dist/admission-policy.yaml": true,
		"dist/install-namespaced.yaml": true, "dist/admission-policy-namespaced.yaml": true,
	}}
	for _, m := range regexp.MustCompile(`(?m)^([a-zA-Z0-9_-]+):`).FindAllStringSubmatch(string(mk), -1) {
		cc.targets[m[1]] = true
	}
	for f := range cc.generated {
		if !strings.Contains(string(mk), filepath.Base(f)) && !strings.Contains(string(mk), strings.TrimSuffix(filepath.Base(f), ".yaml")) {
			t.Fatalf("the Makefile no longer writes %s", f)
		}
	}
	return cc
}

// check returns what is wrong with c ("" when nothing is); checked says
// whether any part of it could be checked here.
func (cc *commandChecker) check(c docCommand) (problems []string, checked bool) {
	args := c.args
	switch args[0] {
	case "make":
		for _, a := range args[1:] {
			if a == "" || strings.HasPrefix(a, "-") || strings.Contains(a, "=") {
				continue
			}
			checked = true
			if !cc.targets[a] {
				problems = append(problems, "make has no target "+a)
			}
		}
	case "kubectl":
		for i, a := range args {
			if i+1 >= len(args) || args[i+1] == "" {
				continue
			}
			next := args[i+1]
			switch {
			case (a == "-k" || a == "kustomize") && repoPath(next):
				checked = true
				if err := cc.build(next); err != nil {
					problems = append(problems, fmt.Sprintf("kustomize build %s: %v", next, err))
				}
			case a == "-f" && repoPath(next):
				checked = true
				if !cc.generated[next] && !cc.exists(next) {
					problems = append(problems, "no file "+next)
				}
			}
		}
	case "go":
		for _, a := range args[1:] {
			if strings.HasPrefix(a, "./") {
				checked = true
				if !cc.exists(strings.TrimSuffix(a, "/...")) {
					problems = append(problems, "no package "+a)
				}
			}
		}
	}
	// Any other argument that names a repository path must exist.
	for _, a := range args[1:] {
		if a != "" && repoPath(a) && !strings.HasPrefix(a, "./") && !cc.generated[a] && !strings.ContainsAny(a, "*?") {
			checked = true
			if !cc.exists(a) {
				problems = append(problems, "no file "+a)
			}
		}
	}
	return problems, checked
}

func (cc *commandChecker) exists(p string) bool {
	_, err := os.Stat(filepath.Join(cc.root, p))
	return err == nil
}

// build runs kustomize on dir once, as `kubectl apply -k` would.
func (cc *commandChecker) build(dir string) error {
	if err, ok := cc.built[dir]; ok {
		return err
	}
	_, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), filepath.Join(cc.root, dir))
	cc.built[dir] = err
	return err
}

// TestDocCommandsRunAsWritten: every shell command in the README and
// docs/*.md parses as shell, and what can be checked without a cluster is:
// `kubectl apply -k DIR` / `kubectl kustomize DIR` build, `-f FILE` and
// every other repository path exist (or are what `make installer` writes),
// `make` targets exist, `go run/test ./pkg` packages exist. Commands that
// need a cluster or Intuned are not run here; the end-to-end suites run
// their equivalents.
func TestDocCommandsRunAsWritten(t *testing.T) {
	root := repoRoot(t)
	files, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	files = append([]string{filepath.Join(root, "README.md")}, files...)
	cc := newCommandChecker(t, root)
	total, checked := 0, 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, f)
		cmds, err := docCommands(rel, string(b))
		if err != nil {
			t.Error(err)
			continue
		}
		for _, c := range cmds {
			total++
			problems, ok := cc.check(c)
			if ok {
				checked++
			}
			for _, p := range problems {
				t.Errorf("%s: %s: %s", c.where, strings.Join(c.args, " "), p)
			}
		}
	}
	// A parser or an extractor that silently finds nothing would pass.
	if total < 50 || checked < 15 {
		t.Errorf("found %d commands, checked %d: the extraction is broken", total, checked)
	}
	t.Logf("%d doc commands, %d checked here", total, checked)
}

// TestDocCommandChecker: the checker catches each kind of broken command.
func TestDocCommandChecker(t *testing.T) {
	cc := newCommandChecker(t, repoRoot(t))
	tests := []struct {
		markdown string
		ok       bool
	}{
		{"```sh\nmake build-installer IMG=x\n```\n", true},
		{"```sh\nmake no-such-target\n```\n", false},
		{"```sh\nkubectl apply --server-side -k config/samples\n```\n", true},
		{"```sh\nkubectl apply -k config/no-such-dir\n```\n", false},
		{"```sh\nkubectl apply --server-side -f dist/install.yaml\n```\n", true},
		{"```sh\nkubectl apply -f config/samples/no-such.yaml\n```\n", false},
		{"```sh\ngo run ./hack/no-such-tool\n```\n", false},
		{"   ```sh\n   kubectl create secret generic x \\\n     --from-literal=apiKey=<Intuned API key>\n   ```\n", true},
		{"```sh\necho 'unterminated\n```\n", false},
	}
	for _, tt := range tests {
		cmds, err := docCommands("test.md", tt.markdown)
		var problems []string
		if err != nil {
			problems = append(problems, err.Error())
		}
		for _, c := range cmds {
			p, _ := cc.check(c)
			problems = append(problems, p...)
		}
		if (len(problems) == 0) != tt.ok {
			t.Errorf("%q: problems %v, want ok=%v", tt.markdown, problems, tt.ok)
		}
	}
}
