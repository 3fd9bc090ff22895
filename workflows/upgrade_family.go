package workflows

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/stackrun/stackrun/activities"
)

// The upgrade family: what staged-upgrade does to one service on one host, the Nova roll, and
// the rollback. Rolling maintenance (compute hosts in waves) reuses upgradeHost for nova-compute.

// upgradeAct names the Upgrade activities (the worker registers the real struct).
var upgradeAct *activities.Upgrade

// upgradeHeartbeat: the Upgrade activities heartbeat every 5 s while a command runs, so a worker
// that dies mid-step is noticed within this, and the step resumes on another worker.
const upgradeHeartbeat = 30 * time.Second

// upgradeServicePlan is one service: its hosts in order (canary first), the target versions.
type upgradeServicePlan struct {
	name          string
	svc           activities.UpgradeServiceFacts
	hosts         []*upgradeHostPlan
	targets       map[string]string // package -> version
	schemaHost    string            // where the schema commands run (a control-plane host)
	configChanges bool
}

// upgradeHostPlan is one host of a service.
type upgradeHostPlan struct {
	host  string
	procs []activities.ServiceFacts
	facts []activities.PackageFact
}

func (h *upgradeHostPlan) fact(pkg string) (activities.PackageFact, bool) {
	for _, f := range h.facts {
		if f.Package == pkg {
			return f, true
		}
	}
	return activities.PackageFact{}, false
}

// computeOnly: every process of the host is a compute agent (nova-compute).
func (h *upgradeHostPlan) computeOnly() bool {
	for _, p := range h.procs {
		if !strings.HasSuffix(p.Name, "-compute") {
			return false
		}
	}
	return true
}

// newServicePlan orders the hosts: control-plane hosts first (Nova: conductors before computes),
// then the compute-only ones; the canary first of all when it runs the service (and is not a
// compute while control-plane hosts remain).
func newServicePlan(sf activities.UpgradeServiceFacts, canary string, configChanges bool) *upgradeServicePlan {
	s := &upgradeServicePlan{name: sf.Name, svc: sf, configChanges: configChanges}
	var control, computes []*upgradeHostPlan
	for _, h := range sf.Hosts {
		hp := &upgradeHostPlan{host: h.Host, procs: h.Processes}
		if hp.computeOnly() {
			computes = append(computes, hp)
		} else {
			control = append(control, hp)
		}
	}
	s.hosts = append(control, computes...)
	if i := slices.IndexFunc(s.hosts, func(h *upgradeHostPlan) bool { return h.host == canary }); i > 0 && (!s.hosts[i].computeOnly() || len(control) == 0) {
		c := s.hosts[i]
		s.hosts = append([]*upgradeHostPlan{c}, slices.Delete(s.hosts, i, i+1)...)
	}
	s.schemaHost = s.hosts[0].host
	for _, h := range s.hosts {
		if !h.computeOnly() {
			s.schemaHost = h.host
			break
		}
	}
	return s
}

// changes lists "pkg from → to" for a host ("" when the host is at every target already).
func (s *upgradeServicePlan) changes(h *upgradeHostPlan) []string {
	var out []string
	for _, pkg := range s.svc.Packages {
		f, ok := h.fact(pkg)
		if !ok {
			continue
		}
		if to := s.targets[pkg]; to != f.Installed {
			out = append(out, fmt.Sprintf("%s %s → %s", pkg, f.Installed, to))
		}
	}
	return out
}

// planLines is the service's part of the plan. batchSize > 0 (runs with compactReportChange)
// and at least LargeRunItems hosts in batches: those hosts are one line per kind of change (how many, the first and the
// last; each batch's own plan lists its hosts one by one, and the upgrade_plan detail every
// host), so that the plan does not grow by some 300 bytes per compute host.
func (s *upgradeServicePlan) planLines(parallel int, dbHost string, batchSize int) []string {
	var lines []string
	own, batches := splitHosts(s, batchSize)
	batched := slices.Concat(batches...)
	if len(batched) < LargeRunItems {
		own, batched = s.hosts, nil // a small cloud's plan names every host
	}
	inBatch := hostSet(batched)
	head := fmt.Sprintf("%s: canary %s", s.name, s.hosts[0].host)
	if len(s.hosts) > 1 {
		rest := make([]string, 0, len(own)-1)
		for _, h := range own[1:] {
			rest = append(rest, h.host)
		}
		if len(batched) > 0 {
			rest = append(rest, fmt.Sprintf("%d compute host(s) in batches (%s)", len(batched), hostRange(batched)))
		}
		head += fmt.Sprintf(", gate %s:%s, then %s (%d at a time)", GateCanaryOK, s.name, strings.Join(rest, ", "), parallel)
	} else {
		head += fmt.Sprintf(", gate %s:%s", GateCanaryOK, s.name)
	}
	lines = append(lines, head)
	if s.name == "nova" {
		lines = append(lines, "nova: [upgrade_levels] compute = auto on every nova host before the first restart; conductors first, the API last, computes after")
	}
	// groups: the batched hosts' lines by what follows the host's name, in plan order.
	var groups []string
	grouped := map[string][]*upgradeHostPlan{}
	for i, h := range s.hosts {
		ch := s.changes(h)
		pk := strings.Join(ch, ", ")
		if len(ch) == 0 {
			pk = "packages at the target already: " + s.targetText()
		}
		procs := make([]string, len(h.procs))
		for j, p := range h.procs {
			procs[j] = p.Name
		}
		steps := []string{"stop " + strings.Join(procs, ", "), "back up " + s.svc.ConfigDir}
		if i == 0 && len(s.svc.Databases) > 0 {
			steps = append(steps, fmt.Sprintf("dump databases %s on %s", strings.Join(s.svc.Databases, ", "), dbHost))
		}
		steps = append(steps, "upgrade packages (one apt transaction; skipped if at the target)")
		if s.configChanges {
			steps = append(steps, "gate "+GateConfigUpdated)
		}
		if h.host == s.schemaHost {
			steps = append(steps, "schema "+strings.Join(s.svc.Schema, ", ")+" (no-ops between patch builds, run all the same)")
			if s.name == "nova" {
				steps = append(steps, "nova-status upgrade check (warning: gate, failure: stall)")
			}
		}
		verify := "verify (processes, AMQP, API)"
		if s.name == "cinder" {
			verify = "verify (processes, AMQP, volume list, cinder-scheduler and cinder-volume up)"
		}
		steps = append(steps, "start", verify)
		what := fmt.Sprintf("%s; %s", pk, strings.Join(steps, "; "))
		if i > 0 && inBatch[h] {
			if _, ok := grouped[what]; !ok {
				groups = append(groups, what)
			}
			grouped[what] = append(grouped[what], h)
			continue
		}
		lines = append(lines, fmt.Sprintf("  %s/%s: %s", s.name, h.host, what))
	}
	for _, what := range groups {
		on := grouped[what]
		lines = append(lines, fmt.Sprintf("  %s/%d compute host(s) in batches (%s): %s", s.name, len(on), hostRange(on), what))
	}
	if s.name == "nova" {
		lines = append(lines, fmt.Sprintf("nova: online_data_migrations on %s until done, then the pin removed and nova restarted on every host", s.schemaHost))
	}
	extra := map[string]string{"nova": ", server boot and delete", "cinder": ", 1 GiB volume created until available and deleted"}[s.name]
	lines = append(lines, fmt.Sprintf("%s: smoke test (token, images, placement%s)", s.name, extra))
	return lines
}

func (s *upgradeServicePlan) targetText() string {
	var out []string
	for _, pkg := range s.svc.Packages {
		if v, ok := s.targets[pkg]; ok {
			out = append(out, pkg+" "+v)
		}
	}
	return strings.Join(out, ", ")
}

func hostSet(hs []*upgradeHostPlan) map[*upgradeHostPlan]bool {
	set := make(map[*upgradeHostPlan]bool, len(hs))
	for _, h := range hs {
		set[h] = true
	}
	return set
}

// planDetail is the plan per host: {service, host, changes}. With p.compact and at least
// LargeRunItems hosts in batches, those are one entry per service and changes, {service, hosts,
// changes}.
func planDetail(p *stagedUpgradePlan) []map[string]any {
	var out []map[string]any
	for _, s := range p.services {
		inBatch := map[*upgradeHostPlan]bool{}
		if _, batches := splitHosts(s, p.batchSize); p.compact && len(slices.Concat(batches...)) >= LargeRunItems {
			inBatch = hostSet(slices.Concat(batches...))
		}
		group := map[string]int{} // changes -> index in out
		for i, h := range s.hosts {
			ch := s.changes(h)
			if i == 0 || !inBatch[h] {
				out = append(out, map[string]any{"service": s.name, "host": h.host, "changes": ch})
				continue
			}
			k := strings.Join(ch, "\n")
			j, ok := group[k]
			if !ok {
				j, group[k] = len(out), len(out)
				out = append(out, map[string]any{"service": s.name, "hosts": []string{}, "changes": ch})
			}
			out[j]["hosts"] = append(out[j]["hosts"].([]string), h.host)
		}
	}
	return out
}

// backupTag names this run's database dumps (one per service, never overwritten).
func backupTag(r *Run) string {
	id := strings.ReplaceAll(r.info.WorkflowExecution.RunID, "-", "")
	if len(id) > 12 {
		id = id[:12]
	}
	return "su-" + cmpOr(id, "run")
}

// upgradeRun is what an upgrade did so far: for the report and for the rollback.
type upgradeRun struct {
	r        *Run
	tag      string
	dbHost   string
	parallel int

	plans        []*upgradeServicePlan
	done         []string // "glance" when finished
	transactions []activities.PackageTransaction
	configs      []activities.ConfigBackup
	dumps        []activities.DatabaseBackup
	schema       []activities.SchemaSyncResult
	restored     []string
	touched      map[string][]string // service -> hosts stopped so far, in order
	pinned       []string            // hosts with [upgrade_levels] compute = auto set by this run

	// batchSize: compute hosts per child run (0: none, runs from before); batchRuns: the child
	// runs started; batch: this run is one batch of its parent's (upgrade_batch.go).
	batchSize int
	batchRuns []string
	batch     bool
	// compact: a host's "planned" package row only when it has no transaction (compactReportChange).
	compact bool
	// record: the batches return their batch record (batchRecordChange).
	record bool
}

func (u *upgradeRun) touch(svc, host string) {
	if u.touched == nil {
		u.touched = map[string][]string{}
	}
	if !slices.Contains(u.touched[svc], host) {
		u.touched[svc] = append(u.touched[svc], host)
	}
}

func (u *upgradeRun) upgradeService(s *upgradeServicePlan) error {
	r := u.r
	// own: the hosts this run upgrades itself; batches: the compute hosts its child runs upgrade
	// (upgrade_batch.go; none in runs from before).
	own, batches := splitHosts(s, u.batchSize)
	if s.name == "nova" {
		err := r.Do("nova/pin", StepOptions{NoSkip: true}, func(ctx workflow.Context) error {
			return u.pin(ctx, s, own, "auto")
		})
		if err != nil {
			return u.failed(s, err)
		}
		if err := u.runBatches(s, batchPin, batches); err != nil {
			return u.failed(s, err)
		}
	}
	if err := u.upgradeHost(r.ctx, s, s.hosts[0], true); err != nil {
		return u.failed(s, err)
	}
	if err := r.Gate(GateCanaryOK+":"+s.name, GateOptions{Summary: fmt.Sprintf("%s is upgraded and verified on the canary %s (%s). Go on with the other hosts?",
		s.name, s.hosts[0].host, strings.Join(s.changes(s.hosts[0]), ", "))}); err != nil {
		return u.failed(s, err)
	}
	rest := own[1:]
	if err := r.Each(r.ctx, len(rest), u.parallel, func(ctx workflow.Context, i int) error {
		return u.upgradeHost(ctx, s, rest[i], false)
	}); err != nil {
		return u.failed(s, err)
	}
	if err := u.runBatches(s, batchUpgrade, batches); err != nil {
		return u.failed(s, err)
	}
	if s.name == "nova" {
		if err := u.novaFinish(s, own, batches); err != nil {
			return u.failed(s, err)
		}
	}
	err := r.Do(s.name+"/smoke", StepOptions{ReadOnly: true}, func(ctx workflow.Context) error {
		var res activities.SmokeResult
		ctx = r.WithActivity(ctx, ActOpts{Timeout: 8 * time.Minute, Heartbeat: time.Minute})
		sr := activities.SmokeRequest{Name: u.tag + "-" + s.name, Boot: s.name == "nova", Volume: s.name == "cinder" && cinderProbes(ctx)}
		if err := r.Exec(ctx, s.name+"/smoke", s.name, cloud.UpgradeSmokeTest, &res, sr); err != nil {
			return err
		}
		r.AddFinding(activities.SeverityInfo, s.name, "smoke test: %s", strings.Join(res.Checks, "; "))
		return nil
	})
	if err != nil {
		return u.failed(s, err)
	}
	u.done = append(u.done, s.name)
	return nil
}

// pin sets (value "auto") or removes (value "") [upgrade_levels] compute on the nova hosts.
func (u *upgradeRun) pin(ctx workflow.Context, s *upgradeServicePlan, on []*upgradeHostPlan, value string) error {
	for _, h := range on {
		var res activities.UpgradeLevelsResult
		if err := u.r.Exec(ctx, "nova/pin", h.host, upgradeAct.SetUpgradeLevels, &res, activities.UpgradeLevelsRequest{Host: h.host, Compute: value}); err != nil {
			return err
		}
		if value != "" && !slices.Contains(u.pinned, h.host) {
			u.pinned = append(u.pinned, h.host)
		}
	}
	return nil
}

// upgradeHost is the per-host sequence: stop, back up, upgrade, config gate, schema, start, verify.
func (u *upgradeRun) upgradeHost(ctx workflow.Context, s *upgradeServicePlan, h *upgradeHostPlan, first bool) error {
	r := u.r
	step := func(name string) string { return s.name + "/" + h.host + "/" + name }
	r.AddSteps(step("stop"), step("backup"), step("upgrade"), step("schema"), step("start"), step("verify"))
	err := r.DoIn(ctx, step("stop"), StepOptions{Target: h.host, NoSkip: true}, func(ctx workflow.Context) error {
		u.touch(s.name, h.host)
		for _, p := range slices.Backward(h.procs) {
			if err := r.Exec(ctx, step("stop"), h.host, hosts.SetService, nil, activities.ServiceAction{ServiceRequest: req(h.host, p), Action: "stop"}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	r.SetLeftState(fmt.Sprintf("%s on %s is STOPPED", s.name, h.host))
	err = r.DoIn(ctx, step("backup"), StepOptions{Target: h.host, NoSkip: true}, func(ctx workflow.Context) error {
		var cb activities.ConfigBackup
		ctx = r.WithActivity(ctx, ActOpts{Timeout: 10 * time.Minute, Heartbeat: upgradeHeartbeat})
		if err := r.Exec(ctx, step("backup"), h.host, upgradeAct.BackupConfig, &cb, activities.UpgradeBackupRequest{Host: h.host, Service: s.name}); err != nil {
			return err
		}
		u.configs = append(u.configs, cb)
		if first && len(s.svc.Databases) > 0 {
			var db activities.DatabaseBackup
			ctx := r.WithActivity(ctx, ActOpts{Timeout: 30 * time.Minute, Heartbeat: upgradeHeartbeat})
			if err := r.Exec(ctx, step("backup"), u.dbHost, upgradeAct.BackupDatabase, &db, activities.UpgradeBackupRequest{Host: h.host, Service: s.name, Tag: u.tag}); err != nil {
				return err
			}
			u.dumps = append(u.dumps, db)
		}
		return nil
	})
	if err != nil {
		return err
	}
	err = r.DoIn(ctx, step("upgrade"), StepOptions{Target: h.host, NoSkip: true}, func(ctx workflow.Context) error {
		var targets []activities.PackageTarget
		for _, pkg := range s.svc.Packages {
			if v, ok := s.targets[pkg]; ok {
				targets = append(targets, activities.PackageTarget{Package: pkg, Version: v})
			}
		}
		var tx activities.PackageTransaction
		ctx = r.WithActivity(ctx, ActOpts{Timeout: 15 * time.Minute, Attempts: 3, Heartbeat: upgradeHeartbeat})
		if err := r.Exec(ctx, step("upgrade"), h.host, upgradeAct.InstallPackages, &tx, activities.PackageInstallRequest{Host: h.host, Service: s.name, Targets: targets}); err != nil {
			return err
		}
		u.transactions = append(u.transactions, tx)
		return nil
	})
	if err != nil {
		return err
	}
	if s.configChanges {
		gate := GateConfigUpdated + ":" + s.name + "/" + h.host
		if err := r.Gate(gate, GateOptions{Summary: fmt.Sprintf("Update the configuration of %s on %s (%s) for the new build, then approve.", s.name, h.host, s.svc.ConfigDir)}); err != nil {
			return err
		}
	}
	err = r.DoIn(ctx, step("schema"), StepOptions{Target: h.host, NoSkip: true}, func(ctx workflow.Context) error {
		if h.host != s.schemaHost {
			return nil
		}
		var res activities.SchemaSyncResult
		ctx = r.WithActivity(ctx, ActOpts{Timeout: 30 * time.Minute, Attempts: 3, Heartbeat: upgradeHeartbeat})
		if err := r.Exec(ctx, step("schema"), h.host, upgradeAct.SchemaSync, &res, activities.ServiceHostRequest{Host: h.host, Service: s.name}); err != nil {
			return err
		}
		u.schema = append(u.schema, res)
		if s.name != "nova" {
			return nil
		}
		var chk activities.NovaCheckResult
		if err := r.Exec(ctx, step("schema"), h.host, upgradeAct.NovaUpgradeCheck, &chk, activities.ServiceHostRequest{Host: h.host, Service: "nova"}); err != nil {
			return err
		}
		switch chk.Level {
		case activities.CheckFailure:
			return fmt.Errorf("nova-status upgrade check on %s failed (exit 2): %s", h.host, lastLine(chk.Output, 600))
		case activities.CheckWarning:
			r.AddFinding(activities.SeverityWarning, h.host, "nova-status upgrade check: warnings: %s", lastLine(chk.Output, 600))
			return r.Gate(GateNovaCheckWarning+":"+h.host, GateOptions{Summary: "nova-status upgrade check reported warnings on " + h.host + ": go on?"})
		}
		return nil
	})
	if err != nil {
		return err
	}
	var startedAt time.Time
	err = r.DoIn(ctx, step("start"), StepOptions{Target: h.host, NoSkip: true}, func(ctx workflow.Context) error {
		startedAt = workflow.Now(ctx)
		for _, p := range h.procs {
			if err := r.Exec(ctx, step("start"), h.host, hosts.SetService, nil, activities.ServiceAction{ServiceRequest: req(h.host, p), Action: "start"}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	r.SetLeftState("")
	return r.DoIn(ctx, step("verify"), StepOptions{Target: h.host, ReadOnly: true}, func(ctx workflow.Context) error {
		return u.verify(ctx, step("verify"), s, h, startedAt)
	})
}

func req(host string, p activities.ServiceFacts) activities.ServiceRequest {
	return activities.ServiceRequest{Host: host, Role: p.Role, Service: p.Name}
}

func lastLine(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		s = "…" + s[len(s)-n:]
	}
	return s
}

// cinderVerifyProbesChange: Cinder's verify asks the block-storage API (volumes, volume services)
// and its smoke test makes a volume; runs from before asked nothing of Cinder.
const cinderVerifyProbesChange = "cinder-verify-probes"

func cinderProbes(ctx workflow.Context) bool {
	return workflow.GetVersion(ctx, cinderVerifyProbesChange, workflow.DefaultVersion, 1) == 1
}

// cinderVerifyProbes: the volume list where the host runs cinder-api, and every other Cinder
// process of the host (scheduler, volume) up in os-services with a report since its start.
func cinderVerifyProbes(h *upgradeHostPlan, since time.Time) []activities.APIProbe {
	var out []activities.APIProbe
	var bins []string
	for _, p := range h.procs {
		if p.Name == "cinder-api" {
			out = append(out, activities.APIProbe{Kind: "volumes"})
		} else if strings.HasPrefix(p.Name, "cinder-") {
			bins = append(bins, p.Name)
		}
	}
	if len(bins) > 0 {
		out = append(out, activities.APIProbe{Kind: "volume-services", Host: h.host, Binaries: bins, Since: since})
	}
	return out
}

// apiProbes are the API questions that show a service answers after its restart.
var apiProbes = map[string]string{"keystone": "projects", "glance": "images", "nova": "servers"}

// verify: every process runs, those on the message queue hold an AMQP connection made since
// the start, and the service's API answers (a fresh API may take a little while).
func (u *upgradeRun) verify(ctx workflow.Context, step string, s *upgradeServicePlan, h *upgradeHostPlan, since time.Time) error {
	r := u.r
	for _, p := range h.procs {
		var st activities.ServiceState
		if err := r.Exec(ctx, step, h.host, hosts.ServiceStatus, &st, req(h.host, p)); err != nil {
			return err
		}
		if !st.Running {
			return fmt.Errorf("%s on %s is not running after start: %s", p.Name, h.host, st.Output)
		}
	}
	for _, p := range h.procs {
		if !p.AMQP {
			continue
		}
		var res activities.AMQPResult
		for i := 0; i < 12 && !res.Connected; i++ {
			if i > 0 {
				_ = workflow.Sleep(ctx, 5*time.Second)
			}
			if err := r.Exec(ctx, step, h.host, hosts.CheckAMQP, &res, activities.AMQPRequest{ServiceRequest: req(h.host, p), Log: p.Log, Since: since}); err != nil {
				return err
			}
		}
		if !res.Connected {
			return fmt.Errorf("%s on %s has no AMQP connection since its start at %s", p.Name, h.host, since.Format(time.RFC3339))
		}
	}
	probes := []activities.APIProbe{}
	if k, ok := apiProbes[s.name]; ok && !h.computeOnly() {
		probes = append(probes, activities.APIProbe{Kind: k})
	}
	if h.computeOnly() && s.name == "nova" {
		probes = append(probes, activities.APIProbe{Kind: "compute-service", Host: h.host})
	}
	if s.name == "cinder" && cinderProbes(ctx) {
		probes = append(probes, cinderVerifyProbes(h, since)...)
	}
	for _, pr := range probes {
		var res activities.APIProbeResult
		for i := 0; i < 18 && !res.OK; i++ {
			if i > 0 {
				_ = workflow.Sleep(ctx, 5*time.Second)
			}
			if err := r.Exec(ctx, step, h.host, cloud.Probe, &res, pr); err != nil {
				return err
			}
		}
		if !res.OK {
			return fmt.Errorf("%s API (%s) does not answer after the upgrade on %s: %s", s.name, pr.Kind, h.host, res.Detail)
		}
	}
	return nil
}

// novaFinish: online data migrations until done, then the pin removed and nova restarted: on
// this run's own hosts, then on each batch of compute hosts in a child run.
func (u *upgradeRun) novaFinish(s *upgradeServicePlan, own []*upgradeHostPlan, batches [][]*upgradeHostPlan) error {
	r := u.r
	err := r.Do("nova/online-data-migrations", StepOptions{Target: s.schemaHost, NoSkip: true}, func(ctx workflow.Context) error {
		for batch := 1; ; batch++ {
			var res activities.OnlineMigrationsResult
			if err := r.Exec(ctx, "nova/online-data-migrations", s.schemaHost, upgradeAct.NovaOnlineDataMigrations, &res, activities.OnlineMigrationsRequest{Host: s.schemaHost}); err != nil {
				return err
			}
			switch res.State {
			case activities.MigrationsDone:
				return nil
			case activities.MigrationsError:
				return fmt.Errorf("nova-manage db online_data_migrations on %s: a migration failed (exit 2): %s", s.schemaHost, lastLine(res.Output, 600))
			}
			if batch >= 1000 {
				return fmt.Errorf("online data migrations still not done after %d batches", batch)
			}
		}
	})
	if err != nil {
		return err
	}
	err = r.Do("nova/unpin", StepOptions{NoSkip: true}, func(ctx workflow.Context) error {
		return u.unpin(ctx, s, own)
	})
	if err != nil {
		return err
	}
	return u.runBatches(s, batchUnpin, batches)
}

// unpinParallel is unpin on compute hosts, parallel at a time: the pin removed on every host,
// then each host's nova restarted and verified.
func (u *upgradeRun) unpinParallel(ctx workflow.Context, s *upgradeServicePlan, on []*upgradeHostPlan, parallel int) error {
	r := u.r
	if err := r.Each(ctx, len(on), parallel, func(ctx workflow.Context, i int) error {
		return u.pin(ctx, s, on[i:i+1], "")
	}); err != nil {
		return err
	}
	if err := r.Each(ctx, len(on), parallel, func(ctx workflow.Context, i int) error {
		return u.restart(ctx, s, on[i])
	}); err != nil {
		return err
	}
	u.pinned = slices.DeleteFunc(u.pinned, func(p string) bool {
		return slices.ContainsFunc(on, func(h *upgradeHostPlan) bool { return h.host == p })
	})
	return nil
}

// restart restarts every nova process of h (in order) so that the pin is gone, and verifies it.
func (u *upgradeRun) restart(ctx workflow.Context, s *upgradeServicePlan, h *upgradeHostPlan) error {
	r := u.r
	since := workflow.Now(ctx)
	for _, p := range h.procs {
		sr := activities.ServiceAction{ServiceRequest: req(h.host, p)}
		for _, a := range []string{"stop", "start"} {
			sr.Action = a
			if err := r.Exec(ctx, "nova/unpin", h.host, hosts.SetService, nil, sr); err != nil {
				return err
			}
		}
	}
	return u.verify(ctx, "nova/unpin", s, h, since)
}

// unpin removes the pin on the hosts, then restarts and verifies them one at a time.
func (u *upgradeRun) unpin(ctx workflow.Context, s *upgradeServicePlan, on []*upgradeHostPlan) error {
	if err := u.pin(ctx, s, on, ""); err != nil {
		return err
	}
	// The pin is read at start: restart every nova process (conductors first) so it is gone.
	for _, h := range on {
		if err := u.restart(ctx, s, h); err != nil {
			return err
		}
	}
	u.pinned = slices.DeleteFunc(u.pinned, func(p string) bool {
		return slices.ContainsFunc(on, func(h *upgradeHostPlan) bool { return h.host == p })
	})
	return nil
}
