package config_test

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/stackrun/stackrun/"

// ioPackages are the standard library's ways out of the process.
var ioPackages = []string{"net", "os", "os/exec", "os/user", "syscall", "database/sql", "plugin"}

// config is read by every layer, so the packages of this module it imports must be leaves: pure
// code that imports no other package of the module, nothing outside the standard library, and
// no I/O package of it. An import of internal/infra/remote (SSH), of the OpenStack layer, or of
// anything that dials or reads files fails here.
func TestConfigImportsOnlyLeafPackagesOfTheModule(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	for _, pkg := range imports(t, filepath.Join(root, "config")) {
		rel, ok := strings.CutPrefix(pkg, module)
		if !ok {
			continue
		}
		for _, imp := range imports(t, filepath.Join(root, rel)) {
			first, _, _ := strings.Cut(imp, "/")
			switch {
			case strings.HasPrefix(imp, module):
				t.Errorf("config imports %s, which is not a leaf: it imports %s", rel, imp)
			case strings.Contains(first, "."):
				t.Errorf("config imports %s, which is not a leaf: it imports %s (outside the standard library)", rel, imp)
			case isIO(imp):
				t.Errorf("config imports %s, which is not a leaf: it imports %s (I/O)", rel, imp)
			}
		}
	}
}

func isIO(imp string) bool {
	if imp == "net/url" || imp == "net/netip" || imp == "net/mail" {
		return false // parsers only: they open nothing
	}
	for _, p := range ioPackages {
		if imp == p || strings.HasPrefix(imp, p+"/") {
			return true
		}
	}
	return false
}

// imports lists the packages the non-test files of dir import.
func imports(t *testing.T, dir string) []string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	var out []string
	fset := token.NewFileSet()
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, name), nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if !seen[p] {
				seen[p] = true
				out = append(out, p)
			}
		}
	}
	return out
}
