package activities

import (
	"bufio"
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/stackrun/stackrun/internal/infra/remote"
)

// FileTransfer moves files over SFTP; *remote.Pool is the real one.
type FileTransfer interface {
	ReadFile(ctx context.Context, h remote.Host, remotePath string, limit int64) ([]byte, error)
	CopyFile(ctx context.Context, h remote.Host, src io.Reader, remotePath string, mode os.FileMode) (remote.FileSum, error)
	Checksum(ctx context.Context, h remote.Host, remotePath string) (remote.FileSum, error)
}

// Error types of the Swift activities (non-retryable: a person must look).
const (
	ErrTypeRingBuilder        = "RingBuilderError"
	ErrTypeRingChanged        = "RingChanged"
	ErrTypeReplicationTimeout = "ReplicationTimeout"
)

// Swift runs the Swift disk and ring activities: swift-ring-builder on the ring-builder host,
// disks on the storage nodes (catalogue commands over SSH) and ring files over SFTP.
type Swift struct {
	Hosts   *Hosts
	Files   FileTransfer
	Cluster SwiftCluster

	mu    sync.Mutex
	rings map[string][]byte // ring file contents by MD5, read once from the builder host
}

func (s *Swift) node(name string) (SwiftNodeInfo, error) {
	n, ok := s.Cluster.Nodes[name]
	if !ok {
		names := slices.Sorted(func(yield func(string) bool) {
			for k := range s.Cluster.Nodes {
				if !yield(k) {
					return
				}
			}
		})
		return n, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("node %q is not a Swift node (swift.nodes: %s)", name, strings.Join(names, ", ")), ErrTypeNotFound, nil)
	}
	return n, nil
}

func (s *Swift) device(req DiskRequest) (SwiftNodeInfo, string, error) {
	n, err := s.node(req.Node)
	if err != nil {
		return n, "", err
	}
	p, ok := n.Devices[req.Device]
	if !ok {
		return n, "", temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("%s has no Swift device %q (swift.nodes.%s.devices)", req.Node, req.Device, req.Node), ErrTypeNotFound, nil)
	}
	return n, p, nil
}

func (s *Swift) role(host string) string {
	if inv, ok := s.Hosts.Inventory[host]; ok && len(inv.Roles) > 0 {
		return inv.Roles[0]
	}
	return ""
}

func (s *Swift) run(ctx context.Context, host, cmd string, args map[string]string) (remote.Result, error) {
	return s.Hosts.run(ctx, host, s.role(host), cmd, args)
}

func (s *Swift) remoteHost(name string) (remote.Host, error) {
	_, h, err := s.Hosts.lookup(name)
	return h, err
}

func (s *Swift) builder(kind string) string { return path.Join(s.Cluster.BuilderDir, kind+".builder") }

func out(res remote.Result) string { return strings.TrimSpace(res.Stdout + "\n" + res.Stderr) }

// SwiftTopology returns the Swift configuration. It connects nowhere: runbooks check their
// input against it before any command runs.
func (s *Swift) SwiftTopology(ctx context.Context) (SwiftCluster, error) {
	if len(s.Cluster.Nodes) == 0 || s.Cluster.RingBuilderHost == "" {
		return SwiftCluster{}, temporal.NewNonRetryableApplicationError("no Swift cluster configured (swift.ring_builder_host, swift.nodes)", ErrTypeInvalidInput, nil)
	}
	return s.Cluster, nil
}

// RingStatus reads the account, container and object builders on the ring-builder host.
func (s *Swift) RingStatus(ctx context.Context) (RingStatus, error) {
	var st RingStatus
	for _, kind := range RingKinds {
		ri, err := s.ringInfo(ctx, kind)
		if err != nil {
			return st, err
		}
		st.Rings = append(st.Rings, ri)
	}
	return st, nil
}

func (s *Swift) ringInfo(ctx context.Context, kind string) (RingInfo, error) {
	b := s.builder(kind)
	res, err := s.run(ctx, s.Cluster.RingBuilderHost, "ring_show", map[string]string{"builder": b})
	if err != nil {
		return RingInfo{}, err
	}
	if res.ExitCode != 0 {
		return RingInfo{}, fmt.Errorf("swift-ring-builder %s: exit %d: %s", b, res.ExitCode, out(res))
	}
	return ParseRingShow(kind, b, res.Stdout)
}

var (
	reRingHeader = regexp.MustCompile(`(\d+) partitions, ([0-9.]+) replicas, (\d+) regions, (\d+) zones, (\d+) devices, ([0-9.]+) balance, ([0-9.]+) dispersion`)
	reMinPart    = regexp.MustCompile(`reassigned is (\d+) \((?:(\d+) days?, )?(\d+):(\d\d):(\d\d) remaining\)`)
	reRingFile   = regexp.MustCompile(`Ring file \S+ (is up-to-date|is obsolete|not found)`)
	reDispersion = regexp.MustCompile(`Dispersion is ([0-9.]+), Balance is ([0-9.]+)`)
)

// ParseRingShow reads the output of `swift-ring-builder <builder>` (Swift 2.x).
func ParseRingShow(kind, builder, text string) (RingInfo, error) {
	ri := RingInfo{Kind: kind, Builder: builder}
	m := reRingHeader.FindStringSubmatch(text)
	if m == nil {
		return ri, fmt.Errorf("swift-ring-builder %s: no summary line in %q", builder, firstLines(text, 3))
	}
	ri.Partitions, _ = strconv.Atoi(m[1])
	ri.Replicas, _ = strconv.ParseFloat(m[2], 64)
	ri.Zones, _ = strconv.Atoi(m[4])
	ri.DeviceCount, _ = strconv.Atoi(m[5])
	ri.Balance, _ = strconv.ParseFloat(m[6], 64)
	ri.Dispersion, _ = strconv.ParseFloat(m[7], 64)
	if m := reMinPart.FindStringSubmatch(text); m != nil {
		ri.MinPartHours, _ = strconv.Atoi(m[1])
		d, _ := strconv.Atoi(m[2])
		h, _ := strconv.Atoi(m[3])
		mi, _ := strconv.Atoi(m[4])
		se, _ := strconv.Atoi(m[5])
		ri.Remaining = time.Duration(((d*24+h)*60+mi)*60+se) * time.Second
	}
	ri.RingFile = "missing"
	if m := reRingFile.FindStringSubmatch(text); m != nil {
		switch m[1] {
		case "is up-to-date":
			ri.RingFile = "up-to-date"
		case "is obsolete":
			ri.RingFile = "obsolete"
		}
	}
	sc := bufio.NewScanner(strings.NewReader(text))
	inDevs := false
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "Devices:") {
			inDevs = true
			continue
		}
		if !inDevs {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 9 {
			continue
		}
		var d RingDevice
		var err error
		if d.ID, err = strconv.Atoi(f[0]); err != nil {
			continue
		}
		d.Region, _ = strconv.Atoi(f[1])
		d.Zone, _ = strconv.Atoi(f[2])
		hp := f[3]
		i := strings.LastIndexByte(hp, ':')
		if i < 0 {
			continue
		}
		d.IP = strings.Trim(hp[:i], "[]")
		d.Port, _ = strconv.Atoi(hp[i+1:])
		d.Name = f[5]
		d.Weight, _ = strconv.ParseFloat(f[6], 64)
		d.Partitions, _ = strconv.Atoi(f[7])
		d.Balance, _ = strconv.ParseFloat(f[8], 64)
		if len(f) > 9 && f[9] == "DEL" {
			d.Flags = "DEL"
		}
		ri.Devices = append(ri.Devices, d)
	}
	return ri, nil
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, " | ")
}

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
		f := strings.Fields(line)
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

func (n SwiftNodeInfo) mountPoint(dev string) string { return path.Join(n.DevicesDir, dev) }

// DeviceHealth reports, for every Swift device of node, whether it is mounted and answers.
func (s *Swift) DeviceHealth(ctx context.Context, node string) ([]DeviceState, error) {
	n, err := s.node(node)
	if err != nil {
		return nil, err
	}
	mounts, err := s.mounts(ctx, node)
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

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

var backupNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// BackupBuilders copies the builder files (and their ring files) into
// <builder_dir>/backups/<name>/ on the ring-builder host. A file already in the backup is kept:
// a retry after a crash never overwrites the backup with a builder that was changed since.
func (s *Swift) BackupBuilders(ctx context.Context, req BackupRequest) (BackupResult, error) {
	if !backupNameRE.MatchString(req.Name) {
		return BackupResult{}, temporal.NewNonRetryableApplicationError(fmt.Sprintf("backup name %q is not valid", req.Name), ErrTypeInvalidInput, nil)
	}
	host := s.Cluster.RingBuilderHost
	dir := path.Join(s.Cluster.BuilderDir, "backups", req.Name)
	res := BackupResult{Dir: dir}
	if r, err := s.run(ctx, host, "mkdir", map[string]string{"path": dir}); err != nil {
		return res, err
	} else if r.ExitCode != 0 {
		return res, fmt.Errorf("mkdir %s on %s: %s", dir, host, out(r))
	}
	have := map[string]bool{}
	for _, d := range []string{s.Cluster.BuilderDir, dir} {
		r, err := s.run(ctx, host, "list_dir", map[string]string{"path": d})
		if err != nil {
			return res, err
		}
		if r.ExitCode != 0 {
			return res, fmt.Errorf("list %s on %s: %s", d, host, out(r))
		}
		for _, f := range strings.Fields(r.Stdout) {
			have[d+"/"+f] = true
		}
	}
	for _, kind := range RingKinds {
		for _, f := range []string{kind + ".builder", kind + ".ring.gz"} {
			src, dst := path.Join(s.Cluster.BuilderDir, f), path.Join(dir, f)
			if !have[src] {
				if strings.HasSuffix(f, ".builder") {
					return res, temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s does not exist on %s", src, host), ErrTypeNotFound, nil)
				}
				continue
			}
			res.Files = append(res.Files, f)
			if have[dst] {
				continue
			}
			r, err := s.run(ctx, host, "file_copy", map[string]string{"path": src, "dest": dst})
			if err != nil {
				return res, err
			}
			if r.ExitCode != 0 {
				return res, fmt.Errorf("copy %s to %s on %s: %s", src, dst, host, out(r))
			}
		}
	}
	return res, nil
}

// FormatWeight writes a weight as swift-ring-builder and the catalogue accept it (2 decimals).
func FormatWeight(w float64) string {
	return strconv.FormatFloat(math.Round(w*100)/100, 'f', -1, 64)
}

func ringBuilderError(what string, res remote.Result) error {
	return temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s: exit %d: %s", what, res.ExitCode, firstLines(out(res), 6)), ErrTypeRingBuilder, nil)
}

// ApplyRingOps applies ring changes to the builders, checking each builder first: an operation
// already in effect (device present, removed or at its weight) is not repeated, so a retry after
// a crash changes nothing twice.
func (s *Swift) ApplyRingOps(ctx context.Context, ops []RingOp) (RingOpsResult, error) {
	var res RingOpsResult
	host := s.Cluster.RingBuilderHost
	for _, kind := range RingKinds {
		var mine []RingOp
		for _, op := range ops {
			if op.Kind == kind {
				mine = append(mine, op)
			}
		}
		if len(mine) == 0 {
			continue
		}
		ri, err := s.ringInfo(ctx, kind)
		if err != nil {
			return res, err
		}
		for _, op := range mine {
			desc := fmt.Sprintf("%s: %s %s/%s (%s:%d)", kind, op.Action, op.Node, op.Device, op.IP, op.Port)
			found := ri.Find(op.IP, op.Device)
			var cmd string
			args := map[string]string{"builder": ri.Builder}
			switch op.Action {
			case "add":
				if len(found) > 0 {
					if found[0].Flags == "DEL" {
						return res, temporal.NewNonRetryableApplicationError(desc+": the device is marked for removal; rebalance before adding it back", ErrTypeRefused, nil)
					}
					res.Already = append(res.Already, desc)
					continue
				}
				cmd = "ring_add"
				args["ring_device"] = fmt.Sprintf("r%dz%d-%s:%d/%s", max(op.Region, 1), op.Zone, op.IP, op.Port, op.Device)
				args["weight"] = FormatWeight(op.Weight)
				desc += " weight " + args["weight"]
			case "remove":
				if len(found) == 0 || found[0].Flags == "DEL" {
					res.Already = append(res.Already, desc)
					continue
				}
				cmd = "ring_remove"
				args["ring_search"] = "d" + strconv.Itoa(found[0].ID)
			case "set_weight":
				if len(found) == 0 {
					return res, temporal.NewNonRetryableApplicationError(desc+": the device is not in the ring", ErrTypeNotFound, nil)
				}
				args["weight"] = FormatWeight(op.Weight)
				desc += " to " + args["weight"]
				if FormatWeight(found[0].Weight) == args["weight"] {
					res.Already = append(res.Already, desc)
					continue
				}
				cmd = "ring_set_weight"
				args["ring_search"] = "d" + strconv.Itoa(found[0].ID)
			default:
				return res, temporal.NewNonRetryableApplicationError("unknown ring action "+op.Action, ErrTypeInvalidInput, nil)
			}
			r, err := s.run(ctx, host, cmd, args)
			if err != nil {
				return res, err
			}
			if r.ExitCode != 0 {
				return res, ringBuilderError(desc, r)
			}
			res.Applied = append(res.Applied, desc)
		}
	}
	return res, nil
}

// Rebalance rebalances one ring unless its ring file is already up to date (a retry after a
// rebalance that succeeded). Exit 1 is a warning (nothing could move, balance not reached, or
// the change was too small to save), not a failure; exit 2 is an error.
func (s *Swift) Rebalance(ctx context.Context, kind string) (RebalanceResult, error) {
	res := RebalanceResult{Kind: kind}
	ri, err := s.ringInfo(ctx, kind)
	if err != nil {
		return res, err
	}
	if ri.RingFile == "up-to-date" {
		res.Already = true
		return res, nil
	}
	r, err := s.run(ctx, s.Cluster.RingBuilderHost, "ring_rebalance", map[string]string{"builder": ri.Builder})
	if err != nil {
		return res, err
	}
	res.ExitCode, res.Output = r.ExitCode, firstLines(out(r), 6)
	switch r.ExitCode {
	case 0:
	case 1:
		res.Warning = res.Output
	default:
		return res, ringBuilderError("rebalance "+kind, r)
	}
	return res, nil
}

// ValidateRing runs `validate` and `dispersion` on one builder.
func (s *Swift) ValidateRing(ctx context.Context, kind string) (RingCheck, error) {
	c := RingCheck{Kind: kind}
	b := s.builder(kind)
	r, err := s.run(ctx, s.Cluster.RingBuilderHost, "ring_validate", map[string]string{"builder": b})
	if err != nil {
		return c, err
	}
	c.Valid = r.ExitCode == 0
	c.Output = firstLines(out(r), 6)
	r, err = s.run(ctx, s.Cluster.RingBuilderHost, "ring_dispersion", map[string]string{"builder": b})
	if err != nil {
		return c, err
	}
	if m := reDispersion.FindStringSubmatch(r.Stdout); m != nil {
		c.Dispersion, _ = strconv.ParseFloat(m[1], 64)
		c.Balance, _ = strconv.ParseFloat(m[2], 64)
	}
	return c, nil
}

// BuilderRingFiles returns the ring files on the ring-builder host and their checksums: what
// every node must have.
func (s *Swift) BuilderRingFiles(ctx context.Context) ([]RingFile, error) {
	h, err := s.remoteHost(s.Cluster.RingBuilderHost)
	if err != nil {
		return nil, err
	}
	var files []RingFile
	for _, kind := range RingKinds {
		name := kind + ".ring.gz"
		sum, err := s.Files.Checksum(ctx, h, path.Join(s.Cluster.BuilderDir, name))
		if err != nil {
			return nil, RemoteError(err)
		}
		files = append(files, RingFile{Name: name, MD5: sum.MD5, Size: sum.Size})
	}
	return files, nil
}

// ringBytes returns the builder host's copy of a ring file with the wanted MD5, read once per
// worker and kept by checksum.
func (s *Swift) ringBytes(ctx context.Context, f RingFile) ([]byte, error) {
	s.mu.Lock()
	data, ok := s.rings[f.MD5]
	s.mu.Unlock()
	if ok {
		return data, nil
	}
	h, err := s.remoteHost(s.Cluster.RingBuilderHost)
	if err != nil {
		return nil, err
	}
	data, err = s.Files.ReadFile(ctx, h, path.Join(s.Cluster.BuilderDir, f.Name), 0)
	if err != nil {
		return nil, RemoteError(err)
	}
	sum := md5.Sum(data)
	if got := hex.EncodeToString(sum[:]); got != f.MD5 {
		return nil, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("%s on %s changed since it was checksummed (md5 %s, expected %s): another ring change?", f.Name, s.Cluster.RingBuilderHost, got, f.MD5), ErrTypeRingChanged, nil)
	}
	s.mu.Lock()
	if s.rings == nil {
		s.rings = map[string][]byte{}
	}
	if len(s.rings) > 32 {
		clear(s.rings)
	}
	s.rings[f.MD5] = data
	s.mu.Unlock()
	return data, nil
}

// PushRings copies the ring files to one node over SFTP (temporary file, then an atomic
// rename), skipping those it already has; each copy is checked against the wanted MD5.
func (s *Swift) PushRings(ctx context.Context, req PushRingsRequest) (PushRingsResult, error) {
	res := PushRingsResult{Node: req.Node}
	n, err := s.node(req.Node)
	if err != nil {
		return res, err
	}
	h, err := s.remoteHost(req.Node)
	if err != nil {
		return res, err
	}
	for _, f := range req.Files {
		dst := path.Join(n.SwiftDir, f.Name)
		if sum, err := s.Files.Checksum(ctx, h, dst); err == nil && sum.MD5 == f.MD5 {
			res.Unchanged = append(res.Unchanged, f.Name)
			continue
		} else if err != nil && !errors.Is(err, fs.ErrNotExist) && !isNotExist(err) {
			return res, RemoteError(err)
		}
		data, err := s.ringBytes(ctx, f)
		if err != nil {
			return res, err
		}
		sum, err := s.Files.CopyFile(ctx, h, bytes.NewReader(data), dst, 0o644)
		if err != nil {
			return res, RemoteError(err)
		}
		if sum.MD5 != f.MD5 {
			return res, fmt.Errorf("%s on %s: wrote md5 %s, expected %s", dst, req.Node, sum.MD5, f.MD5)
		}
		res.Copied = append(res.Copied, f.Name)
	}
	return res, nil
}

func isNotExist(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "not exist") || strings.Contains(err.Error(), "no such file"))
}

// RingSums reads one node's ring checksums and names the files that differ from want.
func (s *Swift) RingSums(ctx context.Context, req PushRingsRequest) (RingSumsResult, error) {
	res := RingSumsResult{Node: req.Node, Sums: map[string]string{}}
	n, err := s.node(req.Node)
	if err != nil {
		return res, err
	}
	h, err := s.remoteHost(req.Node)
	if err != nil {
		return res, err
	}
	for _, f := range req.Files {
		sum, err := s.Files.Checksum(ctx, h, path.Join(n.SwiftDir, f.Name))
		switch {
		case err == nil:
			res.Sums[f.Name] = sum.MD5
		case isNotExist(err):
			res.Sums[f.Name] = ""
		default:
			return res, RemoteError(err)
		}
		if res.Sums[f.Name] != f.MD5 {
			res.Mismatch = append(res.Mismatch, f.Name)
		}
	}
	return res, nil
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
			}
		}
	case 2: // nothing found: no file system
	default:
		return f, fmt.Errorf("blkid %s on %s: exit %d: %s", p, req.Node, r.ExitCode, out(r))
	}
	return f, nil
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
	if f.FSType == "xfs" && f.Label == req.Device && f.UUID != "" && f.UUID != req.PreviousUUID {
		res.UUID = f.UUID
		return res, nil
	}
	cmd := "mkfs_xfs"
	if f.FSType != "" {
		if !req.Overwrite {
			return res, temporal.NewNonRetryableApplicationError(
				fmt.Sprintf("%s on %s holds a %s file system (label %q): not overwritten without the overwrite gate", f.Path, req.Node, f.FSType, f.Label), ErrTypeRefused, nil)
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

// MountDisk mounts the device by its label at <devices_dir>/<device>, gives it to swift and
// checks the mount and the owner. A mount already in place from the same device is kept.
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
	} else {
		if r, err := s.run(ctx, req.Node, "mkdir", map[string]string{"path": mp}); err != nil {
			return res, err
		} else if r.ExitCode != 0 {
			return res, fmt.Errorf("mkdir %s on %s: %s", mp, req.Node, out(r))
		}
		r, err := s.run(ctx, req.Node, "mount_label", map[string]string{"label": req.Device, "path": mp})
		if err != nil {
			return res, err
		}
		if r.ExitCode != 0 {
			return res, fmt.Errorf("mount LABEL=%s %s on %s: exit %d: %s", req.Device, mp, req.Node, r.ExitCode, out(r))
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

// reconPass is one replicator's last completed pass.
type reconPass struct{ Start, End time.Time }

// ParseRecon reads a recon cache file (object.recon, container.recon, account.recon) and returns
// the last completed replication pass. The object replicator records its duration in minutes;
// the database replicators record the pass start.
func ParseRecon(kind string, data []byte) (reconPass, bool) {
	var rc struct {
		Last  float64 `json:"replication_last"`
		Time  float64 `json:"replication_time"`
		Stats struct {
			Start float64 `json:"start"`
		} `json:"replication_stats"`
	}
	if err := json.Unmarshal(data, &rc); err != nil || rc.Last == 0 {
		return reconPass{}, false
	}
	ts := func(f float64) time.Time { return time.Unix(0, int64(f*1e9)) }
	p := reconPass{End: ts(rc.Last)}
	switch {
	case kind != "object" && rc.Stats.Start > 0:
		p.Start = ts(rc.Stats.Start)
	case kind == "object":
		p.Start = ts(rc.Last - rc.Time*60)
	default:
		p.Start = ts(rc.Last - rc.Time)
	}
	return p, true
}

// FollowReplication polls the replicators' recon files on the nodes until each has finished a
// pass that began after Since and, with Device, until the device holds at least ShareFraction
// of its share of objects. It heartbeats every poll and fails (non-retryable) at the deadline.
func (s *Swift) FollowReplication(ctx context.Context, req ReplicationRequest) (ReplicationResult, error) {
	var res ReplicationResult
	if activity.HasHeartbeatDetails(ctx) {
		_ = activity.GetHeartbeatDetails(ctx, &res.Polls)
	}
	interval := req.Interval
	if interval <= 0 {
		interval = 30 * time.Second
	}
	frac := req.ShareFraction
	if frac <= 0 {
		frac = 0.5
	}
	for {
		res.Polls++
		done, err := s.pollReplication(ctx, req, frac, &res)
		if err != nil {
			return res, err
		}
		activity.RecordHeartbeat(ctx, res.Polls)
		if done {
			res.Settled = true
			return res, nil
		}
		if !req.Deadline.IsZero() && time.Now().After(req.Deadline) {
			return res, temporal.NewNonRetryableApplicationError(
				fmt.Sprintf("replication not settled by %s: %s", req.Deadline.Format(time.RFC3339), res.Detail), ErrTypeReplicationTimeout, nil)
		}
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(interval):
		}
	}
}

func (s *Swift) pollReplication(ctx context.Context, req ReplicationRequest, frac float64, res *ReplicationResult) (bool, error) {
	res.Pending = nil
	for _, node := range req.Nodes {
		n, err := s.node(node)
		if err != nil {
			return false, err
		}
		h, err := s.remoteHost(node)
		if err != nil {
			return false, err
		}
		for _, kind := range RingKinds {
			data, err := s.Files.ReadFile(ctx, h, path.Join(n.ReconCachePath, kind+".recon"), 1<<20)
			if err != nil {
				res.Pending = append(res.Pending, fmt.Sprintf("%s/%s-replicator (recon unreadable: %v)", node, kind, err))
				continue
			}
			p, ok := ParseRecon(kind, data)
			if !ok || p.Start.Before(req.Since) {
				res.Pending = append(res.Pending, node+"/"+kind+"-replicator")
			}
		}
	}
	if len(res.Pending) > 0 {
		res.Detail = fmt.Sprintf("waiting for a full replication pass since %s: %s", req.Since.Format(time.RFC3339), strings.Join(res.Pending, ", "))
		return false, nil
	}
	if req.Device == nil {
		res.Detail = "every replicator finished a pass since " + req.Since.Format(time.RFC3339)
		return true, nil
	}
	// The device's share, by disk usage (one df per device, never a walk of the disk): the
	// other devices' data per unit of ring weight, times the device's own weight.
	var target DeviceUsage
	var others []DeviceUsage
	for _, node := range req.Nodes {
		n, _ := s.node(node)
		for _, dev := range slices.Sorted(mapKeys(n.Devices)) {
			u, err := s.deviceUsage(ctx, DiskRequest{Node: node, Device: dev})
			if err != nil {
				return false, err
			}
			u.Weight = 1
			if req.Weights != nil {
				u.Weight = req.Weights[u.Key]
			}
			if node == req.Device.Node && dev == req.Device.Device {
				target = u
			} else {
				others = append(others, u)
			}
		}
	}
	if !target.Mounted {
		res.Detail = fmt.Sprintf("%s/%s: no file system mounted at its mount point (%s)", req.Device.Node, req.Device.Device, target.Problem)
		return false, nil
	}
	share := RefillShare(target, req.DeviceBaseline, others)
	res.DeviceBytes, res.ExpectedBytes = share.Have, share.Expected
	res.Detail = fmt.Sprintf("%s/%s holds %s of data (%s used, %s for the empty file system); its weight %s entitles it to about %s (the other %d mounted devices hold %s per unit of weight); done at %.0f%%",
		req.Device.Node, req.Device.Device, humanBytes(float64(share.Have)), humanBytes(float64(target.Used)), humanBytes(float64(req.DeviceBaseline)),
		FormatWeight(target.Weight), humanBytes(share.Expected), share.Counted, humanBytes(share.PerWeight), frac*100)
	return float64(share.Have) >= frac*share.Expected, nil
}

// DeviceUsage is df's view of one Swift device.
type DeviceUsage struct {
	Key     string // node/device
	Mounted bool   // a file system is mounted at the device's mount point and answers
	Size    int64
	Used    int64
	Weight  float64
	Problem string // why not Mounted
}

// deviceUsage runs df on the device's mount point. A device whose mount point is not a mount
// (df names another file system) or that gives an error (a failed disk) is not Mounted.
func (s *Swift) deviceUsage(ctx context.Context, d DiskRequest) (DeviceUsage, error) {
	u := DeviceUsage{Key: d.Node + "/" + d.Device}
	n, _, err := s.device(d)
	if err != nil {
		return u, err
	}
	mp := n.mountPoint(d.Device)
	r, err := s.run(ctx, d.Node, "disk_free", map[string]string{"path": mp})
	if err != nil {
		return u, err
	}
	for _, fs := range parseDF(r.Stdout) {
		if path.Clean(fs.Mount) == path.Clean(mp) {
			u.Mounted, u.Size, u.Used = true, fs.Size, fs.Used
		}
	}
	if !u.Mounted {
		u.Problem = "df: " + firstLines(out(r), 2)
	}
	return u, nil
}

// Share is the outcome of RefillShare.
type Share struct {
	Have      int64   // the device's data: used bytes minus its empty file system
	Expected  float64 // what its weight entitles it to
	PerWeight float64 // the other devices' data per unit of weight
	Counted   int     // other devices counted (mounted, weight > 0)
}

// RefillShare compares a refilled device with the other devices. Every file system's own
// metadata is taken off its used bytes: baseline for the device (measured right after its
// mount), and for the others the baseline scaled by their size (same mkfs, same proportions).
func RefillShare(target DeviceUsage, baseline int64, others []DeviceUsage) Share {
	sh := Share{Have: max(target.Used-baseline, 0)}
	var data, weight float64
	for _, o := range others {
		if !o.Mounted || o.Weight <= 0 {
			continue
		}
		base := float64(baseline)
		if target.Size > 0 {
			base = float64(baseline) * float64(o.Size) / float64(target.Size)
		}
		data += max(float64(o.Used)-base, 0)
		weight += o.Weight
		sh.Counted++
	}
	if weight > 0 {
		sh.PerWeight = data / weight
		sh.Expected = sh.PerWeight * target.Weight
	}
	return sh
}

func humanBytes(b float64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.1f GiB", b/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", b/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.0f KiB", b/(1<<10))
	}
	return fmt.Sprintf("%.0f B", b)
}

// SortedNodes returns the cluster's node names, sorted.
func (c SwiftCluster) SortedNodes() []string {
	names := make([]string, 0, len(c.Nodes))
	//workflowcheck:ignore sorted below: workflows call this
	for k := range c.Nodes {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// StorageNodes returns the names of the nodes with devices, sorted.
func (c SwiftCluster) StorageNodes() []string {
	var names []string
	for _, k := range c.SortedNodes() {
		if len(c.Nodes[k].Devices) > 0 {
			names = append(names, k)
		}
	}
	return names
}
