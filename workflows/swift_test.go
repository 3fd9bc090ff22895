package workflows_test

import (
	"context"
	"errors"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/config/policy"
	wf "github.com/stackrun/stackrun/workflows"
)

var swift *activities.Swift

func swiftCluster() activities.SwiftCluster {
	c := activities.SwiftCluster{RingBuilderHost: "controller", BuilderDir: "/etc/swift", Parallelism: 2,
		Ports: map[string]int{"account": 6202, "container": 6201, "object": 6200}, Nodes: map[string]activities.SwiftNodeInfo{
			"controller": {Name: "controller", RingIP: "10.0.0.10", SwiftDir: "/etc/swift"},
		}}
	for i, n := range []string{"storage1", "storage2", "storage3"} {
		c.Nodes[n] = activities.SwiftNodeInfo{Name: n, RingIP: "10.0.0.2" + string(rune('1'+i)), SwiftDir: "/etc/swift", DevicesDir: "/srv/node",
			Region: 1, Zone: i + 1, Weight: 100, Devices: map[string]string{"sd" + string(rune('b'+2*i)): "", "sd" + string(rune('c'+2*i)): ""}}
	}
	return c
}

// ringStatus is three rings of 3 replicas over the devices of swiftCluster (all weight 100).
func ringStatus(remaining time.Duration, without ...string) activities.RingStatus {
	var st activities.RingStatus
	for _, kind := range activities.RingKinds {
		ri := activities.RingInfo{Kind: kind, Builder: "/etc/swift/" + kind + ".builder", Partitions: 256, Replicas: 3, MinPartHours: 1,
			Remaining: remaining, RingFile: "up-to-date"}
		id := 0
		for i, n := range []string{"storage1", "storage2", "storage3"} {
			for _, d := range []string{"sd" + string(rune('b'+2*i)), "sd" + string(rune('c'+2*i))} {
				skip := false
				for _, w := range without {
					skip = skip || w == n
				}
				if !skip {
					ri.Devices = append(ri.Devices, activities.RingDevice{ID: id, Region: 1, Zone: i + 1, IP: "10.0.0.2" + string(rune('1'+i)), Name: d, Weight: 100, Partitions: 128})
				}
				id++
			}
		}
		st.Rings = append(st.Rings, ri)
	}
	return st
}

var ringFiles = []activities.RingFile{{Name: "account.ring.gz", MD5: "a1"}, {Name: "container.ring.gz", MD5: "c1"}, {Name: "object.ring.gz", MD5: "o1"}}

type swiftRec struct {
	onApply  func()
	applyErr func() error
	sums     func(activities.PushRingsRequest) activities.RingSumsResult
	mu       sync.Mutex
	ops      [][]activities.RingOp
	pushed   []string
	calls    []string
	repl     []activities.ReplicationRequest
}

func (r *swiftRec) add(s string) { r.mu.Lock(); r.calls = append(r.calls, s); r.mu.Unlock() }

// swiftMocks mocks the ring side of the Swift activities; status answers RingStatus.
func (f *fixture) swiftMocks(rec *swiftRec, status func() activities.RingStatus) {
	f.env.RegisterActivity(swift)
	f.env.RegisterWorkflow(wf.SwiftRingChange) // the child of swift-disk --drain-first
	// Grants go to the requesting run by ID: a child swift-ring run takes the ring lock too.
	f.env.OnActivity(lease.RequestLease, mock.Anything, mock.Anything).Return(func(_ context.Context, req activities.LeaseRequest) error {
		f.env.RegisterDelayedCallback(func() {
			if err := f.env.SignalWorkflowByID(req.WorkflowID, wf.SignalLeaseGranted, activities.LeaseHolder{WorkflowID: req.WorkflowID, Host: req.Host}); err != nil {
				f.t.Errorf("lease grant to %s: %v", req.WorkflowID, err)
			}
		}, time.Second)
		return nil
	})
	f.env.OnActivity(lease.ReleaseLease, mock.Anything, mock.Anything).Return(nil)
	f.env.OnActivity(swift.SwiftTopology, mock.Anything).Return(swiftCluster(), nil)
	f.env.OnActivity(swift.RingStatus, mock.Anything).Return(func(context.Context) (activities.RingStatus, error) {
		rec.add("RingStatus")
		return status(), nil
	})
	f.env.OnActivity(swift.BackupBuilders, mock.Anything, mock.Anything).Return(activities.BackupResult{Dir: "/etc/swift/backups/x"}, nil)
	f.env.OnActivity(swift.ApplyRingOps, mock.Anything, mock.Anything).Return(func(_ context.Context, ops []activities.RingOp) (activities.RingOpsResult, error) {
		rec.mu.Lock()
		rec.ops = append(rec.ops, ops)
		rec.mu.Unlock()
		rec.add("ApplyRingOps")
		if rec.applyErr != nil {
			if err := rec.applyErr(); err != nil {
				return activities.RingOpsResult{}, err
			}
		}
		if rec.onApply != nil {
			rec.onApply()
		}
		return activities.RingOpsResult{Applied: []string{"x"}}, nil
	})
	f.env.OnActivity(swift.Rebalance, mock.Anything, mock.Anything).Return(func(_ context.Context, kind string) (activities.RebalanceResult, error) {
		rec.add("Rebalance/" + kind)
		if kind == "object" {
			return activities.RebalanceResult{Kind: kind, ExitCode: 1, Warning: "balance not reached"}, nil
		}
		return activities.RebalanceResult{Kind: kind}, nil
	})
	f.env.OnActivity(swift.ValidateRing, mock.Anything, mock.Anything).Return(func(_ context.Context, kind string) (activities.RingCheck, error) {
		return activities.RingCheck{Kind: kind, Valid: true, Balance: 1.5, Dispersion: 0}, nil
	})
	f.env.OnActivity(swift.BuilderRingFiles, mock.Anything).Return(ringFiles, nil)
	f.env.OnActivity(swift.PushRings, mock.Anything, mock.Anything).Return(func(_ context.Context, req activities.PushRingsRequest) (activities.PushRingsResult, error) {
		rec.mu.Lock()
		rec.pushed = append(rec.pushed, req.Node)
		rec.mu.Unlock()
		return activities.PushRingsResult{Node: req.Node, Copied: []string{"object.ring.gz"}}, nil
	})
	f.env.OnActivity(swift.RingSums, mock.Anything, mock.Anything).Return(func(_ context.Context, req activities.PushRingsRequest) (activities.RingSumsResult, error) {
		if rec.sums != nil {
			return rec.sums(req), nil
		}
		return activities.RingSumsResult{Node: req.Node}, nil
	})
}

func (f *fixture) approveAt(gate, by string, after time.Duration) {
	f.env.RegisterDelayedCallback(func() {
		f.env.UpdateWorkflow(wf.UpdateApprove, "", &updateCB{t: f.t}, wf.GateDecisionRequest{Gate: gate, By: by})
	}, after)
}

type updateCB struct{ t *testing.T }

func (u *updateCB) Accept()             {}
func (u *updateCB) Reject(err error)    { u.t.Errorf("update rejected: %v", err) }
func (u *updateCB) Complete(any, error) {}

func (f *fixture) result() *wf.Report {
	f.t.Helper()
	require.True(f.t, f.env.IsWorkflowCompleted())
	require.NoError(f.t, f.env.GetWorkflowError())
	var rep wf.Report
	require.NoError(f.t, f.env.GetWorkflowResult(&rep))
	return &rep
}

func swiftPolicy() policy.Policy {
	p := basePolicy()
	p.TwoPersonGates = []string{wf.GateDiskReplaced}
	return p
}

func TestSwiftRingRemoveNode(t *testing.T) {
	f := newFixture(t, swiftPolicy())
	rec := &swiftRec{}
	f.swiftMocks(rec, func() activities.RingStatus { return ringStatus(0) })
	f.approveAt(wf.GateApproveRingChange, "bob", time.Minute)
	f.env.ExecuteWorkflow(wf.SwiftRingChange, wf.SwiftRingChangeInput{Meta: wf.Meta{RequestedBy: "alice"}, Remove: []string{"storage3"}})
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

func stepDetail(rep *wf.Report, name string) string {
	for _, s := range rep.Steps {
		if s.Name == name {
			return s.Detail
		}
	}
	return "<no step " + name + ">"
}

func TestSwiftRingRefusedInsideMinPartHours(t *testing.T) {
	f := newFixture(t, swiftPolicy())
	rec := &swiftRec{}
	f.swiftMocks(rec, func() activities.RingStatus { return ringStatus(40 * time.Minute) })
	f.env.ExecuteWorkflow(wf.SwiftRingChange, wf.SwiftRingChangeInput{Meta: wf.Meta{RequestedBy: "alice"}, SetWeight: []string{"storage2/sdd=50"}})
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
	f.env.ExecuteWorkflow(wf.SwiftRingChange, wf.SwiftRingChangeInput{Meta: wf.Meta{RequestedBy: "alice"}, SetWeight: []string{"storage2/sdd=50"}, Wait: true})
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
	f.env.ExecuteWorkflow(wf.SwiftRingChange, wf.SwiftRingChangeInput{Meta: wf.Meta{RequestedBy: "alice"}, SetWeight: []string{"storage2/sdd=0"}, Steps: 4})
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
	f.env.ExecuteWorkflow(wf.SwiftRingChange, wf.SwiftRingChangeInput{Meta: wf.Meta{RequestedBy: "alice"}, Distribute: true})
	rep := f.result()
	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	assert.Empty(t, rec.ops, "distribute changes no builder (and is allowed inside min_part_hours)")
	assert.Equal(t, 5, len(rec.pushed), "4 nodes, then storage1 again after the mismatch")
}

func TestSwiftRingInvalidTargetsNeverConnect(t *testing.T) {
	for _, in := range []wf.SwiftRingChangeInput{
		{Remove: []string{"storage9"}},
		{Remove: []string{"storage1/sdz"}},
		{Add: []string{"controller"}},
	} {
		f := newFixture(t, swiftPolicy())
		rec := &swiftRec{}
		f.swiftMocks(rec, func() activities.RingStatus { t.Error("rings read"); return ringStatus(0) })
		in.Meta = wf.Meta{RequestedBy: "alice"}
		f.env.ExecuteWorkflow(wf.SwiftRingChange, in)
		rep := f.result()
		assert.Equal(t, wf.StatusFailed, rep.Status, "%+v", in)
		assert.Contains(t, rep.Summary, "invalid input")
	}
}

func TestSwiftInputValidation(t *testing.T) {
	m := wf.Meta{RequestedBy: "alice"}
	bad := []wf.Input{
		&wf.SwiftDiskReplacementInput{Meta: m, Node: "storage2", Device: "sdb;reboot"},
		&wf.SwiftDiskReplacementInput{Meta: m, Node: "storage2", Device: "../../etc"},
		&wf.SwiftDiskReplacementInput{Meta: m, Node: "storage2", Device: "/dev/sda"},
		&wf.SwiftDiskReplacementInput{Meta: m, Node: "storage2", Device: "sdb "},
		&wf.SwiftDiskReplacementInput{Meta: m, Node: "../x", Device: "sdb"},
		&wf.SwiftDiskReplacementInput{Meta: m, Node: "storage2"},
		&wf.SwiftRingChangeInput{Meta: m},
		&wf.SwiftRingChangeInput{Meta: m, Remove: []string{"storage3/$(reboot)"}},
		&wf.SwiftRingChangeInput{Meta: m, Remove: []string{"storage3=5"}},
		&wf.SwiftRingChangeInput{Meta: m, SetWeight: []string{"storage3"}},
		&wf.SwiftRingChangeInput{Meta: m, SetWeight: []string{"storage3=-1"}},
		&wf.SwiftRingChangeInput{Meta: m, Add: []string{"storage3"}, Remove: []string{"storage3"}},
		&wf.SwiftRingChangeInput{Meta: m, Add: []string{"storage3"}, Distribute: true},
		&wf.SwiftRingChangeInput{Meta: m, Add: []string{"storage3"}, Steps: 1000},
	}
	for _, in := range bad {
		assert.Error(t, in.Validate(), "%+v", in)
	}
	good := []wf.Input{
		&wf.SwiftDiskReplacementInput{Meta: m, Node: "storage2", Device: "sdd"},
		&wf.SwiftRingChangeInput{Meta: m, Remove: []string{"storage3"}},
		&wf.SwiftRingChangeInput{Meta: m, Add: []string{"storage3/sdf=50", "storage4"}, Steps: 3},
		&wf.SwiftRingChangeInput{Meta: m, Distribute: true},
	}
	for _, in := range good {
		assert.NoError(t, in.Validate(), "%+v", in)
	}
	assert.Equal(t, "swift-disk/storage2/sdd", good[0].WorkflowID())
}

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
		f.env.UpdateWorkflow(wf.UpdateApprove, "", &refusedCB{t: f.t}, wf.GateDecisionRequest{Gate: wf.GateDiskReplaced, By: "alice"})
	}, time.Minute)
	f.approveAt(wf.GateDiskReplaced, "bob", 2*time.Minute)
	f.env.ExecuteWorkflow(wf.SwiftDiskReplacement, wf.SwiftDiskReplacementInput{Meta: wf.Meta{RequestedBy: "alice"}, Node: "storage2", Device: "sdd"})
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

type refusedCB struct{ t *testing.T }

func (u *refusedCB) Accept()             { u.t.Error("the requester's approval of a two-person gate was accepted") }
func (u *refusedCB) Reject(err error)    {}
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

func TestSwiftDiskOverwriteNeedsGate(t *testing.T) {
	f := newFixture(t, swiftPolicy())
	rec := &swiftRec{}
	f.swiftMocks(rec, func() activities.RingStatus { return ringStatus(0) })
	withFS := emptyDisk
	withFS.FSType, withFS.UUID, withFS.Label = "ext4", "old-uuid", "data"
	f.diskMocks(rec, healthy("storage2/sdd"), withFS)
	f.approveAt(wf.GateDiskReplaced, "bob", time.Minute)
	f.approveAt(wf.GateOverwriteDisk, "bob", 2*time.Minute)
	f.env.ExecuteWorkflow(wf.SwiftDiskReplacement, wf.SwiftDiskReplacementInput{Meta: wf.Meta{RequestedBy: "alice"}, Node: "storage2", Device: "sdd"})
	rep := f.result()
	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	assert.Contains(t, rec.calls, "FormatDisk overwrite=yes prev=old-uuid")
}

func TestSwiftDiskRefusesLastCopy(t *testing.T) {
	f := newFixture(t, swiftPolicy())
	rec := &swiftRec{}
	f.swiftMocks(rec, func() activities.RingStatus { return ringStatus(0) })
	// sdd (zone 2) and two more devices in zones 1 and 3 are down: with 3 replicas some
	// partition of sdd may have no other copy.
	f.diskMocks(rec, healthy("storage2/sdd", "storage1/sdb", "storage3/sdf"), emptyDisk)
	f.env.ExecuteWorkflow(wf.SwiftDiskReplacement, wf.SwiftDiskReplacementInput{Meta: wf.Meta{RequestedBy: "alice"}, Node: "storage2", Device: "sdd"})
	rep := f.result()
	require.Equal(t, wf.StatusFailed, rep.Status)
	assert.Contains(t, stepDetailErr(rep, "check-replicas"), "last copy")
	assert.NotContains(t, rec.calls, "UnmountDevice")
}

func stepDetailErr(rep *wf.Report, name string) string {
	for _, s := range rep.Steps {
		if s.Name == name {
			return s.Error
		}
	}
	return ""
}

func TestSwiftDiskUnknownDeviceNeverConnects(t *testing.T) {
	for _, in := range []wf.SwiftDiskReplacementInput{{Node: "storage9", Device: "sdd"}, {Node: "storage1", Device: "sdd"}, {Node: "controller", Device: "sdb"}} {
		f := newFixture(t, swiftPolicy())
		rec := &swiftRec{}
		f.swiftMocks(rec, func() activities.RingStatus { t.Error("rings read"); return ringStatus(0) })
		f.diskMocks(rec, healthy(), emptyDisk)
		in.Meta = wf.Meta{RequestedBy: "alice"}
		f.env.ExecuteWorkflow(wf.SwiftDiskReplacement, in)
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
		f.env.UpdateWorkflow(wf.UpdateResolve, "", &updateCB{t: f.t}, wf.ResolveRequest{Step: "inspect-new-disk", Action: wf.ResolveAbort, By: "bob"})
	}, time.Hour)
	f.env.ExecuteWorkflow(wf.SwiftDiskReplacement, wf.SwiftDiskReplacementInput{Meta: wf.Meta{RequestedBy: "alice"}, Node: "storage2", Device: "sdd"})
	rep := f.result()
	assert.Equal(t, wf.StatusAborted, rep.Status)
	assert.Contains(t, rep.LeftState, "unmounted")
	assert.NotContains(t, strings.Join(rec.calls, ","), "FormatDisk")
}

var _ = errors.New
var _ = temporal.NewNonRetryableApplicationError

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

func opWords(ops []activities.RingOp) []string {
	var out []string
	for _, op := range ops {
		out = append(out, op.Kind+" "+op.Action+" "+op.IP+"/"+op.Device+" "+activities.FormatWeight(op.Weight))
	}
	return out
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
	f.env.ExecuteWorkflow(wf.SwiftDiskReplacement, wf.SwiftDiskReplacementInput{Meta: wf.Meta{RequestedBy: "alice"}, Node: "storage2", Device: "sdd", DrainFirst: true})
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

func stepState(rep *wf.Report, name string) wf.StepState {
	for _, s := range rep.Steps {
		if s.Name == name {
			return s.State
		}
	}
	return ""
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
		f.env.UpdateWorkflow(wf.UpdateResolve, "", &updateCB{t: f.t}, wf.ResolveRequest{Step: "drain", Action: wf.ResolveRetry, By: "bob"})
	}, 45*time.Minute)
	f.approveAt(wf.GateDiskReplaced, "bob", 2*time.Hour)
	f.env.ExecuteWorkflow(wf.SwiftDiskReplacement, wf.SwiftDiskReplacementInput{Meta: wf.Meta{RequestedBy: "alice"}, Node: "storage2", Device: "sdd", DrainFirst: true})
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
		f.env.UpdateWorkflow(wf.UpdateResolve, "", &updateCB{t: f.t}, wf.ResolveRequest{Step: "drain", Action: wf.ResolveAbort, By: "bob"})
	}, 5*time.Minute)
	f.env.ExecuteWorkflow(wf.SwiftDiskReplacement, wf.SwiftDiskReplacementInput{Meta: wf.Meta{RequestedBy: "alice"}, Node: "storage2", Device: "sdd", DrainFirst: true})
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
	f.env.ExecuteWorkflow(wf.SwiftDiskReplacement, wf.SwiftDiskReplacementInput{Meta: wf.Meta{RequestedBy: "alice"}, Node: "storage2", Device: "sdd", DrainFirst: true, WaitMinPartHours: true})
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
			return temporal.NewNonRetryableApplicationError("swift-ring-builder: builder locked", wf.ErrTypeRefused, nil)
		}
		return nil
	}
	f.approveAt(wf.GateDiskReplaced, "bob", 10*time.Minute)
	f.env.RegisterDelayedCallback(func() {
		st := f.status()
		require.Equal(t, wf.StatusStalled, st.Status)
		require.Equal(t, "restore-weight", st.Stalled[0].Step)
		assert.Contains(t, st.Stalled[0].Error, "still has weight 0")
		f.env.UpdateWorkflow(wf.UpdateResolve, "", &updateCB{t: f.t}, wf.ResolveRequest{Step: "restore-weight", Action: wf.ResolveAbort, By: "bob"})
	}, 3*time.Hour)
	f.env.ExecuteWorkflow(wf.SwiftDiskReplacement, wf.SwiftDiskReplacementInput{Meta: wf.Meta{RequestedBy: "alice"}, Node: "storage2", Device: "sdd", DrainFirst: true})
	rep := f.result()
	assert.Equal(t, wf.StatusAborted, rep.Status)
	assert.Contains(t, rep.LeftState, "weight 0")
	assert.Contains(t, rep.LeftState, "stackrun run swift-ring --set-weight storage2/sdd=100")
	assert.NotContains(t, rep.LeftState, "unmounted", "the new disk is mounted")
	assert.NotContains(t, rec.calls, "FollowReplication storage2/sdd")
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
	f.env.ExecuteWorkflow(wf.SwiftRingChange, wf.SwiftRingChangeInput{Meta: wf.Meta{RequestedBy: "alice"}, SetWeight: []string{"storage2/sdd=50"}, Wait: true})
	rep := f.result()
	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	assert.GreaterOrEqual(t, applied.Sub(start), 20*time.Minute, "never before the builder allows it")
	assert.LessOrEqual(t, applied.Sub(start), 26*time.Minute, "noticed within one recheck (5 min by default), not after the 51 min timer")
}
