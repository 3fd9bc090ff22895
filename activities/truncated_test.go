package activities_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/internal/infra/remote"
)

// Output that internal/infra/remote cut at its limit (Result.Truncated) is never parsed as if
// whole: each activity that reads a command's output gets, for each command it reads, a cut
// copy of the answer it succeeds with, and must fail with the typed, non-retryable
// RemoteOutputTruncated error instead of concluding from a part (a ring with too few devices,
// a mount table without its last mounts, a log tail without its newest lines).

const (
	mountsWhole = "proc /proc proc rw 0 0\n/dev/sda1 / ext4 rw 0 0\n/dev/sdx /srv/node/sdd xfs rw 0 0\n"
	dfWhole     = "Filesystem 1-byte-blocks Used Available Capacity Mounted on\n/dev/sda1 1000 100 900 10% /\n/dev/sdx 1000 990 10 99% /srv/node/sdd\n"
	lsWhole     = "account.builder\naccount.ring.gz\ncontainer.builder\ncontainer.ring.gz\nobject.builder\nobject.ring.gz\nbackups\n"
	amqpSockets = "0 0 10.0.0.22:41234 10.0.0.10:5672 users:((\"nova-compute\",pid=3263,fd=21))\n"
	aptWhole    = "Inst libssl3 [3.0.2] (3.0.2-0ubuntu1.15 Ubuntu:22.04/jammy-security [amd64])\nInst openssl [3.0.2] (3.0.2-0ubuntu1.15 Ubuntu:22.04/jammy-security [amd64])\n"
)

// cut keeps the first half of s, as the SSH layer keeps the first MaxOutputBytes.
func cut(r remote.Result) remote.Result {
	r.Stdout = r.Stdout[:len(r.Stdout)/2]
	r.Truncated = true
	return r
}

type scenario struct {
	name  string
	whole map[string]remote.Result // every command the activity runs, answered whole
	reads []string                 // the commands whose output it parses
	call  func(t *testing.T, f *fakeHost) error
}

func TestTruncatedOutputIsNeverParsed(t *testing.T) {
	ctx := context.Background()
	swiftCall := func(do func(s *activities.Swift) error) func(*testing.T, *fakeHost) error {
		return func(t *testing.T, f *fakeHost) error { return do(newSwift(t, f)) }
	}
	checks := func(f *fakeHost) *activities.Checks {
		return &activities.Checks{Hosts: newSwift(t, f).Hosts, Settings: activities.CheckSettings{DefaultOSFamily: "ubuntu", DiskPercent: 90}}
	}
	since := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	for _, sc := range []scenario{
		{
			name:  "ring status (swift-ring-builder's device table)",
			whole: map[string]remote.Result{"ring_show": {Stdout: ringShow}},
			reads: []string{"ring_show"},
			call: swiftCall(func(s *activities.Swift) error {
				st, err := s.RingStatus(ctx)
				if err == nil && len(st.Rings[0].Devices) != 6 {
					return fmt.Errorf("read %d devices of 6", len(st.Rings[0].Devices))
				}
				return err
			}),
		},
		{
			name:  "ring dispersion",
			whole: map[string]remote.Result{"ring_validate": {}, "ring_dispersion": {Stdout: "Dispersion is 0.000000, Balance is 0.390625, Overload is 0.00%\nRequired overload is 0.000000%\n"}},
			reads: []string{"ring_validate", "ring_dispersion"},
			call: swiftCall(func(s *activities.Swift) error {
				_, err := s.ValidateRing(ctx, "object")
				return err
			}),
		},
		{
			name:  "builder backup (directory listing)",
			whole: map[string]remote.Result{"mkdir": {}, "list_dir": {Stdout: lsWhole}, "file_copy": {}},
			reads: []string{"list_dir"},
			call: swiftCall(func(s *activities.Swift) error {
				_, err := s.BackupBuilders(ctx, activities.BackupRequest{Name: "before-change"})
				return err
			}),
		},
		{
			name:  "device health (mount table)",
			whole: map[string]remote.Result{"mount_list": {Stdout: mountsWhole}, "list_dir": {Stdout: "objects\ntmp\n"}},
			reads: []string{"mount_list", "list_dir"},
			call: swiftCall(func(s *activities.Swift) error {
				st, err := s.DeviceHealth(ctx, "storage2")
				if err == nil && !st[0].Mounted {
					return errors.New("sdd read as not mounted")
				}
				return err
			}),
		},
		{
			name: "disk inspection (realpath, lsblk, mounts, blkid)",
			whole: map[string]remote.Result{
				"device_realpath":   {Stdout: "/dev/sdx\n"},
				"block_device_path": {Stdout: `{"blockdevices":[{"name":"sdx","type":"disk","size":536870912,"fstype":null,"mountpoint":null,"label":null}]}`},
				"mount_list":        {Stdout: mountsWhole},
				"blkid":             {Stdout: "DEVNAME=/dev/sdx\nLABEL=sdd\nUUID=0b5e\nTYPE=xfs\n"},
			},
			reads: []string{"device_realpath", "block_device_path", "mount_list", "blkid"},
			call: swiftCall(func(s *activities.Swift) error {
				_, err := s.InspectDisk(ctx, activities.DiskRequest{Node: "storage2", Device: "sdd"})
				return err
			}),
		},
		{
			name: "mount (realpath, mounts, owner)",
			whole: map[string]remote.Result{
				"device_realpath": {Stdout: "/dev/sdx\n"}, "mount_list": {Stdout: mountsWhole}, "chown_swift": {},
				"stat_owner": {Stdout: "swift:swift\n"}, "disk_free": {Stdout: dfWhole},
				"block_device_path": {Stdout: `{"blockdevices":[{"name":"sdx","type":"disk","size":536870912}]}`},
				"blkid":             {Stdout: "DEVNAME=/dev/sdx\nLABEL=sdd\nUUID=0b5e\nTYPE=xfs\n"}, "kernel_log": {}, "mkdir": {}, "mount_fstab": {},
			},
			reads: []string{"device_realpath", "mount_list", "stat_owner"},
			call: swiftCall(func(s *activities.Swift) error {
				_, err := s.MountDisk(ctx, activities.DiskRequest{Node: "storage2", Device: "sdd"})
				return err
			}),
		},
		{
			name:  "refill (df of each device)",
			whole: map[string]remote.Result{"disk_free": {Stdout: dfWhole}},
			reads: []string{"disk_free"},
			call: func(t *testing.T, f *fakeHost) error {
				sw := newSwift(t, f)
				sw.Files = reconFiles{start: since.Add(time.Minute)}
				var suite testsuite.WorkflowTestSuite
				env := suite.NewTestActivityEnvironment()
				env.RegisterActivity(sw)
				_, err := env.ExecuteActivity(sw.FollowReplication, activities.ReplicationRequest{
					Nodes: []string{"storage2"}, Since: since, Device: &activities.DiskRequest{Node: "storage2", Device: "sdd"},
					Deadline: time.Now().Add(3 * time.Second), Interval: time.Millisecond, ShareFraction: 0.01})
				return err
			},
		},
		{
			name:  "security updates probe (apt-get -s upgrade)",
			whole: map[string]remote.Result{"security_updates_ubuntu": {Stdout: aptWhole}},
			reads: []string{"security_updates_ubuntu"},
			call: func(t *testing.T, f *fakeHost) error {
				res, err := checks(f).SecurityUpdatesProbe(ctx, activities.ProbeRequest{Probe: "security-updates", Target: "storage2"})
				if err == nil && res.Metrics[0].Value != 2 {
					return fmt.Errorf("counted %v updates of 2", res.Metrics[0].Value)
				}
				return err
			},
		},
		{
			name:  "disks probe (df)",
			whole: map[string]remote.Result{"disk_free_all": {Stdout: dfWhole}},
			reads: []string{"disk_free_all"},
			call: func(t *testing.T, f *fakeHost) error {
				res, err := checks(f).DisksProbe(ctx, activities.ProbeRequest{Probe: "disks", Target: "storage2"})
				if err == nil && len(res.Findings) == 0 {
					return errors.New("the full disk was not seen")
				}
				return err
			},
		},
		{
			name: "AMQP check (main PID, sockets)",
			whole: map[string]remote.Result{
				"log_tail":        {Stdout: "2026-05-01 09:00:00.001 7 INFO nova.compute.manager [-] started\n"},
				"service_pid":     {Stdout: "3263\n"},
				"tcp_established": {Stdout: amqpSockets},
			},
			reads: []string{"service_pid", "tcp_established"},
			call: func(t *testing.T, f *fakeHost) error {
				res, err := newSwift(t, f).Hosts.CheckAMQP(ctx, amqpRequest(since))
				if err == nil && !res.Connected {
					return errors.New("the connection was not seen")
				}
				return err
			},
		},
		{
			name: "upgrade package facts (dpkg-query, apt-cache policy)",
			whole: map[string]remote.Result{
				"package_status": {Stdout: "Package: nova-compute\nStatus: install ok installed\nVersion: 3:29.0.0-0ubuntu1\n\nPackage: nova-common\nStatus: install ok installed\nVersion: 3:29.0.0-0ubuntu1\n"},
				"package_policy": {Stdout: "nova-compute:\n  Installed: 3:29.0.0-0ubuntu1\n  Candidate: 3:29.2.0-0ubuntu1\nnova-common:\n  Installed: 3:29.0.0-0ubuntu1\n  Candidate: 3:29.2.0-0ubuntu1\n"},
			},
			reads: []string{"package_status", "package_policy"},
			call: func(t *testing.T, f *fakeHost) error {
				u := &activities.Upgrade{Hosts: newSwift(t, f).Hosts}
				facts, err := u.PackageFacts(ctx, activities.PackageFactsRequest{Host: "storage2", Packages: []string{"nova-compute", "nova-common"}})
				if err == nil && (facts[1].Installed == "" || facts[1].Candidate == "") {
					return fmt.Errorf("nova-common read as %+v", facts[1])
				}
				return err
			},
		},
		{
			name:  "boot time (/proc/uptime)",
			whole: map[string]remote.Result{"uptime": {Stdout: "12345.67 23456.78\n"}},
			reads: []string{"uptime"},
			call: func(t *testing.T, f *fakeHost) error {
				_, err := newSwift(t, f).Hosts.BootTime(ctx, "storage2")
				return err
			},
		},
	} {
		t.Run(sc.name, func(t *testing.T) {
			answer := func(cutName string) *fakeHost {
				f := &fakeHost{reply: map[string]func([]string) remote.Result{}}
				for name, r := range sc.whole {
					if name == cutName {
						r = cut(r)
					}
					f.reply[name] = func([]string) remote.Result { return r }
				}
				return f
			}
			require.NoError(t, sc.call(t, answer("")), "whole answers: the activity succeeds")
			for _, name := range sc.reads {
				err := sc.call(t, answer(name))
				require.Error(t, err, "%s cut: must not be parsed as if whole", name)
				var app *temporal.ApplicationError
				require.True(t, errors.As(err, &app), "%s: %v", name, err)
				assert.Equal(t, remote.TypeTruncated, app.Type(), "%s: %v", name, err)
				assert.True(t, app.NonRetryable(), "the same command prints as much again")
				assert.True(t, strings.Contains(err.Error(), name), "the error names the command: %v", err)
			}
		})
	}
}

func amqpRequest(since time.Time) activities.AMQPRequest {
	return activities.AMQPRequest{ServiceRequest: activities.ServiceRequest{Host: "storage2", Role: "storage", Service: "nova-compute"},
		Log: "/var/log/nova/nova-compute.log", Since: since}
}

// A log tail is cut at its end, where the newest lines are: the log cannot answer, and the check
// asks the sockets (whose own output must be whole) instead of reading the older half.
func TestCheckAMQPDoesNotReadACutLogTail(t *testing.T) {
	since := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	logLine := "2026-05-01 10:30:00.001 7 INFO oslo.messaging._drivers.impl_rabbit [-] Connected to AMQP server on 10.0.0.10:5672\n"
	tail := remote.Result{Stdout: logLine + strings.Repeat("2026-05-01 10:31:00.000 7 INFO nova.compute.manager [-] tick\n", 4)}
	run := func(tail remote.Result, sockets string) (activities.AMQPResult, *fakeHost, error) {
		f := &fakeHost{reply: map[string]func([]string) remote.Result{
			"log_tail":        func([]string) remote.Result { return tail },
			"service_pid":     func([]string) remote.Result { return remote.Result{Stdout: "3263\n"} },
			"tcp_established": func([]string) remote.Result { return remote.Result{Stdout: sockets} },
		}}
		res, err := newSwift(t, f).Hosts.CheckAMQP(context.Background(), amqpRequest(since))
		return res, f, err
	}

	res, f, err := run(tail, amqpSockets)
	require.NoError(t, err)
	assert.Equal(t, strings.TrimSpace(logLine), res.Line, "whole tail: the log answers")
	assert.Zero(t, f.count("tcp_established"))

	res, f, err = run(cut(tail), amqpSockets)
	require.NoError(t, err)
	assert.True(t, res.Connected)
	assert.Contains(t, res.Line, "pid 3263 has an established AMQP connection", "cut tail: the sockets answer")
	assert.Equal(t, 1, f.count("tcp_established"))

	res, _, err = run(cut(tail), "")
	require.NoError(t, err)
	assert.False(t, res.Connected, "the connection line in the kept half is not read")
}
