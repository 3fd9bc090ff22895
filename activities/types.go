// Package activities holds every side effect of Stackrun: OpenStack through gophercloud, hosts
// through SSH, databases through go-sql-driver/mysql, notifications, and the Temporal client calls
// the machinery needs. Activities are methods on structs that hold their dependencies; the worker
// builds the structs from configuration, and workflows reference them through nil pointers.
package activities

// Severities of a finding.
const (
	SeverityInfo     = "info"
	SeverityWarning  = "warning"
	SeverityCritical = "critical"
)

// Finding is something a run observed that a person should know.
type Finding struct {
	Severity string `json:"severity"`
	Subject  string `json:"subject"`
	Message  string `json:"message"`
}

// Notification is what the machinery asks the Notify activity to deliver.
type Notification struct {
	Kind       string `json:"kind"` // gate-opened, gate-escalated, step-stalled, run-finished
	WorkflowID string `json:"workflow_id"`
	RunID      string `json:"run_id"`
	Runbook    string `json:"runbook"`
	Target     string `json:"target"`
	Name       string `json:"name,omitempty"` // gate or step
	Text       string `json:"text"`
	// Hint says how to act, e.g. the exact CLI command or signal to send.
	Hint string `json:"hint,omitempty"`

	// What chat messages show beside the text (filled by the machinery; never secrets).
	RequestedBy string    `json:"requested_by,omitempty"`
	Status      string    `json:"status,omitempty"`      // RunbookStatus when sent (final status for run-finished)
	Summary     string    `json:"summary,omitempty"`     // gate summary, or the run's summary when finished
	Plan        []string  `json:"plan,omitempty"`        // the plan (first lines) for gate-opened
	Destructive bool      `json:"destructive,omitempty"` // the gate is under the two-person rule
	Approvers   []string  `json:"approvers,omitempty"`   // who may approve the gate (empty: any operator)
	Error       string    `json:"error,omitempty"`       // the stalled step's error
	Findings    []Finding `json:"findings,omitempty"`    // the run's findings (run-finished)
}

// LeaseRequest asks the cloud-wide lease workflow for (or gives back) one host's slot among the
// hosts that may be out of service at once.
type LeaseRequest struct {
	WorkflowID string `json:"workflow_id"`
	// RunID is the requesting run: the next run on the same target is another holder.
	RunID string `json:"run_id,omitempty"`
	Host  string `json:"host"`
	Max   int    `json:"max"`
	// Lease is the lease workflow's ID; empty means the host lease (LeaseWorkflowID). Locks such
	// as one ring change at a time cloud-wide are lease workflows of their own with Max 1.
	Lease string `json:"lease,omitempty"`
}

// LeaseID is the ID of the lease workflow the request is for.
func (r LeaseRequest) LeaseID() string {
	if r.Lease != "" {
		return r.Lease
	}
	return LeaseWorkflowID
}

// LeaseWorkflowID is the ID of the one lease workflow per namespace.
const LeaseWorkflowID = "stackrun/host-lease"

// LeaseWorkflowType is the lease workflow's type name (workflows.HostLease).
const LeaseWorkflowType = "HostLease"

// Stable type names of non-retryable application errors (workflows re-export them).
const (
	ErrTypeInvalidInput = "InvalidInput"
	ErrTypeNotFound     = "NotFound"
	ErrTypeRefused      = "Refused"
	ErrTypeHostKey      = "HostKey"
	ErrTypeAborted      = "Aborted"
)
