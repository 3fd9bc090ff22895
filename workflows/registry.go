package workflows

import (
	"fmt"
	"regexp"
)

// Input is what every runbook input implements: validation before anything runs, the workflow
// ID derived from the target (so two runs cannot work on the same thing at once), and the meta
// fields the machinery reads.
type Input interface {
	// Validate checks the input before the workflow starts; errors name the field.
	Validate() error
	// WorkflowID is derived from the target, e.g. "evacuate/compute1".
	WorkflowID() string
	// Target is what RunbookTarget shows.
	Target() string
	// GetMeta gives access to requester, reason and dry-run.
	GetMeta() *Meta
}

// Runbook describes one runbook for the worker (registration) and the operators' CLI (start).
type Runbook struct {
	// Name is the CLI name: stackrun run <Name>.
	Name string
	// Workflow is the workflow function; its Go name is the workflow type.
	Workflow any
	// NewInput returns a fresh, zero input to fill from flags.
	NewInput func() Input
	// Short is a one-line description for --help.
	Short string
}

// Runbooks lists every runbook Stackrun offers, in the order --help shows them.
var Runbooks = []Runbook{
	{Name: "post-reboot-check", Workflow: PostRebootCheck, NewInput: func() Input { return &PostRebootCheckInput{} },
		Short: "Check a host after a reboot: processes, AMQP reconnect, APIs (read-only)"},
	{Name: "restart-service", Workflow: RestartService, NewInput: func() Input { return &RestartServiceInput{} },
		Short: "Restart one service on one host behind an approval, then verify it came back"},
	{Name: "swift-disk", Workflow: SwiftDiskReplacement, NewInput: func() Input { return &SwiftDiskReplacementInput{} },
		Short: "Replace a failed Swift disk: unmount, swap (gate), mkfs.xfs, mount, refill by replication"},
	{Name: "swift-ring", Workflow: SwiftRingChange, NewInput: func() Input { return &SwiftRingChangeInput{} },
		Short: "Change the Swift rings (add/remove/reweight, in steps), rebalance, distribute, verify checksums"},
	{Name: "evacuate", Workflow: ComputeEvacuation, NewInput: func() Input { return &EvacuateInput{Parallel: 4} },
		Short: "Empty a compute host for maintenance: plan, approve, live/cold migrations, verify, bring it back"},
	{Name: "recover-host", Workflow: HostFailureRecovery, NewInput: func() Input { return &RecoverHostInput{Parallel: 4} },
		Short: "A compute host died: confirm down, fence (gate), force down, evacuate its instances, check volumes"},
	{Name: "check", Workflow: Check, NewInput: func() Input { return &CheckInput{} },
		Short: "Run one recurring check now (--cadence hourly|daily|weekly|monthly|quarterly|half-yearly): probes, findings, report"},
}

// FindRunbook returns the runbook with the given CLI name.
func FindRunbook(name string) (Runbook, error) {
	for _, rb := range Runbooks {
		if rb.Name == name {
			return rb, nil
		}
	}
	names := make([]string, len(Runbooks))
	for i, rb := range Runbooks {
		names[i] = rb.Name
	}
	return Runbook{}, fmt.Errorf("unknown runbook %q (known: %v)", name, names)
}

var (
	hostRE    = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$`)
	serviceRE = regexp.MustCompile(`^[a-z0-9][a-z0-9@._-]{0,63}$`)
	roleRE    = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,31}$`)
)

// FieldError is a validation error that names the field.
type FieldError struct {
	Field, Value, Problem string
}

func (e *FieldError) Error() string {
	if e.Value == "" {
		return fmt.Sprintf("%s: %s", e.Field, e.Problem)
	}
	return fmt.Sprintf("%s %q: %s", e.Field, e.Value, e.Problem)
}

// ValidateHostName checks an inventory host name (RFC 1123, at most 253 characters).
func ValidateHostName(field, v string) error {
	if v == "" {
		return &FieldError{Field: field, Problem: "required"}
	}
	if len(v) > 253 || !hostRE.MatchString(v) {
		return &FieldError{Field: field, Value: v, Problem: "not a valid host name (letters, digits, '-' and '.')"}
	}
	return nil
}

// ValidateServiceName checks a service name as systemd and the lab controller accept it.
func ValidateServiceName(field, v string) error {
	if v == "" {
		return &FieldError{Field: field, Problem: "required"}
	}
	if !serviceRE.MatchString(v) {
		return &FieldError{Field: field, Value: v, Problem: "not a valid service name (lower-case letters, digits, '@._-', at most 64)"}
	}
	return nil
}

func validateMeta(m *Meta) error {
	if !ValidOperator(m.RequestedBy) {
		return &FieldError{Field: "requested_by", Value: m.RequestedBy, Problem: "not a valid operator name (letters, digits, '._@-', at most 64)"}
	}
	if len(m.Reason) > 500 {
		return &FieldError{Field: "reason", Problem: "longer than 500 characters"}
	}
	for _, c := range m.Reason {
		if c < 0x20 && c != '\t' {
			return &FieldError{Field: "reason", Problem: "contains control characters"}
		}
	}
	return nil
}
