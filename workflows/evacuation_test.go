package workflows_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"

	"github.com/stackrun/stackrun/activities"
	wf "github.com/stackrun/stackrun/workflows"
)

var (
	computeAct *activities.Compute
	novaDBAct  *activities.NovaDB
)

func TestPlanMovesPacksAndSkips(t *testing.T) {
	insts := []activities.Instance{
		{ID: "a", Name: "a", Status: "ACTIVE", VCPUs: 2, RAMMB: 4096, DiskGB: 20},
		{ID: "b", Name: "b", Status: "SHUTOFF", VCPUs: 1, RAMMB: 2048, DiskGB: 10},
		{ID: "c", Name: "c", Status: "ERROR", VCPUs: 1, RAMMB: 512, DiskGB: 1, Fault: "boom"},
		{ID: "d", Name: "d", Status: "ACTIVE", TaskState: "resize_prep", VCPUs: 1, RAMMB: 512, DiskGB: 1},
		{ID: "e", Name: "e", Status: "PAUSED", VCPUs: 1, RAMMB: 3000, DiskGB: 1},
		{ID: "f", Name: "f", Status: "SUSPENDED", VCPUs: 1, RAMMB: 512, DiskGB: 1},
	}
	caps := []activities.HostCapacity{{Host: "c2", FreeVCPUs: 10, FreeRAMMB: 6000, FreeDiskGB: 100}, {Host: "c3", FreeVCPUs: 10, FreeRAMMB: 6000, FreeDiskGB: 100}}
	moves, err := wf.PlanMoves("c1", insts, caps, false)
	require.NoError(t, err)
	kinds := map[string]string{}
	to := map[string]string{}
	for _, m := range moves {
		kinds[m.ID], to[m.ID] = m.Kind, m.To
	}
	assert.Equal(t, map[string]string{"a": "live", "b": "cold", "c": "skip", "d": "skip", "e": "live", "f": "skip"}, kinds)
	// Largest first onto the target with the most free memory: a (4096) → c2, e (3000) → c3
	// (6000 > 1904), b (2048) → c3 (3000 left > 1904).
	assert.Equal(t, map[string]string{"a": "c2", "b": "c3", "c": "", "d": "", "e": "c3", "f": ""}, to)
	assert.Contains(t, moves[2].Why, "ERROR")
	assert.Contains(t, moves[2].Why, "boom")
	assert.Contains(t, moves[3].Why, "resize_prep")
	for _, m := range moves {
		if m.Kind != "skip" {
			assert.NotEmpty(t, m.To, m.ID)
			assert.NotEqual(t, "c1", m.To)
			assert.Greater(t, m.Timeout, 5*time.Minute)
		}
	}
	// Per target, what was placed fits its free capacity.
	used := map[string][3]int{}
	for i, m := range moves {
		if m.To != "" {
			u := used[m.To]
			u[0] += insts[i].VCPUs
			u[1] += insts[i].RAMMB
			u[2] += insts[i].DiskGB
			used[m.To] = u
		}
	}
	for _, c := range caps {
		assert.LessOrEqual(t, used[c.Host][1], c.FreeRAMMB, c.Host)
	}

	// Evacuation mode: ERROR and SUSPENDED instances are rebuilt too.
	moves, err = wf.PlanMoves("c1", insts, []activities.HostCapacity{{Host: "c2", FreeVCPUs: 100, FreeRAMMB: 100000, FreeDiskGB: 1000}}, true)
	require.NoError(t, err)
	assert.Equal(t, "evacuate", moves[2].Kind)
	assert.Equal(t, "skip", moves[3].Kind, "busy instances are never moved")
}

func TestPlanMovesRefusesNamingTheShortfall(t *testing.T) {
	insts := []activities.Instance{
		{ID: "big1", Name: "big1", Status: "ACTIVE", VCPUs: 4, RAMMB: 500000, DiskGB: 10},
		{ID: "big2", Name: "big2", Status: "ACTIVE", VCPUs: 4, RAMMB: 500000, DiskGB: 10},
		{ID: "err", Name: "err", Status: "ERROR", VCPUs: 64, RAMMB: 900000, DiskGB: 10},
	}
	caps := []activities.HostCapacity{{Host: "compute2", FreeVCPUs: 100, FreeRAMMB: 700000, FreeDiskGB: 1000}}
	_, err := wf.PlanMoves("compute1", insts, caps, false)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "1 instance(s) fit nowhere")
	assert.Contains(t, err.Error(), "500000 MB RAM")
	assert.Contains(t, err.Error(), "compute2: 100 vCPU, 700000 MB RAM")
	assert.NotContains(t, err.Error(), "err (", "a skipped ERROR instance needs no room")
}

func TestMoveTimeoutScalesWithGuest(t *testing.T) {
	assert.Equal(t, 5*time.Minute+800*time.Second, wf.MoveTimeout(1024, 0))
	assert.Equal(t, 5*time.Minute+(800*(4+40))*time.Second, wf.MoveTimeout(4096, 40))
	assert.Greater(t, wf.MoveTimeout(65536, 100), wf.MoveTimeout(512, 1))
}

func TestEvacuateInputValidation(t *testing.T) {
	ok := wf.EvacuateInput{Meta: wf.Meta{RequestedBy: "alice", Reason: "bios"}, Host: "compute1", Parallel: 4}
	require.NoError(t, ok.Validate())
	cases := map[string]func(in *wf.EvacuateInput){
		"host":            func(in *wf.EvacuateInput) { in.Host = "compute1; rm -rf /" },
		"to":              func(in *wf.EvacuateInput) { in.Targets = []string{"compute1"} },
		"parallel":        func(in *wf.EvacuateInput) { in.Parallel = 0 },
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

// evacFixture mocks a compute host with instances and two targets.
type evacFixture struct {
	*fixture
	mu        sync.Mutex
	calls     []string // service changes and moves, in order
	inflight  int
	maxFlight int
	failMove  map[string]bool
}

var computeFacts = activities.HostFacts{Name: "compute1", Address: "127.0.0.11", Roles: []string{"compute"},
	Services: []activities.ServiceFacts{{Role: "compute", Name: "nova-compute", Log: "/var/log/nova-compute.log", AMQP: true}}}

func newEvacFixture(t *testing.T, insts []activities.Instance, caps []activities.HostCapacity) *evacFixture {
	p := basePolicy()
	p.TwoPersonGates = []string{wf.GateApprovePlan, wf.GateConfirmHostDead}
	f := &evacFixture{fixture: newFixture(t, p), failMove: map[string]bool{}}
	f.env.RegisterActivity(computeAct)
	f.env.RegisterActivity(novaDBAct)
	f.grantLeases()
	f.env.OnActivity(hosts.DescribeHost, mock.Anything, "compute1").Return(computeFacts, nil)
	svcs := []activities.ComputeService{
		{Host: "compute1", ID: "s1", Status: "enabled", State: "up", UpdatedAt: time.Now().Add(1000 * time.Hour)},
		{Host: "compute2", ID: "s2", Status: "enabled", State: "up"},
		{Host: "compute3", ID: "s3", Status: "enabled", State: "up"},
	}
	f.env.OnActivity(computeAct.ComputeServices, mock.Anything).Return(svcs, nil)
	onHost := slices.Clone(insts)
	f.env.OnActivity(computeAct.InstancesOnHost, mock.Anything, "compute1").Return(func(context.Context, string) ([]activities.Instance, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		return slices.Clone(onHost), nil
	})
	f.env.OnActivity(novaDBAct.DBInstancesOnHost, mock.Anything, "compute1").Return(func(context.Context, string) ([]string, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		var ids []string
		for _, i := range onHost {
			ids = append(ids, i.ID)
		}
		return ids, nil
	})
	f.env.OnActivity(computeAct.Capacity, mock.Anything, mock.Anything).Return(caps, nil)
	f.env.OnActivity(computeAct.SetComputeService, mock.Anything, mock.Anything).Return(func(_ context.Context, ch activities.ServiceChange) (activities.ComputeService, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		switch {
		case ch.Disable:
			f.calls = append(f.calls, "disable:"+ch.Host+":"+ch.Reason)
		case ch.Enable:
			f.calls = append(f.calls, "enable:"+ch.Host)
		case ch.ForcedDown != nil:
			f.calls = append(f.calls, fmt.Sprintf("forced-down:%s:%v", ch.Host, *ch.ForcedDown))
		}
		return activities.ComputeService{Host: ch.Host}, nil
	})
	f.env.OnActivity(computeAct.MoveInstance, mock.Anything, mock.Anything).Return(func(_ context.Context, req activities.MoveRequest) (activities.MoveResult, error) {
		f.mu.Lock()
		f.inflight++
		f.maxFlight = max(f.maxFlight, f.inflight)
		f.calls = append(f.calls, "move:"+req.ID+":"+req.Kind+":"+req.Target)
		fail := f.failMove[req.ID]
		f.mu.Unlock()
		time.Sleep(20 * time.Millisecond) // real time: lets parallel activities overlap
		f.mu.Lock()
		defer f.mu.Unlock()
		f.inflight--
		if fail {
			return activities.MoveResult{}, temporal.NewApplicationError("move of "+req.ID+" failed: it is ACTIVE on compute1 again", "MoveFailed")
		}
		onHost = slices.DeleteFunc(onHost, func(i activities.Instance) bool { return i.ID == req.ID && req.Source == "compute1" })
		return activities.MoveResult{ID: req.ID, From: req.Source, To: req.Target, Status: "ACTIVE", Migration: "m-" + req.ID, MigrationStat: "completed", Started: true}, nil
	})
	f.env.OnActivity(hosts.ServiceStatus, mock.Anything, mock.Anything).Return(activities.ServiceState{Running: true}, nil)
	f.env.OnActivity(hosts.CheckAMQP, mock.Anything, mock.Anything).Return(activities.AMQPResult{Connected: true, At: time.Now()}, nil)
	return f
}

func (f *evacFixture) approveAt(gate string, at time.Duration) {
	f.env.RegisterDelayedCallback(func() {
		st := f.status()
		require.Equal(f.t, wf.StatusWaitingApproval, st.Status)
		f.update(wf.UpdateApprove, wf.GateDecisionRequest{Gate: gate, By: "bob"}, "")
	}, at)
}

func sampleInstances(n int) []activities.Instance {
	var out []activities.Instance
	for i := range n {
		out = append(out, activities.Instance{ID: fmt.Sprintf("id-%03d", i), Name: fmt.Sprintf("vm-%03d", i), Status: "ACTIVE", Host: "compute1", VCPUs: 1, RAMMB: 512, DiskGB: 1})
	}
	return out
}

var bigCaps = []activities.HostCapacity{{Host: "compute2", FreeVCPUs: 10000, FreeRAMMB: 10000000, FreeDiskGB: 100000}, {Host: "compute3", FreeVCPUs: 10000, FreeRAMMB: 10000000, FreeDiskGB: 100000}}

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
	f.env.ExecuteWorkflow(wf.ComputeEvacuation, evacInput())
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
	f.env.ExecuteWorkflow(wf.ComputeEvacuation, in)
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
	f.env.ExecuteWorkflow(wf.ComputeEvacuation, in)
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
	f.env.ExecuteWorkflow(wf.ComputeEvacuation, evacInput())
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
	f.env.ExecuteWorkflow(wf.ComputeEvacuation, evacInput())
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
	f.env.ExecuteWorkflow(wf.ComputeEvacuation, in)
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
	f.env.ExecuteWorkflow(wf.ComputeEvacuation, in)
	rep := f.report()
	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	joined := strings.Join(f.calls, " ")
	iStop, iStart, iEnable := strings.Index(joined, "stop:nova-compute"), strings.Index(joined, "start:nova-compute"), strings.Index(joined, "enable:compute1")
	require.True(t, iStop > 0 && iStart > iStop && iEnable > iStart, joined)
	// Moves back after the enable, to compute1.
	back := joined[iEnable:]
	assert.Equal(t, 2, strings.Count(back, "live:compute1"), back)
}

func TestPostRebootCheckComputeStartsInstancesOnlyWhenAsked(t *testing.T) {
	insts := sampleInstances(3)
	for i := range insts {
		insts[i].PowerState = 1
	}
	insts[1].Status, insts[1].PowerState = "SHUTOFF", 4
	insts[2].PowerState = 0 // ACTIVE but the hypervisor lost it
	for _, start := range []bool{false, true} {
		f := newEvacFixture(t, insts, bigCaps)
		f.env.OnActivity(hosts.BootTime, mock.Anything, "compute1").Return(time.Now().Add(-time.Hour), nil)
		f.env.OnActivity(cloud.Probe, mock.Anything, mock.Anything).Return(activities.APIProbeResult{OK: true}, nil)
		var recovered []string
		f.env.OnActivity(computeAct.RecoverInstance, mock.Anything, mock.Anything, mock.Anything).Return(func(_ context.Context, id string, _ time.Duration) (activities.InstanceRecovery, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			recovered = append(recovered, id)
			return activities.InstanceRecovery{ID: id, Action: "start", After: "ACTIVE"}, nil
		})
		f.env.ExecuteWorkflow(wf.PostRebootCheck, wf.PostRebootCheckInput{Meta: wf.Meta{RequestedBy: "carol"}, Host: "compute1", StartInstances: start})
		rep := f.report()
		require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
		if !start {
			assert.Empty(t, recovered, "read-only by default")
			assert.Len(t, rep.Findings, 2)
			continue
		}
		assert.Equal(t, []string{"id-001", "id-002"}, recovered)
		assert.Empty(t, rep.Findings)
	}
}
