package activities

import "time"

// Ring kinds, in the order ring changes are applied.
var RingKinds = []string{"account", "container", "object"}

// SwiftCluster is the worker's Swift configuration (config swift:), resolved: every node has its
// directories, ring address and device paths filled in.
type SwiftCluster struct {
	RingBuilderHost string         `json:"ring_builder_host"`
	BuilderDir      string         `json:"builder_dir"`
	Ports           map[string]int `json:"ports"` // ring kind -> server port
	Parallelism     int            `json:"parallelism"`
	// MaxStepPercent: the largest weight change of one rebalance, in percent of the object
	// ring's total weight (0 = no limit; a recorded run without it has none).
	MaxStepPercent float64                  `json:"max_step_percent,omitempty"`
	Nodes          map[string]SwiftNodeInfo `json:"nodes"`
}

// SwiftNodeInfo is one Swift node: a storage node (with devices) or a proxy (without).
type SwiftNodeInfo struct {
	Name           string  `json:"name"`
	RingIP         string  `json:"ring_ip"`
	SwiftDir       string  `json:"swift_dir"`
	DevicesDir     string  `json:"devices_dir"`
	ReconCachePath string  `json:"recon_cache_path"`
	Fstab          string  `json:"fstab,omitempty"` // "" = /etc/fstab
	Region         int     `json:"region"`
	Zone           int     `json:"zone"`
	Weight         float64 `json:"weight"`
	// Devices maps each Swift device name to the block device holding it.
	Devices map[string]string `json:"devices,omitempty"`
	// Services are the node's Swift services, restarted when a device cannot be unmounted and
	// after a new one is mounted.
	Services []ServiceFacts `json:"services,omitempty"`
}

// RingDevice is one device line of `swift-ring-builder <builder>`.
type RingDevice struct {
	ID         int     `json:"id"`
	Region     int     `json:"region"`
	Zone       int     `json:"zone"`
	IP         string  `json:"ip"`
	Port       int     `json:"port"`
	Name       string  `json:"name"`
	Weight     float64 `json:"weight"`
	Partitions int     `json:"partitions"`
	Balance    float64 `json:"balance"`
	Flags      string  `json:"flags,omitempty"` // DEL: marked for removal at the next rebalance
}

// RingInfo is what `swift-ring-builder <builder>` says about one ring.
type RingInfo struct {
	Kind         string  `json:"kind"`
	Builder      string  `json:"builder"`
	Partitions   int     `json:"partitions"`
	Replicas     float64 `json:"replicas"`
	Zones        int     `json:"zones"`
	DeviceCount  int     `json:"device_count"`
	Balance      float64 `json:"balance"`
	Dispersion   float64 `json:"dispersion"`
	MinPartHours int     `json:"min_part_hours"`
	// Remaining is how long until min_part_hours has passed since the last rebalance.
	Remaining time.Duration `json:"remaining"`
	// RingFile is up-to-date, obsolete (changes not rebalanced yet) or missing.
	RingFile string       `json:"ring_file"`
	Devices  []RingDevice `json:"devices"`
}

// Find returns the devices of the ring at ip with the given name (normally zero or one).
func (ri RingInfo) Find(ip, name string) []RingDevice {
	var out []RingDevice
	for _, d := range ri.Devices {
		if d.IP == ip && d.Name == name {
			out = append(out, d)
		}
	}
	return out
}

// RingStatus is the state of the three rings on the ring-builder host.
type RingStatus struct {
	Rings []RingInfo `json:"rings"`
}

// Ring returns the ring of the given kind.
func (s RingStatus) Ring(kind string) (RingInfo, bool) {
	for _, r := range s.Rings {
		if r.Kind == kind {
			return r, true
		}
	}
	return RingInfo{}, false
}

// MaxRemaining is the longest min_part_hours wait of the rings.
func (s RingStatus) MaxRemaining() time.Duration {
	var m time.Duration
	for _, r := range s.Rings {
		m = max(m, r.Remaining)
	}
	return m
}

// MinPartHoursRequest asks AwaitMinPartHours to re-read the builders every Interval until
// min_part_hours has passed or Until.
type MinPartHoursRequest struct {
	Interval time.Duration `json:"interval"`
	Until    time.Time     `json:"until"`
}

// DeviceState is the health of one Swift device as its node sees it.
type DeviceState struct {
	Node       string `json:"node"`
	Device     string `json:"device"`
	MountPoint string `json:"mount_point"`
	Mounted    bool   `json:"mounted"`
	// Healthy: mounted and the file system answers (a shut-down XFS gives EIO).
	Healthy bool `json:"healthy"`
	// Unreachable: the node could not be reached, so nothing is known of the device; it counts
	// as holding none of its copies.
	Unreachable bool   `json:"unreachable,omitempty"`
	Detail      string `json:"detail,omitempty"`
}

// BackupRequest asks for the builder files to be copied into Dir (under the builder directory).
type BackupRequest struct {
	Name string `json:"name"` // backup directory name, e.g. stackrun-<run>
}

// BackupResult says where the backup is.
type BackupResult struct {
	Dir   string   `json:"dir"`
	Files []string `json:"files"`
}

// RingOp is one change of one ring.
type RingOp struct {
	Kind   string  `json:"kind"`   // account | container | object
	Action string  `json:"action"` // add | remove | set_weight
	Node   string  `json:"node"`
	Device string  `json:"device"`
	IP     string  `json:"ip"`
	Port   int     `json:"port"`
	Region int     `json:"region"`
	Zone   int     `json:"zone"`
	Weight float64 `json:"weight"`
}

// RingOpsResult says which operations changed the builder and which found it already done.
type RingOpsResult struct {
	Applied []string `json:"applied,omitempty"`
	Already []string `json:"already,omitempty"`
}

// RebalanceResult is one ring's rebalance.
type RebalanceResult struct {
	Kind     string `json:"kind"`
	ExitCode int    `json:"exit_code"`
	// Already: the ring file was up to date, nothing to rebalance (a retry after success).
	Already bool   `json:"already,omitempty"`
	Warning string `json:"warning,omitempty"`
	Output  string `json:"output,omitempty"`
}

// RingCheck is `validate` and `dispersion` of one ring.
type RingCheck struct {
	Kind       string  `json:"kind"`
	Valid      bool    `json:"valid"`
	Balance    float64 `json:"balance"`
	Dispersion float64 `json:"dispersion"`
	Output     string  `json:"output,omitempty"`
}

// RingFile is one ring file and the MD5 every node must have.
type RingFile struct {
	Name string `json:"name"` // account.ring.gz
	MD5  string `json:"md5"`
	Size int64  `json:"size"`
}

// PushRingsRequest asks for the builder host's ring files to be copied to one node.
type PushRingsRequest struct {
	Node  string     `json:"node"`
	Files []RingFile `json:"files"`
}

// PushRingsResult says what was copied.
type PushRingsResult struct {
	Node      string   `json:"node"`
	Copied    []string `json:"copied,omitempty"`
	Unchanged []string `json:"unchanged,omitempty"`
}

// RingSumsResult is one node's ring checksums.
type RingSumsResult struct {
	Node     string            `json:"node"`
	Sums     map[string]string `json:"sums"` // file -> md5 ("" = missing)
	Mismatch []string          `json:"mismatch,omitempty"`
}

// DiskRequest names one Swift device of one node.
type DiskRequest struct {
	Node   string `json:"node"`
	Device string `json:"device"`
}

// UnmountResult says how the device was unmounted.
type UnmountResult struct {
	WasMounted bool `json:"was_mounted"`
	// ServicesRestarted: umount said "target is busy" and the node's Swift services were stopped
	// for the unmount (and started again).
	ServicesRestarted bool   `json:"services_restarted,omitempty"`
	Lazy              bool   `json:"lazy,omitempty"`
	Detail            string `json:"detail,omitempty"`
}

// DiskFacts is what the node sees of the block device behind a Swift device.
type DiskFacts struct {
	Path     string `json:"path"`     // as configured (/dev/sdb, a by-id path, a lab symlink)
	Resolved string `json:"resolved"` // the block device it names
	Exists   bool   `json:"exists"`
	Size     int64  `json:"size"`
	Mounted  bool   `json:"mounted"`
	// Type is lsblk's TYPE: disk (or loop, mpath), never part: a whole disk is formatted.
	Type string `json:"type,omitempty"`
	// PartTable is blkid's PTTYPE: the disk holds a partition table (gated like a file system).
	PartTable string `json:"part_table,omitempty"`
	// KernelLog is what the kernel log says about the device (its kernel name), last lines.
	KernelLog []string `json:"kernel_log,omitempty"`
	// KernelErrors are those of its lines that report errors.
	KernelErrors []string `json:"kernel_errors,omitempty"`
	FSType       string   `json:"fs_type,omitempty"`
	UUID         string   `json:"uuid,omitempty"`
	Label        string   `json:"label,omitempty"`
}

// FormatRequest asks for an XFS file system on the whole device. PreviousUUID is the file
// system UUID the disk had when inspected ("" = none): a retry that finds an XFS with the
// device's label and another UUID knows the format already happened and does not repeat it.
type FormatRequest struct {
	Node         string `json:"node"`
	Device       string `json:"device"`
	Overwrite    bool   `json:"overwrite,omitempty"`
	PreviousUUID string `json:"previous_uuid,omitempty"`
}

// FormatResult says whether mkfs ran.
type FormatResult struct {
	Formatted bool   `json:"formatted"` // false: found already formatted by this run
	UUID      string `json:"uuid"`
	Label     string `json:"label"`
}

// MountResult is the mounted device.
type MountResult struct {
	MountPoint string `json:"mount_point"`
	Source     string `json:"source"`
	Owner      string `json:"owner"`
	Already    bool   `json:"already,omitempty"`
	// Fstab is the entry the mount goes through, and FstabChanged whether this call wrote it.
	Fstab        string `json:"fstab,omitempty"`
	FstabChanged bool   `json:"fstab_changed,omitempty"`
	// UsedBytes is df's used bytes of the file system right after the mount: the empty file
	// system's own metadata, the baseline of the refill check (0 = unknown).
	UsedBytes int64 `json:"used_bytes,omitempty"`
}

// ReplicationRequest asks to follow replication until every replicator of the nodes finished a
// pass that began after Since, and (with Device) until the device holds its share of the data.
type ReplicationRequest struct {
	Nodes    []string      `json:"nodes"`
	Since    time.Time     `json:"since"`
	Device   *DiskRequest  `json:"device,omitempty"`
	Deadline time.Time     `json:"deadline"`
	Interval time.Duration `json:"interval"`
	// ShareFraction is the part of its expected partitions (those its peers hold data for) the
	// device must hold (default DefaultRefillShare, 0.95).
	ShareFraction float64 `json:"share_fraction,omitempty"`
	// Weights are the object-ring weights of the devices, by "node/device": the device's share
	// is the other devices' data per unit of weight times its own weight. Devices without a
	// weight (or weight 0) are left out of the mean; nil weighs every device 1.
	Weights map[string]float64 `json:"weights,omitempty"`
	// DeviceBaseline is the device's used bytes right after its new file system was mounted
	// (MountResult.UsedBytes): what an empty file system of its size uses.
	DeviceBaseline int64 `json:"device_baseline,omitempty"`
}

// ReplicationResult is where replication stood when it settled (or the deadline passed).
type ReplicationResult struct {
	Settled bool `json:"settled"`
	Polls   int  `json:"polls"`
	// Pending lists node/replicator pairs without a full pass since Since.
	Pending []string `json:"pending,omitempty"`
	// DeviceBytes is the device's data: df used bytes minus DeviceBaseline.
	DeviceBytes int64 `json:"device_bytes"`
	// ExpectedBytes is the data the device's ring weight entitles it to, from the other devices.
	ExpectedBytes float64 `json:"expected_bytes"`
	// Partitions is the decisive measure (nil when the ring could not be read).
	Partitions *PartitionCoverage `json:"partitions,omitempty"`
	Detail     string             `json:"detail,omitempty"`
}
