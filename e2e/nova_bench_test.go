//go:build e2e && bench

package e2e

// Benchmark (not a timed test): drain a 50-instance compute with Stackrun (parallel 4, every
// instance followed and verified) versus what `nova host-evacuate-live` does (fire every live
// migration at once, then poll until all have left). Run:
//
//	go test -count=1 -tags 'e2e bench' -run TestNovaBenchDrain50 -v -timeout 30m ./e2e/

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/stretchr/testify/require"

	"github.com/stackrun/stackrun/workflows"
)

const benchInstances = 50

func TestNovaBenchDrain50(t *testing.T) {
	l := newNovaLab(t)

	// Baseline: every live migration fired at once (host chosen by the scheduler,
	// block_migration auto), then poll until none is left on compute1 and all are ACTIVE.
	ids := l.boot("bench-a", "compute1", benchInstances)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	t0 := time.Now()
	for _, id := range ids {
		_, err := l.cl.Compute.Post(ctx, l.cl.Compute.ServiceURL("servers", id, "action"),
			map[string]any{"os-migrateLive": map[string]any{"host": nil, "block_migration": "auto"}}, nil, &gophercloud.RequestOpts{OkCodes: []int{202}})
		require.NoError(t, err)
	}
	for {
		left := 0
		for _, id := range ids {
			s := l.server(id)
			if s.Host == "compute1" || s.Status != "ACTIVE" || s.TaskState != "" {
				left++
			}
		}
		if left == 0 {
			break
		}
		require.NoError(t, ctx.Err(), "%d instance(s) still on compute1", left)
		time.Sleep(time.Second)
	}
	baseline := time.Since(t0)
	l.deleteServers(ids)

	// Stackrun: plan, approval (answered at once), disable, 4 in flight, each followed and
	// verified, host verified empty (API and database), enabled again.
	ids = l.boot("bench-s", "compute1", benchInstances)
	in := evacInput("compute1")
	in.Parallel = 4
	t1 := time.Now()
	id := l.start("evacuate", in)
	l.waitFor(id, time.Minute, "gate", func(st workflows.Status) bool { return len(st.OpenGates) == 1 })
	gateWait := time.Since(t1)
	l.approve(id, workflows.GateApprovePlan, "bob")
	rep := l.report(id, 20*time.Minute)
	stackrun := time.Since(t1)
	require.Equal(t, workflows.StatusCompleted, rep.Status, rep.Summary)
	d, err := l.srv.Client.DescribeWorkflowExecution(ctx, id, "")
	require.NoError(t, err)
	events := d.WorkflowExecutionInfo.HistoryLength
	for _, sid := range ids {
		s := l.server(sid)
		require.NotEqual(t, "compute1", s.Host)
		require.Equal(t, "ACTIVE", s.Status)
	}
	fmt.Printf("\n| drain of %d instances (lab, fake driver) | wall time |\n|---|---|\n", benchInstances)
	fmt.Printf("| all live migrations at once + poll (nova host-evacuate-live) | %s |\n", baseline.Round(100*time.Millisecond))
	fmt.Printf("| Stackrun evacuate, parallel 4, verified (incl. %s to the gate) | %s |\n", gateWait.Round(100*time.Millisecond), stackrun.Round(100*time.Millisecond))
	fmt.Printf("| ratio Stackrun / baseline | %.2f |\n", stackrun.Seconds()/baseline.Seconds())
	fmt.Printf("| Temporal history events | %d (%.1f per instance) |\n\n", events, float64(events)/benchInstances)
}
