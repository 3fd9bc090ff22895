package workflows_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"

	"github.com/stackrun/stackrun/activities"
	wf "github.com/stackrun/stackrun/workflows"
)

func TestPostRebootCheckFindings(t *testing.T) {
	f := newFixture(t, basePolicy())
	facts := activities.HostFacts{Name: "ctl", Address: "127.0.0.10", Roles: []string{"controller"}, Services: []activities.ServiceFacts{
		{Role: "controller", Name: "nova-api", Log: "/l/api.log", AMQP: true},
		{Role: "controller", Name: "nova-conductor", Log: "/l/cond.log", AMQP: true},
		{Role: "controller", Name: "keystone"},
	}}
	boot := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	f.env.OnActivity(hosts.DescribeHost, mock.Anything, "ctl").Return(facts, nil)
	f.env.OnActivity(hosts.BootTime, mock.Anything, "ctl").Return(boot, nil)
	f.env.OnActivity(hosts.ServiceStatus, mock.Anything, mock.MatchedBy(func(r activities.ServiceRequest) bool { return r.Service == "keystone" })).
		Return(activities.ServiceState{Running: false, Output: "inactive"}, nil)
	f.env.OnActivity(hosts.ServiceStatus, mock.Anything, mock.Anything).Return(activities.ServiceState{Running: true}, nil)
	f.env.OnActivity(hosts.CheckAMQP, mock.Anything, mock.MatchedBy(func(r activities.AMQPRequest) bool { return r.Service == "nova-api" && r.Since.Equal(boot) })).
		Return(activities.AMQPResult{Connected: true}, nil)
	f.env.OnActivity(hosts.CheckAMQP, mock.Anything, mock.Anything).Return(activities.AMQPResult{Connected: false}, nil)
	f.env.OnActivity(cloud.Probe, mock.Anything, activities.APIProbe{Kind: "images", Host: "ctl"}).Return(activities.APIProbeResult{OK: false, Detail: "image API: 503"}, nil)
	f.env.OnActivity(cloud.Probe, mock.Anything, mock.Anything).Return(activities.APIProbeResult{OK: true}, nil)
	f.run(wf.PostRebootCheck.Type, wf.PostRebootCheckInput{Meta: wf.Meta{RequestedBy: "carol"}, Host: "ctl"})
	rep := f.report()
	require.Equal(t, wf.StatusCompleted, rep.Status)
	require.Equal(t, "2 critical, 1 warning finding(s)", rep.Summary)
	subjects := map[string]string{}
	for _, fi := range rep.Findings {
		subjects[fi.Subject] = fi.Severity
	}
	require.Equal(t, map[string]string{"ctl/keystone": "critical", "ctl/nova-conductor": "warning", "ctl/api/images": "critical"}, subjects)
	f.env.AssertNotCalled(t, "SetService", mock.Anything, mock.Anything)
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
		var recovered, hard []string
		insts3 := append(slices.Clone(insts), activities.Instance{ID: "id-003", Name: "vm-003", Status: "ACTIVE", PowerState: 1, Host: "compute1"})
		f.onHost = insts3
		// id-003 is ACTIVE and running in the database, but the hypervisor does not run it.
		f.env.OnActivity(computeAct.LostOnHypervisor, mock.Anything, mock.Anything).Return(func(_ context.Context, ids []string) ([]activities.LostInstance, error) {
			assert.Equal(t, []string{"id-000", "id-003"}, ids, "asked about the ACTIVE, running ones only")
			return []activities.LostInstance{{ID: "id-003", Detail: "diagnostics: 409"}}, nil
		})
		f.env.OnActivity(computeAct.HardRebootOn, mock.Anything, mock.Anything).Return(func(_ context.Context, req activities.HardRebootRequest) (activities.HardRebootResult, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			assert.Equal(t, "compute1", req.Host)
			hard = append(hard, req.ID)
			return activities.HardRebootResult{ID: req.ID, Status: "ACTIVE", Host: req.Host}, nil
		})
		f.env.OnActivity(computeAct.RecoverInstance, mock.Anything, mock.Anything, mock.Anything).Return(func(_ context.Context, id string, _ time.Duration) (activities.InstanceRecovery, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			recovered = append(recovered, id)
			return activities.InstanceRecovery{ID: id, Action: "start", After: "ACTIVE"}, nil
		})
		if start {
			// Nothing is started before a person approved the list; the requester may not alone.
			f.env.RegisterDelayedCallback(func() {
				st := f.status()
				require.Equal(t, wf.StatusWaitingApproval, st.Status)
				require.Equal(t, wf.GateStartInstances, st.OpenGates[0].Name)
				assert.Contains(t, st.OpenGates[0].Summary, "id-001")
				assert.Contains(t, st.OpenGates[0].Summary, "vm-002 (id-002, LOST by the hypervisor: hard reboot)")
				assert.Contains(t, st.OpenGates[0].Summary, "vm-003 (id-003, LOST by the hypervisor: hard reboot)")
				assert.NotContains(t, st.OpenGates[0].Summary, "id-000", "running instances are not touched")
				f.mu.Lock()
				assert.Empty(t, recovered)
				f.mu.Unlock()
				f.update(wf.UpdateApprove, wf.GateDecisionRequest{Gate: wf.GateStartInstances, By: "carol"}, "carol may not approve")
				f.update(wf.UpdateApprove, wf.GateDecisionRequest{Gate: wf.GateStartInstances, By: "bob"}, "")
			}, time.Hour)
		}
		f.run(wf.PostRebootCheck.Type, wf.PostRebootCheckInput{Meta: wf.Meta{RequestedBy: "carol"}, Host: "compute1", StartInstances: start})
		rep := f.report()
		require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
		if !start {
			assert.Empty(t, recovered, "read-only by default")
			assert.Empty(t, hard, "read-only by default")
			sev := map[string]string{}
			for _, fi := range rep.Findings {
				sev[fi.Subject] = fi.Severity
			}
			assert.Equal(t, map[string]string{"compute1/id-001": "warning", "compute1/id-002": "critical", "compute1/id-003": "critical"}, sev)
			continue
		}
		assert.Equal(t, []string{"id-001"}, recovered, "SHUTOFF: started")
		assert.Equal(t, []string{"id-002", "id-003"}, hard, "lost by the hypervisor: hard reboot, per policy")
		for _, fi := range rep.Findings {
			assert.Contains(t, fi.Message, "LOST by the hypervisor", "only the lost ones are findings: %+v", fi)
		}
		assert.Equal(t, "bob", rep.Decisions[0].By)
	}
}
