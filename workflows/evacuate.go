package workflows

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/stackrun/stackrun/activities"
)

// Evacuate empties a compute host for planned maintenance (RUNBOOKS.md §1): preflight (API and
// database agree), capacity from Placement, a plan per instance, gate approve-plan, disable the
// service with the reason, bounded migrations each followed and verified, verify the host is
// empty, optionally stop nova-compute and wait at gate maintenance-done, start it again and check
// it reconnected, enable the service, optionally migrate the instances back.
var Evacuate = Define(Def[EvacuateInput, evacuatePlan]{
	Name:     "evacuate",
	Short:    "Empty a compute host for maintenance: plan, approve, live/cold migrations, verify, bring it back",
	StepsFor: evacuateSteps,
	Key:      func(in *EvacuateInput) string { return in.Host },
	Plan:     planEvacuate,
	Act:      evacuate,
	Formerly: []string{"ComputeEvacuation"},
})

// Gates of Evacuate.
const (
	GateApprovePlan     = "approve-plan"
	GateMaintenanceDone = "maintenance-done"
)

// EvacuateInput is the input of Evacuate (RUNBOOKS.md §1).
type EvacuateInput struct {
	Meta
	Host            string   `json:"host" flag:"host" usage:"compute host to empty (required)"`
	Targets         []string `json:"targets,omitempty" flag:"to" usage:"target hosts, comma-separated (default: every enabled, up compute host but the source)"`
	Parallel        int      `json:"parallel" flag:"parallel" usage:"migrations in flight at once (1-32; default policy.default_parallelism)"`
	BlockMigration  string   `json:"block_migration,omitempty" flag:"block-migration" usage:"live migrations: auto, yes or no (default auto)"`
	MaintenanceGate bool     `json:"maintenance_gate,omitempty" flag:"maintenance-gate" usage:"stop nova-compute once empty and wait at gate maintenance-done, then start it again"`
	MigrateBack     bool     `json:"migrate_back,omitempty" flag:"migrate-back" usage:"move the instances back once the host is in service again"`
}

func (in *EvacuateInput) Validate() error {
	if err := validateMeta(&in.Meta); err != nil {
		return err
	}
	if err := ValidateHostName("host", in.Host); err != nil {
		return err
	}
	if strings.TrimSpace(in.Reason) == "" && !in.DryRun {
		return &FieldError{Field: "reason", Problem: "required: it is recorded as the compute service's disabled reason"}
	}
	// It becomes Nova's disabled_reason (255 characters) after the plan: checked before anything.
	if err := ValidateDisabledReason("", in.Reason); err != nil {
		return err
	}
	if in.Parallel < 0 || in.Parallel > MaxParallel {
		return &FieldError{Field: "parallel", Value: fmt.Sprint(in.Parallel), Problem: fmt.Sprintf("must be between 1 and %d (0: policy.default_parallelism)", MaxParallel)}
	}
	switch in.BlockMigration {
	case "", "auto", "yes", "no":
	default:
		return &FieldError{Field: "block-migration", Value: in.BlockMigration, Problem: "must be auto, yes or no"}
	}
	if len(in.Targets) > maxTargets {
		return &FieldError{Field: "to", Problem: fmt.Sprintf("at most %d target hosts", maxTargets)}
	}
	seen := map[string]bool{}
	for _, t := range in.Targets {
		if err := ValidateHostName("to", t); err != nil {
			return err
		}
		if t == in.Host {
			return &FieldError{Field: "to", Value: t, Problem: "is the host being emptied: a target must be another host"}
		}
		if seen[t] {
			return &FieldError{Field: "to", Value: t, Problem: "listed twice"}
		}
		seen[t] = true
	}
	return nil
}

func evacuateSteps(in *EvacuateInput) []string {
	steps := []string{"describe-host", "preflight", "capacity", GateApprovePlan, "acquire-lease", "disable-service", "migrate", "verify-empty"}
	if in.MaintenanceGate {
		steps = append(steps, "stop-compute", "hold-config", GateMaintenanceDone, "release-config", "start-compute")
	}
	steps = append(steps, "verify-reconnect", "enable-service")
	if in.MigrateBack {
		steps = append(steps, "migrate-back")
	}
	return append(steps, "release-lease")
}

// evacuatePlan is what the evacuation acts on: the host as the inventory and Nova describe it,
// the targets, and one move per instance.
type evacuatePlan struct {
	facts     activities.HostFacts
	svc       activities.ComputeService
	targets   []string
	instances []activities.Instance
	moves     []Move
	parallel  int
}

func planEvacuate(r *Run, in *EvacuateInput, p *evacuatePlan) (Approval, error) {
	var err error
	if p.facts, err = r.DescribeHost(in.Host); err != nil {
		return Approval{}, Summarize("preflight refused", err)
	}
	err = r.Do("preflight", StepOptions{Target: in.Host, NoSkip: true}, func(ctx workflow.Context) error {
		if !slices.Contains(p.facts.Roles, "compute") {
			return refused("host %s has roles %v, not compute", in.Host, p.facts.Roles)
		}
		var svcs []activities.ComputeService
		var err error
		if p.svc, svcs, err = hostService(r, ctx, "preflight", in.Host); err != nil {
			return err
		}
		if p.svc.State != "up" || p.svc.ForcedDown {
			return refused("nova-compute on %s is %s (forced down %v): an evacuation for maintenance needs it up; for a dead host use recover-host", in.Host, p.svc.State, p.svc.ForcedDown)
		}
		if p.svc.Status == "disabled" && p.svc.DisabledReason != in.Reason {
			r.AddFinding(activities.SeverityWarning, in.Host, "nova-compute was already disabled (reason: %q); it will be re-enabled at the end", p.svc.DisabledReason)
		}
		if p.targets, err = chooseTargets(svcs, in.Host, in.Targets, "move"); err != nil {
			return err
		}
		p.instances, _, err = hostInstances(r, ctx, "preflight", in.Host)
		return err
	})
	if err != nil {
		return Approval{}, Summarize("preflight refused", err)
	}
	r.SetDetail("targets", p.targets)

	p.moves, err = planMoves(r, in.Host, p.instances, p.targets, false)
	p.parallel = r.parallelism(in.Parallel)
	r.SetPlan(p.planText(r, in))
	r.SetDetail("moves", compactMoves(p.moves))
	if err != nil {
		return Approval{}, Summarize("refused: capacity", err)
	}
	return Approval{
		Gate: GateApprovePlan,
		Summary: fmt.Sprintf("Empty %s (%s): move %d instance(s) to %s, skip %d. Reason: %s",
			in.Host, p.facts.Address, p.count("move"), strings.Join(p.targets, ", "), p.count("skip"), in.Reason),
		DryRun: fmt.Sprintf("dry run: %d instance(s) to move, %d to skip; nothing changed", p.count("move"), p.count("skip")),
	}, nil
}

// evacuation is a run of Evacuate under way: its plan and what it changed so far.
type evacuation struct {
	r  *Run
	in *EvacuateInput
	*evacuatePlan
	disabled bool
	stopped  bool
	// held: the configuration-management hold ran (or was started) and is not released yet.
	held bool
	// config records the hold and release commands that ran, for the report.
	config map[string][]string
}

func evacuate(r *Run, in *EvacuateInput, p *evacuatePlan) (string, error) {
	if err := r.AcquireHostLease(in.Host); err != nil {
		return "", err
	}
	e := &evacuation{r: r, in: in, evacuatePlan: p}
	r.OnExit(func() {
		e.leftState()
		r.SetDetail("moves", compactMoves(e.moves))
	})
	return e.afterLease()
}

func (p *evacuatePlan) count(what string) int {
	n := 0
	for _, m := range p.moves {
		if (what == "skip") == (m.Kind == "skip") {
			n++
		}
	}
	return n
}

func (p *evacuatePlan) planText(r *Run, in *EvacuateInput) []string {
	plan := []string{fmt.Sprintf("host %s: %d instance(s); targets %s; at most %d migration(s) in flight; block migration %s",
		in.Host, len(p.instances), strings.Join(p.targets, ", "), p.parallel, cmp.Or(in.BlockMigration, "auto"))}
	plan = append(plan, fmt.Sprintf("disable nova-compute on %s with reason %q", in.Host, in.Reason))
	plan = append(plan, planLines(p.moves)...)
	plan = append(plan, fmt.Sprintf("verify %s is empty (API and database)", in.Host))
	if in.MaintenanceGate {
		hold := "no configuration-management hold (policy.config_hold is empty)"
		if h := r.Policy().ConfigHold; len(h) > 0 {
			hold = fmt.Sprintf("hold configuration management (%s; released with %s before the start and on every way out)", strings.Join(h, ", "), strings.Join(r.Policy().ConfigRelease, ", "))
		}
		plan = append(plan, fmt.Sprintf("stop nova-compute on %s; %s; gate %s; start it and check it reconnected (AMQP in its log)", in.Host, hold, GateMaintenanceDone))
	}
	plan = append(plan, fmt.Sprintf("enable nova-compute on %s", in.Host))
	if in.MigrateBack {
		plan = append(plan, fmt.Sprintf("move the instances back to %s", in.Host))
	}
	return plan
}

// leftState says honestly where the run leaves the host and its instances.
func (e *evacuation) leftState() {
	if !e.disabled && !e.stopped && !e.held {
		e.r.SetLeftState("")
		return
	}
	var parts []string
	if e.disabled {
		parts = append(parts, fmt.Sprintf("nova-compute on %s is DISABLED (reason %q): enable it with `openstack compute service set --enable %s nova-compute` when done", e.in.Host, e.in.Reason, e.in.Host))
	}
	if e.stopped {
		parts = append(parts, fmt.Sprintf("nova-compute on %s is STOPPED", e.in.Host))
	}
	if e.held {
		parts = append(parts, fmt.Sprintf("configuration management of nova-compute on %s is still HELD (release: %s)", e.in.Host, strings.Join(e.r.Policy().ConfigRelease, ", ")))
	}
	var moved, left []string
	for _, m := range e.moves {
		if m.Outcome == "moved" {
			moved = append(moved, fmt.Sprintf("%s→%s", m.label(), m.To))
		} else {
			left = append(left, m.label())
		}
	}
	parts = append(parts, fmt.Sprintf("%d instance(s) moved [%s], %d still on %s [%s]", len(moved), strings.Join(moved, ", "), len(left), e.in.Host, strings.Join(left, ", ")))
	e.r.SetLeftState(strings.Join(parts, "; "))
}

func (e *evacuation) afterLease() (string, error) {
	r, in := e.r, e.in
	err := r.Do("disable-service", StepOptions{Target: in.Host, NoSkip: true}, func(ctx workflow.Context) error {
		e.disabled = true // from here on an abort must say so, even if the answer is lost
		var s activities.ComputeService
		return r.Exec(ctx, "disable-service", in.Host, compute.SetComputeService, &s,
			activities.ServiceChange{Host: in.Host, Disable: true, Reason: in.Reason})
	})
	if err != nil {
		return "", err
	}
	e.leftState()

	err = r.Do("migrate", StepOptions{Target: in.Host}, func(ctx workflow.Context) error {
		return r.moveAll("migrate", e.moves, e.parallel, in.BlockMigration)
	})
	e.leftState()
	if err != nil {
		return "", err
	}
	moved, skipped := 0, 0
	for _, m := range e.moves {
		if m.Outcome == "moved" {
			moved++
		} else {
			skipped++
		}
	}
	r.step("migrate").Detail = fmt.Sprintf("%d moved, %d left on %s", moved, skipped, in.Host)

	var remaining []string
	err = r.Do("verify-empty", StepOptions{Target: in.Host}, func(ctx workflow.Context) error {
		var api []activities.Instance
		if err := r.Exec(ctx, "verify-empty", in.Host, compute.InstancesOnHost, &api, in.Host); err != nil {
			return err
		}
		var db []string
		if err := r.Exec(ctx, "verify-empty", in.Host, novadb.DBInstancesOnHost, &db, in.Host); err != nil {
			return err
		}
		expected := map[string]bool{}
		for _, m := range e.moves {
			if m.Outcome != "moved" {
				expected[m.ID] = true
			}
		}
		remaining = remaining[:0]
		var unexpected []string
		seen := map[string]bool{}
		for _, i := range api {
			seen[i.ID] = true
			remaining = append(remaining, i.ID)
			if !expected[i.ID] {
				unexpected = append(unexpected, fmt.Sprintf("%s (%s, %s)", i.ID, i.Name, i.Status))
			}
		}
		for _, id := range db {
			if !seen[id] {
				remaining = append(remaining, id)
				if !expected[id] {
					unexpected = append(unexpected, id+" (database only)")
				}
			}
		}
		if len(unexpected) > 0 {
			return fmt.Errorf("%s is not empty: %d instance(s) that this run did not leave there: %s", in.Host, len(unexpected), strings.Join(unexpected, ", "))
		}
		if len(remaining) > 0 {
			r.step("verify-empty").Detail = fmt.Sprintf("%d instance(s) left on purpose (skipped)", len(remaining))
			r.AddFinding(activities.SeverityWarning, in.Host, "%d instance(s) remain on %s (skipped: see the plan and the migrate steps): %s", len(remaining), in.Host, strings.Join(remaining, ", "))
		} else {
			r.step("verify-empty").Detail = "empty in the API and the database"
		}
		return nil
	})
	if err != nil {
		return "", err
	}

	if in.MaintenanceGate {
		if err := e.maintenance(len(remaining)); err != nil {
			return "", err
		}
	} else {
		// No stop: still check that the service reports up before it is enabled again.
		if err := e.verifyReconnect(time.Time{}); err != nil {
			return "", err
		}
	}

	err = r.Do("enable-service", StepOptions{Target: in.Host, NoSkip: true}, func(ctx workflow.Context) error {
		var s activities.ComputeService
		return r.Exec(ctx, "enable-service", in.Host, compute.SetComputeService, &s, activities.ServiceChange{Host: in.Host, Enable: true})
	})
	if err != nil {
		return "", err
	}
	e.disabled = false
	e.leftState()

	if in.MigrateBack {
		err = r.Do("migrate-back", StepOptions{Target: in.Host}, func(ctx workflow.Context) error {
			var back []Move
			for _, m := range e.moves {
				if m.Outcome == "moved" {
					b := m
					b.From, b.To, b.Outcome, b.Detail, b.Migration = m.To, in.Host, "", "", ""
					back = append(back, b)
				}
			}
			if err := e.checkRoomBack(ctx, back); err != nil {
				return err
			}
			if err := r.moveAll("migrate-back", back, e.parallel, in.BlockMigration); err != nil {
				return err
			}
			n := 0
			for _, b := range back {
				if b.Outcome == "moved" {
					n++
				}
			}
			r.step("migrate-back").Detail = fmt.Sprintf("%d of %d moved back to %s", n, len(back), in.Host)
			r.SetDetail("moved_back", compactMoves(back))
			return nil
		})
		if err != nil {
			return "", err
		}
	}
	summary := fmt.Sprintf("%s emptied: %d instance(s) moved, %d left (skipped); nova-compute enabled again", in.Host, moved, skipped)
	if in.MigrateBack {
		summary += "; instances moved back"
	}
	return summary, nil
}

// maintenance stops nova-compute, waits at maintenance-done, starts it and checks it reconnected.
func (e *evacuation) maintenance(remaining int) error {
	r, in := e.r, e.in
	svc := e.novaCompute()
	req := activities.ServiceRequest{Host: in.Host, Role: svc.Role, Service: svc.Name}
	err := r.Do("stop-compute", StepOptions{Target: in.Host}, func(ctx workflow.Context) error {
		e.stopped = true
		return r.Exec(ctx, "stop-compute", in.Host, hosts.SetService, nil, activities.ServiceAction{ServiceRequest: req, Action: "stop"})
	})
	if err != nil {
		return err
	}
	e.leftState()
	if err := e.holdConfig(req); err != nil {
		return err
	}
	summary := fmt.Sprintf("nova-compute on %s is stopped and its service disabled: do the maintenance, then approve to start it again.", in.Host)
	if remaining > 0 {
		summary += fmt.Sprintf(" WARNING: %d instance(s) are still on the host (skipped).", remaining)
	}
	if err := r.Gate(GateMaintenanceDone, GateOptions{Summary: summary}); err != nil {
		return err
	}
	if err := e.releaseConfig(req, "release-config"); err != nil {
		return err
	}
	var startedAt time.Time
	err = r.Do("start-compute", StepOptions{Target: in.Host, NoSkip: true}, func(ctx workflow.Context) error {
		startedAt = workflow.Now(ctx)
		return r.Exec(ctx, "start-compute", in.Host, hosts.SetService, nil, activities.ServiceAction{ServiceRequest: req, Action: "start"})
	})
	if err != nil {
		return err
	}
	e.stopped = false
	e.leftState()
	return e.verifyReconnect(startedAt)
}

func (e *evacuation) novaCompute() activities.ServiceFacts {
	for _, s := range e.facts.Services {
		if s.Name == "nova-compute" {
			return s
		}
	}
	return activities.ServiceFacts{Role: "compute", Name: "nova-compute", AMQP: true}
}

// verifyReconnect checks that nova-compute runs, reports up, and (after a restart) logged an AMQP
// connection since startedAt.
func (e *evacuation) verifyReconnect(startedAt time.Time) error {
	return verifyComputeBack(e.r, e.in.Host, e.novaCompute(), startedAt)
}
