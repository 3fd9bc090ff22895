package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.temporal.io/sdk/temporal"

	"github.com/stackrun/stackrun/internal/infra/remote"
)

// mounts reads /proc/self/mounts on host: mount point -> source.
func (s *Swift) mounts(ctx context.Context, host string) (map[string]string, error) {
	res, err := s.run(ctx, host, "mount_list", nil)
	if err != nil {
		return nil, err
	}
	if res.ExitCode != 0 {
		return nil, fmt.Errorf("read mounts on %s: exit %d: %s", host, res.ExitCode, out(res))
	}
	return ParseMounts(res.Stdout), nil
}

// ParseMounts reads /proc/self/mounts: mount point -> source (the last mount wins). Octal
// escapes (\040 for a space) are decoded.
func ParseMounts(text string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(text, "\n") {
		// The kernel separates fields with one space and escapes space, tab, newline and
		// backslash inside them; any other byte (\r, \v, U+00A0...) is part of the field.
		f := strings.FieldsFunc(line, func(r rune) bool { return r == ' ' })
		if len(f) < 2 {
			continue
		}
		m[unescapeMount(f[1])] = unescapeMount(f[0])
	}
	return m
}

func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// connectFailed: err says the host could not be connected to (refused, no route, connect timeout).
func connectFailed(err error) bool {
	var ae *temporal.ApplicationError
	if errors.As(err, &ae) {
		return ae.Type() == remote.TypeConnect
	}
	return errors.Is(err, remote.ErrConnect)
}

func (n SwiftNodeInfo) mountPoint(dev string) string { return path.Join(n.DevicesDir, dev) }

// DeviceHealth reports, for every Swift device of node, whether it is mounted and answers. A
// node that cannot be reached (the connection is refused or times out) is no error: each of its
// devices is reported Unreachable, holding none of its copies as far as anyone can tell, so that
// the caller decides at once (the last-copy guard) instead of retrying the connection.
func (s *Swift) DeviceHealth(ctx context.Context, node string) ([]DeviceState, error) {
	n, err := s.node(node)
	if err != nil {
		return nil, err
	}
	mounts, err := s.mounts(ctx, node)
	if connectFailed(err) {
		var states []DeviceState
		for _, dev := range slices.Sorted(mapKeys(n.Devices)) {
			states = append(states, DeviceState{Node: node, Device: dev, MountPoint: n.mountPoint(dev), Unreachable: true,
				Detail: "node cannot be reached: " + firstLines(err.Error(), 1)})
		}
		return states, nil
	}
	if err != nil {
		return nil, err
	}
	var outStates []DeviceState
	for _, dev := range slices.Sorted(mapKeys(n.Devices)) {
		st := DeviceState{Node: node, Device: dev, MountPoint: n.mountPoint(dev)}
		if _, ok := mounts[st.MountPoint]; ok {
			st.Mounted = true
			res, err := s.run(ctx, node, "list_dir", map[string]string{"path": st.MountPoint})
			if err != nil {
				return nil, err
			}
			st.Healthy = res.ExitCode == 0
			if !st.Healthy {
				st.Detail = firstLines(out(res), 2)
			}
		} else {
			st.Detail = "not mounted"
		}
		outStates = append(outStates, st)
	}
	return outStates, nil
}

// SetServices stops or starts every Swift service of a node (idempotent per service).
func (s *Swift) SetServices(ctx context.Context, node, action string) error {
	n, err := s.node(node)
	if err != nil {
		return err
	}
	svcs := slices.Clone(n.Services)
	if action == "stop" {
		slices.Reverse(svcs)
	}
	for _, svc := range svcs {
		if err := s.Hosts.SetService(ctx, ServiceAction{ServiceRequest: ServiceRequest{Host: node, Role: svc.Role, Service: svc.Name}, Action: action}); err != nil {
			return err
		}
	}
	return nil
}

// RestartSwift stops and starts every Swift service of a node.
func (s *Swift) RestartSwift(ctx context.Context, node string) error {
	if err := s.SetServices(ctx, node, "stop"); err != nil {
		return err
	}
	return s.SetServices(ctx, node, "start")
}

// UnmountDevice unmounts a Swift device. When umount says the target is busy (the account and
// container servers keep databases open on it), it stops the node's Swift services, unmounts,
// and starts them again; a lazy unmount is the last resort and is reported.
func (s *Swift) UnmountDevice(ctx context.Context, req DiskRequest) (UnmountResult, error) {
	var res UnmountResult
	n, _, err := s.device(req)
	if err != nil {
		return res, err
	}
	mp := n.mountPoint(req.Device)
	mounted := func() (bool, error) {
		m, err := s.mounts(ctx, req.Node)
		if err != nil {
			return false, err
		}
		_, ok := m[mp]
		return ok, nil
	}
	ok, err := mounted()
	if err != nil || !ok {
		return res, err
	}
	res.WasMounted = true
	r, err := s.run(ctx, req.Node, "umount", map[string]string{"path": mp})
	if err != nil {
		return res, err
	}
	if r.ExitCode == 0 {
		return res, nil
	}
	if !strings.Contains(strings.ToLower(out(r)), "busy") {
		return res, fmt.Errorf("umount %s on %s: exit %d: %s", mp, req.Node, r.ExitCode, out(r))
	}
	res.Detail = "target is busy: stopped the node's Swift services to unmount"
	if err := s.SetServices(ctx, req.Node, "stop"); err != nil {
		return res, err
	}
	res.ServicesRestarted = true
	defer func() {
		if err := s.SetServices(context.WithoutCancel(ctx), req.Node, "start"); err != nil {
			res.Detail += "; starting the services again failed: " + err.Error()
		}
	}()
	r, err = s.run(ctx, req.Node, "umount", map[string]string{"path": mp})
	if err != nil {
		return res, err
	}
	if r.ExitCode != 0 {
		r2, err := s.run(ctx, req.Node, "umount_lazy", map[string]string{"path": mp})
		if err != nil {
			return res, err
		}
		if r2.ExitCode != 0 {
			return res, fmt.Errorf("umount %s on %s (services stopped): %s; umount -l: %s", mp, req.Node, out(r), out(r2))
		}
		res.Lazy = true
		res.Detail += "; still busy, unmounted lazily: " + firstLines(out(r), 1)
	}
	if ok, err := mounted(); err != nil {
		return res, err
	} else if ok {
		return res, fmt.Errorf("%s on %s is still mounted after umount", mp, req.Node)
	}
	return res, nil
}

// InspectDisk reports what the node sees at the device's configured path: whether a block
// device is there, its size, whether it is mounted and which file system it holds.
func (s *Swift) InspectDisk(ctx context.Context, req DiskRequest) (DiskFacts, error) {
	_, p, err := s.device(req)
	if err != nil {
		return DiskFacts{}, err
	}
	f := DiskFacts{Path: p}
	r, err := s.run(ctx, req.Node, "device_realpath", map[string]string{"device_path": p})
	if err != nil {
		return f, err
	}
	if r.ExitCode != 0 {
		return f, nil // nothing there (yet)
	}
	f.Exists = true
	f.Resolved = strings.TrimSpace(r.Stdout)
	r, err = s.run(ctx, req.Node, "block_device_path", map[string]string{"device_path": p})
	if err != nil {
		return f, err
	}
	if r.ExitCode != 0 {
		return f, fmt.Errorf("lsblk %s on %s: exit %d: %s", p, req.Node, r.ExitCode, out(r))
	}
	var ls struct {
		Blockdevices []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Children   []any           `json:"children"`
			Size       json.RawMessage `json:"size"`
			Fstype     *string         `json:"fstype"`
			Mountpoint *string         `json:"mountpoint"`
			Label      *string         `json:"label"`
		} `json:"blockdevices"`
	}
	if err := json.Unmarshal([]byte(r.Stdout), &ls); err != nil || len(ls.Blockdevices) == 0 {
		return f, fmt.Errorf("lsblk %s on %s: unreadable answer %q", p, req.Node, firstLines(r.Stdout, 3))
	}
	bd := ls.Blockdevices[0]
	f.Type = bd.Type
	if len(bd.Children) > 0 && f.PartTable == "" {
		f.PartTable = fmt.Sprintf("%d partition(s)", len(bd.Children))
	}
	f.Size, _ = strconv.ParseInt(strings.Trim(string(bd.Size), `"`), 10, 64)
	if bd.Mountpoint != nil && *bd.Mountpoint != "" {
		f.Mounted = true
	}
	m, err := s.mounts(ctx, req.Node)
	if err != nil {
		return f, err
	}
	for _, src := range m {
		if src == f.Resolved || src == p {
			f.Mounted = true
		}
	}
	r, err = s.run(ctx, req.Node, "blkid", map[string]string{"device_path": p})
	if err != nil {
		return f, err
	}
	switch r.ExitCode {
	case 0:
		for _, line := range strings.Split(r.Stdout, "\n") {
			k, v, _ := strings.Cut(strings.TrimSpace(line), "=")
			switch k {
			case "TYPE":
				f.FSType = v
			case "UUID":
				f.UUID = v
			case "LABEL":
				f.Label = v
			case "PTTYPE":
				f.PartTable = v
			}
		}
	case 2: // nothing found: no file system
	default:
		return f, fmt.Errorf("blkid %s on %s: exit %d: %s", p, req.Node, r.ExitCode, out(r))
	}
	// The kernel's view of the device: what it logged when the disk came (capacity, model) and
	// any errors. Unreadable (dmesg restricted) is recorded, not fatal: lsblk saw the disk.
	r, err = s.run(ctx, req.Node, "kernel_log", nil)
	if err != nil {
		return f, err
	}
	if r.ExitCode != 0 {
		f.KernelLog = []string{"kernel log unreadable: " + firstLines(out(r), 1)}
		return f, nil
	}
	f.KernelLog, f.KernelErrors = KernelLines(r.Stdout, path.Base(f.Resolved), 20)
	return f, nil
}

var kernelErrRE = regexp.MustCompile(`(?i)\b(I/O error|error|fail(ed|ure)?|critical|medium|timeout|reset)\b`)

// KernelLines returns the last max lines of a kernel log that name the kernel device dev (as a
// word: sdd, not sdd1 nor loop20 for loop2), and those of them that report errors.
func KernelLines(log, dev string, max int) (lines, errs []string) {
	if dev == "" || dev == "." || dev == "/" {
		return nil, nil
	}
	re := regexp.MustCompile(`(^|[^A-Za-z0-9])` + regexp.QuoteMeta(dev) + `($|[^A-Za-z0-9])`)
	for _, l := range strings.Split(log, "\n") {
		if re.MatchString(l) {
			lines = append(lines, strings.TrimSpace(l))
		}
	}
	if len(lines) > max {
		lines = lines[len(lines)-max:]
	}
	for _, l := range lines {
		if kernelErrRE.MatchString(l) {
			errs = append(errs, l)
		}
	}
	return lines, errs
}

// FormatDisk makes an XFS file system labelled with the device name on the whole disk. It looks
// first: an XFS with that label and a UUID other than PreviousUUID was made by an earlier
// attempt of this step, and is kept (never formatted twice). A disk holding any other file
// system is refused unless Overwrite (a gate approved it).
func (s *Swift) FormatDisk(ctx context.Context, req FormatRequest) (FormatResult, error) {
	res := FormatResult{Label: req.Device}
	f, err := s.InspectDisk(ctx, DiskRequest{Node: req.Node, Device: req.Device})
	if err != nil {
		return res, err
	}
	if !f.Exists {
		return res, fmt.Errorf("%s on %s: no block device there", f.Path, req.Node)
	}
	if f.Mounted {
		return res, temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s (%s) on %s is mounted: refusing to format it", f.Path, f.Resolved, req.Node), ErrTypeRefused, nil)
	}
	if !WholeDisk(f.Type) {
		return res, temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s (%s) on %s is a %s, not a whole disk: refusing to format it", f.Path, f.Resolved, req.Node, f.Type), ErrTypeRefused, nil)
	}
	if f.FSType == "xfs" && f.Label == req.Device && f.UUID != "" && f.UUID != req.PreviousUUID {
		res.UUID = f.UUID
		return res, nil
	}
	cmd := "mkfs_xfs"
	if f.FSType != "" || f.PartTable != "" {
		if !req.Overwrite {
			return res, temporal.NewNonRetryableApplicationError(
				fmt.Sprintf("%s on %s holds a %s file system (label %q) or partition table %q: not overwritten without the overwrite gate", f.Path, req.Node, f.FSType, f.Label, f.PartTable), ErrTypeRefused, nil)
		}
		cmd = "mkfs_xfs_force"
	}
	r, err := s.run(ctx, req.Node, cmd, map[string]string{"device_path": f.Path, "label": req.Device})
	if err != nil {
		return res, err
	}
	if r.ExitCode != 0 {
		return res, fmt.Errorf("mkfs.xfs %s on %s: exit %d: %s", f.Path, req.Node, r.ExitCode, firstLines(out(r), 4))
	}
	f, err = s.InspectDisk(ctx, DiskRequest{Node: req.Node, Device: req.Device})
	if err != nil {
		return res, err
	}
	if f.FSType != "xfs" || f.Label != req.Device {
		return res, fmt.Errorf("after mkfs.xfs, %s on %s shows type %q label %q", f.Path, req.Node, f.FSType, f.Label)
	}
	res.Formatted, res.UUID = true, f.UUID
	return res, nil
}

// WholeDisk says whether lsblk's TYPE names a whole disk: disk, a multipath disk, or a loop
// device (the lab's disks); never a partition, LVM or RAID volume.
func WholeDisk(typ string) bool {
	switch typ {
	case "disk", "loop", "mpath":
		return true
	}
	return false
}

// MountDisk writes the device's fstab entry (by UUID: a label can be shared by an old disk still
// attached), mounts it at <devices_dir>/<device> through that entry, gives it to swift and
// checks the mount, the entry and the owner. A mount already in place from the same device is
// kept; an entry already right is not rewritten.
func (s *Swift) MountDisk(ctx context.Context, req DiskRequest) (MountResult, error) {
	n, p, err := s.device(req)
	if err != nil {
		return MountResult{}, err
	}
	mp := n.mountPoint(req.Device)
	res := MountResult{MountPoint: mp}
	r, err := s.run(ctx, req.Node, "device_realpath", map[string]string{"device_path": p})
	if err != nil {
		return res, err
	}
	resolved := strings.TrimSpace(r.Stdout)
	m, err := s.mounts(ctx, req.Node)
	if err != nil {
		return res, err
	}
	if src, ok := m[mp]; ok {
		if src != resolved && src != p {
			return res, temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s on %s is a mount of %s, not of %s (%s)", mp, req.Node, src, p, resolved), ErrTypeRefused, nil)
		}
		res.Already = true
	}
	f, err := s.InspectDisk(ctx, req)
	if err != nil {
		return res, err
	}
	if f.FSType != "xfs" || f.UUID == "" {
		return res, fmt.Errorf("%s (%s) on %s holds %q (UUID %q), not the new XFS: format it first", p, resolved, req.Node, f.FSType, f.UUID)
	}
	fstab := n.Fstab
	if fstab == "" {
		fstab = "/etc/fstab"
	}
	res.Fstab = fmt.Sprintf("UUID=%s %s xfs noatime,nofail 0 0", f.UUID, mp)
	if res.FstabChanged, err = s.ensureFstab(ctx, req.Node, fstab, mp, res.Fstab); err != nil {
		return res, err
	}
	if !res.Already {
		if r, err := s.run(ctx, req.Node, "mkdir", map[string]string{"path": mp}); err != nil {
			return res, err
		} else if r.ExitCode != 0 {
			return res, fmt.Errorf("mkdir %s on %s: %s", mp, req.Node, out(r))
		}
		r, err := s.run(ctx, req.Node, "mount_fstab", map[string]string{"fstab": fstab, "path": mp})
		if err != nil {
			return res, err
		}
		if r.ExitCode != 0 {
			return res, fmt.Errorf("mount %s (fstab %s: %s) on %s: exit %d: %s", mp, fstab, res.Fstab, req.Node, r.ExitCode, out(r))
		}
		if m, err = s.mounts(ctx, req.Node); err != nil {
			return res, err
		}
	}
	res.Source = m[mp]
	if res.Source != resolved && res.Source != p {
		return res, fmt.Errorf("%s on %s is mounted from %s, expected %s", mp, req.Node, res.Source, resolved)
	}
	if r, err := s.run(ctx, req.Node, "chown_swift", map[string]string{"path": mp}); err != nil {
		return res, err
	} else if r.ExitCode != 0 {
		return res, fmt.Errorf("chown swift %s on %s: %s", mp, req.Node, out(r))
	}
	r, err = s.run(ctx, req.Node, "stat_owner", map[string]string{"path": mp})
	if err != nil {
		return res, err
	}
	res.Owner = strings.TrimSpace(r.Stdout)
	if res.Owner != "swift:swift" {
		return res, fmt.Errorf("%s on %s is owned by %q after chown", mp, req.Node, res.Owner)
	}
	// The empty file system's used bytes: the baseline of the refill check. A retry after a
	// crash may measure some replicated data too, which only makes the check stricter.
	if u, err := s.deviceUsage(ctx, req); err == nil && u.Mounted {
		res.UsedBytes = u.Used
	}
	return res, nil
}

// ensureFstab makes entry the only line of the fstab for mount point mp (over SFTP: the file is
// read, edited and replaced atomically) and reads it back. It reports whether it wrote.
func (s *Swift) ensureFstab(ctx context.Context, node, fstab, mp, entry string) (bool, error) {
	h, err := s.remoteHost(node)
	if err != nil {
		return false, err
	}
	data, err := s.Files.ReadFile(ctx, h, fstab, 4<<20)
	if err != nil && !errors.Is(err, fs.ErrNotExist) && !isNotExist(err) {
		return false, RemoteError(err)
	}
	text, ok := FstabWith(string(data), mp, entry)
	if ok {
		return false, nil
	}
	if _, err := s.Files.CopyFile(ctx, h, strings.NewReader(text), fstab, 0o644); err != nil {
		return false, RemoteError(err)
	}
	back, err := s.Files.ReadFile(ctx, h, fstab, 4<<20)
	if err != nil {
		return true, RemoteError(err)
	}
	if _, ok := FstabWith(string(back), mp, entry); !ok {
		return true, fmt.Errorf("%s on %s does not hold %q after writing it", fstab, node, entry)
	}
	return true, nil
}

// FstabWith returns the fstab text with entry as the one line for mount point mp (other lines
// for mp dropped, comments and other mounts kept), and whether text already was so.
func FstabWith(text, mp, entry string) (string, bool) {
	var out []string
	found, others := false, false
	for _, line := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && !strings.HasPrefix(f[0], "#") && unescapeMount(f[1]) == mp {
			if strings.Join(f, " ") == entry && !found {
				found = true
				out = append(out, line)
			} else {
				others = true
			}
			continue
		}
		if line != "" || len(out) > 0 {
			out = append(out, line)
		}
	}
	if found && !others {
		return text, true
	}
	if !found {
		out = append(out, entry)
	}
	return strings.Join(out, "\n") + "\n", false
}
