package workflows

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

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
	// next is where the wave got to, for the next run when it continues as new between two
	// hosts (rollingmaintenance_wave.go): how many hosts, in the plan's order, are done.
	next int
}

// rollingState is rollingPlan as the next run of a chain gets it (continue.go), what the wave
// needs of it: each host's facts, and the targets of the hosts not yet done as indexes into
// Computes (64 names a host would be some 1.5 MB at 500 hosts); the instances and moves were
// the plan's (its text is carried). An upgrade's wave stays one run.
type rollingState struct {
	Batches  []rollingBatchState `json:"batches"`
	Computes []string            `json:"computes,omitempty"`
	Parallel int                 `json:"parallel"`
	Next     int                 `json:"next"`
}

type rollingBatchState struct {
	Domain string             `json:"domain"`
	Hosts  []rollingHostState `json:"hosts"`
}

type rollingHostState struct {
	Facts   activities.HostFacts `json:"facts"`
	Targets []int                `json:"targets,omitempty"`
}

func (p *rollingPlan) MarshalJSON() ([]byte, error) {
	if p.upgrade != nil {
		return nil, errors.New("an upgrade's wave is not carried to a next run")
	}
	s := rollingState{Parallel: p.parallel, Next: p.next}
	index := map[string]int{}
	k := 0
	for _, b := range p.batches {
		bs := rollingBatchState{Domain: b.domain}
		for _, h := range b.hosts {
			hs := rollingHostState{Facts: h.facts}
			for _, t := range h.targets {
				if k < p.next {
					break
				}
				i, ok := index[t]
				if !ok {
					i = len(s.Computes)
					index[t] = i
					s.Computes = append(s.Computes, t)
				}
				hs.Targets = append(hs.Targets, i)
			}
			bs.Hosts = append(bs.Hosts, hs)
			k++
		}
		s.Batches = append(s.Batches, bs)
	}
	return json.Marshal(s)
}

func (p *rollingPlan) UnmarshalJSON(data []byte) error {
	var s rollingState
	if err := json.Unmarshal(data, &s); err != nil {
		return err
	}
	*p = rollingPlan{parallel: s.Parallel, next: s.Next}
	for _, bs := range s.Batches {
		b := rollingBatch{domain: bs.Domain}
		for _, hs := range bs.Hosts {
			h := &rollingHost{facts: hs.Facts}
			for _, i := range hs.Targets {
				if i < 0 || i >= len(s.Computes) {
					return fmt.Errorf("host %s: target %d of %d", hs.Facts.Name, i, len(s.Computes))
				}
				h.targets = append(h.targets, s.Computes[i])
			}
			b.hosts = append(b.hosts, h)
		}
		p.batches = append(p.batches, b)
	}
	return nil
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
	// Its evacuate child takes at most maxTargets of them (rollingTargets).
	bounded := workflow.GetVersion(r.ctx, rollingBoundedTargets, workflow.DefaultVersion, 1) == 1
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
				if bounded {
					h.targets = rollingTargets(h.moves, hc)
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

// rollingBoundedTargets is the workflow.GetVersion change after which a host's evacuate child
// gets at most maxTargets targets (rollingTargets) instead of every compute outside its batch,
// which evacuate refuses past maxTargets (a wave on a cloud of more than some 64 computes
// stalled at its first host). Runs begun before it keep their targets.
const rollingBoundedTargets = "rolling-bounded-targets"

// rollingTargets is a host's evacuate targets, at most maxTargets of the candidates (the
// computes outside its batch): first the destinations PlanMoves chose for its instances (where
// the capacity check placed them), in the order of its moves, then the other candidates by most
// free capacity (RAM, vCPUs, disk, as PlanMoves weighs them; ties by host name). Should its
// moves use more than maxTargets destinations, the first maxTargets of them: the evacuate child
// checks the capacity of its targets again in its own plan.
func rollingTargets(moves []Move, cands []activities.HostCapacity) []string {
	var out []string
	for _, m := range moves {
		if m.To != "" && !slices.Contains(out, m.To) && len(out) < maxTargets {
			out = append(out, m.To)
		}
	}
	rest := slices.Clone(cands)
	slices.SortFunc(rest, func(a, b activities.HostCapacity) int {
		return cmp.Or(cmp.Compare(b.FreeRAMMB, a.FreeRAMMB), cmp.Compare(b.FreeVCPUs, a.FreeVCPUs), cmp.Compare(b.FreeDiskGB, a.FreeDiskGB),
			cmp.Compare(a.Host, b.Host))
	})
	for _, c := range rest {
		if len(out) == maxTargets {
			break
		}
		if !slices.Contains(out, c.Host) {
			out = append(out, c.Host)
		}
	}
	return out
}

// planTargetsShown is how many of a host's targets its plan line names; it counts the others.
const planTargetsShown = 8

func targetsText(ts []string) string {
	if len(ts) <= planTargetsShown {
		return strings.Join(ts, ", ")
	}
	return fmt.Sprintf("%s and %d more (%d in all)", strings.Join(ts[:planTargetsShown], ", "), len(ts)-planTargetsShown, len(ts))
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
				h.name(), len(h.instances), n, h.name(), GateApprovePlan, targetsText(h.targets), p.actionText(in, h)))
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
