// Package browser drives the Temporal web UI in a real headless Chromium: Debian's chromium
// (apt), driven by playwright-core (npm ci in this folder; make deps does both), never a
// downloaded browser. The dev server runs with its UI, the real worker runs the real
// restart-service runbook, and an operator approves its gate from the UI.
package browser

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/stackrun/stackrun/internal/app/chat/chattest"
	"github.com/stackrun/stackrun/internal/app/control"
	"github.com/stackrun/stackrun/internal/testenv/devserver"
	"github.com/stackrun/stackrun/workflows"
)

const chromium = "/usr/bin/chromium"

func TestApproveFromWebUI(t *testing.T) {
	root := devserver.RepoRoot(t)
	dir := filepath.Join(root, "tests", "browser")
	if _, err := os.Stat(chromium); err != nil {
		t.Fatalf("%s missing: run `make deps` (apt-get install chromium)", chromium)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "playwright-core")); err != nil {
		t.Fatalf("playwright-core missing: run `make deps` (npm ci in tests/browser)")
	}
	node, err := exec.LookPath("node")
	require.NoError(t, err, "node is needed to drive the browser: run `make deps`")

	rig := chattest.New(t, chattest.Options{UI: true})
	require.NotEmpty(t, rig.Server.UIURL)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rb, err := workflows.FindRunbook("restart-service")
	require.NoError(t, err)
	in := &workflows.RestartServiceInput{Meta: workflows.Meta{RequestedBy: "alice", Reason: "browser test"}, Host: "node1", Service: "svc-a"}
	started, err := control.Start(ctx, rig.Server.Client, "stackrun", rb, in, control.KeySigner{Key: chattest.Alice.Signer})
	require.NoError(t, err)
	for {
		st, err := control.Status(ctx, rig.Server.Client, started.WorkflowID)
		if err == nil && st.Status == workflows.StatusWaitingApproval {
			break
		}
		require.NoError(t, ctx.Err(), "the run never waited for approval: %+v %v\n%s", st, err, rig.WorkerLog())
		time.Sleep(300 * time.Millisecond)
	}

	artifacts := filepath.Join(root, "artifacts", "browser")
	require.NoError(t, os.MkdirAll(artifacts, 0o755))
	for _, old := range []string{"failure.png", "1-waiting-list.png", "2-run-waiting.png", "3-signal-dialog.png", "4-run-completed.png"} {
		_ = os.Remove(filepath.Join(artifacts, old)) // only this run's screenshots count
	}
	// What `stackrun approve ... --as bob --print-signal` prints: bob's signature for this run.
	_, signed, err := control.PrintSignal(ctx, rig.Server.Client, started.WorkflowID,
		workflows.GateDecisionRequest{Gate: workflows.GateApproveRestart, By: "bob", Comment: "approved from the Temporal web UI"}, true,
		control.KeySigner{Key: chattest.Bob.Signer})
	require.NoError(t, err)
	input, err := json.Marshal(signed)
	require.NoError(t, err)
	cmd := exec.CommandContext(ctx, node, "approve.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"UI_URL="+rig.Server.UIURL, "WORKFLOW_ID="+started.WorkflowID, "GATE="+workflows.GateApproveRestart,
		"BY=bob", "INPUT="+string(input), "ARTIFACTS="+artifacts, "PROFILE="+t.TempDir(), "CHROMIUM="+chromium)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	t.Logf("browser (%s):\n%s", time.Since(start).Round(time.Second), out)
	require.NoError(t, err, "the browser flow failed; screenshots in %s", artifacts)

	rep, err := control.Report(ctx, rig.Server.Client, started.WorkflowID, true)
	require.NoError(t, err)
	require.Equal(t, workflows.StatusCompleted, rep.Status, rep.Summary)
	require.Len(t, rep.Decisions, 1)
	require.Equal(t, "bob", rep.Decisions[0].By)
	require.Equal(t, "web-ui", rep.Decisions[0].Via, "decided by the UI's signal")
	require.Equal(t, chattest.Bob.Fingerprint(), rep.Decisions[0].Key, "signed by bob's key")
	require.Equal(t, "stop\nstart", rig.Actions("svc-a"))
	for _, f := range []string{"1-waiting-list.png", "2-run-waiting.png", "3-signal-dialog.png", "4-run-completed.png"} {
		st, err := os.Stat(filepath.Join(artifacts, f))
		require.NoError(t, err, "screenshot %s", f)
		require.Greater(t, st.Size(), int64(1000), "screenshot %s", f)
	}
	require.True(t, strings.Contains(string(out), "run completed"))
}
