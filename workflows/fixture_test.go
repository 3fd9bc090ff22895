package workflows_test

import (
	"context"
	"log/slog"
	"os"
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
	wf.Register(f.env)
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

func approveAfter(f *fixture, d time.Duration) {
	f.env.RegisterDelayedCallback(func() {
		f.update(wf.UpdateApprove, wf.GateDecisionRequest{Gate: wf.GateApproveRestart, By: "bob"}, "")
	}, d)
}

func (f *fixture) approveAt(gate, by string, after time.Duration) {
	f.env.RegisterDelayedCallback(func() {
		f.env.UpdateWorkflow(wf.UpdateApprove, "", &updateCB{t: f.t}, wf.GateDecisionRequest{Gate: gate, By: by})
	}, after)
}

type updateCB struct{ t *testing.T }

func (u *updateCB) Accept() {}

func (u *updateCB) Reject(err error) { u.t.Errorf("update rejected: %v", err) }

func (u *updateCB) Complete(any, error) {}

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

type refusedCB struct{ t *testing.T }

func (u *refusedCB) Accept() { u.t.Error("the requester's approval of a two-person gate was accepted") }

func (u *refusedCB) Reject(err error) {}

func (u *refusedCB) Complete(any, error) {}

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
