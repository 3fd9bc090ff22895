package activities_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/internal/infra/remote"
)

// Output of swift-ring-builder 2.30 on the lab (object ring, two devices marked for removal).
const ringShow = `object.builder, build version 9, id 89732dcb114141158b60242d77abbf8d
256 partitions, 3.000000 replicas, 1 regions, 3 zones, 6 devices, 999.99 balance, 0.00 dispersion
The minimum number of hours before a partition can be reassigned is 1 (0:58:41 remaining)
The overload factor is 0.00% (0.000000)
Ring file object.ring.gz is obsolete
Devices:   id region zone ip address:port replication ip:port  name weight partitions balance flags meta
            0      1    1 127.0.0.21:6200     127.0.0.21:6200   sdb 100.00        128  -33.33       
            1      1    1 127.0.0.21:6200     127.0.0.21:6200   sdc 100.00        128  -33.33       
            2      1    2 127.0.0.22:6200     127.0.0.22:6200   sdd 100.00        128  -33.33       
            3      1    2 127.0.0.22:6200     127.0.0.22:6200   sde 100.00        128  -33.33       
            4      1    3 127.0.0.23:6200     127.0.0.23:6200   sdf   0.00        128  999.99   DEL 
            5      1    3 127.0.0.23:6200     127.0.0.23:6200   sdg   0.00        128  999.99   DEL 
`

func TestParseRingShow(t *testing.T) {
	ri, err := activities.ParseRingShow("object", "/etc/swift/object.builder", ringShow)
	require.NoError(t, err)
	assert.Equal(t, 256, ri.Partitions)
	assert.Equal(t, 3.0, ri.Replicas)
	assert.Equal(t, 3, ri.Zones)
	assert.Equal(t, 1, ri.MinPartHours)
	assert.Equal(t, 58*time.Minute+41*time.Second, ri.Remaining)
	assert.Equal(t, "obsolete", ri.RingFile)
	require.Len(t, ri.Devices, 6)
	assert.Equal(t, activities.RingDevice{ID: 4, Region: 1, Zone: 3, IP: "127.0.0.23", Port: 6200, Name: "sdf", Weight: 0, Partitions: 128, Balance: 999.99, Flags: "DEL"}, ri.Devices[4])
	assert.Len(t, ri.Find("127.0.0.22", "sdd"), 1)
	assert.Empty(t, ri.Find("127.0.0.21", "sdd"))

	up := strings.Replace(strings.Replace(ringShow, "is obsolete", "is up-to-date", 1), "(0:58:41 remaining)", "(1 day, 2:00:00 remaining)", 1)
	ri, err = activities.ParseRingShow("object", "b", up)
	require.NoError(t, err)
	assert.Equal(t, "up-to-date", ri.RingFile)
	assert.Equal(t, 26*time.Hour, ri.Remaining)

	_, err = activities.ParseRingShow("object", "b", "Traceback (most recent call last):")
	assert.Error(t, err)
}

func TestParseRecon(t *testing.T) {
	p, ok := activities.ParseRecon("object", []byte(`{"replication_last": 1000.0, "replication_time": 0.5}`))
	require.True(t, ok)
	assert.Equal(t, time.Unix(970, 0), p.Start, "object replication_time is in minutes")
	p, ok = activities.ParseRecon("account", []byte(`{"replication_last": 1000.0, "replication_time": 3, "replication_stats": {"start": 990.0}}`))
	require.True(t, ok)
	assert.Equal(t, time.Unix(990, 0), p.Start)
	_, ok = activities.ParseRecon("object", []byte(`{}`))
	assert.False(t, ok)
}

func TestParseMounts(t *testing.T) {
	m := activities.ParseMounts("/dev/loop3 /srv/node/sdd xfs rw 0 0\n/dev/sda1 /mnt/with\\040space ext4 rw 0 0\n")
	assert.Equal(t, "/dev/loop3", m["/srv/node/sdd"])
	assert.Equal(t, "/dev/sda1", m["/mnt/with space"])
}

// fakeHost answers catalogue commands from a script: command name -> handler.
type fakeHost struct {
	mu    sync.Mutex
	ran   []string
	reply map[string]func(argv []string) remote.Result
}

func (f *fakeHost) Run(_ context.Context, h remote.Host, cmd remote.Command) (remote.Result, error) {
	f.mu.Lock()
	f.ran = append(f.ran, cmd.Name)
	r := f.reply[cmd.Name]
	f.mu.Unlock()
	if r == nil {
		return remote.Result{ExitCode: 127, Stderr: "no such command in the fake: " + cmd.String()}, nil
	}
	return r(cmd.Argv), nil
}

func (f *fakeHost) count(name string) int {
	n := 0
	for _, r := range f.ran {
		if r == name {
			n++
		}
	}
	return n
}

// memFiles is SFTP over a map: host:path -> contents.
type memFiles struct {
	mu    sync.Mutex
	files map[string]string
}

func (m *memFiles) ReadFile(_ context.Context, h remote.Host, p string, _ int64) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.files[h.Name+":"+p]
	if !ok {
		return nil, os.ErrNotExist
	}
	return []byte(s), nil
}
func (m *memFiles) CopyFile(_ context.Context, h remote.Host, src io.Reader, p string, _ os.FileMode) (remote.FileSum, error) {
	b, err := io.ReadAll(src)
	if err != nil {
		return remote.FileSum{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.files == nil {
		m.files = map[string]string{}
	}
	m.files[h.Name+":"+p] = string(b)
	return remote.FileSum{Size: int64(len(b))}, nil
}
func (m *memFiles) Checksum(context.Context, remote.Host, string) (remote.FileSum, error) {
	return remote.FileSum{}, os.ErrNotExist
}

func newSwift(t *testing.T, f *fakeHost) *activities.Swift {
	cat, err := remote.NewCatalogue(nil, nil, nil)
	require.NoError(t, err)
	h := &activities.Hosts{Runner: f, Catalogue: cat, Inventory: map[string]activities.InventoryHost{
		"storage2": {Address: "10.0.0.22", Port: 22, Roles: []string{"storage"}},
		"ctl":      {Address: "10.0.0.10", Port: 22, Roles: []string{"controller"}},
	}}
	return &activities.Swift{Hosts: h, Files: &memFiles{}, Cluster: activities.SwiftCluster{
		RingBuilderHost: "ctl", BuilderDir: "/etc/swift",
		Nodes: map[string]activities.SwiftNodeInfo{"storage2": {Name: "storage2", RingIP: "10.0.0.22", SwiftDir: "/etc/swift",
			DevicesDir: "/srv/node", Devices: map[string]string{"sdd": "/dev/disk/by-id/wwn-1"}}},
	}}
}

// disk simulates the block device behind storage2/sdd: blkid reports fs (empty = none).
func diskFake(fs *struct{ typ, label, uuid string }, mounts *string) *fakeHost {
	return &fakeHost{reply: map[string]func([]string) remote.Result{
		"device_realpath": func([]string) remote.Result { return remote.Result{Stdout: "/dev/sdx\n"} },
		"block_device_path": func([]string) remote.Result {
			return remote.Result{Stdout: `{"blockdevices":[{"name":"sdx","type":"disk","size":536870912}]}`}
		},
		"mount_list": func([]string) remote.Result { return remote.Result{Stdout: *mounts} },
		"blkid": func([]string) remote.Result {
			if fs.typ == "" {
				return remote.Result{ExitCode: 2}
			}
			return remote.Result{Stdout: "DEVNAME=/dev/sdx\nLABEL=" + fs.label + "\nUUID=" + fs.uuid + "\nTYPE=" + fs.typ + "\n"}
		},
		"mkfs_xfs": func(argv []string) remote.Result {
			fs.typ, fs.label, fs.uuid = "xfs", argv[2], "uuid-new"
			return remote.Result{}
		},
		"mkfs_xfs_force": func(argv []string) remote.Result {
			fs.typ, fs.label, fs.uuid = "xfs", argv[3], "uuid-forced"
			return remote.Result{}
		},
	}}
}

func TestFormatDiskNeverTwice(t *testing.T) {
	fs := &struct{ typ, label, uuid string }{}
	mounts := ""
	f := diskFake(fs, &mounts)
	s := newSwift(t, f)
	ctx := context.Background()
	req := activities.FormatRequest{Node: "storage2", Device: "sdd"}
	res, err := s.FormatDisk(ctx, req)
	require.NoError(t, err)
	assert.True(t, res.Formatted)
	assert.Equal(t, "uuid-new", res.UUID)
	assert.Contains(t, strings.Join(f.ran, ","), "mkfs_xfs")
	// A retry (the worker died after mkfs) finds its own file system and keeps it.
	res, err = s.FormatDisk(ctx, req)
	require.NoError(t, err)
	assert.False(t, res.Formatted)
	assert.Equal(t, "uuid-new", res.UUID)
	assert.Equal(t, 1, f.count("mkfs_xfs"), "mkfs ran once")
}

func TestFormatDiskRefusesExistingFileSystem(t *testing.T) {
	fs := &struct{ typ, label, uuid string }{"ext4", "data", "uuid-old"}
	mounts := ""
	f := diskFake(fs, &mounts)
	s := newSwift(t, f)
	_, err := s.FormatDisk(context.Background(), activities.FormatRequest{Node: "storage2", Device: "sdd", PreviousUUID: "uuid-old"})
	require.ErrorContains(t, err, "not overwritten without the overwrite gate")
	assert.Zero(t, f.count("mkfs_xfs")+f.count("mkfs_xfs_force"))
	// The same disk after the overwrite gate: formatted with -f, once.
	res, err := s.FormatDisk(context.Background(), activities.FormatRequest{Node: "storage2", Device: "sdd", PreviousUUID: "uuid-old", Overwrite: true})
	require.NoError(t, err)
	assert.True(t, res.Formatted)
	res, err = s.FormatDisk(context.Background(), activities.FormatRequest{Node: "storage2", Device: "sdd", PreviousUUID: "uuid-old", Overwrite: true})
	require.NoError(t, err)
	assert.False(t, res.Formatted, "retry keeps the new file system")
	assert.Equal(t, 1, f.count("mkfs_xfs_force"))
	// An old XFS with the device's own label and the inspected UUID is overwritten (after the gate).
	fs2 := &struct{ typ, label, uuid string }{"xfs", "sdd", "uuid-old"}
	f2 := diskFake(fs2, &mounts)
	res, err = newSwift(t, f2).FormatDisk(context.Background(), activities.FormatRequest{Node: "storage2", Device: "sdd", PreviousUUID: "uuid-old", Overwrite: true})
	require.NoError(t, err)
	assert.True(t, res.Formatted)
}

func TestFormatDiskRefusesMounted(t *testing.T) {
	fs := &struct{ typ, label, uuid string }{}
	mounts := "/dev/sdx /srv/node/sdd xfs rw 0 0\n"
	f := diskFake(fs, &mounts)
	_, err := newSwift(t, f).FormatDisk(context.Background(), activities.FormatRequest{Node: "storage2", Device: "sdd"})
	require.ErrorContains(t, err, "is mounted")
	assert.Zero(t, f.count("mkfs_xfs"))
}

func TestSwiftUnknownDeviceMakesNoConnection(t *testing.T) {
	f := &fakeHost{}
	s := newSwift(t, f)
	_, err := s.InspectDisk(context.Background(), activities.DiskRequest{Node: "storage2", Device: "sda"})
	require.ErrorContains(t, err, `no Swift device "sda"`)
	_, err = s.UnmountDevice(context.Background(), activities.DiskRequest{Node: "storage9", Device: "sdd"})
	require.ErrorContains(t, err, "not a Swift node")
	assert.Empty(t, f.ran)
}

func TestApplyRingOpsChecksFirst(t *testing.T) {
	f := &fakeHost{reply: map[string]func([]string) remote.Result{
		"ring_show":       func([]string) remote.Result { return remote.Result{Stdout: ringShow} },
		"ring_set_weight": func([]string) remote.Result { return remote.Result{} },
		"ring_add":        func([]string) remote.Result { return remote.Result{} },
	}}
	s := newSwift(t, f)
	res, err := s.ApplyRingOps(context.Background(), []activities.RingOp{
		{Kind: "object", Action: "remove", IP: "127.0.0.23", Port: 6200, Device: "sdf"},                        // already marked
		{Kind: "object", Action: "set_weight", IP: "127.0.0.22", Port: 6200, Device: "sdd", Weight: 100},       // already at 100
		{Kind: "object", Action: "set_weight", IP: "127.0.0.22", Port: 6200, Device: "sde", Weight: 33.333333}, // changes
		{Kind: "object", Action: "add", IP: "127.0.0.24", Port: 6200, Device: "sdh", Zone: 4, Weight: 100},     // new
		{Kind: "object", Action: "add", IP: "127.0.0.21", Port: 6200, Device: "sdb", Zone: 1, Weight: 100},     // present
	})
	require.NoError(t, err)
	assert.Len(t, res.Already, 3)
	assert.Len(t, res.Applied, 2)
	assert.Equal(t, 1, f.count("ring_set_weight"))
	assert.Equal(t, 1, f.count("ring_add"))
	assert.Contains(t, res.Applied[0], "to 33.33")
	_, err = s.ApplyRingOps(context.Background(), []activities.RingOp{{Kind: "object", Action: "add", IP: "127.0.0.23", Port: 6200, Device: "sdg", Zone: 3, Weight: 100}})
	require.ErrorContains(t, err, "marked for removal")
}

// downHost refuses every connection, as a storage node whose sshd is gone.
type downHost struct{ calls int }

func (d *downHost) Run(_ context.Context, h remote.Host, _ remote.Command) (remote.Result, error) {
	d.calls++
	return remote.Result{}, fmt.Errorf("remote: connect to %s: %w: connection refused", h.Name, remote.ErrConnect)
}

func TestDeviceHealthUnreachableNode(t *testing.T) {
	d := &downHost{}
	s := newSwift(t, &fakeHost{})
	s.Hosts.Runner = d
	st, err := s.DeviceHealth(context.Background(), "storage2")
	require.NoError(t, err, "an unreachable node is an answer, not an error to retry")
	require.Len(t, st, 1)
	assert.True(t, st[0].Unreachable)
	assert.False(t, st[0].Healthy)
	assert.Contains(t, st[0].Detail, "cannot be reached")
	assert.Equal(t, 1, d.calls, "one connection attempt")
}

// A rebalance that exits 1 without saving ("Cowardly refusing", "No partitions could be
// reassigned") after a real change is an error: the ring file still lacks the change.
func TestRebalanceExit1WithoutSaveIsDetected(t *testing.T) {
	for _, tc := range []struct {
		name, output string
		saves        bool
	}{
		{"cowardly", "Cowardly refusing to save rebalance as it did not change at least 1%.", false},
		{"nothing reassigned", "No partitions could be reassigned.\nThe time between rebalances must be at least min_part_hours: 1 hours (0:58:41 remaining)", false},
		{"saved, balance not reached", "Reassigned 12 (4.69%) partitions. Balance is now 33.33.  Dispersion is now 0.00\nNOTE: Balance of 33.33 indicates you should push this ring, wait at least 1 hours, and rebalance/repush.", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			show := ringShow // obsolete: the builder was changed
			f := &fakeHost{reply: map[string]func([]string) remote.Result{
				"ring_show": func([]string) remote.Result { return remote.Result{Stdout: show} },
				"ring_rebalance": func([]string) remote.Result {
					if tc.saves {
						show = strings.Replace(ringShow, "is obsolete", "is up-to-date", 1)
					}
					return remote.Result{ExitCode: 1, Stdout: tc.output}
				},
			}}
			res, err := newSwift(t, f).Rebalance(context.Background(), "object")
			if tc.saves {
				require.NoError(t, err)
				assert.Contains(t, res.Warning, "Balance of 33.33")
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), "the ring file is obsolete")
			assert.Contains(t, err.Error(), strings.SplitN(tc.output, "\n", 2)[0])
		})
	}
}

// AwaitMinPartHours re-reads the builders until min_part_hours has passed (here: the third read,
// as after pretend_min_part_hours_passed), or returns at Until with the time still remaining.
func TestAwaitMinPartHours(t *testing.T) {
	reads := 0
	up := strings.Replace(ringShow, "(0:58:41 remaining)", "(0:00:00 remaining)", 1)
	f := &fakeHost{reply: map[string]func([]string) remote.Result{
		"ring_show": func([]string) remote.Result {
			reads++
			if reads > 6 { // three rings per read: the third read sees it passed
				return remote.Result{Stdout: up}
			}
			return remote.Result{Stdout: ringShow}
		},
	}}
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	sw := newSwift(t, f)
	env.RegisterActivity(sw)
	v, err := env.ExecuteActivity(sw.AwaitMinPartHours, activities.MinPartHoursRequest{Interval: 10 * time.Millisecond, Until: time.Now().Add(time.Minute)})
	require.NoError(t, err)
	var st activities.RingStatus
	require.NoError(t, v.Get(&st))
	assert.Zero(t, st.MaxRemaining())
	assert.Equal(t, 9, reads)

	reads = -1000 // never passes: Until ends the call
	start := time.Now()
	v, err = env.ExecuteActivity(sw.AwaitMinPartHours, activities.MinPartHoursRequest{Interval: 10 * time.Millisecond, Until: time.Now().Add(200 * time.Millisecond)})
	require.NoError(t, err)
	require.NoError(t, v.Get(&st))
	assert.Equal(t, 58*time.Minute+41*time.Second, st.MaxRemaining())
	assert.GreaterOrEqual(t, time.Since(start), 200*time.Millisecond)
}

// The new disk is mounted through its fstab entry, by UUID: written once (the other lines kept,
// an old line for the mount point replaced), checked, and mounted with mount --fstab.
func TestMountDiskThroughFstabByUUID(t *testing.T) {
	fs := &struct{ typ, label, uuid string }{"xfs", "sdd", "uuid-new"}
	mounts := ""
	f := diskFake(fs, &mounts)
	for k, v := range map[string]func([]string) remote.Result{
		"mkdir":       func([]string) remote.Result { return remote.Result{} },
		"chown_swift": func([]string) remote.Result { return remote.Result{} },
		"stat_owner":  func([]string) remote.Result { return remote.Result{Stdout: "swift:swift\n"} },
		"disk_free":   func([]string) remote.Result { return remote.Result{ExitCode: 1} },
		"kernel_log": func([]string) remote.Result {
			return remote.Result{Stdout: "[  1.0] sd 2:0:0:3: [sdx] 1048576 512-byte logical blocks\n[  2.0] sdx1: other\n[  3.0] loop2: detected capacity change\n"}
		},
		"mount_fstab": func(argv []string) remote.Result {
			mounts = "/dev/sdx " + argv[len(argv)-1] + " xfs rw 0 0\n"
			return remote.Result{}
		},
	} {
		f.reply[k] = v
	}
	s := newSwift(t, f)
	files := s.Files.(*memFiles)
	files.files = map[string]string{"storage2:/etc/fstab": "# /etc/fstab\nUUID=root / ext4 defaults 0 1\nLABEL=sdd /srv/node/sdd xfs noatime 0 0\n"}
	res, err := s.MountDisk(context.Background(), activities.DiskRequest{Node: "storage2", Device: "sdd"})
	require.NoError(t, err)
	assert.True(t, res.FstabChanged)
	assert.Equal(t, "UUID=uuid-new /srv/node/sdd xfs noatime,nofail 0 0", res.Fstab)
	assert.Equal(t, "# /etc/fstab\nUUID=root / ext4 defaults 0 1\nUUID=uuid-new /srv/node/sdd xfs noatime,nofail 0 0\n", files.files["storage2:/etc/fstab"])
	assert.Contains(t, f.ran, "mount_fstab")
	assert.NotContains(t, f.ran, "mount_label")
	// Again (a retry): nothing written, nothing mounted twice.
	res, err = s.MountDisk(context.Background(), activities.DiskRequest{Node: "storage2", Device: "sdd"})
	require.NoError(t, err)
	assert.False(t, res.FstabChanged)
	assert.True(t, res.Already)
	assert.Equal(t, 1, f.count("mount_fstab"))

	// The kernel log is read for the device: its lines, not its partition's or another's.
	facts, err := s.InspectDisk(context.Background(), activities.DiskRequest{Node: "storage2", Device: "sdd"})
	require.NoError(t, err)
	assert.Equal(t, []string{"[  1.0] sd 2:0:0:3: [sdx] 1048576 512-byte logical blocks"}, facts.KernelLog)
	assert.Equal(t, "disk", facts.Type)
}

func TestFstabWith(t *testing.T) {
	e := "UUID=u1 /srv/node/sdd xfs noatime,nofail 0 0"
	got, same := activities.FstabWith("", "/srv/node/sdd", e)
	assert.False(t, same)
	assert.Equal(t, e+"\n", got)
	_, same = activities.FstabWith("# x\n"+e+"\n", "/srv/node/sdd", e)
	assert.True(t, same)
	got, same = activities.FstabWith(e+"\nUUID=u0 /srv/node/sdd xfs defaults 0 0\n/dev/sde /srv/node/sde xfs noatime 0 0\n", "/srv/node/sdd", e)
	assert.False(t, same, "a second line for the mount point is dropped")
	assert.Equal(t, e+"\n/dev/sde /srv/node/sde xfs noatime 0 0\n", got)
}

// A partition is never formatted, nor a disk holding a partition table without the gate.
func TestFormatDiskWholeDiskOnly(t *testing.T) {
	fs := &struct{ typ, label, uuid string }{}
	mounts := ""
	f := diskFake(fs, &mounts)
	f.reply["block_device_path"] = func([]string) remote.Result {
		return remote.Result{Stdout: `{"blockdevices":[{"name":"sdx1","type":"part","size":536870912}]}`}
	}
	_, err := newSwift(t, f).FormatDisk(context.Background(), activities.FormatRequest{Node: "storage2", Device: "sdd"})
	require.ErrorContains(t, err, "is a part, not a whole disk")
	f.reply["block_device_path"] = func([]string) remote.Result {
		return remote.Result{Stdout: `{"blockdevices":[{"name":"sdx","type":"disk","size":536870912,"children":[{"name":"sdx1","type":"part"}]}]}`}
	}
	_, err = newSwift(t, f).FormatDisk(context.Background(), activities.FormatRequest{Node: "storage2", Device: "sdd"})
	require.ErrorContains(t, err, `partition table "1 partition(s)"`)
	assert.Zero(t, f.count("mkfs_xfs")+f.count("mkfs_xfs_force"))
}
