package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/worker"

	"github.com/stackrun/stackrun/activities"
)

// mockSwift stands for activities.Swift: a cluster of three storage nodes (named after the run's
// host: HOST-s1..3, two devices each) and the ring builder host HOST-ctl. The world holds each
// device's weight per ring, whether a ring's builder has changes not yet rebalanced, the ring
// files' version, what each node was pushed, the target device's mount and file system, and the
// builder backups. Effects: ring ops, rebalances, backups, pushes, unmounts, mkfs (by UUID),
// mounts. Restarts are stop-and-start by nature (the real RestartSwift restarts unconditionally):
// they are logged apart, in restarts.log, and not counted as side effects.
type mockSwift struct {
	st   *Store
	host string
}

func registerSwift(w worker.Worker, st *Store, host string) {
	s := &mockSwift{st: st, host: host}
	reg := func(name string, fn any) { w.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: name}) }
	reg("SwiftTopology", s.SwiftTopology)
	reg("RingStatus", s.RingStatus)
	reg("DeviceHealth", s.DeviceHealth)
	reg("RestartSwift", s.RestartSwift)
	reg("UnmountDevice", s.UnmountDevice)
	reg("InspectDisk", s.InspectDisk)
	reg("FormatDisk", s.FormatDisk)
	reg("MountDisk", s.MountDisk)
	reg("FollowReplication", s.FollowReplication)
	reg("BackupBuilders", s.BackupBuilders)
	reg("ApplyRingOps", s.ApplyRingOps)
	reg("Rebalance", s.Rebalance)
	reg("ValidateRing", s.ValidateRing)
	reg("BuilderRingFiles", s.BuilderRingFiles)
	reg("PushRings", s.PushRings)
	reg("RingSums", s.RingSums)
}

// nodes are HOST-s1..3, or HOST-s1..N with CRASH_SCALE=N (history_test.go's largest ring).
func (s *mockSwift) nodes() []string {
	out := make([]string, max(scale, 3))
	for i := range out {
		out[i] = fmt.Sprintf("%s-s%d", s.host, i+1)
	}
	return out
}

// devicesOf names node i's two devices: sdb/sdc, sdd/sde, sdf/sdg, again from sdb on the 4th
// node of a scaled cluster (zone i%3+1).
func devicesOf(i int) []string {
	i %= 3
	return []string{"sd" + string(rune('b'+2*i)), "sd" + string(rune('c'+2*i))}
}

func (s *mockSwift) SwiftTopology(ctx context.Context) (activities.SwiftCluster, error) {
	time.Sleep(work)
	ctl := s.host + "-ctl"
	c := activities.SwiftCluster{RingBuilderHost: ctl, BuilderDir: "/etc/swift", Parallelism: 2,
		Ports: map[string]int{"account": 6202, "container": 6201, "object": 6200},
		Nodes: map[string]activities.SwiftNodeInfo{ctl: {Name: ctl, RingIP: "10.0.0.10", SwiftDir: "/etc/swift"}}}
	for i, n := range s.nodes() {
		devs := map[string]string{}
		for _, d := range devicesOf(i) {
			devs[d] = "/dev/" + d
		}
		c.Nodes[n] = activities.SwiftNodeInfo{Name: n, RingIP: ringIP(i), SwiftDir: "/etc/swift", DevicesDir: "/srv/node",
			Region: 1, Zone: i%3 + 1, Weight: 100, Devices: devs}
	}
	return c, nil
}

func (s *mockSwift) weight(kind, node, dev string) float64 {
	if v := s.st.Get("weight/" + kind + "/" + node + "/" + dev); v != "" {
		w, _ := strconv.ParseFloat(v, 64)
		return w
	}
	return 100
}

func (s *mockSwift) ring(kind string) activities.RingInfo {
	ri := activities.RingInfo{Kind: kind, Builder: "/etc/swift/" + kind + ".builder", Partitions: 256, Replicas: 3, Zones: 3, DeviceCount: 2 * len(s.nodes()),
		MinPartHours: 1, RingFile: "up-to-date"}
	if s.st.Get("dirty/"+kind) == "yes" {
		ri.RingFile = "older than the builder"
	}
	id := 0
	for i, n := range s.nodes() {
		for _, d := range devicesOf(i) {
			ri.Devices = append(ri.Devices, activities.RingDevice{ID: id, Region: 1, Zone: i%3 + 1, IP: ringIP(i),
				Port: 6200, Name: d, Weight: s.weight(kind, n, d), Partitions: 128})
			id++
		}
	}
	return ri
}

func (s *mockSwift) RingStatus(ctx context.Context) (activities.RingStatus, error) {
	time.Sleep(work)
	var st activities.RingStatus
	for _, k := range activities.RingKinds {
		st.Rings = append(st.Rings, s.ring(k))
	}
	return st, nil
}

// The replaced device is HOST-s2/sdd: failed until a new file system is mounted on it.
func (s *mockSwift) target() string { return s.host + "-s2/sdd" }

func (s *mockSwift) DeviceHealth(ctx context.Context, node string) ([]activities.DeviceState, error) {
	time.Sleep(work)
	var out []activities.DeviceState
	for i, n := range s.nodes() {
		if n != node {
			continue
		}
		for _, d := range devicesOf(i) {
			st := activities.DeviceState{Node: n, Device: d, MountPoint: "/srv/node/" + d, Mounted: true, Healthy: true}
			if n+"/"+d == s.target() {
				st.Mounted = s.st.Get("mount/"+n+"/"+d) != "unmounted"
				st.Healthy = s.st.Get("mount/"+n+"/"+d) == "mounted"
				if !st.Healthy {
					st.Detail = "Input/output error"
				}
			}
			out = append(out, st)
		}
	}
	return out, nil
}

func (s *mockSwift) RestartSwift(ctx context.Context, node string) error {
	time.Sleep(work)
	s.st.Append("restarts.log", "restart swift on "+node)
	return nil
}

func (s *mockSwift) UnmountDevice(ctx context.Context, req activities.DiskRequest) (activities.UnmountResult, error) {
	time.Sleep(work)
	key := "mount/" + req.Node + "/" + req.Device
	if s.st.Get(key) == "unmounted" {
		return activities.UnmountResult{}, nil
	}
	s.st.Act(key, "unmounted", "umount "+req.Node+"/"+req.Device)
	return activities.UnmountResult{WasMounted: true, Detail: "unmounted"}, nil
}

// InspectDisk: the new disk is blank until mkfs gives it a file system.
func (s *mockSwift) InspectDisk(ctx context.Context, req activities.DiskRequest) (activities.DiskFacts, error) {
	time.Sleep(work)
	f := activities.DiskFacts{Path: "/dev/" + req.Device, Resolved: "/dev/loop9", Exists: true, Size: 512 << 20,
		Mounted: s.st.Get("mount/"+req.Node+"/"+req.Device) == "mounted"}
	if uuid := s.st.Get("fs/" + req.Node + "/" + req.Device); uuid != "" {
		f.FSType, f.UUID, f.Label = "xfs", uuid, req.Device
	}
	return f, nil
}

// FormatDisk makes a file system unless the disk already holds the one this run made (as the
// real one: XFS, the device's label, a UUID other than the old disk's). Each mkfs gives a new
// UUID: fs-1, fs-2...; a second mkfs is a second UUID in the effects.
func (s *mockSwift) FormatDisk(ctx context.Context, req activities.FormatRequest) (activities.FormatResult, error) {
	time.Sleep(work)
	key := "fs/" + req.Node + "/" + req.Device
	if uuid := s.st.Get(key); uuid != "" && uuid != req.PreviousUUID {
		return activities.FormatResult{UUID: uuid, Label: req.Device}, nil
	}
	n, _ := strconv.Atoi(s.st.Get("mkfs-count"))
	uuid := fmt.Sprintf("fs-%d", n+1)
	s.st.Act("mkfs-count", strconv.Itoa(n+1), "")
	s.st.Act(key, uuid, "mkfs "+req.Node+"/"+req.Device+" uuid "+uuid)
	return activities.FormatResult{Formatted: true, UUID: uuid, Label: req.Device}, nil
}

func (s *mockSwift) MountDisk(ctx context.Context, req activities.DiskRequest) (activities.MountResult, error) {
	time.Sleep(work)
	acted := s.st.Act("mount/"+req.Node+"/"+req.Device, "mounted", "mount "+req.Node+"/"+req.Device)
	return activities.MountResult{MountPoint: "/srv/node/" + req.Device, Source: "/dev/" + req.Device, Owner: "swift:swift", Already: !acted, UsedBytes: 29 << 20}, nil
}

func (s *mockSwift) FollowReplication(ctx context.Context, req activities.ReplicationRequest) (activities.ReplicationResult, error) {
	time.Sleep(work)
	if req.Device != nil {
		return activities.ReplicationResult{Settled: true, Polls: 1, DeviceBytes: 12 << 20, Detail: "the device holds its share"}, nil
	}
	return activities.ReplicationResult{Settled: true, Polls: 1, Detail: "settled"}, nil
}

// BackupBuilders copies the builders once per backup name (the real one finds its directory).
func (s *mockSwift) BackupBuilders(ctx context.Context, req activities.BackupRequest) (activities.BackupResult, error) {
	time.Sleep(work)
	s.st.Act("backup/"+req.Name, "done", "backup builders")
	return activities.BackupResult{Dir: "/etc/swift/backups/" + req.Name, Files: []string{"account.builder", "container.builder", "object.builder"}}, nil
}

// ApplyRingOps applies the ops not yet in effect (the real one reads the builder first).
func (s *mockSwift) ApplyRingOps(ctx context.Context, ops []activities.RingOp) (activities.RingOpsResult, error) {
	time.Sleep(work)
	var res activities.RingOpsResult
	for _, op := range ops {
		what := fmt.Sprintf("%s %s %s/%s %s", op.Kind, op.Action, op.Node, op.Device, activities.FormatWeight(op.Weight))
		if op.Action != "set_weight" {
			return res, fmt.Errorf("mock: only set_weight: %s", what)
		}
		if s.weight(op.Kind, op.Node, op.Device) == op.Weight {
			res.Already = append(res.Already, what)
			continue
		}
		s.st.Act("weight/"+op.Kind+"/"+op.Node+"/"+op.Device, activities.FormatWeight(op.Weight), "ring op "+what)
		s.st.Act("dirty/"+op.Kind, "yes", "")
		res.Applied = append(res.Applied, what)
	}
	return res, nil
}

// Rebalance rebalances a builder with changes (the real one: a ring file older than its builder).
func (s *mockSwift) Rebalance(ctx context.Context, kind string) (activities.RebalanceResult, error) {
	time.Sleep(work)
	if s.st.Get("dirty/"+kind) != "yes" {
		return activities.RebalanceResult{Kind: kind, Already: true}, nil
	}
	v, _ := strconv.Atoi(s.st.Get("version/" + kind))
	s.st.Act("version/"+kind, strconv.Itoa(v+1), "rebalance "+kind)
	s.st.Act("dirty/"+kind, "no", "")
	return activities.RebalanceResult{Kind: kind}, nil
}

func (s *mockSwift) ValidateRing(ctx context.Context, kind string) (activities.RingCheck, error) {
	time.Sleep(work)
	return activities.RingCheck{Kind: kind, Valid: true, Balance: 0.5}, nil
}

func (s *mockSwift) files() []activities.RingFile {
	var out []activities.RingFile
	for _, k := range activities.RingKinds {
		out = append(out, activities.RingFile{Name: k + ".ring.gz", MD5: k + "-v" + s.st.Get("version/"+k), Size: 1024})
	}
	return out
}

func (s *mockSwift) BuilderRingFiles(ctx context.Context) ([]activities.RingFile, error) {
	time.Sleep(work)
	return s.files(), nil
}

// PushRings copies the files whose checksum differs on the node (as the real one).
func (s *mockSwift) PushRings(ctx context.Context, req activities.PushRingsRequest) (activities.PushRingsResult, error) {
	time.Sleep(work)
	res := activities.PushRingsResult{Node: req.Node}
	for _, f := range req.Files {
		if s.st.Act("pushed/"+req.Node+"/"+f.Name, f.MD5, "push "+f.Name+" "+f.MD5+" to "+req.Node) {
			res.Copied = append(res.Copied, f.Name)
		} else {
			res.Unchanged = append(res.Unchanged, f.Name)
		}
	}
	return res, nil
}

// RingSums: what the node holds; a node never pushed holds the original files (version "").
func (s *mockSwift) RingSums(ctx context.Context, req activities.PushRingsRequest) (activities.RingSumsResult, error) {
	time.Sleep(work)
	res := activities.RingSumsResult{Node: req.Node, Sums: map[string]string{}}
	for _, f := range req.Files {
		got := s.st.Get("pushed/" + req.Node + "/" + f.Name)
		if got == "" {
			got = f.Name[:len(f.Name)-len(".ring.gz")] + "-v"
		}
		res.Sums[f.Name] = got
		if got != f.MD5 {
			res.Mismatch = append(res.Mismatch, f.Name)
		}
	}
	return res, nil
}

func ringIP(i int) string { return fmt.Sprintf("10.0.%d.%d", 2+i/200, 21+i%200) }
