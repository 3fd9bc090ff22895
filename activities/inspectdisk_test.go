package activities_test

// The inspect-disk activities against real parts: a real sshd (internal/testenv/sshd) on
// loopback, real qemu-img / qemu-storage-daemon / losetup / mount run as root over SSH, images
// built with qemu-img and mkfs.ext4 -d, and gophercloud's fake server standing in for Nova. The
// image's SHA-256 is compared before and after every scenario.

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	th "github.com/gophercloud/gophercloud/v2/testhelper"
	fakeclient "github.com/gophercloud/gophercloud/v2/testhelper/client"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/internal/infra/openstack"
	"github.com/stackrun/stackrun/internal/infra/remote"
	"github.com/stackrun/stackrun/internal/testenv/sshd"
)

const inspectUUID = "6f1c2a34-5b6d-4e7f-8091-a2b3c4d5e6f7"

// fakeNova serves one server whose status follows the power actions it receives.
type fakeNova struct {
	mu      sync.Mutex
	status  string
	actions []string
}

func (n *fakeNova) serve(t *testing.T, fake th.FakeServer) {
	fake.Mux.HandleFunc("/servers/"+inspectUUID, func(w http.ResponseWriter, r *http.Request) {
		n.mu.Lock()
		defer n.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"server": {"id": %q, "name": "broken-vm", "status": %q, "OS-EXT-SRV-ATTR:host": "compute1",
			"OS-EXT-STS:task_state": null, "OS-EXT-STS:vm_state": %q}}`, inspectUUID, n.status, strings.ToLower(n.status))
	})
	fake.Mux.HandleFunc("/servers/"+inspectUUID+"/action", func(w http.ResponseWriter, r *http.Request) {
		n.mu.Lock()
		defer n.mu.Unlock()
		b, _ := io.ReadAll(r.Body)
		var m map[string]any
		require.NoError(t, json.Unmarshal(b, &m))
		next := map[string]map[string]string{
			"suspend": {"ACTIVE": "SUSPENDED"}, "resume": {"SUSPENDED": "ACTIVE"},
			"os-stop": {"ACTIVE": "SHUTOFF"}, "os-start": {"SHUTOFF": "ACTIVE"},
		}
		for k := range m {
			to, ok := next[k][n.status]
			if !ok {
				w.WriteHeader(http.StatusConflict)
				fmt.Fprintf(w, `{"conflictingRequest": {"code": 409, "message": "Cannot '%s' instance while it is %s"}}`, k, n.status)
				return
			}
			n.actions = append(n.actions, k)
			n.status = to
		}
		w.WriteHeader(http.StatusAccepted)
	})
}

// slowLog logs every command that takes more than a second, and every command with
// INSPECT_TRACE=1 (where the test's time goes: each SSH command costs about 0.1 s here).
type slowLog struct {
	t *testing.T
	r activities.Runner
}

func (s slowLog) Run(ctx context.Context, h remote.Host, cmd remote.Command) (remote.Result, error) {
	start := time.Now()
	res, err := s.r.Run(ctx, h, cmd)
	if os.Getenv("INSPECT_TRACE") != "" {
		s.t.Logf("%s %s", time.Since(start).Round(time.Millisecond), cmd.String())
	}
	if d := time.Since(start); d > time.Second {
		s.t.Logf("slow: %s took %s", cmd.String(), d.Round(time.Millisecond))
	}
	return res, err
}

type inspectRig struct {
	t       *testing.T
	dir     string
	disk    string // the instance's image
	env     *testsuite.TestActivityEnvironment
	d       *activities.DiskInspector
	nova    *fakeNova
	sumDisk string
}

// requireTools fails (never skips) when the machine lacks what the inspection needs.
func requireTools(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the inspect-disk activity tests need root (losetup, mount)")
	}
	for _, tool := range []string{"qemu-img", "qemu-storage-daemon", "mkfs.ext4", "sfdisk", "losetup", "blkid"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed: run `make deps` (qemu-utils qemu-system-common fdisk e2fsprogs)", tool)
		}
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	require.NoError(t, err, "%s %v: %s", name, args, out)
	return string(out)
}

func sha256File(t *testing.T, p string) string {
	t.Helper()
	f, err := os.Open(p)
	require.NoError(t, err)
	defer f.Close()
	h := sha256.New()
	_, err = io.Copy(h, f)
	require.NoError(t, err)
	return hex.EncodeToString(h.Sum(nil))
}

// guestTree writes the guest's files: known text, a file over any small cap, binary bytes,
// symlinks inside and pointing out, a directory, a FIFO.
func guestTree(t *testing.T, root string) (binary []byte) {
	t.Helper()
	for _, d := range []string{"etc", "var/log", "bin", "srv/data"} {
		require.NoError(t, os.MkdirAll(filepath.Join(root, d), 0o755))
	}
	require.NoError(t, os.WriteFile(filepath.Join(root, "etc/fstab"), []byte("UUID=0b6f / ext4 errors=remount-ro 0 1\n"), 0o644))
	var log strings.Builder
	for i := 0; log.Len() < 200_000; i++ {
		fmt.Fprintf(&log, "Dec  1 08:%02d:%02d broken-vm kernel: line %d\n", i/60%60, i%60, i)
	}
	require.NoError(t, os.WriteFile(filepath.Join(root, "var/log/syslog"), []byte(log.String()), 0o644))
	binary = make([]byte, 3000)
	_, _ = rand.Read(binary)
	binary[0] = 0xff // never valid UTF-8
	require.NoError(t, os.WriteFile(filepath.Join(root, "bin/blob"), binary, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(root, "etc/empty"), nil, 0o644))
	require.NoError(t, os.Symlink("/etc/shadow", filepath.Join(root, "etc/evil")))
	require.NoError(t, os.Symlink("../../../../../../../../../../etc/shadow", filepath.Join(root, "etc/evil2")))
	require.NoError(t, os.Symlink("fstab", filepath.Join(root, "etc/fstab.link")))
	require.NoError(t, os.Symlink("/", filepath.Join(root, "srv/hostroot")))
	require.NoError(t, os.Symlink("loop2", filepath.Join(root, "etc/loop1")))
	require.NoError(t, os.Symlink("loop1", filepath.Join(root, "etc/loop2")))
	run(t, "mkfifo", filepath.Join(root, "srv/fifo"))
	return binary
}

// newInspectRig builds a qcow2 (or raw) instance disk in <dir>/hosts/compute1/instances/<uuid>,
// a real sshd, and the inspector wired to both.
func newInspectRig(t *testing.T, format string, settings activities.DiskInspectSettings, image func(t *testing.T, root, raw string)) *inspectRig {
	t.Helper()
	requireTools(t)
	dir := t.TempDir()
	root := filepath.Join(dir, "guest")
	raw := filepath.Join(dir, "guest.raw")
	guestTree(t, root)
	if image == nil {
		image = func(t *testing.T, root, raw string) {
			run(t, "mkfs.ext4", "-q", "-F", "-L", "guestroot", "-d", root, raw, "48M")
		}
	}
	image(t, root, raw)
	inst := filepath.Join(dir, "hosts", "compute1", "instances", inspectUUID)
	require.NoError(t, os.MkdirAll(inst, 0o755))
	disk := filepath.Join(inst, "disk")
	if format == "qcow2" {
		run(t, "qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, disk)
	} else {
		require.NoError(t, os.Rename(raw, disk))
	}
	require.NoError(t, os.WriteFile(filepath.Join(inst, "disk.info"), []byte(fmt.Sprintf(`{%q: %q}`, disk, format)), 0o644))

	srv := sshd.Start(t, sshd.WithLoopback("127.0.0.71"))
	pool, err := remote.NewPool(remote.Options{User: srv.User, KeyFile: srv.UserKeyFile, KnownHostsFile: srv.KnownHostsFile,
		ConnectTimeout: 5 * time.Second, CommandTimeout: 30 * time.Second, MaxOutputBytes: 1 << 20})
	require.NoError(t, err)
	t.Cleanup(func() { pool.Close() })
	cat, err := remote.NewCatalogue(nil, nil, nil)
	require.NoError(t, err)

	fake := th.SetupHTTP()
	t.Cleanup(fake.Teardown)
	nova := &fakeNova{status: "ACTIVE"}
	nova.serve(t, fake)
	sc := fakeclient.ServiceClient(fake)
	sc.Type, sc.Microversion = "compute", openstack.DefaultComputeMicroversion
	cl := &openstack.Clients{Compute: sc}

	if settings.InstancesPath == "" {
		settings.InstancesPath = filepath.Join(dir, "hosts", "{host}", "instances")
	}
	if settings.WorkDir == "" {
		settings.WorkDir = filepath.Join(dir, "work")
	}
	d := &activities.DiskInspector{
		Hosts: &activities.Hosts{
			Inventory: map[string]activities.InventoryHost{"compute1": {Address: srv.IP, Port: srv.Port, Roles: []string{"compute"}}},
			Runner:    slowLog{t, pool}, Catalogue: cat,
		},
		Compute:  &activities.Compute{Clients: func(context.Context) (*openstack.Clients, error) { return cl, nil }, PollInterval: 50 * time.Millisecond},
		Settings: settings,
		Poll:     200 * time.Millisecond,
	}
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	env.RegisterActivity(d)
	r := &inspectRig{t: t, dir: dir, disk: disk, env: env, d: d, nova: nova, sumDisk: sha256File(t, disk)}
	t.Cleanup(r.sweep)
	return r
}

// sweep is the safety net of a failed test: whatever of the inspection is still there goes,
// so that loop devices and FUSE mounts never outlive the test.
func (r *inspectRig) sweep() {
	mounts, _ := os.ReadFile("/proc/self/mounts")
	for _, line := range strings.Split(string(mounts), "\n") {
		if f := strings.Fields(line); len(f) > 1 && strings.HasPrefix(f[1], r.dir) && strings.HasSuffix(f[1], "/mnt") {
			_ = exec.Command("umount", "-l", f[1]).Run()
		}
	}
	out, _ := exec.Command("losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE").Output()
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) == 2 && strings.HasPrefix(f[1], r.dir) {
			_ = exec.Command("losetup", "-d", f[0]).Run()
		}
	}
	pids, _ := filepath.Glob(filepath.Join(r.dir, "work", "*", "qsd.pid"))
	for _, p := range pids {
		if b, err := os.ReadFile(p); err == nil {
			_ = exec.Command("kill", "-9", strings.TrimSpace(string(b))).Run()
		}
	}
	for _, line := range strings.Split(string(mounts), "\n") {
		if f := strings.Fields(line); len(f) > 1 && strings.HasPrefix(f[1], r.dir) && strings.HasSuffix(f[1], "export.raw") {
			_ = exec.Command("umount", "-l", f[1]).Run()
		}
	}
}

// call runs one activity in the test activity environment and decodes its result.
func call[T any](r *inspectRig, fn any, args ...any) (T, error) {
	var out T
	val, err := r.env.ExecuteActivity(fn, args...)
	if err != nil {
		return out, err
	}
	return out, val.Get(&out)
}

func (r *inspectRig) world(loc activities.DiskLocation) activities.DiskWorld {
	w, err := call[activities.DiskWorld](r, r.d.DiskInspectionState, loc)
	require.NoError(r.t, err)
	return w
}

func errType(err error) string {
	var app *temporal.ApplicationError
	if errors.As(err, &app) {
		return app.Type()
	}
	return ""
}

func (r *inspectRig) locate() activities.DiskLocation {
	loc, err := call[activities.DiskLocation](r, r.d.LocateInstanceDisk, inspectUUID)
	require.NoError(r.t, err)
	return loc
}

func (r *inspectRig) exposeAndMount(loc activities.DiskLocation) activities.DiskExposure {
	exp, err := call[activities.DiskExposure](r, r.d.ExposeInstanceDisk, loc)
	require.NoError(r.t, err)
	_, err = call[activities.DiskMountResult](r, r.d.MountGuestFS, activities.DiskMountRequest{Location: loc, Exposure: exp})
	require.NoError(r.t, err)
	return exp
}

func (r *inspectRig) takeDown(loc activities.DiskLocation) {
	_, err := call[activities.DiskUnmountResult](r, r.d.UnmountGuestFS, loc)
	require.NoError(r.t, err)
	_, err = call[activities.DiskDetachResult](r, r.d.DetachInstanceDisk, loc)
	require.NoError(r.t, err)
	w := r.world(loc)
	assert.True(r.t, w.Clean(), "nothing left: %+v", w)
	assert.Equal(r.t, r.sumDisk, sha256File(r.t, r.disk), "the disk was not written")
}

func TestInspectDiskQcow2(t *testing.T) {
	r := newInspectRig(t, "qcow2", activities.DiskInspectSettings{}, nil)
	binary, _ := os.ReadFile(filepath.Join(r.dir, "guest", "bin", "blob"))
	loc := r.locate()
	assert.Equal(t, "compute1", loc.Host)
	assert.Equal(t, "qcow2", loc.Format)
	assert.Equal(t, "disk.info", loc.FormatFrom)
	assert.Equal(t, int64(48<<20), loc.VirtualSize)
	assert.Equal(t, activities.MethodQSD, loc.Method)

	p, err := call[activities.PowerResult](r, r.d.SuspendInstance, activities.PowerRequest{Instance: inspectUUID, Mode: activities.PauseSuspend})
	require.NoError(t, err)
	assert.Equal(t, activities.PowerResult{Instance: inspectUUID, Before: "ACTIVE", After: "SUSPENDED", Acted: true}, p)
	p, err = call[activities.PowerResult](r, r.d.SuspendInstance, activities.PowerRequest{Instance: inspectUUID, Mode: activities.PauseSuspend})
	require.NoError(t, err)
	assert.False(t, p.Acted, "already suspended: nothing asked")

	exp := r.exposeAndMount(loc)
	assert.Equal(t, "ext4", exp.FSType)
	assert.Equal(t, 0, exp.Partition)
	w := r.world(loc)
	assert.True(t, w.Exported && w.Mounted && w.DaemonPID > 0, "%+v", w)
	assert.Contains(t, strings.Split(w.MountOptions, ","), "ro")
	assert.Contains(t, strings.Split(w.MountOptions, ","), "nodev")

	// A retry after a crash finds everything in place and does not expose twice.
	exp2, err := call[activities.DiskExposure](r, r.d.ExposeInstanceDisk, loc)
	require.NoError(t, err)
	assert.True(t, exp2.Reused)
	assert.Equal(t, exp.Loop, exp2.Loop)
	m, err := call[activities.DiskMountResult](r, r.d.MountGuestFS, activities.DiskMountRequest{Location: loc, Exposure: exp2})
	require.NoError(t, err)
	assert.True(t, m.Reused)
	assert.Len(t, r.world(loc).Loops, 1)

	files, err := call[[]activities.GuestFile](r, r.d.ReadGuestFiles, activities.GuestFileRequest{Location: loc, MaxBytes: 64 << 10, Paths: []string{
		"/etc/fstab", "/var/log/syslog", "/bin/blob", "/etc/empty", "/etc/fstab.link", "/etc/nonexistent",
		"/etc/evil", "/etc/evil2", "/srv/hostroot/etc/passwd", "/srv/fifo", "/srv/data", "/etc/loop1",
	}})
	require.NoError(t, err)
	by := map[string]activities.GuestFile{}
	for _, f := range files {
		by[f.Path] = f
	}
	fstab := "UUID=0b6f / ext4 errors=remount-ro 0 1\n"
	sum := sha256.Sum256([]byte(fstab))
	assert.Equal(t, activities.GuestFile{Path: "/etc/fstab", Status: "ok", Size: int64(len(fstab)), SHA256: hex.EncodeToString(sum[:]), SHA256Of: "file",
		Content: fstab, Bytes: int64(len(fstab))}, by["/etc/fstab"])
	assert.Equal(t, fstab, by["/etc/fstab.link"].Content, "a symlink inside the guest is followed")
	assert.Equal(t, "symlink to /etc/fstab", by["/etc/fstab.link"].Detail)

	syslog := by["/var/log/syslog"]
	assert.Equal(t, "over-cap", syslog.Status)
	assert.True(t, syslog.Truncated)
	assert.Equal(t, int64(64<<10), syslog.Bytes)
	assert.Len(t, syslog.Content, 64<<10)
	assert.Greater(t, syslog.Size, int64(64<<10))
	assert.Equal(t, sha256File(t, filepath.Join(r.dir, "guest", "var/log/syslog")), syslog.SHA256, "SHA-256 of the whole file")

	blob, err := base64.StdEncoding.DecodeString(by["/bin/blob"].ContentBase64)
	require.NoError(t, err)
	assert.Equal(t, binary, blob)
	assert.Empty(t, by["/bin/blob"].Content)
	assert.Equal(t, "ok", by["/etc/empty"].Status)
	assert.Equal(t, "missing", by["/etc/nonexistent"].Status)
	assert.Contains(t, by["/etc/nonexistent"].Detail, "No such file")
	for _, p := range []string{"/etc/evil", "/etc/evil2", "/srv/hostroot/etc/passwd"} {
		assert.Equal(t, "refused", by[p].Status, p)
		assert.Contains(t, by[p].Detail, "outside the guest", p)
		assert.Empty(t, by[p].Content+by[p].ContentBase64, p)
	}
	assert.Equal(t, "refused", by["/srv/fifo"].Status)
	assert.Contains(t, by["/srv/fifo"].Detail, "fifo")
	assert.Equal(t, "refused", by["/srv/data"].Status)
	assert.Contains(t, by["/srv/data"].Detail, "directory")
	assert.Equal(t, "missing", by["/etc/loop1"].Status)
	assert.Contains(t, by["/etc/loop1"].Detail, "symbolic links")

	r.takeDown(loc)
	// Twice: the compensation steps find nothing and succeed.
	r.takeDown(loc)
	_, err = call[[]activities.GuestFile](r, r.d.ReadGuestFiles, activities.GuestFileRequest{Location: loc, MaxBytes: 100, Paths: []string{"/etc/fstab"}})
	assert.Equal(t, "Refused", errType(err), "nothing is read from an unmounted mount point: %v", err)

	p, err = call[activities.PowerResult](r, r.d.ResumeInstance, activities.PowerRequest{Instance: inspectUUID, Mode: activities.PauseSuspend})
	require.NoError(t, err)
	assert.Equal(t, "ACTIVE", p.After)
	assert.Equal(t, []string{"suspend", "resume"}, r.nova.actions)
}

// The daemon dies (SIGKILL) while the file system is mounted: reads give EIO, and the take-down
// still removes the mount, the loop device and the stale FUSE mount. A new exposure after a
// half-finished one starts clean.
func TestInspectDiskDaemonKilled(t *testing.T) {
	r := newInspectRig(t, "qcow2", activities.DiskInspectSettings{}, nil)
	loc := r.locate()
	r.exposeAndMount(loc)
	w := r.world(loc)
	require.NotZero(t, w.DaemonPID)
	killDead(t, w.DaemonPID)
	require.True(t, r.world(loc).Stale)
	d, err := call[activities.DiskDetachResult](r, r.d.DetachInstanceDisk, loc)
	assert.Equal(t, "StillThere", errType(err), "detach refuses while mounted: %v %+v", err, d)
	r.takeDown(loc)

	// Half an exposure: the daemon runs, no loop device. Then a stale export without daemon.
	_, err = call[activities.DiskExposure](r, r.d.ExposeInstanceDisk, loc)
	require.NoError(t, err)
	w = r.world(loc)
	run(t, "losetup", "-d", w.Loops[0].Name)
	killDead(t, w.DaemonPID)
	require.True(t, r.world(loc).Stale)
	exp := r.exposeAndMount(loc)
	assert.False(t, exp.Reused)
	files, err := call[[]activities.GuestFile](r, r.d.ReadGuestFiles, activities.GuestFileRequest{Location: loc, MaxBytes: 100, Paths: []string{"/etc/fstab"}})
	require.NoError(t, err)
	assert.Equal(t, "ok", files[0].Status)
	r.takeDown(loc)
}

// killDead sends SIGKILL and waits (locally, without SSH round trips) until the process is gone
// or a zombie.
func killDead(t *testing.T, pid int) {
	t.Helper()
	run(t, "kill", "-9", fmt.Sprint(pid))
	require.Eventually(t, func() bool {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return true
		}
		i := strings.LastIndexByte(string(b), ')')
		return i > 0 && len(b) > i+2 && (b[i+2] == 'Z' || b[i+2] == 'X')
	}, 10*time.Second, 20*time.Millisecond)
}

// A writer holds the image (as a running QEMU would): the export is refused with DiskInUse.
func TestInspectDiskInUse(t *testing.T) {
	r := newInspectRig(t, "qcow2", activities.DiskInspectSettings{}, nil)
	loc := r.locate()
	holder := filepath.Join(r.dir, "holder.raw")
	require.NoError(t, os.WriteFile(holder, nil, 0o600))
	pidfile := filepath.Join(r.dir, "holder.pid")
	run(t, "qemu-storage-daemon", "--blockdev", "driver=file,node-name=f,filename="+r.disk, "--blockdev", "driver=qcow2,node-name=d,file=f",
		"--export", "type=fuse,id=e,node-name=d,mountpoint="+holder+",writable=on", "--pidfile", pidfile, "--daemonize")
	t.Cleanup(func() {
		if b, err := os.ReadFile(pidfile); err == nil {
			_ = exec.Command("kill", strings.TrimSpace(string(b))).Run()
			time.Sleep(300 * time.Millisecond)
		}
	})
	_, err := call[activities.DiskExposure](r, r.d.ExposeInstanceDisk, loc)
	require.Error(t, err)
	assert.Equal(t, "DiskInUse", errType(err), "%v", err)
	assert.Contains(t, err.Error(), "lock")
	b, _ := os.ReadFile(pidfile)
	run(t, "kill", strings.TrimSpace(string(b)))
	require.Eventually(t, func() bool { _, err := os.Stat(pidfile); return os.IsNotExist(err) }, 10*time.Second, 100*time.Millisecond)
	r.sumDisk = sha256File(t, r.disk) // the writer was the test's, not the inspection's
	_, err = call[activities.DiskDetachResult](r, r.d.DetachInstanceDisk, loc)
	require.NoError(t, err)
	assert.True(t, r.world(loc).Clean())
}

// A raw disk with a GPT partition table, through the daemon (driver=raw) and directly (method
// loop): the partition becomes a loop device with an offset.
func TestInspectDiskRawPartitioned(t *testing.T) {
	partitioned := func(t *testing.T, root, raw string) {
		fs := raw + ".fs"
		run(t, "mkfs.ext4", "-q", "-F", "-d", root, fs, "40M")
		require.NoError(t, os.WriteFile(raw, nil, 0o644))
		require.NoError(t, os.Truncate(raw, 48<<20))
		cmd := exec.Command("sfdisk", "-q", raw)
		cmd.Stdin = strings.NewReader("label: gpt\nstart=2048, size=1024, type=21686148-6449-6E6F-744E-656564454649\nstart=4096, size=81920, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n")
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, string(out))
		run(t, "dd", "if="+fs, "of="+raw, "bs=512", "seek=4096", "conv=notrunc", "status=none")
	}
	for _, method := range []string{activities.MethodQSD, activities.MethodLoop} {
		t.Run(method, func(t *testing.T) {
			r := newInspectRig(t, "raw", activities.DiskInspectSettings{Method: method}, partitioned)
			loc := r.locate()
			assert.Equal(t, "raw", loc.Format)
			exp := r.exposeAndMount(loc)
			assert.Equal(t, 2, exp.Partition)
			assert.Equal(t, int64(4096*512), exp.Offset)
			files, err := call[[]activities.GuestFile](r, r.d.ReadGuestFiles, activities.GuestFileRequest{Location: loc, MaxBytes: 1000, Paths: []string{"/etc/fstab", "/etc/evil"}})
			require.NoError(t, err)
			assert.Equal(t, "ok", files[0].Status)
			assert.Contains(t, files[0].Content, "UUID=0b6f")
			assert.Equal(t, "refused", files[1].Status)
			r.takeDown(loc)
		})
	}
}

func TestInspectDiskRefusals(t *testing.T) {
	r := newInspectRig(t, "qcow2", activities.DiskInspectSettings{}, nil)
	// A backing file outside Nova's instance directory is not Nova's: refused before anything.
	other := filepath.Join(r.dir, "elsewhere.qcow2")
	run(t, "qemu-img", "convert", "-O", "qcow2", r.disk, other)
	require.NoError(t, os.Remove(r.disk))
	run(t, "qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", other, r.disk)
	_, err := call[activities.DiskLocation](r, r.d.LocateInstanceDisk, inspectUUID)
	assert.Equal(t, "Refused", errType(err), "%v", err)
	assert.Contains(t, err.Error(), "backing file")

	require.NoError(t, os.Remove(r.disk))
	_, err = call[activities.DiskLocation](r, r.d.LocateInstanceDisk, inspectUUID)
	assert.Equal(t, "NotFound", errType(err), "%v", err)
	_, err = call[activities.DiskLocation](r, r.d.LocateInstanceDisk, "../../etc")
	assert.Equal(t, "InvalidInput", errType(err))

	loc := activities.DiskLocation{Instance: inspectUUID, Host: "compute1", Method: activities.MethodQSD,
		Work: filepath.Join(r.dir, "work", inspectUUID), Export: filepath.Join(r.dir, "work", inspectUUID, "export.raw"),
		MountPoint: filepath.Join(r.dir, "work", inspectUUID, "mnt")}
	many := make([]string, 10_000)
	for i := range many {
		many[i] = fmt.Sprintf("/etc/f%d", i)
	}
	for _, paths := range [][]string{many, {"../../etc/shadow"}, {"/etc/../../etc/shadow"}, {"/etc/fstab\x00"}, {"/etc/fs\ntab"}, {"/"}, {"/etc/$(id)"}, {"/etc//fstab"}} {
		_, err := call[[]activities.GuestFile](r, r.d.ReadGuestFiles, activities.GuestFileRequest{Location: loc, MaxBytes: 10, Paths: paths})
		assert.Equal(t, "InvalidInput", errType(err), "%.60q: %v", paths, err)
	}
	_, err = call[[]activities.GuestFile](r, r.d.ReadGuestFiles, activities.GuestFileRequest{Location: loc, MaxBytes: 600 << 10, Paths: []string{"/etc/fstab"}})
	assert.Equal(t, "InvalidInput", errType(err))
	bad := loc
	bad.MountPoint = "/"
	_, err = call[activities.DiskUnmountResult](r, r.d.UnmountGuestFS, bad)
	assert.Equal(t, "InvalidInput", errType(err), "a location LocateInstanceDisk did not make")
}
