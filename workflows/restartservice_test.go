package workflows_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"

	"github.com/stackrun/stackrun/activities"
	wf "github.com/stackrun/stackrun/workflows"
)

var restartFacts = activities.HostFacts{Name: "compute1", Address: "127.0.0.11", Roles: []string{"compute"},
	Services: []activities.ServiceFacts{{Role: "compute", Name: "nova-compute", Log: "/var/log/nova/nova-compute.log", AMQP: true}}}

func (f *fixture) hostMocks() {
	f.env.OnActivity(hosts.DescribeHost, mock.Anything, "compute1").Return(restartFacts, nil)
	f.env.OnActivity(hosts.ServiceStatus, mock.Anything, mock.Anything).Return(activities.ServiceState{Running: true}, nil)
	f.env.OnActivity(hosts.CheckAMQP, mock.Anything, mock.Anything).Return(activities.AMQPResult{Connected: true}, nil)
}

func restartInput() wf.RestartServiceInput {
	return wf.RestartServiceInput{Meta: wf.Meta{RequestedBy: "alice", Reason: "config change"}, Host: "compute1", Service: "nova-compute"}
}

func TestInvalidInputChangesNothing(t *testing.T) {
	for _, in := range []wf.RestartServiceInput{
		{Meta: wf.Meta{RequestedBy: "alice"}, Host: "compute1;reboot", Service: "nova-compute"},
		{Meta: wf.Meta{RequestedBy: "alice"}, Host: "compute1", Service: "$(rm -rf /)"},
		{Meta: wf.Meta{RequestedBy: "al ice"}, Host: "compute1", Service: "nova-compute"},
		{Meta: wf.Meta{RequestedBy: "alice"}, Host: "", Service: "nova-compute"},
	} {
		require.Error(t, in.Validate(), "%+v", in)
		f := newFixture(t, basePolicy())
		f.run(wf.RestartService.Type, in)
		rep := f.report()
		require.Equal(t, wf.StatusFailed, rep.Status)
		require.Contains(t, rep.Summary, "invalid input")
		f.env.AssertNotCalled(t, "DescribeHost", mock.Anything, mock.Anything)
	}
}

func TestServiceNotOnHostRefused(t *testing.T) {
	f := newFixture(t, basePolicy())
	f.hostMocks()
	in := restartInput()
	in.Service = "swift-proxy-server"
	f.run(wf.RestartService.Type, in)
	rep := f.report()
	require.Equal(t, wf.StatusFailed, rep.Status)
	require.Contains(t, rep.Summary, "not a service of compute1")
	f.env.AssertNotCalled(t, "SetService", mock.Anything, mock.Anything)
}

func TestDryRunStopsAfterPlan(t *testing.T) {
	f := newFixture(t, basePolicy())
	f.hostMocks()
	in := restartInput()
	in.DryRun = true
	f.run(wf.RestartService.Type, in)
	rep := f.report()
	require.Equal(t, wf.StatusCompleted, rep.Status)
	require.True(t, rep.DryRun)
	require.NotEmpty(t, rep.Plan)
	require.Contains(t, rep.Summary, "dry run")
	f.env.AssertNotCalled(t, "SetService", mock.Anything, mock.Anything)
	f.env.AssertNotCalled(t, "RequestLease", mock.Anything, mock.Anything)
}

// The service left the host's roles while the restart waited for approval longer than
// policy.plan_max_age: the plan no longer holds, and the run ends before it stops anything.
func TestRestartStalePlanNoLongerHolds(t *testing.T) {
	f := newFixture(t, basePolicy())
	var gone atomic.Bool
	f.env.OnActivity(hosts.DescribeHost, mock.Anything, "compute1").Return(func(context.Context, string) (activities.HostFacts, error) {
		if gone.Load() {
			return activities.HostFacts{Name: "compute1", Address: "127.0.0.11", Roles: []string{"storage"}}, nil
		}
		return restartFacts, nil
	})
	f.grantLeases()
	f.env.RegisterDelayedCallback(func() { gone.Store(true) }, time.Hour)
	approveAfter(f, 2*time.Hour)
	f.run(wf.RestartService.Type, restartInput())
	rep := f.report()
	require.Equal(t, wf.StatusFailed, rep.Status, rep.Summary)
	assert.Contains(t, rep.Summary, "checked again after 2h")
	assert.Contains(t, rep.Summary, "not a service of compute1")
	f.env.AssertNotCalled(t, "SetService", mock.Anything, mock.Anything)
}

// A plan younger than policy.plan_max_age is acted on as it is: Plan runs once.
func TestRestartYoungPlanIsNotMadeAgain(t *testing.T) {
	p := basePolicy()
	p.PlanMaxAge = 3 * time.Hour
	f := newFixture(t, p)
	f.hostMocks()
	f.grantLeases()
	f.env.OnActivity(hosts.SetService, mock.Anything, mock.Anything).Return(nil).Twice()
	approveAfter(f, 2*time.Hour)
	f.run(wf.RestartService.Type, restartInput())
	rep := f.report()
	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	f.env.AssertNumberOfCalls(t, "DescribeHost", 1)
	assert.NotContains(t, rep.Details, "plan_rechecked")
}

func TestGateApprovedBySecondPerson(t *testing.T) {
	f := newFixture(t, basePolicy())
	f.hostMocks()
	f.grantLeases()
	f.env.OnActivity(hosts.SetService, mock.Anything, mock.Anything).Return(nil).Twice()

	f.env.RegisterDelayedCallback(func() {
		st := f.status()
		require.Equal(t, wf.StatusWaitingApproval, st.Status)
		require.Len(t, st.OpenGates, 1)
		require.Equal(t, wf.GateApproveRestart, st.OpenGates[0].Name)
		require.True(t, st.OpenGates[0].Destructive)
		require.NotEmpty(t, st.Plan)

		// The requester may not approve a destructive gate; an unknown approver may not either.
		f.update(wf.UpdateApprove, wf.GateDecisionRequest{Gate: wf.GateApproveRestart, By: "alice"}, "may not approve the destructive gate")
		f.update(wf.UpdateApprove, wf.GateDecisionRequest{Gate: wf.GateApproveRestart, By: "dave"}, "dave may not approve")
		f.update(wf.UpdateApprove, wf.GateDecisionRequest{Gate: wf.GateApproveRestart, By: "mallory"}, `operator "mallory" has no key`)
		f.update(wf.UpdateApprove, wf.GateDecisionRequest{Gate: "no-such-gate", By: "bob"}, `gate "no-such-gate" is not open`)
	}, 10*time.Minute)
	f.env.RegisterDelayedCallback(func() {
		require.Equal(t, wf.StatusWaitingApproval, f.status().Status, "refused updates change nothing")
		require.Empty(t, f.status().Decisions)
		f.update(wf.UpdateApprove, wf.GateDecisionRequest{Gate: wf.GateApproveRestart, By: "bob", Comment: "go"}, "")
	}, 11*time.Minute)

	f.run(wf.RestartService.Type, restartInput())
	rep := f.report()
	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	require.Len(t, rep.Decisions, 1)
	require.Equal(t, "bob", rep.Decisions[0].By)
	require.Equal(t, "approved", rep.Decisions[0].Outcome)
	require.Equal(t, []string{"Planning", "WaitingApproval", "Running", "Completed"}, f.statuses)
	require.Contains(t, f.steps, wf.GateApproveRestart)
	require.Contains(t, f.steps, "stop")
	require.Contains(t, f.notified, "gate-opened:"+wf.GateApproveRestart)
	require.Contains(t, f.notified, "run-finished:")
	f.env.AssertExpectations(t)
	var acts []string
	for _, a := range rep.Audit {
		acts = append(acts, a.Activity)
		require.Equal(t, "alice", a.RequestedBy)
	}
	require.Contains(t, strings.Join(acts, ","), "SetService")
}

func TestSignalsApproveAndInvalidSignalIsRecorded(t *testing.T) {
	f := newFixture(t, basePolicy())
	f.hostMocks()
	f.grantLeases()
	f.env.OnActivity(hosts.SetService, mock.Anything, mock.Anything).Return(nil)
	f.env.RegisterDelayedCallback(func() {
		f.signal(wf.SignalApprove, wf.GateDecisionRequest{Gate: wf.GateApproveRestart, By: "alice"})
	}, time.Minute)
	f.env.RegisterDelayedCallback(func() {
		st := f.status()
		require.Equal(t, wf.StatusWaitingApproval, st.Status)
		require.Len(t, st.Refused, 1)
		f.signal(wf.SignalApprove, wf.GateDecisionRequest{Gate: wf.GateApproveRestart, By: "bob", Via: "web-ui"})
	}, 2*time.Minute)
	f.run(wf.RestartService.Type, restartInput())
	rep := f.report()
	require.Equal(t, wf.StatusCompleted, rep.Status)
	require.Len(t, rep.Refused, 1)
	require.Contains(t, rep.Refused[0].Reason, "may not approve the destructive gate")
	require.Equal(t, "web-ui", rep.Decisions[0].Via)
}

func TestGateRejectedAbortsBeforeAnyChange(t *testing.T) {
	f := newFixture(t, basePolicy())
	f.hostMocks()
	f.grantLeases()
	f.env.RegisterDelayedCallback(func() {
		f.update(wf.UpdateReject, wf.GateDecisionRequest{Gate: wf.GateApproveRestart, By: "alice", Comment: "not now"}, "")
	}, time.Minute)
	f.run(wf.RestartService.Type, restartInput())
	rep := f.report()
	require.Equal(t, wf.StatusAborted, rep.Status)
	require.Contains(t, rep.Summary, "rejected by alice")
	f.env.AssertNotCalled(t, "SetService", mock.Anything, mock.Anything)
	f.env.AssertNotCalled(t, "RequestLease", mock.Anything, mock.Anything)
	require.Equal(t, "Aborted", f.statuses[len(f.statuses)-1])
}

func TestGateTimeoutEscalatesThenAborts(t *testing.T) {
	p := basePolicy()
	p.Escalation = wf.EscalateThenAbort
	p.EscalationRepeats = 2
	f := newFixture(t, p)
	f.hostMocks()
	f.run(wf.RestartService.Type, restartInput())
	rep := f.report()
	require.Equal(t, wf.StatusAborted, rep.Status)
	require.Contains(t, rep.Summary, "timed out after 2 escalation(s)")
	require.Equal(t, 2, strings.Count(strings.Join(f.notified, ","), "gate-escalated"))
	require.GreaterOrEqual(t, rep.Ended.Sub(rep.Started), 2*time.Hour)
	f.env.AssertNotCalled(t, "SetService", mock.Anything, mock.Anything)
}

func TestGateTimeoutEscalatesThenKeepsWaiting(t *testing.T) {
	p := basePolicy()
	p.EscalationRepeats = 2
	f := newFixture(t, p)
	f.hostMocks()
	f.grantLeases()
	f.env.OnActivity(hosts.SetService, mock.Anything, mock.Anything).Return(nil)
	f.env.RegisterDelayedCallback(func() {
		st := f.status()
		require.Equal(t, wf.StatusWaitingApproval, st.Status, "still waiting after the escalations")
		require.Equal(t, 2, st.OpenGates[0].Escalations)
		f.update(wf.UpdateApprove, wf.GateDecisionRequest{Gate: wf.GateApproveRestart, By: "bob"}, "")
	}, 30*time.Hour)
	f.run(wf.RestartService.Type, restartInput())
	rep := f.report()
	require.Equal(t, wf.StatusCompleted, rep.Status)
	require.Equal(t, 2, strings.Count(strings.Join(f.notified, ","), "gate-escalated"))
}

func TestStalledStepRetrySucceeds(t *testing.T) {
	f := newFixture(t, basePolicy())
	f.hostMocks()
	f.grantLeases()
	approveAfter(f, time.Minute)
	stop := activities.ServiceAction{ServiceRequest: activities.ServiceRequest{Host: "compute1", Role: "compute", Service: "nova-compute"}, Action: "stop"}
	// Two attempts (the policy's maximum) fail, so the step stalls; after "retry" it works.
	f.env.OnActivity(hosts.SetService, mock.Anything, stop).Return(errors.New("ssh: connection refused")).Times(2)
	f.env.OnActivity(hosts.SetService, mock.Anything, stop).Return(nil).Once()
	f.env.OnActivity(hosts.SetService, mock.Anything, mock.Anything).Return(nil)
	f.env.RegisterDelayedCallback(func() {
		st := f.status()
		require.Equal(t, wf.StatusStalled, st.Status)
		require.Len(t, st.Stalled, 1)
		require.Equal(t, "stop", st.Stalled[0].Step)
		require.Contains(t, st.Stalled[0].Error, "connection refused")
		f.update(wf.UpdateResolve, wf.ResolveRequest{Step: "start", Action: wf.ResolveRetry, By: "bob"}, `step "start" is not stalled`)
		f.update(wf.UpdateResolve, wf.ResolveRequest{Step: "stop", Action: "reboot", By: "bob"}, "must be retry, skip or abort")
		f.update(wf.UpdateResolve, wf.ResolveRequest{Step: "stop", Action: wf.ResolveRetry, By: "bob"}, "")
	}, 2*time.Hour)
	f.run(wf.RestartService.Type, restartInput())
	rep := f.report()
	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	require.Contains(t, f.statuses, "Stalled")
	require.Contains(t, f.notified, "step-stalled:stop")
	for _, s := range rep.Steps {
		if s.Name == "stop" {
			require.Equal(t, 2, s.Attempts)
			require.Equal(t, wf.StepDone, s.State)
		}
	}
}

func TestStalledStepSkipAndNoSkip(t *testing.T) {
	f := newFixture(t, basePolicy())
	f.hostMocks()
	f.grantLeases()
	approveAfter(f, time.Minute)
	f.env.OnActivity(hosts.SetService, mock.Anything, mock.MatchedBy(func(a activities.ServiceAction) bool { return a.Action == "stop" })).Return(nil)
	f.env.OnActivity(hosts.SetService, mock.Anything, mock.MatchedBy(func(a activities.ServiceAction) bool { return a.Action == "start" })).
		Return(errors.New("unit failed")).Times(2)
	f.env.OnActivity(hosts.SetService, mock.Anything, mock.Anything).Return(nil)
	f.env.RegisterDelayedCallback(func() {
		require.Equal(t, "start", f.status().Stalled[0].Step)
		f.update(wf.UpdateResolve, wf.ResolveRequest{Step: "start", Action: wf.ResolveSkip, By: "bob"}, "cannot be skipped")
		f.update(wf.UpdateResolve, wf.ResolveRequest{Step: "start", Action: wf.ResolveAbort, By: "bob", Comment: "will fix by hand"}, "")
	}, 2*time.Hour)
	f.run(wf.RestartService.Type, restartInput())
	rep := f.report()
	require.Equal(t, wf.StatusAborted, rep.Status)
	require.Contains(t, rep.LeftState, "STOPPED", "an aborted run says what state it left")
	f.env.AssertCalled(t, "ReleaseLease", mock.Anything, mock.Anything)
}

func TestStalledStepSkipContinues(t *testing.T) {
	f := newFixture(t, basePolicy())
	f.env.OnActivity(hosts.DescribeHost, mock.Anything, "compute1").Return(restartFacts, nil)
	f.env.OnActivity(hosts.ServiceStatus, mock.Anything, mock.Anything).Return(activities.ServiceState{Running: true}, nil)
	f.grantLeases()
	approveAfter(f, time.Minute)
	f.env.OnActivity(hosts.SetService, mock.Anything, mock.Anything).Return(nil)
	f.env.OnActivity(hosts.CheckAMQP, mock.Anything, mock.Anything).Return(activities.AMQPResult{}, errors.New("log unreadable"))
	f.env.RegisterDelayedCallback(func() {
		require.Equal(t, "verify", f.status().Stalled[0].Step)
		f.signal(wf.SignalResolve, wf.ResolveRequest{Step: "verify", Action: wf.ResolveSkip, By: "bob"})
	}, 3*time.Hour)
	f.run(wf.RestartService.Type, restartInput())
	rep := f.report()
	require.Equal(t, wf.StatusCompleted, rep.Status)
	for _, s := range rep.Steps {
		if s.Name == "verify" {
			require.Equal(t, wf.StepSkipped, s.State)
		}
	}
}

// A gate that escalates without end (escalation_repeats 0) doubles its wait up to a week: a
// year unanswered is about 60 escalations, not 2,190, and its history stays small.
func TestGateEscalatingWithoutEndBacksOff(t *testing.T) {
	p := basePolicy()
	p.EscalationRepeats = 0
	f := newFixture(t, p)
	f.hostMocks()
	f.grantLeases()
	f.env.OnActivity(hosts.SetService, mock.Anything, mock.Anything).Return(nil)
	f.env.RegisterDelayedCallback(func() {
		st := f.status()
		require.Equal(t, wf.StatusWaitingApproval, st.Status)
		// Escalations after timeout, 2×, 4×, ... up to 7 days, then every 7 days.
		want, at, wait := 0, time.Duration(0), p.GateTimeout
		for at+wait <= 365*24*time.Hour {
			at += wait
			want++
			wait = min(2*wait, 7*24*time.Hour)
		}
		require.Equal(t, want, st.OpenGates[0].Escalations)
		require.Less(t, want, 70)
		f.update(wf.UpdateApprove, wf.GateDecisionRequest{Gate: wf.GateApproveRestart, By: "bob"}, "")
	}, 365*24*time.Hour)
	f.run(wf.RestartService.Type, restartInput())
	rep := f.report()
	require.Equal(t, wf.StatusCompleted, rep.Status)
	require.Less(t, strings.Count(strings.Join(f.notified, ","), "gate-escalated"), 70)
}
