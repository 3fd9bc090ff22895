package workflows

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"go.temporal.io/sdk/workflow"

	"github.com/stackrun/stackrun/activities"
)

// Batches of compute hosts: a staged upgrade hands its compute-only hosts (nova-compute) to child
// runs of its own runbook, up to --batch-size hosts each, so that no run's history grows with
// the cloud (about 65 events per compute host; Temporal warns at 10,240 per run). Each batch is a
// child run per phase: the pin set before the control plane is upgraded, the upgrade after the
// canary (the same steps per host as the parent's hosts, --parallel at a time), and the pin
// removed with the restarts, one host at a time. A batch's stalls and gates are its own (its ID
// is in the parent's step); a batch that ends other than Completed stalls the parent's step, and
// the parent's abort opens rollback:<service> over every host any batch touched (the batch hands
// back what it backed up and installed). The database dump and the schema commands stay in the
// parent (its canary and schema host): a batch never dumps or syncs.

const stagedUpgradeName = "staged-upgrade"

// upgradeBatchesChange: runs from before upgraded every host in the one run.
const upgradeBatchesChange = "upgrade-compute-batches"

// batchPinParallelChange: runs from before pinned and unpinned a batch's hosts one at a time.
const batchPinParallelChange = "upgrade-batch-pin-parallel"

// compactReportChange: runs from before listed every batched compute host in the plan (some 300
// bytes each) and a "planned" package row beside each host's transaction: at 2,000 computes the
// report (the run's result) passed Temporal's 2 MB payload limit and the server terminated the
// run at its end ("CompleteWorkflowExecutionCommandAttributes.Result exceeds size limit").
const compactReportChange = "upgrade-compact-report"

// batchRecordChange: in runs from before, each batch's result was its whole report (its plan
// with every host, six steps per host, its audit and details: some 4 KB per compute host over
// the three phases), and the parent's history holds every child's result: at 2,000 computes
// the parent's history was 9.5 MB for 963 events. Since, a batch returns its batch record
// (batchResult: some 600 bytes per host) and answers the query report with its whole report.
const batchRecordChange = "upgrade-batch-record"

// DefaultUpgradeBatch and MaxUpgradeBatch bound --batch-size: at about 40 events per host in
// the upgrade phase (more when verifications retry), a batch stays far under 10,240.
const (
	DefaultUpgradeBatch = 100
	MaxUpgradeBatch     = 150
)

// The phases of a batch.
const (
	batchPin     = "pin"
	batchUpgrade = "upgrade"
	batchUnpin   = "unpin"
)

// UpgradeBatch makes a staged-upgrade run one batch of compute hosts of its parent run. The
// parent sets it; a run that claims a parent it does not have is refused (trust.go).
type UpgradeBatch struct {
	// Parent is the staged-upgrade run whose approvals cover this batch.
	Parent string `json:"parent"`
	Index  int    `json:"index"`
	Phase  string `json:"phase"`
	// Service is the service with this batch's hosts only; Installed is each host's installed
	// version per package (the upgrade phase's report), in the order of Service.Hosts.
	Service       activities.UpgradeServiceFacts `json:"service"`
	Installed     []map[string]string            `json:"installed,omitempty"`
	Targets       map[string]string              `json:"targets,omitempty"`
	SchemaHost    string                         `json:"schema_host"`
	DatabaseHost  string                         `json:"database_host"`
	Tag           string                         `json:"tag"`
	Parallel      int                            `json:"parallel"`
	ConfigChanges bool                           `json:"config_changes,omitempty"`
	// Record: the batch's result is its batch record (batchResult), its whole report the answer
	// to the query report (batchRecordChange; batches of runs from before return their report).
	Record bool `json:"record,omitempty"`
}

var backupTagRE = regexp.MustCompile(`^su-[a-z0-9]{1,12}$`)

func (b *UpgradeBatch) validate() error {
	fe := func(field, value, problem string) error {
		return &FieldError{Field: "batch." + field, Value: value, Problem: problem}
	}
	switch {
	case b.Parent == "" || len(b.Parent) > 200:
		return fe("parent", b.Parent, "the parent staged-upgrade run's ID")
	case !slices.Contains([]string{batchPin, batchUpgrade, batchUnpin}, b.Phase):
		return fe("phase", b.Phase, "one of pin, upgrade, unpin")
	case !upgradeServiceRE.MatchString(b.Service.Name):
		return fe("service", b.Service.Name, "not a service name")
	case len(b.Service.Hosts) == 0 || len(b.Service.Hosts) > MaxUpgradeBatch:
		return fe("service.hosts", fmt.Sprint(len(b.Service.Hosts)), fmt.Sprintf("1 to %d hosts", MaxUpgradeBatch))
	case b.Installed != nil && len(b.Installed) != len(b.Service.Hosts):
		return fe("installed", fmt.Sprint(len(b.Installed)), "one entry per host")
	case !backupTagRE.MatchString(b.Tag):
		return fe("tag", b.Tag, "the parent's backup tag (su-<run>)")
	case b.Parallel < 1 || b.Parallel > MaxParallel:
		return fe("parallel", fmt.Sprint(b.Parallel), fmt.Sprintf("1 to %d", MaxParallel))
	}
	for i, h := range b.Service.Hosts {
		if err := ValidateHostName(fmt.Sprintf("batch.service.hosts[%d]", i), h.Host); err != nil {
			return err
		}
	}
	for _, h := range []struct{ field, v string }{{"schema_host", b.SchemaHost}, {"database_host", b.DatabaseHost}} {
		if h.v != "" {
			if err := ValidateHostName("batch."+h.field, h.v); err != nil {
				return err
			}
		}
	}
	for pkg, v := range b.Targets {
		if !packageRE.MatchString(pkg) || !debVersionRE.MatchString(v) {
			return fe("targets", pkg+"="+v, "want package=version")
		}
	}
	return nil
}

// splitHosts: the hosts a run upgrades itself (the canary, the control-plane hosts) and its
// compute-only hosts in batches of size (size 0: every host its own, as runs from before did).
func splitHosts(s *upgradeServicePlan, size int) (own []*upgradeHostPlan, batches [][]*upgradeHostPlan) {
	if size <= 0 {
		return s.hosts, nil
	}
	var computes []*upgradeHostPlan
	for i, h := range s.hosts {
		if i > 0 && h.computeOnly() {
			computes = append(computes, h)
		} else {
			own = append(own, h)
		}
	}
	return own, slices.Collect(slices.Chunk(computes, size))
}

// batchStep names a batch's step in the parent (and its child run: <parent ID>/<step>).
func batchStep(s *upgradeServicePlan, i int, phase string) string {
	return fmt.Sprintf("%s/computes-%d/%s", s.name, i, phase)
}

// runBatches runs one phase over every batch, one batch after the other.
func (u *upgradeRun) runBatches(s *upgradeServicePlan, phase string, batches [][]*upgradeHostPlan) error {
	for i, b := range batches {
		if err := u.runBatch(s, i+1, phase, b); err != nil {
			return err
		}
	}
	return nil
}

// runBatch runs one batch's phase as a child run in the step <service>/computes-<i>/<phase>.
func (u *upgradeRun) runBatch(s *upgradeServicePlan, i int, phase string, on []*upgradeHostPlan) error {
	r := u.r
	step := batchStep(s, i, phase)
	r.AddSteps(step)
	in := &StagedUpgradeInput{Meta: Meta{RequestedBy: r.meta.RequestedBy, Reason: fmt.Sprintf("batch %d (%s) of %s", i, phase, r.info.WorkflowExecution.ID)},
		Batch: u.batchInput(s, i, phase, on)}
	target := fmt.Sprintf("%d host(s): %s", len(on), hostRange(on))
	attempt := 0
	return r.Do(step, StepOptions{Target: target, NoSkip: true}, func(ctx workflow.Context) error {
		attempt++
		id := r.childRunID(step, attempt)
		r.step(step).Detail = fmt.Sprintf("child run %s on %s: its stalls and gates are decided there (stackrun show %s)", id, target, id)
		u.batchRuns = append(u.batchRuns, id)
		var rep Report
		rb, _ := FindRunbook(stagedUpgradeName) // not StagedUpgrade itself: its Act leads here
		err := workflow.ExecuteChildWorkflow(r.childRunContext(ctx, id, rb, in), rb.Type, in).Get(ctx, &rep)
		u.merge(s, phase, on, id, &rep)
		if err != nil {
			return fmt.Errorf("batch %s: %w; resolve retry to start it again", id, err)
		}
		if rep.Status != StatusCompleted {
			left := ""
			if rep.LeftState != "" {
				left = "; it left: " + rep.LeftState
			}
			return fmt.Errorf("batch %s ended %s: %s%s; resolve retry to start it again (its hosts at the target already change nothing), or abort (gate %s:%s)",
				id, rep.Status, rep.Summary, left, GateRollback, s.name)
		}
		r.step(step).Detail = fmt.Sprintf("%s (run %s)", rep.Summary, id)
		return nil
	})
}

func hostRange(on []*upgradeHostPlan) string {
	if len(on) <= 3 {
		names := make([]string, len(on))
		for i, h := range on {
			names[i] = h.host
		}
		return strings.Join(names, ", ")
	}
	return on[0].host + " … " + on[len(on)-1].host
}

// batchInput is what the child needs: the service with the batch's hosts, the targets, and the
// parent's tag (so a retried batch finds the archives it made), database and schema hosts.
func (u *upgradeRun) batchInput(s *upgradeServicePlan, i int, phase string, on []*upgradeHostPlan) *UpgradeBatch {
	svc := s.svc
	svc.Hosts = nil
	b := &UpgradeBatch{Parent: u.r.info.WorkflowExecution.ID, Index: i, Phase: phase, Targets: s.targets, SchemaHost: s.schemaHost,
		DatabaseHost: u.dbHost, Tag: u.tag, Parallel: u.parallel, ConfigChanges: s.configChanges, Record: u.record}
	for _, h := range on {
		svc.Hosts = append(svc.Hosts, activities.UpgradeHost{Host: h.host, Processes: h.procs})
		if phase == batchUpgrade {
			inst := map[string]string{}
			for _, f := range h.facts {
				inst[f.Package] = f.Installed
			}
			b.Installed = append(b.Installed, inst)
		}
	}
	b.Service = svc
	return b
}

// upgradeBatchDetail is the child's report detail that hands back what it did.
const upgradeBatchDetail = "upgrade_batch"

// upgradeBatchRecord is what a batch did that its parent must know: for its report and for the
// rollback.
type upgradeBatchRecord struct {
	Touched      []string                        `json:"touched,omitempty"`
	Pinned       []string                        `json:"pinned,omitempty"`
	Transactions []activities.PackageTransaction `json:"transactions,omitempty"`
	Configs      []activities.ConfigBackup       `json:"configs,omitempty"`
}

// batchTransaction is a package transaction as the batch record hands it to the parent: without
// the apt command line and the time, which the parent's report does not show (the batch's own
// report has them). JSON-compatible with activities.PackageTransaction.
type batchTransaction struct {
	Host    string                     `json:"host"`
	Service string                     `json:"service"`
	Changes []activities.PackageChange `json:"changes,omitempty"`
	Skipped bool                       `json:"skipped,omitempty"`
	Note    string                     `json:"note,omitempty"`
}

// batchResult is a batch's result for its parent (UpgradeBatch.Record): the run's identity,
// status, summary and left state (how its step in the parent ends, and the parent's stall
// message), and its batch record: per host touched and pinned, the package versions moved (the
// parent's packages detail and its rollback's targets) and the configuration archive (the
// parent's backups detail and its rollback's restore). Its steps, plan, audit, findings and
// other details stay in its whole report, the answer to the query report.
func batchResult(rep *Report) *Report {
	out := &Report{WorkflowID: rep.WorkflowID, RunID: rep.RunID, Runbook: rep.Runbook, Target: rep.Target, RequestedBy: rep.RequestedBy,
		Status: rep.Status, Started: rep.Started, Ended: rep.Ended, Summary: rep.Summary, LeftState: rep.LeftState}
	rec, ok := rep.Details[upgradeBatchDetail].(upgradeBatchRecord)
	if !ok {
		return out
	}
	txs := make([]batchTransaction, len(rec.Transactions))
	for i, tx := range rec.Transactions {
		txs[i] = batchTransaction{Host: tx.Host, Service: tx.Service, Changes: tx.Changes, Skipped: tx.Skipped, Note: tx.Note}
	}
	out.Details = map[string]any{upgradeBatchDetail: struct {
		Touched      []string                  `json:"touched,omitempty"`
		Pinned       []string                  `json:"pinned,omitempty"`
		Transactions []batchTransaction        `json:"transactions,omitempty"`
		Configs      []activities.ConfigBackup `json:"configs,omitempty"`
	}{rec.Touched, rec.Pinned, txs, rec.Configs}}
	return out
}

// merge takes in what a batch did, whatever way it ended.
func (u *upgradeRun) merge(s *upgradeServicePlan, phase string, on []*upgradeHostPlan, id string, rep *Report) {
	var rec upgradeBatchRecord
	if v, ok := rep.Details[upgradeBatchDetail]; ok {
		if b, err := json.Marshal(v); err == nil {
			_ = json.Unmarshal(b, &rec)
		}
	}
	for _, h := range rec.Touched {
		u.touch(s.name, h)
	}
	u.transactions = append(u.transactions, rec.Transactions...)
	u.configs = append(u.configs, rec.Configs...)
	for _, h := range rec.Pinned {
		if !slices.Contains(u.pinned, h) {
			u.pinned = append(u.pinned, h)
		}
	}
	if phase == batchUnpin && rep.Status == StatusCompleted {
		u.pinned = slices.DeleteFunc(u.pinned, func(p string) bool {
			return slices.ContainsFunc(on, func(h *upgradeHostPlan) bool { return h.host == p })
		})
	}
	if rep.LeftState != "" {
		u.r.SetLeftState(rep.LeftState + " (batch run " + id + ")")
	}
}

// planUpgradeBatch is a batch's plan: what its parent planned for these hosts. Approved by the
// parent, when the parent is its real parent.
func planUpgradeBatch(r *Run, in *StagedUpgradeInput, p *stagedUpgradePlan) (Approval, error) {
	b := in.Batch
	if b.Record {
		r.ReturnRecord(batchResult)
	}
	if !r.parentApproved(b.Parent) {
		return Approval{}, Summarize("refused", &FieldError{Field: "batch.parent", Value: b.Parent,
			Problem: "a batch of hosts is started by its staged-upgrade run only, and that run is not this run's parent"})
	}
	s := &upgradeServicePlan{name: b.Service.Name, svc: b.Service, targets: b.Targets, schemaHost: b.SchemaHost, configChanges: b.ConfigChanges}
	for i, h := range b.Service.Hosts {
		hp := &upgradeHostPlan{host: h.Host, procs: h.Processes}
		if i < len(b.Installed) {
			for _, pkg := range b.Service.Packages {
				if v, ok := b.Installed[i][pkg]; ok {
					hp.facts = append(hp.facts, activities.PackageFact{Package: pkg, Installed: v})
				}
			}
		}
		s.hosts = append(s.hosts, hp)
	}
	*p = stagedUpgradePlan{services: []*upgradeServicePlan{s}, dbHost: b.DatabaseHost, batch: b}
	what := map[string]string{
		batchPin:     "set [upgrade_levels] compute = auto",
		batchUpgrade: fmt.Sprintf("upgrade (%s; %d at a time)", s.targetText(), b.Parallel),
		batchUnpin:   "remove [upgrade_levels] compute, restart and verify, one host at a time",
	}[b.Phase]
	lines := []string{fmt.Sprintf("batch %d of %s, %s: %s on %d host(s): %s", b.Index, b.Parent, b.Service.Name, what, len(s.hosts), hostRange(s.hosts))}
	if b.Phase == batchUpgrade {
		for _, h := range s.hosts {
			lines = append(lines, fmt.Sprintf("  %s/%s: %s", s.name, h.host, cmpOr(strings.Join(s.changes(h), ", "), "at the target already")))
		}
	}
	r.SetPlan(lines)
	return Approval{Gate: GateReleaseNotesRead, Skipped: "approved with run " + b.Parent}, nil
}

// upgradeBatchAct carries out a batch's phase. A failure stalls here (resolve on this run's ID);
// the batch never rolls back: its parent decides, over everything it touched.
func upgradeBatchAct(r *Run, in *StagedUpgradeInput, p *stagedUpgradePlan) (string, error) {
	b, s := p.batch, p.services[0]
	u := &upgradeRun{r: r, tag: b.Tag, dbHost: p.dbHost, parallel: b.Parallel, plans: p.services, batch: true}
	r.OnExit(u.report)
	// Runs from before set and removed the pin and restarted one compute host at a time: a
	// batch's unpin was some 600 activities back to back (the history test: about 15 minutes
	// per 500 computes with activities answering at once). Computes run nova-compute only and
	// neither order among themselves: --parallel at a time, as their upgrade.
	parallel := 1
	if b.Phase != batchUpgrade && workflow.GetVersion(r.ctx, batchPinParallelChange, workflow.DefaultVersion, 1) == 1 {
		parallel = u.parallel
	}
	var err error
	switch b.Phase {
	case batchPin:
		err = r.Do(s.name+"/pin", StepOptions{NoSkip: true}, func(ctx workflow.Context) error {
			if parallel > 1 {
				return r.Each(ctx, len(s.hosts), parallel, func(ctx workflow.Context, i int) error {
					return u.pin(ctx, s, s.hosts[i:i+1], "auto")
				})
			}
			return u.pin(ctx, s, s.hosts, "auto")
		})
	case batchUpgrade:
		err = r.Each(r.ctx, len(s.hosts), u.parallel, func(ctx workflow.Context, i int) error {
			return u.upgradeHost(ctx, s, s.hosts[i], false)
		})
	case batchUnpin:
		r.AddSteps(s.name + "/unpin")
		err = r.Do(s.name+"/unpin", StepOptions{NoSkip: true}, func(ctx workflow.Context) error {
			if parallel > 1 {
				return u.unpinParallel(ctx, s, s.hosts, parallel)
			}
			return u.unpin(ctx, s, s.hosts)
		})
	}
	summary := fmt.Sprintf("batch %d, %s: %s on %d host(s) (%s)", b.Index, s.name, b.Phase, len(s.hosts), hostRange(s.hosts))
	if err != nil {
		summary += " did not finish"
	}
	return summary, err
}

// batchRecord is the report's record of what this batch did (OnExit, with the report).
func (u *upgradeRun) batchRecord() {
	rec := upgradeBatchRecord{Pinned: u.pinned, Transactions: u.transactions, Configs: u.configs}
	for _, s := range u.plans {
		rec.Touched = append(rec.Touched, u.touched[s.name]...)
	}
	u.r.SetDetail(upgradeBatchDetail, rec)
}
