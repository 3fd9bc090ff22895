package activities

import (
	"bufio"
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/stackrun/stackrun/internal/infra/remote"
)

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

// AwaitMinPartHours re-reads the builders every Interval (heartbeating) until min_part_hours has
// passed on every ring or Until is reached, and returns the last status. The waiting happens
// here, not in workflow timers: a wait of days costs its run a few events per call, not a few
// per re-read (a re-read every few minutes would fill the history).
func (s *Swift) AwaitMinPartHours(ctx context.Context, req MinPartHoursRequest) (RingStatus, error) {
	interval := req.Interval
	if interval <= 0 {
		interval = 5 * time.Minute
	}
	for {
		st, err := s.RingStatus(ctx)
		if err != nil {
			return st, err
		}
		rem := st.MaxRemaining()
		activity.RecordHeartbeat(ctx, rem.String())
		left := time.Until(req.Until)
		if rem <= 0 || left <= 0 {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-time.After(min(interval, left, rem+time.Second)):
		}
	}
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
	// swift-ring-builder lists every device the summary counts: fewer rows is output cut short
	// (or a line it could not read), never a ring without those devices.
	if len(ri.Devices) != ri.DeviceCount {
		return ri, fmt.Errorf("swift-ring-builder %s: the summary counts %s devices but %d are listed (output cut short?)", builder, m[5], len(ri.Devices))
	}
	return ri, nil
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
	// Exit 1 also covers "No partitions could be reassigned" and "Cowardly refusing to save":
	// then nothing was saved and the ring file still lacks the builder's change. The builder's
	// own view (its ring file up to date with it) says whether the change reached the ring.
	after, err := s.ringInfo(ctx, kind)
	if err != nil {
		return res, err
	}
	if after.RingFile != "up-to-date" {
		return res, temporal.NewNonRetryableApplicationError(fmt.Sprintf(
			"rebalance %s: exit %d but the ring file is %s: the builder holds the change and the ring does not (nothing to distribute): %s",
			kind, r.ExitCode, after.RingFile, res.Output), ErrTypeRingNotSaved, nil)
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
	n, h, err := s.nodeHost(req.Node)
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
	n, h, err := s.nodeHost(req.Node)
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
