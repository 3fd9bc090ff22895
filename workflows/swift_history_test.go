package workflows_test

import (
	"context"
	"sync"
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

// TestSwiftRingHistoryOf10DayLongSteps: a ten-step ring change whose min_part_hours is 24 h
// stays far below Temporal's 10,240-event warning, on a real dev server (real history). The
// builders' clock is simulated: AwaitMinPartHours answers as the real activity does after its
// re-reads (at its Until, or once min_part_hours has passed), so 9 waits of 24 h happen in
// seconds and the history is the one a real run of nine days would record. A workflow timer per
// re-read (5 min) would have cost about 11 events each: some 28,000 for these waits.
func TestSwiftRingHistoryOf10DayLongSteps(t *testing.T) {
	srv := devserver.Start(t)
	tq := "swift-history-test"
	w := worker.New(srv.Client, tq, worker.Options{})
	wf.Register(w)
	keys := testKeys()
	w.RegisterActivity(&activities.Machine{Policy: swiftPolicy(), Keys: func() (trust.Policy, error) { return keys, nil }})
	w.RegisterActivity(&activities.Lease{Client: srv.Client, TaskQueue: tq})
	reg := func(name string, fn any) { w.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: name}) }

	const minPart = 24 * time.Hour
	var mu sync.Mutex
	var sim time.Duration // how far the builders' clock is ahead of the real one
	var lastApply time.Time
	awaits := 0
	now := func() time.Time { return time.Now().Add(sim) }
	status := func() activities.RingStatus {
		if lastApply.IsZero() {
			return ringStatus(0)
		}
		return ringStatus(max(minPart-now().Sub(lastApply), 0))
	}
	reg("SwiftTopology", func(context.Context) (activities.SwiftCluster, error) { return swiftCluster(), nil })
	reg("RingStatus", func(context.Context) (activities.RingStatus, error) {
		mu.Lock()
		defer mu.Unlock()
		return status(), nil
	})
	reg("AwaitMinPartHours", func(_ context.Context, req activities.MinPartHoursRequest) (activities.RingStatus, error) {
		mu.Lock()
		defer mu.Unlock()
		awaits++
		sim += min(time.Until(req.Until), status().MaxRemaining())
		return status(), nil
	})
	reg("BackupBuilders", func(context.Context, activities.BackupRequest) (activities.BackupResult, error) {
		return activities.BackupResult{Dir: "/etc/swift/backups/x"}, nil
	})
	reg("ApplyRingOps", func(context.Context, []activities.RingOp) (activities.RingOpsResult, error) {
		mu.Lock()
		defer mu.Unlock()
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

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rb, err := wf.FindRunbook("swift-ring")
	require.NoError(t, err)
	in := wf.SwiftRingInput{Meta: wf.Meta{RequestedBy: "alice", Reason: "drain sdd in ten steps"}, SetWeight: []string{"storage2/sdd=0"}, Steps: 10}
	started, err := control.Start(ctx, srv.Client, tq, rb, &in, control.KeySigner{Key: testOps["alice"].Signer})
	require.NoError(t, err)
	for {
		st, err := control.Status(ctx, srv.Client, started.WorkflowID)
		if err == nil && len(st.OpenGates) == 1 {
			break
		}
		require.NoError(t, ctx.Err())
		time.Sleep(100 * time.Millisecond)
	}
	_, err = control.Approve(ctx, srv.Client, started.WorkflowID, wf.GateDecisionRequest{Gate: wf.GateApproveRingChange, By: "bob"}, control.KeySigner{Key: testOps["bob"].Signer})
	require.NoError(t, err)
	rep, err := control.Report(ctx, srv.Client, started.WorkflowID, true)
	require.NoError(t, err)
	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	d, err := srv.Client.DescribeWorkflowExecution(ctx, started.WorkflowID, "")
	require.NoError(t, err)
	require.Equal(t, enums.WORKFLOW_EXECUTION_STATUS_COMPLETED, d.WorkflowExecutionInfo.Status)
	events := int(d.WorkflowExecutionInfo.HistoryLength)
	mu.Lock()
	defer mu.Unlock()
	t.Logf("10 steps, 9 waits of 24 h (simulated %s): %d AwaitMinPartHours calls, %d history events", sim.Round(time.Hour), awaits, events)
	require.GreaterOrEqual(t, sim, 9*minPart-time.Minute, "every step waited out min_part_hours")
	require.Equal(t, 9*4, awaits, "four 6 h calls per 24 h wait")
	require.Less(t, events, 2000, "far below Temporal's 10,240-event warning")
}
