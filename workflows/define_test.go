package workflows_test

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	wf "github.com/stackrun/stackrun/workflows"
)

// TestOneNamePerRunbook checks the naming rule of docs/adding-a-runbook.md for every runbook: CLI
// word recover-host, workflow type RecoverHost, input type RecoverHostInput, declared as
// `var RecoverHost = Define(` in recoverhost.go, tested in recoverhost_test.go.
func TestOneNamePerRunbook(t *testing.T) {
	require.NotEmpty(t, wf.Runbooks)
	for _, rb := range wf.Runbooks {
		t.Run(rb.Name, func(t *testing.T) {
			assert.Equal(t, wf.TypeName(rb.Name), rb.Type)
			assert.Equal(t, rb.Type+"Input", wf.InputTypeName(rb))
			src, err := os.ReadFile(wf.FileName(rb.Name))
			require.NoError(t, err, "the runbook's file")
			assert.Contains(t, string(src), "var "+rb.Type+" = Define(Def["+rb.Type+"Input,")
			assert.Regexp(t, `Name: +"`+regexp.QuoteMeta(rb.Name)+`"`, string(src))
			_, err = os.Stat(strings.TrimSuffix(wf.FileName(rb.Name), ".go") + "_test.go")
			assert.NoError(t, err, "the runbook's test file")
		})
	}
	assert.Equal(t, "RecoverHost", wf.TypeName("recover-host"))
	assert.Equal(t, "recoverhost.go", wf.FileName("recover-host"))
	assert.Equal(t, "SwiftDisk", wf.TypeName("swift-disk"))
}

func TestRunbooksAreInNameOrder(t *testing.T) {
	names := wf.RunbookNames()
	for i := 1; i < len(names); i++ {
		assert.Less(t, names[i-1], names[i])
	}
}
