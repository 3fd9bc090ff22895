package workflows

import (
	"time"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/internal/infra/trust"
)

// GateDecisionRequest is the input of the approve and reject updates and signals. Neither an
// update nor a signal tells the workflow who sent it (the web UI sends no identity), so the
// approver's name is part of the input and Signature proves it: an ed25519 signature over this
// run (workflow ID and run ID), the gate, the outcome, the name, the comment, the time and a
// single-use nonce (internal/infra/trust; `stackrun approve --print-signal` makes one for the
// web UI). The workflow verifies it against the keys of its policy before anything else.
type GateDecisionRequest struct {
	Gate    string `json:"gate"`
	By      string `json:"by"`
	Comment string `json:"comment,omitempty"`
	// Via says where the decision came from (cli, chat, web-ui...); informational (a chat
	// gateway's signature names the chat user, and that is what is recorded).
	Via       string           `json:"via,omitempty"`
	Signature *trust.Signature `json:"signature,omitempty"`
}

// ResolveRequest is the input of the resolve update and signal, signed like a gate decision.
type ResolveRequest struct {
	Step      string           `json:"step"`
	Action    string           `json:"action"` // retry | skip | abort
	By        string           `json:"by"`
	Comment   string           `json:"comment,omitempty"`
	Via       string           `json:"via,omitempty"`
	Signature *trust.Signature `json:"signature,omitempty"`
}

// Decision is a recorded human decision on a gate or a stalled step, and who signed it.
type Decision struct {
	Kind    string    `json:"kind"` // gate | resolve
	Name    string    `json:"name"` // gate or step name
	Outcome string    `json:"outcome"`
	By      string    `json:"by"`
	Comment string    `json:"comment,omitempty"`
	Via     string    `json:"via,omitempty"`
	At      time.Time `json:"at"`
	// Key is the fingerprint of the key that signed (SHA256:...); empty for an unsigned
	// decision (Unsigned, on a gate the policy allows unsigned) or a policy's own (a timeout).
	Key string `json:"key,omitempty"`
	// ChatUser and Gateway: the chat gateway signed, vouching that this chat user is By.
	ChatUser string `json:"chat_user,omitempty"`
	Gateway  string `json:"gateway,omitempty"`
	Unsigned bool   `json:"unsigned,omitempty"`
}

// RefusedMessage records a decision (or a start, or a lease grant) that was refused: nothing
// changed in the run. Key is the fingerprint the refused message claimed, if any.
type RefusedMessage struct {
	Signal string    `json:"signal"`
	Target string    `json:"target"`
	By     string    `json:"by"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
	Via    string    `json:"via,omitempty"` // update | signal | start | lease
	Key    string    `json:"key,omitempty"`
}

// StartRecord says who started the run and how that was proven: the signing key, or the schedule
// or parent run that started it.
type StartRecord struct {
	By       string `json:"by"`
	Key      string `json:"key,omitempty"`
	ChatUser string `json:"chat_user,omitempty"`
	Gateway  string `json:"gateway,omitempty"`
	// Parent started the run. Unsigned: a run that changes nothing (read-only runbook, dry run)
	// started without signature; Schedule is the schedule it says started it (not proof).
	Parent   string `json:"parent,omitempty"`
	Unsigned bool   `json:"unsigned,omitempty"`
	Schedule string `json:"schedule,omitempty"`
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
	Start       *StartRecord         `json:"start,omitempty"`
	Audit       []AuditEntry         `json:"audit,omitempty"`
	Details     map[string]any       `json:"details,omitempty"`
	// Record: this is the record a child run hands its parent (what the parent needs, for a
	// parent's history holds its children's results), not the whole report: the run answers the
	// query report (QueryReport) with that, and `stackrun report` asks it (Run.ReturnRecord).
	Record bool `json:"record,omitempty"`
}

// Meta is the part of every runbook input that the machinery reads.
type Meta struct {
	// RequestedBy is the operator who started the run (--as, or the login name).
	RequestedBy string `json:"requested_by" flag:"-"`
	// Reason is recorded in the report and, where the runbook uses it, in OpenStack (--reason).
	Reason string `json:"reason,omitempty" flag:"-"`
	// DryRun stops after the plan (--dry-run).
	DryRun bool `json:"dry_run,omitempty" flag:"-"`
	// Continued is the state of the chain's last run when this run continues it (continue.go);
	// set by the run itself, never by a client.
	Continued *Continued `json:"continued,omitempty" flag:"-"`
}
