package workflows_test

import (
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/converter"
	"os"
	"path/filepath"
	"slices"
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
			// Replayed as the run it was: its workflow ID and run ID are what its signatures name.
			start := h.GetEvents()[0].GetWorkflowExecutionStartedEventAttributes()
			id := start.GetWorkflowId()
			if id == "" {
				id = recordedWorkflowID(t, start)
			}
			opts := worker.ReplayWorkflowHistoryOptions{OriginalExecution: workflow.Execution{ID: id, RunID: start.GetOriginalExecutionRunId()}}
			require.NoError(t, r.ReplayWorkflowHistoryWithOptions(nil, h, opts))
			types = append(types, start.GetWorkflowType().GetName())
		})
	}
	for _, rb := range wf.Runbooks {
		has := slices.Contains(types, rb.Type) || slices.ContainsFunc(rb.Formerly, func(old string) bool { return slices.Contains(types, old) })
		if why, ok := noHistoryYet[rb.Name]; ok {
			assert.False(t, has, "runbook %s has a history now: drop it from noHistoryYet", rb.Name)
			t.Logf("runbook %s has no recorded history yet: %s", rb.Name, why)
			continue
		}
		assert.True(t, has, "runbook %s has no recorded history in testdata/ (record one: docs/adding-a-runbook.md)", rb.Name)
	}
}

// noHistoryYet names the runbooks whose first history is still to be recorded, and why; a
// runbook leaves the list with its first history.
var noHistoryYet = map[string]string{}

// recordedWorkflowID is the workflow ID a recorded run had: its runbook's ID rule applied to its
// input (histories do not carry the workflow ID; every runbook's ID derives from its input).
func recordedWorkflowID(t *testing.T, started *historypb.WorkflowExecutionStartedEventAttributes) string {
	t.Helper()
	typ := started.GetWorkflowType().GetName()
	for _, rb := range wf.Runbooks {
		if rb.Type != typ && !slices.Contains(rb.Formerly, typ) {
			continue
		}
		in := rb.NewInput()
		payloads := started.GetInput().GetPayloads()
		require.NotEmpty(t, payloads)
		require.NoError(t, converter.GetDefaultDataConverter().FromPayload(payloads[0], in))
		return rb.WorkflowID(in)
	}
	return "ReplayId"
}
