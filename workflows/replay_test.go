package workflows_test

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
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
			fh, err := os.Open(f)
			require.NoError(t, err)
			defer fh.Close()
			h, err := client.HistoryFromJSON(fh, client.HistoryJSONOptions{})
			require.NoError(t, err)
			started := h.GetEvents()[0].GetWorkflowExecutionStartedEventAttributes()
			types = append(types, started.GetWorkflowType().GetName())
			r := worker.NewWorkflowReplayer()
			wf.Register(r)
			// Signed starts and decisions name the workflow and run IDs, so the run must replay
			// under its own IDs, not the replayer's "ReplayId".
			require.NoError(t, r.ReplayWorkflowHistoryWithOptions(nil, h, worker.ReplayWorkflowHistoryOptions{
				OriginalExecution: workflow.Execution{ID: recordedWorkflowID(t, started), RunID: started.GetOriginalExecutionRunId()},
			}))
		})
	}
	for _, rb := range wf.Runbooks {
		has := slices.Contains(types, rb.Type) || slices.ContainsFunc(rb.Formerly, func(old string) bool { return slices.Contains(types, old) })
		assert.True(t, has, "runbook %s has no recorded history in testdata/ (record one: docs/adding-a-runbook.md)", rb.Name)
	}
}

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
