package workflows_test

import (
	"context"
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
		var recovered []string
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
				assert.Contains(t, st.OpenGates[0].Summary, "id-002")
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
			assert.Len(t, rep.Findings, 2)
			continue
		}
		assert.Equal(t, []string{"id-001", "id-002"}, recovered)
		assert.Empty(t, rep.Findings)
		assert.Equal(t, "bob", rep.Decisions[0].By)
	}
}
