// Package workflows holds Stackrun's deterministic workflow code: the runbooks and the one
// machinery they share (steps, gates, stalled steps, leases, reports). It imports no OpenStack,
// SSH or SQL package: every side effect is an activity in package activities.
package workflows

import (
	"regexp"

	"go.temporal.io/sdk/temporal"
)

// Names of the messages every runbook answers. The CLI, the chat gateway and the Temporal web UI
// use these.
const (
	// UpdateApprove and SignalApprove decide an open gate in favour (input: GateDecisionRequest).
	UpdateApprove = "approve"
	SignalApprove = "approve"
	// UpdateReject and SignalReject decide an open gate against (input: GateDecisionRequest).
	UpdateReject = "reject"
	SignalReject = "reject"
	// UpdateResolve and SignalResolve decide a stalled step (input: ResolveRequest).
	UpdateResolve = "resolve"
	SignalResolve = "resolve"
	// QueryStatus answers with a Status.
	QueryStatus = "status"
	// QueryReport answers with the run's whole *Report once it ended, on a run whose result is a
	// record for its parent (Report.Record: a staged upgrade's batch); control.Report asks it.
	QueryReport = "report"

	// SignalLeaseGranted is sent by the lease workflow to a runbook whose lease was granted.
	SignalLeaseGranted = "lease-granted"
)

// nameRuleRE is what a runbook's CLI word looks like: lower-case words joined by '-'.
var nameRuleRE = regexp.MustCompile(`^[a-z][a-z0-9]*(-[a-z][a-z0-9]*)*$`)

// Typed search attributes kept current by every runbook. They must be registered on the
// namespace (make run does it with --search-attribute).
var (
	AttrStatus      = temporal.NewSearchAttributeKeyKeyword("RunbookStatus")
	AttrStep        = temporal.NewSearchAttributeKeyKeyword("RunbookStep")
	AttrTarget      = temporal.NewSearchAttributeKeyKeyword("RunbookTarget")
	AttrRequestedBy = temporal.NewSearchAttributeKeyKeyword("RequestedBy")
)

// SearchAttributeNames lists the custom search attributes and their type, for registration.
var SearchAttributeNames = []string{"RunbookStatus", "RunbookStep", "RunbookTarget", "RequestedBy"}

// RunStatus is the value of the RunbookStatus search attribute.
type RunStatus string

const (
	StatusPlanning        RunStatus = "Planning"
	StatusWaitingApproval RunStatus = "WaitingApproval"
	StatusRunning         RunStatus = "Running"
	StatusStalled         RunStatus = "Stalled"
	StatusCompleted       RunStatus = "Completed"
	StatusFailed          RunStatus = "Failed"
	StatusAborted         RunStatus = "Aborted"
)

// AllStatuses lists every RunStatus, for validating CLI filters.
var AllStatuses = []RunStatus{StatusPlanning, StatusWaitingApproval, StatusRunning, StatusStalled,
	StatusCompleted, StatusFailed, StatusAborted}

// StepState is the state of one named step.
type StepState string

const (
	StepPending         StepState = "pending"
	StepRunning         StepState = "running"
	StepWaitingApproval StepState = "waiting-approval"
	StepStalled         StepState = "stalled"
	StepDone            StepState = "done"
	StepSkipped         StepState = "skipped"
	StepFailed          StepState = "failed"
)

// Resolve actions for a stalled step.
const (
	ResolveRetry = "retry"
	ResolveSkip  = "skip"
	ResolveAbort = "abort"
)

// Escalation policies for a gate that timed out.
const (
	EscalateThenWait  = "notify-then-wait"
	EscalateThenAbort = "notify-then-abort"
)
