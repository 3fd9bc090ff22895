package workflows

import (
	"fmt"
	"slices"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/internal/infra/checks"
)

// The upgrade family's way out: a failed service rolled back behind its gate, the summary and
// the report, and the half-yearly check's start of a staged upgrade.

// failed decides what a failure of a service's upgrade leads to. When nothing of the service was
// touched, the error ends the run. Otherwise the two-person gate rollback:<service> asks whether
// to roll back: approved, the service's configuration and database are restored from this run's
// backups and its packages downgraded to the recorded versions; rejected, it stays as it is. The
// run ends Aborted either way, and the report says what was restored.
func (u *upgradeRun) failed(s *upgradeServicePlan, err error) error {
	if len(u.touched[s.name]) == 0 || temporal.IsCanceledError(err) {
		return err
	}
	r := u.r
	var what []string
	for _, c := range u.configs {
		if c.Service == s.name {
			what = append(what, fmt.Sprintf("%s on %s (sha256 %s)", c.Archive, c.Host, short(c.SHA256)))
		}
	}
	for _, d := range u.dumps {
		if d.Service == s.name {
			what = append(what, fmt.Sprintf("%s on %s (sha256 %s)", d.File, d.Host, short(d.SHA256)))
		}
	}
	gerr := r.Gate(GateRollback+":"+s.name, GateOptions{Summary: fmt.Sprintf("Upgrading %s failed: %s. Approve to roll back (restore %s; downgrade its packages to the recorded versions); reject to leave it as it is.",
		s.name, errText(err), strings.Join(what, "; "))})
	if gerr != nil {
		r.AddFinding(activities.SeverityCritical, s.name, "upgrade failed and was NOT rolled back (%v): %s is left as it is on %s", gerr, s.name, strings.Join(u.touched[s.name], ", "))
		return &AbortError{Reason: fmt.Sprintf("%s failed (%s); rollback declined: left as it is", s.name, errText(err))}
	}
	if rerr := u.rollback(s); rerr != nil {
		return rerr
	}
	return &AbortError{Reason: fmt.Sprintf("%s failed (%s) and was rolled back: %s", s.name, errText(err), strings.Join(u.restoredOf(s.name), "; "))}
}

func short(sha string) string {
	if len(sha) > 16 {
		return sha[:16]
	}
	return sha
}

func (u *upgradeRun) restoredOf(svc string) []string {
	var out []string
	for _, l := range u.restored {
		if strings.HasPrefix(l, svc+":") {
			out = append(out, strings.TrimPrefix(l, svc+": "))
		}
	}
	return out
}

// rollback restores what this run backed up for the service, host by host in reverse, then its
// database, downgrades its packages to the versions recorded before the upgrade, starts and
// verifies it. Each activity checks the world first, so a retried rollback does nothing twice.
func (u *upgradeRun) rollback(s *upgradeServicePlan) error {
	r := u.r
	name := s.name + "/rollback"
	r.AddSteps(name)
	return r.Do(name, StepOptions{NoSkip: true}, func(ctx workflow.Context) error {
		touched := u.touched[s.name]
		byHost := map[string]*upgradeHostPlan{}
		for _, h := range s.hosts {
			byHost[h.host] = h
		}
		for _, host := range slices.Backward(touched) {
			for _, p := range slices.Backward(byHost[host].procs) {
				if err := r.Exec(ctx, name, host, hosts.SetService, nil, activities.ServiceAction{ServiceRequest: req(host, p), Action: "stop"}); err != nil {
					return err
				}
			}
		}
		for _, host := range slices.Backward(touched) {
			// the host's first archive: the configuration as it was before this run
			for _, c := range u.configs {
				if c.Service != s.name || c.Host != host {
					continue
				}
				var res activities.RestoreResult
				if err := r.Exec(ctx, name, host, upgradeAct.RestoreConfig, &res, c); err != nil {
					return err
				}
				u.restoredLine(s.name, "configuration %s on %s from %s (sha256 %s)%s", c.Dir, host, c.Archive, short(c.SHA256), restoreNote(res))
				break
			}
		}
		for _, d := range u.dumps {
			if d.Service != s.name {
				continue
			}
			var res activities.RestoreResult
			ctx := r.WithActivity(ctx, ActOpts{Timeout: 30 * time.Minute, Heartbeat: upgradeHeartbeat})
			if err := r.Exec(ctx, name, d.Host, upgradeAct.RestoreDatabase, &res, d); err != nil {
				return err
			}
			u.restoredLine(s.name, "databases %s from %s (sha256 %s)%s", strings.Join(d.Databases, ", "), d.File, short(d.SHA256), restoreNote(res))
		}
		for _, host := range touched {
			// The versions the plan found (a transaction retried after a worker died may have
			// found its packages moved already), then dependencies apt moved along with them.
			var targets []activities.PackageTarget
			has := func(pkg string) bool {
				return slices.ContainsFunc(targets, func(t activities.PackageTarget) bool { return t.Package == pkg })
			}
			for _, pkg := range s.svc.Packages {
				if f, ok := byHost[host].fact(pkg); ok && f.Installed != "" && s.targets[pkg] != f.Installed {
					targets = append(targets, activities.PackageTarget{Package: pkg, Version: f.Installed})
				}
			}
			for _, tx := range u.transactions {
				if tx.Service != s.name || tx.Host != host {
					continue
				}
				for _, c := range tx.Changes {
					if c.From != "" && c.From != c.To && !has(c.Package) {
						targets = append(targets, activities.PackageTarget{Package: c.Package, Version: c.From})
					}
				}
			}
			if len(targets) == 0 {
				continue
			}
			var tx activities.PackageTransaction
			ctx := r.WithActivity(ctx, ActOpts{Timeout: 15 * time.Minute, Attempts: 3, Heartbeat: upgradeHeartbeat})
			if err := r.Exec(ctx, name, host, upgradeAct.InstallPackages, &tx, activities.PackageInstallRequest{Host: host, Service: s.name, Targets: targets, Downgrade: true}); err != nil {
				return err
			}
			u.transactions = append(u.transactions, tx)
			for _, t := range targets {
				u.restoredLine(s.name, "package %s back to %s on %s%s", t.Package, t.Version, host, map[bool]string{true: " (already there: shared package set)", false: ""}[tx.Skipped])
			}
		}
		if s.name == "nova" && len(u.pinned) > 0 {
			if err := u.pin(ctx, s, s.hosts, ""); err != nil {
				return err
			}
			u.pinned = nil
		}
		for _, host := range touched {
			h := byHost[host]
			since := workflow.Now(ctx)
			for _, p := range h.procs {
				if err := r.Exec(ctx, name, host, hosts.SetService, nil, activities.ServiceAction{ServiceRequest: req(host, p), Action: "start"}); err != nil {
					return err
				}
			}
			if err := u.verify(ctx, name, s, h, since); err != nil {
				return err
			}
		}
		r.SetLeftState("")
		return nil
	})
}

func restoreNote(res activities.RestoreResult) string {
	switch {
	case res.Already:
		return " (already equal: nothing changed)"
	case !res.Verified:
		return " (NOT verified: " + res.Note + ")"
	case res.SetAside != "":
		return ", the broken one kept as " + res.SetAside
	}
	return ""
}

func (u *upgradeRun) restoredLine(svc, format string, args ...any) {
	line := svc + ": " + fmt.Sprintf(format, args...)
	if !slices.Contains(u.restored, line) {
		u.restored = append(u.restored, line)
	}
}

// summary: what moved, per service.
func (u *upgradeRun) summary() string {
	var moved []string
	for _, s := range u.plans {
		if !slices.Contains(u.done, s.name) {
			continue
		}
		// compact: a change on more than 3 hosts is one entry, "<change> on N hosts (first …
		// last)" (the packages detail has every host's): the summary is also the run-finished
		// notification's text.
		var order []string
		on := map[string][]*upgradeHostPlan{}
		for _, h := range s.hosts {
			for _, c := range s.changes(h) {
				if !u.compact {
					moved = append(moved, c+" on "+h.host)
					continue
				}
				if _, ok := on[c]; !ok {
					order = append(order, c)
				}
				on[c] = append(on[c], h)
			}
		}
		for _, c := range order {
			if hs := on[c]; len(hs) > 3 {
				moved = append(moved, fmt.Sprintf("%s on %d hosts (%s)", c, len(hs), hostRange(hs)))
			} else {
				for _, h := range hs {
					moved = append(moved, c+" on "+h.host)
				}
			}
		}
	}
	s := fmt.Sprintf("upgraded %s", cmpOr(strings.Join(u.done, ", "), "nothing"))
	if len(moved) > 0 {
		s += ": " + strings.Join(moved, "; ")
	}
	return s
}

// report records the transactions, backups and restores in the report's details.
func (u *upgradeRun) report() {
	r := u.r
	var pk []string
	hasTx := map[string]bool{} // service/host with a transaction recorded
	if u.compact {
		for _, tx := range u.transactions {
			hasTx[tx.Service+"/"+tx.Host] = true
		}
	}
	for _, s := range u.plans {
		touched := map[string]bool{}
		for _, h := range u.touched[s.name] {
			touched[h] = true
		}
		for _, h := range s.hosts {
			if touched[h.host] && !hasTx[s.name+"/"+h.host] {
				for _, c := range s.changes(h) {
					pk = append(pk, fmt.Sprintf("%s on %s: planned %s", s.name, h.host, c))
				}
			}
		}
	}
	for _, tx := range u.transactions {
		if tx.Skipped {
			pk = append(pk, fmt.Sprintf("%s on %s: %s", tx.Service, tx.Host, tx.Note))
		}
		for _, c := range tx.Changes {
			pk = append(pk, fmt.Sprintf("%s on %s: %s %s → %s", tx.Service, tx.Host, c.Package, cmpOr(c.From, "(none)"), c.To))
		}
	}
	var bk []string
	for _, c := range u.configs {
		bk = append(bk, fmt.Sprintf("%s on %s: %s sha256 %s (%d bytes)%s", c.Service, c.Host, c.Archive, c.SHA256, c.Size, map[bool]string{true: ", reused", false: ""}[c.Reused]))
	}
	for _, d := range u.dumps {
		bk = append(bk, fmt.Sprintf("%s databases %s on %s: %s sha256 %s (%d bytes, %d tables)%s", d.Service, strings.Join(d.Databases, ", "), d.Host, d.File, d.SHA256, d.Size, d.Tables, map[bool]string{true: ", reused", false: ""}[d.Reused]))
	}
	var sc []string
	for _, s := range u.schema {
		sc = append(sc, fmt.Sprintf("%s on %s: %s", s.Service, s.Host, s.Note))
	}
	r.SetDetail("packages", pk)
	r.SetDetail("backups", bk)
	r.SetDetail("schema", sc)
	if len(u.restored) > 0 {
		r.SetDetail("restored", u.restored)
	}
	if len(u.batchRuns) > 0 {
		r.SetDetail("batch_runs", u.batchRuns)
	}
	if u.batch {
		u.batchRecord() // a batch's pin is its parent's to remove
		return
	}
	if len(u.pinned) > 0 {
		r.AddFinding(activities.SeverityWarning, "nova", "[upgrade_levels] compute = auto is still set on %s: remove it once every nova service runs the new build", strings.Join(u.pinned, ", "))
	}
}

// startStagedUpgrade is the half-yearly check's step "staged-upgrade": it starts staged-upgrade
// --to-candidate as a run of its own (it outlives the check), which plans and then waits at its
// first gate with the plan: nothing changes until people approve. The finding links the run.
func (r *Run) startStagedUpgrade(in *CheckInput) checks.Finding {
	f := checks.Finding{Severity: activities.SeverityWarning, Probe: "staged-upgrade", Subject: "upgrade/staged"}
	if workflow.GetVersion(r.ctx, "half-yearly-starts-staged-upgrade", workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		f.Message = "reminder: plan and start the half-yearly staged upgrade (RUNBOOKS.md §6: one service at a time, all gates apply) and clean up after it; this Stackrun has no staged-upgrade runbook yet, so nothing was started"
		return f
	}
	up := &StagedUpgradeInput{Meta: Meta{RequestedBy: in.RequestedBy, Reason: "half-yearly staged upgrade (started by the half-yearly check " + r.info.WorkflowExecution.ID + ")"}, ToCandidate: true}
	id := StagedUpgrade.WorkflowID(up)
	_ = r.Do("staged-upgrade", StepOptions{ReadOnly: true}, func(ctx workflow.Context) error {
		cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
			WorkflowID:        id,
			ParentClosePolicy: enumspb.PARENT_CLOSE_POLICY_ABANDON, // the upgrade outlives the check
		})
		var exec workflow.Execution
		err := workflow.ExecuteChildWorkflow(cctx, StagedUpgrade.Type, up).GetChildWorkflowExecution().Get(ctx, &exec)
		switch {
		case temporal.IsWorkflowExecutionAlreadyStartedError(err):
			f.Message = fmt.Sprintf("a staged upgrade is running already (%s): not started again; see `stackrun show %s`", id, id)
		case err != nil:
			f.Message = fmt.Sprintf("could not start the half-yearly staged upgrade %s: %v", id, err)
		default:
			f.Severity = activities.SeverityInfo
			f.Message = fmt.Sprintf("half-yearly staged upgrade started: %s (run %s) plans --to-candidate and waits at gate %s with its plan; nothing changes until people approve (`stackrun show %s`)",
				id, exec.RunID, GateReleaseNotesRead, id)
		}
		r.step("staged-upgrade").Detail = f.Message
		return nil
	})
	return f
}
