//go:build e2e

package e2e

// SwiftDisk end to end on the lab: a disk of storage2 fails (XFS shut down), objects
// stay readable, the runbook unmounts it and waits at disk-replaced, the test provides a new disk,
// the runbook formats, mounts and follows replication until the device is refilled, with the
// worker SIGKILLed in the middle; then hostile inputs are refused before any SSH command.

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/objectstorage/v1/containers"
	"github.com/gophercloud/gophercloud/v2/openstack/objectstorage/v1/objects"
	"github.com/stretchr/testify/require"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/config"
	"github.com/stackrun/stackrun/internal/app/control"
	"github.com/stackrun/stackrun/internal/app/report"
	"github.com/stackrun/stackrun/internal/infra/openstack"
	"github.com/stackrun/stackrun/internal/testenv/devserver"
	"github.com/stackrun/stackrun/workflows"
)

const (
	diskNode = "storage2"
	diskDev  = "sdd"
)

func diskState(t *testing.T) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(lab(t, "LABFAIL", "disk-info", diskNode, diskDev), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			m[k] = v
		}
	}
	return m
}

func blkidUUID(t *testing.T, dev string) string {
	out, _ := exec.Command("blkid", "-p", "-o", "value", "-s", "UUID", dev).Output()
	return strings.TrimSpace(string(out))
}

func blkidType(dev string) string {
	out, _ := exec.Command("blkid", "-p", "-o", "value", "-s", "TYPE", dev).Output()
	return strings.TrimSpace(string(out))
}

func countData(dir string) int {
	n := 0
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".data") {
			n++
		}
		return nil
	})
	return n
}

func TestSwiftDiskReplacementOnLab(t *testing.T) {
	cfgPath, cfg := swiftLabConfig(t)
	mp := filepath.Join(cfg.Swift.Nodes[diskNode].DevicesDir, diskDev)
	// Leftovers of an earlier run: a failed or missing disk is replaced first.
	if st := diskState(t); st["state"] != "mounted" {
		t.Logf("%s/%s is %s before the test: replacing it (leftover)", diskNode, diskDev, st["state"])
		lab(t, "LABFAIL", "disk-replace", diskNode, diskDev)
	}
	t.Cleanup(func() {
		if st := diskState(t); st["state"] != "mounted" {
			t.Logf("cleanup: %s/%s is %s: replacing it", diskNode, diskDev, st["state"])
			lab(t, "LABFAIL", "disk-replace", diskNode, diskDev)
		}
	})

	// Objects through the proxy.
	ctx := context.Background()
	cl, err := openstack.NewClients(ctx, openstack.Options{Cloud: cfg.OpenStack.Cloud, CloudsFile: cfg.OpenStack.CloudsFile, Region: cfg.OpenStack.Region})
	require.NoError(t, err)
	store := cl.ObjectStore
	require.NotNil(t, store, "object-store endpoint")
	container := fmt.Sprintf("e2e-swift-disk-%d", time.Now().UnixNano())
	require.NoError(t, containers.Create(ctx, store, container, nil).Err)
	want := map[string][]byte{}
	for i := range 40 {
		name := fmt.Sprintf("obj-%03d", i)
		body := bytes.Repeat([]byte(name+" "), 50+i)
		_, err := objects.Create(ctx, store, container, name, objects.CreateOpts{Content: bytes.NewReader(body)}).Extract()
		require.NoError(t, err)
		want[name] = body
	}
	t.Cleanup(func() {
		for name := range want {
			_ = objects.Delete(context.Background(), store, container, name, nil).Err
		}
		_ = containers.Delete(context.Background(), store, container).Err
	})
	readAll := func(when string) {
		t.Helper()
		for name, body := range want {
			res := objects.Download(ctx, store, container, name, nil)
			got, err := res.ExtractContent()
			require.NoError(t, err, "%s: GET %s", when, name)
			require.Equal(t, body, got, "%s: content of %s", when, name)
		}
	}
	readAll("before the failure")
	// Right after an earlier replacement the proxy may still error-limit the device and write to
	// handoffs; the replicators then move those replicas to it.
	before := 0
	for end := time.Now().Add(3 * time.Minute); before == 0 && time.Now().Before(end); {
		if before = countData(mp); before == 0 {
			time.Sleep(2 * time.Second)
		}
	}
	require.Positive(t, before, "%s holds objects before it fails", mp)

	// The disk fails: every access gives EIO; reads are served from the other replicas.
	lab(t, "LABFAIL", "disk-fail", diskNode, diskDev)
	_, err = os.ReadDir(mp)
	require.Error(t, err, "the failed disk gives I/O errors")
	readAll("with the disk failed")

	srv := devserver.Start(t)
	worker := startWorker(t, cfgPath, srv)
	rn := runner{t: t, srv: srv, cfg: cfg}

	// Hostile and wrong inputs: refused before any connection.
	for _, dev := range []string{"sdb;reboot", "../../etc", "/dev/sda", "/dev/sdd", "sdd ", ""} {
		_, err := rn.start("swift-disk", &workflows.SwiftDiskInput{Meta: workflows.Meta{RequestedBy: "alice"}, Node: diskNode, Device: dev})
		require.ErrorIs(t, err, control.ErrInvalidInput, "device %q", dev)
		require.Contains(t, err.Error(), "device", "the error names the field")
	}
	_, err = rn.start("swift-disk", &workflows.SwiftDiskInput{Meta: workflows.Meta{RequestedBy: "alice"}, Node: "storage2;reboot", Device: "sdd"})
	require.ErrorIs(t, err, control.ErrInvalidInput)
	for _, in := range []workflows.SwiftDiskInput{
		{Node: "storage9", Device: "sdd"}, // unknown node
		{Node: "storage1", Device: "sdd"}, // a device of another node
		{Node: "compute1", Device: "sdb"}, // not a storage node
		{Node: diskNode, Device: "sda"},   // not a Swift device
	} {
		in.Meta = workflows.Meta{RequestedBy: "alice"}
		id := rn.mustStart("swift-disk", &in)
		rep := rn.report(id, time.Minute)
		require.Equal(t, workflows.StatusFailed, rep.Status, "%s/%s: %s", in.Node, in.Device, rep.Summary)
		require.Contains(t, rep.Summary, "invalid input")
		require.Equal(t, []string{"SwiftTopology"}, slices.DeleteFunc(activitiesOf(rep), func(s string) bool { return s == "LoadPolicy" || s == "Notify" }),
			"%s/%s: no SSH activity ran", in.Node, in.Device)
		t.Logf("%s/%s refused: %s", in.Node, in.Device, rep.Steps[0].Error)
	}

	// A storage node that cannot be reached holds none of its copies: with storage3's sshd
	// stopped, sdd's partitions may have their last copy on sdd (zones 1 and 3 of 3 replicas,
	// zone 3 away), so the last-copy guard refuses at once, naming why; nothing is unmounted.
	lab(t, "LABCTL", "stop", "storage3", "sshd")
	sshdBack := false
	t.Cleanup(func() {
		if !sshdBack {
			lab(t, "LABCTL", "start", "storage3", "sshd")
		}
	})
	refusedAt := time.Now()
	id := rn.mustStart("swift-disk", &workflows.SwiftDiskInput{Meta: workflows.Meta{RequestedBy: "alice", Reason: "e2e: node away"}, Node: diskNode, Device: diskDev})
	rep := rn.report(id, 2*time.Minute)
	lab(t, "LABCTL", "start", "storage3", "sshd")
	sshdBack = true
	require.Equal(t, workflows.StatusFailed, rep.Status, "%s: %+v", rep.Summary, rep.Steps)
	var checkErr string
	for _, s := range rep.Steps {
		if s.Name == "check-replicas" {
			checkErr = s.Error
		}
	}
	require.Contains(t, checkErr, "storage3/sdf (node cannot be reached: counted as holding none of its copies)")
	require.Contains(t, checkErr, "last copy")
	require.NotContains(t, activitiesOf(rep), "UnmountDevice")
	require.NotEmpty(t, diskState(t)["mounted_from"], "still mounted (failed) after the refusal")
	t.Logf("refused in %s with storage3 away: %s", time.Since(refusedAt).Round(time.Second), checkErr)

	// The replacement.
	id = rn.mustStart("swift-disk", &workflows.SwiftDiskInput{
		Meta: workflows.Meta{RequestedBy: "alice", Reason: "e2e: failed disk"}, Node: diskNode, Device: diskDev,
		RefillTimeout: 5 * time.Minute, PollInterval: 3 * time.Second,
	})
	t.Cleanup(func() { _ = srv.Client.CancelWorkflow(context.Background(), id, "") })
	st := rn.waitGate(id, workflows.GateDiskReplaced, 3*time.Minute)
	require.Contains(t, strings.Join(st.Plan, "\n"), "failed", "the plan says the device failed")
	require.Empty(t, diskState(t)["mounted_from"], "unmounted before the gate")
	require.NotContains(t, mustRead(t, "/proc/self/mounts"), " "+mp+" ")

	// The requester may not approve the destructive gate alone.
	ctxA, cancel := context.WithTimeout(ctx, 30*time.Second)
	_, err = control.Approve(ctxA, srv.Client, id, workflows.GateDecisionRequest{Gate: workflows.GateDiskReplaced, By: "alice"}, as(t, "alice"))
	cancel()
	require.True(t, control.IsRefused(err), "two-person rule: %v", err)

	// A person swaps the disk: a new block device behind /dev/sdd, which came with an ext4 file
	// system (a used disk): the runbook asks before it overwrites it.
	loop := lab(t, "LABFAIL", "disk-new", diskNode, diskDev)
	t.Logf("new disk: %s", loop)
	out, err := exec.Command("mkfs.ext4", "-q", "-F", "-L", "olddata", loop).CombinedOutput()
	require.NoError(t, err, "test setup: a used disk: %s", out)
	rn.approve(id, workflows.GateDiskReplaced, "bob")
	st = rn.waitGate(id, workflows.GateOverwriteDisk, 2*time.Minute)
	require.Contains(t, st.OpenGates[len(st.OpenGates)-1].Summary, "ext4")
	require.Equal(t, "ext4", blkidType(loop), "nothing written before the overwrite gate")
	rn.approve(id, workflows.GateOverwriteDisk, "bob")

	// SIGKILL the worker once the disk is formatted (mount, restart or refill running).
	st = rn.waitFor(id, 2*time.Minute, "format done", func(st workflows.Status) bool {
		return slices.Contains([]string{"mount", "restart-services", "refill"}, st.CurrentStep)
	})
	uuidAtKill := blkidUUID(t, "/dev/"+diskDev)
	require.NotEmpty(t, uuidAtKill, "formatted before the kill")
	t.Logf("SIGKILL the worker at step %s (UUID %s)", st.CurrentStep, uuidAtKill)
	require.NoError(t, worker.Process.Signal(syscall.SIGKILL))
	_, _ = worker.Process.Wait()
	startWorker(t, cfgPath, srv)

	rep = rn.report(id, 8*time.Minute)
	require.Equal(t, workflows.StatusCompleted, rep.Status, "%s: %+v", rep.Summary, rep.Steps)
	require.Equal(t, "xfs", blkidType("/dev/"+diskDev), "the ext4 was overwritten after the gate")
	t.Logf("report: %s", rep.Summary)
	for _, s := range rep.Steps {
		t.Logf("  %-18s %-8s %s", s.Name, s.State, s.Detail)
	}
	require.Equal(t, uuidAtKill, blkidUUID(t, "/dev/"+diskDev), "the disk was not formatted again after the crash")
	formats := 0
	for _, a := range rep.Audit {
		if a.Activity == "FormatDisk" {
			formats++
		}
	}
	require.Equal(t, 1, formats, "one completed format")
	require.Equal(t, "mounted", diskState(t)["state"])
	require.Positive(t, countData(mp), "the new disk was refilled by replication")
	// The fill level, read from the disks themselves: of the partitions the object ring gives
	// sdd that another of their replica holders has, sdd holds at least 95%.
	cov := diskCoverage(t, cfg, diskNode, diskDev)
	t.Logf("fill level of %s/%s: %d of %d partitions (%d assigned)", diskNode, diskDev, cov.Have, cov.Expected, cov.Assigned)
	require.Positive(t, cov.Expected)
	require.GreaterOrEqual(t, float64(cov.Have), 0.95*float64(cov.Expected), "refilled to its share")
	fstabEntry := mustRead(t, cfg.Swift.Fstab)
	require.Contains(t, fstabEntry, "UUID="+uuidAtKill+" "+mp+" xfs noatime,nofail 0 0", "mounted through an fstab entry by UUID")
	require.Equal(t, 1, strings.Count(fstabEntry, " "+mp+" "), "one entry for the mount point")
	t.Logf("objects on %s: %d before the failure, %d after the refill", mp, before, countData(mp))
	readAll("after the replacement")
	md := report.Markdown(rep)
	require.Contains(t, md, "refill")
	require.Contains(t, md, workflows.GateDiskReplaced)
}

// diskCoverage compares the partition directories on the lab's disks with the object ring on
// the node (read locally: the lab's hosts share this machine).
func diskCoverage(t *testing.T, cfg *config.Config, node, dev string) activities.PartitionCoverage {
	t.Helper()
	n := cfg.Swift.Nodes[node]
	data, err := os.ReadFile(filepath.Join(n.SwiftDir, "object.ring.gz"))
	require.NoError(t, err)
	ra, err := activities.ParseRingFile(data)
	require.NoError(t, err)
	ipOf := map[string]string{}
	for name := range cfg.Swift.Nodes {
		ipOf[name] = cfg.Inventory[name].Address
		if r := cfg.Swift.Nodes[name].RingIP; r != "" {
			ipOf[name] = r
		}
	}
	parts := func(node, dev string) map[int]bool {
		out := map[int]bool{}
		ents, _ := os.ReadDir(filepath.Join(cfg.Swift.Nodes[node].DevicesDir, dev, "objects"))
		for _, e := range ents {
			if p, err := strconv.Atoi(e.Name()); err == nil {
				out[p] = true
			}
		}
		return out
	}
	id := ra.DeviceID(ipOf[node], dev)
	require.GreaterOrEqual(t, id, 0, "%s/%s in the object ring", node, dev)
	peers := map[int]map[int]bool{}
	for name, sn := range cfg.Swift.Nodes {
		for d := range sn.Devices {
			if i := ra.DeviceID(ipOf[name], d); i >= 0 && i != id {
				peers[i] = parts(name, d)
			}
		}
	}
	return activities.CoverPartitions(ra.PartitionsOf(id), parts(node, dev), peers)
}

func mustRead(t *testing.T, p string) string {
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	return string(b)
}
