package activities_test

import (
	"context"
	"fmt"
	"io"
	"os"
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

// FollowReplication reads one df per device (never a walk of the disk) and waits until the new
// device holds half its weighted share of data.
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
		Deadline: time.Now().Add(time.Minute), Interval: 10 * time.Millisecond, DeviceBaseline: 29 * mib,
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
