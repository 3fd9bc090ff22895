package workflows_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	tlog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/config/policy"
	wf "github.com/stackrun/stackrun/workflows"
)

var (
	mach  *activities.Machine
	hosts *activities.Hosts
	lease *activities.Lease
	cloud *activities.Cloud
)

// fixture is a test environment with the machinery's activities mocked and every search
// attribute upsert recorded.
type fixture struct {
	t        *testing.T
	suite    testsuite.WorkflowTestSuite
	env      *testsuite.TestWorkflowEnvironment
	mu       sync.Mutex
	statuses []string
	steps    []string
	notified []string
	sent     int
	answered int
}

func quietLogger() tlog.Logger {
	return tlog.NewStructuredLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})))
}

func basePolicy() policy.Policy {
	return policy.Policy{
		Approvers:            []string{"alice", "bob"},
		TwoPersonGates:       []string{wf.GateApproveRestart},
		GateTimeout:          time.Hour,
		Escalation:           wf.EscalateThenWait,
		EscalationRepeats:    1,
		MaxHostsOutOfService: 1,
		DefaultParallelism:   2,
		ActivityMaxAttempts:  2,
	}
}

func newFixture(t *testing.T, p policy.Policy) *fixture {
	f := &fixture{t: t}
	f.suite.SetLogger(quietLogger())
	f.env = f.suite.NewTestWorkflowEnvironment()
	f.env.RegisterActivity(mach)
	f.env.RegisterActivity(hosts)
	f.env.RegisterActivity(lease)
	f.env.RegisterActivity(cloud)
	f.env.OnActivity(mach.LoadPolicy, mock.Anything).Return(p, nil)
	f.env.OnActivity(mach.Notify, mock.Anything, mock.Anything).Return(func(_ context.Context, n activities.Notification) error {
		f.mu.Lock()
		f.notified = append(f.notified, n.Kind+":"+n.Name)
		f.mu.Unlock()
		return nil
	})
	f.env.OnUpsertTypedSearchAttributes(mock.Anything).Run(func(args mock.Arguments) {
		sa := args.Get(0).(temporal.SearchAttributes)
		f.mu.Lock()
		defer f.mu.Unlock()
		if v, ok := sa.GetKeyword(wf.AttrStatus); ok {
			f.statuses = append(f.statuses, v)
		}
		if v, ok := sa.GetKeyword(wf.AttrStep); ok {
			f.steps = append(f.steps, v)
		}
	}).Return(nil)
	return f
}

// grantLeases answers every lease request with a grant, as the lease workflow would.
func (f *fixture) grantLeases() {
	f.env.OnActivity(lease.RequestLease, mock.Anything, mock.Anything).Return(func(_ context.Context, req activities.LeaseRequest) error {
		f.env.RegisterDelayedCallback(func() {
			f.env.SignalWorkflow(wf.SignalLeaseGranted, activities.LeaseHolder{WorkflowID: req.WorkflowID, Host: req.Host})
		}, time.Second)
		return nil
	})
	f.env.OnActivity(lease.ReleaseLease, mock.Anything, mock.Anything).Return(nil)
}

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

func (f *fixture) status() wf.Status {
	f.t.Helper()
	v, err := f.env.QueryWorkflow(wf.QueryStatus)
	require.NoError(f.t, err)
	var st wf.Status
	require.NoError(f.t, v.Get(&st))
	return st
}

// update sends an update and checks its outcome when it arrives (the test environment delivers it
// asynchronously): wantErr "" means accepted and completed, otherwise the rejection must contain it.
func (f *fixture) update(name string, arg any, wantErr string) {
	f.mu.Lock()
	f.sent++
	f.mu.Unlock()
	check := func(err error) {
		f.mu.Lock()
		f.answered++
		f.mu.Unlock()
		if wantErr == "" {
			assert.NoError(f.t, err, "update %s %+v", name, arg)
		} else {
			assert.ErrorContains(f.t, err, wantErr, "update %s %+v", name, arg)
		}
	}
	f.env.UpdateWorkflow(name, "", &testsuite.TestUpdateCallback{
		OnAccept:   func() {},
		OnReject:   check,
		OnComplete: func(_ interface{}, err error) { check(err) },
	}, arg)
}

func (f *fixture) report() *wf.Report {
	f.t.Helper()
	require.True(f.t, f.env.IsWorkflowCompleted())
	f.mu.Lock()
	require.Equal(f.t, f.sent, f.answered, "every update was answered")
	f.mu.Unlock()
	require.NoError(f.t, f.env.GetWorkflowError())
	var rep wf.Report
	require.NoError(f.t, f.env.GetWorkflowResult(&rep))
	return &rep
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
		f.update(wf.UpdateApprove, wf.GateDecisionRequest{Gate: wf.GateApproveRestart, By: "mallory"}, "mallory may not approve")
		f.update(wf.UpdateApprove, wf.GateDecisionRequest{Gate: "no-such-gate", By: "bob"}, `gate "no-such-gate" is not open`)
	}, 10*time.Minute)
	f.env.RegisterDelayedCallback(func() {
		require.Equal(t, wf.StatusWaitingApproval, f.status().Status, "refused updates change nothing")
		require.Empty(t, f.status().Decisions)
		f.update(wf.UpdateApprove, wf.GateDecisionRequest{Gate: wf.GateApproveRestart, By: "bob", Comment: "go"}, "")
	}, 11*time.Minute)

	f.env.ExecuteWorkflow(wf.RestartService, restartInput())
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
		f.env.SignalWorkflow(wf.SignalApprove, wf.GateDecisionRequest{Gate: wf.GateApproveRestart, By: "alice"})
	}, time.Minute)
	f.env.RegisterDelayedCallback(func() {
		st := f.status()
		require.Equal(t, wf.StatusWaitingApproval, st.Status)
		require.Len(t, st.Refused, 1)
		f.env.SignalWorkflow(wf.SignalApprove, wf.GateDecisionRequest{Gate: wf.GateApproveRestart, By: "bob", Via: "web-ui"})
	}, 2*time.Minute)
	f.env.ExecuteWorkflow(wf.RestartService, restartInput())
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
	f.env.ExecuteWorkflow(wf.RestartService, restartInput())
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
	f.env.ExecuteWorkflow(wf.RestartService, restartInput())
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
	f.env.ExecuteWorkflow(wf.RestartService, restartInput())
	rep := f.report()
	require.Equal(t, wf.StatusCompleted, rep.Status)
	require.Equal(t, 2, strings.Count(strings.Join(f.notified, ","), "gate-escalated"))
}

func approveAfter(f *fixture, d time.Duration) {
	f.env.RegisterDelayedCallback(func() {
		f.update(wf.UpdateApprove, wf.GateDecisionRequest{Gate: wf.GateApproveRestart, By: "bob"}, "")
	}, d)
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
	f.env.ExecuteWorkflow(wf.RestartService, restartInput())
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
	f.env.ExecuteWorkflow(wf.RestartService, restartInput())
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
		f.env.SignalWorkflow(wf.SignalResolve, wf.ResolveRequest{Step: "verify", Action: wf.ResolveSkip, By: "bob"})
	}, 3*time.Hour)
	f.env.ExecuteWorkflow(wf.RestartService, restartInput())
	rep := f.report()
	require.Equal(t, wf.StatusCompleted, rep.Status)
	for _, s := range rep.Steps {
		if s.Name == "verify" {
			require.Equal(t, wf.StepSkipped, s.State)
		}
	}
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
		f.env.ExecuteWorkflow(wf.RestartService, in)
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
	f.env.ExecuteWorkflow(wf.RestartService, in)
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
	f.env.ExecuteWorkflow(wf.RestartService, in)
	rep := f.report()
	require.Equal(t, wf.StatusCompleted, rep.Status)
	require.True(t, rep.DryRun)
	require.NotEmpty(t, rep.Plan)
	require.Contains(t, rep.Summary, "dry run")
	f.env.AssertNotCalled(t, "SetService", mock.Anything, mock.Anything)
	f.env.AssertNotCalled(t, "RequestLease", mock.Anything, mock.Anything)
}

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
	f.env.ExecuteWorkflow(wf.PostRebootCheck, wf.PostRebootCheckInput{Meta: wf.Meta{RequestedBy: "carol"}, Host: "ctl"})
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

func TestHostLeaseLimitsHostsOutOfService(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	s.SetLogger(quietLogger())
	env := s.NewTestWorkflowEnvironment()
	env.RegisterActivity(lease)
	var mu sync.Mutex
	var granted []string
	env.OnSignalExternalWorkflow(mock.Anything, mock.Anything, "", wf.SignalLeaseGranted, mock.Anything).Return(
		func(ns, id, run, name string, arg any) error {
			mu.Lock()
			granted = append(granted, id)
			mu.Unlock()
			return nil
		})
	send := func(d time.Duration, sig string, id, host string) {
		env.RegisterDelayedCallback(func() {
			env.SignalWorkflow(sig, activities.LeaseRequest{WorkflowID: id, Host: host, Max: 1})
		}, d)
	}
	send(time.Second, "acquire", "evacuate/c1", "c1")
	send(2*time.Second, "acquire", "evacuate/c2", "c2")
	send(3*time.Second, "acquire", "evacuate/c1", "c1") // repeated: same grant again
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow(wf.QueryLease)
		require.NoError(t, err)
		var st activities.LeaseState
		require.NoError(t, v.Get(&st))
		require.Len(t, st.Holders, 1)
		require.Len(t, st.Waiting, 1)
		mu.Lock()
		require.Equal(t, []string{"evacuate/c1", "evacuate/c1"}, granted)
		mu.Unlock()
	}, 4*time.Second)
	send(5*time.Second, "release", "evacuate/c1", "c1")
	env.RegisterDelayedCallback(func() {
		mu.Lock()
		require.Equal(t, []string{"evacuate/c1", "evacuate/c1", "evacuate/c2"}, granted)
		mu.Unlock()
		env.CancelWorkflow()
	}, 6*time.Second)
	env.ExecuteWorkflow(wf.HostLease, activities.LeaseState{Max: 1})
	require.True(t, env.IsWorkflowCompleted())
}
