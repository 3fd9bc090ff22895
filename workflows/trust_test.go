package workflows_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/internal/infra/trust"
	"github.com/stackrun/stackrun/internal/testenv/operators"
	wf "github.com/stackrun/stackrun/workflows"
)

// Each of these tries to get past the verification of who starts or decides; every attempt is
// refused, recorded in the run, and changes nothing.

func gateStmt(req wf.GateDecisionRequest, runID string) trust.Statement {
	return trust.Statement{Kind: trust.KindGate, WorkflowID: testWorkflowID, RunID: runID, Name: req.Gate, Outcome: "approve", Operator: req.By, Comment: req.Comment}
}

// startUnsigned starts the workflow with no signature (or sig) in its memo.
func (f *fixture) startWith(workflowType string, in any, sig *trust.Signature) {
	if sig != nil {
		require.NoError(f.t, f.env.SetMemoOnStart(map[string]any{trust.MemoStartSignature: sig}))
	}
	f.env.ExecuteWorkflow(workflowType, in)
}

func TestStartMustBeSignedByTheRequester(t *testing.T) {
	in := restartInput() // requested by alice
	b, _ := json.Marshal(in)
	st := trust.Statement{Kind: trust.KindStart, WorkflowID: testWorkflowID, InputDigest: trust.Digest(b), Operator: "alice"}
	other := in
	other.Service = "nova-api"
	ob, _ := json.Marshal(other)
	for name, c := range map[string]struct {
		sig  func(f *fixture) *trust.Signature
		want string
	}{
		"unsigned":              {func(f *fixture) *trust.Signature { return nil }, "(unsigned)"},
		"--as alice, bob's key": {func(f *fixture) *trust.Signature { return testOps["bob"].SignAt(t, st, f.env.Now()) }, "(wrong-operator)"},
		"a key nobody knows":    {func(f *fixture) *trust.Signature { return testOps["mallory"].SignAt(t, st, f.env.Now()) }, "(unknown-key)"},
		"signed another input": {func(f *fixture) *trust.Signature {
			s := st
			s.InputDigest = trust.Digest(ob)
			return testOps["alice"].SignAt(t, s, f.env.Now())
		}, "(bad-signature)"},
		"signed for another run": {func(f *fixture) *trust.Signature {
			s := st
			s.WorkflowID = "restart-service/x/y"
			return testOps["alice"].SignAt(t, s, f.env.Now())
		}, "(bad-signature)"},
		"signed an hour ago": {func(f *fixture) *trust.Signature { return testOps["alice"].SignAt(t, st, f.env.Now().Add(-time.Hour)) }, "(expired)"},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, basePolicy())
			f.startWith(wf.RestartService.Type, in, c.sig(f))
			rep := f.report()
			require.Equal(t, wf.StatusFailed, rep.Status)
			require.Contains(t, rep.Summary, "start refused")
			require.Contains(t, rep.Summary, c.want)
			require.Len(t, rep.Refused, 1)
			require.Equal(t, "start", rep.Refused[0].Via)
			f.env.AssertNotCalled(t, "DescribeHost", mock.Anything, mock.Anything)
			f.env.AssertNotCalled(t, "RequestLease", mock.Anything, mock.Anything)
		})
	}
	// A genuine start whose signature already started a run (replayed after that run ended).
	t.Run("replayed start", func(t *testing.T) {
		f := newFixture(t, basePolicy())
		f.nonceTaken = true
		f.run(wf.RestartService.Type, in)
		rep := f.report()
		require.Equal(t, wf.StatusFailed, rep.Status)
		require.Contains(t, rep.Summary, "(replayed)")
		f.env.AssertNotCalled(t, "DescribeHost", mock.Anything, mock.Anything)
	})
	// The genuine start is accepted and the report says who signed it.
	f := newFixture(t, basePolicy())
	f.hostMocks()
	f.grantLeases()
	f.env.OnActivity(hosts.SetService, mock.Anything, mock.Anything).Return(nil)
	approveAfter(f, time.Minute)
	f.run(wf.RestartService.Type, in)
	rep := f.report()
	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	require.Equal(t, &wf.StartRecord{By: "alice", Key: testOps["alice"].Fingerprint()}, rep.Start)
	require.Equal(t, testOps["bob"].Fingerprint(), rep.Decisions[0].Key)
}

// A run that changes nothing may start unsigned (a Schedule does); a mutating one may not even
// when it claims a schedule started it (a client can set TemporalScheduledById).
func TestUnsignedStartOnlyForRunsThatChangeNothing(t *testing.T) {
	f := newFixture(t, basePolicy())
	f.hostMocks()
	in := restartInput()
	in.DryRun = true
	f.startWith(wf.RestartService.Type, in, nil)
	rep := f.report()
	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	require.True(t, rep.Start.Unsigned)

	f = newFixture(t, basePolicy())
	require.NoError(t, f.env.SetTypedSearchAttributesOnStart(f.startOptions(wf.CheckInput{Meta: wf.Meta{RequestedBy: "schedule"}}).TypedSearchAttributes))
	f.startWith(wf.RestartService.Type, restartInput(), nil)
	rep = f.report()
	require.Equal(t, wf.StatusFailed, rep.Status)
	require.Contains(t, rep.Summary, "(unsigned)")
}

// Decisions: unsigned, for another run, replayed, expired, by a revoked key, vouched for outside
// the gateway's rules. Then the genuine one.
func TestDecisionImpersonationsAreRefusedAndRecorded(t *testing.T) {
	f := newFixture(t, basePolicy())
	f.hostMocks()
	f.grantLeases()
	f.env.OnActivity(hosts.SetService, mock.Anything, mock.Anything).Return(nil)
	gw := operators.New(t, "gateway")
	f.keys.Gateways = []trust.Gateway{{Name: "chat", Key: gw.Key(), Vouch: []trust.Vouch{{Operators: []string{"alice", "bob"}, Gates: []string{wf.GateApproveRestart}}}}}
	bob := wf.GateDecisionRequest{Gate: wf.GateApproveRestart, By: "bob"}
	var refusals []string
	expect := func(want string) { refusals = append(refusals, want) }
	f.env.RegisterDelayedCallback(func() {
		// What the web UI sends when someone types a name.
		f.signal(wf.SignalApprove, unsigned{bob})
		expect("(unsigned)")
		f.update(wf.UpdateApprove, unsigned{bob}, "(unsigned)")
		expect("(unsigned)")
		// bob's signature, but for the run before this one on the same target.
		old := bob
		old.Signature = testOps["bob"].SignAt(t, gateStmt(bob, "the-previous-run"), f.env.Now())
		f.update(wf.UpdateApprove, unsigned{old}, "(bad-signature)")
		expect("(bad-signature)")
		// Signed eleven minutes ago (the policy allows ten).
		stale := bob
		stale.Signature = testOps["bob"].SignAt(t, gateStmt(bob, testRunID), f.env.Now().Add(-11*time.Minute))
		f.signal(wf.SignalApprove, unsigned{stale})
		expect("(expired)")
		// A rejection signed by bob, sent as an approval.
		flipped := bob
		st := gateStmt(bob, testRunID)
		st.Outcome = "reject"
		flipped.Signature = testOps["bob"].SignAt(t, st, f.env.Now())
		f.update(wf.UpdateApprove, unsigned{flipped}, "(bad-signature)")
		expect("(bad-signature)")
		// The chat gateway vouching for the requester: verified, then the two-person rule.
		vouched := wf.GateDecisionRequest{Gate: wf.GateApproveRestart, By: "alice"}
		vs := gateStmt(vouched, testRunID)
		vs.ChatUser = "slack:UALICE"
		vouched.Signature = gw.SignAt(t, vs, f.env.Now())
		f.update(wf.UpdateApprove, unsigned{vouched}, "may not approve the destructive gate")
		expect("may not approve the destructive gate")
		// The gateway vouching for carol, whom it may not speak for.
		carol := wf.GateDecisionRequest{Gate: wf.GateApproveRestart, By: "carol"}
		cs := gateStmt(carol, testRunID)
		cs.ChatUser = "slack:UCAROL"
		carol.Signature = gw.SignAt(t, cs, f.env.Now())
		f.update(wf.UpdateApprove, unsigned{carol}, "(not-vouched)")
		expect("(not-vouched)")
	}, time.Minute)
	// bob's key is revoked while the run waits: his genuine signature no longer counts.
	f.env.RegisterDelayedCallback(func() {
		f.mu.Lock()
		saved := f.keys
		f.keys.Operators = nil
		for _, o := range saved.Operators {
			if o.Name != "bob" {
				f.keys.Operators = append(f.keys.Operators, o)
			}
		}
		f.mu.Unlock()
		f.update(wf.UpdateApprove, bob, `"bob" has no key`)
		expect(`"bob" has no key`)
		f.env.RegisterDelayedCallback(func() {
			f.mu.Lock()
			f.keys = saved
			f.mu.Unlock()
		}, 10*time.Second)
	}, 2*time.Minute)
	// A genuine approval is accepted; the very same message again is a replay.
	var genuine wf.GateDecisionRequest
	f.env.RegisterDelayedCallback(func() {
		st := f.status()
		require.Equal(t, wf.StatusWaitingApproval, st.Status, "refusals change nothing")
		require.Empty(t, st.Decisions)
		// Signals and updates are handled in their own order: match the refusals as a set.
		require.Len(t, st.Refused, len(refusals))
		left := append([]wf.RefusedMessage(nil), st.Refused...)
		for _, want := range refusals {
			found := -1
			for i, m := range left {
				if strings.Contains(m.Reason, want) {
					found = i
					break
				}
			}
			require.GreaterOrEqual(t, found, 0, "no refusal %q among %+v", want, left)
			left = append(left[:found], left[found+1:]...)
		}
		genuine = f.sign(wf.UpdateApprove, bob).(wf.GateDecisionRequest)
		f.signal(wf.SignalApprove, unsigned{genuine})
		f.signal(wf.SignalApprove, unsigned{genuine})
	}, 3*time.Minute)
	f.run(wf.RestartService.Type, restartInput())
	rep := f.report()
	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	require.Len(t, rep.Decisions, 1)
	require.Equal(t, testOps["bob"].Fingerprint(), rep.Decisions[0].Key)
	last := rep.Refused[len(rep.Refused)-1]
	require.Contains(t, last.Reason, "is not open", "the replay finds the gate decided")
	require.Equal(t, testOps["bob"].Fingerprint(), last.Key)
}

// A replayed resolve: the step stalls, bob's signed retry is accepted; it stalls again and the
// same message is refused as a replay.
func TestReplayedResolveIsRefused(t *testing.T) {
	f := newFixture(t, basePolicy())
	f.hostMocks()
	f.grantLeases()
	stop := mock.MatchedBy(func(a activities.ServiceAction) bool { return a.Action == "stop" })
	f.env.OnActivity(hosts.SetService, mock.Anything, stop).Return(errors.New("ssh: connection refused")).Times(4)
	f.env.OnActivity(hosts.SetService, mock.Anything, mock.Anything).Return(nil)
	approveAfter(f, time.Minute)
	var retry wf.ResolveRequest
	f.env.RegisterDelayedCallback(func() {
		require.Equal(t, wf.StatusStalled, f.status().Status)
		retry = f.sign(wf.UpdateResolve, wf.ResolveRequest{Step: "stop", Action: wf.ResolveRetry, By: "bob"}).(wf.ResolveRequest)
		f.update(wf.UpdateResolve, unsigned{retry}, "")
	}, time.Hour)
	f.env.RegisterDelayedCallback(func() {
		require.Equal(t, wf.StatusStalled, f.status().Status, "stalled again")
		f.update(wf.UpdateResolve, unsigned{retry}, "(replayed)")
		f.update(wf.UpdateResolve, wf.ResolveRequest{Step: "stop", Action: wf.ResolveRetry, By: "bob"}, "")
	}, time.Hour+5*time.Minute)
	f.run(wf.RestartService.Type, restartInput())
	rep := f.report()
	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	require.Len(t, rep.Refused, 1)
	require.Contains(t, rep.Refused[0].Reason, "(replayed)")
}

// An empty approver list refuses every approval (the requester may still reject).
func TestEmptyApproverListRefusesEveryApproval(t *testing.T) {
	p := basePolicy()
	p.Approvers = nil
	f := newFixture(t, p)
	f.hostMocks()
	f.env.RegisterDelayedCallback(func() {
		f.update(wf.UpdateApprove, wf.GateDecisionRequest{Gate: wf.GateApproveRestart, By: "bob"}, "policy.approvers is empty")
		f.update(wf.UpdateReject, wf.GateDecisionRequest{Gate: wf.GateApproveRestart, By: "alice", Comment: "no"}, "")
	}, time.Minute)
	f.run(wf.RestartService.Type, restartInput())
	rep := f.report()
	require.Equal(t, wf.StatusAborted, rep.Status)
	f.env.AssertNotCalled(t, "SetService", mock.Anything, mock.Anything)
}

// A gate the policy allows unsigned takes an unsigned signal; a two-person gate never does, even
// when the policy lists it (config refuses that, the workflow too).
func TestUnsignedOnlyWhereThePolicyAllows(t *testing.T) {
	for _, c := range []struct {
		twoPerson bool
		want      wf.RunStatus
	}{{false, wf.StatusCompleted}, {true, wf.StatusWaitingApproval}} {
		p := basePolicy()
		if !c.twoPerson {
			p.TwoPersonGates = nil
		}
		f := newFixture(t, p)
		f.hostMocks()
		f.grantLeases()
		f.env.OnActivity(hosts.SetService, mock.Anything, mock.Anything).Return(nil)
		f.keys.UnsignedGates = []string{wf.GateApproveRestart}
		f.env.RegisterDelayedCallback(func() {
			f.signal(wf.SignalApprove, unsigned{wf.GateDecisionRequest{Gate: wf.GateApproveRestart, By: "bob"}})
		}, time.Minute)
		f.env.RegisterDelayedCallback(func() {
			st := f.status()
			require.Equal(t, c.want, st.Status, "two-person %v", c.twoPerson)
			if c.twoPerson {
				require.Contains(t, st.Refused[0].Reason, "(unsigned)")
				f.update(wf.UpdateReject, wf.GateDecisionRequest{Gate: wf.GateApproveRestart, By: "bob"}, "")
			}
		}, 2*time.Minute)
		f.run(wf.RestartService.Type, restartInput())
		rep := f.report()
		if !c.twoPerson {
			require.Equal(t, wf.StatusCompleted, rep.Status)
			require.True(t, rep.Decisions[0].Unsigned)
		}
	}
}

// A forged "lease-granted" (anyone can send the signal) is checked against the lease's own state
// and refused: the run keeps waiting for the hosts-out-of-service limit; the real grant counts.
func TestForgedLeaseGrantIsRefused(t *testing.T) {
	f := newFixture(t, basePolicy())
	f.hostMocks()
	f.env.OnActivity(hosts.SetService, mock.Anything, mock.Anything).Return(nil)
	var asked activities.LeaseRequest
	f.env.OnActivity(lease.RequestLease, mock.Anything, mock.Anything).Return(func(_ context.Context, req activities.LeaseRequest) error {
		f.mu.Lock()
		asked = req
		f.mu.Unlock()
		return nil // the cloud is at its limit: no grant yet
	})
	f.env.OnActivity(lease.ReleaseLease, mock.Anything, mock.Anything).Return(nil)
	f.answerHolds()
	approveAfter(f, time.Minute)
	f.env.RegisterDelayedCallback(func() {
		f.mu.Lock()
		req := asked
		f.mu.Unlock()
		require.Equal(t, testRunID, req.RunID, "the request names the run")
		f.env.SignalWorkflow(wf.SignalLeaseGranted, activities.LeaseHolder{WorkflowID: req.WorkflowID, RunID: req.RunID, Host: req.Host})
	}, 10*time.Minute)
	f.env.RegisterDelayedCallback(func() {
		st := f.status()
		require.Equal(t, wf.StepRunning, stepOf(st, "acquire-lease"), "the forged grant let the run go")
		require.Len(t, st.Refused, 1)
		require.Equal(t, wf.SignalLeaseGranted, st.Refused[0].Signal)
		require.Contains(t, st.Refused[0].Reason, "does not list this run")
		f.env.AssertNotCalled(t, "SetService", mock.Anything, mock.Anything)
		// The lease grants for real.
		f.mu.Lock()
		req := asked
		f.mu.Unlock()
		f.grant(req)
		f.env.SignalWorkflow(wf.SignalLeaseGranted, activities.LeaseHolder{WorkflowID: req.WorkflowID, RunID: req.RunID, Host: req.Host})
	}, 20*time.Minute)
	f.run(wf.RestartService.Type, restartInput())
	rep := f.report()
	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	require.Len(t, rep.Refused, 1)
}

func stepOf(st wf.Status, name string) wf.StepState {
	for _, s := range st.Steps {
		if s.Name == name {
			return s.State
		}
	}
	return ""
}
