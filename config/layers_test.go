package config_test

import (
	"go/parser"
	"go/token"
	"os"
	"strconv"
	"strings"
	"testing"
)

// config is read by every layer, so it must not pull in the SSH layer (or any I/O layer of
// internal/): only leaf packages. A new import of internal/infra/remote fails here.
func TestConfigImportsOnlyLeafPackagesOfInternal(t *testing.T) {
	allowed := map[string]bool{
		"github.com/stackrun/stackrun/config/policy":              true,
		"github.com/stackrun/stackrun/internal/infra/placeholder": true,
		"github.com/stackrun/stackrun/internal/infra/trust":       true, // pure: crypto/ed25519 and encoding only
		"github.com/stackrun/stackrun/internal/infra/redact":      true, // net/url and strings only
	}
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if strings.HasPrefix(path, "github.com/stackrun/stackrun/") && !allowed[path] {
				t.Errorf("%s imports %s: config may import only leaf packages of this module", name, path)
			}
		}
	}
}
