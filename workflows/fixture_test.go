package workflows_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/config/policy"
	"github.com/stackrun/stackrun/internal/infra/trust"
	"github.com/stackrun/stackrun/internal/testenv/operators"
	wf "github.com/stackrun/stackrun/workflows"
)

var (
	mach  *activities.Machine
	hosts *activities.Hosts
	lease *activities.Lease
	cloud *activities.Cloud
)

// The operators of the unit tests and their keys: the key policy every fixture loads.
var testOps = map[string]operators.Operator{}

func init() {
	for _, n := range []string{"alice", "bob", "carol", "dave", "erin", "mallory"} {
		testOps[n] = operators.Must(n)
	}
}

func testKeys() trust.Policy {
	var ops []operators.Operator
	for _, n := range []string{"alice", "bob", "carol", "dave", "erin"} {
		ops = append(ops, testOps[n])
	}
	return operators.Policy(ops...)
}

// The test environment's run: what signatures must name.
const (
	testWorkflowID = "default-test-workflow-id"
	testRunID      = "default-test-run-id"
)

// unsigned wraps a request the fixture must send as is (no signature added).
type unsigned struct{ req any }

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
	// notes are the notifications themselves, in the order delivered.
	notes    []activities.Notification
	sent     int
	answered int
	// keys is what LoadKeys answers (a test may revoke a key mid-run).
	keys trust.Policy
	// granted are the lease grants the mocked lease workflow gave.
	granted map[activities.LeaseHolder]bool
	// nonceTaken: another run already claimed the start's nonce.
	nonceTaken bool
}

// run starts the workflow as the operator named in its input would: signed with their key at the
// test environment's clock (a "schedule" requester is started as a Schedule starts it).
func (f *fixture) run(workflowType string, in any) {
	f.t.Helper()
	opts := f.startOptions(in)
	f.env.SetStartWorkflowOptions(opts)
	if opts.Memo != nil {
		require.NoError(f.t, f.env.SetMemoOnStart(opts.Memo))
	}
	if opts.TypedSearchAttributes.Size() > 0 {
		require.NoError(f.t, f.env.SetTypedSearchAttributesOnStart(opts.TypedSearchAttributes))
	}
	f.env.ExecuteWorkflow(workflowType, in)
}

func (f *fixture) startOptions(in any) client.StartWorkflowOptions {
	f.t.Helper()
	b, err := json.Marshal(in)
	require.NoError(f.t, err)
	var m struct {
		RequestedBy string `json:"requested_by"`
	}
	require.NoError(f.t, json.Unmarshal(b, &m))
	opts := client.StartWorkflowOptions{}
	if o, ok := testOps[m.RequestedBy]; ok {
		st := trust.Statement{Kind: trust.KindStart, WorkflowID: testWorkflowID, InputDigest: trust.Digest(b), Operator: m.RequestedBy}
		opts.Memo = map[string]any{trust.MemoStartSignature: o.SignAt(f.t, st, f.env.Now())}
	} else if m.RequestedBy == "schedule" {
		opts.TypedSearchAttributes = temporal.NewSearchAttributes(temporal.NewSearchAttributeKeyKeyword("TemporalScheduledById").ValueSet("stackrun-daily"))
	}
	return opts
}

// sign signs a decision request as its By operator, now (test clock), for the test run.
func (f *fixture) sign(name string, arg any) any {
	switch req := arg.(type) {
	case unsigned:
		return req.req
	case wf.GateDecisionRequest:
		if o, ok := testOps[req.By]; ok && req.Signature == nil {
			st := trust.Statement{Kind: trust.KindGate, WorkflowID: testWorkflowID, RunID: testRunID, Name: req.Gate,
				Outcome: map[bool]string{true: "approve", false: "reject"}[name == wf.UpdateApprove], Operator: req.By, Comment: req.Comment}
			req.Signature = o.SignAt(f.t, st, f.env.Now())
		}
		return req
	case wf.ResolveRequest:
		if o, ok := testOps[req.By]; ok && req.Signature == nil {
			st := trust.Statement{Kind: trust.KindResolve, WorkflowID: testWorkflowID, RunID: testRunID, Name: req.Step,
				Outcome: req.Action, Operator: req.By, Comment: req.Comment}
			req.Signature = o.SignAt(f.t, st, f.env.Now())
		}
		return req
	}
	return arg
}

// signal sends a decision signal, signed like an update (wrap it in unsigned{} to send it as is).
func (f *fixture) signal(name string, arg any) {
	f.env.SignalWorkflow(name, f.sign(name, arg))
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

func newFixture(t *testing.T, p policy.Policy) *fixture { return newFixtureWith(t, p, nil) }

// newFixtureWith runs setup (registrations of a test's own) before any mock is set.
func newFixtureWith(t *testing.T, p policy.Policy, setup func(env *testsuite.TestWorkflowEnvironment)) *fixture {
	f := &fixture{t: t}
	f.suite.SetLogger(quietLogger())
	f.env = f.suite.NewTestWorkflowEnvironment()
	wf.Register(f.env)
	if setup != nil {
		setup(f.env)
	}
	f.env.RegisterActivity(mach)
	f.env.RegisterActivity(hosts)
	f.env.RegisterActivity(lease)
	f.env.RegisterActivity(cloud)
	f.env.OnActivity(mach.LoadPolicy, mock.Anything).Return(p, nil)
	f.keys = testKeys()
	f.env.OnActivity(lease.ClaimStartNonce, mock.Anything, mock.Anything).Return(func(context.Context, activities.StartNonceClaim) (bool, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		return !f.nonceTaken, nil
	})
	f.env.OnActivity(mach.LoadKeys, mock.Anything).Return(func(context.Context) (trust.Policy, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.keys, nil
	})
	f.env.OnActivity(mach.Notify, mock.Anything, mock.Anything).Return(func(_ context.Context, n activities.Notification) error {
		f.mu.Lock()
		f.notified = append(f.notified, n.Kind+":"+n.Name)
		f.notes = append(f.notes, n)
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

// grantLeases answers every lease request with a grant, as the lease workflow would, and the
// runs' checks of their grants (Holds) with what it granted.
func (f *fixture) grantLeases() {
	f.env.OnActivity(lease.RequestLease, mock.Anything, mock.Anything).Return(func(_ context.Context, req activities.LeaseRequest) error {
		f.grant(req)
		f.env.RegisterDelayedCallback(func() {
			f.env.SignalWorkflow(wf.SignalLeaseGranted, activities.LeaseHolder{WorkflowID: req.WorkflowID, RunID: req.RunID, Host: req.Host})
		}, time.Second)
		return nil
	})
	f.env.OnActivity(lease.ReleaseLease, mock.Anything, mock.Anything).Return(nil)
	f.answerHolds()
}

// grant records a grant of the (mocked) lease workflow.
func (f *fixture) grant(req activities.LeaseRequest) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.granted == nil {
		f.granted = map[activities.LeaseHolder]bool{}
	}
	f.granted[activities.LeaseHolder{WorkflowID: req.WorkflowID, RunID: req.RunID, Host: req.Host}] = true
}

// answerHolds answers Holds with the grants recorded.
func (f *fixture) answerHolds() {
	f.env.OnActivity(lease.Holds, mock.Anything, mock.Anything).Return(func(_ context.Context, c activities.LeaseCheck) (bool, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.granted[c.Holder], nil
	})
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
	}, f.sign(name, arg))
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

func approveAfter(f *fixture, d time.Duration) {
	f.env.RegisterDelayedCallback(func() {
		f.update(wf.UpdateApprove, wf.GateDecisionRequest{Gate: wf.GateApproveRestart, By: "bob"}, "")
	}, d)
}

func (f *fixture) approveAt(gate, by string, after time.Duration) {
	f.env.RegisterDelayedCallback(func() {
		f.env.UpdateWorkflow(wf.UpdateApprove, "", &updateCB{t: f.t}, f.sign(wf.UpdateApprove, wf.GateDecisionRequest{Gate: gate, By: by}))
	}, after)
}

type updateCB struct{ t *testing.T }

func (u *updateCB) Accept() {}

func (u *updateCB) Reject(err error) { u.t.Errorf("update rejected: %v", err) }

func (u *updateCB) Complete(_ any, err error) {
	if err != nil {
		u.t.Errorf("update refused: %v", err)
	}
}

func (f *fixture) result() *wf.Report {
	f.t.Helper()
	require.True(f.t, f.env.IsWorkflowCompleted())
	require.NoError(f.t, f.env.GetWorkflowError())
	var rep wf.Report
	require.NoError(f.t, f.env.GetWorkflowResult(&rep))
	return &rep
}

func stepDetail(rep *wf.Report, name string) string {
	for _, s := range rep.Steps {
		if s.Name == name {
			return s.Detail
		}
	}
	return "<no step " + name + ">"
}

// refusedCB expects a refusal: by the validator, or by the handler (which records it).
type refusedCB struct{ t *testing.T }

func (u *refusedCB) Accept() {}

func (u *refusedCB) Reject(err error) {}

func (u *refusedCB) Complete(_ any, err error) {
	if err == nil {
		u.t.Error("the requester's approval of a two-person gate was accepted")
	}
}

func filter(in []string, drop string) []string {
	var out []string
	for _, s := range in {
		if s != drop {
			out = append(out, s)
		}
	}
	return out
}

func stepDetailErr(rep *wf.Report, name string) string {
	for _, s := range rep.Steps {
		if s.Name == name {
			return s.Error
		}
	}
	return ""
}

func keep(in []string, want ...string) []string {
	var out []string
	for _, s := range in {
		for _, w := range want {
			if s == w {
				out = append(out, s)
				break
			}
		}
	}
	return out
}

func stepState(rep *wf.Report, name string) wf.StepState {
	for _, s := range rep.Steps {
		if s.Name == name {
			return s.State
		}
	}
	return ""
}
