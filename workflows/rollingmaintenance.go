package workflows

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/stackrun/stackrun/activities"
)

// RollingMaintenance takes compute hosts out of service in waves (RUNBOOKS.md §6, the compute
// part): hosts in batches by failure domain (--batch-by rack), one host at a time under the
// cloud-wide lease; for each host the evacuate runbook as a child run (its own plan and gate),
// then the host disabled under this run's lease, the action (upgrade of nova-compute with
// staged-upgrade's steps, a reboot over SSH with the wait until it answers with a new boot time
// and the post-reboot-check runbook as a child, or a restart of nova-compute), the service
// enabled, the capacity checked again and the instances moved back. The first batch is the
// canary (gate canary-ok after it). A failure stalls the wave where it is; the wave step, the
// report and the left state list the hosts done, in progress and untouched.
var RollingMaintenance = Define(Def[RollingMaintenanceInput, rollingPlan]{
	Name:     "rolling-maintenance",
	Short:    "Compute hosts in waves by failure domain: evacuate, upgrade|reboot|restart-service, check, migrate back; canary batch first",
	StepsFor: rollingSteps,
	// One wave at a time, cloud-wide: two waves would fight over the same spare capacity.
	Key:    func(in *RollingMaintenanceInput) string { return "cloud" },
	Target: func(in *RollingMaintenanceInput) string { return cmpOr(strings.Join(in.Hosts, ","), "role "+in.Role) },
	Plan:   planRollingMaintenance,
	Act:    rollingMaintenance,
})

// Actions of rolling-maintenance.
const (
	ActionUpgrade        = "upgrade"
	ActionReboot         = "reboot"
	ActionRestartService = "restart-service"
)

// rollingBootTimeout is how long a host may take to answer again after its reboot.
const rollingBootTimeout = 20 * time.Minute

// RollingMaintenanceInput is the input of RollingMaintenance.
type RollingMaintenanceInput struct {
	Meta
	Hosts       []string `json:"hosts,omitempty" flag:"hosts" usage:"compute hosts in order, comma-separated (or --role)"`
	Role        string   `json:"role,omitempty" flag:"role" usage:"every inventory host of this role, in name order (compute; or --hosts)"`
	BatchBy     string   `json:"batch_by,omitempty" flag:"batch-by" usage:"inventory label that names a host's failure domain (rack, switch): one batch per value"`
	BatchSize   int      `json:"batch_size,omitempty" flag:"batch-size" usage:"hosts per batch without --batch-by (default 1)"`
	Action      string   `json:"action" flag:"action" usage:"upgrade, reboot or restart-service (required)"`
	ToVersion   []string `json:"to_version,omitempty" flag:"to-version" usage:"--action upgrade: target builds as package=version, comma-separated (or --to-candidate)"`
	ToCandidate bool     `json:"to_candidate,omitempty" flag:"to-candidate" usage:"--action upgrade: nova's packages to apt's candidate"`
	Parallel    int      `json:"parallel,omitempty" flag:"parallel" usage:"migrations in flight per host (default policy.default_parallelism)"`
}

var labelRE = regexp.MustCompile(`^[a-z][a-z0-9_.-]{0,62}$`)

func (in *RollingMaintenanceInput) Validate() error {
	if err := validateMeta(&in.Meta); err != nil {
		return err
	}
	if (len(in.Hosts) > 0) == (in.Role != "") {
		return &FieldError{Field: "hosts", Problem: "give exactly one of --hosts h1,h2,... and --role compute"}
	}
	if len(in.Hosts) > 256 {
		return &FieldError{Field: "hosts", Problem: "at most 256 hosts per wave"}
	}
	for i, h := range in.Hosts {
		if err := ValidateHostName(fmt.Sprintf("hosts[%d]", i), h); err != nil {
			return err
		}
		if slices.Index(in.Hosts, h) != i {
			return &FieldError{Field: fmt.Sprintf("hosts[%d]", i), Value: h, Problem: "listed twice"}
		}
	}
	if in.Role != "" && in.Role != "compute" {
		return &FieldError{Field: "role", Value: in.Role, Problem: "only compute hosts roll (their instances move away and back)"}
	}
	switch in.Action {
	case ActionUpgrade, ActionReboot, ActionRestartService:
	case "":
		return &FieldError{Field: "action", Problem: "required: upgrade, reboot or restart-service"}
	default:
		return &FieldError{Field: "action", Value: in.Action, Problem: "must be upgrade, reboot or restart-service"}
	}
	if in.BatchBy != "" && !labelRE.MatchString(in.BatchBy) {
		return &FieldError{Field: "batch-by", Value: in.BatchBy, Problem: "not an inventory label name (lower-case letters, digits, '_.-')"}
	}
	if in.BatchSize < 0 || in.BatchSize > 64 || (in.BatchSize > 0 && in.BatchBy != "") {
		return &FieldError{Field: "batch-size", Value: fmt.Sprint(in.BatchSize), Problem: "0 to 64, and only without --batch-by"}
	}
	if in.Parallel < 0 || in.Parallel > MaxParallel {
		return &FieldError{Field: "parallel", Value: fmt.Sprint(in.Parallel), Problem: fmt.Sprintf("must be 0 (policy default) to %d", MaxParallel)}
	}
	if in.Action != ActionUpgrade {
		if len(in.ToVersion) > 0 || in.ToCandidate {
			return &FieldError{Field: "to_version", Problem: "only with --action upgrade"}
		}
	} else {
		// the same rules as staged-upgrade's
		up := StagedUpgradeInput{Meta: in.Meta, ToVersion: in.ToVersion, ToCandidate: in.ToCandidate}
		if err := up.Validate(); err != nil {
			return err
		}
	}
	if strings.TrimSpace(in.Reason) == "" && !in.DryRun {
		return &FieldError{Field: "reason", Problem: "required: it is recorded as each compute service's disabled reason"}
	}
	return ValidateDisabledReason(rollingReasonPrefix(in.Action), in.Reason)
}

func rollingReasonPrefix(action string) string { return "rolling-maintenance " + action + ": " }

func rollingSteps(in *RollingMaintenanceInput) []string {
	steps := []string{"describe-hosts", "preflight", "capacity"}
	if in.Action == ActionUpgrade {
		steps = append(steps, "upgrade-facts")
	}
	return append(steps, GateApprovePlan, "wave")
}

// rollingPlan is the wave: batches of hosts, each host with what it needs.
type rollingPlan struct {
	batches  []rollingBatch
	parallel int
	upgrade  *upgradeServicePlan // --action upgrade: nova on the wave's hosts
	dbHost   string
}

type rollingBatch struct {
	domain string
	hosts  []*rollingHost
}

type rollingHost struct {
	facts     activities.HostFacts
	instances []activities.Instance
	targets   []string // where its instances may go: compute hosts outside its batch
	moves     []Move
}

func (h *rollingHost) name() string { return h.facts.Name }

func (p *rollingPlan) hostNames() []string {
	var out []string
	for _, b := range p.batches {
		for _, h := range b.hosts {
			out = append(out, h.name())
		}
	}
	return out
}

func planRollingMaintenance(r *Run, in *RollingMaintenanceInput, p *rollingPlan) (Approval, error) {
	var facts []activities.HostFacts
	err := r.Do("describe-hosts", StepOptions{Target: cmpOr(strings.Join(in.Hosts, ","), in.Role), NoSkip: true}, func(ctx workflow.Context) error {
		facts = nil
		if in.Role != "" {
			return r.Exec(ctx, "describe-hosts", in.Role, hosts.HostsWithRole, &facts, in.Role)
		}
		for _, h := range in.Hosts {
			var f activities.HostFacts
			if err := r.Exec(ctx, "describe-hosts", h, hosts.DescribeHost, &f, h); err != nil {
				return err
			}
			facts = append(facts, f)
		}
		return nil
	})
	if err != nil {
		return Approval{}, Summarize("invalid input", err)
	}
	if len(facts) == 0 {
		return Approval{}, Summarize("invalid input", &FieldError{Field: "role", Value: in.Role, Problem: "no inventory host has this role"})
	}
	if err := p.makeBatches(in, facts); err != nil {
		return Approval{}, Summarize("invalid input", err)
	}
	names := p.hostNames()
	p.parallel = r.parallelism(in.Parallel)

	var svcs []activities.ComputeService
	err = r.Do("preflight", StepOptions{Target: strings.Join(names, ","), NoSkip: true}, func(ctx workflow.Context) error {
		if err := r.Exec(ctx, "preflight", "nova-compute", compute.ComputeServices, &svcs); err != nil {
			return err
		}
		for _, b := range p.batches {
			for _, h := range b.hosts {
				i := slices.IndexFunc(svcs, func(s activities.ComputeService) bool { return s.Host == h.name() })
				if i < 0 {
					return refused("host %s has no nova-compute service", h.name())
				}
				if s := svcs[i]; s.State != "up" || s.ForcedDown {
					return refused("nova-compute on %s is %s (forced down %v): a wave takes only hosts in service; for a dead host use recover-host", h.name(), s.State, s.ForcedDown)
				}
				var err error
				if h.instances, _, err = hostInstances(r, ctx, "preflight", h.name()); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return Approval{}, Summarize("preflight refused", err)
	}

	// Each host's instances must fit on the compute hosts outside its batch (its failure domain).
	err = r.Do("capacity", StepOptions{Target: strings.Join(names, ","), NoSkip: true}, func(ctx workflow.Context) error {
		var all []string
		for _, s := range svcs {
			if s.Status == "enabled" && s.State == "up" && !s.ForcedDown {
				all = append(all, s.Host)
			}
		}
		var caps []activities.HostCapacity
		if err := r.Exec(ctx, "capacity", strings.Join(all, ","), compute.Capacity, &caps, all); err != nil {
			return err
		}
		for _, b := range p.batches {
			for _, h := range b.hosts {
				var hc []activities.HostCapacity
				h.targets = nil
				for _, c := range caps {
					if !slices.ContainsFunc(b.hosts, func(x *rollingHost) bool { return x.name() == c.Host }) {
						hc = append(hc, c)
						h.targets = append(h.targets, c.Host)
					}
				}
				if len(h.targets) == 0 {
					return refused("no compute host outside %s's batch (%s) is enabled and up: nowhere to move its instances", h.name(), b.domain)
				}
				var err error
				if h.moves, err = PlanMoves(h.name(), h.instances, hc, false); err != nil {
					return refused("%s: %v", h.name(), err)
				}
			}
		}
		return nil
	})
	if err != nil {
		return Approval{}, Summarize("refused: capacity", err)
	}
	if in.Action == ActionUpgrade {
		if err := planRollingUpgrade(r, in, p, names); err != nil {
			return Approval{}, err
		}
	}
	r.SetPlan(p.lines(r, in))
	var fs []Fact
	for _, b := range p.batches {
		for _, h := range b.hosts {
			fs = append(fs, Fact{Name: "batch " + b.domain, Value: h.name()}, Fact{Name: h.name() + " instances", Value: fmt.Sprint(len(h.instances)), Minor: true})
		}
	}
	r.SetFacts(fs...)
	return Approval{Gate: GateApprovePlan,
		Summary: fmt.Sprintf("Rolling %s of %d compute host(s) in %d batch(es): %s. Each host is evacuated first (its own evacuate run and plan), its instances come back after. Reason: %s",
			in.Action, len(names), len(p.batches), strings.Join(names, ", "), in.Reason),
		DryRun: fmt.Sprintf("dry run: %d host(s) in %d batch(es) planned; nothing changed", len(names), len(p.batches))}, nil
}

// makeBatches groups the hosts by failure domain (the --batch-by label, batches in the order the
// domains first appear) or in runs of --batch-size; every host must be a compute.
func (p *rollingPlan) makeBatches(in *RollingMaintenanceInput, facts []activities.HostFacts) error {
	size := max(in.BatchSize, 1)
	for i, f := range facts {
		if !slices.Contains(f.Roles, "compute") {
			return &FieldError{Field: fmt.Sprintf("hosts[%d]", i), Value: f.Name, Problem: fmt.Sprintf("has roles %v, not compute", f.Roles)}
		}
		h := &rollingHost{facts: f}
		if in.BatchBy != "" {
			d, ok := f.Labels[in.BatchBy]
			if !ok || d == "" {
				return &FieldError{Field: "batch-by", Value: in.BatchBy, Problem: fmt.Sprintf("host %s has no label %s in the inventory", f.Name, in.BatchBy)}
			}
			j := slices.IndexFunc(p.batches, func(b rollingBatch) bool { return b.domain == in.BatchBy+"="+d })
			if j < 0 {
				p.batches = append(p.batches, rollingBatch{domain: in.BatchBy + "=" + d})
				j = len(p.batches) - 1
			}
			p.batches[j].hosts = append(p.batches[j].hosts, h)
			continue
		}
		if len(p.batches) == 0 || len(p.batches[len(p.batches)-1].hosts) == size {
			p.batches = append(p.batches, rollingBatch{domain: fmt.Sprintf("batch %d", len(p.batches)+1)})
		}
		b := &p.batches[len(p.batches)-1]
		b.hosts = append(b.hosts, h)
	}
	return nil
}

// planRollingUpgrade is step upgrade-facts: nova's packages on the wave's hosts and their
// targets, as staged-upgrade resolves them (a version apt does not offer is refused here).
func planRollingUpgrade(r *Run, in *RollingMaintenanceInput, p *rollingPlan, names []string) error {
	var facts activities.UpgradeFacts
	var sp *upgradeServicePlan
	err := r.Do("upgrade-facts", StepOptions{Target: strings.Join(names, ","), NoSkip: true}, func(ctx workflow.Context) error {
		if err := r.Exec(ctx, "upgrade-facts", "", upgradeAct.DescribeUpgrade, &facts); err != nil {
			return err
		}
		sf, ok := facts.Services["nova"]
		if !ok {
			return refused("the worker's upgrade configuration has no service nova")
		}
		var mine []activities.UpgradeHost
		for _, name := range names {
			i := slices.IndexFunc(sf.Hosts, func(h activities.UpgradeHost) bool { return h.Host == name })
			if i < 0 {
				return refused("nova's upgrade facts list no process on %s", name)
			}
			hf := sf.Hosts[i]
			hf.Processes = slices.DeleteFunc(slices.Clone(hf.Processes), func(s activities.ServiceFacts) bool { return s.Name != "nova-compute" })
			if len(hf.Processes) == 0 {
				return refused("%s runs no nova-compute", name)
			}
			mine = append(mine, hf)
		}
		sf.Hosts = mine
		sp = newServicePlan(sf, "", false)
		sp.schemaHost = "" // the control plane's staged upgrade runs the schema commands
		for _, h := range sp.hosts {
			if err := r.Exec(ctx, "upgrade-facts", h.host, upgradeAct.PackageFacts, &h.facts, activities.PackageFactsRequest{Host: h.host, Service: "nova"}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return Summarize("invalid input", err)
	}
	up := &StagedUpgradeInput{ToVersion: in.ToVersion, ToCandidate: in.ToCandidate}
	if err := resolveTargets(up, []*upgradeServicePlan{sp}); err != nil {
		return Summarize("invalid input", err)
	}
	p.upgrade, p.dbHost = sp, facts.DatabaseHost
	return nil
}

func (p *rollingPlan) lines(r *Run, in *RollingMaintenanceInput) []string {
	var bs []string
	for i, b := range p.batches {
		label := b.domain
		if i == 0 {
			label += ", the canary"
		}
		hs := make([]string, len(b.hosts))
		for j, h := range b.hosts {
			hs[j] = h.name()
		}
		bs = append(bs, fmt.Sprintf("%d (%s): %s", i+1, label, strings.Join(hs, ", ")))
	}
	lines := []string{
		fmt.Sprintf("%s of %d compute host(s) in %d batch(es): %s", in.Action, len(p.hostNames()), len(p.batches), strings.Join(bs, "; ")),
		fmt.Sprintf("one host at a time, each under the cloud-wide lease (at most %d host(s) out of service) and its host's lock; a batch is done before the next failure domain starts", r.policy.MaxHostsOutOfService),
	}
	if len(p.batches) > 1 {
		lines = append(lines, fmt.Sprintf("gate %s after batch 1 (the canary), before the other batches", GateCanaryOK))
	}
	for _, b := range p.batches {
		for _, h := range b.hosts {
			n := 0
			for _, m := range h.moves {
				if m.Kind != "skip" {
					n++
				}
			}
			lines = append(lines, fmt.Sprintf("%s: %d instance(s) now (%d to move) → child run evacuate %s (its own plan and gate %s; targets %s); disable nova-compute; %s; enable; capacity checked again; the instances moved back",
				h.name(), len(h.instances), n, h.name(), GateApprovePlan, strings.Join(h.targets, ", "), p.actionText(in, h)))
		}
	}
	return lines
}

func (p *rollingPlan) actionText(in *RollingMaintenanceInput, h *rollingHost) string {
	switch in.Action {
	case ActionReboot:
		return "reboot over SSH (host_reboot), wait until it answers with a boot time after the reboot, nova-compute reports up and reconnected, child run post-reboot-check --role compute"
	case ActionRestartService:
		return "restart nova-compute (stop, start), check it reports up and reconnected to AMQP"
	}
	if p.upgrade != nil {
		for _, uh := range p.upgrade.hosts {
			if uh.host == h.name() {
				ch := p.upgrade.changes(uh)
				if len(ch) == 0 {
					ch = []string{"packages at the target already: " + p.upgrade.targetText()}
				}
				return "upgrade nova-compute (" + strings.Join(ch, ", ") + "): stop, back up " + p.upgrade.svc.ConfigDir + ", packages (skipped if at the target), start, verify; no schema commands on computes"
			}
		}
	}
	return "upgrade nova-compute"
}

// wave is a rolling maintenance under way.
type wave struct {
	r       *Run
	in      *RollingMaintenanceInput
	p       *rollingPlan
	done    []string
	current string
	// hostState is what the current host is left in, should the run end here.
	hostState string
	upgrade   *upgradeRun
}

func rollingMaintenance(r *Run, in *RollingMaintenanceInput, p *rollingPlan) (string, error) {
	w := &wave{r: r, in: in, p: p}
	if p.upgrade != nil {
		w.upgrade = &upgradeRun{r: r, tag: backupTag(r), dbHost: p.dbHost, parallel: 1, plans: []*upgradeServicePlan{p.upgrade}}
		r.OnExit(w.upgrade.report)
	}
	r.OnExit(w.leftState)
	r.setStepState(r.step("wave"), StepRunning, w.text())
	for i, b := range p.batches {
		for _, h := range b.hosts {
			w.current = h.name()
			w.show()
			if err := w.host(h); err != nil {
				return w.summary(), err
			}
			w.done = append(w.done, h.name())
			w.current = ""
			w.show()
		}
		if i == 0 && len(p.batches) > 1 {
			err := r.Gate(GateCanaryOK, GateOptions{Summary: fmt.Sprintf("The canary batch (%s: %s) is done: %s, its instances back. Go on with the other %d batch(es)?",
				b.domain, strings.Join(w.done, ", "), in.Action, len(p.batches)-1)})
			if err != nil {
				return w.summary(), err
			}
		}
	}
	r.setStepState(r.step("wave"), StepDone, w.text())
	return w.summary(), nil
}

// text lists the hosts done, in progress and untouched.
func (w *wave) text() string {
	var untouched []string
	for _, h := range w.p.hostNames() {
		if !slices.Contains(w.done, h) && h != w.current {
			untouched = append(untouched, h)
		}
	}
	return fmt.Sprintf("done: [%s]; in progress: [%s]; untouched: [%s]", strings.Join(w.done, ", "), w.current, strings.Join(untouched, ", "))
}

func (w *wave) show() {
	w.r.step("wave").Detail = w.text()
	w.r.SetDetail("wave", w.text())
}

func (w *wave) leftState() {
	w.show()
	if len(w.done) == len(w.p.hostNames()) {
		w.r.SetLeftState("")
		return
	}
	s := "the wave stopped: " + w.text()
	if w.hostState != "" {
		s += "; " + w.hostState
	}
	if w.current != "" {
		s += fmt.Sprintf("; see the steps %s/... for where %s and its instances are", w.current, w.current)
	}
	w.r.SetLeftState(s)
}

func (w *wave) summary() string {
	return fmt.Sprintf("rolling %s: %d of %d host(s) done (%s)", w.in.Action, len(w.done), len(w.p.hostNames()), w.text())
}

// stalled is a host step's error with the wave's state, so that the stall says where the wave is.
// An abort, a cancellation and a refusal keep their own error (a refusal ends the run).
func (w *wave) stalled(err error) error {
	if err == nil || IsAbort(err) || temporal.IsCanceledError(err) {
		return err
	}
	return fmt.Errorf("%s; the wave waits here: %s", errText(err), w.text())
}

// host is one host's turn: evacuate (child), lease, disable, check empty, action, check, enable,
// capacity again, migrate back, release.
func (w *wave) host(h *rollingHost) error {
	r, name := w.r, h.name()
	st := func(s string) string { return name + "/" + s }
	r.AddSteps(st("instances"), st("evacuate"), st("disable"), st("verify-empty"))
	reason := rollingReasonPrefix(w.in.Action) + w.in.Reason
	var before []activities.Instance
	err := r.Do(st("instances"), StepOptions{Target: name, ReadOnly: true}, func(ctx workflow.Context) error {
		return w.stalled(r.Exec(ctx, st("instances"), name, compute.InstancesOnHost, &before, name))
	})
	if err != nil {
		return err
	}
	r.step(st("instances")).Detail = fmt.Sprintf("%d instance(s) to bring back after the %s", len(before), w.in.Action)
	ev := EvacuateInput{Meta: Meta{RequestedBy: r.meta.RequestedBy, Reason: reason}, Host: name, Targets: h.targets, Parallel: w.in.Parallel}
	var evRep Report
	if err := w.child(st("evacuate"), Evacuate, &ev, &evRep, nil); err != nil {
		return err
	}
	if err := r.AcquireHostLease(name); err != nil {
		return err
	}
	err = r.Do(st("disable"), StepOptions{Target: name, NoSkip: true}, func(ctx workflow.Context) error {
		var s activities.ComputeService
		return w.stalled(r.Exec(ctx, st("disable"), name, compute.SetComputeService, &s, activities.ServiceChange{Host: name, Disable: true, Reason: reason}))
	})
	if err != nil {
		return err
	}
	w.hostState = fmt.Sprintf("nova-compute on %s is DISABLED (reason %q): `openstack compute service set --enable %s nova-compute` when done", name, reason, name)
	// Between the child's enable and this disable the scheduler could have placed something here.
	err = r.Do(st("verify-empty"), StepOptions{Target: name}, func(ctx workflow.Context) error {
		var now []activities.Instance
		if err := r.Exec(ctx, st("verify-empty"), name, compute.InstancesOnHost, &now, name); err != nil {
			return w.stalled(err)
		}
		if len(now) > 0 {
			ids := make([]string, len(now))
			for i, x := range now {
				ids[i] = fmt.Sprintf("%s (%s, %s)", x.Name, x.ID, x.Status)
			}
			return w.stalled(fmt.Errorf("%s still has %d instance(s) after its evacuation: %s; move them (or resolve skip to %s it with them on it)", name, len(now), strings.Join(ids, ", "), w.in.Action))
		}
		r.step(st("verify-empty")).Detail = "empty"
		return nil
	})
	if err != nil {
		return err
	}
	if err := w.action(h); err != nil {
		return err
	}
	r.AddSteps(st("enable"), st("capacity-back"), st("migrate-back"))
	err = r.Do(st("enable"), StepOptions{Target: name, NoSkip: true}, func(ctx workflow.Context) error {
		var s activities.ComputeService
		return w.stalled(r.Exec(ctx, st("enable"), name, compute.SetComputeService, &s, activities.ServiceChange{Host: name, Enable: true}))
	})
	if err != nil {
		return err
	}
	w.hostState = ""
	if err := w.migrateBack(h, before); err != nil {
		return err
	}
	r.ReleaseHostLease(name)
	return nil
}

// child runs a runbook (evacuate, post-reboot-check) on the host as a child run, under this run's
// requester. The child's own gates apply (a person approves its plan); a child that ends other
// than Completed stalls the step with its summary, and retry starts a new child.
func (w *wave) child(step string, rb Runbook, in Input, rep *Report, check func(*Report) error) error {
	r := w.r
	attempt := 0
	return r.Do(step, StepOptions{Target: rb.Target(in), NoSkip: true}, func(ctx workflow.Context) error {
		attempt++
		id := r.info.WorkflowExecution.ID + "/" + step
		if attempt > 1 {
			id += fmt.Sprintf("-%d", attempt) // a finished child's ID is not reused
		}
		cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
			WorkflowID:            id,
			ParentClosePolicy:     enums.PARENT_CLOSE_POLICY_ABANDON,
			WorkflowIDReusePolicy: enums.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE_FAILED_ONLY,
			TypedSearchAttributes: temporal.NewSearchAttributes(
				AttrStatus.ValueSet(string(StatusPlanning)), AttrTarget.ValueSet(rb.Target(in)), AttrRequestedBy.ValueSet(r.meta.RequestedBy)),
		})
		r.step(step).Detail = fmt.Sprintf("child run %s (its gates are decided there: stackrun show %s)", id, id)
		*rep = Report{}
		if err := workflow.ExecuteChildWorkflow(cctx, rb.Type, in).Get(ctx, rep); err != nil {
			return w.stalled(fmt.Errorf("%s %s: %w", rb.Name, id, err))
		}
		if rep.Status != StatusCompleted {
			left := ""
			if rep.LeftState != "" {
				left = "; it left: " + rep.LeftState
			}
			return w.stalled(fmt.Errorf("%s %s ended %s: %s%s; resolve retry to start it again", rb.Name, id, rep.Status, rep.Summary, left))
		}
		r.step(step).Detail = fmt.Sprintf("%s (run %s)", rep.Summary, id)
		if check != nil {
			if err := check(rep); err != nil {
				return w.stalled(fmt.Errorf("%s %s: %w; resolve retry to run it again", rb.Name, id, err))
			}
		}
		return nil
	})
}

// action is the maintenance itself, and the check that the host is back.
func (w *wave) action(h *rollingHost) error {
	r, name := w.r, h.name()
	st := func(s string) string { return name + "/" + s }
	svc := novaComputeOf(h.facts)
	switch w.in.Action {
	case ActionUpgrade:
		for _, uh := range w.p.upgrade.hosts {
			if uh.host == name {
				return w.upgrade.upgradeHost(r.ctx, w.p.upgrade, uh, false)
			}
		}
		return fmt.Errorf("no upgrade plan for %s", name)
	case ActionRestartService:
		r.AddSteps(st("restart"))
		var since time.Time
		err := r.Do(st("restart"), StepOptions{Target: name, NoSkip: true}, func(ctx workflow.Context) error {
			since = workflow.Now(ctx)
			req := activities.ServiceRequest{Host: name, Role: svc.Role, Service: svc.Name}
			for _, a := range []string{"stop", "start"} {
				if err := r.Exec(ctx, st("restart"), name, hosts.SetService, nil, activities.ServiceAction{ServiceRequest: req, Action: a}); err != nil {
					return w.stalled(err)
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		return verifyComputeBack(r, name, svc, since)
	}
	r.AddSteps(st("reboot"), st("wait-boot"), st("wait-compute"), st("post-reboot-check"))
	var since time.Time
	err := r.Do(st("reboot"), StepOptions{Target: name, NoSkip: true}, func(ctx workflow.Context) error {
		if since.IsZero() {
			since = workflow.Now(ctx).Truncate(time.Second)
		}
		var res activities.RebootResult
		ctx = r.WithActivity(ctx, ActOpts{Timeout: 5 * time.Minute, Heartbeat: time.Minute})
		if err := r.Exec(ctx, st("reboot"), name, hosts.RebootHost, &res, activities.RebootRequest{Host: name, After: since}); err != nil {
			return w.stalled(err)
		}
		r.step(st("reboot")).Detail = res.Detail
		return nil
	})
	if err != nil {
		return err
	}
	w.hostState += fmt.Sprintf("; %s was rebooted at %s", name, since.Format(time.RFC3339))
	var boot time.Time
	err = r.Do(st("wait-boot"), StepOptions{Target: name, ReadOnly: true}, func(ctx workflow.Context) error {
		ctx = r.WithActivity(ctx, ActOpts{Timeout: rollingBootTimeout + 5*time.Minute, Heartbeat: time.Minute})
		if err := r.Exec(ctx, st("wait-boot"), name, hosts.WaitForBoot, &boot, activities.BootWait{Host: name, After: since, Timeout: rollingBootTimeout}); err != nil {
			return w.stalled(err)
		}
		r.step(st("wait-boot")).Detail = "answers; booted at " + boot.Format(time.RFC3339)
		return nil
	})
	if err != nil {
		return err
	}
	// Only a report made after the boot counts: the last one before the reboot may look fresh
	// for service_down_time. nova-compute can take a while to start on a loaded host.
	err = r.Do(st("wait-compute"), StepOptions{Target: name, ReadOnly: true}, func(ctx workflow.Context) error {
		deadline := workflow.Now(ctx).Add(10 * time.Minute)
		for {
			var svcs []activities.ComputeService
			if err := r.Exec(ctx, st("wait-compute"), name, compute.ComputeServices, &svcs); err != nil {
				return w.stalled(err)
			}
			for _, s := range svcs {
				if s.Host == name && s.State == "up" && !s.UpdatedAt.Before(boot) {
					r.step(st("wait-compute")).Detail = "nova-compute reported at " + s.UpdatedAt.Format(time.RFC3339)
					return nil
				}
			}
			if workflow.Now(ctx).After(deadline) {
				return w.stalled(fmt.Errorf("nova-compute on %s has not reported since its boot at %s", name, boot.Format(time.RFC3339)))
			}
			if err := workflow.Sleep(ctx, 5*time.Second); err != nil {
				return err
			}
		}
	})
	if err != nil {
		return err
	}
	if err := verifyComputeBack(r, name, svc, boot); err != nil {
		return err
	}
	pr := PostRebootCheckInput{Meta: Meta{RequestedBy: r.meta.RequestedBy, Reason: "after the rolling reboot of " + name}, Host: name, Role: "compute", Since: boot}
	var rep Report
	return w.child(st("post-reboot-check"), PostRebootCheck, &pr, &rep, func(rep *Report) error {
		var crit []string
		for _, f := range rep.Findings {
			if f.Severity == activities.SeverityCritical {
				crit = append(crit, f.Subject+": "+f.Message)
			}
		}
		if len(crit) > 0 {
			return fmt.Errorf("critical findings on %s: %s", name, strings.Join(crit, "; "))
		}
		for _, f := range rep.Findings {
			if f.Severity == activities.SeverityWarning {
				r.AddFinding(f.Severity, f.Subject, "post-reboot check: %s", f.Message)
			}
		}
		return nil
	})
}

func novaComputeOf(f activities.HostFacts) activities.ServiceFacts {
	for _, s := range f.Services {
		if s.Name == "nova-compute" {
			return s
		}
	}
	return activities.ServiceFacts{Role: "compute", Name: "nova-compute", AMQP: true}
}

// migrateBack checks the room on the host again (Placement) and moves back the instances that
// were on it before its evacuation, from wherever they are now.
func (w *wave) migrateBack(h *rollingHost, before []activities.Instance) error {
	r, name := w.r, h.name()
	st := func(s string) string { return name + "/" + s }
	var moves []Move
	err := r.Do(st("capacity-back"), StepOptions{Target: name}, func(ctx workflow.Context) error {
		var now []activities.Instance
		var gone []string
		for _, b := range before {
			var cur activities.Instance
			err := r.Exec(ctx, st("capacity-back"), b.ID, compute.GetInstance, &cur, b.ID)
			var app *temporal.ApplicationError
			switch {
			case errors.As(err, &app) && app.Type() == activities.ErrTypeNotFound:
				gone = append(gone, b.ID)
				continue
			case err != nil:
				return w.stalled(err)
			case cur.Host == name:
				continue // never left, or already back
			}
			now = append(now, cur)
		}
		var caps []activities.HostCapacity
		if err := r.Exec(ctx, st("capacity-back"), name, compute.Capacity, &caps, []string{name}); err != nil {
			return w.stalled(err)
		}
		var err error
		moves, err = PlanMoves(name, now, caps, false)
		for i := range moves {
			moves[i].From, moves[i].To = now[i].Host, name
		}
		if err != nil {
			return w.stalled(fmt.Errorf("the instances of %s do not fit on it any more: %v; resolve skip to leave them where they are", name, err))
		}
		d := fmt.Sprintf("%d instance(s) to move back, room on %s checked", len(moves), name)
		if len(gone) > 0 {
			d += fmt.Sprintf("; %d deleted meanwhile: %s", len(gone), strings.Join(gone, ", "))
		}
		r.step(st("capacity-back")).Detail = d
		return nil
	})
	if err != nil || r.StepState(st("capacity-back")) == StepSkipped {
		return err
	}
	return r.Do(st("migrate-back"), StepOptions{Target: name}, func(ctx workflow.Context) error {
		if err := r.moveAll(st("migrate-back"), moves, w.p.parallel, ""); err != nil {
			return err
		}
		n := 0
		var failed []string
		for _, m := range moves {
			switch m.Outcome {
			case "moved":
				n++
			case "failed":
				failed = append(failed, m.label()+": "+m.Detail)
			}
		}
		if len(failed) > 0 {
			r.AddFinding(activities.SeverityWarning, name, "%d instance(s) not moved back to %s: %s", len(failed), name, strings.Join(failed, "; "))
		}
		r.step(st("migrate-back")).Detail = fmt.Sprintf("%d of %d moved back to %s", n, len(moves), name)
		return nil
	})
}
