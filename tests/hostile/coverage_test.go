package hostile

import (
	"slices"
	"testing"

	"github.com/stackrun/stackrun/workflows"
)

// Every runbook of the registry has fields in the corpus, and every kind of field the issue names
// is tried on some runbook (chat text: through the chat service): a runbook added without its
// entries fails here, as it does in the crash matrix (TestCrashMatrixCoversEveryRunbook).
func TestHostileCorpusCoversEveryRunbook(t *testing.T) {
	var runbooks, kinds []string
	for _, f := range fields {
		if _, err := workflows.FindRunbook(f.runbook); err != nil {
			t.Errorf("corpus field %s of %s: %v", f.name, f.runbook, err)
		}
		runbooks = append(runbooks, f.runbook)
		kinds = append(kinds, f.kind)
	}
	for _, rb := range workflows.Runbooks {
		if !slices.Contains(runbooks, rb.Name) {
			t.Errorf("runbook %s has no field in the hostile corpus (tests/hostile/hostile_test.go, fields): add its host, device, service, path, weight, duration or text fields", rb.Name)
		}
	}
	for _, k := range Kinds {
		if k != Chat && !slices.Contains(kinds, k) {
			t.Errorf("no runbook field of kind %q is in the hostile corpus", k)
		}
	}
}
