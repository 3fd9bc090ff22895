//go:build e2e

// Package e2e holds the end-to-end tests: the real worker binary on a real Temporal dev server,
// over real SSH, against the OpenStack lab (make lab). Run with `go test -tags e2e ./e2e/`.
package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/workflowservice/v1"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/stackrun/stackrun/internal/app/control"
	"github.com/stackrun/stackrun/internal/testenv/devserver"
)

// labConfig returns the lab's stackrun.yaml; it fails (never skips) when the lab is not up.
func labConfig(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("STACKRUN_LAB_DIR")
	if dir == "" {
		dir = filepath.Join(devserver.RepoRoot(t), ".state", "lab")
	}
	p := filepath.Join(dir, "stackrun.yaml")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("the OpenStack lab is not up (%s missing): run `make lab` (make test does it)", p)
	}
	return p
}

// startWorker builds and runs the real worker against the lab's configuration and srv; env adds
// STACKRUN_* variables (KEY=VALUE) over the configuration file. It is stopped when t ends.
func startWorker(t *testing.T, cfgPath string, srv *devserver.Server, env ...string) *exec.Cmd {
	t.Helper()
	return startWorkerFor(t, t, cfgPath, srv, env...)
}

// startWorkerFor is startWorker for a worker that a subtest t starts in place of one it killed,
// and that the test owner (t's parent) still needs after t: it runs, and keeps its binary, log
// and fault proxy, until owner ends. A replacement tied to t dies with t, and the next subtest's
// runs then have no worker at all (their first workflow task is never taken, so a status query
// waits for it until the caller's deadline).
func startWorkerFor(t, owner *testing.T, cfgPath string, srv *devserver.Server, env ...string) *exec.Cmd {
	t.Helper()
	dir := owner.TempDir()
	bin := filepath.Join(dir, "stackrun-worker")
	build := exec.Command("go", "build", "-o", bin, "./worker")
	build.Dir = devserver.RepoRoot(t)
	out, err := build.CombinedOutput()
	require.NoError(t, err, string(out))
	logPath := filepath.Join(dir, "worker.log")
	logf, err := os.Create(logPath)
	require.NoError(t, err)
	cmd := exec.Command(bin, "--config", faultConfig(owner, cfgPath, env), "--temporal-address", srv.HostPort, "--log-level", "warn")
	cmd.Env = append(os.Environ(), "STACKRUN_WORKER_AUDIT_LOG="+filepath.Join(dir, "audit.log"),
		"STACKRUN_TRUST_KEYS_FILE="+operatorKeysFile(t))
	cmd.Env = append(cmd.Env, faultEnv(owner)...)
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	require.NoError(t, cmd.Start())
	recordHistories(owner, srv)
	owner.Cleanup(func() {
		_ = cmd.Process.Kill()
		_, _ = cmd.Process.Wait()
		if owner.Failed() {
			b, _ := os.ReadFile(logPath)
			owner.Logf("worker log:\n%s", b)
		}
	})
	return cmd
}

// recordHistories, when STACKRUN_RECORD_HISTORY names a directory, writes the history of every
// runbook run that finished on srv when the test ends, as <runbook>-<workflow id>.json in the JSON
// that `temporal workflow show --output json` prints and worker.NewWorkflowReplayer reads. Commit
// the ones to replay in workflows/testdata/ (docs/adding-a-runbook.md).
func recordHistories(t *testing.T, srv *devserver.Server) {
	dir := os.Getenv("STACKRUN_RECORD_HISTORY")
	if dir == "" {
		return
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		var token []byte
		for {
			resp, err := srv.Client.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
				Query: "ExecutionStatus != 'Running'", NextPageToken: token})
			if err != nil {
				t.Errorf("record histories: %v", err)
				return
			}
			for _, e := range resp.Executions {
				name := control.RunbookName(e.GetType().GetName())
				if name == "" {
					continue
				}
				ex := e.GetExecution()
				if err := writeHistory(ctx, srv, dir, name, ex.GetWorkflowId(), ex.GetRunId()); err != nil {
					t.Errorf("record history of %s: %v", ex.GetWorkflowId(), err)
				}
			}
			if token = resp.NextPageToken; len(token) == 0 {
				return
			}
		}
	})
}

func writeHistory(ctx context.Context, srv *devserver.Server, dir, runbook, id, runID string) error {
	it := srv.Client.GetWorkflowHistory(ctx, id, runID, false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	h := &historypb.History{}
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			return err
		}
		h.Events = append(h.Events, ev)
	}
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(h)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	file := runbook + "-" + strings.NewReplacer("/", "_", ":", "_", " ", "_", "=", "_").Replace(id) + ".json"
	if err := os.WriteFile(filepath.Join(dir, file), b, 0o644); err != nil {
		return err
	}
	// the workflow ID, for the replay: a signed start's signature covers it (workflows/replay_test.go)
	return os.WriteFile(filepath.Join(dir, strings.TrimSuffix(file, ".json")+".id"), []byte(id+"\n"), 0o644)
}
