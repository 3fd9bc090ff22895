package activities

import (
	"context"
	"encoding/json"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/stackrun/stackrun/internal/infra/placeholder"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/stackrun/stackrun/internal/infra/remote"
)

// DiskInspector looks inside an instance's disk on its compute host, read-only
// (docs/disk-inspection.md): it exposes the image through qemu-storage-daemon's read-only FUSE
// export (or, for raw images, directly) as a read-only loop device, mounts the guest file system
// ro,noload, reads capped files, and takes everything down again. Every step reads the host's
// state first (DiskWorld), so a retry after a worker crash neither exposes twice nor leaves
// anything behind; no step writes the disk.
type DiskInspector struct {
	Hosts    *Hosts
	Compute  *Compute
	Settings DiskInspectSettings
	// Poll is the interval of the waits (default 1 s; Nova waits use Compute's).
	Poll time.Duration
	// Heartbeat is how often a collection heartbeats while its commands run (default a quarter
	// of the activity's heartbeat timeout, at most 5 s).
	Heartbeat time.Duration
}

// Error types of the inspection (besides InvalidInput, NotFound and Refused).
const (
	// ErrTypeDiskInUse: QEMU's lock says a running guest (or another writer) has the disk open.
	ErrTypeDiskInUse = "DiskInUse"
	// ErrTypeStillThere: a take-down step ran but the host still shows what it should have removed.
	ErrTypeStillThere = "StillThere"
)

var (
	reUUID = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	reLoop = regexp.MustCompile(`^/dev/loop[0-9]{1,6}$`)
)

// ValidInstanceID reports whether s is a Nova instance UUID in its canonical (lower-case) form.
func ValidInstanceID(s string) bool { return reUUID.MatchString(s) }

func (d *DiskInspector) settings() DiskInspectSettings {
	s := d.Settings
	if s.InstancesPath == "" {
		s.InstancesPath = "/var/lib/nova/instances"
	}
	if s.WorkDir == "" {
		s.WorkDir = "/run/stackrun/inspect"
	}
	if s.Pause == "" {
		s.Pause = PauseSuspend
	}
	if s.Method == "" {
		s.Method = MethodQSD
	}
	if s.DefaultFormat == "" {
		s.DefaultFormat = "qcow2"
	}
	if s.HashLimit <= 0 {
		s.HashLimit = 256 << 20
	}
	return s
}

func (d *DiskInspector) poll() time.Duration {
	if d.Poll > 0 {
		return d.Poll
	}
	return time.Second
}

func invalid(format string, args ...any) error {
	return temporal.NewNonRetryableApplicationError(fmt.Sprintf(format, args...), ErrTypeInvalidInput, nil)
}

func refused(format string, args ...any) error {
	return temporal.NewNonRetryableApplicationError(fmt.Sprintf(format, args...), ErrTypeRefused, nil)
}

// cmd runs a catalogue command through Hosts.run (validated arguments, cut output refused); the
// host's first role picks role overrides. A heartbeat per command: a dead worker's attempt is
// retried elsewhere within the heartbeat timeout, and a cancelled run's attempt stops at its next
// command.
func (d *DiskInspector) cmd(ctx context.Context, host, name string, args map[string]string, list ...string) (remote.Result, error) {
	if d.Hosts == nil || d.Hosts.Runner == nil || d.Hosts.Catalogue == nil {
		return remote.Result{}, temporal.NewNonRetryableApplicationError("SSH is "+errNotConfigured.Error(), ErrTypeRefused, nil)
	}
	inv, _, err := d.Hosts.lookup(host)
	if err != nil {
		return remote.Result{}, err
	}
	role := ""
	if len(inv.Roles) > 0 {
		role = inv.Roles[0]
	}
	if activity.IsActivity(ctx) {
		recordHeartbeat(ctx, name)
	}
	return d.Hosts.run(ctx, host, role, name, args, list...)
}

// must runs a command that has to succeed.
func (d *DiskInspector) must(ctx context.Context, host, name string, args map[string]string, list ...string) (remote.Result, error) {
	res, err := d.cmd(ctx, host, name, args, list...)
	if err != nil {
		return res, err
	}
	if !res.OK() {
		return res, fmt.Errorf("%s on %s: exit %d: %s", name, host, res.ExitCode, strings.TrimSpace(res.Stderr+" "+res.Stdout))
	}
	return res, nil
}

// LocateInstanceDisk finds the instance's compute host and disk file and how it will be exposed.
// It changes nothing: the disk is read with qemu-img's --force-share, so the instance may run.
func (d *DiskInspector) LocateInstanceDisk(ctx context.Context, id string) (DiskLocation, error) {
	if !ValidInstanceID(id) {
		return DiskLocation{}, invalid("instance %q: not an instance UUID (lower-case 8-4-4-4-12 hex)", id)
	}
	s := d.settings()
	if s.Method != MethodQSD && s.Method != MethodLoop {
		return DiskLocation{}, invalid("inspect_disk.method %q: must be %s or %s", s.Method, MethodQSD, MethodLoop)
	}
	if s.Pause != PauseSuspend && s.Pause != PauseStop {
		return DiskLocation{}, invalid("inspect_disk.pause %q: must be %s or %s", s.Pause, PauseSuspend, PauseStop)
	}
	cl, err := d.Compute.clients(ctx)
	if err != nil {
		return DiskLocation{}, err
	}
	in, err := getInstance(ctx, cl, id)
	if err != nil {
		return DiskLocation{}, err
	}
	if in.Host == "" {
		return DiskLocation{}, refused("instance %s (%s) has no compute host (status %s): nothing to inspect", id, in.Name, in.Status)
	}
	if _, _, err := d.Hosts.lookup(in.Host); err != nil {
		return DiskLocation{}, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("instance %s runs on %s, which is not in the inventory", id, in.Host), ErrTypeNotFound, err)
	}
	root := strings.ReplaceAll(s.InstancesPath, "{host}", in.Host)
	dir := root + "/" + id
	work := s.WorkDir + "/" + id
	loc := DiskLocation{
		Instance: id, Name: in.Name, Host: in.Host, Status: in.Status, TaskState: in.TaskState,
		Disk: dir + "/disk", Method: s.Method, Pause: s.Pause,
		Work: work, Export: work + "/export.raw", PIDFile: work + "/qsd.pid", MountPoint: work + "/mnt",
	}
	for k, p := range map[string]string{"instances_path": dir, "work_dir": work} {
		if err := remote.ValidateArg(placeholder.KindPath, p); err != nil {
			return DiskLocation{}, invalid("inspect_disk.%s gives %s: %v", k, p, err)
		}
	}

	// The disk must be a regular file.
	res, err := d.cmd(ctx, in.Host, "guest_stat", nil, loc.Disk)
	if err != nil {
		return DiskLocation{}, err
	}
	st, _ := parseStat(res.Stdout)
	f, ok := st[loc.Disk]
	if !ok {
		return DiskLocation{}, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("the disk of instance %s is not at %s on %s (%s): is the instance file-backed (not volume-backed), and is inspect_disk.instances_path right?",
				id, loc.Disk, in.Host, strings.TrimSpace(res.Stderr)), ErrTypeNotFound, nil)
	}
	if !isRegular(f.Type) {
		return DiskLocation{}, refused("%s on %s is a %s, not an image file", loc.Disk, in.Host, f.Type)
	}
	loc.FileSize = f.Size

	// Nova records the format in disk.info; without it, the configured default. The format is
	// never probed from the image's content: a guest can write a qcow2 header into a raw disk.
	loc.Format, loc.FormatFrom = s.DefaultFormat, "default"
	info, err := d.cmd(ctx, in.Host, "file_head", map[string]string{"bytes": "4096", "path": dir + "/disk.info"})
	if err != nil {
		return DiskLocation{}, err
	}
	if info.OK() {
		var m map[string]string
		if err := json.Unmarshal([]byte(info.Stdout), &m); err != nil {
			return DiskLocation{}, refused("%s/disk.info on %s is not Nova's JSON: %v", dir, in.Host, err)
		}
		for k, v := range m {
			if path.Base(k) == "disk" {
				loc.Format, loc.FormatFrom = v, "disk.info"
			}
		}
	}
	if loc.Format != "qcow2" && loc.Format != "raw" {
		return DiskLocation{}, refused("the disk of %s is %q (%s): only qcow2 and raw can be inspected", id, loc.Format, loc.FormatFrom)
	}
	if loc.Method == MethodLoop {
		if loc.Format != "raw" {
			return DiskLocation{}, refused("inspect_disk.method loop exposes raw images only; %s is %s (use %s)", loc.Disk, loc.Format, MethodQSD)
		}
		loc.Export = loc.Disk
	}

	// Size and backing chain (read-only, no lock taken).
	res, err = d.must(ctx, in.Host, "image_info_"+loc.Format, map[string]string{"image": loc.Disk})
	if err != nil {
		return DiskLocation{}, err
	}
	type imgInfo struct {
		Filename    string `json:"filename"`
		Format      string `json:"format"`
		VirtualSize int64  `json:"virtual-size"`
		Backing     string `json:"full-backing-filename"`
	}
	var chain []imgInfo
	if loc.Format == "qcow2" {
		err = json.Unmarshal([]byte(res.Stdout), &chain)
	} else {
		var one imgInfo
		err = json.Unmarshal([]byte(res.Stdout), &one)
		chain = []imgInfo{one}
	}
	if err != nil || len(chain) == 0 {
		return DiskLocation{}, fmt.Errorf("qemu-img info %s on %s: unreadable answer: %v", loc.Disk, in.Host, err)
	}
	loc.VirtualSize = chain[0].VirtualSize
	for _, b := range chain[1:] {
		// Nova's backing files live in <instances_path>/_base; anything else is not Nova's.
		if !strings.HasPrefix(b.Filename, root+"/") {
			return DiskLocation{}, refused("the disk of %s has the backing file %s, outside %s: refusing to open it", id, b.Filename, root)
		}
		loc.Backing = append(loc.Backing, b.Filename)
	}
	return loc, nil
}

// DiskInspectionState reads what of the inspection exists on the host now.
func (d *DiskInspector) DiskInspectionState(ctx context.Context, loc DiskLocation) (DiskWorld, error) {
	if err := checkLocation(loc); err != nil {
		return DiskWorld{}, err
	}
	return d.world(ctx, loc)
}

func checkLocation(loc DiskLocation) error {
	if !ValidInstanceID(loc.Instance) || loc.Host == "" || loc.MountPoint != loc.Work+"/mnt" ||
		(loc.Method == MethodQSD && loc.Export != loc.Work+"/export.raw") || (loc.Method == MethodLoop && loc.Export != loc.Disk) {
		return invalid("disk location %+v: not one LocateInstanceDisk made", loc)
	}
	return nil
}

func (d *DiskInspector) world(ctx context.Context, loc DiskLocation) (DiskWorld, error) {
	var w DiskWorld
	res, err := d.must(ctx, loc.Host, "mount_list", nil)
	if err != nil {
		return w, err
	}
	for _, line := range strings.Split(res.Stdout, "\n") {
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		switch f[1] {
		case loc.MountPoint:
			w.Mounted, w.MountSource, w.MountOptions = true, f[0], f[3]
		case loc.Export:
			if loc.Method == MethodQSD {
				w.Exported = true
			}
		}
	}
	loops, err := d.loops(ctx, loc)
	if err != nil {
		return w, err
	}
	w.Loops = loops
	if loc.Method == MethodQSD {
		pid, err := d.daemon(ctx, loc)
		if err != nil {
			return w, err
		}
		w.DaemonPID = pid
		w.Stale = w.Exported && pid == 0
	}
	return w, nil
}

// loops lists the loop devices whose backing file is the exported view (or the raw disk).
func (d *DiskInspector) loops(ctx context.Context, loc DiskLocation) ([]LoopDevice, error) {
	res, err := d.cmd(ctx, loc.Host, "loop_list", nil)
	if err != nil {
		return nil, err
	}
	if !res.OK() {
		return nil, fmt.Errorf("losetup --list on %s: exit %d: %s", loc.Host, res.ExitCode, strings.TrimSpace(res.Stderr))
	}
	if strings.TrimSpace(res.Stdout) == "" { // no loop device at all
		return nil, nil
	}
	var out struct {
		Devices []LoopDevice `json:"loopdevices"`
	}
	if err := json.Unmarshal([]byte(res.Stdout), &out); err != nil {
		return nil, fmt.Errorf("losetup --list on %s: %w", loc.Host, err)
	}
	var mine []LoopDevice
	for _, l := range out.Devices {
		if l.BackFile == loc.Export {
			mine = append(mine, l)
		}
	}
	slices.SortFunc(mine, func(a, b LoopDevice) int { return strings.Compare(a.Name, b.Name) })
	return mine, nil
}

// daemon returns the PID of the live qemu-storage-daemon that serves loc.Export, or 0. It asks
// pgrep rather than trusting the PID file: after a SIGKILL the file stays and its PID may be
// reused, and a zombie (PID 1 reaps slowly here) has no command line to match.
func (d *DiskInspector) daemon(ctx context.Context, loc DiskLocation) (int, error) {
	res, err := d.cmd(ctx, loc.Host, "daemon_list", nil)
	if err != nil {
		return 0, err
	}
	if res.ExitCode == 1 { // none
		return 0, nil
	}
	if !res.OK() {
		return 0, fmt.Errorf("pgrep on %s: exit %d: %s", loc.Host, res.ExitCode, strings.TrimSpace(res.Stderr))
	}
	for _, line := range strings.Split(res.Stdout, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || path.Base(f[1]) != "qemu-storage-daemon" {
			continue
		}
		if slices.ContainsFunc(f[2:], func(a string) bool { return strings.Contains(a, "mountpoint="+loc.Export+",") }) {
			pid, err := strconv.Atoi(f[0])
			if err == nil && pid > 1 {
				return pid, nil
			}
		}
	}
	return 0, nil
}
