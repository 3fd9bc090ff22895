package activities

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
)

// Exposing, mounting and giving back an instance's disk: each step checks the host first.

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
	// The work directory goes: the empty mount point and FUSE mount point, a PID file a killed
	// daemon left (rmdir and remove_small_file cannot remove anything bigger). Best effort.
	_, _ = d.cmd(ctx, loc.Host, "rmdir", map[string]string{"path": loc.MountPoint})
	if loc.Method == MethodQSD {
		for _, f := range []string{loc.Export, loc.PIDFile} {
			_, _ = d.cmd(ctx, loc.Host, "remove_small_file", map[string]string{"path": f})
		}
		_, _ = d.cmd(ctx, loc.Host, "rmdir", map[string]string{"path": loc.Work})
	}
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
