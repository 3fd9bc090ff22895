package workflows_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	wf "github.com/stackrun/stackrun/workflows"
)

// TestReplayRecordedHistories replays the histories recorded from real runs (the lab's e2e runs
// with STACKRUN_RECORD_HISTORY=<dir>, or `STACKRUN_UPDATE_HISTORY=1 go test ./worker -run
// TestIntegration`), and checks that every runbook has at least one. A change to a workflow that
// would break runs in flight fails here: guard it with workflow.GetVersion
// (docs/adding-a-runbook.md).
func TestReplayRecordedHistories(t *testing.T) {
	files, err := filepath.Glob("testdata/*.json")
	require.NoError(t, err)
	require.NotEmpty(t, files, "no recorded histories in testdata/")
	var types []string
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			r := worker.NewWorkflowReplayer()
			wf.Register(r)
			fh, err := os.Open(f)
			require.NoError(t, err)
			defer fh.Close()
			h, err := client.HistoryFromJSON(fh, client.HistoryJSONOptions{})
			require.NoError(t, err)
			// A signed run's start signature covers its workflow ID: replay it under its own ID
			// (<history>.id beside the file) rather than the replayer's "ReplayId".
			var opts worker.ReplayWorkflowHistoryOptions
			if id, err := os.ReadFile(strings.TrimSuffix(f, ".json") + ".id"); err == nil {
				opts.OriginalExecution = workflow.Execution{ID: strings.TrimSpace(string(id)),
					RunID: h.GetEvents()[0].GetWorkflowExecutionStartedEventAttributes().GetOriginalExecutionRunId()}
			}
			require.NoError(t, r.ReplayWorkflowHistoryWithOptions(nil, h, opts))
			types = append(types, h.GetEvents()[0].GetWorkflowExecutionStartedEventAttributes().GetWorkflowType().GetName())
		})
	}
	for _, rb := range wf.Runbooks {
		has := slices.Contains(types, rb.Type) || slices.ContainsFunc(rb.Formerly, func(old string) bool { return slices.Contains(types, old) })
		assert.True(t, has, "runbook %s has no recorded history in testdata/ (record one: docs/adding-a-runbook.md)", rb.Name)
	}
}
