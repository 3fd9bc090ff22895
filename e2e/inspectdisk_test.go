//go:build e2e

package e2e

// inspect-disk on the lab (issue 14): a real server on compute1 (the fake virt driver keeps no
// disk, so the test puts a qcow2 holding an ext4 file system where Nova's instance directory says
// the disk is), the real worker exposing it over SSH with qemu-storage-daemon, Nova suspending and
// resuming. Each scenario checks, on the host itself, that nothing is left mounted, attached or
// exported, that the instance is ACTIVE, and that the image's SHA-256 is unchanged.
// abort-while-exposed holds the run where it cannot go on without the test: it asks for a file
// with a bad cluster (EIO), so the collect step stalls with the disk exposed and mounted, and the
// test cancels only then (it used to cancel after polling for the expose step, and raced the run).
// Signed approvals are pending (trust); gates are approved as the other e2e tests do.

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/instanceactions"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/config"
	"github.com/stackrun/stackrun/internal/app/control"
	"github.com/stackrun/stackrun/workflows"
)

const inspectFstab = "UUID=e2e0 / ext4 errors=remount-ro 0 1\n"

type inspectLab struct {
	*novaLab
	id      string // the server
	image   string // its disk, as Nova's instance directory names it
	work    string // the worker's inspect_disk.work_dir/<uuid>
	sum     string // SHA-256 of the image at the start
	env     []string
	started time.Time
}

// newInspectLab boots one server on compute1 and puts a qcow2 disk where Nova's instance
// directory says its disk is.
func newInspectLab(t *testing.T) *inspectLab {
	t.Helper()
	cfg, err := config.Load(config.LoadOptions{Path: labConfig(t)})
	require.NoError(t, err)
	lab := requireLab(t)
	// Until the lab's stackrun.yaml is written by a lab/up.sh that knows inspect_disk, the worker
	// gets the settings the new lab/lib/stackrun_yaml.sh writes.
	gates := cfg.Policy.TwoPersonGates
	if !slices.Contains(gates, workflows.GateDataAccess) {
		gates = append(slices.Clone(gates), workflows.GateDataAccess)
	}
	env := []string{
		"STACKRUN_INSPECT_DISK_INSTANCES_PATH=" + filepath.Join(lab.Dir, "hosts", "{host}", "data", "nova", "instances"),
		"STACKRUN_POLICY_TWO_PERSON_GATES=" + strings.Join(gates, ","),
	}
	l := &inspectLab{novaLab: newNovaLab(t, env...), env: env, started: time.Now()}
	l.id = l.boot("inspect", "compute1", 1)[0]

	dir := filepath.Join(lab.Dir, "hosts", "compute1", "data", "nova", "instances", l.id)
	require.NoError(t, os.MkdirAll(dir, 0o755))
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	l.image = filepath.Join(dir, "disk")
	l.work = filepath.Join(config.DefaultInspectWorkDir, l.id)
	t.Cleanup(l.sweep)

	writeGuestImage(t, l.image)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "disk.info"), []byte(fmt.Sprintf(`{%q: "qcow2"}`, l.image)), 0o644))
	l.sum = fileSHA256(t, l.image)
	return l
}

// writeGuestImage writes the guest's disk: a compressed qcow2 holding an ext4 file system with
// the files the scenarios read (and /srv/unreadable, one cluster of which is bad).
func writeGuestImage(t *testing.T, image string) {
	t.Helper()
	root := filepath.Join(t.TempDir(), "guest")
	for _, d := range []string{"etc", "var/log", "srv"} {
		require.NoError(t, os.MkdirAll(filepath.Join(root, d), 0o755))
	}
	require.NoError(t, os.WriteFile(filepath.Join(root, "etc/fstab"), []byte(inspectFstab), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(root, "etc/hostname"), []byte("broken-vm\n"), 0o644))
	var log strings.Builder
	for i := 0; log.Len() < 100_000; i++ {
		fmt.Fprintf(&log, "Dec  1 08:00:%02d broken-vm kernel: EXT4-fs error %d\n", i%60, i)
	}
	require.NoError(t, os.WriteFile(filepath.Join(root, "var/log/syslog"), []byte(log.String()), 0o644))
	require.NoError(t, os.Symlink("/etc/shadow", filepath.Join(root, "etc/evil")))
	require.NoError(t, os.Symlink("../../../../../../../../../etc/shadow", filepath.Join(root, "etc/evil2")))
	require.NoError(t, os.Symlink("/", filepath.Join(root, "srv/hostroot")))
	var bad strings.Builder
	for i := 0; bad.Len() < unreadableSize; i++ {
		fmt.Fprintf(&bad, "sector %07d of a file on a bad spot of the disk\n", i)
	}
	require.NoError(t, os.WriteFile(filepath.Join(root, unreadablePath[1:]), []byte(bad.String()[:unreadableSize]), 0o644))
	raw := filepath.Join(t.TempDir(), "guest.raw")
	run := func(name string, args ...string) string {
		out, err := exec.Command(name, args...).CombinedOutput()
		require.NoError(t, err, "%s %v: %s", name, args, out)
		return string(out)
	}
	run("mkfs.ext4", "-q", "-F", "-b", "4096", "-e", "continue", "-d", root, raw, "32M")
	// Compressed, so that one cluster of /srv/unreadable can be made unreadable (badCluster).
	run("qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", raw, image)
	off, n := fileExtent(t, run("debugfs", "-R", "stat "+unreadablePath, raw))
	badCluster(t, image, off, n)
}

// unreadablePath is a file of the guest one of whose clusters reads as an I/O error (a bad spot
// of the disk): a collection that asks for it fails on every attempt, and its step stalls with
// the disk exposed and mounted until an operator (the test) decides.
const (
	unreadablePath = "/srv/unreadable"
	unreadableSize = 1 << 20
)

// fileExtent reads a file's only extent (byte offset and length in the image) from debugfs's stat.
func fileExtent(t *testing.T, stat string) (off, length int64) {
	t.Helper()
	m := regexp.MustCompile(`(?m)^EXTENTS:\n\(0-(\d+)\):(\d+)-(\d+)\s*$`).FindStringSubmatch(stat)
	require.NotNil(t, m, "%s is not one extent (mkfs.ext4 -d writes it contiguously): %s", unreadablePath, stat)
	last, _ := strconv.ParseInt(m[1], 10, 64)
	first, _ := strconv.ParseInt(m[2], 10, 64)
	return first * 4096, (last + 1) * 4096
}

// badCluster garbles the compressed data of the first qcow2 cluster that lies wholly inside
// the extent (off, length) of the guest: QEMU's zlib decompression then fails and every read of
// that cluster gives EIO (for a compressed cluster the image is not marked corrupt, so every other
// cluster still reads). The rest of the image is left as it is.
func badCluster(t *testing.T, image string, off, length int64) {
	t.Helper()
	f, err := os.OpenFile(image, os.O_RDWR, 0)
	require.NoError(t, err)
	defer f.Close()
	u64 := func(at int64) uint64 {
		b := make([]byte, 8)
		_, err := f.ReadAt(b, at)
		require.NoError(t, err)
		return binary.BigEndian.Uint64(b)
	}
	hdr := make([]byte, 48)
	_, err = f.ReadAt(hdr, 0)
	require.NoError(t, err)
	require.Equal(t, "QFI\xfb", string(hdr[:4]), "not a qcow2 image")
	bits := int64(binary.BigEndian.Uint32(hdr[20:24]))
	size, l1 := int64(1)<<bits, int64(binary.BigEndian.Uint64(hdr[40:48]))
	guest := (off + size - 1) / size * size
	require.LessOrEqual(t, guest+size, off+length, "%s has no whole cluster", unreadablePath)
	require.Less(t, guest-off, int64(workflows.DefaultInspectMaxBytes), "the bad cluster is within the bytes a collection reads")
	cluster, perL2 := guest/size, size/8
	l2 := int64(u64(l1+8*(cluster/perL2)) & 0x00fffffffffffe00)
	require.NotZero(t, l2, "no L2 table for guest offset %d", guest)
	entry := u64(l2 + 8*(cluster%perL2))
	require.NotZero(t, entry&(1<<62), "the cluster at guest offset %d is not compressed (L2 entry %#x)", guest, entry)
	host := int64(entry & (1<<(62-(bits-8)) - 1))
	_, err = f.WriteAt(bytes.Repeat([]byte{0xff}, 64), host) // deflate: "invalid block type"
	require.NoError(t, err)
}

func fileSHA256(t *testing.T, p string) string {
	t.Helper()
	f, err := os.Open(p)
	require.NoError(t, err)
	defer f.Close()
	h := sha256.New()
	_, err = io.Copy(h, f)
	require.NoError(t, err)
	return hex.EncodeToString(h.Sum(nil))
}

// leftovers lists what of an inspection of this instance is on the host: mounts under its work
// directory, loop devices over files there, live qemu-storage-daemons exporting there.
func (l *inspectLab) leftovers() []string {
	var out []string
	mounts, _ := os.ReadFile("/proc/self/mounts")
	for _, line := range strings.Split(string(mounts), "\n") {
		if f := strings.Fields(line); len(f) > 1 && strings.HasPrefix(f[1], l.work+"/") {
			out = append(out, "mount "+f[1])
		}
	}
	loops, _ := exec.Command("losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE").Output()
	for _, line := range strings.Split(string(loops), "\n") {
		if f := strings.Fields(line); len(f) == 2 && (strings.HasPrefix(f[1], l.work+"/") || f[1] == l.image) {
			out = append(out, "loop "+line)
		}
	}
	ps, _ := exec.Command("pgrep", "--list-full", "qemu-storage").Output()
	for _, line := range strings.Split(string(ps), "\n") {
		if strings.Contains(line, l.work+"/") {
			out = append(out, "daemon "+line)
		}
	}
	return out
}

// sweep removes leftovers of a failed scenario so that the next one (and the lab) start clean.
func (l *inspectLab) sweep() {
	for _, s := range l.leftovers() {
		f := strings.Fields(s)
		switch f[0] {
		case "mount":
			_ = exec.Command("umount", "-l", f[1]).Run()
		case "loop":
			_ = exec.Command("losetup", "-d", f[1]).Run()
		case "daemon":
			_ = exec.Command("kill", "-9", f[1]).Run()
		}
	}
	_ = exec.Command("umount", "-l", filepath.Join(l.work, "export.raw")).Run()
}

// givenBack checks the end state of every scenario that got past the gate.
func (l *inspectLab) givenBack(rep *workflows.Report) {
	t := l.t
	t.Helper()
	assert.Empty(t, l.leftovers(), "nothing left mounted, attached or exported")
	_, err := os.Stat(l.work)
	assert.True(t, os.IsNotExist(err), "the work directory %s is gone: %v", l.work, err)
	s := l.waitServer(l.id, func(s *servers.Server) bool { return s.Status == "ACTIVE" && s.TaskState == "" }, time.Minute, "ACTIVE")
	assert.Equal(t, "ACTIVE", s.Status)
	assert.Contains(t, rep.LeftState, "is ACTIVE; nothing of its disk is mounted, attached or exported")
	assert.Equal(t, l.sum, fileSHA256(t, l.image), "the image was not written")
}

// actions lists the Nova instance actions of the server since the scenario started.
func (l *inspectLab) actions(since time.Time) []string {
	ctx, cancel := l.ctx()
	defer cancel()
	pages, err := instanceactions.List(l.cl.Compute, l.id, nil).AllPages(ctx)
	require.NoError(l.t, err)
	all, err := instanceactions.ExtractInstanceActions(pages)
	require.NoError(l.t, err)
	var out []string
	for _, a := range all {
		// Nova keeps whole seconds: an action of this subtest starts at or after since's second.
		if !a.StartTime.Before(since.UTC().Truncate(time.Second)) {
			out = append(out, a.Action)
		}
	}
	slices.Sort(out)
	return out
}

func (l *inspectLab) input(maxBytes int, paths ...string) *workflows.InspectDiskInput {
	return &workflows.InspectDiskInput{Meta: workflows.Meta{RequestedBy: "alice", Reason: "e2e: instance does not boot"}, Instance: l.id, Paths: paths, MaxBytes: maxBytes}
}

// atGate starts a run and waits for the data-access gate.
func (l *inspectLab) atGate(in *workflows.InspectDiskInput) string {
	id := l.start("inspect-disk", in)
	st := l.waitFor(id, 2*time.Minute, "gate data-access", func(st workflows.Status) bool {
		return len(st.OpenGates) == 1 && st.OpenGates[0].Name == workflows.GateDataAccess
	})
	require.True(l.t, st.OpenGates[0].Destructive, "data-access is two-person")
	require.Contains(l.t, st.OpenGates[0].Summary, in.Reason)
	assert.Empty(l.t, l.leftovers(), "nothing exposed before the gate")
	assert.Equal(l.t, "ACTIVE", l.server(l.id).Status, "nothing suspended before the gate")
	return id
}

func files(t *testing.T, rep *workflows.Report) map[string]activities.GuestFile {
	t.Helper()
	var list []activities.GuestFile
	b, err := json.Marshal(rep.Details["files"])
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &list))
	out := map[string]activities.GuestFile{}
	for _, f := range list {
		out[f.Path] = f
	}
	return out
}

func TestInspectDiskOnLab(t *testing.T) {
	l := newInspectLab(t)
	timed := func(name string, fn func(t *testing.T)) {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			l.novaLab.t = t
			fn(t)
			t.Logf("%s took %s", name, time.Since(start).Round(100*time.Millisecond))
		})
	}

	timed("happy-path", func(t *testing.T) {
		// A second apart from the previous subtest's last action (Nova's times are whole seconds).
		time.Sleep(1100 * time.Millisecond)
		since := time.Now()
		id := l.atGate(l.input(0, "/etc/fstab", "/etc/hostname"))
		// The requester may not approve a two-person gate.
		ctx, cancel := l.ctx()
		_, err := control.Approve(ctx, l.srv.Client, id, workflows.GateDecisionRequest{Gate: workflows.GateDataAccess, By: "alice", Via: "cli"}, as(t, "alice"))
		cancel()
		require.ErrorContains(t, err, "may not approve")
		l.approve(id, workflows.GateDataAccess, "bob")
		rep := l.report(id, 5*time.Minute)
		require.Equal(t, workflows.StatusCompleted, rep.Status, "%s\nsteps: %+v", rep.Summary, rep.Steps)
		assert.Equal(t, "2 of 2 file(s) read (0 over the cap), 0 missing, 0 refused", rep.Summary)
		fs := files(t, rep)
		sum := sha256.Sum256([]byte(inspectFstab))
		assert.Equal(t, inspectFstab, fs["/etc/fstab"].Content)
		assert.Equal(t, hex.EncodeToString(sum[:]), fs["/etc/fstab"].SHA256)
		assert.Equal(t, "broken-vm\n", fs["/etc/hostname"].Content)
		assert.Equal(t, "bob", rep.Decisions[0].By)
		l.givenBack(rep)
		assert.Equal(t, []string{"resume", "suspend"}, l.actions(since), "suspended and resumed through Nova")
	})

	timed("missing-and-over-cap", func(t *testing.T) {
		id := l.atGate(l.input(4096, "/etc/nonexistent", "/var/log/syslog"))
		l.approve(id, workflows.GateDataAccess, "bob")
		rep := l.report(id, 5*time.Minute)
		require.Equal(t, workflows.StatusCompleted, rep.Status, rep.Summary)
		fs := files(t, rep)
		assert.Equal(t, activities.FileMissing, fs["/etc/nonexistent"].Status)
		syslog := fs["/var/log/syslog"]
		assert.Equal(t, activities.FileOverCap, syslog.Status)
		assert.Len(t, syslog.Content, 4096)
		assert.Greater(t, syslog.Size, int64(4096))
		assert.Equal(t, "file", syslog.SHA256Of)
		l.givenBack(rep)
	})

	timed("hostile-paths", func(t *testing.T) {
		// Refused before anything starts: the CLI's validation names the field.
		many := make([]string, 10_000)
		for i := range many {
			many[i] = fmt.Sprintf("/var/log/f%d", i)
		}
		for field, paths := range map[string][]string{
			"path": many, "path[0]": {"../../etc/shadow"}, "path[1]": {"/etc/fstab", "/etc/../../etc/shadow"},
			"path[2]": {"/a", "/b", "/etc/fstab\x00"}, "path[3]": {"/a", "/b", "/c", "/etc/fs\ntab"},
		} {
			ctx, cancel := l.ctx()
			rb, _ := workflows.FindRunbook("inspect-disk")
			_, err := control.Start(ctx, l.srv.Client, l.cfg.Temporal.TaskQueue, rb, l.input(0, paths...), as(t, "alice"))
			cancel()
			require.ErrorIs(t, err, control.ErrInvalidInput, field)
			assert.True(t, strings.Contains(err.Error(), field+" ") || strings.Contains(err.Error(), field+":"), "%s: %v", field, err)
		}
		// Sent to the workflow directly, signed (as a client other than the CLI could): the run
		// ends as invalid input before it looks at anything.
		hostile := l.input(0, many...)
		wid := "inspect-disk/hostile-" + l.id
		st, err := control.StartStatement(wid, hostile)
		require.NoError(t, err)
		sig, err := as(t, "alice").Sign(st)
		require.NoError(t, err)
		ctx, cancel := l.ctx()
		run, err := l.srv.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: wid, TaskQueue: l.cfg.Temporal.TaskQueue,
			Memo: map[string]any{control.MemoStartSignature: sig}}, workflows.InspectDisk.Type, *hostile)
		cancel()
		require.NoError(t, err)
		rep := l.report(run.GetID(), time.Minute)
		assert.Equal(t, workflows.StatusFailed, rep.Status)
		assert.Contains(t, rep.Summary, "invalid input")
		assert.Contains(t, rep.Summary, "path:")
		assert.Empty(t, rep.Audit, "no activity ran")

		// Symlinks in the image that point outside it are contained.
		id := l.atGate(l.input(0, "/etc/evil", "/etc/evil2", "/srv/hostroot/etc/shadow", "/etc/fstab"))
		l.approve(id, workflows.GateDataAccess, "bob")
		rep = l.report(id, 5*time.Minute)
		require.Equal(t, workflows.StatusCompleted, rep.Status, rep.Summary)
		fs := files(t, rep)
		shadow, _ := os.ReadFile("/etc/shadow")
		for _, p := range []string{"/etc/evil", "/etc/evil2", "/srv/hostroot/etc/shadow"} {
			assert.Equal(t, activities.FileRefused, fs[p].Status, p)
			assert.Contains(t, fs[p].Detail, "outside the guest", p)
			assert.Empty(t, fs[p].Content+fs[p].ContentBase64, p)
		}
		raw, _ := json.Marshal(rep)
		if len(shadow) > 20 {
			assert.NotContains(t, string(raw), strings.SplitN(string(shadow), "\n", 2)[0], "the host's /etc/shadow is nowhere in the report")
		}
		assert.Equal(t, inspectFstab, fs["/etc/fstab"].Content)
		l.givenBack(rep)
	})

	timed("reject-at-gate", func(t *testing.T) {
		// A second apart from the previous subtest's last action (Nova's times are whole seconds).
		time.Sleep(1100 * time.Millisecond)
		since := time.Now()
		id := l.atGate(l.input(0, "/etc/fstab"))
		ctx, cancel := l.ctx()
		_, err := control.Reject(ctx, l.srv.Client, id, workflows.GateDecisionRequest{Gate: workflows.GateDataAccess, By: "bob", Comment: "no ticket", Via: "cli"}, as(t, "bob"))
		cancel()
		require.NoError(t, err)
		rep := l.report(id, time.Minute)
		assert.Equal(t, workflows.StatusAborted, rep.Status)
		assert.Empty(t, l.leftovers())
		assert.Equal(t, "ACTIVE", l.server(l.id).Status)
		assert.Empty(t, l.actions(since), "the instance was not touched")
		assert.Equal(t, l.sum, fileSHA256(t, l.image))
	})

	timed("abort-while-exposed", func(t *testing.T) {
		// The collection cannot read /srv/unreadable (EIO): the collect step fails on every
		// attempt and then stalls, the disk exposed and mounted. A stalled step waits for an
		// operator: the run cannot leave this state before the test's cancel arrives.
		id := l.atGate(l.input(0, "/etc/fstab", unreadablePath))
		l.approve(id, workflows.GateDataAccess, "bob")
		st := l.waitFor(id, 3*time.Minute, "collect stalled", func(st workflows.Status) bool { return len(st.Stalled) > 0 })
		require.Equal(t, "collect", st.Stalled[0].Step, "%+v", st.Stalled)
		require.Contains(t, st.Stalled[0].Error, "Input/output error")
		left := l.leftovers()
		for _, kind := range []string{"mount ", "loop ", "daemon "} {
			require.True(t, slices.ContainsFunc(left, func(s string) bool { return strings.HasPrefix(s, kind) }), "%sbefore the cancel: %v", kind, left)
		}
		require.Equal(t, "SUSPENDED", l.server(l.id).Status, "suspended before the cancel")
		ctx, cancel := l.ctx()
		require.NoError(t, l.srv.Client.CancelWorkflow(ctx, id, ""))
		cancel()
		rep := l.report(id, 5*time.Minute)
		assert.Equal(t, workflows.StatusAborted, rep.Status, rep.Summary)
		assert.Contains(t, rep.Summary, "cancelled")
		assert.Nil(t, rep.Details["files"], "nothing collected")
		collect := stepByName(rep, "collect")
		require.NotNil(t, collect)
		assert.Equal(t, workflows.StepFailed, collect.State, "the report shows no stalled step in a finished run")
		assert.Equal(t, "cancelled while stalled", collect.Detail)
		l.givenBack(rep)
	})

	timed("worker-killed-after-expose", func(t *testing.T) {
		id := l.atGate(l.input(0, "/etc/fstab", "/etc/hostname"))
		l.approve(id, workflows.GateDataAccess, "bob")
		l.waitStep(id, "expose", 3*time.Minute)
		require.NoError(t, l.worker.Process.Kill()) // SIGKILL
		_, _ = l.worker.Process.Wait()
		left := l.leftovers()
		assert.NotEmpty(t, left, "the disk is exposed while no worker runs")
		t.Logf("left exposed by the dead worker: %v", left)
		l.worker = startWorker(t, l.cfgPath, l.srv, l.env...)
		rep := l.report(id, 5*time.Minute)
		require.Equal(t, workflows.StatusCompleted, rep.Status, "%s\nsteps: %+v", rep.Summary, rep.Steps)
		assert.Equal(t, inspectFstab, files(t, rep)["/etc/fstab"].Content, "the new worker finished the collection")
		l.givenBack(rep)
	})
}

// waitStep polls the run (every 100 ms, so that the test acts right after the step) until the
// step is done.
func (l *inspectLab) waitStep(id, step string, timeout time.Duration) {
	l.t.Helper()
	end := time.Now().Add(timeout)
	for time.Now().Before(end) {
		st := l.status(id)
		if stepState(st, step) == workflows.StepDone {
			return
		}
		require.NotContains(l.t, []workflows.RunStatus{workflows.StatusCompleted, workflows.StatusFailed, workflows.StatusAborted}, st.Status, "run ended before %s: %+v", step, st.Steps)
		time.Sleep(100 * time.Millisecond)
	}
	l.t.Fatalf("step %s of %s not done within %s", step, id, timeout)
}

func stepState(st workflows.Status, name string) workflows.StepState {
	for _, s := range st.Steps {
		if s.Name == name {
			return s.State
		}
	}
	return workflows.StepPending
}
