package workflows

import (
	"time"

	"github.com/stackrun/stackrun/activities"
)

// GateDecisionRequest is the input of the approve and reject updates and signals. Signals sent
// from the Temporal web UI carry no caller identity, so the approver's name is part of the input
// and is checked against policy like any other.
type GateDecisionRequest struct {
	Gate    string `json:"gate"`
	By      string `json:"by"`
	Comment string `json:"comment,omitempty"`
	// Via says where the decision came from (cli, chat, web-ui...); informational.
	Via string `json:"via,omitempty"`
}

// ResolveRequest is the input of the resolve update and signal.
type ResolveRequest struct {
	Step    string `json:"step"`
	Action  string `json:"action"` // retry | skip | abort
	By      string `json:"by"`
	Comment string `json:"comment,omitempty"`
	Via     string `json:"via,omitempty"`
}

// Decision is a recorded human decision on a gate or a stalled step.
type Decision struct {
	Kind    string    `json:"kind"` // gate | resolve
	Name    string    `json:"name"` // gate or step name
	Outcome string    `json:"outcome"`
	By      string    `json:"by"`
	Comment string    `json:"comment,omitempty"`
	Via     string    `json:"via,omitempty"`
	At      time.Time `json:"at"`
}

// RefusedMessage records a signal that was invalid and therefore ignored.
type RefusedMessage struct {
	Signal string    `json:"signal"`
	Target string    `json:"target"`
	By     string    `json:"by"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

// StepStatus is one step's state as the status query and the report show it.
type StepStatus struct {
	Name     string     `json:"name"`
	State    StepState  `json:"state"`
	Target   string     `json:"target,omitempty"`
	Started  *time.Time `json:"started,omitempty"`
	Ended    *time.Time `json:"ended,omitempty"`
	Attempts int        `json:"attempts,omitempty"`
	Detail   string     `json:"detail,omitempty"`
	Error    string     `json:"error,omitempty"`
}

// GateStatus describes the open gate.
type GateStatus struct {
	Name        string    `json:"name"`
	Destructive bool      `json:"destructive"`
	Approvers   []string  `json:"approvers,omitempty"`
	OpenedAt    time.Time `json:"opened_at"`
	Deadline    time.Time `json:"deadline"`
	Escalations int       `json:"escalations"`
	Summary     string    `json:"summary,omitempty"`
}

// StalledStatus describes one stalled step.
type StalledStatus struct {
	Step  string    `json:"step"`
	Error string    `json:"error"`
	Since time.Time `json:"since"`
}

// Status answers the status query.
type Status struct {
	Runbook     string               `json:"runbook"`
	Target      string               `json:"target"`
	RequestedBy string               `json:"requested_by"`
	Status      RunStatus            `json:"status"`
	CurrentStep string               `json:"current_step,omitempty"`
	DryRun      bool                 `json:"dry_run,omitempty"`
	Steps       []StepStatus         `json:"steps"`
	OpenGates   []GateStatus         `json:"open_gates,omitempty"`
	Stalled     []StalledStatus      `json:"stalled,omitempty"`
	Decisions   []Decision           `json:"decisions,omitempty"`
	Refused     []RefusedMessage     `json:"refused,omitempty"`
	Plan        []string             `json:"plan,omitempty"`
	Findings    []activities.Finding `json:"findings,omitempty"`
}

// AuditEntry records one activity: what ran, where, for whom, and with what result.
type AuditEntry struct {
	At          time.Time     `json:"at"`
	Step        string        `json:"step"`
	Activity    string        `json:"activity"`
	Target      string        `json:"target,omitempty"`
	RequestedBy string        `json:"requested_by"`
	Result      string        `json:"result"` // ok | error
	Error       string        `json:"error,omitempty"`
	Duration    time.Duration `json:"duration"`
	// Count > 0: this entry stands for Count successful calls of one per-item step group (large
	// runs; see LargeRunItems), Duration their sum.
	Count int `json:"count,omitempty"`
}

// Report is the result of every runbook. internal/app/report renders it as Markdown or JSON.
type Report struct {
	WorkflowID  string               `json:"workflow_id"`
	RunID       string               `json:"run_id"`
	Runbook     string               `json:"runbook"`
	Target      string               `json:"target"`
	RequestedBy string               `json:"requested_by"`
	Reason      string               `json:"reason,omitempty"`
	Status      RunStatus            `json:"status"`
	DryRun      bool                 `json:"dry_run,omitempty"`
	Started     time.Time            `json:"started"`
	Ended       time.Time            `json:"ended"`
	Summary     string               `json:"summary"`
	LeftState   string               `json:"left_state,omitempty"`
	Plan        []string             `json:"plan,omitempty"`
	Steps       []StepStatus         `json:"steps"`
	Findings    []activities.Finding `json:"findings,omitempty"`
	Decisions   []Decision           `json:"decisions,omitempty"`
	Refused     []RefusedMessage     `json:"refused,omitempty"`
	Audit       []AuditEntry         `json:"audit,omitempty"`
	Details     map[string]any       `json:"details,omitempty"`
}

// Meta is the part of every runbook input that the machinery reads.
type Meta struct {
	// RequestedBy is the operator who started the run (--as, or the login name).
	RequestedBy string `json:"requested_by" flag:"-"`
	// Reason is recorded in the report and, where the runbook uses it, in OpenStack (--reason).
	Reason string `json:"reason,omitempty" flag:"-"`
	// DryRun stops after the plan (--dry-run).
	DryRun bool `json:"dry_run,omitempty" flag:"-"`
}
