//go:build e2e

package e2e

// SwiftRing in steps end to end on the lab: storage3/sdg goes from weight 100 to 50 in two
// rebalances, split by the runbook itself (swift.max_step_percent 5: 50 of the ring's 600 is
// 8.3%), without --steps. After the first (75) the runbook follows replication until every replicator has
// finished a pass, then waits on a durable timer for min_part_hours (1 h in the lab). The TEST —
// never the runbook — then runs `swift-ring-builder <builder> pretend_min_part_hours_passed`, as
// an operator could; the runbook re-reads the builders during its wait (every 10 poll intervals,
// at least a minute) and goes on with the second step (50). The builders and ring files are
// restored afterwards. With policy.history_budget 1 the run continues as new between its two
// steps (workflows/continue.go): the second run of the chain waits, acts and reports the whole.
//
// Why this way: the dev server has no time skipping, so the one-hour timer itself cannot pass in
// a test; the unit tests (workflows/swift_test.go) cover the full durable wait with the test
// environment's clock. Setting the lab's min_part_hours to 0 instead would never exercise the
// wait between the steps at all.

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/stackrun/stackrun/internal/testenv/devserver"
	"github.com/stackrun/stackrun/workflows"
)

// saveRings keeps the builders and ring files and puts them back (builder host and nodes) when
// the test ends, whatever happens.
func saveRings(t *testing.T, ringDir string, nodeDirs []string) {
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
}

func stepOf(st []workflows.StepStatus, name string) workflows.StepStatus {
	for _, s := range st {
		if s.Name == name {
			return s
		}
	}
	return workflows.StepStatus{}
}

func TestSwiftRingWeightInStepsOnLab(t *testing.T) {
	cfgPath, cfg := swiftLabConfig(t, map[string]any{"max_step_percent": 5, "policy.history_budget": 1})
	ringDir := cfg.Swift.BuilderDir
	var nodeDirs []string
	for _, n := range cfg.Swift.Nodes {
		if n.SwiftDir != "" && n.SwiftDir != ringDir {
			nodeDirs = append(nodeDirs, n.SwiftDir)
		}
	}
	require.Len(t, nodeDirs, 3, "three storage nodes besides the ring-builder host")
	const dev = "127.0.0.23/sdg"
	weightOf := func(kind string) string {
		for _, d := range ringDevices(t, filepath.Join(ringDir, kind+".builder")) {
			if strings.HasPrefix(d, dev+" ") {
				return strings.Fields(d)[1]
			}
		}
		return "<not in the ring>"
	}
	for _, kind := range ringKinds {
		require.Equal(t, "100.00", weightOf(kind), "%s ring at the start (a ring change left by an earlier run? restore the builders from %s/backups)", kind, ringDir)
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
	id := rn.mustStart("swift-ring", &workflows.SwiftRingInput{
		Meta:      workflows.Meta{RequestedBy: "alice", Reason: "e2e: weight in steps"},
		SetWeight: []string{"storage3/sdg=50"}, SettleTimeout: 5 * time.Minute, PollInterval: 3 * time.Second,
	})
	st := rn.waitGate(id, workflows.GateApproveRingChange, 2*time.Minute)
	plan := strings.Join(st.Plan, "\n")
	require.Contains(t, plan, "(8.3%); swift.max_step_percent is 5: 2 steps", "plan:\n%s", plan)
	for _, kind := range ringKinds {
		require.Contains(t, plan, "step 1/2: "+kind+": set_weight 127.0.0.23:", "plan:\n%s", plan)
	}
	require.Contains(t, plan, "/sdg to 75 (storage3)")
	require.Contains(t, plan, "/sdg to 50 (storage3)")
	require.Contains(t, plan, "step 1/2: rebalance, distribute, wait for replication to settle and for min_part_hours")
	rn.approve(id, workflows.GateApproveRingChange, "bob")

	// Step 1 is applied and distributed; replication settles; then the durable wait.
	st = rn.waitFor(id, 7*time.Minute, "waiting for min_part_hours before step 2", func(st workflows.Status) bool {
		return strings.Contains(stepOf(st.Steps, "min-part-hours/2").Detail, "waiting until")
	})
	waitAt := time.Now()
	require.Equal(t, workflows.StepDone, stepOf(st.Steps, "settle/1").State, "replication settled before the wait: %+v", st.Steps)
	t.Logf("step 1 applied; settle/1: %s (%s after the start)", stepOf(st.Steps, "settle/1").Detail, waitAt.Sub(started).Round(time.Second))
	t.Logf("min-part-hours/2: %s", stepOf(st.Steps, "min-part-hours/2").Detail)
	for _, kind := range ringKinds {
		require.Equal(t, "75.00", weightOf(kind), "%s ring after step 1", kind)
	}
	// The runbook waits: nothing changes for a while.
	time.Sleep(20 * time.Second)
	st = rn.waitFor(id, time.Minute, "still waiting", func(workflows.Status) bool { return true })
	require.Equal(t, workflows.StepRunning, stepOf(st.Steps, "min-part-hours/2").State, "%+v", st.Steps)
	for _, kind := range ringKinds {
		require.Equal(t, "75.00", weightOf(kind), "%s ring while the runbook waits for min_part_hours", kind)
	}

	// Test setup, as an operator could: min_part_hours ends now. The runbook notices on its
	// next re-read (within a minute here) and applies step 2.
	pretend()
	pretendAt := time.Now()
	rep := rn.report(id, 5*time.Minute)
	require.Equal(t, workflows.StatusCompleted, rep.Status, "%s %+v", rep.Summary, rep.Steps)
	for _, kind := range ringKinds {
		require.Equal(t, "50.00", weightOf(kind), "%s ring after step 2", kind)
	}
	for _, kind := range ringKinds {
		want := md5File(t, filepath.Join(ringDir, kind+".ring.gz"))
		for _, d := range nodeDirs {
			require.Equal(t, want, md5File(t, filepath.Join(d, kind+".ring.gz")), "%s/%s.ring.gz", d, kind)
		}
	}
	var applied2 time.Time
	for _, a := range rep.Audit {
		if a.Step == "apply/2" && a.Activity == "ApplyRingOps" {
			applied2 = a.At
		}
	}
	require.False(t, applied2.IsZero(), "step 2 applied")
	require.True(t, applied2.After(pretendAt.Add(-time.Second)), "step 2 only after min_part_hours had passed on the builder (%s vs %s)", applied2, pretendAt)
	for _, s := range []string{"apply/1", "rebalance/1", "distribute/1", "verify/1", "settle/1", "min-part-hours/2", "apply/2", "rebalance/2", "distribute/2", "verify/2"} {
		require.Equal(t, workflows.StepDone, stepOf(rep.Steps, s).State, "step %s: %+v", s, stepOf(rep.Steps, s))
	}
	require.EqualValues(t, 2, rep.Details["runs"], "continued as new between the steps: two runs, one report")
	require.Len(t, rep.Decisions, 1, "approved once: %+v", rep.Decisions)
	t.Logf("report: %s; step 2 applied %s after the pretend; total %s", rep.Summary, applied2.Sub(pretendAt).Round(time.Second), time.Since(started).Round(time.Second))
}
