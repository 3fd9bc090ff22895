package workflows

import (
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/stackrun/stackrun/activities"
)

// StagedUpgrade upgrades OpenStack one service at a time (RUNBOOKS.md §6): the plan lists every
// service, host, package (from → to) and step; gates release-notes-read and tested-on-staging come
// first; per service the canary host goes first, then gate canary-ok:<service>, then the other
// hosts, --parallel at a time. On each host: stop, back up (configuration archive; the database
// once per service), upgrade the packages in one apt transaction, gate config-updated when the
// plan says the configuration changes, the schema commands (Nova: api_db sync, db sync, then
// nova-status upgrade check), start, verify (processes, AMQP, API, smoke test). Nova rolls with
// [upgrade_levels] compute = auto and ends with online data migrations and the pin removed. A
// failed step stalls; abort there opens the two-person gate rollback:<service>, which restores
// configuration and database and downgrades the packages to the recorded versions
// (upgrade_family.go).
var StagedUpgrade = Define(Def[StagedUpgradeInput, stagedUpgradePlan]{
	Name:  "staged-upgrade", // stagedUpgradeName
	Short: "Upgrade OpenStack service by service (canary first, backups, schema sync, rollback behind a gate)",
	StepsFor: func(in *StagedUpgradeInput) []string {
		if in.Batch != nil {
			return nil // a batch's steps are its hosts' (upgrade_batch.go)
		}
		return []string{"describe-upgrade", "package-facts", GateReleaseNotesRead, GateTestedOnStaging}
	},
	// One staged upgrade at a time, cloud-wide (its batches are named after it).
	Key: func(in *StagedUpgradeInput) string { return "cloud" },
	Target: func(in *StagedUpgradeInput) string {
		if b := in.Batch; b != nil {
			return fmt.Sprintf("%s batch %d (%s, %d hosts)", b.Service.Name, b.Index, b.Phase, len(b.Service.Hosts))
		}
		return cmpOr(strings.Join(in.Services, ","), "all services")
	},
	Plan: func(r *Run, in *StagedUpgradeInput, p *stagedUpgradePlan) (Approval, error) {
		if in.Batch != nil {
			return planUpgradeBatch(r, in, p)
		}
		return planStagedUpgrade(r, in, p)
	},
	Act: func(r *Run, in *StagedUpgradeInput, p *stagedUpgradePlan) (string, error) {
		if in.Batch != nil {
			return upgradeBatchAct(r, in, p)
		}
		return stagedUpgrade(r, in, p)
	},
})

// Gates of the staged upgrade. Gates opened once per service or host are named
// <gate>:<service>[/<host>]; the policy (two_person_gates, gate_approvers) names the gate alone.
const (
	GateReleaseNotesRead = "release-notes-read"
	GateTestedOnStaging  = "tested-on-staging"
	GateCanaryOK         = "canary-ok"
	GateConfigUpdated    = "config-updated"
	GateRollback         = "rollback"
	GateNovaCheckWarning = "nova-status-warning"
)

// StagedUpgradeInput is the input of StagedUpgrade.
type StagedUpgradeInput struct {
	Meta
	Services      []string `json:"services,omitempty" flag:"services" usage:"services in upgrade order, comma-separated (default: the worker's upgrade.order)"`
	ToVersion     []string `json:"to_version,omitempty" flag:"to-version" usage:"target builds as package=version, comma-separated (or --to-candidate)"`
	ToCandidate   bool     `json:"to_candidate,omitempty" flag:"to-candidate" usage:"upgrade every package of the services to apt's candidate"`
	Canary        string   `json:"canary,omitempty" flag:"canary" usage:"host upgraded first for each service it runs (default: each service's first control-plane host)"`
	Parallel      int      `json:"parallel,omitempty" flag:"parallel" usage:"hosts upgraded at once after the canary, and a batch's compute hosts pinned, unpinned and restarted at once (default: policy.default_parallelism)"`
	ConfigChanges []string `json:"config_changes,omitempty" flag:"config-changes" usage:"services whose configuration changes with this upgrade: gate config-updated on each host"`
	BatchSize     int      `json:"batch_size,omitempty" flag:"batch-size" usage:"compute hosts per child run (default 100, at most 150): each batch's pin, upgrade and unpin run as child runs of this one"`
	// Batch makes this run one batch of compute hosts of its parent staged-upgrade run (set by
	// that run only: upgrade_batch.go). Not a CLI flag.
	Batch *UpgradeBatch `json:"batch,omitempty" flag:"-"`
}

var (
	upgradeServiceRE = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,31}$`)
	packageRE        = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]{1,99}$`)
	debVersionRE     = regexp.MustCompile(`^([0-9]{1,9}:)?[0-9][A-Za-z0-9.+~-]{0,99}$`)
)

func (in *StagedUpgradeInput) Validate() error {
	if err := validateMeta(&in.Meta); err != nil {
		return err
	}
	if in.Batch != nil {
		// A batch carries what its parent resolved: no services, targets or canary of its own.
		if len(in.Services) > 0 || len(in.ToVersion) > 0 || in.ToCandidate || in.Canary != "" || len(in.ConfigChanges) > 0 || in.Parallel != 0 || in.BatchSize != 0 {
			return &FieldError{Field: "batch", Problem: "a batch of hosts takes no other input than its batch"}
		}
		return in.Batch.validate()
	}
	for i, s := range in.Services {
		if !upgradeServiceRE.MatchString(s) {
			return &FieldError{Field: fmt.Sprintf("services[%d]", i), Value: s, Problem: "not a service name (lower-case letters, digits, '_-')"}
		}
		if slices.Index(in.Services, s) != i {
			return &FieldError{Field: fmt.Sprintf("services[%d]", i), Value: s, Problem: "listed twice"}
		}
	}
	for i, s := range in.ConfigChanges {
		if !upgradeServiceRE.MatchString(s) {
			return &FieldError{Field: fmt.Sprintf("config_changes[%d]", i), Value: s, Problem: "not a service name"}
		}
	}
	if in.ToCandidate == (len(in.ToVersion) > 0) {
		return &FieldError{Field: "to_version", Problem: "give exactly one of --to-version package=version,... and --to-candidate"}
	}
	seen := map[string]bool{}
	for i, tv := range in.ToVersion {
		pkg, ver, ok := strings.Cut(tv, "=")
		field := fmt.Sprintf("to_version[%d]", i)
		if !ok || !packageRE.MatchString(pkg) {
			return &FieldError{Field: field, Value: tv, Problem: "want package=version, e.g. python3-nova=2:26.2.2-1~deb12u5"}
		}
		if !debVersionRE.MatchString(ver) {
			return &FieldError{Field: field, Value: tv, Problem: "not a Debian version ([epoch:]upstream[-revision])"}
		}
		if seen[pkg] {
			return &FieldError{Field: field, Value: tv, Problem: "package listed twice"}
		}
		seen[pkg] = true
	}
	if in.Canary != "" {
		if err := ValidateHostName("canary", in.Canary); err != nil {
			return err
		}
	}
	if in.Parallel < 0 || in.Parallel > MaxParallel {
		return &FieldError{Field: "parallel", Value: fmt.Sprint(in.Parallel), Problem: fmt.Sprintf("must be 0 (policy default) to %d", MaxParallel)}
	}
	if in.BatchSize < 0 || in.BatchSize > MaxUpgradeBatch {
		return &FieldError{Field: "batch_size", Value: fmt.Sprint(in.BatchSize), Problem: fmt.Sprintf("must be 0 (default %d) to %d", DefaultUpgradeBatch, MaxUpgradeBatch)}
	}
	return nil
}

// stagedUpgradePlan is what the run carries out, service by service.
type stagedUpgradePlan struct {
	services []*upgradeServicePlan
	dbHost   string
	// batchSize: compute hosts per child run (0: runs from before, every host in this run);
	// batch: this run is one batch of its parent's.
	batchSize int
	batch     *UpgradeBatch
	// compact (compactReportChange): the hosts batches upgrade are grouped in the plan, and the
	// report keeps one row per compute host's transaction and archive (upgrade_rollback.go).
	compact bool
	// record (batchRecordChange): each batch returns its batch record, not its whole report.
	record bool
}

func planStagedUpgrade(r *Run, in *StagedUpgradeInput, p *stagedUpgradePlan) (Approval, error) {
	var facts activities.UpgradeFacts
	err := r.Do("describe-upgrade", StepOptions{NoSkip: true}, func(ctx workflow.Context) error {
		return r.Exec(ctx, "describe-upgrade", "", upgradeAct.DescribeUpgrade, &facts)
	})
	if err != nil {
		return Approval{}, err
	}
	*p = stagedUpgradePlan{dbHost: facts.DatabaseHost}
	if workflow.GetVersion(r.ctx, upgradeBatchesChange, workflow.DefaultVersion, 1) == 1 {
		p.batchSize = cmp.Or(in.BatchSize, DefaultUpgradeBatch)
		p.compact = workflow.GetVersion(r.ctx, compactReportChange, workflow.DefaultVersion, 1) == 1
		p.record = workflow.GetVersion(r.ctx, batchRecordChange, workflow.DefaultVersion, 1) == 1
	}
	names := in.Services
	field := "services"
	if len(names) == 0 {
		names, field = facts.Order, "upgrade.order"
	}
	known := make([]string, 0, len(facts.Services))
	for n := range facts.Services {
		known = append(known, n)
	}
	slices.Sort(known)
	for i, name := range names {
		sf, ok := facts.Services[name]
		if !ok {
			return Approval{}, Summarize("invalid input", &FieldError{Field: fmt.Sprintf("%s[%d]", field, i), Value: name, Problem: "unknown service (known: " + strings.Join(known, ", ") + ")"})
		}
		if len(sf.Hosts) == 0 {
			return Approval{}, Summarize("invalid input", &FieldError{Field: fmt.Sprintf("%s[%d]", field, i), Value: name, Problem: "no host of the inventory runs it (processes " + strings.Join(sf.Processes, ", ") + ")"})
		}
		p.services = append(p.services, newServicePlan(sf, in.Canary, slices.Contains(in.ConfigChanges, name)))
	}
	for i, s := range in.ConfigChanges {
		if !slices.Contains(names, s) {
			return Approval{}, Summarize("invalid input", &FieldError{Field: fmt.Sprintf("config_changes[%d]", i), Value: s, Problem: "not one of the services upgraded"})
		}
	}
	if in.Canary != "" && !slices.ContainsFunc(p.services, func(s *upgradeServicePlan) bool { return s.hosts[0].host == in.Canary }) {
		return Approval{}, Summarize("invalid input", &FieldError{Field: "canary", Value: in.Canary, Problem: "runs none of the services upgraded (or only nova-compute while nova's conductors must go first)"})
	}

	// Package facts of every host of every service (read-only); of the hosts batched, one
	// activity per batch.
	err = r.Do("package-facts", StepOptions{NoSkip: true}, func(ctx workflow.Context) error {
		var calls []func() error
		for _, s := range p.services {
			own, batches := splitHosts(s, p.batchSize)
			for _, h := range own {
				c := r.Start(ctx, "package-facts", h.host, upgradeAct.PackageFacts, activities.PackageFactsRequest{Host: h.host, Service: s.name})
				calls = append(calls, func() error { return c.Get(ctx, &h.facts) })
			}
			for _, b := range batches {
				req := activities.PackageFactsManyRequest{Service: s.name}
				for _, h := range b {
					req.Hosts = append(req.Hosts, h.host)
				}
				actx := r.WithActivity(ctx, ActOpts{Timeout: 10 * time.Minute, Heartbeat: time.Minute})
				c := r.Start(actx, "package-facts", hostRange(b), upgradeAct.PackageFactsMany, req)
				calls = append(calls, func() error {
					var facts [][]activities.PackageFact
					if err := c.Get(ctx, &facts); err != nil {
						return err
					}
					if len(facts) != len(b) {
						return fmt.Errorf("package facts of %s: %d answers for %d hosts", hostRange(b), len(facts), len(b))
					}
					for i, h := range b {
						h.facts = facts[i]
					}
					return nil
				})
			}
		}
		for _, get := range calls {
			if err := get(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return Approval{}, err
	}
	if err := resolveTargets(in, p.services); err != nil {
		return Approval{}, Summarize("invalid input", err)
	}

	lines := []string{
		fmt.Sprintf("services in this order: %s; gates %s and %s first (two-person), then %s:<service> after each canary",
			strings.Join(serviceNames(p.services), ", "), GateReleaseNotesRead, GateTestedOnStaging, GateCanaryOK),
	}
	// Say which of the usual services this run leaves out because the cloud, as configured, has
	// none (the lab runs no Cinder), rather than pass over them in silence.
	if len(in.Services) == 0 {
		for _, s := range activities.DefaultUpgradeOrder {
			if !slices.Contains(names, s) {
				lines = append(lines, fmt.Sprintf("%s: not upgraded, not present: it is not in upgrade.order (this cloud's configuration names no %s)", s, s))
				r.AddFinding(activities.SeverityInfo, s, "%s was not present (not in upgrade.order): not upgraded", s)
			}
		}
	}
	var facts2 []Fact
	for _, s := range p.services {
		lines = append(lines, s.planLines(r.parallelism(in.Parallel), p.dbHost, map[bool]int{true: p.batchSize}[p.compact])...)
		if _, batches := splitHosts(s, p.batchSize); len(batches) > 0 {
			lines = append(lines, fmt.Sprintf("%s: the compute hosts in %d batch(es) of up to %d, each phase a child run <this run>/%s/computes-<n>/{pin,upgrade,unpin} (pin before the control plane, upgrade after it, unpin at the end; a batch's stalls and gates are decided on its own run, named in the step)",
				s.name, len(batches), p.batchSize, s.name))
		}
		for _, h := range s.hosts {
			for _, f := range h.facts {
				facts2 = append(facts2, Fact{Name: h.host + "/" + f.Package, Value: f.Installed})
			}
		}
	}
	lines = append(lines, "rollback: a failed step stalls; abort there opens the two-person gate rollback:<service>, which restores the configuration archives and the database dump and downgrades the packages to the versions recorded before")
	r.SetPlan(lines)
	r.SetFacts(facts2...)
	r.SetDetail("upgrade_plan", planDetail(p))
	return Approval{Gate: GateReleaseNotesRead, Summary: fmt.Sprintf("Staged upgrade of %s. Have the release notes of every target build been read? Reason: %s",
		strings.Join(serviceNames(p.services), ", "), in.Reason)}, nil
}

// resolveTargets fills each service's target versions: --to-version for the packages named, apt's
// candidate with --to-candidate. A version apt does not offer on a host, or a target older than
// what a host runs, is refused here, before anything changes.
func resolveTargets(in *StagedUpgradeInput, services []*upgradeServicePlan) error {
	want := map[string]string{}
	for _, tv := range in.ToVersion {
		pkg, ver, _ := strings.Cut(tv, "=")
		want[pkg] = ver
	}
	used := map[string]bool{}
	for _, s := range services {
		s.targets = map[string]string{}
		for _, pkg := range s.svc.Packages {
			for _, h := range s.hosts {
				f, ok := h.fact(pkg)
				if !ok {
					continue
				}
				target := f.Installed
				switch {
				case in.ToCandidate:
					target = f.Candidate
					if target == "" {
						return &FieldError{Field: "to_candidate", Problem: fmt.Sprintf("apt has no candidate for %s on %s", pkg, h.host)}
					}
				case want[pkg] != "":
					target = want[pkg]
					used[pkg] = true
				}
				if f.Installed == "" {
					return &FieldError{Field: "services", Value: s.name, Problem: fmt.Sprintf("%s is not installed on %s", pkg, h.host)}
				}
				if !f.Has(target) && target != f.Installed {
					return &FieldError{Field: "to_version", Value: pkg + "=" + target,
						Problem: fmt.Sprintf("version does not exist on %s (apt offers: %s)", h.host, strings.Join(f.Available, ", "))}
				}
				// apt's version table is newest first: a target after the installed one is older.
				if ti, ii := slices.Index(f.Available, target), slices.Index(f.Available, f.Installed); ti >= 0 && ii >= 0 && ti > ii {
					return &FieldError{Field: "to_version", Value: pkg + "=" + target,
						Problem: fmt.Sprintf("older than %s on %s: a staged upgrade does not downgrade (only its rollback does)", f.Installed, h.host)}
				}
				if prev, ok := s.targets[pkg]; ok && prev != target {
					return &FieldError{Field: "to_version", Value: pkg, Problem: fmt.Sprintf("hosts of %s have different candidates (%s, %s): name the version", s.name, prev, target)}
				}
				s.targets[pkg] = target
			}
		}
	}
	for i, tv := range in.ToVersion {
		pkg, _, _ := strings.Cut(tv, "=")
		if !used[pkg] {
			return &FieldError{Field: fmt.Sprintf("to_version[%d]", i), Value: tv, Problem: "not a package of the services upgraded"}
		}
	}
	return nil
}

func serviceNames(ss []*upgradeServicePlan) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = s.name
	}
	return out
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func stagedUpgrade(r *Run, in *StagedUpgradeInput, p *stagedUpgradePlan) (string, error) {
	if err := r.Gate(GateTestedOnStaging, GateOptions{Summary: "Was this upgrade tried on a staging cloud? Plan: " + strings.Join(serviceNames(p.services), ", ")}); err != nil {
		return "", err
	}
	tag := backupTag(r)
	u := &upgradeRun{r: r, tag: tag, dbHost: p.dbHost, parallel: r.parallelism(in.Parallel), plans: p.services, batchSize: p.batchSize, compact: p.compact, record: p.record}
	r.OnExit(u.report)
	for _, s := range p.services {
		if err := u.upgradeService(s); err != nil {
			if IsAbort(err) {
				return err.Error() + "; " + u.summary(), err
			}
			return u.summary(), err
		}
	}
	return u.summary(), nil
}
