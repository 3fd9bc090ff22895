//go:build e2e

package e2e

// Helpers of the Swift end-to-end tests: the lab's configuration with a swift: section, the lab's
// failure tools, runs started and followed through the real dev server.

import (
	"bufio"
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/stackrun/stackrun/config"
	"github.com/stackrun/stackrun/internal/app/control"
	"github.com/stackrun/stackrun/internal/testenv/devserver"
	"github.com/stackrun/stackrun/workflows"
)

// labEnv reads $LAB/lab.env (KEY=VALUE lines).
func labEnv(t *testing.T) map[string]string {
	t.Helper()
	p := filepath.Join(filepath.Dir(labConfig(t)), "lab.env")
	f, err := os.Open(p)
	require.NoError(t, err, "lab.env of the lab")
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if ok && !strings.HasPrefix(k, "#") {
			env[k] = v
		}
	}
	return env
}

// swiftLabConfig returns a configuration file for the lab with a swift: section, and with the
// test's own swift.fstab (the lab's hosts share this machine's /etc/fstab, which no test
// touches) and swift.max_step_percent 0 unless set (the ring tests' changes go in one rebalance
// unless they ask). Keys are written only into this test's copy, never into the lab's file.
func swiftLabConfig(t *testing.T, swiftKeys ...map[string]any) (string, *config.Config) {
	t.Helper()
	p, _ := swiftLabConfigBase(t)
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	var doc map[string]any
	require.NoError(t, yaml.Unmarshal(b, &doc))
	sw, _ := doc["swift"].(map[string]any)
	require.NotNil(t, sw, "swift section")
	sw["fstab"] = filepath.Join(t.TempDir(), "fstab")
	sw["max_step_percent"] = 0
	for _, m := range swiftKeys {
		for k, v := range m {
			if pk, ok := strings.CutPrefix(k, "policy."); ok { // a policy key: "policy.history_budget"
				pol, _ := doc["policy"].(map[string]any)
				if pol == nil {
					pol = map[string]any{}
					doc["policy"] = pol
				}
				pol[pk] = v
				continue
			}
			sw[k] = v
		}
	}
	out, err := yaml.Marshal(doc)
	require.NoError(t, err)
	p = filepath.Join(t.TempDir(), "stackrun-swift-test.yaml")
	require.NoError(t, os.WriteFile(p, out, 0o600))
	cfg, err := config.Load(config.LoadOptions{Path: p})
	require.NoError(t, err)
	return p, cfg
}

// swiftLabConfigBase is the lab's configuration with a swift: section. When the lab's
// stackrun.yaml has none (lab/up.sh predates it), one is derived from the inventory labels the
// lab writes (swift_ring_builder, swift_dir, swift_devices, swift_disks).
func swiftLabConfigBase(t *testing.T) (string, *config.Config) {
	t.Helper()
	src := labConfig(t)
	b, err := os.ReadFile(src)
	require.NoError(t, err)
	cfg, err := config.Load(config.LoadOptions{Path: src})
	require.NoError(t, err)
	if len(cfg.Swift.Nodes) > 0 {
		return src, cfg
	}
	var sb strings.Builder
	sb.WriteString("\nswift:\n")
	var storage []string
	for _, name := range cfg.HostNames() {
		h := cfg.Inventory[name]
		if h.Labels["swift_ring_builder"] == "true" {
			fmt.Fprintf(&sb, "  ring_builder_host: %s\n  builder_dir: %s\n", name, h.Labels["swift_dir"])
		}
		if h.Labels["swift_disks"] != "" {
			storage = append(storage, name)
		}
	}
	sb.WriteString("  parallelism: 8\n  nodes:\n")
	for _, name := range cfg.HostNames() {
		h := cfg.Inventory[name]
		dir := h.Labels["swift_dir"]
		if dir == "" {
			continue
		}
		hostDir := filepath.Dir(filepath.Dir(dir)) // <lab>/hosts/<name>
		fmt.Fprintf(&sb, "    %s:\n      swift_dir: %s\n      recon_cache_path: %s\n", name, dir, filepath.Join(hostDir, "cache", "swift"))
		if i := slices.Index(storage, name); i >= 0 {
			fmt.Fprintf(&sb, "      devices_dir: %s\n      zone: %d\n      devices:\n", h.Labels["swift_devices"], i+1)
			for _, d := range strings.Split(h.Labels["swift_disks"], ",") {
				fmt.Fprintf(&sb, "        %s: \"\"\n", d)
			}
		}
	}
	p := filepath.Join(t.TempDir(), "stackrun-swift.yaml")
	require.NoError(t, os.WriteFile(p, append(b, sb.String()...), 0o600))
	cfg, err = config.Load(config.LoadOptions{Path: p})
	require.NoError(t, err)
	require.NoError(t, cfg.ValidateFor(config.ForWorker))
	require.NotEmpty(t, cfg.Swift.Nodes, "swift section derived from the lab's labels")
	return p, cfg
}

// lab runs one of the lab's tools (labfail, labctl) and returns its output.
func lab(t *testing.T, tool string, args ...string) string {
	t.Helper()
	env := labEnv(t)
	out, err := exec.Command(env[tool], args...).CombinedOutput()
	require.NoError(t, err, "%s %v: %s", tool, args, out)
	return strings.TrimSpace(string(out))
}

// ringTool runs swift-ring-builder for test setup and cleanup (never the runbook's path).
func ringTool(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("swift-ring-builder", args...).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 1 {
		err = nil // warning
	}
	require.NoError(t, err, "swift-ring-builder %v: %s", args, out)
	return string(out)
}

func md5File(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	s := md5.Sum(b)
	return hex.EncodeToString(s[:])
}

// runner starts runbooks on the dev server and follows them.
type runner struct {
	t   *testing.T
	srv *devserver.Server
	cfg *config.Config
}

func (r runner) start(name string, in workflows.Input) (string, error) {
	rb, err := workflows.FindRunbook(name)
	require.NoError(r.t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := control.Start(ctx, r.srv.Client, r.cfg.Temporal.TaskQueue, rb, in, asRequester(r.t, in))
	return st.WorkflowID, err
}

func (r runner) mustStart(name string, in workflows.Input) string {
	id, err := r.start(name, in)
	require.NoError(r.t, err)
	return id
}

// waitFor polls the status query until ok says yes.
func (r runner) waitFor(id string, timeout time.Duration, what string, ok func(workflows.Status) bool) workflows.Status {
	r.t.Helper()
	deadline := time.Now().Add(timeout)
	var st workflows.Status
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		s, err := control.Status(ctx, r.srv.Client, id)
		cancel()
		if err == nil {
			st = s
			if ok(st) {
				return st
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	r.t.Fatalf("%s: %s not reached within %s; last status %s at %q, stalled %+v", id, what, timeout, st.Status, st.CurrentStep, st.Stalled)
	return st
}

func (r runner) waitGate(id, gate string, timeout time.Duration) workflows.Status {
	return r.waitFor(id, timeout, "gate "+gate, func(st workflows.Status) bool {
		for _, g := range st.OpenGates {
			if g.Name == gate {
				return true
			}
		}
		return false
	})
}

func (r runner) approve(id, gate, by string) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := control.Approve(ctx, r.srv.Client, id, workflows.GateDecisionRequest{Gate: gate, By: by, Comment: "e2e", Via: "e2e"}, as(r.t, by))
	require.NoError(r.t, err)
}

func (r runner) report(id string, timeout time.Duration) *workflows.Report {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	rep, err := control.Report(ctx, r.srv.Client, id, true)
	require.NoError(r.t, err)
	return rep
}

// activities lists the activities a report's audit recorded.
func activitiesOf(rep *workflows.Report) []string {
	var out []string
	for _, a := range rep.Audit {
		out = append(out, a.Activity)
	}
	return out
}
