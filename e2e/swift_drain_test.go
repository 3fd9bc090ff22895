//go:build e2e

package e2e

// SwiftDisk --drain-first end to end on the lab: storage2/sde (healthy, to be out for long) is
// drained from the rings by a child swift-ring run (weight 0), replication settles, it is
// unmounted and swapped (gate), formatted and mounted, and a second child restores its weight once
// min_part_hours has passed (the TEST runs pretend_min_part_hours_passed while that child waits,
// as in the steps test); then the refill is followed until sde holds its share. The builders and
// rings are restored afterwards.

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/stackrun/stackrun/internal/testenv/devserver"
	"github.com/stackrun/stackrun/workflows"
)

func TestSwiftDiskDrainFirstOnLab(t *testing.T) {
	const node, dev, ip = "storage2", "sde", "127.0.0.22"
	cfgPath, cfg := swiftLabConfig(t)
	ringDir := cfg.Swift.BuilderDir
	var nodeDirs []string
	for _, n := range cfg.Swift.Nodes {
		if n.SwiftDir != "" && n.SwiftDir != ringDir {
			nodeDirs = append(nodeDirs, n.SwiftDir)
		}
	}
	state := func() string {
		for _, l := range strings.Split(lab(t, "LABFAIL", "disk-info", node, dev), "\n") {
			if v, ok := strings.CutPrefix(l, "state="); ok {
				return v
			}
		}
		return ""
	}
	if st := state(); st != "mounted" {
		lab(t, "LABFAIL", "disk-replace", node, dev)
	}
	t.Cleanup(func() {
		if st := state(); st != "mounted" {
			t.Logf("cleanup: %s/%s is %s: replacing it", node, dev, st)
			lab(t, "LABFAIL", "disk-replace", node, dev)
		}
	})
	weightOf := func(kind string) string {
		for _, d := range ringDevices(t, filepath.Join(ringDir, kind+".builder")) {
			if strings.HasPrefix(d, ip+"/"+dev+" ") {
				return strings.Fields(d)[1]
			}
		}
		return "<not in the ring>"
	}
	for _, kind := range ringKinds {
		require.Equal(t, "100.00", weightOf(kind), "%s ring at the start", kind)
	}
	saveRings(t, ringDir, nodeDirs)
	pretend := func() { // test setup only, never the runbook's path
		for _, kind := range ringKinds {
			ringTool(t, filepath.Join(ringDir, kind+".builder"), "pretend_min_part_hours_passed")
		}
	}
	pretend()

	srv := devserver.Start(t)
	startWorker(t, cfgPath, srv)
	rn := runner{t: t, srv: srv, cfg: cfg}
	started := time.Now()
	id := rn.mustStart("swift-disk", &workflows.SwiftDiskInput{
		Meta: workflows.Meta{RequestedBy: "alice", Reason: "e2e: disk out for long"}, Node: node, Device: dev, DrainFirst: true,
		RefillTimeout: 5 * time.Minute, PollInterval: 3 * time.Second,
	})
	st := rn.waitGate(id, workflows.GateApproveRingChange, 3*time.Minute)
	require.Contains(t, strings.Join(st.Plan, "\n"), "drain: ring change setting storage2/sde to weight 0")
	rn.approve(id, workflows.GateApproveRingChange, "bob")

	// The drain and the settling happen before the unmount; the swap waits at the gate.
	rn.waitGate(id, workflows.GateDiskReplaced, 6*time.Minute)
	for _, kind := range ringKinds {
		require.Equal(t, "0.00", weightOf(kind), "%s ring drained before the swap", kind)
	}
	require.NotEqual(t, "mounted", state(), "unmounted before the gate")
	t.Logf("drained and unmounted after %s", time.Since(started).Round(time.Second))
	lab(t, "LABFAIL", "disk-new", node, dev)
	rn.approve(id, workflows.GateDiskReplaced, "bob")

	// The restore waits for min_part_hours since the drain's rebalance; the test lets it pass.
	child := id + "/restore-weight"
	rn.waitFor(child, 4*time.Minute, "restore waiting for min_part_hours", func(st workflows.Status) bool {
		return strings.Contains(stepOf(st.Steps, "min-part-hours").Detail, "waiting until")
	})
	for _, kind := range ringKinds {
		require.Equal(t, "0.00", weightOf(kind), "%s ring while the restore waits", kind)
	}
	require.Equal(t, "mounted", state(), "the new disk is mounted before the restore")
	pretend()

	rep := rn.report(id, 8*time.Minute)
	require.Equal(t, workflows.StatusCompleted, rep.Status, "%s: %+v", rep.Summary, rep.Steps)
	for _, s := range rep.Steps {
		t.Logf("  %-18s %-8s %s", s.Name, s.State, s.Detail)
	}
	for _, kind := range ringKinds {
		require.Equal(t, "100.00", weightOf(kind), "%s ring: weight restored", kind)
	}
	cov := diskCoverage(t, cfg, node, dev)
	t.Logf("fill level of %s/%s: %d of %d partitions (%d assigned); total %s", node, dev, cov.Have, cov.Expected, cov.Assigned, time.Since(started).Round(time.Second))
	require.GreaterOrEqual(t, float64(cov.Have), 0.95*float64(cov.Expected), "refilled to its share after the restore")
}
