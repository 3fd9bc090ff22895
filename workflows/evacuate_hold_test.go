package workflows_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"

	"github.com/stackrun/stackrun/activities"
	wf "github.com/stackrun/stackrun/workflows"
)

func maintenanceFixture(t *testing.T) *evacFixture {
	f := newEvacFixture(t, sampleInstances(2), bigCaps)
	f.env.OnActivity(hosts.SetService, mock.Anything, mock.Anything).Return(func(_ context.Context, a activities.ServiceAction) error {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.calls = append(f.calls, a.Action+":"+a.Service)
		return nil
	})
	f.approveAt(wf.GateApprovePlan, time.Minute)
	return f
}

// The hold comes right after the stop, the release right before the start, both in the order
// policy lists them, and the report names the commands.
func TestEvacuationHoldsConfigManagementDuringMaintenance(t *testing.T) {
	f := maintenanceFixture(t)
	f.env.RegisterDelayedCallback(func() {
		st := f.status()
		require.Equal(t, wf.GateMaintenanceDone, st.OpenGates[0].Name)
		assert.Equal(t, wf.StepDone, st.Steps[slicesIndex(st.Steps, "hold-config")].State)
		f.update(wf.UpdateApprove, wf.GateDecisionRequest{Gate: wf.GateMaintenanceDone, By: "alice"}, "")
	}, 2*time.Hour)
	in := evacInput()
	in.MaintenanceGate = true
	f.run(wf.Evacuate.Type, in)
	rep := f.report()
	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	joined := strings.Join(f.calls, " ")
	assert.Contains(t, joined, "stop:nova-compute hold:systemd_mask,puppet_disable release:puppet_enable,systemd_unmask start:nova-compute", joined)
	assert.NotContains(t, rep.LeftState, "HELD")
	cm, ok := rep.Details["config_management"].(map[string]any)
	require.True(t, ok, "%#v", rep.Details["config_management"])
	assert.Contains(t, cm, "hold")
	assert.Contains(t, cm, "release")
	assert.Contains(t, stepNamed(rep, "hold-config").Detail, "systemd_mask")
	assert.Contains(t, strings.Join(rep.Plan, "\n"), "hold configuration management (systemd_mask, puppet_disable")
}

// Rejected at maintenance-done: the run ends aborted, and it released the hold on its way out.
func TestEvacuationReleasesTheHoldOnAbort(t *testing.T) {
	f := maintenanceFixture(t)
	f.env.RegisterDelayedCallback(func() {
		f.update(wf.UpdateReject, wf.GateDecisionRequest{Gate: wf.GateMaintenanceDone, By: "alice", Comment: "hardware not back"}, "")
	}, 2*time.Hour)
	in := evacInput()
	in.MaintenanceGate = true
	f.run(wf.Evacuate.Type, in)
	rep := f.report()
	require.Equal(t, wf.StatusAborted, rep.Status, rep.Summary)
	joined := strings.Join(f.calls, " ")
	iHold, iRelease := strings.Index(joined, "hold:"), strings.Index(joined, "release:puppet_enable,systemd_unmask")
	require.True(t, iHold > 0 && iRelease > iHold, joined)
	assert.NotContains(t, joined, "start:nova-compute", "an abort does not start the service")
	assert.Equal(t, wf.StepDone, stepNamed(rep, "release-config-on-exit").State)
	assert.NotContains(t, rep.LeftState, "HELD")
	assert.Contains(t, rep.LeftState, "STOPPED")
}

// No AMQP connection after the restart, neither logged nor as a socket: the step stalls before
// the host is enabled again (it used to be a warning while the host went back into service).
func TestEvacuationNoReconnectStallsBeforeEnable(t *testing.T) {
	f := maintenanceFixture(t)
	f.amqp = activities.AMQPResult{}
	f.env.RegisterDelayedCallback(func() {
		f.update(wf.UpdateApprove, wf.GateDecisionRequest{Gate: wf.GateMaintenanceDone, By: "alice"}, "")
	}, 2*time.Hour)
	f.env.RegisterDelayedCallback(func() {
		st := f.status()
		require.Equal(t, wf.StatusStalled, st.Status)
		require.Len(t, st.Stalled, 1)
		assert.Equal(t, "verify-reconnect", st.Stalled[0].Step)
		assert.Contains(t, st.Stalled[0].Error, "did not reconnect to the message queue")
		f.mu.Lock()
		assert.NotContains(t, f.calls, "enable:compute1")
		f.mu.Unlock()
		f.update(wf.UpdateResolve, wf.ResolveRequest{Step: "verify-reconnect", Action: wf.ResolveAbort, By: "bob"}, "")
	}, 4*time.Hour)
	in := evacInput()
	in.MaintenanceGate = true
	f.run(wf.Evacuate.Type, in)
	rep := f.report()
	require.Equal(t, wf.StatusAborted, rep.Status, rep.Summary)
	assert.NotContains(t, f.calls, "enable:compute1")
	assert.Contains(t, rep.LeftState, "DISABLED")
}

// Only a socket seen by ss: the host goes back into service, and the report says the evidence
// is the weaker kind.
func TestEvacuationSocketOnlyIsLabelledWeaker(t *testing.T) {
	f := maintenanceFixture(t)
	f.amqp = activities.AMQPResult{Connected: true, Evidence: activities.EvidenceSocket,
		Line: "pid 42 has an established AMQP connection 127.0.0.1:1 -> 127.0.0.1:5672 (seen by ss)"}
	f.env.RegisterDelayedCallback(func() {
		f.update(wf.UpdateApprove, wf.GateDecisionRequest{Gate: wf.GateMaintenanceDone, By: "alice"}, "")
	}, 2*time.Hour)
	in := evacInput()
	in.MaintenanceGate = true
	f.run(wf.Evacuate.Type, in)
	rep := f.report()
	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	assert.Contains(t, stepNamed(rep, "verify-reconnect").Detail, "WEAKER EVIDENCE, only a socket seen by ss")
	var weak bool
	for _, fi := range rep.Findings {
		weak = weak || strings.Contains(fi.Message, "weaker evidence")
	}
	assert.True(t, weak, "%+v", rep.Findings)
	assert.Contains(t, f.calls, "enable:compute1")
}

func slicesIndex(steps []wf.StepStatus, name string) int {
	for i, s := range steps {
		if s.Name == name {
			return i
		}
	}
	return -1
}

// Migrate-back reads the host's room first: while it was in maintenance (or once enabled) others
// took it, so the step stalls naming the shortfall, and nothing moves back until it is resolved.
func TestEvacuationMigrateBackRechecksCapacity(t *testing.T) {
	f := maintenanceFixture(t)
	f.home = activities.HostCapacity{Host: "compute1", FreeVCPUs: 1, FreeRAMMB: 100000, FreeDiskGB: 1000}
	f.env.RegisterDelayedCallback(func() {
		f.update(wf.UpdateApprove, wf.GateDecisionRequest{Gate: wf.GateMaintenanceDone, By: "alice"}, "")
	}, 2*time.Hour)
	f.env.RegisterDelayedCallback(func() {
		st := f.status()
		require.Equal(t, wf.StatusStalled, st.Status)
		require.Len(t, st.Stalled, 1)
		assert.Equal(t, "migrate-back", st.Stalled[0].Step)
		assert.Contains(t, st.Stalled[0].Error, "not enough room on compute1 to move 2 instance(s) back: they need 2 vCPU")
		f.update(wf.UpdateResolve, wf.ResolveRequest{Step: "migrate-back", Action: wf.ResolveSkip, By: "bob"}, "")
	}, 4*time.Hour)
	in := evacInput()
	in.MaintenanceGate, in.MigrateBack = true, true
	f.run(wf.Evacuate.Type, in)
	rep := f.report()
	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	assert.Equal(t, 0, strings.Count(strings.Join(f.calls, " "), "live:compute1"), "nothing moved back: %v", f.calls)
}
