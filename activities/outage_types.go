package activities

import "time"

// OutageTable is the priority table of outage-recovery resolved against the inventory: for each
// tier, in priority order, the hosts it brings back and the services on them.
type OutageTable struct {
	Tiers []OutageTier `json:"tiers"`
	// Instances is the start policy of the user-instance tier (ran-before | none); Gate asks a
	// signed approval before instances are started.
	Instances string `json:"instances"`
	Gate      bool   `json:"gate,omitempty"`
}

// OutageTier is one resolved tier.
type OutageTier struct {
	Priority int    `json:"priority"`
	Name     string `json:"name"`
	// Hosts are checked with HostVerify (reachable, swift-devices).
	Hosts      []string `json:"hosts,omitempty"`
	HostVerify []string `json:"host_verify,omitempty"`
	// Services are the tier's services on the hosts that run them.
	Services []OutageService `json:"services,omitempty"`
	// Checks run after the tier is verified (db-integrity, hypervisors).
	Checks []string `json:"checks,omitempty"`
	// Instances marks the user-instance tier.
	Instances bool `json:"instances,omitempty"`
	// Missing names what the table lists but no host of this cloud runs (why a tier is empty).
	Missing []string `json:"missing,omitempty"`
	// Parallel bounds the tier's hosts and services at once (0: the run's --parallel).
	Parallel int `json:"parallel,omitempty"`
}

// Empty reports a tier with nothing to bring back or verify.
func (t OutageTier) Empty() bool {
	return !t.Instances && len(t.Services) == 0 && (len(t.Hosts) == 0 || len(t.HostVerify) == 0) && len(t.Checks) == 0
}

// OutageService is one service on one host and how it is verified (process, port:<n>, amqp,
// api:<name>).
type OutageService struct {
	Host    string   `json:"host"`
	Role    string   `json:"role"`
	Service string   `json:"service"`
	Log     string   `json:"log,omitempty"`
	Verify  []string `json:"verify"`
}

// Request is the service as the host activities take it.
func (s OutageService) Request() ServiceRequest {
	return ServiceRequest{Host: s.Host, Role: s.Role, Service: s.Service}
}

// OutageStarted is what starting a service found and did.
type OutageStarted struct {
	// AlreadyUp: it ran before the call, nothing was started.
	AlreadyUp bool      `json:"already_up"`
	At        time.Time `json:"at"`
	// Retried: an earlier attempt of the same activity started it (its answer was lost); At is
	// when that attempt started it.
	Retried bool `json:"retried,omitempty"`
}

// OutageVerifyRequest asks for one service's verifications; Since is when it was started (the
// AMQP connection must be newer).
type OutageVerifyRequest struct {
	OutageService
	Since time.Time `json:"since"`
}

// OutageVerified is what the verifications showed (each line names its evidence).
type OutageVerified struct {
	Evidence []string `json:"evidence"`
}

// OutageHostRequest asks for a host's verifications (reachable, swift-devices).
type OutageHostRequest struct {
	Host   string   `json:"host"`
	Verify []string `json:"verify"`
}

// OutageHostResult is what the host verifications showed and did.
type OutageHostResult struct {
	Evidence []string `json:"evidence"`
	// Mounted are the Swift devices this call mounted (the others were mounted already).
	Mounted []string `json:"mounted,omitempty"`
	// Devices are the Swift devices verified mounted and readable.
	Devices []string `json:"devices,omitempty"`
}

// OutageDBCheck is the result of the database integrity check.
type OutageDBCheck struct {
	Command   string   `json:"command"`
	Databases []string `json:"databases"`
	// Missing are configured schemas the server does not have.
	Missing []string `json:"missing,omitempty"`
	Tables  int      `json:"tables"`
	// Problems are tables not OK, with mariadb-check's own words.
	Problems []string `json:"problems,omitempty"`
}

// OutageInstance is an instance as the Nova database records it.
type OutageInstance struct {
	ID         string `json:"id"`
	Name       string `json:"name,omitempty"`
	Host       string `json:"host,omitempty"`
	VMState    string `json:"vm_state"`
	PowerState int    `json:"power_state"`
	TaskState  string `json:"task_state,omitempty"`
}

// Nova power states (nova/compute/power_state.py).
const (
	PowerNoState  = 0
	PowerRunning  = 1
	PowerShutdown = 4
)

// RanBefore reports whether the record says the instance was running: vm_state active and
// power state running, as the database holds it before Nova's power-state sync rewrites it.
func (i OutageInstance) RanBefore() bool {
	return i.VMState == "active" && i.PowerState == PowerRunning
}

// OutageHypervisorCheck is what the hypervisors and the database say after Nova is back.
type OutageHypervisorCheck struct {
	// Computes: host -> "up" or why not.
	Computes map[string]string `json:"computes"`
	// Mismatches: instances whose database host disagrees with the hypervisors' lists.
	Mismatches []string `json:"mismatches,omitempty"`
	Instances  int      `json:"instances"`
}

// OutageInstanceRequest asks to bring one instance back. Recreate: its host's hypervisor came
// back from the outage in this run (its nova-compute was down), so an ACTIVE record with a
// running power state is stale until Nova syncs it: the guest is recreated (hard reboot).
type OutageInstanceRequest struct {
	ID       string `json:"id"`
	Recreate bool   `json:"recreate,omitempty"`
}

// OutageInstanceResult is what starting one instance did.
type OutageInstanceResult struct {
	ID     string `json:"id"`
	Action string `json:"action"` // already-up, start, hard-reboot
	Status string `json:"status"`
	Power  int    `json:"power_state"`
}
