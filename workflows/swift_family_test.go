package workflows_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"

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
	maxStep  float64 // swift.max_step_percent
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
	// Grants go to the requesting run by ID: a child swift-ring run takes the ring lock too.
	f.env.OnActivity(lease.RequestLease, mock.Anything, mock.Anything).Return(func(_ context.Context, req activities.LeaseRequest) error {
		f.grant(req)
		f.env.RegisterDelayedCallback(func() {
			if err := f.env.SignalWorkflowByID(req.WorkflowID, wf.SignalLeaseGranted, activities.LeaseHolder{WorkflowID: req.WorkflowID, RunID: req.RunID, Host: req.Host}); err != nil {
				f.t.Errorf("lease grant to %s: %v", req.WorkflowID, err)
			}
		}, time.Second)
		return nil
	})
	f.env.OnActivity(lease.ReleaseLease, mock.Anything, mock.Anything).Return(nil)
	f.answerHolds()
	f.env.OnActivity(swift.SwiftTopology, mock.Anything).Return(func(context.Context) (activities.SwiftCluster, error) {
		c := swiftCluster()
		c.MaxStepPercent = rec.maxStep
		return c, nil
	})
	f.env.OnActivity(swift.RingStatus, mock.Anything).Return(func(context.Context) (activities.RingStatus, error) {
		rec.add("RingStatus")
		return status(), nil
	})
	// AwaitMinPartHours waits on the test clock as the real one polls: one re-read interval (5
	// min by default) or until min_part_hours has passed, then answers the builders' status.
	f.env.OnActivity(swift.AwaitMinPartHours, mock.Anything, mock.Anything).AfterFn(func() time.Duration {
		return min(status().MaxRemaining(), 5*time.Minute)
	}).Return(func(context.Context, activities.MinPartHoursRequest) (activities.RingStatus, error) {
		rec.add("AwaitMinPartHours")
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

func swiftPolicy() policy.Policy {
	p := basePolicy()
	p.TwoPersonGates = []string{wf.GateDiskReplaced}
	return p
}

func TestSwiftInputValidation(t *testing.T) {
	m := wf.Meta{RequestedBy: "alice"}
	bad := []wf.Input{
		&wf.SwiftDiskInput{Meta: m, Node: "storage2", Device: "sdb;reboot"},
		&wf.SwiftDiskInput{Meta: m, Node: "storage2", Device: "../../etc"},
		&wf.SwiftDiskInput{Meta: m, Node: "storage2", Device: "/dev/sda"},
		&wf.SwiftDiskInput{Meta: m, Node: "storage2", Device: "sdb "},
		&wf.SwiftDiskInput{Meta: m, Node: "../x", Device: "sdb"},
		&wf.SwiftDiskInput{Meta: m, Node: "storage2"},
		&wf.SwiftRingInput{Meta: m},
		&wf.SwiftRingInput{Meta: m, Remove: []string{"storage3/$(reboot)"}},
		&wf.SwiftRingInput{Meta: m, Remove: []string{"storage3=5"}},
		&wf.SwiftRingInput{Meta: m, SetWeight: []string{"storage3"}},
		&wf.SwiftRingInput{Meta: m, SetWeight: []string{"storage3=-1"}},
		&wf.SwiftRingInput{Meta: m, Add: []string{"storage3"}, Remove: []string{"storage3"}},
		&wf.SwiftRingInput{Meta: m, Add: []string{"storage3"}, Distribute: true},
		&wf.SwiftRingInput{Meta: m, Add: []string{"storage3"}, Steps: 1000},
	}
	for _, in := range bad {
		assert.Error(t, in.Validate(), "%+v", in)
	}
	good := []wf.Input{
		&wf.SwiftDiskInput{Meta: m, Node: "storage2", Device: "sdd"},
		&wf.SwiftRingInput{Meta: m, Remove: []string{"storage3"}},
		&wf.SwiftRingInput{Meta: m, Add: []string{"storage3/sdf=50", "storage4"}, Steps: 3},
		&wf.SwiftRingInput{Meta: m, Distribute: true},
	}
	for _, in := range good {
		assert.NoError(t, in.Validate(), "%+v", in)
	}
	assert.Equal(t, "swift-disk/storage2/sdd", wf.SwiftDisk.WorkflowID(good[0]))
}

func opWords(ops []activities.RingOp) []string {
	var out []string
	for _, op := range ops {
		out = append(out, op.Kind+" "+op.Action+" "+op.IP+"/"+op.Device+" "+activities.FormatWeight(op.Weight))
	}
	return out
}
