//go:build e2e

package e2e

// SwiftRing end to end on the lab: storage3 is removed from the rings (rebalanced,
// validated, distributed, every node's checksums equal) with the worker SIGKILLed during the
// distribution; a second rebalance inside min_part_hours is refused, or waits with
// --wait-min-part-hours; storage3 is added back; a node holding a stale ring is found by the
// checksum verification and repaired. The rings are restored afterwards.

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/stackrun/stackrun/internal/testenv/devserver"
	"github.com/stackrun/stackrun/workflows"
)

var ringKinds = []string{"account", "container", "object"}

// ringDevices lists "ip/device weight zone" for every device line of a builder.
func ringDevices(t *testing.T, builder string) []string {
	out := ringTool(t, builder)
	var devs []string
	in := false
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "Devices:") {
			in = true
			continue
		}
		f := strings.Fields(line)
		if !in || len(f) < 9 {
			continue
		}
		ip := f[3][:strings.LastIndexByte(f[3], ':')]
		devs = append(devs, ip+"/"+f[5]+" "+f[6]+" z"+f[2])
	}
	slices.Sort(devs)
	return devs
}

func cp(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	require.NoError(t, err)
	tmp := dst + ".e2e-tmp"
	require.NoError(t, os.WriteFile(tmp, b, 0o644))
	require.NoError(t, os.Rename(tmp, dst))
}

func TestSwiftRingChangeOnLab(t *testing.T) {
	cfgPath, cfg := swiftLabConfig(t)
	ringDir := cfg.Swift.BuilderDir
	var nodeDirs []string
	for _, n := range cfg.Swift.Nodes {
		if n.SwiftDir != "" && n.SwiftDir != ringDir {
			nodeDirs = append(nodeDirs, n.SwiftDir)
		}
	}
	require.Len(t, nodeDirs, 3, "three storage nodes besides the ring-builder host")

	// The rings must start with storage3 in them (six devices).
	for _, kind := range ringKinds {
		devs := ringDevices(t, filepath.Join(ringDir, kind+".builder"))
		require.Len(t, devs, 6, "%s ring at the start: %v (a ring change left by an earlier run? restore the builders from %s/backups)", kind, devs, ringDir)
	}
	// Keep the builders and rings as they are, to restore them whatever happens.
	saved := t.TempDir()
	for _, kind := range ringKinds {
		for _, f := range []string{kind + ".builder", kind + ".ring.gz"} {
			cp(t, filepath.Join(ringDir, f), filepath.Join(saved, f))
		}
	}
	t.Cleanup(func() {
		for _, kind := range ringKinds {
			for _, f := range []string{kind + ".builder", kind + ".ring.gz"} {
				cp(t, filepath.Join(saved, f), filepath.Join(ringDir, f))
			}
			for _, d := range nodeDirs {
				cp(t, filepath.Join(saved, kind+".ring.gz"), filepath.Join(d, kind+".ring.gz"))
			}
		}
	})
	// Test setup only (never the runbook's path): let the first rebalance happen now.
	pretend := func() {
		for _, kind := range ringKinds {
			ringTool(t, filepath.Join(ringDir, kind+".builder"), "pretend_min_part_hours_passed")
		}
	}
	pretend()

	srv := devserver.Start(t)
	worker := startWorker(t, cfgPath, srv)
	rn := runner{t: t, srv: srv, cfg: cfg}
	checksumsMatch := func(when string) {
		t.Helper()
		for _, kind := range ringKinds {
			want := md5File(t, filepath.Join(ringDir, kind+".ring.gz"))
			for _, d := range nodeDirs {
				require.Equal(t, want, md5File(t, filepath.Join(d, kind+".ring.gz")), "%s: %s/%s.ring.gz", when, d, kind)
			}
		}
	}
	meta := workflows.Meta{RequestedBy: "alice", Reason: "e2e ring change"}

	// Unknown node and hostile input: refused before any connection.
	_, err := rn.start("swift-ring", &workflows.SwiftRingInput{Meta: meta, Remove: []string{"storage3/$(reboot)"}})
	require.ErrorContains(t, err, "invalid input")
	id := rn.mustStart("swift-ring", &workflows.SwiftRingInput{Meta: meta, Remove: []string{"storage9"}})
	rep := rn.report(id, time.Minute)
	require.Equal(t, workflows.StatusFailed, rep.Status)
	require.Contains(t, rep.Summary, "invalid input")
	require.Equal(t, []string{"SwiftTopology"}, slices.DeleteFunc(activitiesOf(rep), func(s string) bool { return s == "Notify" }))

	// 2. Remove storage3; SIGKILL the worker during the distribution.
	id = rn.mustStart("swift-ring", &workflows.SwiftRingInput{Meta: meta, Remove: []string{"storage3"}})
	st := rn.waitGate(id, workflows.GateApproveRingChange, 2*time.Minute)
	require.Len(t, slices.DeleteFunc(slices.Clone(st.Plan), func(s string) bool { return !strings.Contains(s, ": remove ") }), 6, "plan: %v", st.Plan)
	rn.approve(id, workflows.GateApproveRingChange, "bob")
	st = rn.waitFor(id, 2*time.Minute, "distribution", func(st workflows.Status) bool {
		return st.CurrentStep == "distribute" || st.CurrentStep == "verify" || st.Status == workflows.StatusCompleted
	})
	t.Logf("SIGKILL the worker at step %s (%s)", st.CurrentStep, st.Status)
	require.NoError(t, worker.Process.Signal(syscall.SIGKILL))
	_, _ = worker.Process.Wait()
	startWorker(t, cfgPath, srv)
	rep = rn.report(id, 5*time.Minute)
	require.Equal(t, workflows.StatusCompleted, rep.Status, "%s %+v", rep.Summary, rep.Steps)
	t.Logf("remove: %s; balance/dispersion %v", rep.Summary, rep.Details["balance_dispersion"])
	for _, kind := range ringKinds {
		devs := ringDevices(t, filepath.Join(ringDir, kind+".builder"))
		require.Len(t, devs, 4, "%s: %v", kind, devs)
		require.NotContains(t, strings.Join(devs, " "), "127.0.0.23/")
	}
	checksumsMatch("after the removal")
	require.NotNil(t, rep.Details["backup_dir"])
	_, err = os.Stat(filepath.Join(rep.Details["backup_dir"].(string), "object.builder"))
	require.NoError(t, err, "builder backup")

	// 3. A second rebalance inside min_part_hours is refused, never forced.
	before := md5File(t, filepath.Join(ringDir, "object.builder"))
	id = rn.mustStart("swift-ring", &workflows.SwiftRingInput{Meta: meta, Add: []string{"storage3"}})
	rep = rn.report(id, 2*time.Minute)
	require.Equal(t, workflows.StatusFailed, rep.Status)
	require.Contains(t, rep.Summary, "min_part_hours")
	require.Equal(t, before, md5File(t, filepath.Join(ringDir, "object.builder")), "builders untouched")
	t.Logf("refused: %s", rep.Summary)
	//    ... or waits durably with --wait-min-part-hours (cancelled here).
	id = rn.mustStart("swift-ring", &workflows.SwiftRingInput{Meta: meta, Add: []string{"storage3"}, Wait: true})
	rn.waitGate(id, workflows.GateApproveRingChange, 2*time.Minute)
	rn.approve(id, workflows.GateApproveRingChange, "bob")
	st = rn.waitFor(id, time.Minute, "waiting for min_part_hours", func(st workflows.Status) bool {
		for _, s := range st.Steps {
			if s.Name == "min-part-hours" && strings.Contains(s.Detail, "waiting until") {
				return true
			}
		}
		return false
	})
	require.NoError(t, srv.Client.CancelWorkflow(context.Background(), id, ""))
	_ = srv.Client.GetWorkflow(context.Background(), id, "").Get(context.Background(), nil)
	require.Equal(t, before, md5File(t, filepath.Join(ringDir, "object.builder")), "builders untouched while waiting")

	// Add storage3 back (test setup lets min_part_hours pass first).
	pretend()
	id = rn.mustStart("swift-ring", &workflows.SwiftRingInput{Meta: meta, Add: []string{"storage3"}})
	rn.waitGate(id, workflows.GateApproveRingChange, 2*time.Minute) // the lock was released by the cancelled run
	rn.approve(id, workflows.GateApproveRingChange, "bob")
	rep = rn.report(id, 5*time.Minute)
	require.Equal(t, workflows.StatusCompleted, rep.Status, "%s %+v", rep.Summary, rep.Steps)
	for _, kind := range ringKinds {
		devs := ringDevices(t, filepath.Join(ringDir, kind+".builder"))
		require.Contains(t, devs, "127.0.0.23/sdf 100.00 z3", kind)
		require.Contains(t, devs, "127.0.0.23/sdg 100.00 z3", kind)
	}
	checksumsMatch("after adding storage3 back")

	// 4. A stale ring on storage1 is found by the checksum verification and redistributed.
	var s1 string
	for name, n := range cfg.Swift.Nodes {
		if name == "storage1" {
			s1 = n.SwiftDir
		}
	}
	cp(t, filepath.Join(saved, "object.ring.gz"), filepath.Join(s1, "object.ring.gz"))
	require.NotEqual(t, md5File(t, filepath.Join(ringDir, "object.ring.gz")), md5File(t, filepath.Join(s1, "object.ring.gz")))
	id = rn.mustStart("swift-ring", &workflows.SwiftRingInput{Meta: meta, Distribute: true})
	rep = rn.report(id, 2*time.Minute)
	require.Equal(t, workflows.StatusCompleted, rep.Status, rep.Summary)
	found := false
	for _, f := range rep.Findings {
		found = found || (f.Subject == "storage1" && strings.Contains(f.Message, "object.ring.gz"))
	}
	require.True(t, found, "finding about storage1's stale ring: %+v", rep.Findings)
	checksumsMatch("after redistribution")
	out, err := exec.Command("swift-ring-builder", filepath.Join(ringDir, "object.builder"), "validate").CombinedOutput()
	require.NoError(t, err, string(out))
}
