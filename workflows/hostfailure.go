package workflows

import (
	"fmt"
	"slices"
	"strings"

	"go.temporal.io/sdk/workflow"

	"github.com/stackrun/stackrun/activities"
)

// GateConfirmHostDead is the fencing gate of HostFailureRecovery: a person confirms the host is
// really dead (powered off, fenced) before its instances are rebuilt elsewhere.
const GateConfirmHostDead = "confirm-host-dead"

// RecoverHostInput is the input of HostFailureRecovery (RUNBOOKS.md §2).
type RecoverHostInput struct {
	Meta
	Host     string   `json:"host" flag:"host" usage:"compute host that died (required)"`
	Targets  []string `json:"targets,omitempty" flag:"to" usage:"target hosts, comma-separated (default: every enabled, up compute host but the dead one)"`
	Parallel int      `json:"parallel" flag:"parallel" usage:"evacuations in flight at once (1-32)"`
}

func (in *RecoverHostInput) GetMeta() *Meta     { return &in.Meta }
func (in *RecoverHostInput) Target() string     { return in.Host }
func (in *RecoverHostInput) WorkflowID() string { return "recover-host/" + in.Host }
func (in *RecoverHostInput) Validate() error {
	e := EvacuateInput{Meta: in.Meta, Host: in.Host, Targets: in.Targets, Parallel: in.Parallel}
	e.Reason = "recover"
	return e.Validate()
}

// VolumeAttachment is one volume attached to an instance of the host.
type VolumeAttachment = activities.VolumeAttachment

// HostFailureRecovery rebuilds the instances of a dead compute host elsewhere: confirm it is down
// (service down, no SSH answer), fence (gate confirm-host-dead), force its service down, list its
// instances and their volumes (API, Nova and Cinder databases), evacuate with at most N in
// flight, verify each ACTIVE (or SHUTOFF, as it was) elsewhere, report volumes that need
// attention. It never rewrites the database: that manual fallback is for a person.
func HostFailureRecovery(ctx workflow.Context, in RecoverHostInput) (*Report, error) {
	r, err := Begin(ctx, "recover-host", in.Host, in.Meta, "describe-host", "confirm-down", "inventory", "capacity", GateConfirmHostDead,
		"acquire-lease", "force-down", "evacuate", "verify", "volumes", "release-lease")
	if err != nil {
		return nil, err
	}
	if err := in.Validate(); err != nil {
		return r.Finish(err, "invalid input")
	}
	var (
		facts     activities.HostFacts
		svc       ComputeService
		targets   []string
		instances []Instance
		volumes   []VolumeAttachment
		moves     []Move
		sshAnswer activities.Reachability
	)
	if facts, err = r.DescribeHost(in.Host); err != nil {
		return r.Finish(err, "refused")
	}
	err = r.Do("confirm-down", StepOptions{Target: in.Host, NoSkip: true}, func(ctx workflow.Context) error {
		if !slices.Contains(facts.Roles, "compute") {
			return refused("host %s has roles %v, not compute", in.Host, facts.Roles)
		}
		var svcs []ComputeService
		if err := r.Exec(ctx, "confirm-down", in.Host, compute.ComputeServices, &svcs); err != nil {
			return err
		}
		i := slices.IndexFunc(svcs, func(s ComputeService) bool { return s.Host == in.Host })
		if i < 0 {
			return refused("host %s has no nova-compute service", in.Host)
		}
		svc = svcs[i]
		if svc.State == "up" {
			return refused("nova-compute on %s reports up (last report %s): the host is not down; for maintenance use evacuate", in.Host, svc.UpdatedAt.Format("15:04:05"))
		}
		if err := r.Exec(ctx, "confirm-down", in.Host, hosts.SSHReachable, &sshAnswer, in.Host); err != nil {
			return err
		}
		if sshAnswer.Reachable {
			r.AddFinding(SeverityCritical, in.Host, "the host still answers SSH (%s): it may still run its instances; fence it (power it off) before confirming", sshAnswer.Detail)
		}
		r.step("confirm-down").Detail = fmt.Sprintf("service %s (forced down %v); SSH answers: %v", svc.State, svc.ForcedDown, sshAnswer.Reachable)
		if len(in.Targets) == 0 {
			for _, s := range svcs {
				if s.Host != in.Host && s.Status == "enabled" && s.State == "up" && !s.ForcedDown {
					targets = append(targets, s.Host)
				}
			}
		} else {
			for _, t := range in.Targets {
				j := slices.IndexFunc(svcs, func(s ComputeService) bool { return s.Host == t })
				if j < 0 {
					return refused("target %s has no nova-compute service", t)
				}
				if svcs[j].Status != "enabled" || svcs[j].State != "up" || svcs[j].ForcedDown {
					return refused("target %s is not usable: %s, %s (forced down %v)", t, svcs[j].Status, svcs[j].State, svcs[j].ForcedDown)
				}
				targets = append(targets, t)
			}
		}
		if len(targets) == 0 {
			return refused("no other compute host is enabled and up: nowhere to rebuild the instances of %s", in.Host)
		}
		return nil
	})
	if err != nil {
		return r.Finish(err, "refused")
	}

	err = r.Do("inventory", StepOptions{Target: in.Host, NoSkip: true}, func(ctx workflow.Context) error {
		if err := r.Exec(ctx, "inventory", in.Host, compute.InstancesOnHost, &instances, in.Host); err != nil {
			return err
		}
		var dbIDs []string
		if err := r.Exec(ctx, "inventory", in.Host, novadb.DBInstancesOnHost, &dbIDs, in.Host); err != nil {
			return err
		}
		crossCheck(r, in.Host, instances, dbIDs)
		if err := r.Exec(ctx, "inventory", in.Host, novadb.DBVolumeAttachments, &volumes, in.Host); err != nil {
			return err
		}
		r.SetDetail("volumes_before", volumes)
		r.step("inventory").Detail = fmt.Sprintf("%d instance(s) (API), %d (database), %d volume attachment(s)", len(instances), len(dbIDs), len(volumes))
		return nil
	})
	if err != nil {
		return r.Finish(err, "")
	}

	err = r.Do("capacity", StepOptions{Target: strings.Join(targets, ","), NoSkip: true}, func(ctx workflow.Context) error {
		var caps []HostCapacity
		if err := r.Exec(ctx, "capacity", strings.Join(targets, ","), compute.Capacity, &caps, targets); err != nil {
			return err
		}
		var perr error
		moves, perr = PlanMoves(in.Host, instances, caps, true)
		if perr != nil {
			return refused("%v", perr)
		}
		return nil
	})
	plan := []string{fmt.Sprintf("host %s: nova-compute %s; SSH answers: %v; %d instance(s), %d volume attachment(s); targets %s; at most %d in flight",
		in.Host, svc.State, sshAnswer.Reachable, len(instances), len(volumes), strings.Join(targets, ", "), in.Parallel),
		fmt.Sprintf("gate %s (fencing), then force nova-compute on %s down and disable it", GateConfirmHostDead, in.Host)}
	plan = append(plan, planLines(moves)...)
	for _, v := range volumes {
		plan = append(plan, fmt.Sprintf("check volume %s of %s after the rebuild", v.VolumeID, v.InstanceID))
	}
	r.SetPlan(plan)
	r.SetDetail("moves", moves)
	if err != nil {
		return r.Finish(err, "refused: capacity")
	}
	if r.DryRun() {
		return r.Finish(nil, "")
	}
	summary := fmt.Sprintf("Confirm that %s is dead and fenced (powered off): %d instance(s) will be rebuilt on %s.", in.Host, len(instances), strings.Join(targets, ", "))
	if sshAnswer.Reachable {
		summary += " WARNING: the host still answers SSH."
	}
	if err := r.Gate(GateConfirmHostDead, GateOptions{Summary: summary}); err != nil {
		return r.Finish(err, "")
	}
	if err := r.AcquireHostLease(in.Host); err != nil {
		return r.Finish(err, "")
	}
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
		r.SetDetail("moves", moves)
	}
	finish := func(err error, summary string) (*Report, error) {
		left()
		r.ReleaseHostLease(in.Host)
		return r.Finish(err, summary)
	}
	err = r.Do("force-down", StepOptions{Target: in.Host, NoSkip: true}, func(ctx workflow.Context) error {
		down := true
		var s ComputeService
		if err := r.Exec(ctx, "force-down", in.Host, compute.SetComputeService, &s, activities.ServiceChange{Host: in.Host, ForcedDown: &down}); err != nil {
			return err
		}
		reason := "host failure: " + in.Reason
		if in.Reason == "" {
			reason = "host failure (recover-host)"
		}
		return r.Exec(ctx, "force-down", in.Host, compute.SetComputeService, &s, activities.ServiceChange{Host: in.Host, Disable: true, Reason: reason})
	})
	if err != nil {
		return finish(err, "")
	}
	left()
	err = r.Do("evacuate", StepOptions{Target: in.Host}, func(ctx workflow.Context) error {
		return r.moveAll("evacuate", moves, in.Parallel, "")
	})
	if err != nil {
		return finish(err, "")
	}
	moved := 0
	for _, m := range moves {
		if m.Outcome == "moved" {
			moved++
		}
	}
	err = r.Do("verify", StepOptions{Target: in.Host}, func(ctx workflow.Context) error {
		var api []Instance
		if err := r.Exec(ctx, "verify", in.Host, compute.InstancesOnHost, &api, in.Host); err != nil {
			return err
		}
		for _, m := range moves {
			if m.Outcome != "moved" {
				r.AddFinding(SeverityCritical, m.ID, "%s was not rebuilt elsewhere (%s): %s", m.label(), m.Outcome, m.Detail)
			}
		}
		r.step("verify").Detail = fmt.Sprintf("%d of %d instance(s) rebuilt elsewhere and in their expected state; %d still recorded on %s", moved, len(moves), len(api), in.Host)
		return nil
	})
	if err != nil {
		return finish(err, "")
	}
	err = r.Do("volumes", StepOptions{Target: in.Host}, func(ctx workflow.Context) error {
		if len(volumes) == 0 {
			r.step("volumes").Detail = "no volume attachments"
			return nil
		}
		newHost := map[string]string{}
		for _, m := range moves {
			if m.Outcome == "moved" {
				newHost[m.ID] = m.To
			}
		}
		var after []VolumeAttachment
		for _, h := range targets {
			var vs []VolumeAttachment
			if err := r.Exec(ctx, "volumes", h, novadb.DBVolumeAttachments, &vs, h); err != nil {
				return err
			}
			after = append(after, vs...)
		}
		r.SetDetail("volumes_after", after)
		attention := 0
		for _, v := range volumes {
			i := slices.IndexFunc(after, func(a VolumeAttachment) bool { return a.VolumeID == v.VolumeID && a.InstanceID == v.InstanceID })
			switch {
			case newHost[v.InstanceID] == "":
				attention++
				r.AddFinding(SeverityCritical, "volume/"+v.VolumeID, "volume %s of %s: the instance was not rebuilt; the volume stays attached to it on the dead host", v.VolumeID, v.InstanceID)
			case i < 0:
				attention++
				r.AddFinding(SeverityCritical, "volume/"+v.VolumeID, "volume %s is no longer mapped to %s after the rebuild: re-attach it", v.VolumeID, v.InstanceID)
			case after[i].Problem != "":
				attention++
				r.AddFinding(SeverityWarning, "volume/"+v.VolumeID, "volume %s of %s on %s: %s (detach and re-attach it if the guest cannot use it)", v.VolumeID, v.InstanceID, newHost[v.InstanceID], after[i].Problem)
			}
		}
		r.step("volumes").Detail = fmt.Sprintf("%d attachment(s), %d need attention", len(volumes), attention)
		return nil
	})
	if err != nil {
		return finish(err, "")
	}
	return finish(nil, fmt.Sprintf("%s: %d of %d instance(s) rebuilt elsewhere; %s", in.Host, moved, len(moves), summarize(r.findings, "no findings")))
}
