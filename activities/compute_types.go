package activities

import "time"

// ComputeService is one nova-compute service.
type ComputeService struct {
	Host           string    `json:"host"`
	ID             string    `json:"id"`
	Status         string    `json:"status"` // enabled | disabled
	State          string    `json:"state"`  // up | down
	DisabledReason string    `json:"disabled_reason,omitempty"`
	ForcedDown     bool      `json:"forced_down,omitempty"`
	UpdatedAt      time.Time `json:"updated_at"`
}

// Instance is one server as the compute runbooks need it.
type Instance struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	Status     string `json:"status"`
	TaskState  string `json:"task_state,omitempty"`
	PowerState int    `json:"power_state"`
	Host       string `json:"host"`
	ProjectID  string `json:"project_id,omitempty"`
	VCPUs      int    `json:"vcpus"`
	RAMMB      int    `json:"ram_mb"`
	DiskGB     int    `json:"disk_gb"`
	Fault      string `json:"fault,omitempty"`
}

// HostCapacity is what Placement says a compute host has free.
type HostCapacity struct {
	Host       string `json:"host"`
	Provider   string `json:"provider"` // resource provider UUID
	FreeVCPUs  int    `json:"free_vcpus"`
	FreeRAMMB  int    `json:"free_ram_mb"`
	FreeDiskGB int    `json:"free_disk_gb"`
}

// ServiceChange asks for a nova-compute service to be enabled or disabled (with a reason), or
// for its forced_down flag to be set.
type ServiceChange struct {
	Host    string `json:"host"`
	Disable bool   `json:"disable,omitempty"`
	Enable  bool   `json:"enable,omitempty"`
	Reason  string `json:"reason,omitempty"`
	// ForcedDown, when not nil, sets the forced_down flag instead.
	ForcedDown *bool `json:"forced_down,omitempty"`
}

// MoveRequest asks for one instance to leave Source for Target.
type MoveRequest struct {
	ID     string `json:"id"`
	Source string `json:"source"`
	Target string `json:"target,omitempty"` // "" lets the scheduler choose
	Kind   string `json:"kind"`             // live | cold | evacuate
	// BlockMigration for live migrations: auto, yes or no.
	BlockMigration string `json:"block_migration,omitempty"`
	// Timeout bounds the whole move, across attempts (scaled with the guest's size).
	Timeout time.Duration `json:"timeout"`
	// Expect lists acceptable final statuses (default ACTIVE).
	Expect []string `json:"expect,omitempty"`
	// Stall (live migrations): when the migration's remaining memory and disk have not shrunk
	// for this long, it does not converge; 0: not watched. NotConverging says what then:
	// "abort" (the activity aborts it and fails) or "force-complete" (the activity fails with
	// ErrTypeNotConverging and the workflow asks at a gate).
	Stall         time.Duration `json:"stall,omitempty"`
	NotConverging string        `json:"not_converging,omitempty"`
	// ForceCompleted: the workflow force-completed this move's migration; it is followed only.
	ForceCompleted bool `json:"force_completed,omitempty"`
}

// ErrTypeNotConverging is the error type of a live migration that does not converge (policy
// force-complete: the workflow decides at a gate).
const ErrTypeNotConverging = "NotConverging"

// MoveResult says where the instance went and which migration record moved it.
type MoveResult struct {
	ID            string        `json:"id"`
	From          string        `json:"from"`
	To            string        `json:"to"`
	Status        string        `json:"status"`
	Migration     string        `json:"migration,omitempty"` // migration record UUID
	MigrationStat string        `json:"migration_status,omitempty"`
	Started       bool          `json:"started"` // this activity (some attempt of it) asked Nova to move it
	AlreadyMoved  bool          `json:"already_moved,omitempty"`
	Duration      time.Duration `json:"duration"`
	// Progress is the live migration's last progress seen (memory and disk remaining).
	Progress string `json:"progress,omitempty"`
}

// InstanceRecovery is what RecoverInstance did to one instance after a host reboot.
type InstanceRecovery struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Before string `json:"before"`
	Action string `json:"action"` // none | start | reboot | hard-reboot
	After  string `json:"after"`
}

// Reachability is the answer of SSHReachable.
type Reachability struct {
	Host      string `json:"host"`
	Reachable bool   `json:"reachable"`
	Detail    string `json:"detail"`
}

// HardRebootRequest asks for one instance to be hard-rebooted where the Nova database now places
// it (after the database-rewrite fallback), and to be verified ACTIVE and running on Host.
type HardRebootRequest struct {
	ID   string        `json:"id"`
	Host string        `json:"host"`
	Wait time.Duration `json:"wait,omitempty"` // default 3 minutes
}

// HardRebootResult is what the instance became.
type HardRebootResult struct {
	ID     string `json:"id"`
	Name   string `json:"name,omitempty"`
	Before string `json:"before"`
	Status string `json:"status"`
	Host   string `json:"host"`
}
