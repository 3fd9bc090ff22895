package workflows_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/config/policy"
	"github.com/stackrun/stackrun/internal/app/control"
	"github.com/stackrun/stackrun/internal/infra/trust"
	"github.com/stackrun/stackrun/internal/testenv/devserver"
	wf "github.com/stackrun/stackrun/workflows"
)

// TestSwiftRingHistoryOf10DayLongSteps: a ten-step ring change whose min_part_hours is 24 h
// stays far below Temporal's 10,240-event warning, on a real dev server (real history). The
// builders' clock is simulated: AwaitMinPartHours answers as the real activity does after its
// re-reads (at its Until, or once min_part_hours has passed), so 9 waits of 24 h happen in
// seconds and the history is the one a real run of nine days would record. A workflow timer per
// re-read (5 min) would have cost about 11 events each: some 28,000 for these waits.
// swiftWorld is a mocked Swift cluster behind a real worker on a real dev server (real history).
// The builders' clock is simulated: AwaitMinPartHours answers as the real activity does after
// its re-reads (at its Until, or once min_part_hours has passed), so that waits of 24 h happen
// in seconds and the history is the one a real run of days would record.
type swiftWorld struct {
	srv *devserver.Server
	tq  string

	mu                               sync.Mutex
	sim                              time.Duration // how far the builders' clock is ahead of the real one
	awaits, backups, applies, pushes int
}

func newSwiftWorld(t *testing.T, p policy.Policy, tq string) *swiftWorld {
	srv := devserver.Start(t)
	sw := &swiftWorld{srv: srv, tq: tq}
	w := worker.New(srv.Client, tq, worker.Options{})
	wf.Register(w)
	keys := testKeys()
	w.RegisterActivity(&activities.Machine{Policy: p, Keys: func() (trust.Policy, error) { return keys, nil }})
	w.RegisterActivity(&activities.Lease{Client: srv.Client, TaskQueue: tq})
	reg := func(name string, fn any) { w.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: name}) }

	const minPart = 24 * time.Hour
	var lastApply time.Time
	now := func() time.Time { return time.Now().Add(sw.sim) }
	status := func() activities.RingStatus {
		if lastApply.IsZero() {
			return ringStatus(0)
		}
		return ringStatus(max(minPart-now().Sub(lastApply), 0))
	}
	reg("SwiftTopology", func(context.Context) (activities.SwiftCluster, error) { return swiftCluster(), nil })
	reg("RingStatus", func(context.Context) (activities.RingStatus, error) {
		sw.mu.Lock()
		defer sw.mu.Unlock()
		return status(), nil
	})
	reg("AwaitMinPartHours", func(_ context.Context, req activities.MinPartHoursRequest) (activities.RingStatus, error) {
		sw.mu.Lock()
		defer sw.mu.Unlock()
		sw.awaits++
		sw.sim += min(time.Until(req.Until), status().MaxRemaining())
		return status(), nil
	})
	reg("BackupBuilders", func(context.Context, activities.BackupRequest) (activities.BackupResult, error) {
		sw.mu.Lock()
		defer sw.mu.Unlock()
		sw.backups++
		return activities.BackupResult{Dir: "/etc/swift/backups/x"}, nil
	})
	reg("ApplyRingOps", func(context.Context, []activities.RingOp) (activities.RingOpsResult, error) {
		sw.mu.Lock()
		defer sw.mu.Unlock()
		sw.applies++
		lastApply = now()
		return activities.RingOpsResult{Applied: []string{"x"}}, nil
	})
	reg("Rebalance", func(_ context.Context, kind string) (activities.RebalanceResult, error) {
		return activities.RebalanceResult{Kind: kind}, nil
	})
	reg("ValidateRing", func(_ context.Context, kind string) (activities.RingCheck, error) {
		return activities.RingCheck{Kind: kind, Valid: true}, nil
	})
	reg("BuilderRingFiles", func(context.Context) ([]activities.RingFile, error) { return ringFiles, nil })
	reg("PushRings", func(_ context.Context, req activities.PushRingsRequest) (activities.PushRingsResult, error) {
		sw.mu.Lock()
		defer sw.mu.Unlock()
		sw.pushes++
		return activities.PushRingsResult{Node: req.Node, Copied: []string{"object.ring.gz"}}, nil
	})
	reg("RingSums", func(_ context.Context, req activities.PushRingsRequest) (activities.RingSumsResult, error) {
		return activities.RingSumsResult{Node: req.Node}, nil
	})
	reg("FollowReplication", func(context.Context, activities.ReplicationRequest) (activities.ReplicationResult, error) {
		return activities.ReplicationResult{Settled: true, Detail: "settled"}, nil
	})
	require.NoError(t, w.Start())
	t.Cleanup(w.Stop)
	return sw
}

// run starts the ring change as alice, approves its gate as bob once it opens, and returns the
// report and the workflow ID.
func (sw *swiftWorld) run(t *testing.T, ctx context.Context, in wf.SwiftRingInput) (*wf.Report, control.Started) {
	rb, err := wf.FindRunbook("swift-ring")
	require.NoError(t, err)
	started, err := control.Start(ctx, sw.srv.Client, sw.tq, rb, &in, control.KeySigner{Key: testOps["alice"].Signer})
	require.NoError(t, err)
	for {
		st, err := control.Status(ctx, sw.srv.Client, started.WorkflowID)
		if err == nil && len(st.OpenGates) == 1 {
			break
		}
		require.NoError(t, ctx.Err())
		time.Sleep(100 * time.Millisecond)
	}
	_, err = control.Approve(ctx, sw.srv.Client, started.WorkflowID, wf.GateDecisionRequest{Gate: wf.GateApproveRingChange, By: "bob"}, control.KeySigner{Key: testOps["bob"].Signer})
	require.NoError(t, err)
	rep, err := control.Report(ctx, sw.srv.Client, started.WorkflowID, true)
	require.NoError(t, err)
	return rep, started
}

// chainLengths follows a workflow ID's runs from its first (continue-as-new) and returns each
// run's history length, and the last run's status.
func chainLengths(t *testing.T, ctx context.Context, c client.Client, id, runID string) ([]int, enums.WorkflowExecutionStatus) {
	var lengths []int
	for {
		d, err := c.DescribeWorkflowExecution(ctx, id, runID)
		require.NoError(t, err)
		info := d.GetWorkflowExecutionInfo()
		lengths = append(lengths, int(info.GetHistoryLength()))
		if info.GetStatus() != enums.WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW {
			return lengths, info.GetStatus()
		}
		it := c.GetWorkflowHistory(ctx, id, runID, false, enums.HISTORY_EVENT_FILTER_TYPE_CLOSE_EVENT)
		require.True(t, it.HasNext())
		ev, err := it.Next()
		require.NoError(t, err)
		runID = ev.GetWorkflowExecutionContinuedAsNewEventAttributes().GetNewExecutionRunId()
		require.NotEmpty(t, runID)
	}
}

// TestSwiftRingHistoryOf10DayLongSteps: a ten-step ring change whose min_part_hours is 24 h
// stays far below Temporal's 10,240-event warning, on a real dev server (real history): 9
// waits of 24 h, simulated. A workflow timer per re-read (5 min) would have cost about 11 events
// each: some 28,000 for these waits.
func TestSwiftRingHistoryOf10DayLongSteps(t *testing.T) {
	sw := newSwiftWorld(t, swiftPolicy(), "swift-history-test")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, started := sw.run(t, ctx, wf.SwiftRingInput{Meta: wf.Meta{RequestedBy: "alice", Reason: "drain sdd in ten steps"}, SetWeight: []string{"storage2/sdd=0"}, Steps: 10})
	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	lengths, status := chainLengths(t, ctx, sw.srv.Client, started.WorkflowID, started.RunID)
	require.Equal(t, enums.WORKFLOW_EXECUTION_STATUS_COMPLETED, status)
	require.Len(t, lengths, 1, "under the history budget: one run")
	events := lengths[0]
	sw.mu.Lock()
	defer sw.mu.Unlock()
	t.Logf("10 steps, 9 waits of 24 h (simulated %s): %d AwaitMinPartHours calls, %d history events", sw.sim.Round(time.Hour), sw.awaits, events)
	require.GreaterOrEqual(t, sw.sim, 9*24*time.Hour-time.Minute, "every step waited out min_part_hours")
	require.Equal(t, 9*4, sw.awaits, "four 6 h calls per 24 h wait")
	require.Less(t, events, 2000, "far below Temporal's 10,240-event warning")
}

// TestSwiftRingContinuesAsNewWithFullReport: with a history budget every step passes, a
// four-step ring change continues as new between its steps (four runs of one workflow ID) and
// ends as one run would: one approval, one backup, each step's change applied once, every step
// in the report with the whole audit trail, and the swift-ring lock held across the runs and
// given back once at the end.
func TestSwiftRingContinuesAsNewWithFullReport(t *testing.T) {
	p := swiftPolicy()
	p.HistoryBudget = 1
	sw := newSwiftWorld(t, p, "swift-continue-test")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, started := sw.run(t, ctx, wf.SwiftRingInput{Meta: wf.Meta{RequestedBy: "alice", Reason: "drain sdd in four steps"}, SetWeight: []string{"storage2/sdd=0"}, Steps: 4})
	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	lengths, status := chainLengths(t, ctx, sw.srv.Client, started.WorkflowID, started.RunID)
	require.Equal(t, enums.WORKFLOW_EXECUTION_STATUS_COMPLETED, status)
	t.Logf("4 steps: runs of %v history events", lengths)
	require.Len(t, lengths, 4, "one run per step")
	assert.EqualValues(t, 4, rep.Details["runs"])
	assert.Equal(t, started.WorkflowID, rep.WorkflowID)
	assert.NotEqual(t, started.RunID, rep.RunID, "the report is the last run's")
	assert.Contains(t, rep.Summary, "rebalanced, validated and distributed to 4 node(s)")
	replayChain(t, ctx, sw.srv.Client, started.WorkflowID, started.RunID)

	sw.mu.Lock()
	assert.Equal(t, 1, sw.backups, "builders backed up once")
	assert.Equal(t, 4, sw.applies, "each step applied once")
	assert.Equal(t, 4*4, sw.pushes, "rings pushed to 4 nodes per step")
	sw.mu.Unlock()

	state := map[string]wf.StepState{}
	for _, s := range rep.Steps {
		state[s.Name] = s.State
	}
	want := []string{"describe", "acquire-lock", "inspect-rings", wf.GateApproveRingChange, "backup"}
	for k := 1; k <= 4; k++ {
		want = append(want, fmt.Sprintf("apply/%d", k), fmt.Sprintf("rebalance/%d", k), fmt.Sprintf("validate/%d", k),
			fmt.Sprintf("distribute/%d", k), fmt.Sprintf("verify/%d", k))
		if k < 4 {
			want = append(want, fmt.Sprintf("settle/%d", k))
		}
	}
	for _, n := range want {
		assert.Equal(t, wf.StepDone, state[n], "step %s in the report: %+v", n, rep.Steps)
	}
	applied := 0
	for _, a := range rep.Audit {
		if a.Activity == "ApplyRingOps" {
			applied++
		}
	}
	assert.Equal(t, 4, applied, "the audit trail has every step's change")
	require.Len(t, rep.Decisions, 1, "approved once: %+v", rep.Decisions)
	assert.Equal(t, "bob", rep.Decisions[0].By)
	require.NotNil(t, rep.Start)
	assert.Equal(t, "alice", rep.Start.By)
	checks, _ := rep.Details["balance_dispersion"].([]any)
	assert.Len(t, checks, 4*3, "every step's validation of three rings")

	// The lock was held by the first run across the chain and is free once it ended.
	for {
		v, err := sw.srv.Client.QueryWorkflow(ctx, wf.LockWorkflowID(wf.SwiftRingLock), "", wf.QueryLease)
		require.NoError(t, err)
		var st activities.LeaseState
		require.NoError(t, v.Get(&st))
		require.Empty(t, st.Refused, "the release was taken: %v", st.Refused)
		if len(st.Holders) == 0 {
			break
		}
		require.NoError(t, ctx.Err(), "the lock is still held: %+v", st.Holders)
		time.Sleep(100 * time.Millisecond)
	}
}

// replayChain replays every run of the chain from its recorded history: the decision to
// continue as new (from the history length) is the same in a replay.
func replayChain(t *testing.T, ctx context.Context, c client.Client, id, runID string) {
	for runID != "" {
		var h historypb.History
		next := ""
		it := c.GetWorkflowHistory(ctx, id, runID, false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		for it.HasNext() {
			ev, err := it.Next()
			require.NoError(t, err)
			h.Events = append(h.Events, ev)
			if a := ev.GetWorkflowExecutionContinuedAsNewEventAttributes(); a != nil {
				next = a.GetNewExecutionRunId()
			}
		}
		r := worker.NewWorkflowReplayer()
		wf.Register(r)
		require.NoError(t, r.ReplayWorkflowHistoryWithOptions(nil, &h, worker.ReplayWorkflowHistoryOptions{
			OriginalExecution: workflow.Execution{ID: id, RunID: runID}}), "replay of run %s", runID)
		runID = next
	}
}
