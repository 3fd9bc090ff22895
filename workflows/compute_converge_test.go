package workflows_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stackrun/stackrun/config/policy"
	wf "github.com/stackrun/stackrun/workflows"
)

func forceCompletePolicy(p *policy.Policy) {
	p.LiveMigrationStall, p.LiveMigrationNotConverging = 3*time.Minute, policy.NotConvergingForceComplete
}

// Policy force-complete: the move that does not converge waits at its own signed gate (the
// other moves go on); approved, the migration is force-completed and followed to its end.
func TestEvacuationForceCompleteBehindAGate(t *testing.T) {
	f := newEvacFixtureP(t, sampleInstances(3), bigCaps, forceCompletePolicy)
	f.notConverge["id-001"] = true
	f.approveAt(wf.GateApprovePlan, time.Minute)
	var gateSeen bool // a run that never opens the gate ends before the callback: it must not pass
	f.env.RegisterDelayedCallback(func() {
		gateSeen = true
		st := f.status()
		require.Equal(t, wf.StatusWaitingApproval, st.Status)
		require.Len(t, st.OpenGates, 1)
		g := st.OpenGates[0]
		assert.Equal(t, "force-complete:id-001", g.Name)
		assert.Contains(t, g.Summary, "pauses the guest")
		assert.Contains(t, g.Summary, "2048 MiB of 8192 MiB memory remaining")
		f.mu.Lock()
		assert.NotContains(t, strings.Join(f.calls, " "), "force-complete:id-001", "nothing forced before the gate")
		f.mu.Unlock()
		f.update(wf.UpdateApprove, wf.GateDecisionRequest{Gate: "force-complete:id-001", By: "bob"}, "")
	}, time.Hour)
	f.run(wf.Evacuate.Type, evacInput())
	rep := f.report()
	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	require.True(t, gateSeen, "the run ended before it waited at force-complete:id-001")
	joined := strings.Join(f.calls, " ")
	assert.Contains(t, joined, "stall-watch:id-001:3m0s:force-complete")
	iForce := strings.Index(joined, "force-complete:id-001")
	require.Positive(t, iForce, joined)
	assert.Contains(t, joined[iForce:], "move:id-001:live:", "followed after the force")
	assert.Contains(t, rep.Summary, "3 instance(s) moved")
	assert.NotContains(t, joined, "abort-migration")
}

// Rejected: the migration is aborted instead (no pause), and the move's step stalls; skip
// leaves the instance on the host.
func TestEvacuationForceCompleteRejectedAborts(t *testing.T) {
	f := newEvacFixtureP(t, sampleInstances(2), bigCaps, forceCompletePolicy)
	f.notConverge["id-000"] = true
	f.approveAt(wf.GateApprovePlan, time.Minute)
	f.env.RegisterDelayedCallback(func() {
		f.update(wf.UpdateReject, wf.GateDecisionRequest{Gate: "force-complete:id-000", By: "bob", Comment: "no downtime today"}, "")
	}, time.Hour)
	f.env.RegisterDelayedCallback(func() {
		st := f.status()
		require.Equal(t, wf.StatusStalled, st.Status)
		require.Len(t, st.Stalled, 1)
		assert.Equal(t, "migrate/id-000", st.Stalled[0].Step)
		assert.Contains(t, st.Stalled[0].Error, "force-complete not approved")
		f.update(wf.UpdateResolve, wf.ResolveRequest{Step: "migrate/id-000", Action: wf.ResolveSkip, By: "bob"}, "")
	}, 3*time.Hour)
	f.run(wf.Evacuate.Type, evacInput())
	rep := f.report()
	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	joined := strings.Join(f.calls, " ")
	assert.Contains(t, joined, "abort-migration:id-000")
	assert.NotContains(t, joined, "force-complete:id-000")
	assert.Contains(t, rep.Summary, "1 instance(s) moved, 1 left")
}

// The stall window stays below Nova's own timeout for a small guest (800 s per GiB), and policy
// abort is what the activity gets by default.
func TestEvacuationStallWindowBelowNovaTimeout(t *testing.T) {
	f := newEvacFixtureP(t, sampleInstances(1), bigCaps, func(p *policy.Policy) { p.LiveMigrationStall = time.Hour })
	f.approveAt(wf.GateApprovePlan, time.Minute)
	f.notConverge["id-000"] = true
	f.run(wf.Evacuate.Type, evacInput())
	// 512 MB RAM + 1 GB disk: Nova gives 1200 s, the watch half of it.
	assert.Contains(t, strings.Join(f.calls, " "), "stall-watch:id-000:10m0s:abort")
}
