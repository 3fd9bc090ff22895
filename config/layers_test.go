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

// config is read by every layer, so neither it nor anything it imports may pull in an I/O layer
// of the module: SSH (internal/infra/remote), OpenStack, the report store, the application
// layer, activities or workflows. A new import of internal/infra/remote, even an indirect one,
// fails here.
func TestConfigPullsInNoIOLayer(t *testing.T) {
	forbidden := []string{"internal/infra/remote", "internal/infra/openstack", "internal/infra/checks/store", "internal/infra/audit",
		"internal/app", "activities", "workflows", "starter", "worker"}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]string{"config": ""} // package -> the package that imports it
	queue := []string{"config"}
	for len(queue) > 0 {
		pkg := queue[0]
		queue = queue[1:]
		for _, imp := range moduleImports(t, filepath.Join(root, pkg)) {
			if _, ok := seen[imp]; ok {
				continue
			}
			seen[imp] = pkg
			queue = append(queue, imp)
			for _, f := range forbidden {
				if imp == f || strings.HasPrefix(imp, f+"/") {
					t.Errorf("config pulls in %s (imported by %s)", imp, pkg)
				}
			}
		}
	}
}

// moduleImports lists the module packages the non-test files of dir import, relative to the module.
func moduleImports(t *testing.T, dir string) []string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
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
			if rel, ok := strings.CutPrefix(p, module); ok {
				out = append(out, rel)
			}
		}
	}
	return out
}
