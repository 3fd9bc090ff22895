package workflows_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"

	"github.com/stackrun/stackrun/activities"
	wf "github.com/stackrun/stackrun/workflows"
)

func TestSwiftRingRemoveNode(t *testing.T) {
	f := newFixture(t, swiftPolicy())
	rec := &swiftRec{}
	f.swiftMocks(rec, func() activities.RingStatus { return ringStatus(0) })
	f.approveAt(wf.GateApproveRingChange, "bob", time.Minute)
	f.run(wf.SwiftRing.Type, wf.SwiftRingInput{Meta: wf.Meta{RequestedBy: "alice"}, Remove: []string{"storage3"}})
	rep := f.result()
	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	require.Len(t, rec.ops, 1)
	var got []string
	for _, op := range rec.ops[0] {
		got = append(got, op.Kind+" "+op.Action+" "+op.IP+"/"+op.Device)
	}
	assert.ElementsMatch(t, []string{
		"account remove 10.0.0.23/sdf", "account remove 10.0.0.23/sdg", "container remove 10.0.0.23/sdf",
		"container remove 10.0.0.23/sdg", "object remove 10.0.0.23/sdf", "object remove 10.0.0.23/sdg"}, got)
	sort.Strings(rec.pushed)
	assert.Equal(t, []string{"controller", "storage1", "storage2", "storage3"}, rec.pushed, "rings copied to every storage and proxy node")
	assert.Contains(t, rec.calls, "Rebalance/object")
	// exit 1 of rebalance is a warning, not a failure
	found := false
	for _, fd := range rep.Findings {
		found = found || strings.Contains(fd.Message, "exit 1 (warning)")
	}
	assert.True(t, found, "rebalance warning recorded: %+v", rep.Findings)
	assert.NotNil(t, rep.Details["balance_dispersion"])
	assert.Equal(t, "granted", stepDetail(rep, "acquire-lock"))
}

func TestSwiftRingRefusedInsideMinPartHours(t *testing.T) {
	f := newFixture(t, swiftPolicy())
	rec := &swiftRec{}
	f.swiftMocks(rec, func() activities.RingStatus { return ringStatus(40 * time.Minute) })
	f.run(wf.SwiftRing.Type, wf.SwiftRingInput{Meta: wf.Meta{RequestedBy: "alice"}, SetWeight: []string{"storage2/sdd=50"}})
	rep := f.result()
	require.Equal(t, wf.StatusFailed, rep.Status)
	assert.Contains(t, rep.Summary, "min_part_hours")
	assert.Contains(t, rep.Summary, "never forced")
	assert.Empty(t, rec.ops, "builders untouched")
	assert.Empty(t, rec.pushed)
}

func TestSwiftRingWaitsForMinPartHoursDurably(t *testing.T) {
	f := newFixture(t, swiftPolicy())
	rec := &swiftRec{}
	start := f.env.Now()
	f.swiftMocks(rec, func() activities.RingStatus {
		rem := 40*time.Minute - f.env.Now().Sub(start)
		return ringStatus(max(rem, 0))
	})
	f.approveAt(wf.GateApproveRingChange, "bob", time.Minute)
	f.run(wf.SwiftRing.Type, wf.SwiftRingInput{Meta: wf.Meta{RequestedBy: "alice"}, SetWeight: []string{"storage2/sdd=50"}, Wait: true})
	rep := f.result()
	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	require.Len(t, rec.ops, 1)
	assert.GreaterOrEqual(t, f.env.Now().Sub(start), 40*time.Minute, "waited on a timer")
	assert.Equal(t, 50.0, rec.ops[0][0].Weight)
}

func TestSwiftRingWeightInSteps(t *testing.T) {
	f := newFixture(t, swiftPolicy())
	rec := &swiftRec{}
	var lastApply time.Time
	_ = lastApply
	f.swiftMocks(rec, func() activities.RingStatus {
		// After each change, min_part_hours (1 h) runs from the rebalance.
		if lastApply.IsZero() {
			return ringStatus(0)
		}
		return ringStatus(max(time.Hour-f.env.Now().Sub(lastApply), 0))
	})
	f.env.OnActivity(swift.FollowReplication, mock.Anything, mock.Anything).Return(func(_ context.Context, req activities.ReplicationRequest) (activities.ReplicationResult, error) {
		rec.add("FollowReplication")
		assert.Equal(t, []string{"storage1", "storage2", "storage3"}, req.Nodes)
		return activities.ReplicationResult{Settled: true, Detail: "settled"}, nil
	})
	rec.onApply = func() { lastApply = f.env.Now() }
	f.approveAt(wf.GateApproveRingChange, "bob", time.Minute)
	start := f.env.Now()
	f.run(wf.SwiftRing.Type, wf.SwiftRingInput{Meta: wf.Meta{RequestedBy: "alice"}, SetWeight: []string{"storage2/sdd=0"}, Steps: 4})
	rep := f.result()
	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	require.Len(t, rec.ops, 4)
	var weights []float64
	for _, ops := range rec.ops {
		require.Len(t, ops, 3)
		weights = append(weights, ops[0].Weight)
	}
	assert.Equal(t, []float64{75, 50, 25, 0}, weights)
	n := 0
	for _, c := range rec.calls {
		if c == "FollowReplication" {
			n++
		}
	}
	assert.Equal(t, 3, n, "replication settles between steps")
	assert.GreaterOrEqual(t, f.env.Now().Sub(start), 3*time.Hour, "min_part_hours between steps")
}

// A large change goes in steps by itself: swift.max_step_percent 10 and sdd from 100 to 0 (100
// of the ring's 600, 16.7%) make two rebalances, without --steps.
func TestSwiftRingSplitsLargeChangeByConfig(t *testing.T) {
	f := newFixture(t, swiftPolicy())
	rec := &swiftRec{maxStep: 10}
	var lastApply time.Time
	f.swiftMocks(rec, func() activities.RingStatus {
		if lastApply.IsZero() {
			return ringStatus(0)
		}
		return ringStatus(max(time.Hour-f.env.Now().Sub(lastApply), 0))
	})
	f.env.OnActivity(swift.FollowReplication, mock.Anything, mock.Anything).Return(activities.ReplicationResult{Settled: true, Detail: "settled"}, nil)
	rec.onApply = func() { lastApply = f.env.Now() }
	f.approveAt(wf.GateApproveRingChange, "bob", time.Minute)
	f.run(wf.SwiftRing.Type, wf.SwiftRingInput{Meta: wf.Meta{RequestedBy: "alice"}, SetWeight: []string{"storage2/sdd=0"}})
	rep := f.result()
	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	require.Len(t, rec.ops, 2)
	assert.Equal(t, []string{"account set_weight 10.0.0.22/sdd 50", "container set_weight 10.0.0.22/sdd 50", "object set_weight 10.0.0.22/sdd 50"}, opWords(rec.ops[0]))
	assert.Equal(t, 0.0, rec.ops[1][0].Weight)
	assert.Contains(t, rep.Plan[0], "(16.7%); swift.max_step_percent is 10: 2 steps")
	// A small change stays one rebalance; --steps may still ask for more.
	for _, tc := range []struct {
		in    wf.SwiftRingInput
		steps int
	}{
		{wf.SwiftRingInput{SetWeight: []string{"storage2/sdd=50"}}, 1},
		{wf.SwiftRingInput{SetWeight: []string{"storage2/sdd=50"}, Steps: 3}, 3},
		{wf.SwiftRingInput{Remove: []string{"storage3"}}, 4}, // 200 of 600
	} {
		f := newFixture(t, swiftPolicy())
		rec := &swiftRec{maxStep: 10}
		f.swiftMocks(rec, func() activities.RingStatus { return ringStatus(0) })
		tc.in.Meta = wf.Meta{RequestedBy: "alice"}
		f.env.RegisterDelayedCallback(func() {
			f.update(wf.UpdateReject, wf.GateDecisionRequest{Gate: wf.GateApproveRingChange, By: "bob"}, "")
		}, time.Minute)
		f.run(wf.SwiftRing.Type, tc.in)
		rep := f.result()
		plan := strings.Join(rep.Plan, "\n")
		if tc.steps == 1 {
			assert.NotContains(t, plan, "step ", "%+v", tc.in)
		} else {
			assert.Contains(t, plan, fmt.Sprintf("step %d/%d: object:", tc.steps, tc.steps), "%+v", tc.in)
		}
	}
}

func TestSwiftRingDistributeRepairsStaleNode(t *testing.T) {
	f := newFixture(t, swiftPolicy())
	rec := &swiftRec{}
	f.swiftMocks(rec, func() activities.RingStatus { return ringStatus(30 * time.Minute) })
	sums := 0
	rec.sums = func(req activities.PushRingsRequest) activities.RingSumsResult {
		sums++
		if req.Node == "storage1" && sums <= 4 {
			return activities.RingSumsResult{Node: req.Node, Mismatch: []string{"object.ring.gz"}}
		}
		return activities.RingSumsResult{Node: req.Node}
	}
	f.run(wf.SwiftRing.Type, wf.SwiftRingInput{Meta: wf.Meta{RequestedBy: "alice"}, Distribute: true})
	rep := f.result()
	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	assert.Empty(t, rec.ops, "distribute changes no builder (and is allowed inside min_part_hours)")
	assert.Equal(t, 5, len(rec.pushed), "4 nodes, then storage1 again after the mismatch")
}

func TestSwiftRingInvalidTargetsNeverConnect(t *testing.T) {
	for _, in := range []wf.SwiftRingInput{
		{Remove: []string{"storage9"}},
		{Remove: []string{"storage1/sdz"}},
		{Add: []string{"controller"}},
	} {
		f := newFixture(t, swiftPolicy())
		rec := &swiftRec{}
		f.swiftMocks(rec, func() activities.RingStatus { t.Error("rings read"); return ringStatus(0) })
		in.Meta = wf.Meta{RequestedBy: "alice"}
		f.run(wf.SwiftRing.Type, in)
		rep := f.result()
		assert.Equal(t, wf.StatusFailed, rep.Status, "%+v", in)
		assert.Contains(t, rep.Summary, "invalid input")
	}
}

// The min_part_hours wait re-reads the builders: when min_part_hours ends early on the builder
// (its operator ran pretend_min_part_hours_passed), the change goes ahead within one recheck.
func TestSwiftRingWaitRechecksBuilders(t *testing.T) {
	f := newFixture(t, swiftPolicy())
	rec := &swiftRec{}
	start := f.env.Now()
	f.swiftMocks(rec, func() activities.RingStatus {
		if f.env.Now().Sub(start) >= 20*time.Minute {
			return ringStatus(0) // pretend_min_part_hours_passed
		}
		return ringStatus(50 * time.Minute)
	})
	var applied time.Time
	rec.onApply = func() { applied = f.env.Now() }
	f.approveAt(wf.GateApproveRingChange, "bob", time.Minute)
	f.run(wf.SwiftRing.Type, wf.SwiftRingInput{Meta: wf.Meta{RequestedBy: "alice"}, SetWeight: []string{"storage2/sdd=50"}, Wait: true})
	rep := f.result()
	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	assert.GreaterOrEqual(t, applied.Sub(start), 20*time.Minute, "never before the builder allows it")
	assert.LessOrEqual(t, applied.Sub(start), 26*time.Minute, "noticed within one recheck (5 min by default), not after the 51 min timer")
}

// parent_approved is anyone's to set in an input: a ring change that names a swift-disk run it is
// not the child of opens its own gate (and records the forged claim) instead of skipping it.
func TestSwiftRingForgedParentApprovedOpensTheGate(t *testing.T) {
	f := newFixture(t, swiftPolicy())
	rec := &swiftRec{}
	f.swiftMocks(rec, func() activities.RingStatus { return ringStatus(0) })
	f.env.RegisterDelayedCallback(func() {
		st := f.status()
		require.Equal(t, wf.StatusWaitingApproval, st.Status, "the forged claim skipped the gate")
		require.Equal(t, wf.GateApproveRingChange, st.OpenGates[0].Name)
		require.Len(t, st.Refused, 1)
		assert.Equal(t, "parent_approved", st.Refused[0].Signal)
		assert.Contains(t, st.Refused[0].Reason, "this run's parent is none")
		assert.Empty(t, rec.ops)
		f.update(wf.UpdateReject, wf.GateDecisionRequest{Gate: wf.GateApproveRingChange, By: "alice"}, "")
	}, time.Hour)
	f.run(wf.SwiftRing.Type, wf.SwiftRingInput{Meta: wf.Meta{RequestedBy: "alice"}, SetWeight: []string{"storage2/sdd=0"}, ParentApproved: "swift-disk/storage2/sdd"})
	rep := f.result()
	require.Equal(t, wf.StatusAborted, rep.Status)
	assert.Empty(t, rec.ops, "builders untouched")
}

// A client cannot start a run "already approved": an input that carries a chain's state
// (Meta.Continued) on a run Temporal did not continue as new is refused before anything is read.
func TestSwiftRingContinuedStateFromAClientIsRefused(t *testing.T) {
	f := newFixture(t, swiftPolicy())
	rec := &swiftRec{}
	f.swiftMocks(rec, func() activities.RingStatus { t.Error("rings read"); return ringStatus(0) })
	in := wf.SwiftRingInput{Meta: wf.Meta{RequestedBy: "alice"}, SetWeight: []string{"storage2/sdd=0"}, Steps: 2}
	in.Continued = &wf.Continued{Runs: 1, Steps: []wf.StepStatus{{Name: wf.GateApproveRingChange, State: wf.StepDone}},
		State: []byte(`{"steps":2,"next":2,"backed_up":true}`)}
	f.run(wf.SwiftRing.Type, in)
	rep := f.result()
	require.Equal(t, wf.StatusFailed, rep.Status)
	assert.Contains(t, rep.Summary, "start refused")
	assert.Empty(t, rec.ops, "builders untouched")
	assert.Empty(t, rec.pushed)
	require.NotEmpty(t, rep.Refused)
	assert.Contains(t, rep.Refused[len(rep.Refused)-1].Reason, "started, not continued as new")
}
