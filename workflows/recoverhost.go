package workflows

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/stackrun/stackrun/activities"
)

// RecoverHost rebuilds the instances of a dead compute host elsewhere (RUNBOOKS.md §2): confirm
// it is down (service down, no SSH answer), fence (gate confirm-host-dead), force its service
// down, list its instances and their volumes (API, Nova and Cinder databases), evacuate with at
// most N in flight, verify each ACTIVE (or SHUTOFF, as it was) elsewhere, report volumes that
// need attention. It rewrites the database only when asked (--db-rewrite-fallback), only for the
// instances whose evacuation failed, and only after gate db-rewrite (see dbRewriteFallback).
var RecoverHost = Define(Def[RecoverHostInput, recoverHostPlan]{
	Name:     "recover-host",
	Short:    "A compute host died: confirm down, fence (gate), force down, evacuate its instances, check volumes",
	StepsFor: recoverHostSteps,
	Key:      func(in *RecoverHostInput) string { return in.Host },
	Plan:     planRecoverHost,
	Act:      recoverHost,
	Formerly: []string{"HostFailureRecovery"},
})

// GateConfirmHostDead is the fencing gate of RecoverHost: a person confirms the host is
// really dead (powered off, fenced) before its instances are rebuilt elsewhere.
const GateConfirmHostDead = "confirm-host-dead"

// GateConfirmHostDeadOverride replaces the fencing gate when the host still answers (SSH or
// ping): approving it is the operator's explicit, signed override of the refusal.
const GateConfirmHostDeadOverride = "confirm-host-dead-override"

// confirmSignalsChange is the workflow.GetVersion change that made confirm-down read more than
// one signal (ping of the management address besides the service state and SSH) and refuse a
// host that answers unless overridden.
const confirmSignalsChange = "recover-host-confirm-signals"

// GateDBRewrite guards RecoverHost's database-rewrite fallback: a second person approves
// the exact instance rows that will be rewritten (policy two_person_gates lists it by default).
const GateDBRewrite = "db-rewrite"

// RecoverHostInput is the input of RecoverHost (RUNBOOKS.md §2).
type RecoverHostInput struct {
	Meta
	Host     string   `json:"host" flag:"host" usage:"compute host that died (required)"`
	Targets  []string `json:"targets,omitempty" flag:"to" usage:"target hosts, comma-separated (default: every enabled, up compute host but the dead one)"`
	Parallel int      `json:"parallel" flag:"parallel" usage:"evacuations in flight at once (1-32; default policy.default_parallelism)"`
	// DBRewriteFallback opts in to the guide's manual path for the instances whose evacuation
	// failed or stalled and was skipped: rewrite instances.host/node, then hard reboot.
	DBRewriteFallback bool `json:"db_rewrite_fallback,omitempty" flag:"db-rewrite-fallback" usage:"for instances whose evacuation failed (or stalled and was skipped): rewrite instances.host/node in the Nova database after gate db-rewrite (needs databases.nova_rw_dsn), then hard-reboot them and verify them ACTIVE on the new host"`
}

func (in *RecoverHostInput) Validate() error {
	e := EvacuateInput{Meta: in.Meta, Host: in.Host, Targets: in.Targets, Parallel: in.Parallel}
	e.Reason = "recover"
	if err := e.Validate(); err != nil {
		return err
	}
	// The reason becomes the disabled reason after the fencing gate: checked before anything.
	return ValidateDisabledReason(recoverReasonPrefix, in.Reason)
}

// recoverReasonPrefix starts the disabled reason recover-host gives the dead host's service.
const recoverReasonPrefix = "host failure: "

func recoverHostSteps(in *RecoverHostInput) []string {
	steps := []string{"describe-host", "confirm-down", "inventory", "capacity", GateConfirmHostDead,
		"acquire-lease", "force-down", "evacuate"}
	if in.DBRewriteFallback {
		steps = append(steps, "db-rewrite-plan", GateDBRewrite, "db-rewrite")
	}
	return append(steps, "verify", "volumes", "release-lease")
}

// recoverHostPlan is what the recovery acts on: the dead host's service, the targets, its
// instances and volumes, one evacuation per instance, and the plan's lines.
type recoverHostPlan struct {
	// sshAnswered, pingAnswered: the host answered SSH, ping when the plan was made (the gate's
	// summary warned; with the multi-signal check only an override lets the run go on).
	sshAnswered  bool
	pingAnswered bool
	signals      bool // the run checks ping too (confirmSignalsChange)
	targets      []string
	instances    []activities.Instance
	volumes      []activities.VolumeAttachment
	moves        []Move
	lines        []string
	parallel     int
}

func planRecoverHost(r *Run, in *RecoverHostInput, p *recoverHostPlan) (Approval, error) {
	var (
		svc                   activities.ComputeService
		sshAnswer, pingAnswer activities.Reachability
	)
	facts, err := r.DescribeHost(in.Host)
	if err != nil {
		return Approval{}, Summarize("refused", err)
	}
	err = r.Do("confirm-down", StepOptions{Target: in.Host, NoSkip: true}, func(ctx workflow.Context) error {
		if !slices.Contains(facts.Roles, "compute") {
			return refused("host %s has roles %v, not compute", in.Host, facts.Roles)
		}
		var svcs []activities.ComputeService
		var err error
		if svc, svcs, err = hostService(r, ctx, "confirm-down", in.Host); err != nil {
			return err
		}
		if svc.State == "up" {
			return refused("nova-compute on %s reports up (last report %s): the host is not down; for maintenance use evacuate", in.Host, svc.UpdatedAt.Format("15:04:05"))
		}
		if err := r.Exec(ctx, "confirm-down", in.Host, hosts.SSHReachable, &sshAnswer, in.Host); err != nil {
			return err
		}
		if sshAnswer.Reachable {
			r.AddFinding(activities.SeverityCritical, in.Host, "the host still answers SSH (%s): it may still run its instances; fence it (power it off) before confirming", sshAnswer.Detail)
		}
		r.step("confirm-down").Detail = fmt.Sprintf("service %s (forced down %v); SSH answers: %v", svc.State, svc.ForcedDown, sshAnswer.Reachable)
		p.sshAnswered = sshAnswer.Reachable
		p.signals = workflow.GetVersion(ctx, confirmSignalsChange, workflow.DefaultVersion, 1) == 1
		if p.signals {
			if err := r.Exec(ctx, "confirm-down", in.Host, hosts.PingAddress, &pingAnswer, in.Host); err != nil {
				return err
			}
			p.pingAnswered = pingAnswer.Reachable
			if pingAnswer.Reachable {
				r.AddFinding(activities.SeverityCritical, in.Host, "the host's management address still answers (%s): it may still run its instances", pingAnswer.Detail)
			}
			r.step("confirm-down").Detail = fmt.Sprintf("service %s (forced down %v, last report %s); SSH: %s; %s", svc.State, svc.ForcedDown,
				svc.UpdatedAt.Format(time.RFC3339), answerText(sshAnswer), answerText(pingAnswer))
			r.SetDetail("confirm_down", map[string]any{"service": svc.State, "forced_down": svc.ForcedDown, "ssh": sshAnswer, "ping": pingAnswer})
		}
		p.targets, err = chooseTargets(svcs, in.Host, in.Targets, "rebuild")
		return err
	})
	if err != nil {
		return Approval{}, Summarize("refused", err)
	}

	err = r.Do("inventory", StepOptions{Target: in.Host, NoSkip: true}, func(ctx workflow.Context) error {
		var dbIDs []string
		var err error
		if p.instances, dbIDs, err = hostInstances(r, ctx, "inventory", in.Host); err != nil {
			return err
		}
		if err := r.Exec(ctx, "inventory", in.Host, novadb.DBVolumeAttachments, &p.volumes, in.Host); err != nil {
			return err
		}
		r.SetDetail("volumes_before", p.volumes)
		r.step("inventory").Detail = fmt.Sprintf("%d instance(s) (API), %d (database), %d volume attachment(s)", len(p.instances), len(dbIDs), len(p.volumes))
		return nil
	})
	if err != nil {
		return Approval{}, err
	}

	p.moves, err = planMoves(r, in.Host, p.instances, p.targets, true)
	p.parallel = r.parallelism(in.Parallel)
	plan := []string{fmt.Sprintf("host %s: nova-compute %s; SSH answers: %v; %d instance(s), %d volume attachment(s); targets %s; at most %d in flight",
		in.Host, svc.State, sshAnswer.Reachable, len(p.instances), len(p.volumes), strings.Join(p.targets, ", "), p.parallel),
		fmt.Sprintf("gate %s (fencing), then force nova-compute on %s down and disable it", GateConfirmHostDead, in.Host)}
	plan = append(plan, planLines(p.moves)...)
	for _, v := range p.volumes {
		plan = append(plan, fmt.Sprintf("check volume %s of %s after the rebuild", v.VolumeID, v.InstanceID))
	}
	if in.DBRewriteFallback {
		plan = append(plan, fmt.Sprintf("fallback for instances whose evacuation fails: gate %s listing the rows, then rewrite instances.host/node in the Nova database and hard-reboot each", GateDBRewrite))
	}
	p.lines = plan
	r.SetPlan(plan)
	r.SetDetail("moves", compactMoves(p.moves))
	if err != nil {
		return Approval{}, Summarize("refused: capacity", err)
	}
	summary := fmt.Sprintf("Confirm that %s is dead and fenced (powered off): %d instance(s) will be rebuilt on %s.", in.Host, len(p.instances), strings.Join(p.targets, ", "))
	if p.signals && (sshAnswer.Reachable || pingAnswer.Reachable) {
		// Refused, unless the operator overrides explicitly: a gate of its own name, signed.
		r.setStepState(r.step(GateConfirmHostDead), StepSkipped, "the host still answers: replaced by gate "+GateConfirmHostDeadOverride)
		return Approval{Gate: GateConfirmHostDeadOverride, Summary: fmt.Sprintf("REFUSED: %s still answers (SSH: %s; %s): it may still run its instances, and rebuilding them elsewhere would run them twice. Fence it (power it off) and start recover-host again, or approve this gate to OVERRIDE the refusal (signed, recorded): %d instance(s) will be rebuilt on %s.",
			in.Host, answerText(sshAnswer), answerText(pingAnswer), len(p.instances), strings.Join(p.targets, ", "))}, nil
	}
	if sshAnswer.Reachable {
		summary += " WARNING: the host still answers SSH."
	}
	return Approval{Gate: GateConfirmHostDead, Summary: summary}, nil
}

func recoverHost(r *Run, in *RecoverHostInput, p *recoverHostPlan) (string, error) {
	if err := r.AcquireHostLease(in.Host); err != nil {
		return "", err
	}
	moves, targets, volumes := p.moves, p.targets, p.volumes
	left := func() {
		var moved, not []string
		for _, m := range moves {
			if m.Outcome == "moved" {
				moved = append(moved, m.label()+"→"+m.To)
			} else {
				not = append(not, m.label())
			}
		}
		r.SetLeftState(fmt.Sprintf("nova-compute on %s is FORCED DOWN and DISABLED: clear both (openstack compute service set --up --enable %s nova-compute) only once the host is repaired and has cleaned up its evacuated instances; %d instance(s) rebuilt elsewhere [%s], %d not [%s]",
			in.Host, in.Host, len(moved), strings.Join(moved, ", "), len(not), strings.Join(not, ", ")))
		r.SetDetail("moves", compactMoves(moves))
	}
	r.OnExit(left)
	err := r.Do("force-down", StepOptions{Target: in.Host, NoSkip: true}, func(ctx workflow.Context) error {
		if r.Verifies() {
			// The gate may have waited for hours: right before fencing, the host must still be
			// down. One that reports up, or answers SSH when it did not before, is refused.
			if err := recheckDown(r, ctx, in.Host, p); err != nil {
				return err
			}
		}
		down := true
		var s activities.ComputeService
		if err := r.Exec(ctx, "force-down", in.Host, compute.SetComputeService, &s, activities.ServiceChange{Host: in.Host, ForcedDown: &down}); err != nil {
			return err
		}
		reason := recoverReasonPrefix + in.Reason
		if in.Reason == "" {
			reason = "host failure (recover-host)"
		}
		return r.Exec(ctx, "force-down", in.Host, compute.SetComputeService, &s, activities.ServiceChange{Host: in.Host, Disable: true, Reason: reason})
	})
	if err != nil {
		return "", err
	}
	left()
	err = r.Do("evacuate", StepOptions{Target: in.Host}, func(ctx workflow.Context) error {
		return r.moveAll("evacuate", moves, p.parallel, "")
	})
	if err != nil {
		return "", err
	}
	if in.DBRewriteFallback {
		err = dbRewriteFallback(r, in, moves, targets, p.lines)
		left()
		if err != nil {
			return "", err
		}
	}
	moved := 0
	for _, m := range moves {
		if m.Outcome == "moved" {
			moved++
		}
	}
	err = r.Do("verify", StepOptions{Target: in.Host}, func(ctx workflow.Context) error {
		var api []activities.Instance
		if err := r.Exec(ctx, "verify", in.Host, compute.InstancesOnHost, &api, in.Host); err != nil {
			return err
		}
		for _, m := range moves {
			if m.Outcome != "moved" {
				r.AddFinding(activities.SeverityCritical, m.ID, "%s was not rebuilt elsewhere (%s): %s", m.label(), m.Outcome, m.Detail)
			}
		}
		r.step("verify").Detail = fmt.Sprintf("%d of %d instance(s) rebuilt elsewhere and in their expected state; %d still recorded on %s", moved, len(moves), len(api), in.Host)
		return nil
	})
	if err != nil {
		return "", err
	}
	err = r.Do("volumes", StepOptions{Target: in.Host}, func(ctx workflow.Context) error {
		if len(volumes) == 0 {
			r.step("volumes").Detail = "no volume attachments"
			return nil
		}
		newHost, rewritten := map[string]string{}, map[string]bool{}
		for _, m := range moves {
			if m.Outcome == "moved" {
				newHost[m.ID] = m.To
				rewritten[m.ID] = strings.Contains(m.Detail, "by database rewrite")
			}
		}
		var after []activities.VolumeAttachment
		for _, h := range targets {
			var vs []activities.VolumeAttachment
			if err := r.Exec(ctx, "volumes", h, novadb.DBVolumeAttachments, &vs, h); err != nil {
				return err
			}
			after = append(after, vs...)
		}
		r.SetDetail("volumes_after", after)
		attention := 0
		// What was done about each attachment, and precisely why not where the guide detaches
		// and re-attaches (its manual database path only: an evacuation rebuilds through Nova,
		// which re-connects the block-device mappings on the new host itself).
		var actions []string
		for _, v := range volumes {
			switch {
			case newHost[v.InstanceID] == "":
				actions = append(actions, fmt.Sprintf("%s of %s: nothing done (the instance was not rebuilt)", v.VolumeID, v.InstanceID))
			case rewritten[v.InstanceID]:
				actions = append(actions, fmt.Sprintf("%s of %s: NOT detached and re-attached by this runbook, although the guide does so after its database path: that goes through Cinder's attachment API (reset the attachment, then attach to the instance on %s), which recover-host does not drive because it could not be tested (the lab's Cinder cannot attach: LAB.md). Do it by hand: openstack server remove volume %s %s; openstack server add volume %s %s",
					v.VolumeID, v.InstanceID, newHost[v.InstanceID], v.InstanceID, v.VolumeID, v.InstanceID, v.VolumeID))
				attention++
				r.AddFinding(activities.SeverityCritical, "volume/"+v.VolumeID, "volume %s of %s was moved by the database rewrite: detach and re-attach it by hand (see the report's volume_actions)", v.VolumeID, v.InstanceID)
			default:
				actions = append(actions, fmt.Sprintf("%s of %s: no detach/re-attach needed: Nova's evacuation rebuilt the instance on %s with its block-device mappings and re-connected the volume (checked below against the mappings on the new host)", v.VolumeID, v.InstanceID, newHost[v.InstanceID]))
			}
		}
		r.SetDetail("volume_actions", actions)
		for _, v := range volumes {
			i := slices.IndexFunc(after, func(a activities.VolumeAttachment) bool {
				return a.VolumeID == v.VolumeID && a.InstanceID == v.InstanceID
			})
			switch {
			case newHost[v.InstanceID] == "":
				attention++
				r.AddFinding(activities.SeverityCritical, "volume/"+v.VolumeID, "volume %s of %s: the instance was not rebuilt; the volume stays attached to it on the dead host", v.VolumeID, v.InstanceID)
			case i < 0:
				attention++
				r.AddFinding(activities.SeverityCritical, "volume/"+v.VolumeID, "volume %s is no longer mapped to %s after the rebuild: re-attach it", v.VolumeID, v.InstanceID)
			case after[i].Problem != "":
				attention++
				r.AddFinding(activities.SeverityWarning, "volume/"+v.VolumeID, "volume %s of %s on %s: %s (detach and re-attach it if the guest cannot use it)", v.VolumeID, v.InstanceID, newHost[v.InstanceID], after[i].Problem)
			}
		}
		r.step("volumes").Detail = fmt.Sprintf("%d attachment(s), %d need attention", len(volumes), attention)
		return nil
	})
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s: %d of %d instance(s) rebuilt elsewhere; %s", in.Host, moved, len(moves), summarize(r.findings, "no findings")), nil
}

// dbRewriteFallback is the guide's manual path, opt-in and gated (RUNBOOKS.md §2): for each
// instance whose evacuation failed (or stalled and was skipped by an operator), pick a usable
// target (its planned one if still enabled and up, else another of the run's targets), read the
// exact rows that will change, wait at gate db-rewrite (two-person), then per instance rewrite
// instances.host/node with a guarded UPDATE (writable account, databases.nova_rw_dsn) and hard
// reboot it through the API, verifying it ACTIVE on the new host. A step that fails stalls and
// can be retried: the rewrite is idempotent (0 rows affected once done).
func dbRewriteFallback(r *Run, in *RecoverHostInput, moves []Move, targets []string, plan []string) error {
	var failed []int
	for i, m := range moves {
		if m.Kind == activities.MoveEvacuate && (m.Outcome == "failed" || m.Outcome == "skipped") {
			failed = append(failed, i)
		}
	}
	if len(failed) == 0 {
		for _, s := range []string{"db-rewrite-plan", GateDBRewrite, "db-rewrite"} {
			r.setStepState(r.step(s), StepSkipped, "not needed: every evacuation succeeded")
		}
		return nil
	}
	var rows []activities.InstanceRewrite
	err := r.Do("db-rewrite-plan", StepOptions{Target: in.Host}, func(ctx workflow.Context) error {
		var svcs []activities.ComputeService
		if err := r.Exec(ctx, "db-rewrite-plan", in.Host, compute.ComputeServices, &svcs); err != nil {
			return err
		}
		var usable []string
		for _, t := range targets {
			if slices.ContainsFunc(svcs, func(s activities.ComputeService) bool {
				return s.Host == t && s.Status == "enabled" && s.State == "up" && !s.ForcedDown
			}) {
				usable = append(usable, t)
			}
		}
		if len(usable) == 0 {
			// Stalls: an operator can bring a target back and retry, or skip the fallback.
			return fmt.Errorf("none of the targets %s is enabled and up now: nowhere to rewrite the instances to", strings.Join(targets, ", "))
		}
		want := make([]activities.InstanceRewrite, 0, len(failed))
		for k, i := range failed {
			to := moves[i].To
			if !slices.Contains(usable, to) {
				to = usable[k%len(usable)]
			}
			want = append(want, activities.InstanceRewrite{ID: moves[i].ID, FromHost: in.Host, ToHost: to})
		}
		if err := r.Exec(ctx, "db-rewrite-plan", in.Host, novadb.DBRewritePlan, &rows, want); err != nil {
			return err
		}
		r.step("db-rewrite-plan").Detail = fmt.Sprintf("%d instance row(s) to rewrite", len(rows))
		return nil
	})
	if err != nil || r.StepState("db-rewrite-plan") == StepSkipped {
		if err == nil {
			r.setStepState(r.step(GateDBRewrite), StepSkipped, "the fallback was skipped")
			r.setStepState(r.step("db-rewrite"), StepSkipped, "the fallback was skipped")
		}
		return err
	}
	lines := make([]string, 0, len(rows))
	for _, w := range rows {
		lines = append(lines, fmt.Sprintf("%s: %s/%s → %s/%s", w.ID, w.FromHost, w.FromNode, w.ToHost, w.ToNode))
	}
	r.SetDetail("db_rewrites", rows)
	planned := slices.Clone(plan)
	for _, l := range lines {
		planned = append(planned, "db rewrite "+l+", then hard reboot")
	}
	r.SetPlan(planned)
	summary := fmt.Sprintf("DATABASE REWRITE (manual fallback): %d instance(s) could not be evacuated from %s. Approve to change exactly these rows of the Nova database's instances table (uuid: host/node → host/node), then hard-reboot each: %s. Placement allocations are not changed.",
		len(rows), in.Host, strings.Join(lines, "; "))
	if err := r.Gate(GateDBRewrite, GateOptions{Summary: summary}); err != nil {
		return err
	}
	done := 0
	err = r.Do("db-rewrite", StepOptions{Target: in.Host}, func(ctx workflow.Context) error {
		done = 0
		for _, w := range rows {
			i := slices.IndexFunc(moves, func(m Move) bool { return m.ID == w.ID })
			m := &moves[i]
			name := "db-rewrite/" + w.ID
			var res activities.RewriteResult
			var boot activities.HardRebootResult
			err := r.DoIn(ctx, name, StepOptions{Target: m.label()}, func(ctx workflow.Context) error {
				if err := r.Exec(ctx, name, w.ID, novadb.DBRewriteInstanceHost, &res, w); err != nil {
					return err
				}
				actx := r.ActivityOptions(ctx, 6*time.Minute, 30*time.Second)
				return r.Exec(actx, name, w.ID, compute.HardRebootOn, &boot, activities.HardRebootRequest{ID: w.ID, Host: w.ToHost, Wait: 4 * time.Minute})
			})
			if err != nil {
				return err
			}
			s := r.step(name)
			if s.State == StepSkipped {
				s.Detail = fmt.Sprintf("%s: fallback skipped by operator after: %s", m.label(), s.Error)
				continue
			}
			note := fmt.Sprintf("%d row rewritten", res.RowsAffected)
			if res.Already {
				note = "row already rewritten (0 rows affected)"
			}
			m.Outcome, m.To = "moved", w.ToHost
			m.Detail = fmt.Sprintf("%s → %s by database rewrite (%s) + hard reboot: %s on %s", w.FromHost, w.ToHost, note, boot.Status, boot.Host)
			s.Detail = fmt.Sprintf("%s: %s", m.label(), m.Detail)
			done++
		}
		r.step("db-rewrite").Detail = fmt.Sprintf("%d of %d instance(s) rewritten and ACTIVE on their new host", done, len(rows))
		return nil
	})
	if done > 0 {
		r.AddFinding(activities.SeverityWarning, in.Host, "%d instance(s) were moved by rewriting the Nova database: Placement still holds their allocations against %s's resource provider (the rewrite does not touch Placement); move or heal them before %s returns to service", done, in.Host, in.Host)
	}
	return err
}

// recheckDown reads the host's state again right before it is forced down.
func recheckDown(r *Run, ctx workflow.Context, host string, p *recoverHostPlan) error {
	answeredBefore := p.sshAnswered
	svc, _, err := hostService(r, ctx, "force-down", host)
	if err != nil {
		return err
	}
	if svc.State == "up" {
		return refused("nova-compute on %s reports up again (last report %s): the host is not dead; nothing was forced down", host, svc.UpdatedAt.Format("15:04:05"))
	}
	var ssh activities.Reachability
	if err := r.Exec(ctx, "force-down", host, hosts.SSHReachable, &ssh, host); err != nil {
		return err
	}
	if ssh.Reachable && !answeredBefore {
		return refused("%s answers SSH again (%s) since the fencing gate was approved: it may run its instances; nothing was forced down", host, ssh.Detail)
	}
	if p.signals {
		var ping activities.Reachability
		if err := r.Exec(ctx, "force-down", host, hosts.PingAddress, &ping, host); err != nil {
			return err
		}
		if ping.Reachable && !p.pingAnswered {
			return refused("%s answers ping again (%s) since the fencing gate was approved: it may run its instances; nothing was forced down", host, ping.Detail)
		}
	}
	return nil
}

// answerText says what one signal answered.
func answerText(a activities.Reachability) string {
	if a.Reachable {
		return "ANSWERS (" + a.Detail + ")"
	}
	return "no answer (" + a.Detail + ")"
}
