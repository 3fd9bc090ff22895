package workflows_test

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/worker"

	wf "github.com/stackrun/stackrun/workflows"
)

// TestReplayRecordedHistories replays histories recorded from real runs on a dev server (refresh
// them with `STACKRUN_UPDATE_HISTORY=1 go test ./worker -run TestIntegration`). A change to a
// workflow that would break runs in flight fails here: guard it with workflow.GetVersion.
func TestReplayRecordedHistories(t *testing.T) {
	files, err := filepath.Glob("testdata/*.json")
	require.NoError(t, err)
	require.NotEmpty(t, files, "no recorded histories in testdata/")
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			r := worker.NewWorkflowReplayer()
			wf.Register(r)
			require.NoError(t, r.ReplayWorkflowHistoryFromJSONFile(nil, f))
		})
	}
}
