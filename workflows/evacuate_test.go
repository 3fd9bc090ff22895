package workflows_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"

	"github.com/stackrun/stackrun/activities"
	wf "github.com/stackrun/stackrun/workflows"
)

func TestEvacuateInputValidation(t *testing.T) {
	ok := wf.EvacuateInput{Meta: wf.Meta{RequestedBy: "alice", Reason: "bios"}, Host: "compute1", Parallel: 4}
	require.NoError(t, ok.Validate())
	cases := map[string]func(in *wf.EvacuateInput){
		"host":            func(in *wf.EvacuateInput) { in.Host = "compute1; rm -rf /" },
		"to":              func(in *wf.EvacuateInput) { in.Targets = []string{"compute1"} },
		"parallel":        func(in *wf.EvacuateInput) { in.Parallel = -1 },
		"block-migration": func(in *wf.EvacuateInput) { in.BlockMigration = "maybe" },
		"reason":          func(in *wf.EvacuateInput) { in.Reason = "" },
	}
	for field, mut := range cases {
		in := ok
		mut(&in)
		err := in.Validate()
		require.Error(t, err, field)
		assert.True(t, strings.HasPrefix(err.Error(), field), "%s: %v", field, err)
	}
	in := ok
	in.Targets = []string{"$(reboot)"}
	assert.ErrorContains(t, in.Validate(), "not a valid host name")
	in = ok
	in.Reason = "line\x00break"
	assert.ErrorContains(t, in.Validate(), "control characters")
}

func (f *evacFixture) approveAt(gate string, at time.Duration) {
	f.env.RegisterDelayedCallback(func() {
		st := f.status()
		require.Equal(f.t, wf.StatusWaitingApproval, st.Status)
		f.update(wf.UpdateApprove, wf.GateDecisionRequest{Gate: gate, By: "bob"}, "")
	}, at)
}

func evacInput() wf.EvacuateInput {
	return wf.EvacuateInput{Meta: wf.Meta{RequestedBy: "alice", Reason: "BIOS update"}, Host: "compute1", Parallel: 3}
}

func TestEvacuationMovesActiveAndShutoffLeavesError(t *testing.T) {
	insts := sampleInstances(6)
	insts[4].Status = "SHUTOFF"
	insts[5].Status, insts[5].Fault = "ERROR", "no valid host"
	f := newEvacFixture(t, insts, bigCaps)
	f.env.RegisterDelayedCallback(func() {
		// Before approval nothing changed.
		f.mu.Lock()
		require.Empty(t, f.calls)
		f.mu.Unlock()
		st := f.status()
		require.Equal(t, wf.GateApprovePlan, st.OpenGates[0].Name)
		require.Len(t, st.Plan, 2+6+2)
		f.update(wf.UpdateApprove, wf.GateDecisionRequest{Gate: wf.GateApprovePlan, By: "alice"}, "may not approve the destructive gate")
	}, time.Minute)
	f.approveAt(wf.GateApprovePlan, 2*time.Minute)
	f.run(wf.Evacuate.Type, evacInput())
	rep := f.report()
	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	assert.Empty(t, rep.LeftState)

	f.mu.Lock()
	calls := slices.Clone(f.calls)
	f.mu.Unlock()
	require.Equal(t, "disable:compute1:BIOS update", calls[0])
	require.Equal(t, "enable:compute1", calls[len(calls)-1])
	var moved []string
	for _, c := range calls {
		if strings.HasPrefix(c, "move:") {
			moved = append(moved, c)
		}
	}
	require.Len(t, moved, 5)
	assert.Contains(t, strings.Join(moved, " "), "move:id-004:cold:")
	assert.NotContains(t, strings.Join(moved, " "), "id-005")
	assert.LessOrEqual(t, f.maxFlight, 3)

	stepDetail := map[string]string{}
	for _, s := range rep.Steps {
		stepDetail[s.Name] = s.Detail
	}
	for i := range 5 {
		d := stepDetail["migrate/"+insts[i].ID]
		assert.Regexp(t, `compute1 → compute[23]`, d)
	}
	assert.Contains(t, stepDetail["verify-empty"], "1 instance(s) left on purpose")
	assert.Contains(t, rep.Summary, "5 instance(s) moved, 1 left")
}

func TestEvacuationBoundsMigrationsInFlight(t *testing.T) {
	f := newEvacFixture(t, sampleInstances(20), bigCaps)
	f.approveAt(wf.GateApprovePlan, time.Minute)
	in := evacInput()
	in.Parallel = 4
	f.run(wf.Evacuate.Type, in)
	rep := f.report()
	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	assert.LessOrEqual(t, f.maxFlight, 4)
	assert.GreaterOrEqual(t, f.maxFlight, 2, "moves overlap")
}

func TestEvacuationCapacityRefusedBeforeAnyChange(t *testing.T) {
	insts := sampleInstances(3)
	for i := range insts {
		insts[i].RAMMB = 400000
	}
	f := newEvacFixture(t, insts, []activities.HostCapacity{{Host: "compute2", FreeVCPUs: 100, FreeRAMMB: 700000, FreeDiskGB: 100}})
	in := evacInput()
	in.Targets = []string{"compute2"}
	f.run(wf.Evacuate.Type, in)
	rep := f.report()
	require.Equal(t, wf.StatusFailed, rep.Status)
	assert.Contains(t, rep.Summary, "not enough capacity")
	assert.Contains(t, rep.Summary, "2 instance(s) fit nowhere")
	assert.Empty(t, f.calls, "nothing changed")
	assert.Empty(t, rep.Decisions)
}

func TestEvacuationStalledMoveSkipped(t *testing.T) {
	insts := sampleInstances(3)
	f := newEvacFixture(t, insts, bigCaps)
	f.failMove["id-001"] = true
	f.approveAt(wf.GateApprovePlan, time.Minute)
	f.env.RegisterDelayedCallback(func() {
		st := f.status()
		require.Equal(t, wf.StatusStalled, st.Status)
		require.Len(t, st.Stalled, 1)
		require.Equal(t, "migrate/id-001", st.Stalled[0].Step)
		assert.Contains(t, st.Stalled[0].Error, "failed")
		f.update(wf.UpdateResolve, wf.ResolveRequest{Step: "migrate/id-001", Action: wf.ResolveSkip, By: "bob"}, "")
	}, 3*time.Hour)
	f.run(wf.Evacuate.Type, evacInput())
	rep := f.report()
	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	assert.Contains(t, rep.Summary, "2 instance(s) moved, 1 left")
	var found bool
	for _, s := range rep.Steps {
		if s.Name == "migrate/id-001" {
			found = true
			assert.Equal(t, wf.StepSkipped, s.State)
			assert.Contains(t, s.Detail, "left on compute1")
		}
	}
	require.True(t, found)
	assert.Equal(t, "enable:compute1", f.calls[len(f.calls)-1], "the host is enabled again after a skip")
}

func TestEvacuationAbortSaysWhatItLeft(t *testing.T) {
	f := newEvacFixture(t, sampleInstances(2), bigCaps)
	f.failMove["id-000"] = true
	f.approveAt(wf.GateApprovePlan, time.Minute)
	f.env.RegisterDelayedCallback(func() {
		f.update(wf.UpdateResolve, wf.ResolveRequest{Step: "migrate/id-000", Action: wf.ResolveAbort, By: "bob"}, "")
	}, 3*time.Hour)
	f.run(wf.Evacuate.Type, evacInput())
	rep := f.report()
	require.Equal(t, wf.StatusAborted, rep.Status)
	assert.Contains(t, rep.LeftState, "DISABLED")
	assert.Contains(t, rep.LeftState, "1 instance(s) moved")
	assert.NotContains(t, f.calls, "enable:compute1")
}

func TestEvacuationDryRunChangesNothing(t *testing.T) {
	f := newEvacFixture(t, sampleInstances(3), bigCaps)
	in := evacInput()
	in.DryRun = true
	f.run(wf.Evacuate.Type, in)
	rep := f.report()
	require.Equal(t, wf.StatusCompleted, rep.Status)
	assert.Len(t, rep.Plan, 2+3+2)
	assert.Empty(t, f.calls)
	assert.Contains(t, rep.Summary, "dry run")
}

func TestEvacuationMaintenanceGateAndMigrateBack(t *testing.T) {
	f := newEvacFixture(t, sampleInstances(2), bigCaps)
	f.env.OnActivity(hosts.SetService, mock.Anything, mock.Anything).Return(func(_ context.Context, a activities.ServiceAction) error {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.calls = append(f.calls, a.Action+":"+a.Service)
		return nil
	})
	f.approveAt(wf.GateApprovePlan, time.Minute)
	f.env.RegisterDelayedCallback(func() {
		st := f.status()
		require.Equal(t, wf.GateMaintenanceDone, st.OpenGates[0].Name)
		f.update(wf.UpdateApprove, wf.GateDecisionRequest{Gate: wf.GateMaintenanceDone, By: "alice"}, "")
	}, 2*time.Hour)
	in := evacInput()
	in.MaintenanceGate, in.MigrateBack = true, true
	f.run(wf.Evacuate.Type, in)
	rep := f.report()
	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	joined := strings.Join(f.calls, " ")
	iStop, iStart, iEnable := strings.Index(joined, "stop:nova-compute"), strings.Index(joined, "start:nova-compute"), strings.Index(joined, "enable:compute1")
	require.True(t, iStop > 0 && iStart > iStop && iEnable > iStart, joined)
	// Moves back after the enable, to compute1.
	back := joined[iEnable:]
	assert.Equal(t, 2, strings.Count(back, "live:compute1"), back)
}

// An instance deleted while the plan waited for approval longer than policy.plan_max_age: the
// plan is made again before anything changes, the drift is shown, and the gate asks again with
// the new plan, which no longer moves the deleted instance.
func TestEvacuateStalePlanAsksAgain(t *testing.T) {
	f := newEvacFixture(t, sampleInstances(3), bigCaps)
	f.env.RegisterDelayedCallback(func() { f.vanish("id-000") }, 90*time.Minute)
	f.approveAt(wf.GateApprovePlan, 2*time.Hour)
	f.env.RegisterDelayedCallback(func() {
		st := f.status()
		require.Len(t, st.OpenGates, 1, "the gate asks again")
		assert.Contains(t, st.OpenGates[0].Summary, "ASKED AGAIN")
		assert.Contains(t, st.OpenGates[0].Summary, "vm-000")
		f.mu.Lock()
		assert.Empty(t, f.calls, "nothing changed on a stale plan")
		f.mu.Unlock()
		for _, l := range st.Plan {
			assert.NotContains(t, l, "id-000", "the new plan")
		}
		f.update(wf.UpdateApprove, wf.GateDecisionRequest{Gate: wf.GateApprovePlan, By: "bob", Comment: "still fine"}, "")
	}, 2*time.Hour+10*time.Minute)
	f.run(wf.Evacuate.Type, evacInput())
	rep := f.report()
	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	f.mu.Lock()
	calls := slices.Clone(f.calls)
	f.mu.Unlock()
	for _, c := range calls {
		assert.NotContains(t, c, "id-000", "the deleted instance is not moved")
	}
	assert.Contains(t, calls, "move:id-001:live:"+moveTarget(calls, "id-001"))
	assert.Equal(t, 2, countOf(f.notified, "gate-opened:"+wf.GateApprovePlan))
	assert.Equal(t, wf.StepDone, stepState(rep, "plan-drift"))
	assert.Contains(t, stepDetail(rep, "plan-drift"), "vm-000")
	var approvals int
	for _, d := range rep.Decisions {
		if d.Name == wf.GateApprovePlan && d.Outcome == "approved" {
			approvals++
		}
	}
	assert.Equal(t, 2, approvals)
	assert.Contains(t, rep.Summary, "2 instance(s) moved")
}

// An old plan that did not drift is acted on without asking again.
func TestEvacuateOldPlanWithoutDriftGoesOn(t *testing.T) {
	f := newEvacFixture(t, sampleInstances(2), bigCaps)
	f.approveAt(wf.GateApprovePlan, 3*time.Hour)
	f.run(wf.Evacuate.Type, evacInput())
	rep := f.report()
	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	assert.Equal(t, 1, countOf(f.notified, "gate-opened:"+wf.GateApprovePlan))
	assert.Contains(t, rep.Details, "plan_rechecked", "the plan was checked again")
	assert.Empty(t, stepState(rep, "plan-drift"), "no drift: no such step")
}

// --parallel 0 (the default) is policy.default_parallelism.
func TestEvacuateParallelDefaultsToPolicy(t *testing.T) {
	f := newEvacFixture(t, sampleInstances(8), bigCaps)
	f.approveAt(wf.GateApprovePlan, time.Minute)
	in := evacInput()
	in.Parallel = 0
	f.run(wf.Evacuate.Type, in)
	rep := f.report()
	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	require.Equal(t, 2, basePolicy().DefaultParallelism)
	assert.Contains(t, rep.Plan[0], "at most 2 migration(s) in flight")
	assert.LessOrEqual(t, f.maxFlight, 2)
}

func moveTarget(calls []string, id string) string {
	for _, c := range calls {
		if p := strings.Split(c, ":"); len(p) == 4 && p[0] == "move" && p[1] == id {
			return p[3]
		}
	}
	return "?"
}

func countOf(list []string, s string) int {
	n := 0
	for _, x := range list {
		if x == s {
			n++
		}
	}
	return n
}
