package activities

import "time"

// DiskInspectSettings are the worker's inspect_disk settings (config inspect_disk.*).
type DiskInspectSettings struct {
	// InstancesPath is Nova's instances_path; "{host}" in it is replaced by the compute host's
	// inventory name. Default /var/lib/nova/instances.
	InstancesPath string `json:"instances_path"`
	// WorkDir holds one directory per inspected instance (export file, PID file, mount point).
	// Default /run/stackrun/inspect.
	WorkDir string `json:"work_dir"`
	// Pause is how the instance is taken out of use: suspend (default) or stop.
	Pause string `json:"pause"`
	// Method exposes the disk: qemu-storage-daemon (default: qcow2 and raw, with QEMU's lock
	// check) or loop (raw images only, losetup --read-only on the image, no lock check).
	Method string `json:"method"`
	// DefaultFormat is the image format when the instance directory has no disk.info.
	DefaultFormat string `json:"default_format"`
	// HashLimit: files up to this size get a SHA-256 of the whole file (default 256 MiB).
	HashLimit int64 `json:"hash_limit"`
}

// Values of DiskInspectSettings.Pause and .Method.
const (
	PauseSuspend = "suspend"
	PauseStop    = "stop"
	MethodQSD    = "qemu-storage-daemon"
	MethodLoop   = "loop"
)

// Limits of one ReadGuestFiles call (the workflow's input validation uses the same numbers).
const (
	MaxGuestPaths      = 32
	MaxGuestFileBytes  = 512 << 10 // per file
	MaxGuestTotalBytes = 1 << 20   // paths × max bytes: the report must stay under Temporal's 2 MB
)

// DiskLocation is where an instance's disk is and how this worker will expose it. It is computed
// once (LocateInstanceDisk) and passed to every later step, so all steps agree on the paths.
type DiskLocation struct {
	Instance    string   `json:"instance"`
	Name        string   `json:"name,omitempty"`
	Host        string   `json:"host"`   // inventory name of the compute host
	Status      string   `json:"status"` // Nova status when located
	TaskState   string   `json:"task_state,omitempty"`
	Disk        string   `json:"disk"`         // the image file
	Format      string   `json:"format"`       // qcow2 | raw
	FormatFrom  string   `json:"format_from"`  // disk.info | default
	VirtualSize int64    `json:"virtual_size"` // bytes, from qemu-img info
	FileSize    int64    `json:"file_size"`    // bytes on the host
	Backing     []string `json:"backing,omitempty"`
	Method      string   `json:"method"`
	Pause       string   `json:"pause"`
	Work        string   `json:"work"`        // <work_dir>/<uuid>
	Export      string   `json:"export"`      // the FUSE-exported raw view (or Disk for method loop)
	PIDFile     string   `json:"pid_file"`    // qemu-storage-daemon's PID file
	MountPoint  string   `json:"mount_point"` // where the guest file system is mounted read-only
}

// DiskExposure is the read-only loop device over the exported disk.
type DiskExposure struct {
	Loop      string `json:"loop"` // /dev/loopN
	FSType    string `json:"fs_type"`
	Partition int    `json:"partition,omitempty"` // 1-based; 0 = the whole disk
	Offset    int64  `json:"offset,omitempty"`
	SizeLimit int64  `json:"size_limit,omitempty"`
	DaemonPID int    `json:"daemon_pid,omitempty"`
	Reused    bool   `json:"reused,omitempty"` // found already exposed (a retry after a crash)
}

// DiskMountRequest mounts an exposure read-only.
type DiskMountRequest struct {
	Location DiskLocation `json:"location"`
	Exposure DiskExposure `json:"exposure"`
}

// DiskMountResult says what is mounted.
type DiskMountResult struct {
	MountPoint string `json:"mount_point"`
	Options    string `json:"options"`
	Reused     bool   `json:"reused,omitempty"`
}

// GuestFileRequest asks for files of the mounted guest file system.
type GuestFileRequest struct {
	Location DiskLocation `json:"location"`
	Paths    []string     `json:"paths"`     // absolute paths inside the guest
	MaxBytes int64        `json:"max_bytes"` // per file
}

// Outcomes of one requested file.
const (
	FileOK      = "ok"
	FileMissing = "missing"
	FileOverCap = "over-cap"
	FileRefused = "refused"
)

// GuestFile is one requested file: its content capped, or why it was not read.
type GuestFile struct {
	Path   string `json:"path"`
	Status string `json:"status"` // ok | missing | over-cap | refused
	Size   int64  `json:"size,omitempty"`
	// SHA256 is of the whole file when SHA256Of is "file", of the returned bytes when "content".
	SHA256   string `json:"sha256,omitempty"`
	SHA256Of string `json:"sha256_of,omitempty"`
	// Content holds the bytes when they are valid UTF-8, ContentBase64 otherwise.
	Content       string `json:"content,omitempty"`
	ContentBase64 string `json:"content_base64,omitempty"`
	Bytes         int64  `json:"bytes,omitempty"` // how many bytes are returned
	Truncated     bool   `json:"truncated,omitempty"`
	Detail        string `json:"detail,omitempty"`
}

// LoopDevice is one attached loop device.
type LoopDevice struct {
	Name      string `json:"name"`
	BackFile  string `json:"back-file"`
	RO        bool   `json:"ro"`
	Offset    int64  `json:"offset"`
	SizeLimit int64  `json:"sizelimit"`
}

// DiskWorld is what is really there on the host for one inspection: every step reads it first.
type DiskWorld struct {
	Exported     bool         `json:"exported"`             // a FUSE mount at Export
	DaemonPID    int          `json:"daemon_pid,omitempty"` // live qemu-storage-daemon serving Export
	Stale        bool         `json:"stale,omitempty"`      // exported but no live daemon
	Loops        []LoopDevice `json:"loops,omitempty"`      // loop devices over Export
	Mounted      bool         `json:"mounted"`
	MountSource  string       `json:"mount_source,omitempty"`
	MountOptions string       `json:"mount_options,omitempty"`
}

// Clean reports that nothing of the inspection is left on the host.
func (w DiskWorld) Clean() bool {
	return !w.Exported && w.DaemonPID == 0 && len(w.Loops) == 0 && !w.Mounted
}

// DiskUnmountResult says whether UnmountGuestFS found the guest file system mounted.
type DiskUnmountResult struct {
	WasMounted bool `json:"was_mounted"`
}

// DiskDetachResult is what DetachInstanceDisk took down.
type DiskDetachResult struct {
	Loops         []string `json:"loops,omitempty"`
	StoppedDaemon int      `json:"stopped_daemon,omitempty"`
	Killed        bool     `json:"killed,omitempty"` // the daemon needed SIGKILL
	StaleExport   bool     `json:"stale_export,omitempty"`
}

// PowerRequest takes an instance out of use (SuspendInstance) or gives it back (ResumeInstance).
type PowerRequest struct {
	Instance string        `json:"instance"`
	Mode     string        `json:"mode"` // suspend | stop
	Timeout  time.Duration `json:"timeout,omitempty"`
}

// PowerResult says what the instance was and is.
type PowerResult struct {
	Instance string `json:"instance"`
	Before   string `json:"before"`
	After    string `json:"after"`
	Acted    bool   `json:"acted"` // this call (or an earlier attempt of it) asked Nova
}
