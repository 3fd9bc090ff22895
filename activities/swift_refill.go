package activities

import (
	"context"
	"encoding/json"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
)

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
	if err := json.Unmarshal(data, &rc); err != nil || rc.Last <= 0 {
		return reconPass{}, false
	}
	// A negative duration, a start after the end or a time past int64 nanoseconds (year 2262)
	// is not a pass: taken as one, it could make an old pass look newer than the change.
	if rc.Time < 0 || rc.Stats.Start < 0 || rc.Stats.Start > rc.Last || rc.Last >= 9e9 {
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
	if p.Start.Unix() < 0 {
		return reconPass{}, false
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
		frac = DefaultRefillShare
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
		n, h, err := s.nodeHost(node)
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
	bytesLine := fmt.Sprintf("%s of data (%s used, %s for the empty file system); its weight %s predicts about %s (the other %d mounted devices hold %s per unit of weight)",
		humanBytes(float64(share.Have)), humanBytes(float64(target.Used)), humanBytes(float64(req.DeviceBaseline)),
		FormatWeight(target.Weight), humanBytes(share.Expected), share.Counted, humanBytes(share.PerWeight))
	// The measure that decides: the ring's own assignment. Disk usage against the weight is
	// only an estimate (which objects hash to a device's partitions varies by far more than 5%
	// with little data); a partition the ring gives the device and another replica holder has
	// data for must be on the device.
	cov, err := s.partitionCoverage(ctx, req)
	if err != nil {
		res.Detail = fmt.Sprintf("%s/%s holds %s; the ring's assignment could not be read (%v): judged by disk usage, done at %.0f%%",
			req.Device.Node, req.Device.Device, bytesLine, err, frac*100)
		return float64(share.Have) >= frac*share.Expected, nil
	}
	res.Partitions = &cov
	res.Detail = fmt.Sprintf("%s/%s has %d of the %d partitions (of its %d in the object ring) that its peers hold data for; %s; done at %.0f%% of the partitions",
		req.Device.Node, req.Device.Device, cov.Have, cov.Expected, cov.Assigned, bytesLine, frac*100)
	return float64(cov.Have) >= frac*float64(cov.Expected), nil
}

// DefaultRefillShare is the part of its expected partitions a refilled device must hold.
const DefaultRefillShare = 0.95

// partitionCoverage reads the object ring on the device's node and the partition directories of
// the device and of every device sharing a partition with it (one ls each).
func (s *Swift) partitionCoverage(ctx context.Context, req ReplicationRequest) (PartitionCoverage, error) {
	n, h, err := s.nodeHost(req.Device.Node)
	if err != nil {
		return PartitionCoverage{}, err
	}
	data, err := s.Files.ReadFile(ctx, h, path.Join(n.SwiftDir, "object.ring.gz"), 64<<20)
	if err != nil {
		return PartitionCoverage{}, err
	}
	ra, err := ParseRingFile(data)
	if err != nil {
		return PartitionCoverage{}, err
	}
	id := ra.DeviceID(n.RingIP, req.Device.Device)
	if id < 0 {
		return PartitionCoverage{}, fmt.Errorf("%s/%s (%s) is not in the object ring", req.Device.Node, req.Device.Device, n.RingIP)
	}
	assigned := ra.PartitionsOf(id)
	byIP := map[string]string{}
	for name, node := range s.Cluster.Nodes {
		byIP[node.RingIP] = name
	}
	list := func(node, dev string) (map[int]bool, error) {
		nn, _ := s.node(node)
		r, err := s.run(ctx, node, "list_dir", map[string]string{"path": path.Join(nn.mountPoint(dev), "objects")})
		if err != nil {
			return nil, err
		}
		if r.ExitCode != 0 {
			return map[int]bool{}, nil // no objects directory (yet)
		}
		return partitionDirs(r.Stdout), nil
	}
	mine, err := list(req.Device.Node, req.Device.Device)
	if err != nil {
		return PartitionCoverage{}, err
	}
	peers := map[int]map[int]bool{}
	for _, others := range assigned {
		for _, d := range others {
			if _, done := peers[d]; done || d >= len(ra.Devs) || ra.Devs[d] == nil {
				continue
			}
			node, ok := byIP[ra.Devs[d].IP]
			if !ok {
				continue // a device of a node stackrun does not know: counted as holding nothing
			}
			if peers[d], err = list(node, ra.Devs[d].Device); err != nil {
				return PartitionCoverage{}, err
			}
		}
	}
	return CoverPartitions(assigned, mine, peers), nil
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
