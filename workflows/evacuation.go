package workflows

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/stackrun/stackrun/activities"
)

var (
	compute *activities.Compute
	novadb  *activities.NovaDB
)

type (
	Instance       = activities.Instance
	HostCapacity   = activities.HostCapacity
	ComputeService = activities.ComputeService
	MoveRequest    = activities.MoveRequest
	MoveResult     = activities.MoveResult
)

// Gates of the compute runbooks.
const (
	GateApprovePlan     = "approve-plan"
	GateMaintenanceDone = "maintenance-done"
)

// Limits of the evacuation input.
const (
	MaxParallel = 32
	// maxTargets bounds --to.
	maxTargets = 64
)

// EvacuateInput is the input of ComputeEvacuation (RUNBOOKS.md §1).
type EvacuateInput struct {
	Meta
	Host            string   `json:"host" flag:"host" usage:"compute host to empty (required)"`
	Targets         []string `json:"targets,omitempty" flag:"to" usage:"target hosts, comma-separated (default: every enabled, up compute host but the source)"`
	Parallel        int      `json:"parallel" flag:"parallel" usage:"migrations in flight at once (1-32)"`
	BlockMigration  string   `json:"block_migration,omitempty" flag:"block-migration" usage:"live migrations: auto, yes or no (default auto)"`
	MaintenanceGate bool     `json:"maintenance_gate,omitempty" flag:"maintenance-gate" usage:"stop nova-compute once empty and wait at gate maintenance-done, then start it again"`
	MigrateBack     bool     `json:"migrate_back,omitempty" flag:"migrate-back" usage:"move the instances back once the host is in service again"`
}

func (in *EvacuateInput) GetMeta() *Meta     { return &in.Meta }
func (in *EvacuateInput) Target() string     { return in.Host }
func (in *EvacuateInput) WorkflowID() string { return "evacuate/" + in.Host }
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
	if in.Parallel < 1 || in.Parallel > MaxParallel {
		return &FieldError{Field: "parallel", Value: fmt.Sprint(in.Parallel), Problem: fmt.Sprintf("must be between 1 and %d", MaxParallel)}
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

// Move is one line of an evacuation plan and, once done, its outcome.
type Move struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Status string `json:"status"` // status when planned
	Kind   string `json:"kind"`   // live | cold | evacuate | skip
	From   string `json:"from"`
	To     string `json:"to,omitempty"`
	// Why is the reason of a skip.
	Why     string        `json:"why,omitempty"`
	VCPUs   int           `json:"vcpus"`
	RAMMB   int           `json:"ram_mb"`
	DiskGB  int           `json:"disk_gb"`
	Timeout time.Duration `json:"timeout,omitempty"`
	// Outcome: moved | skipped | failed | left (not reached).
	Outcome   string `json:"outcome,omitempty"`
	Detail    string `json:"detail,omitempty"`
	Migration string `json:"migration,omitempty"`
}

func (m Move) label() string {
	if m.Name != "" {
		return fmt.Sprintf("%s (%s)", m.Name, m.ID)
	}
	return m.ID
}

// MoveTimeout scales a move's deadline with the guest, as Nova does for live migrations
// (800 s per GiB of memory and disk), plus five minutes for scheduling and verification.
func MoveTimeout(ramMB, diskGB int) time.Duration {
	gib := float64(ramMB)/1024 + float64(diskGB)
	return 5*time.Minute + time.Duration(math.Ceil(gib*800))*time.Second
}

// expectAfter is the status an instance must have after its move.
func expectAfter(kind, status string) []string {
	switch kind {
	case activities.MoveCold:
		return []string{"SHUTOFF"}
	case activities.MoveEvacuate:
		if status == "SHUTOFF" {
			return []string{"SHUTOFF", "ACTIVE"}
		}
		return []string{"ACTIVE"}
	}
	if status == "PAUSED" {
		return []string{"PAUSED"}
	}
	return []string{"ACTIVE"}
}

// PlanMoves decides, per instance, how it leaves the host and where it goes, packing the
// instances onto the targets' free capacity (largest first, onto the target with the most free
// memory that fits all three resources). evacuate selects evacuation (the host is dead) instead of
// live and cold migration. It returns the moves in instance order, and an error naming the
// shortfall when some instance fits nowhere.
func PlanMoves(source string, instances []Instance, caps []HostCapacity, evacuate bool) ([]Move, error) {
	moves := make([]Move, len(instances))
	var toPlace []int
	for i, in := range instances {
		m := Move{ID: in.ID, Name: in.Name, Status: in.Status, From: source, VCPUs: in.VCPUs, RAMMB: in.RAMMB, DiskGB: in.DiskGB}
		switch {
		case in.TaskState != "":
			m.Kind, m.Why = "skip", fmt.Sprintf("busy: task %s in progress", in.TaskState)
		case evacuate && slices.Contains([]string{"ACTIVE", "SHUTOFF", "ERROR", "PAUSED", "SUSPENDED"}, in.Status):
			m.Kind = activities.MoveEvacuate
		case evacuate:
			m.Kind, m.Why = "skip", fmt.Sprintf("status %s cannot be evacuated", in.Status)
		case in.Status == "ACTIVE" || in.Status == "PAUSED":
			m.Kind = activities.MoveLive
		case in.Status == "SHUTOFF":
			m.Kind = activities.MoveCold
		case in.Status == "ERROR":
			m.Kind, m.Why = "skip", "in ERROR: needs a person (reset its state, or rebuild) before it can move"
			if in.Fault != "" {
				m.Why += "; fault: " + in.Fault
			}
		default:
			m.Kind, m.Why = "skip", fmt.Sprintf("status %s: not moved by this runbook", in.Status)
		}
		if m.Kind != "skip" {
			m.Timeout = MoveTimeout(in.RAMMB, in.DiskGB)
			toPlace = append(toPlace, i)
		}
		moves[i] = m
	}
	free := slices.Clone(caps)
	slices.SortStableFunc(toPlace, func(a, b int) int {
		return cmp.Or(cmp.Compare(instances[b].RAMMB, instances[a].RAMMB), cmp.Compare(instances[b].VCPUs, instances[a].VCPUs),
			cmp.Compare(instances[a].Name, instances[b].Name))
	})
	var misfits []string
	var needV, needR, needD int
	for _, i := range toPlace {
		in := instances[i]
		best := -1
		for t := range free {
			f := free[t]
			if f.FreeVCPUs < in.VCPUs || f.FreeRAMMB < in.RAMMB || f.FreeDiskGB < in.DiskGB {
				continue
			}
			if best < 0 || f.FreeRAMMB > free[best].FreeRAMMB {
				best = t
			}
		}
		if best < 0 {
			misfits = append(misfits, fmt.Sprintf("%s (%d vCPU, %d MB RAM, %d GB disk)", moves[i].label(), in.VCPUs, in.RAMMB, in.DiskGB))
			needV += in.VCPUs
			needR += in.RAMMB
			needD += in.DiskGB
			continue
		}
		free[best].FreeVCPUs -= in.VCPUs
		free[best].FreeRAMMB -= in.RAMMB
		free[best].FreeDiskGB -= in.DiskGB
		moves[i].To = free[best].Host
	}
	if len(misfits) > 0 {
		var room []string
		for _, c := range caps {
			room = append(room, fmt.Sprintf("%s: %d vCPU, %d MB RAM, %d GB disk free", c.Host, c.FreeVCPUs, c.FreeRAMMB, c.FreeDiskGB))
		}
		if len(room) == 0 {
			room = []string{"no target host"}
		}
		return moves, fmt.Errorf("not enough capacity on the targets: %d instance(s) fit nowhere: %s; short by %d vCPU, %d MB RAM, %d GB disk beyond what is left after packing the others (targets: %s)",
			len(misfits), strings.Join(misfits, ", "), needV, needR, needD, strings.Join(room, "; "))
	}
	return moves, nil
}

// planLines renders moves for the plan.
func planLines(moves []Move) []string {
	var out []string
	for _, m := range moves {
		switch m.Kind {
		case "skip":
			out = append(out, fmt.Sprintf("%s [%s]: SKIP — %s", m.label(), m.Status, m.Why))
		default:
			verb := map[string]string{activities.MoveLive: "live-migrate", activities.MoveCold: "cold-migrate + confirm", activities.MoveEvacuate: "evacuate"}[m.Kind]
			out = append(out, fmt.Sprintf("%s [%s]: %s %s → %s (deadline %s)", m.label(), m.Status, verb, m.From, m.To, m.Timeout))
		}
	}
	return out
}

// moveAll runs the moves with at most parallel in flight. Each move is its own step
// ("<prefix>/<instance id>"): a move out of retries stalls only its step; skip leaves that
// instance where it is. It records each move's outcome in moves.
func (r *Run) moveAll(prefix string, moves []Move, parallel int, blockMigration string) error {
	inflight, done := 0, 0
	todo := 0
	var abort error
	for i := range moves {
		if moves[i].Kind == "skip" {
			moves[i].Outcome = "skipped"
			moves[i].Detail = moves[i].Why
			continue
		}
		todo++
	}
	for i := range moves {
		m := &moves[i]
		if m.Kind == "skip" {
			continue
		}
		_ = workflow.Await(r.ctx, func() bool { return inflight < parallel })
		if abort != nil {
			// An operator aborted: start no more moves.
			m.Outcome, m.Detail = "left", "not started: the run was aborted"
			todo--
			continue
		}
		inflight++
		workflow.Go(r.ctx, func(ctx workflow.Context) {
			defer func() { inflight--; done++ }()
			name := prefix + "/" + m.ID
			req := MoveRequest{ID: m.ID, Source: m.From, Target: m.To, Kind: m.Kind, BlockMigration: blockMigration,
				Timeout: m.Timeout, Expect: expectAfter(m.Kind, m.Status)}
			var res MoveResult
			err := r.DoIn(ctx, name, StepOptions{Target: m.label()}, func(ctx workflow.Context) error {
				actx := r.ActivityOptions(ctx, m.Timeout+5*time.Minute, 30*time.Second)
				return r.Exec(actx, name, m.ID, compute.MoveInstance, &res, req)
			})
			s := r.step(name)
			switch {
			case err != nil:
				m.Outcome, m.Detail = "failed", errText(err)
				if IsAbort(err) && abort == nil {
					abort = err
				}
			case s.State == StepSkipped:
				m.Outcome, m.Detail = "skipped", "skipped by operator after: "+s.Error
				s.Detail = fmt.Sprintf("%s left on %s: %s", m.label(), m.From, s.Error)
			default:
				m.Outcome, m.To, m.Migration = "moved", res.To, res.Migration
				m.Detail = fmt.Sprintf("%s → %s, %s (migration %s %s)", m.From, res.To, res.Status, res.Migration, res.MigrationStat)
				if res.AlreadyMoved {
					m.Detail += "; was already there"
				}
				s.Detail = fmt.Sprintf("%s: %s", m.label(), m.Detail)
			}
		})
	}
	_ = workflow.Await(r.ctx, func() bool { return done == todo })
	return abort
}

// ComputeEvacuation empties a compute host for planned maintenance (RUNBOOKS.md §1): preflight
// (API and database agree), capacity from Placement, a plan per instance, gate approve-plan,
// disable the service with the reason, bounded migrations each followed and verified, verify the
// host is empty, optionally stop nova-compute and wait at gate maintenance-done, start it again
// and check it reconnected, enable the service, optionally migrate the instances back.
func ComputeEvacuation(ctx workflow.Context, in EvacuateInput) (*Report, error) {
	r, err := Begin(ctx, "evacuate", in.Host, in.Meta, "describe-host", "preflight", "capacity", GateApprovePlan, "acquire-lease",
		"disable-service", "migrate", "verify-empty")
	if err != nil {
		return nil, err
	}
	if err := in.Validate(); err != nil {
		return r.Finish(temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeInvalidInput, nil), "invalid input")
	}
	e := &evacuation{r: r, in: in}
	return e.run()
}

type evacuation struct {
	r         *Run
	in        EvacuateInput
	facts     activities.HostFacts
	svc       ComputeService
	instances []Instance
	moves     []Move
	disabled  bool
	stopped   bool
}

func refused(format string, args ...any) error {
	return temporal.NewNonRetryableApplicationError(fmt.Sprintf(format, args...), ErrTypeRefused, nil)
}

func (e *evacuation) run() (*Report, error) {
	r, in := e.r, e.in
	if in.MaintenanceGate {
		r.AddSteps("stop-compute", GateMaintenanceDone, "start-compute")
	}
	r.AddSteps("verify-reconnect", "enable-service")
	if in.MigrateBack {
		r.AddSteps("migrate-back")
	}
	r.AddSteps("release-lease")

	var targets []string
	var err error
	if e.facts, err = r.DescribeHost(in.Host); err != nil {
		return r.Finish(err, "preflight refused")
	}
	err = r.Do("preflight", StepOptions{Target: in.Host, NoSkip: true}, func(ctx workflow.Context) error {
		if !slices.Contains(e.facts.Roles, "compute") {
			return refused("host %s has roles %v, not compute", in.Host, e.facts.Roles)
		}
		var svcs []ComputeService
		if err := r.Exec(ctx, "preflight", in.Host, compute.ComputeServices, &svcs); err != nil {
			return err
		}
		var ok bool
		targets, ok = nil, false
		for _, s := range svcs {
			if s.Host == in.Host {
				e.svc, ok = s, true
			}
		}
		if !ok {
			return refused("host %s has no nova-compute service", in.Host)
		}
		if e.svc.State != "up" || e.svc.ForcedDown {
			return refused("nova-compute on %s is %s (forced down %v): an evacuation for maintenance needs it up; for a dead host use recover-host", in.Host, e.svc.State, e.svc.ForcedDown)
		}
		if e.svc.Status == "disabled" && e.svc.DisabledReason != in.Reason {
			r.AddFinding(SeverityWarning, in.Host, "nova-compute was already disabled (reason: %q); it will be re-enabled at the end", e.svc.DisabledReason)
		}
		candidates := in.Targets
		if len(candidates) == 0 {
			for _, s := range svcs {
				if s.Host != in.Host && s.Status == "enabled" && s.State == "up" && !s.ForcedDown {
					targets = append(targets, s.Host)
				}
			}
			if len(targets) == 0 {
				return refused("no other compute host is enabled and up: nowhere to move the instances of %s", in.Host)
			}
		} else {
			for _, t := range candidates {
				i := slices.IndexFunc(svcs, func(s ComputeService) bool { return s.Host == t })
				switch {
				case i < 0:
					return refused("target %s has no nova-compute service", t)
				case svcs[i].Status != "enabled" || svcs[i].State != "up" || svcs[i].ForcedDown:
					return refused("target %s is not usable: %s, %s (forced down %v)", t, svcs[i].Status, svcs[i].State, svcs[i].ForcedDown)
				}
				targets = append(targets, t)
			}
		}
		if err := r.Exec(ctx, "preflight", in.Host, compute.InstancesOnHost, &e.instances, in.Host); err != nil {
			return err
		}
		var dbIDs []string
		if err := r.Exec(ctx, "preflight", in.Host, novadb.DBInstancesOnHost, &dbIDs, in.Host); err != nil {
			return err
		}
		crossCheck(r, in.Host, e.instances, dbIDs)
		return nil
	})
	if err != nil {
		return r.Finish(err, "preflight refused")
	}
	r.SetDetail("targets", targets)

	err = r.Do("capacity", StepOptions{Target: strings.Join(targets, ","), NoSkip: true}, func(ctx workflow.Context) error {
		var caps []HostCapacity
		if err := r.Exec(ctx, "capacity", strings.Join(targets, ","), compute.Capacity, &caps, targets); err != nil {
			return err
		}
		r.SetDetail("capacity", caps)
		moves, err := PlanMoves(in.Host, e.instances, caps, false)
		e.moves = moves
		if err != nil {
			return refused("%v", err)
		}
		return nil
	})
	r.SetPlan(e.planText(targets))
	r.SetDetail("moves", compactMoves(e.moves))
	if err != nil {
		return r.Finish(err, "refused: capacity")
	}
	if r.DryRun() {
		return r.Finish(nil, fmt.Sprintf("dry run: %d instance(s) to move, %d to skip; nothing changed", e.count("move"), e.count("skip")))
	}

	if err := r.Gate(GateApprovePlan, GateOptions{Summary: fmt.Sprintf("Empty %s (%s): move %d instance(s) to %s, skip %d. Reason: %s",
		in.Host, e.facts.Address, e.count("move"), strings.Join(targets, ", "), e.count("skip"), in.Reason)}); err != nil {
		return r.Finish(err, "")
	}
	if err := r.AcquireHostLease(in.Host); err != nil {
		return r.Finish(err, "")
	}
	return e.afterLease()
}

func (e *evacuation) count(what string) int {
	n := 0
	for _, m := range e.moves {
		if (what == "skip") == (m.Kind == "skip") {
			n++
		}
	}
	return n
}

func (e *evacuation) planText(targets []string) []string {
	in := e.in
	plan := []string{fmt.Sprintf("host %s: %d instance(s); targets %s; at most %d migration(s) in flight; block migration %s",
		in.Host, len(e.instances), strings.Join(targets, ", "), in.Parallel, cmp.Or(in.BlockMigration, "auto"))}
	plan = append(plan, fmt.Sprintf("disable nova-compute on %s with reason %q", in.Host, in.Reason))
	plan = append(plan, planLines(e.moves)...)
	plan = append(plan, fmt.Sprintf("verify %s is empty (API and database)", in.Host))
	if in.MaintenanceGate {
		plan = append(plan, fmt.Sprintf("stop nova-compute on %s; gate %s; start it and check it reconnected", in.Host, GateMaintenanceDone))
	}
	plan = append(plan, fmt.Sprintf("enable nova-compute on %s", in.Host))
	if in.MigrateBack {
		plan = append(plan, fmt.Sprintf("move the instances back to %s", in.Host))
	}
	return plan
}

// leftState says honestly where the run leaves the host and its instances.
func (e *evacuation) leftState() {
	if !e.disabled && !e.stopped {
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

func (e *evacuation) finish(err error, summary string) (*Report, error) {
	e.leftState()
	e.r.SetDetail("moves", compactMoves(e.moves))
	e.r.ReleaseHostLease(e.in.Host)
	return e.r.Finish(err, summary)
}

func (e *evacuation) afterLease() (*Report, error) {
	r, in := e.r, e.in
	err := r.Do("disable-service", StepOptions{Target: in.Host, NoSkip: true}, func(ctx workflow.Context) error {
		e.disabled = true // from here on an abort must say so, even if the answer is lost
		var s ComputeService
		return r.Exec(ctx, "disable-service", in.Host, compute.SetComputeService, &s,
			activities.ServiceChange{Host: in.Host, Disable: true, Reason: in.Reason})
	})
	if err != nil {
		return e.finish(err, "")
	}
	e.leftState()

	err = r.Do("migrate", StepOptions{Target: in.Host}, func(ctx workflow.Context) error {
		return r.moveAll("migrate", e.moves, in.Parallel, in.BlockMigration)
	})
	e.leftState()
	if err != nil {
		return e.finish(err, "")
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
		var api []Instance
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
			r.AddFinding(SeverityWarning, in.Host, "%d instance(s) remain on %s (skipped: see the plan and the migrate steps): %s", len(remaining), in.Host, strings.Join(remaining, ", "))
		} else {
			r.step("verify-empty").Detail = "empty in the API and the database"
		}
		return nil
	})
	if err != nil {
		return e.finish(err, "")
	}

	if in.MaintenanceGate {
		if err := e.maintenance(len(remaining)); err != nil {
			return e.finish(err, "")
		}
	} else {
		// No stop: still check that the service reports up before it is enabled again.
		if err := e.verifyReconnect(time.Time{}); err != nil {
			return e.finish(err, "")
		}
	}

	err = r.Do("enable-service", StepOptions{Target: in.Host, NoSkip: true}, func(ctx workflow.Context) error {
		var s ComputeService
		return r.Exec(ctx, "enable-service", in.Host, compute.SetComputeService, &s, activities.ServiceChange{Host: in.Host, Enable: true})
	})
	if err != nil {
		return e.finish(err, "")
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
			if err := r.moveAll("migrate-back", back, in.Parallel, in.BlockMigration); err != nil {
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
			return e.finish(err, "")
		}
	}
	summary := fmt.Sprintf("%s emptied: %d instance(s) moved, %d left (skipped); nova-compute enabled again", in.Host, moved, skipped)
	if in.MigrateBack {
		summary += "; instances moved back"
	}
	return e.finish(nil, summary)
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
	summary := fmt.Sprintf("nova-compute on %s is stopped and its service disabled: do the maintenance, then approve to start it again.", in.Host)
	if remaining > 0 {
		summary += fmt.Sprintf(" WARNING: %d instance(s) are still on the host (skipped).", remaining)
	}
	if err := r.Gate(GateMaintenanceDone, GateOptions{Summary: summary}); err != nil {
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

// verifyComputeBack is shared with the post-reboot check: nova-compute runs, the service reports
// up in Nova, and, when since is set, its log shows an AMQP connection after since.
func verifyComputeBack(r *Run, host string, svc activities.ServiceFacts, since time.Time) error {
	req := activities.ServiceRequest{Host: host, Role: svc.Role, Service: svc.Name}
	return r.Do("verify-reconnect", StepOptions{Target: host}, func(ctx workflow.Context) error {
		var st activities.ServiceState
		if err := r.Exec(ctx, "verify-reconnect", host, hosts.ServiceStatus, &st, req); err != nil {
			return err
		}
		if !st.Running {
			return fmt.Errorf("nova-compute on %s is not running: %s", host, st.Output)
		}
		// The service reports up within its report interval; look a few times.
		var up bool
		var last ComputeService
		for i := 0; i < 12 && !up; i++ {
			if i > 0 {
				_ = workflow.Sleep(ctx, 5*time.Second)
			}
			var svcs []ComputeService
			if err := r.Exec(ctx, "verify-reconnect", host, compute.ComputeServices, &svcs); err != nil {
				return err
			}
			for _, s := range svcs {
				if s.Host == host {
					last = s
					up = s.State == "up" && !s.ForcedDown && (since.IsZero() || !s.UpdatedAt.Before(since.Add(-time.Second)))
				}
			}
		}
		if !up {
			return fmt.Errorf("nova-compute on %s does not report up (state %s, forced down %v, last report %s)", host, last.State, last.ForcedDown, last.UpdatedAt.Format(time.RFC3339))
		}
		detail := "service reports up"
		if !since.IsZero() && svc.AMQP && svc.Log != "" {
			var res activities.AMQPResult
			areq := activities.AMQPRequest{ServiceRequest: req, Log: svc.Log, Since: since}
			for i := 0; i < 6 && !res.Connected; i++ {
				if i > 0 {
					_ = workflow.Sleep(ctx, 5*time.Second)
				}
				if err := r.Exec(ctx, "verify-reconnect", host, hosts.CheckAMQP, &res, areq); err != nil {
					return err
				}
			}
			if !res.Connected {
				r.AddFinding(SeverityWarning, host+"/nova-compute", "no AMQP connection logged since %s (the service reports up; is oslo.messaging's DEBUG logging off?)", since.Format(time.RFC3339))
			} else {
				detail += "; AMQP connection logged at " + res.At.Format(time.RFC3339)
			}
		}
		r.step("verify-reconnect").Detail = detail
		return nil
	})
}

// crossCheck compares the API's and the database's instances of a host; a mismatch is a finding.
func crossCheck(r *Run, host string, api []Instance, db []string) {
	inAPI := map[string]bool{}
	for _, i := range api {
		inAPI[i.ID] = true
	}
	inDB := map[string]bool{}
	for _, id := range db {
		inDB[id] = true
		if !inAPI[id] {
			r.AddFinding(SeverityWarning, host+"/"+id, "instance %s is on %s in the Nova database but not in the API's list", id, host)
		}
	}
	for _, i := range api {
		if !inDB[i.ID] {
			r.AddFinding(SeverityWarning, host+"/"+i.ID, "instance %s (%s) is on %s in the API but not in the Nova database", i.ID, i.Name, host)
		}
	}
	r.SetDetail("crosscheck", fmt.Sprintf("API %d instance(s), database %d", len(api), len(db)))
}
