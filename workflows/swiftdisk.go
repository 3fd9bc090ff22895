package workflows

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/stackrun/stackrun/activities"
)

// SwiftDisk replaces a failed disk of a Swift storage node (RUNBOOKS.md §4): preflight (the
// device is one of the node's Swift devices, in the rings, and no partition would be left without
// a copy), optional drain (a child SwiftRing run), unmount (stopping the node's Swift services
// when the target is busy), gate disk-replaced while a person swaps the disk, checks of the new
// disk (present, a whole disk, its size and kernel log, not mounted, no file system or partition
// table — or the overwrite-disk gate), mkfs.xfs with a label on the whole disk (never twice), an
// fstab entry by UUID and a mount through it, owned by swift, restart of the node's Swift
// services, and replication followed until the device holds 95% of its partitions again.
var SwiftDisk = Define(Def[SwiftDiskInput, swiftDiskPlan]{
	Name:     "swift-disk",
	Short:    "Replace a failed Swift disk: unmount, swap (gate), mkfs.xfs, mount, refill by replication",
	StepsFor: swiftDiskSteps,
	Key:      func(in *SwiftDiskInput) string { return in.Node + "/" + in.Device },
	Plan:     planSwiftDisk,
	Act:      swiftDisk,
	Formerly: []string{"SwiftDiskReplacement"},
})

// Gates of SwiftDisk.
const (
	GateDiskReplaced  = "disk-replaced"
	GateOverwriteDisk = "overwrite-disk"
)

// SwiftDiskInput is the input of SwiftDisk (RUNBOOKS.md §4).
type SwiftDiskInput struct {
	Meta
	Node   string `json:"node" flag:"node" usage:"inventory name of the storage node (required)"`
	Device string `json:"device" flag:"device" usage:"Swift device name as in the rings, e.g. sdb: a plain name, not a path (required)"`
	// DrainFirst sets the device's weight to 0 (a ring change) before the disk is swapped, and
	// restores it afterwards: for a disk that will be out for long.
	DrainFirst bool `json:"drain_first,omitempty" flag:"drain-first" usage:"drain the device from the rings (weight 0, a child swift-ring run) first, let replication settle, and restore its weight once the new disk is mounted"`
	// WaitMinPartHours lets the drain wait (durably) for min_part_hours instead of stalling.
	// The restore always waits: the drain's own rebalance started min_part_hours again.
	WaitMinPartHours bool          `json:"wait_min_part_hours,omitempty" flag:"wait-min-part-hours" usage:"with --drain-first: wait (durably) for min_part_hours before the drain instead of stalling"`
	RefillTimeout    time.Duration `json:"refill_timeout,omitempty" flag:"refill-timeout" usage:"longest wait for replication to refill the new disk, or to settle after the drain (default 24h)"`
	PollInterval     time.Duration `json:"poll_interval,omitempty" flag:"poll-interval" usage:"how often replication progress is read (default 30s)"`
}

func (in *SwiftDiskInput) Validate() error {
	if err := validateMeta(&in.Meta); err != nil {
		return err
	}
	if err := ValidateHostName("node", in.Node); err != nil {
		return err
	}
	if err := ValidateSwiftDevice("device", in.Device); err != nil {
		return err
	}
	if err := validateWait("refill-timeout", in.RefillTimeout, "poll-interval", in.PollInterval); err != nil {
		return err
	}
	return nil
}

// lastCopyRisk returns why replacing dev may lose the last copy of some partition, or "".
// replicas-1 copies of each of its partitions live on other devices; every other device that is
// unmounted or failing may hold one of them.
func lastCopyRisk(st activities.RingStatus, ip, dev string, unhealthy []activities.DeviceState, nodeIP map[string]string) string {
	for _, ri := range st.Rings {
		if len(ri.Find(ip, dev)) == 0 {
			continue
		}
		var down []string
		for _, u := range unhealthy {
			if len(ri.Find(nodeIP[u.Node], u.Device)) > 0 {
				why := "unmounted or failing"
				if u.Unreachable {
					why = "node cannot be reached: counted as holding none of its copies"
				}
				down = append(down, u.Node+"/"+u.Device+" ("+why+")")
			}
		}
		left := int(math.Floor(ri.Replicas)) - 1 - len(down)
		if left < 1 {
			return fmt.Sprintf("the %s ring keeps %.0f replica(s) and %d other device(s) are unavailable: %s; %s may hold the last copy of some partitions",
				ri.Kind, ri.Replicas, len(down), strings.Join(down, ", "), dev)
		}
	}
	return ""
}

func swiftDiskSteps(in *SwiftDiskInput) []string {
	steps := []string{"describe", "check-rings", "check-replicas"}
	if in.DrainFirst {
		steps = append(steps, GateApproveRingChange)
	}
	steps = append(steps, "acquire-lease")
	if in.DrainFirst {
		steps = append(steps, "drain", "drain-settle")
	}
	steps = append(steps, "unmount", GateDiskReplaced, "inspect-new-disk", "format", "mount", "restart-services")
	if in.DrainFirst {
		steps = append(steps, "restore-weight")
	}
	return append(steps, "refill")
}

// swiftDiskPlan is what the replacement acts on: the cluster and the node as configured, where
// the device lives, its weights in the rings (restored after a drain) and the object ring's
// weights (the refill's measure of each device's share).
type swiftDiskPlan struct {
	cl                  activities.SwiftCluster
	devPath, mountPoint string
	origWeight, weights map[string]float64
	restoreTo           float64
	differ              bool
	restoreCmd          string
}

func planSwiftDisk(r *Run, in *SwiftDiskInput, p *swiftDiskPlan) (Approval, error) {
	var cl activities.SwiftCluster
	var node activities.SwiftNodeInfo
	err := r.Do("describe", StepOptions{Target: in.Node, NoSkip: true}, func(ctx workflow.Context) error {
		if err := r.Exec(ctx, "describe", "swift", swift.SwiftTopology, &cl); err != nil {
			return err
		}
		n, ok := cl.Nodes[in.Node]
		if !ok || len(n.Devices) == 0 {
			return temporal.NewNonRetryableApplicationError((&FieldError{Field: "node", Value: in.Node,
				Problem: fmt.Sprintf("not a Swift storage node (storage nodes: %s)", strings.Join(cl.StorageNodes(), ", "))}).Error(), activities.ErrTypeInvalidInput, nil)
		}
		if _, ok := n.Devices[in.Device]; !ok {
			devs := make([]string, 0, len(n.Devices))
			//workflowcheck:ignore sorted below
			for d := range n.Devices {
				devs = append(devs, d)
			}
			slices.Sort(devs)
			return temporal.NewNonRetryableApplicationError((&FieldError{Field: "device", Value: in.Device,
				Problem: fmt.Sprintf("not a Swift device of %s (its devices: %s)", in.Node, strings.Join(devs, ", "))}).Error(), activities.ErrTypeInvalidInput, nil)
		}
		node = n
		return nil
	})
	if err != nil {
		return Approval{}, Summarize("invalid input", err)
	}
	devPath := node.Devices[in.Device]
	mountPoint := strings.TrimSuffix(node.DevicesDir, "/") + "/" + in.Device

	var st activities.RingStatus
	err = r.Do("check-rings", StepOptions{Target: cl.RingBuilderHost, NoSkip: true}, func(ctx workflow.Context) error {
		if err := r.Exec(ctx, "check-rings", cl.RingBuilderHost, swift.RingStatus, &st); err != nil {
			return err
		}
		var in3 []string
		for _, ri := range st.Rings {
			if len(ri.Find(node.RingIP, in.Device)) > 0 {
				in3 = append(in3, ri.Kind)
			}
		}
		if len(in3) == 0 {
			return temporal.NewNonRetryableApplicationError(fmt.Sprintf("device %s of %s (%s) is in none of the rings: nothing to replace here (add it with swift-ring)",
				in.Device, in.Node, node.RingIP), activities.ErrTypeInvalidInput, nil)
		}
		r.step("check-rings").Detail = "in the " + strings.Join(in3, ", ") + " rings"
		return nil
	})
	if err != nil {
		return Approval{}, err
	}
	origWeight := map[string]float64{}
	for _, ri := range st.Rings {
		if d := ri.Find(node.RingIP, in.Device); len(d) > 0 {
			origWeight[ri.Kind] = d[0].Weight
		}
	}
	// The weight restored after a drain: the object ring's (one --set-weight covers every ring).
	restoreTo, differ := -1.0, false
	for _, kind := range []string{"object", "container", "account"} {
		if w, ok := origWeight[kind]; ok {
			if restoreTo < 0 {
				restoreTo = w
			} else if w != restoreTo {
				differ = true
			}
		}
	}
	restoreCmd := fmt.Sprintf("stackrun run swift-ring --set-weight %s/%s=%s", in.Node, in.Device, activities.FormatWeight(restoreTo))
	// The object ring's weights by node/device: the refill check's measure of each device's share.
	weights := map[string]float64{}
	ipNode := map[string]string{}
	for _, n := range cl.StorageNodes() {
		ipNode[cl.Nodes[n].RingIP] = n
	}
	if ri, ok := st.Ring("object"); ok {
		for _, d := range ri.Devices {
			if n, ok := ipNode[d.IP]; ok {
				weights[n+"/"+d.Name] = d.Weight
			}
		}
	}

	var target activities.DeviceState
	err = r.Do("check-replicas", StepOptions{Target: "storage nodes", NoSkip: true}, func(ctx workflow.Context) error {
		storage := cl.StorageNodes()
		calls := make([]*Call, len(storage))
		for i, n := range storage {
			calls[i] = r.Start(ctx, "check-replicas", n, swift.DeviceHealth, n)
		}
		var unhealthy []activities.DeviceState
		nodeIP := map[string]string{}
		for i, n := range storage {
			nodeIP[n] = cl.Nodes[n].RingIP
			var states []activities.DeviceState
			if err := calls[i].Get(ctx, &states); err != nil {
				return fmt.Errorf("device health on %s: %w", n, err)
			}
			for _, s := range states {
				switch {
				case s.Node == in.Node && s.Device == in.Device:
					target = s
				case !s.Healthy:
					unhealthy = append(unhealthy, s)
					r.AddFinding(activities.SeverityWarning, s.Node+"/"+s.Device, "also unavailable: %s", s.Detail)
				}
			}
		}
		if target.Unreachable {
			return temporal.NewNonRetryableApplicationError(fmt.Sprintf("refused: %s itself cannot be reached (%s): nothing can be unmounted or checked there", in.Node, target.Detail), activities.ErrTypeRefused, nil)
		}
		if why := lastCopyRisk(st, node.RingIP, in.Device, unhealthy, nodeIP); why != "" {
			return temporal.NewNonRetryableApplicationError("refused: "+why, activities.ErrTypeRefused, nil)
		}
		return nil
	})
	if err != nil {
		return Approval{}, err
	}
	state := "healthy"
	switch {
	case !target.Mounted:
		state = "not mounted"
	case !target.Healthy:
		state = "failed (" + target.Detail + ")"
	}
	r.SetDetail("device_before", target)
	plan := []string{
		fmt.Sprintf("device %s of %s: block device %s, mounted at %s, now %s; in the rings at %s with weight %v", in.Device, in.Node, devPath, mountPoint, state, node.RingIP, origWeight),
	}
	if in.DrainFirst {
		plan = append(plan, fmt.Sprintf("gate %s: a person approves the drain (and the restore) before the rings change", GateApproveRingChange))
	}
	plan = append(plan, fmt.Sprintf("take the lease of %s (hosts out of service; no other runbook on it meanwhile)", in.Node))
	if in.DrainFirst {
		wait := "stalls inside min_part_hours (resolve retry later), or --wait-min-part-hours to wait"
		if in.WaitMinPartHours {
			wait = "waits (durably) for min_part_hours"
		}
		plan = append(plan,
			fmt.Sprintf("drain: ring change setting %s/%s to weight 0 in every ring (child swift-ring run, %s)", in.Node, in.Device, wait),
			"wait for replication to settle after the drain")
	}
	plan = append(plan,
		fmt.Sprintf("unmount %s on %s (stopping the node's Swift services if the target is busy)", mountPoint, in.Node),
		fmt.Sprintf("gate %s: a person replaces the disk", GateDiskReplaced),
		fmt.Sprintf("check the new disk at %s: present, a whole disk, its size and kernel log, not mounted, no file system or partition table (else gate %s)", devPath, GateOverwriteDisk),
		fmt.Sprintf("mkfs.xfs -L %s %s (whole disk), fstab entry UUID=<new> %s xfs noatime,nofail, mount through it, chown swift:swift", in.Device, devPath, mountPoint),
		fmt.Sprintf("restart the Swift services of %s", in.Node),
	)
	if in.DrainFirst {
		plan = append(plan, fmt.Sprintf("restore the weight of %s/%s to %s in every ring (child swift-ring run; waits durably for min_part_hours since the drain)",
			in.Node, in.Device, activities.FormatWeight(restoreTo)))
	}
	plan = append(plan, fmt.Sprintf("follow replication until %s holds its share again: 95%% of the object-ring partitions it is given that its peers hold data for", in.Device))
	r.SetPlan(plan)
	*p = swiftDiskPlan{cl: cl, devPath: devPath, mountPoint: mountPoint, origWeight: origWeight, weights: weights,
		restoreTo: restoreTo, differ: differ, restoreCmd: restoreCmd}
	if in.DrainFirst && r.Verifies() {
		// The drain changes the rings (weight 0, rebalance, distribution): a person approves it
		// first; this approval is what the drain's and the restore's child ring changes carry.
		return Approval{Gate: GateApproveRingChange, Summary: fmt.Sprintf("Drain %s/%s from the rings (weight 0, rebalance, distribution), then replace the disk and restore its weight %s. Reason: %s",
			in.Node, in.Device, activities.FormatWeight(restoreTo), in.Reason)}, nil
	}
	return Approval{}, nil
}

func swiftDisk(r *Run, in *SwiftDiskInput, p *swiftDiskPlan) (string, error) {
	cl, devPath, mountPoint, weights := p.cl, p.devPath, p.mountPoint, p.weights
	origWeight, restoreTo, differ, restoreCmd := p.origWeight, p.restoreTo, p.differ, p.restoreCmd

	if r.Verifies() {
		// The host's lease: a slot among the hosts out of service, and the lock that keeps any
		// other runbook off this node meanwhile.
		if err := r.AcquireHostLease(in.Node); err != nil {
			return "", err
		}
	}
	drained := ""
	if in.DrainFirst {
		if differ {
			r.AddFinding(activities.SeverityWarning, in.Node+"/"+in.Device, "its weight differs between the rings (%v): the restore sets %s in every ring", origWeight, activities.FormatWeight(restoreTo))
		}
		if err := ringChild(r, "drain", SwiftRingInput{SetWeight: []string{in.Node + "/" + in.Device + "=0"}, Wait: in.WaitMinPartHours},
			fmt.Sprintf("nothing was changed: %s is still mounted and in the rings", mountPoint)); err != nil {
			return "", err
		}
		drained = fmt.Sprintf("; %s/%s has weight 0 in the rings (drained): restore it with `%s`", in.Node, in.Device, restoreCmd)
		r.SetLeftState(strings.TrimPrefix(drained, "; "))
		if err := waitSettled(r, "drain-settle", cl, in.RefillTimeout, in.PollInterval, nil); err != nil {
			return "", err
		}
	}

	disk := activities.DiskRequest{Node: in.Node, Device: in.Device}
	quick := func(ctx workflow.Context) workflow.Context { return r.ActivityOptions(ctx, 3*time.Minute, 0) }
	var um activities.UnmountResult
	err := r.Do("unmount", StepOptions{Target: in.Node, NoSkip: true}, func(ctx workflow.Context) error {
		return r.Exec(quick(ctx), "unmount", in.Node, swift.UnmountDevice, &um, disk)
	})
	if err != nil {
		return "", err
	}
	r.step("unmount").Detail = um.Detail
	if um.Lazy {
		r.AddFinding(activities.SeverityWarning, in.Node+"/"+in.Device, "unmounted lazily: %s", um.Detail)
	}
	r.SetLeftState(fmt.Sprintf("%s is unmounted on %s; the device is out of service until a new disk is formatted and mounted%s", mountPoint, in.Node, drained))

	if err := r.Gate(GateDiskReplaced, GateOptions{Summary: fmt.Sprintf("Replace the disk of %s/%s (block device %s, mount point %s), then approve. Reason: %s",
		in.Node, in.Device, devPath, mountPoint, in.Reason)}); err != nil {
		return "", err
	}

	var facts activities.DiskFacts
	err = r.Do("inspect-new-disk", StepOptions{Target: in.Node, NoSkip: true}, func(ctx workflow.Context) error {
		if err := r.Exec(quick(ctx), "inspect-new-disk", in.Node, swift.InspectDisk, &facts, disk); err != nil {
			return err
		}
		switch {
		case !facts.Exists:
			return fmt.Errorf("no block device at %s on %s: is the new disk in? (resolve retry when it is)", devPath, in.Node)
		case facts.Size <= 0:
			return fmt.Errorf("%s (%s) on %s reports size 0", devPath, facts.Resolved, in.Node)
		case facts.Mounted:
			return fmt.Errorf("%s (%s) on %s is mounted: not a new disk", devPath, facts.Resolved, in.Node)
		case facts.Type != "" && !activities.WholeDisk(facts.Type):
			return temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s (%s) on %s is a %s, not a whole disk: swift-disk formats whole disks only (point swift.nodes.%s.devices.%s at the disk)",
				devPath, facts.Resolved, in.Node, facts.Type, in.Node, in.Device), activities.ErrTypeRefused, nil)
		}
		kernel := "the kernel log names it nowhere (ring buffer rotated?)"
		if n := len(facts.KernelLog); n > 0 {
			kernel = fmt.Sprintf("kernel log: %d line(s), last %q", n, facts.KernelLog[n-1])
		}
		r.step("inspect-new-disk").Detail = fmt.Sprintf("%s -> %s (%s), %d bytes, not mounted, file system %q, partition table %q; %s",
			devPath, facts.Resolved, facts.Type, facts.Size, facts.FSType, facts.PartTable, kernel)
		return nil
	})
	if err != nil {
		return "", err
	}
	r.SetDetail("new_disk", facts)
	for _, l := range facts.KernelErrors {
		r.AddFinding(activities.SeverityWarning, in.Node+"/"+in.Device, "the kernel log reports for %s: %s", facts.Resolved, l)
	}
	overwrite := false
	if facts.FSType != "" || facts.PartTable != "" {
		r.AddSteps(GateOverwriteDisk)
		what := fmt.Sprintf("a %s file system (label %q, UUID %s)", facts.FSType, facts.Label, facts.UUID)
		if facts.FSType == "" {
			what = "a partition table (" + facts.PartTable + ")"
		}
		if err := r.Gate(GateOverwriteDisk, GateOptions{Summary: fmt.Sprintf("The new disk %s (%s, %d bytes) on %s already holds %s. Approve to overwrite it.",
			devPath, facts.Resolved, facts.Size, in.Node, what)}); err != nil {
			return "", err
		}
		overwrite = true
	}

	var fr activities.FormatResult
	err = r.Do("format", StepOptions{Target: in.Node + ":" + devPath, NoSkip: true}, func(ctx workflow.Context) error {
		return r.Exec(quick(ctx), "format", in.Node, swift.FormatDisk, &fr,
			activities.FormatRequest{Node: in.Node, Device: in.Device, Overwrite: overwrite, PreviousUUID: facts.UUID})
	})
	if err != nil {
		return "", err
	}
	r.step("format").Detail = fmt.Sprintf("XFS label %s UUID %s (formatted by this step: %v)", fr.Label, fr.UUID, fr.Formatted)
	r.SetDetail("format", fr)

	var mr activities.MountResult
	err = r.Do("mount", StepOptions{Target: in.Node, NoSkip: true}, func(ctx workflow.Context) error {
		return r.Exec(quick(ctx), "mount", in.Node, swift.MountDisk, &mr, disk)
	})
	if err != nil {
		return "", err
	}
	r.step("mount").Detail = fmt.Sprintf("%s on %s through fstab entry %q (written now: %v), owner %s, %d bytes used by the empty file system",
		mr.Source, mr.MountPoint, mr.Fstab, mr.FstabChanged, mr.Owner, mr.UsedBytes)
	r.SetLeftState(strings.TrimPrefix(drained, "; "))

	since := workflow.Now(r.ctx)
	err = r.Do("restart-services", StepOptions{Target: in.Node}, func(ctx workflow.Context) error {
		return r.Exec(quick(ctx), "restart-services", in.Node, swift.RestartSwift, nil, in.Node)
	})
	if err != nil {
		return "", err
	}
	if in.DrainFirst {
		// A drained device gets no data: the weight comes back before the refill is followed.
		// The drain's rebalance started min_part_hours again: the child waits for it (durably).
		r.step("restore-weight").Detail = fmt.Sprintf("pending: child run %s/restore-weight waits durably for min_part_hours since the drain, then sets weight %s (or run `%s`)",
			r.info.WorkflowExecution.ID, activities.FormatWeight(restoreTo), restoreCmd)
		r.updateDetails()
		err := ringChild(r, "restore-weight", SwiftRingInput{SetWeight: []string{fmt.Sprintf("%s/%s=%s", in.Node, in.Device, activities.FormatWeight(restoreTo))}, Wait: true},
			fmt.Sprintf("%s is mounted but still has weight 0: `%s` restores it", mountPoint, restoreCmd))
		if err != nil {
			return "", err
		}
		r.SetLeftState("")
		since = workflow.Now(r.ctx)
	}
	if err := waitSettledSince(r, "refill", cl, since, in.RefillTimeout, in.PollInterval, &refillCheck{dev: disk, weights: weights, baseline: mr.UsedBytes}); err != nil {
		return "", err
	}

	return summarize(r.findings, fmt.Sprintf("%s/%s replaced: new XFS %s mounted at %s and refilled by replication", in.Node, in.Device, fr.UUID, mountPoint)), nil
}
