package activities_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/internal/infra/remote"
)

const mib = 1 << 20

func TestRefillShare(t *testing.T) {
	base := int64(29 * mib)
	size := int64(448 * mib)
	other := func(used int64, w float64) activities.DeviceUsage {
		return activities.DeviceUsage{Mounted: true, Size: size, Used: base + used, Weight: w}
	}
	// Five devices of weight 100 hold 10 MiB each: the new one (weight 100) is owed 10 MiB.
	others := []activities.DeviceUsage{other(10*mib, 100), other(10*mib, 100), other(10*mib, 100), other(10*mib, 100), other(10*mib, 100)}
	sh := activities.RefillShare(activities.DeviceUsage{Mounted: true, Size: size, Used: base + 4*mib, Weight: 100}, base, others)
	assert.Equal(t, int64(4*mib), sh.Have, "the empty file system's metadata is not data")
	assert.InDelta(t, 10*mib, sh.Expected, 1)
	assert.Equal(t, 5, sh.Counted)

	// A fresh file system holds nothing, however large its metadata.
	sh = activities.RefillShare(activities.DeviceUsage{Mounted: true, Size: size, Used: base, Weight: 100}, base, others)
	assert.Zero(t, sh.Have)

	// Weighted: a device of weight 50 is owed half; unmounted and weight-0 devices do not count;
	// a larger disk's metadata is scaled by its size.
	mixed := []activities.DeviceUsage{
		other(10*mib, 100),
		{Mounted: true, Size: 2 * size, Used: 2*base + 20*mib, Weight: 200},
		{Mounted: false, Weight: 100},                            // failed disk: df error
		other(50*mib, 0),                                         // drained
		{Mounted: true, Size: size, Used: base / 2, Weight: 100}, // less than the baseline: 0 data, counted
	}
	sh = activities.RefillShare(activities.DeviceUsage{Mounted: true, Size: size, Used: base + 3*mib, Weight: 50}, base, mixed)
	assert.Equal(t, 3, sh.Counted)
	assert.InDelta(t, float64(30*mib)/400, sh.PerWeight, 1)
	assert.InDelta(t, float64(30*mib)/400*50, sh.Expected, 1)
}

// reconFiles serves recon caches whose last pass began at start.
type reconFiles struct{ start time.Time }

func (r reconFiles) ReadFile(_ context.Context, _ remote.Host, p string, _ int64) ([]byte, error) {
	ts := float64(r.start.Unix())
	if strings.HasSuffix(p, "object.recon") {
		return fmt.Appendf(nil, `{"replication_last": %f, "replication_time": 0.5}`, ts+30), nil
	}
	return fmt.Appendf(nil, `{"replication_last": %f, "replication_time": 30, "replication_stats": {"start": %f}}`, ts+30, ts), nil
}
func (reconFiles) CopyFile(context.Context, remote.Host, io.Reader, string, os.FileMode) (remote.FileSum, error) {
	return remote.FileSum{}, os.ErrPermission
}
func (reconFiles) Checksum(context.Context, remote.Host, string) (remote.FileSum, error) {
	return remote.FileSum{}, os.ErrNotExist
}

// FollowReplication reads one df per device (never a walk of the disk). Without a readable ring
// (reconFiles has none) it falls back to disk usage: here until the new device holds half its
// weighted share of data.
func TestFollowReplicationRefillByDiskUsage(t *testing.T) {
	used := map[string]int64{
		"/srv/node/sdd": 29 * mib, // the new disk: empty file system
		"/srv/node/sde": 29*mib + 8*mib,
		"/srv/node/sdf": 29*mib + 8*mib,
	}
	polls := 0
	f := &fakeHost{reply: map[string]func([]string) remote.Result{
		"disk_free": func(argv []string) remote.Result {
			p := argv[len(argv)-1]
			if p == "/srv/node/sdd" {
				polls++
				if polls == 3 {
					used[p] += 5 * mib // replication refilled it
				}
			}
			if p == "/srv/node/sdg" { // failed disk
				return remote.Result{ExitCode: 1, Stderr: "df: /srv/node/sdg: Input/output error"}
			}
			return remote.Result{Stdout: fmt.Sprintf("Filesystem 1-byte-blocks Used Available Capacity Mounted on\n/dev/loop9 %d %d %d 7%% %s\n",
				448*mib, used[p], 448*mib-used[p], p)}
		},
	}}
	cat, err := remote.NewCatalogue(nil, nil, nil)
	require.NoError(t, err)
	h := &activities.Hosts{Runner: f, Catalogue: cat, Inventory: map[string]activities.InventoryHost{
		"storage2": {Address: "10.0.0.22", Port: 22, Roles: []string{"storage"}},
		"storage3": {Address: "10.0.0.23", Port: 22, Roles: []string{"storage"}},
	}}
	since := time.Now().Add(-time.Hour)
	sw := &activities.Swift{Hosts: h, Files: reconFiles{start: since.Add(time.Minute)}, Cluster: activities.SwiftCluster{
		Nodes: map[string]activities.SwiftNodeInfo{
			"storage2": {Name: "storage2", DevicesDir: "/srv/node", ReconCachePath: "/var/cache/swift", Devices: map[string]string{"sdd": "/dev/sdd", "sde": "/dev/sde"}},
			"storage3": {Name: "storage3", DevicesDir: "/srv/node", ReconCachePath: "/var/cache/swift", Devices: map[string]string{"sdf": "/dev/sdf", "sdg": "/dev/sdg"}},
		}}}
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	env.RegisterActivity(sw)
	val, err := env.ExecuteActivity(sw.FollowReplication, activities.ReplicationRequest{
		Nodes: []string{"storage2", "storage3"}, Since: since, Device: &activities.DiskRequest{Node: "storage2", Device: "sdd"},
		Deadline: time.Now().Add(time.Minute), Interval: 10 * time.Millisecond, DeviceBaseline: 29 * mib, ShareFraction: 0.5,
		Weights: map[string]float64{"storage2/sdd": 100, "storage2/sde": 100, "storage3/sdf": 100, "storage3/sdg": 100},
	})
	require.NoError(t, err)
	var res activities.ReplicationResult
	require.NoError(t, val.Get(&res))
	assert.True(t, res.Settled)
	assert.Equal(t, 3, res.Polls, "not settled while the new disk held only its empty file system")
	assert.Equal(t, int64(5*mib), res.DeviceBytes)
	assert.InDelta(t, 8*mib, res.ExpectedBytes, 1, "sdg (failed) left out of the mean")
	assert.Contains(t, res.Detail, "5.0 MiB of data")
	assert.Zero(t, f.count("count_data_files"))

	// The deadline passes while the disk stays empty: a non-retryable failure naming the numbers.
	used["/srv/node/sdd"] = 29 * mib
	polls = -100
	_, err = env.ExecuteActivity(sw.FollowReplication, activities.ReplicationRequest{
		Nodes: []string{"storage2", "storage3"}, Since: since, Device: &activities.DiskRequest{Node: "storage2", Device: "sdd"},
		Deadline: time.Now().Add(50 * time.Millisecond), Interval: 10 * time.Millisecond, DeviceBaseline: 29 * mib,
	})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "not settled")
	assert.Contains(t, err.Error(), "0 B of data")
}

// ringFiles serves recon files and the lab's object ring (testdata/object.ring.gz).
type ringFiles struct{ reconFiles }

func (r ringFiles) ReadFile(ctx context.Context, h remote.Host, p string, limit int64) ([]byte, error) {
	if strings.HasSuffix(p, "object.ring.gz") {
		return os.ReadFile(filepath.Join("testdata", "object.ring.gz"))
	}
	return r.reconFiles.ReadFile(ctx, h, p, limit)
}

// The refill is done when the device has 95% of the partitions the ring gives it that its peers
// hold data for, whatever the bytes say: with 90% it is not done, with 100% it is.
func TestFollowReplicationRefillByPartitions(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "object.ring.gz"))
	require.NoError(t, err)
	ra, err := activities.ParseRingFile(data)
	require.NoError(t, err)
	sdd := ra.DeviceID("127.0.0.22", "sdd")
	var mine []int
	for p := range ra.PartitionsOf(sdd) {
		mine = append(mine, p)
	}
	sort.Ints(mine)
	all := func(n int) string { // partitions 0..n-1 of the ring, as ls lists them
		var b strings.Builder
		for p := range n {
			fmt.Fprintf(&b, "%d\n", p)
		}
		return b.String()
	}
	have := 0 // partitions of sdd present on it
	polls := 0
	f := &fakeHost{reply: map[string]func([]string) remote.Result{
		"disk_free": func(argv []string) remote.Result {
			p := argv[len(argv)-1]
			return remote.Result{Stdout: fmt.Sprintf("Filesystem 1-byte-blocks Used Available Capacity Mounted on\n/dev/loop9 %d %d %d 7%% %s\n", 448*mib, 30*mib, 418*mib, p)}
		},
		"list_dir": func(argv []string) remote.Result {
			p := argv[len(argv)-1]
			if p != "/srv/node/sdd/objects" {
				return remote.Result{Stdout: all(256)} // the peers hold every partition
			}
			polls++
			have = map[int]int{1: 0, 2: len(mine) * 90 / 100, 3: len(mine)}[min(polls, 3)]
			var b strings.Builder
			for _, p := range mine[:have] {
				fmt.Fprintf(&b, "%d\n", p)
			}
			return remote.Result{Stdout: b.String()}
		},
	}}
	cat, err := remote.NewCatalogue(nil, nil, nil)
	require.NoError(t, err)
	inv := map[string]activities.InventoryHost{}
	nodes := map[string]activities.SwiftNodeInfo{}
	for i, n := range []string{"storage1", "storage2", "storage3"} {
		ip := fmt.Sprintf("127.0.0.2%d", i+1)
		inv[n] = activities.InventoryHost{Address: ip, Port: 22, Roles: []string{"storage"}}
		d1, d2 := "sd"+string(rune('b'+2*i)), "sd"+string(rune('c'+2*i))
		nodes[n] = activities.SwiftNodeInfo{Name: n, RingIP: ip, SwiftDir: "/etc/swift", DevicesDir: "/srv/node", ReconCachePath: "/var/cache/swift",
			Devices: map[string]string{d1: "/dev/" + d1, d2: "/dev/" + d2}}
	}
	since := time.Now().Add(-time.Hour)
	sw := &activities.Swift{Hosts: &activities.Hosts{Runner: f, Catalogue: cat, Inventory: inv},
		Files: ringFiles{reconFiles{start: since.Add(time.Minute)}}, Cluster: activities.SwiftCluster{Nodes: nodes}}
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	env.RegisterActivity(sw)
	val, err := env.ExecuteActivity(sw.FollowReplication, activities.ReplicationRequest{
		Nodes: []string{"storage1", "storage2", "storage3"}, Since: since, Device: &activities.DiskRequest{Node: "storage2", Device: "sdd"},
		Deadline: time.Now().Add(time.Minute), Interval: 10 * time.Millisecond, DeviceBaseline: 29 * mib,
	})
	require.NoError(t, err)
	var res activities.ReplicationResult
	require.NoError(t, val.Get(&res))
	assert.Equal(t, 3, res.Polls, "not done at 0%, nor at 90% of its partitions")
	require.NotNil(t, res.Partitions)
	assert.Equal(t, activities.PartitionCoverage{Assigned: len(mine), Expected: len(mine), Have: len(mine)}, *res.Partitions)
	assert.Contains(t, res.Detail, fmt.Sprintf("has %d of the %d partitions", len(mine), len(mine)))
}
