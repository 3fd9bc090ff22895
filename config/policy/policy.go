// Package policy holds the one Policy type: the approval and blast-radius rules that config loads
// and validates, the worker hands to the machinery, and every workflow enforces. It is a leaf
// (standard library only) so that config, activities and the deterministic workflows can all
// import it.
package policy

import "time"

// Policy holds the approval and blast-radius rules of every runbook. The tags are the
// configuration keys under policy.* (docs/config-schema.md); the JSON shape is also what a run
// records when it loads the policy at its start.
type Policy struct {
	Approvers            []string            `mapstructure:"approvers" yaml:"approvers" json:"approvers"`
	GateApprovers        map[string][]string `mapstructure:"gate_approvers" yaml:"gate_approvers" json:"gate_approvers"`
	TwoPersonGates       []string            `mapstructure:"two_person_gates" yaml:"two_person_gates" json:"two_person_gates"`
	GateTimeout          time.Duration       `mapstructure:"gate_timeout" yaml:"gate_timeout" json:"gate_timeout"`
	Escalation           string              `mapstructure:"escalation" yaml:"escalation" json:"escalation"`
	EscalationRepeats    int                 `mapstructure:"escalation_repeats" yaml:"escalation_repeats" json:"escalation_repeats"`
	MaxHostsOutOfService int                 `mapstructure:"max_hosts_out_of_service" yaml:"max_hosts_out_of_service" json:"max_hosts_out_of_service"`
	DefaultParallelism   int                 `mapstructure:"default_parallelism" yaml:"default_parallelism" json:"default_parallelism"`
	ActivityMaxAttempts  int                 `mapstructure:"activity_max_attempts" yaml:"activity_max_attempts" json:"activity_max_attempts"`
	// PlanMaxAge: a plan older than this when its run is about to act (after a gate, a lease or
	// a stalled step that waited) is made again, and approved again if it drifted.
	PlanMaxAge time.Duration `mapstructure:"plan_max_age" yaml:"plan_max_age" json:"plan_max_age"`
	// HistoryBudget: a long run (swift-ring in steps, outage-recovery between tiers and slices of
	// a tier or of its plan's snapshot, a rolling wave between hosts) continues as new between two units of work when its history and the next unit
	// would pass this many events (0: 8,000; Temporal warns at 10,240).
	HistoryBudget int `mapstructure:"history_budget" yaml:"history_budget" json:"history_budget,omitempty"`
	// ConfigHold lists the catalogue commands (in order) that keep configuration management from
	// starting nova-compute again while evacuate's host is in maintenance (systemd_mask,
	// puppet_disable...); ConfigRelease undoes them (systemd_unmask, puppet_enable). Empty: none.
	ConfigHold    []string `mapstructure:"config_hold" yaml:"config_hold" json:"config_hold,omitempty"`
	ConfigRelease []string `mapstructure:"config_release" yaml:"config_release" json:"config_release,omitempty"`
	// LiveMigrationStall: a live migration whose remaining memory has not shrunk for this long
	// does not converge; LiveMigrationNotConverging says what then: "abort" (the migration is
	// aborted and the move fails, then retries per policy and stalls) or "force-complete" (after
	// the signed gate force-complete:<instance>, since it pauses the guest). Zero: not watched.
	LiveMigrationStall         time.Duration `mapstructure:"live_migration_stall" yaml:"live_migration_stall" json:"live_migration_stall,omitempty"`
	LiveMigrationNotConverging string        `mapstructure:"live_migration_not_converging" yaml:"live_migration_not_converging" json:"live_migration_not_converging,omitempty"`
}

// What a live migration that does not converge gets (LiveMigrationNotConverging).
const (
	NotConvergingAbort         = "abort"
	NotConvergingForceComplete = "force-complete"
)
