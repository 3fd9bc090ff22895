package workflows_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/stackrun/stackrun/activities"
	wf "github.com/stackrun/stackrun/workflows"
)

// TestOneNamePerRunbook checks the naming rule of docs/adding-a-runbook.md for every runbook: CLI
// word recover-host, workflow type RecoverHost, input type RecoverHostInput, declared as
// `var RecoverHost = Define(` in recoverhost.go, tested in recoverhost_test.go.
func TestOneNamePerRunbook(t *testing.T) {
	require.NotEmpty(t, wf.Runbooks)
	for _, rb := range wf.Runbooks {
		t.Run(rb.Name, func(t *testing.T) {
			assert.Equal(t, wf.TypeName(rb.Name), rb.Type)
			assert.Equal(t, rb.Type+"Input", wf.InputTypeName(rb))
			src, err := os.ReadFile(wf.FileName(rb.Name))
			require.NoError(t, err, "the runbook's file")
			assert.Contains(t, string(src), "var "+rb.Type+" = Define(Def["+rb.Type+"Input,")
			assert.Regexp(t, `Name: +"`+regexp.QuoteMeta(rb.Name)+`"`, string(src))
			_, err = os.Stat(strings.TrimSuffix(wf.FileName(rb.Name), ".go") + "_test.go")
			assert.NoError(t, err, "the runbook's test file")
		})
	}
	assert.Equal(t, "RecoverHost", wf.TypeName("recover-host"))
	assert.Equal(t, "recoverhost.go", wf.FileName("recover-host"))
	assert.Equal(t, "SwiftDisk", wf.TypeName("swift-disk"))
}

func TestRunbooksAreInNameOrder(t *testing.T) {
	names := wf.RunbookNames()
	for i := 1; i < len(names); i++ {
		assert.Less(t, names[i-1], names[i])
	}
}

// ---- the machinery on a runbook of the test's own (Def.Build: not in the registry) ----

// DemoInput is the test runbook's input.
type DemoInput struct {
	wf.Meta
	Name   string `json:"name"`
	Fail   string `json:"fail,omitempty"`   // "act": Act fails; "workflow": the workflow fails
	Probes int    `json:"probes,omitempty"` // items fanned out in Act
}

func (in *DemoInput) Validate() error {
	if in.Name == "" {
		return &wf.FieldError{Field: "name", Problem: "required"}
	}
	return nil
}

type demoPlan struct{ value string }

// demo reads one value in Plan (activity "DemoRead"), asks at gate "approve-demo", and in Act probes
// (activity "DemoProbe", a failure is a finding), then writes (activity "DemoWrite").
func demo(exits *[]string) wf.Runbook {
	return wf.Def[DemoInput, demoPlan]{
		Name: "demo", Short: "test runbook",
		Steps: []string{"read", "approve-demo", "probes", "write"},
		Key:   func(in *DemoInput) string { return in.Name },
		Plan: func(r *wf.Run, in *DemoInput, p *demoPlan) (wf.Approval, error) {
			err := r.Do("read", wf.StepOptions{}, func(ctx workflow.Context) error {
				return r.Exec(ctx, "read", in.Name, "DemoRead", &p.value, in.Name)
			})
			if err != nil {
				return wf.Approval{}, wf.Summarize("refused", err)
			}
			r.SetPlan([]string{"write " + p.value})
			r.SetFacts(wf.Fact{Name: "value", Value: p.value, Minor: strings.HasPrefix(p.value, "minor")})
			return wf.Approval{Gate: "approve-demo", Summary: "write " + p.value}, nil
		},
		Act: func(r *wf.Run, in *DemoInput, p *demoPlan) (string, error) {
			r.OnExit(func() { *exits = append(*exits, "first") })
			r.OnExit(func() { *exits = append(*exits, "second") })
			err := r.Do("probes", wf.StepOptions{ReadOnly: true}, func(ctx workflow.Context) error {
				return r.Each(ctx, in.Probes, 2, func(ctx workflow.Context, i int) error {
					name := fmt.Sprintf("probe/%d", i)
					return r.DoIn(ctx, name, wf.StepOptions{Finding: activities.SeverityWarning, Target: name}, func(ctx workflow.Context) error {
						return r.Exec(ctx, name, name, "DemoProbe", nil, i)
					})
				})
			})
			if err != nil {
				return "", err
			}
			switch in.Fail {
			case "act":
				return "", errors.New("act failed")
			case "workflow":
				return "not recorded", &wf.WorkflowError{Cause: errors.New("cause"), Err: temporal.NewApplicationError("the workflow fails", "DemoFailed")}
			}
			err = r.Do("write", wf.StepOptions{}, func(ctx workflow.Context) error {
				return r.Exec(ctx, "write", in.Name, "DemoWrite", nil, p.value)
			})
			return "wrote " + p.value, err
		},
	}.Build()
}

type demoFixture struct {
	*fixture
	rb      wf.Runbook
	exits   []string
	value   atomic.Value
	reads   atomic.Int32
	written atomic.Value
	flight  atomic.Int32
	peak    atomic.Int32
}

func newDemo(t *testing.T) *demoFixture {
	d := &demoFixture{}
	d.rb = demo(&d.exits)
	d.value.Store("v1")
	d.fixture = newFixtureWith(t, basePolicy(), func(env *testsuite.TestWorkflowEnvironment) {
		env.RegisterWorkflowWithOptions(d.rb.Workflow, workflow.RegisterOptions{Name: d.rb.Type})
		env.RegisterActivityWithOptions(func(context.Context, string) (string, error) {
			d.reads.Add(1)
			return d.value.Load().(string), nil
		}, activity.RegisterOptions{Name: "DemoRead"})
		env.RegisterActivityWithOptions(func(_ context.Context, v string) error { d.written.Store(v); return nil }, activity.RegisterOptions{Name: "DemoWrite"})
		env.RegisterActivityWithOptions(func(_ context.Context, i int) error {
			n := d.flight.Add(1)
			defer d.flight.Add(-1)
			for p := d.peak.Load(); n > p && !d.peak.CompareAndSwap(p, n); p = d.peak.Load() {
			}
			time.Sleep(10 * time.Millisecond)
			if i == 1 {
				return temporal.NewNonRetryableApplicationError("probe 1 is blind", "Blind", nil)
			}
			return nil
		}, activity.RegisterOptions{Name: "DemoProbe"})
	})
	return d
}

func (d *demoFixture) approveAt(at time.Duration) {
	d.env.RegisterDelayedCallback(func() {
		d.update(wf.UpdateApprove, wf.GateDecisionRequest{Gate: "approve-demo", By: "bob"}, "")
	}, at)
}

func TestDemoExitHooksFindingsAndFanOut(t *testing.T) {
	d := newDemo(t)
	d.approveAt(time.Minute)
	d.run(d.rb.Type, DemoInput{Meta: wf.Meta{RequestedBy: "alice"}, Name: "x", Probes: 5})
	rep := d.report()
	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	assert.Equal(t, "wrote v1", rep.Summary)
	assert.Equal(t, []string{"second", "first"}, d.exits, "exit hooks run once, last registered first")
	assert.Equal(t, "v1", d.written.Load())
	assert.LessOrEqual(t, d.peak.Load(), int32(2), "at most 2 at once")
	assert.Equal(t, wf.StepDone, stepState(rep, "probe/1"), "a failure in Finding mode does not stall")
	require.Len(t, rep.Findings, 1)
	assert.Equal(t, activities.SeverityWarning, rep.Findings[0].Severity)
	assert.Contains(t, rep.Findings[0].Message, "probe 1 is blind")
	assert.Equal(t, "demo/x", d.rb.WorkflowID(&DemoInput{Name: "x"}))
}

func TestDemoExitHooksRunWhenActFails(t *testing.T) {
	d := newDemo(t)
	d.approveAt(time.Minute)
	d.run(d.rb.Type, DemoInput{Meta: wf.Meta{RequestedBy: "alice"}, Name: "x", Fail: "act"})
	rep := d.report()
	require.Equal(t, wf.StatusFailed, rep.Status)
	assert.Equal(t, "failed: act failed", rep.Summary)
	assert.Equal(t, []string{"second", "first"}, d.exits)
	assert.Nil(t, d.written.Load())
}

func TestDemoWorkflowErrorFailsTheWorkflowAfterItsReport(t *testing.T) {
	d := newDemo(t)
	d.approveAt(time.Minute)
	d.run(d.rb.Type, DemoInput{Meta: wf.Meta{RequestedBy: "alice"}, Name: "x", Fail: "workflow"})
	require.True(t, d.env.IsWorkflowCompleted())
	err := d.env.GetWorkflowError()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "the workflow fails")
	assert.Equal(t, []string{"second", "first"}, d.exits)
	assert.Contains(t, d.notified, "run-finished:", "the run's end was still reported")
}

func TestDemoInvalidInputEndsBeforePlan(t *testing.T) {
	d := newDemo(t)
	d.run(d.rb.Type, DemoInput{Meta: wf.Meta{RequestedBy: "alice"}})
	rep := d.report()
	require.Equal(t, wf.StatusFailed, rep.Status)
	assert.Equal(t, "invalid input: name: required", rep.Summary)
	assert.Zero(t, d.reads.Load())
}

// A fact marked Minor that drifted is shown, not asked about again; the new plan is acted on.
func TestDemoMinorDriftIsShownNotAskedAgain(t *testing.T) {
	d := newDemo(t)
	d.value.Store("minor-1")
	d.env.RegisterDelayedCallback(func() { d.value.Store("minor-2") }, time.Hour)
	d.approveAt(2 * time.Hour)
	d.run(d.rb.Type, DemoInput{Meta: wf.Meta{RequestedBy: "alice"}, Name: "x"})
	rep := d.report()
	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	assert.Equal(t, "minor-2", d.written.Load(), "Act works on the new plan")
	assert.Equal(t, 1, countOf(d.notified, "gate-opened:approve-demo"))
	assert.Contains(t, stepDetail(rep, "plan-drift"), "value: minor-1 → minor-2")
	require.NotEmpty(t, rep.Findings)
	assert.Equal(t, activities.SeverityInfo, rep.Findings[0].Severity)
}

// A drift that matters asks again; a rejection then aborts before any side effect.
func TestDemoDriftAskedAgainAndRejected(t *testing.T) {
	d := newDemo(t)
	d.env.RegisterDelayedCallback(func() { d.value.Store("v2") }, time.Hour)
	d.approveAt(2 * time.Hour)
	d.env.RegisterDelayedCallback(func() {
		st := d.status()
		require.Len(t, st.OpenGates, 1)
		assert.Contains(t, st.OpenGates[0].Summary, "value: v1 → v2")
		assert.Equal(t, []string{"write v2"}, st.Plan)
		d.update(wf.UpdateReject, wf.GateDecisionRequest{Gate: "approve-demo", By: "bob", Comment: "not v2"}, "")
	}, 3*time.Hour)
	d.run(d.rb.Type, DemoInput{Meta: wf.Meta{RequestedBy: "alice"}, Name: "x"})
	rep := d.report()
	require.Equal(t, wf.StatusAborted, rep.Status, rep.Summary)
	assert.Nil(t, d.written.Load(), "nothing written on a plan nobody approved")
	assert.Equal(t, 2, countOf(d.notified, "gate-opened:approve-demo"))
}
