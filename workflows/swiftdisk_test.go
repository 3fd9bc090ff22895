package workflows_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"

	"github.com/stackrun/stackrun/activities"
	wf "github.com/stackrun/stackrun/workflows"
)

// diskMocks mocks the disk side for storage2/sdd.
func (f *fixture) diskMocks(rec *swiftRec, health map[string][]activities.DeviceState, newDisk activities.DiskFacts) {
	f.env.OnActivity(swift.DeviceHealth, mock.Anything, mock.Anything).Return(func(_ context.Context, node string) ([]activities.DeviceState, error) {
		return health[node], nil
	})
	f.env.OnActivity(swift.UnmountDevice, mock.Anything, mock.Anything).Return(func(context.Context, activities.DiskRequest) (activities.UnmountResult, error) {
		rec.add("UnmountDevice")
		return activities.UnmountResult{WasMounted: true, ServicesRestarted: true, Detail: "target is busy"}, nil
	})
	f.env.OnActivity(swift.InspectDisk, mock.Anything, mock.Anything).Return(newDisk, nil)
	f.env.OnActivity(swift.FormatDisk, mock.Anything, mock.Anything).Return(func(_ context.Context, req activities.FormatRequest) (activities.FormatResult, error) {
		rec.add("FormatDisk overwrite=" + map[bool]string{true: "yes", false: "no"}[req.Overwrite] + " prev=" + req.PreviousUUID)
		return activities.FormatResult{Formatted: true, UUID: "new-uuid", Label: req.Device}, nil
	})
	f.env.OnActivity(swift.MountDisk, mock.Anything, mock.Anything).Return(func(context.Context, activities.DiskRequest) (activities.MountResult, error) {
		rec.add("MountDisk")
		return activities.MountResult{MountPoint: "/srv/node/sdd", Source: "/dev/sdd", Owner: "swift:swift", UsedBytes: 29 << 20}, nil
	})
	f.env.OnActivity(swift.RestartSwift, mock.Anything, mock.Anything).Return(func(context.Context, string) error { rec.add("RestartSwift"); return nil })
	f.env.OnActivity(swift.FollowReplication, mock.Anything, mock.Anything).Return(func(_ context.Context, req activities.ReplicationRequest) (activities.ReplicationResult, error) {
		if req.Device != nil {
			rec.add("FollowReplication " + req.Device.Node + "/" + req.Device.Device)
		}
		rec.mu.Lock()
		rec.repl = append(rec.repl, req)
		rec.mu.Unlock()
		if req.Device == nil {
			rec.add("FollowReplication")
			return activities.ReplicationResult{Settled: true, Detail: "settled"}, nil
		}
		return activities.ReplicationResult{Settled: true, DeviceBytes: 12 << 20, Detail: "storage2/sdd holds 12 MiB of data"}, nil
	})
}

func healthy(except ...string) map[string][]activities.DeviceState {
	out := map[string][]activities.DeviceState{}
	for i, n := range []string{"storage1", "storage2", "storage3"} {
		for _, d := range []string{"sd" + string(rune('b'+2*i)), "sd" + string(rune('c'+2*i))} {
			st := activities.DeviceState{Node: n, Device: d, Mounted: true, Healthy: true}
			for _, e := range except {
				if e == n+"/"+d {
					st.Healthy, st.Detail = false, "Input/output error"
				}
			}
			out[n] = append(out[n], st)
		}
	}
	return out
}

var emptyDisk = activities.DiskFacts{Path: "/dev/sdd", Resolved: "/dev/loop9", Exists: true, Size: 512 << 20}

func TestSwiftDiskReplacement(t *testing.T) {
	f := newFixture(t, swiftPolicy())
	rec := &swiftRec{}
	f.swiftMocks(rec, func() activities.RingStatus { return ringStatus(0) })
	f.diskMocks(rec, healthy("storage2/sdd"), emptyDisk)
	// alice requested: she may not approve disk-replaced; bob does.
	f.env.RegisterDelayedCallback(func() {
		f.env.UpdateWorkflow(wf.UpdateApprove, "", &refusedCB{t: f.t}, f.sign(wf.UpdateApprove, wf.GateDecisionRequest{Gate: wf.GateDiskReplaced, By: "alice"}))
	}, time.Minute)
	f.approveAt(wf.GateDiskReplaced, "bob", 2*time.Minute)
	f.run(wf.SwiftDisk.Type, wf.SwiftDiskInput{Meta: wf.Meta{RequestedBy: "alice"}, Node: "storage2", Device: "sdd"})
	rep := f.result()
	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	assert.Equal(t, []string{"UnmountDevice", "FormatDisk overwrite=no prev=", "MountDisk", "RestartSwift", "FollowReplication storage2/sdd"}, filter(rec.calls, "RingStatus"))
	// The refill check gets the object ring's weights and the new file system's own usage.
	require.Len(t, rec.repl, 1)
	assert.Equal(t, int64(29<<20), rec.repl[0].DeviceBaseline)
	assert.Len(t, rec.repl[0].Weights, 6)
	assert.Equal(t, 100.0, rec.repl[0].Weights["storage2/sdd"])
	assert.Contains(t, rep.Plan[0], "failed (Input/output error)")
	assert.Contains(t, stepDetail(rep, "format"), "new-uuid")
	assert.Empty(t, rec.ops, "no ring change without --drain-first")
}

func TestSwiftDiskOverwriteNeedsGate(t *testing.T) {
	f := newFixture(t, swiftPolicy())
	rec := &swiftRec{}
	f.swiftMocks(rec, func() activities.RingStatus { return ringStatus(0) })
	withFS := emptyDisk
	withFS.FSType, withFS.UUID, withFS.Label = "ext4", "old-uuid", "data"
	f.diskMocks(rec, healthy("storage2/sdd"), withFS)
	f.approveAt(wf.GateDiskReplaced, "bob", time.Minute)
	f.approveAt(wf.GateOverwriteDisk, "bob", 2*time.Minute)
	f.run(wf.SwiftDisk.Type, wf.SwiftDiskInput{Meta: wf.Meta{RequestedBy: "alice"}, Node: "storage2", Device: "sdd"})
	rep := f.result()
	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	assert.Contains(t, rec.calls, "FormatDisk overwrite=yes prev=old-uuid")
}

// A partition table counts as something to overwrite (gate); a partition is never formatted.
func TestSwiftDiskWholeDiskOnly(t *testing.T) {
	f := newFixture(t, swiftPolicy())
	rec := &swiftRec{}
	f.swiftMocks(rec, func() activities.RingStatus { return ringStatus(0) })
	withPT := emptyDisk
	withPT.Type, withPT.PartTable, withPT.KernelErrors = "disk", "gpt", []string{"[ 9.1] blk_update_request: I/O error, dev loop9, sector 0"}
	f.diskMocks(rec, healthy("storage2/sdd"), withPT)
	f.approveAt(wf.GateDiskReplaced, "bob", time.Minute)
	f.approveAt(wf.GateOverwriteDisk, "bob", 2*time.Minute)
	f.run(wf.SwiftDisk.Type, wf.SwiftDiskInput{Meta: wf.Meta{RequestedBy: "alice"}, Node: "storage2", Device: "sdd"})
	rep := f.result()
	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	assert.Contains(t, rec.calls, "FormatDisk overwrite=yes prev=")
	found := false
	for _, fd := range rep.Findings {
		found = found || strings.Contains(fd.Message, "I/O error, dev loop9")
	}
	assert.True(t, found, "the kernel log's error is a finding: %+v", rep.Findings)

	f = newFixture(t, swiftPolicy())
	rec = &swiftRec{}
	f.swiftMocks(rec, func() activities.RingStatus { return ringStatus(0) })
	part := emptyDisk
	part.Type = "part"
	f.diskMocks(rec, healthy("storage2/sdd"), part)
	f.approveAt(wf.GateDiskReplaced, "bob", time.Minute)
	f.run(wf.SwiftDisk.Type, wf.SwiftDiskInput{Meta: wf.Meta{RequestedBy: "alice"}, Node: "storage2", Device: "sdd"})
	rep = f.result()
	assert.NotEqual(t, wf.StatusCompleted, rep.Status)
	assert.Contains(t, stepDetailErr(rep, "inspect-new-disk"), "not a whole disk")
	assert.NotContains(t, strings.Join(rec.calls, ","), "FormatDisk")
}

func TestSwiftDiskRefusesLastCopy(t *testing.T) {
	f := newFixture(t, swiftPolicy())
	rec := &swiftRec{}
	f.swiftMocks(rec, func() activities.RingStatus { return ringStatus(0) })
	// sdd (zone 2) and two more devices in zones 1 and 3 are down: with 3 replicas some
	// partition of sdd may have no other copy.
	f.diskMocks(rec, healthy("storage2/sdd", "storage1/sdb", "storage3/sdf"), emptyDisk)
	f.run(wf.SwiftDisk.Type, wf.SwiftDiskInput{Meta: wf.Meta{RequestedBy: "alice"}, Node: "storage2", Device: "sdd"})
	rep := f.result()
	require.Equal(t, wf.StatusFailed, rep.Status)
	assert.Contains(t, stepDetailErr(rep, "check-replicas"), "last copy")
	assert.NotContains(t, rec.calls, "UnmountDevice")
}

// A storage node that cannot be reached holds none of its copies: with storage3 (zone 3, two
// devices) away, a partition of sdd may have no copy left but the one on sdd.
func TestSwiftDiskRefusesWhenNodeUnreachable(t *testing.T) {
	for _, tc := range []struct {
		name, want string
		down       []string
	}{
		{"other node", "storage3/sdf (node cannot be reached: counted as holding none of its copies)", []string{}},
		{"the node itself", "storage2 itself cannot be reached", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, swiftPolicy())
			rec := &swiftRec{}
			f.swiftMocks(rec, func() activities.RingStatus { return ringStatus(0) })
			health := healthy(append([]string{"storage2/sdd"}, tc.down...)...)
			away := "storage3"
			if tc.down == nil {
				away = "storage2"
			}
			for i := range health[away] {
				health[away][i] = activities.DeviceState{Node: away, Device: health[away][i].Device, Unreachable: true, Detail: "node cannot be reached: connection refused"}
			}
			f.diskMocks(rec, health, emptyDisk)
			f.run(wf.SwiftDisk.Type, wf.SwiftDiskInput{Meta: wf.Meta{RequestedBy: "alice"}, Node: "storage2", Device: "sdd"})
			rep := f.result()
			require.Equal(t, wf.StatusFailed, rep.Status, rep.Summary)
			assert.Contains(t, stepDetailErr(rep, "check-replicas"), tc.want)
			assert.NotContains(t, rec.calls, "UnmountDevice")
		})
	}
}

func TestSwiftDiskUnknownDeviceNeverConnects(t *testing.T) {
	for _, in := range []wf.SwiftDiskInput{{Node: "storage9", Device: "sdd"}, {Node: "storage1", Device: "sdd"}, {Node: "controller", Device: "sdb"}} {
		f := newFixture(t, swiftPolicy())
		rec := &swiftRec{}
		f.swiftMocks(rec, func() activities.RingStatus { t.Error("rings read"); return ringStatus(0) })
		f.diskMocks(rec, healthy(), emptyDisk)
		in.Meta = wf.Meta{RequestedBy: "alice"}
		f.run(wf.SwiftDisk.Type, in)
		rep := f.result()
		assert.Equal(t, wf.StatusFailed, rep.Status)
		assert.Contains(t, rep.Summary, "invalid input")
		assert.Empty(t, rec.calls)
	}
}

func TestSwiftDiskStallsWhenNoNewDisk(t *testing.T) {
	f := newFixture(t, swiftPolicy())
	rec := &swiftRec{}
	f.swiftMocks(rec, func() activities.RingStatus { return ringStatus(0) })
	f.diskMocks(rec, healthy("storage2/sdd"), activities.DiskFacts{Path: "/dev/sdd"})
	f.approveAt(wf.GateDiskReplaced, "bob", time.Minute)
	f.env.RegisterDelayedCallback(func() {
		st := f.status()
		require.Equal(f.t, wf.StatusStalled, st.Status)
		require.Equal(f.t, "inspect-new-disk", st.Stalled[0].Step)
		f.env.UpdateWorkflow(wf.UpdateResolve, "", &updateCB{t: f.t}, f.sign(wf.UpdateResolve, wf.ResolveRequest{Step: "inspect-new-disk", Action: wf.ResolveAbort, By: "bob"}))
	}, time.Hour)
	f.run(wf.SwiftDisk.Type, wf.SwiftDiskInput{Meta: wf.Meta{RequestedBy: "alice"}, Node: "storage2", Device: "sdd"})
	rep := f.result()
	assert.Equal(t, wf.StatusAborted, rep.Status)
	assert.Contains(t, rep.LeftState, "unmounted")
	assert.NotContains(t, strings.Join(rec.calls, ","), "FormatDisk")
}

// drainRings answers RingStatus as the builder would after the recorded ring changes: weights
// as set, and min_part_hours (1 h) running from the last apply (or remaining at first).
func drainRings(f *fixture, rec *swiftRec, first time.Duration) (status func() activities.RingStatus, applies *[]time.Time) {
	start := f.env.Now()
	var at []time.Time
	rec.onApply = func() { at = append(at, f.env.Now()) }
	return func() activities.RingStatus {
		rem := max(first-f.env.Now().Sub(start), 0)
		if len(at) > 0 {
			rem = max(time.Hour-f.env.Now().Sub(at[len(at)-1]), 0)
		}
		st := ringStatus(rem)
		rec.mu.Lock()
		defer rec.mu.Unlock()
		for _, ops := range rec.ops {
			for _, op := range ops {
				for i := range st.Rings {
					if st.Rings[i].Kind != op.Kind {
						continue
					}
					for j, d := range st.Rings[i].Devices {
						if d.IP == op.IP && d.Name == op.Device && op.Action == "set_weight" {
							st.Rings[i].Devices[j].Weight = op.Weight
						}
					}
				}
			}
		}
		return st
	}, &at
}

// --drain-first: a child swift-ring run sets weight 0 in all three rings and the disk runbook
// waits for it (and for replication) before unmounting; after the new disk is mounted a second
// child restores the weight, waiting durably for the min_part_hours its drain started, and only
// then is the refill followed.
func TestSwiftDiskDrainFirst(t *testing.T) {
	f := newFixture(t, swiftPolicy())
	rec := &swiftRec{}
	status, applies := drainRings(f, rec, 0)
	f.swiftMocks(rec, status)
	f.diskMocks(rec, healthy("storage2/sdd"), emptyDisk)
	f.approveAt(wf.GateDiskReplaced, "bob", 10*time.Minute)
	start := f.env.Now()
	checked := false
	f.env.RegisterDelayedCallback(func() {
		// The new disk is mounted; the restore waits for min_part_hours since the drain.
		st := f.status()
		assert.Equal(t, wf.StatusRunning, st.Status)
		var restore wf.StepStatus
		for _, s := range st.Steps {
			if s.Name == "restore-weight" {
				restore = s
			}
		}
		assert.Equal(t, wf.StepRunning, restore.State)
		assert.Contains(t, restore.Detail, "pending")
		assert.Contains(t, restore.Detail, "min_part_hours")
		assert.Contains(t, restore.Detail, "stackrun run swift-ring --set-weight storage2/sdd=100", "how to restore by hand")
		rec.mu.Lock()
		assert.Len(t, rec.ops, 1, "only the drain so far")
		rec.mu.Unlock()
		checked = true
	}, 40*time.Minute)
	f.approveAt(wf.GateApproveRingChange, "bob", time.Minute)
	f.run(wf.SwiftDisk.Type, wf.SwiftDiskInput{Meta: wf.Meta{RequestedBy: "alice"}, Node: "storage2", Device: "sdd", DrainFirst: true})
	rep := f.result()
	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	require.True(t, checked)
	require.Len(t, rec.ops, 2, "drain and restore")
	assert.Equal(t, []string{"account set_weight 10.0.0.22/sdd 0", "container set_weight 10.0.0.22/sdd 0", "object set_weight 10.0.0.22/sdd 0"}, opWords(rec.ops[0]))
	assert.Equal(t, []string{"account set_weight 10.0.0.22/sdd 100", "container set_weight 10.0.0.22/sdd 100", "object set_weight 10.0.0.22/sdd 100"}, opWords(rec.ops[1]))
	assert.Equal(t, []string{"ApplyRingOps", "FollowReplication", "UnmountDevice", "MountDisk", "RestartSwift", "ApplyRingOps", "FollowReplication storage2/sdd"},
		keep(rec.calls, "ApplyRingOps", "FollowReplication", "UnmountDevice", "MountDisk", "RestartSwift", "FollowReplication storage2/sdd"),
		"drain, settle, unmount ... mount, restart, restore, refill")
	require.Len(t, *applies, 2)
	assert.GreaterOrEqual(t, (*applies)[1].Sub((*applies)[0]), time.Hour, "the restore waited for min_part_hours (a durable timer)")
	assert.Less(t, (*applies)[0].Sub(start), 5*time.Minute)
	// The refill is followed after the restore, against the restored weight.
	last := rec.repl[len(rec.repl)-1]
	assert.False(t, last.Since.Before((*applies)[1]), "refill counted from the restore")
	assert.Equal(t, 100.0, last.Weights["storage2/sdd"])
	assert.True(t, strings.HasSuffix(rep.Details["drain_run"].(string), "/drain"), "%v", rep.Details["drain_run"])
	assert.True(t, strings.HasSuffix(rep.Details["restore-weight_run"].(string), "/restore-weight"))
	assert.Empty(t, rep.LeftState)
	for _, s := range []string{"drain", "drain-settle", "restore-weight"} {
		assert.Equal(t, wf.StepDone, stepState(rep, s), s)
	}
	assert.Contains(t, strings.Join(rep.Plan, "\n"), "restore the weight of storage2/sdd to 100")
}

// Inside min_part_hours the drain child refuses: the disk runbook stalls at drain with the
// child's reason, having changed nothing; retry after min_part_hours starts a new child.
func TestSwiftDiskDrainRefusedStallsThenRetries(t *testing.T) {
	f := newFixture(t, swiftPolicy())
	rec := &swiftRec{}
	status, _ := drainRings(f, rec, 40*time.Minute)
	f.swiftMocks(rec, status)
	f.diskMocks(rec, healthy("storage2/sdd"), emptyDisk)
	stalled := false
	f.env.RegisterDelayedCallback(func() {
		st := f.status()
		require.Equal(t, wf.StatusStalled, st.Status)
		require.Equal(t, "drain", st.Stalled[0].Step)
		assert.Contains(t, st.Stalled[0].Error, "refused")
		assert.Contains(t, st.Stalled[0].Error, "min_part_hours")
		assert.Contains(t, st.Stalled[0].Error, "still mounted")
		assert.Contains(t, st.Stalled[0].Error, "resolve retry")
		assert.NotContains(t, rec.calls, "UnmountDevice")
		assert.Empty(t, rec.ops)
		stalled = true
		f.env.UpdateWorkflow(wf.UpdateResolve, "", &updateCB{t: f.t}, f.sign(wf.UpdateResolve, wf.ResolveRequest{Step: "drain", Action: wf.ResolveRetry, By: "bob"}))
	}, 45*time.Minute)
	f.approveAt(wf.GateDiskReplaced, "bob", 2*time.Hour)
	f.approveAt(wf.GateApproveRingChange, "bob", time.Minute)
	f.run(wf.SwiftDisk.Type, wf.SwiftDiskInput{Meta: wf.Meta{RequestedBy: "alice"}, Node: "storage2", Device: "sdd", DrainFirst: true})
	rep := f.result()
	require.True(t, stalled)
	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	assert.True(t, strings.HasSuffix(rep.Details["drain_run"].(string), "/drain-2"), "a new child: %v", rep.Details["drain_run"])
	require.Len(t, rec.ops, 2)
}

// Aborting the stalled drain ends the run with nothing changed.
func TestSwiftDiskDrainRefusedAbort(t *testing.T) {
	f := newFixture(t, swiftPolicy())
	rec := &swiftRec{}
	status, _ := drainRings(f, rec, 40*time.Minute)
	f.swiftMocks(rec, status)
	f.diskMocks(rec, healthy("storage2/sdd"), emptyDisk)
	f.env.RegisterDelayedCallback(func() {
		f.env.UpdateWorkflow(wf.UpdateResolve, "", &updateCB{t: f.t}, f.sign(wf.UpdateResolve, wf.ResolveRequest{Step: "drain", Action: wf.ResolveAbort, By: "bob"}))
	}, 5*time.Minute)
	f.approveAt(wf.GateApproveRingChange, "bob", time.Minute)
	f.run(wf.SwiftDisk.Type, wf.SwiftDiskInput{Meta: wf.Meta{RequestedBy: "alice"}, Node: "storage2", Device: "sdd", DrainFirst: true})
	rep := f.result()
	assert.Equal(t, wf.StatusAborted, rep.Status)
	assert.Contains(t, rep.Summary, "min_part_hours")
	assert.Empty(t, rec.ops)
	assert.NotContains(t, rec.calls, "UnmountDevice")
	assert.NotContains(t, rep.LeftState, "weight 0")
}

// With --wait-min-part-hours the drain child waits (durably) instead of refusing.
func TestSwiftDiskDrainWaitsForMinPartHours(t *testing.T) {
	f := newFixture(t, swiftPolicy())
	rec := &swiftRec{}
	status, applies := drainRings(f, rec, 40*time.Minute)
	f.swiftMocks(rec, status)
	f.diskMocks(rec, healthy("storage2/sdd"), emptyDisk)
	f.approveAt(wf.GateDiskReplaced, "bob", 2*time.Hour)
	start := f.env.Now()
	f.approveAt(wf.GateApproveRingChange, "bob", time.Minute)
	f.run(wf.SwiftDisk.Type, wf.SwiftDiskInput{Meta: wf.Meta{RequestedBy: "alice"}, Node: "storage2", Device: "sdd", DrainFirst: true, WaitMinPartHours: true})
	rep := f.result()
	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	require.Len(t, *applies, 2)
	assert.GreaterOrEqual(t, (*applies)[0].Sub(start), 40*time.Minute)
	assert.Equal(t, wf.StepDone, stepState(rep, "drain"))
}

// A restore that fails stalls the run; aborting it leaves a report that says the device is
// mounted with weight 0 and how to restore the weight.
func TestSwiftDiskRestoreFailsReportSaysHow(t *testing.T) {
	f := newFixture(t, swiftPolicy())
	rec := &swiftRec{}
	status, _ := drainRings(f, rec, 0)
	f.swiftMocks(rec, status)
	f.diskMocks(rec, healthy("storage2/sdd"), emptyDisk)
	rec.applyErr = func() error {
		if len(rec.ops) > 1 {
			return temporal.NewNonRetryableApplicationError("swift-ring-builder: builder locked", activities.ErrTypeRefused, nil)
		}
		return nil
	}
	f.approveAt(wf.GateDiskReplaced, "bob", 10*time.Minute)
	f.env.RegisterDelayedCallback(func() {
		st := f.status()
		require.Equal(t, wf.StatusStalled, st.Status)
		require.Equal(t, "restore-weight", st.Stalled[0].Step)
		assert.Contains(t, st.Stalled[0].Error, "still has weight 0")
		f.env.UpdateWorkflow(wf.UpdateResolve, "", &updateCB{t: f.t}, f.sign(wf.UpdateResolve, wf.ResolveRequest{Step: "restore-weight", Action: wf.ResolveAbort, By: "bob"}))
	}, 3*time.Hour)
	f.approveAt(wf.GateApproveRingChange, "bob", time.Minute)
	f.run(wf.SwiftDisk.Type, wf.SwiftDiskInput{Meta: wf.Meta{RequestedBy: "alice"}, Node: "storage2", Device: "sdd", DrainFirst: true})
	rep := f.result()
	assert.Equal(t, wf.StatusAborted, rep.Status)
	assert.Contains(t, rep.LeftState, "weight 0")
	assert.Contains(t, rep.LeftState, "stackrun run swift-ring --set-weight storage2/sdd=100")
	assert.NotContains(t, rep.LeftState, "unmounted", "the new disk is mounted")
	assert.NotContains(t, rec.calls, "FollowReplication storage2/sdd")
}

// --drain-first changes the rings only after a person approved the drain: while the gate waits,
// nothing is changed, and the requester may not approve it alone.
func TestSwiftDiskDrainWaitsForApproval(t *testing.T) {
	p := swiftPolicy()
	p.TwoPersonGates = append(p.TwoPersonGates, wf.GateApproveRingChange) // as config's default has it
	f := newFixture(t, p)
	rec := &swiftRec{}
	status, _ := drainRings(f, rec, 0)
	f.swiftMocks(rec, status)
	f.diskMocks(rec, healthy("storage2/sdd"), emptyDisk)
	f.env.RegisterDelayedCallback(func() {
		st := f.status()
		require.Equal(t, wf.StatusWaitingApproval, st.Status)
		require.Equal(t, wf.GateApproveRingChange, st.OpenGates[0].Name)
		require.True(t, st.OpenGates[0].Destructive)
		rec.mu.Lock()
		require.Empty(t, rec.ops, "the rings changed before the approval")
		rec.mu.Unlock()
		require.NotContains(t, rec.calls, "ApplyRingOps")
		f.update(wf.UpdateApprove, wf.GateDecisionRequest{Gate: wf.GateApproveRingChange, By: "alice"}, "may not approve the destructive gate")
		f.update(wf.UpdateReject, wf.GateDecisionRequest{Gate: wf.GateApproveRingChange, By: "bob", Comment: "not today"}, "")
	}, 3*time.Hour)
	f.run(wf.SwiftDisk.Type, wf.SwiftDiskInput{Meta: wf.Meta{RequestedBy: "alice"}, Node: "storage2", Device: "sdd", DrainFirst: true})
	rep := f.result()
	require.Equal(t, wf.StatusAborted, rep.Status)
	require.Empty(t, rec.ops)
	require.NotContains(t, rec.calls, "UnmountDevice")
}
