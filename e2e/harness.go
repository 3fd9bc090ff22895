//go:build e2e

// Package e2e holds the end-to-end tests: the real worker binary on a real Temporal dev server,
// over real SSH, against the OpenStack lab (make lab). Run with `go test -tags e2e ./e2e/`.
package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

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
// STACKRUN_* variables (KEY=VALUE) over the configuration file.
func startWorker(t *testing.T, cfgPath string, srv *devserver.Server, env ...string) *exec.Cmd {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "stackrun-worker")
	build := exec.Command("go", "build", "-o", bin, "./worker")
	build.Dir = devserver.RepoRoot(t)
	out, err := build.CombinedOutput()
	require.NoError(t, err, string(out))
	logPath := filepath.Join(t.TempDir(), "worker.log")
	logf, err := os.Create(logPath)
	require.NoError(t, err)
	cmd := exec.Command(bin, "--config", cfgPath, "--temporal-address", srv.HostPort, "--log-level", "warn")
	cmd.Env = append(os.Environ(), "STACKRUN_WORKER_AUDIT_LOG="+filepath.Join(t.TempDir(), "audit.log"))
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_, _ = cmd.Process.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("worker log:\n%s", b)
		}
	})
	return cmd
}
