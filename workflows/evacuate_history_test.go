package workflows_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/worker"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/internal/app/control"
	"github.com/stackrun/stackrun/internal/infra/trust"
	"github.com/stackrun/stackrun/internal/testenv/devserver"
	wf "github.com/stackrun/stackrun/workflows"
)

// HistoryEventsForHost runs Evacuate over n mocked instances on a real dev server (real
// history, real workflow tasks; activities answer at once) and returns the run's history length.
func historyEventsForHost(t *testing.T, n, parallel int) (int, *wf.Report) {
	srv := devserver.Start(t)
	tq := "history-test"
	w := worker.New(srv.Client, tq, worker.Options{})
	wf.Register(w)
	p := basePolicy()
	p.TwoPersonGates = []string{wf.GateApprovePlan}
	keys := testKeys()
	w.RegisterActivity(&activities.Machine{Policy: p, Log: nil, Keys: func() (trust.Policy, error) { return keys, nil }})
	w.RegisterActivity(&activities.Lease{Client: srv.Client, TaskQueue: tq})
	reg := func(name string, fn any) { w.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: name}) }
	insts := sampleInstances(n)
	reg("DescribeHost", func(context.Context, string) (activities.HostFacts, error) { return computeFacts, nil })
	reg("ComputeServices", func(context.Context) ([]activities.ComputeService, error) {
		return []activities.ComputeService{
			{Host: "compute1", Status: "enabled", State: "up", UpdatedAt: time.Now()},
			{Host: "compute2", Status: "enabled", State: "up"}, {Host: "compute3", Status: "enabled", State: "up"}}, nil
	})
	var moved atomic.Int64
	reg("InstancesOnHost", func(context.Context, string) ([]activities.Instance, error) {
		if moved.Load() > 0 {
			return nil, nil
		}
		return insts, nil
	})
	reg("DBInstancesOnHost", func(context.Context, string) ([]string, error) {
		if moved.Load() > 0 {
			return nil, nil
		}
		var ids []string
		for _, i := range insts {
			ids = append(ids, i.ID)
		}
		return ids, nil
	})
	reg("Capacity", func(context.Context, []string) ([]activities.HostCapacity, error) { return bigCaps, nil })
	reg("SetComputeService", func(_ context.Context, ch activities.ServiceChange) (activities.ComputeService, error) {
		return activities.ComputeService{Host: ch.Host}, nil
	})
	reg("MoveInstance", func(_ context.Context, req activities.MoveRequest) (activities.MoveResult, error) {
		moved.Add(1)
		return activities.MoveResult{ID: req.ID, From: req.Source, To: req.Target, Status: "ACTIVE", Migration: "m", MigrationStat: "completed", Started: true}, nil
	})
	reg("ServiceStatus", func(context.Context, activities.ServiceRequest) (activities.ServiceState, error) {
		return activities.ServiceState{Running: true}, nil
	})
	require.NoError(t, w.Start())
	t.Cleanup(w.Stop)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	in := evacInput()
	in.Parallel = parallel
	rb, err := wf.FindRunbook("evacuate")
	require.NoError(t, err)
	started, err := control.Start(ctx, srv.Client, tq, rb, &in, control.KeySigner{Key: testOps[in.RequestedBy].Signer})
	require.NoError(t, err)
	for {
		st, err := control.Status(ctx, srv.Client, started.WorkflowID)
		if err == nil && len(st.OpenGates) == 1 {
			break
		}
		require.NoError(t, ctx.Err())
		time.Sleep(100 * time.Millisecond)
	}
	_, err = control.Approve(ctx, srv.Client, started.WorkflowID, wf.GateDecisionRequest{Gate: wf.GateApprovePlan, By: "bob"}, control.KeySigner{Key: testOps["bob"].Signer})
	require.NoError(t, err)
	rep, err := control.Report(ctx, srv.Client, started.WorkflowID, true)
	require.NoError(t, err)
	d, err := srv.Client.DescribeWorkflowExecution(ctx, started.WorkflowID, "")
	require.NoError(t, err)
	require.Equal(t, enums.WORKFLOW_EXECUTION_STATUS_COMPLETED, d.WorkflowExecutionInfo.Status)
	return int(d.WorkflowExecutionInfo.HistoryLength), rep
}

// TestEvacuationHistoryOf1000Instances: a 1,000-instance host stays under Temporal's 10,240-event
// warning in one run. Each instance costs one activity (start, follow and verify in one
// heartbeating MoveInstance: scheduled, started, completed) plus its share of workflow tasks;
// per-instance steps share one search-attribute value, so they write no upserts, and retries add
// no events (only an activity's last attempt is recorded).
func TestEvacuationHistoryOf1000Instances(t *testing.T) {
	if testing.Short() {
		t.Skip("runs 1,000 activities through a dev server")
	}
	const n = 1000
	events, rep := historyEventsForHost(t, n, 32)
	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	require.Contains(t, rep.Summary, fmt.Sprintf("%d instance(s) moved", n))
	per := float64(events) / n
	t.Logf("%d instances: %d history events (%.2f per instance)", n, events, per)
	require.Less(t, events, 10240)
	require.LessOrEqual(t, per, 8.0)
	b, err := json.Marshal(rep)
	require.NoError(t, err)
	sizes := map[string]int{}
	for k, v := range map[string]any{"steps": rep.Steps, "audit": rep.Audit, "details": rep.Details, "plan": rep.Plan, "findings": rep.Findings} {
		x, _ := json.Marshal(v)
		sizes[k] = len(x)
	}
	t.Logf("report: %d bytes (%v)", len(b), sizes)
	// Under Temporal's 512 KB payload warning, with room to spare.
	require.Less(t, len(b), 400<<10)
	var moves int
	for _, a := range rep.Audit {
		if a.Activity == "MoveInstance" {
			require.Equal(t, "migrate/*", a.Step)
			moves += a.Count
		}
	}
	require.Equal(t, n, moves, "one collapsed audit entry stands for every move")
	for _, s := range rep.Steps {
		if s.Name == "migrate/id-999" {
			require.Contains(t, s.Detail, "vm-999 (id-999): compute1 → compute")
		}
	}
}
