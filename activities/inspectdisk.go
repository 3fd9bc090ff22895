package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/stackrun/stackrun/internal/infra/placeholder"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

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
		activity.RecordHeartbeat(ctx, name)
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

// ExposeInstanceDisk makes the disk available as a read-only loop device. Already exposed (a retry):
// the existing loop device is returned. A stale export (its daemon died) is taken down first.
func (d *DiskInspector) ExposeInstanceDisk(ctx context.Context, loc DiskLocation) (DiskExposure, error) {
	if err := checkLocation(loc); err != nil {
		return DiskExposure{}, err
	}
	w, err := d.world(ctx, loc)
	if err != nil {
		return DiskExposure{}, err
	}
	if loc.Method == MethodQSD {
		if w.Stale || (!w.Exported && w.DaemonPID != 0) {
			// Half an exposure from an earlier attempt: take it down, then start over.
			if _, err := d.UnmountGuestFS(ctx, loc); err != nil {
				return DiskExposure{}, err
			}
			if _, err := d.DetachInstanceDisk(ctx, loc); err != nil {
				return DiskExposure{}, err
			}
			w = DiskWorld{}
		}
		if !w.Exported {
			if err := d.export(ctx, loc); err != nil {
				return DiskExposure{}, err
			}
		}
	}
	if w, err = d.world(ctx, loc); err != nil {
		return DiskExposure{}, err
	}
	if loc.Method == MethodQSD && (!w.Exported || w.DaemonPID == 0) {
		return DiskExposure{}, fmt.Errorf("export of %s on %s: not there after starting qemu-storage-daemon", loc.Disk, loc.Host)
	}
	exp := DiskExposure{DaemonPID: w.DaemonPID}
	for _, l := range w.Loops {
		if !l.RO {
			// Never ours: every loop device this inspector attaches is read-only.
			return DiskExposure{}, refused("%s on %s is attached read-write to %s by someone else: refusing to touch it", l.Name, loc.Host, loc.Export)
		}
	}
	if len(w.Loops) > 0 {
		l := w.Loops[0]
		exp.Loop, exp.Offset, exp.SizeLimit, exp.Reused = l.Name, l.Offset, l.SizeLimit, true
	} else {
		part, off, size, err := d.chooseFS(ctx, loc)
		if err != nil {
			return DiskExposure{}, err
		}
		args := map[string]string{"path": loc.Export}
		name := "loop_attach_ro"
		if off > 0 || size > 0 {
			name = "loop_attach_ro_at"
			args["offset"], args["size"] = strconv.FormatInt(off, 10), strconv.FormatInt(size, 10)
		}
		res, err := d.must(ctx, loc.Host, name, args)
		if err != nil {
			return DiskExposure{}, err
		}
		dev := strings.TrimSpace(res.Stdout)
		if !reLoop.MatchString(dev) {
			return DiskExposure{}, fmt.Errorf("losetup on %s answered %q, not a loop device", loc.Host, dev)
		}
		exp.Loop, exp.Partition, exp.Offset, exp.SizeLimit = dev, part, off, size
	}
	// Verify what the kernel says: attached to our file, read-only.
	loops, err := d.loops(ctx, loc)
	if err != nil {
		return DiskExposure{}, err
	}
	i := slices.IndexFunc(loops, func(l LoopDevice) bool { return l.Name == exp.Loop })
	if i < 0 || !loops[i].RO {
		return DiskExposure{}, fmt.Errorf("%s on %s: not attached read-only to %s after losetup", exp.Loop, loc.Host, loc.Export)
	}
	fs, err := d.probe(ctx, loc.Host, exp.Loop, "", "")
	if err != nil {
		return DiskExposure{}, err
	}
	if !supportedFS(fs["TYPE"]) {
		return DiskExposure{}, refused("%s (%s on %s) holds %q: only ext2/3/4 and xfs are mounted", exp.Loop, loc.Disk, loc.Host, fs["TYPE"])
	}
	exp.FSType = fs["TYPE"]
	return exp, nil
}

// export starts qemu-storage-daemon with a read-only FUSE export of the image.
func (d *DiskInspector) export(ctx context.Context, loc DiskLocation) error {
	if _, err := d.must(ctx, loc.Host, "mkdir", map[string]string{"path": loc.Work}); err != nil {
		return err
	}
	if _, err := d.must(ctx, loc.Host, "file_touch", map[string]string{"path": loc.Export}); err != nil {
		return err
	}
	res, err := d.cmd(ctx, loc.Host, "inspect_export_"+loc.Format, map[string]string{"image": loc.Disk, "mountpoint": loc.Export, "pidfile": loc.PIDFile})
	if err != nil {
		return err
	}
	if !res.OK() {
		msg := strings.TrimSpace(res.Stderr + " " + res.Stdout)
		if strings.Contains(msg, "lock") {
			return temporal.NewApplicationError(fmt.Sprintf("%s on %s is in use (a running guest?): %s", loc.Disk, loc.Host, msg), ErrTypeDiskInUse)
		}
		return fmt.Errorf("qemu-storage-daemon for %s on %s: exit %d: %s", loc.Disk, loc.Host, res.ExitCode, msg)
	}
	return nil
}

func supportedFS(t string) bool { return slices.Contains([]string{"ext2", "ext3", "ext4", "xfs"}, t) }

// probe runs blkid --probe (optionally at an offset) and returns its KEY=VALUE pairs; nothing
// found is an empty map.
func (d *DiskInspector) probe(ctx context.Context, host, file, off, size string) (map[string]string, error) {
	name, args := "fs_probe", map[string]string{"path": file}
	if off != "" {
		name, args["offset"], args["size"] = "fs_probe_at", off, size
	}
	res, err := d.cmd(ctx, host, name, args)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	if res.ExitCode == 2 { // blkid: nothing recognised
		return out, nil
	}
	if !res.OK() {
		return nil, fmt.Errorf("blkid %s on %s: exit %d: %s", file, host, res.ExitCode, strings.TrimSpace(res.Stderr))
	}
	for _, line := range strings.Split(res.Stdout, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok {
			out[k] = v
		}
	}
	return out, nil
}

// chooseFS finds the guest file system: the whole disk, or the largest partition holding a
// supported one. This kernel has no partition parsers, so partitions become loop devices with
// an offset and a size limit.
func (d *DiskInspector) chooseFS(ctx context.Context, loc DiskLocation) (part int, off, size int64, err error) {
	whole, err := d.probe(ctx, loc.Host, loc.Export, "", "")
	if err != nil {
		return 0, 0, 0, err
	}
	if supportedFS(whole["TYPE"]) {
		return 0, 0, 0, nil
	}
	if whole["PTTYPE"] == "" {
		return 0, 0, 0, refused("%s on %s has neither a supported file system nor a partition table (found %q)", loc.Disk, loc.Host, whole["TYPE"])
	}
	res, err := d.must(ctx, loc.Host, "partition_table", map[string]string{"path": loc.Export})
	if err != nil {
		return 0, 0, 0, err
	}
	var pt struct {
		Table struct {
			SectorSize int64 `json:"sectorsize"`
			Partitions []struct {
				Start int64 `json:"start"`
				Size  int64 `json:"size"`
			} `json:"partitions"`
		} `json:"partitiontable"`
	}
	if err := json.Unmarshal([]byte(res.Stdout), &pt); err != nil {
		return 0, 0, 0, fmt.Errorf("sfdisk --json %s on %s: %w", loc.Export, loc.Host, err)
	}
	ss := pt.Table.SectorSize
	if ss <= 0 {
		ss = 512
	}
	var found []string
	for i, p := range pt.Table.Partitions {
		o, s := p.Start*ss, p.Size*ss
		fs, err := d.probe(ctx, loc.Host, loc.Export, strconv.FormatInt(o, 10), strconv.FormatInt(s, 10))
		if err != nil {
			return 0, 0, 0, err
		}
		found = append(found, fmt.Sprintf("%d:%s", i+1, fs["TYPE"]))
		if supportedFS(fs["TYPE"]) && s > size {
			part, off, size = i+1, o, s
		}
	}
	if part == 0 {
		return 0, 0, 0, refused("%s on %s: no partition holds a supported file system (%s)", loc.Disk, loc.Host, strings.Join(found, ", "))
	}
	return part, off, size, nil
}

// MountGuestFS mounts the exposed file system read-only (ext4 without replaying its journal, XFS
// without log recovery; nosuid, nodev, noexec). Already mounted from this exposure: nothing to do.
func (d *DiskInspector) MountGuestFS(ctx context.Context, req DiskMountRequest) (DiskMountResult, error) {
	loc, exp := req.Location, req.Exposure
	if err := checkLocation(loc); err != nil {
		return DiskMountResult{}, err
	}
	if !reLoop.MatchString(exp.Loop) {
		return DiskMountResult{}, invalid("exposure loop %q: not a loop device", exp.Loop)
	}
	w, err := d.world(ctx, loc)
	if err != nil {
		return DiskMountResult{}, err
	}
	if !slices.ContainsFunc(w.Loops, func(l LoopDevice) bool { return l.Name == exp.Loop && l.RO }) {
		return DiskMountResult{}, refused("%s on %s is no longer attached read-only to %s: expose the disk again", exp.Loop, loc.Host, loc.Export)
	}
	if w.Mounted {
		if w.MountSource == exp.Loop && hasOption(w.MountOptions, "ro") {
			return DiskMountResult{MountPoint: loc.MountPoint, Options: w.MountOptions, Reused: true}, nil
		}
		return DiskMountResult{}, refused("%s on %s has %s mounted (%s), not %s read-only", loc.MountPoint, loc.Host, w.MountSource, w.MountOptions, exp.Loop)
	}
	var name string
	switch exp.FSType {
	case "ext2", "ext3", "ext4":
		name = "mount_ro_ext4"
	case "xfs":
		name = "mount_ro_xfs"
	default:
		return DiskMountResult{}, refused("file system %q: only ext2/3/4 and xfs are mounted", exp.FSType)
	}
	if _, err := d.must(ctx, loc.Host, "mkdir", map[string]string{"path": loc.MountPoint}); err != nil {
		return DiskMountResult{}, err
	}
	if _, err := d.must(ctx, loc.Host, name, map[string]string{"device_path": exp.Loop, "mountpoint": loc.MountPoint}); err != nil {
		return DiskMountResult{}, err
	}
	if w, err = d.world(ctx, loc); err != nil {
		return DiskMountResult{}, err
	}
	if !w.Mounted || w.MountSource != exp.Loop || !hasOption(w.MountOptions, "ro") {
		return DiskMountResult{}, fmt.Errorf("%s on %s: not mounted read-only from %s after mount (%s %s)", loc.MountPoint, loc.Host, exp.Loop, w.MountSource, w.MountOptions)
	}
	return DiskMountResult{MountPoint: loc.MountPoint, Options: w.MountOptions}, nil
}

func hasOption(opts, o string) bool { return slices.Contains(strings.Split(opts, ","), o) }

// UnmountGuestFS unmounts the guest file system if it is mounted.
func (d *DiskInspector) UnmountGuestFS(ctx context.Context, loc DiskLocation) (DiskUnmountResult, error) {
	if err := checkLocation(loc); err != nil {
		return DiskUnmountResult{}, err
	}
	w, err := d.world(ctx, loc)
	if err != nil || !w.Mounted {
		return DiskUnmountResult{}, err
	}
	if _, err := d.must(ctx, loc.Host, "umount", map[string]string{"path": loc.MountPoint}); err != nil {
		return DiskUnmountResult{WasMounted: true}, err
	}
	if w, err = d.world(ctx, loc); err != nil {
		return DiskUnmountResult{WasMounted: true}, err
	}
	if w.Mounted {
		return DiskUnmountResult{WasMounted: true}, temporal.NewApplicationError(fmt.Sprintf("%s on %s: still mounted after umount", loc.MountPoint, loc.Host), ErrTypeStillThere)
	}
	return DiskUnmountResult{WasMounted: true}, nil
}

// DetachInstanceDisk detaches the loop devices, stops the daemon (TERM, then KILL) and removes a stale
// FUSE mount. It refuses while the file system is still mounted (the unmount step comes first).
func (d *DiskInspector) DetachInstanceDisk(ctx context.Context, loc DiskLocation) (DiskDetachResult, error) {
	var out DiskDetachResult
	if err := checkLocation(loc); err != nil {
		return out, err
	}
	w, err := d.world(ctx, loc)
	if err != nil {
		return out, err
	}
	if w.Mounted {
		return out, temporal.NewApplicationError(fmt.Sprintf("%s on %s is still mounted: unmount first", loc.MountPoint, loc.Host), ErrTypeStillThere)
	}
	for _, l := range w.Loops {
		if !l.RO {
			continue // not ours (see ExposeInstanceDisk); reported below if it is all that is left
		}
		if _, err := d.must(ctx, loc.Host, "loop_detach", map[string]string{"device_path": l.Name}); err != nil {
			return out, err
		}
		out.Loops = append(out.Loops, l.Name)
	}
	if pid := w.DaemonPID; pid != 0 {
		args := map[string]string{"pid": strconv.Itoa(pid)}
		if _, err := d.must(ctx, loc.Host, "process_term", args); err != nil {
			return out, err
		}
		out.StoppedDaemon = pid
		gone, err := d.waitGone(ctx, loc, pid, 10*time.Second)
		if err != nil {
			return out, err
		}
		if !gone {
			if _, err := d.cmd(ctx, loc.Host, "process_kill", args); err != nil {
				return out, err
			}
			out.Killed = true
			if _, err := d.waitGone(ctx, loc, pid, 5*time.Second); err != nil {
				return out, err
			}
		}
	}
	if w, err = d.world(ctx, loc); err != nil {
		return out, err
	}
	if w.Exported && w.DaemonPID == 0 {
		// The daemon died without unmounting its export (SIGKILL): unmount the stale FUSE mount.
		out.StaleExport = true
		if _, err := d.must(ctx, loc.Host, "umount", map[string]string{"path": loc.Export}); err != nil {
			return out, err
		}
		if w, err = d.world(ctx, loc); err != nil {
			return out, err
		}
	}
	if !w.Clean() {
		var left []string
		for _, l := range w.Loops {
			left = append(left, fmt.Sprintf("%s (ro=%v)", l.Name, l.RO))
		}
		return out, temporal.NewApplicationError(fmt.Sprintf("after detach on %s: exported=%v daemon=%d loops=%v mounted=%v",
			loc.Host, w.Exported, w.DaemonPID, left, w.Mounted), ErrTypeStillThere)
	}
	// The empty mount point goes; rmdir cannot remove anything else.
	_, _ = d.cmd(ctx, loc.Host, "rmdir", map[string]string{"path": loc.MountPoint})
	return out, nil
}

func (d *DiskInspector) waitGone(ctx context.Context, loc DiskLocation, pid int, within time.Duration) (bool, error) {
	end := time.Now().Add(within)
	for {
		p, err := d.daemon(ctx, loc)
		if err != nil {
			return false, err
		}
		if p != pid {
			return true, nil
		}
		if time.Now().After(end) {
			return false, nil
		}
		activity.RecordHeartbeat(ctx, fmt.Sprintf("waiting for qemu-storage-daemon %d to stop", pid))
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(d.poll() / 4):
		}
	}
}

// statEntry is one line of guest_stat.
type statEntry struct {
	Dev  string
	Size int64
	Type string
}

// parseStat reads `stat --format '%d|%s|%F|%n'` lines; names are the last field (validated
// paths never contain '|' or a newline).
func parseStat(out string) (map[string]statEntry, error) {
	m := map[string]statEntry{}
	var bad error
	for _, line := range strings.Split(out, "\n") {
		if line == "" {
			continue
		}
		f := strings.SplitN(line, "|", 4)
		if len(f) != 4 {
			bad = errors.Join(bad, fmt.Errorf("stat line %q", line))
			continue
		}
		size, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			bad = errors.Join(bad, fmt.Errorf("stat size %q", f[1]))
			continue
		}
		m[f[3]] = statEntry{Dev: f[0], Size: size, Type: f[2]}
	}
	return m, bad
}

func isRegular(t string) bool { return t == "regular file" || t == "regular empty file" }
