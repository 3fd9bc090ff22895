package workflows

import (
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/stackrun/stackrun/activities"
)

// configHoldChange is the workflow.GetVersion change that brought the configuration-management
// hold (RUNBOOKS.md §1 step 6): runs begun before it neither hold nor release.
const configHoldChange = "evacuate-config-hold"

// holdConfig keeps configuration management (systemd, Puppet...) from starting nova-compute again
// while the host is in maintenance: the catalogue commands of policy.config_hold, in order. From
// the moment it is asked, the release is owed: on every way out (an abort at the maintenance
// gate, a stalled step aborted), the run releases it (OnExit).
func (e *evacuation) holdConfig(req activities.ServiceRequest) error {
	r := e.r
	e.config = map[string][]string{}
	skip := func(why string) {
		r.setStepState(r.step("hold-config"), StepSkipped, why)
		r.setStepState(r.step("release-config"), StepSkipped, why)
	}
	if workflow.GetVersion(r.ctx, configHoldChange, workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		skip("run begun before the configuration-management hold existed")
		return nil
	}
	hold := r.Policy().ConfigHold
	if len(hold) == 0 {
		skip("policy.config_hold is empty: nothing keeps configuration management from starting nova-compute")
		r.AddFinding(activities.SeverityWarning, e.in.Host+"/nova-compute", "no configuration-management hold (policy.config_hold is empty): Puppet, Ansible or systemd may start nova-compute during the maintenance")
		return nil
	}
	r.OnExit(func() {
		if e.held {
			_ = e.releaseConfig(req, "release-config-on-exit")
		}
	})
	err := r.Do("hold-config", StepOptions{Target: e.in.Host}, func(ctx workflow.Context) error {
		e.held = true // from here on the release is owed, even if the answer is lost
		var res activities.ConfigManagementResult
		err := r.Exec(ctx, "hold-config", e.in.Host, hosts.ConfigManagement, &res,
			activities.ConfigManagementRequest{ServiceRequest: req, Action: "hold", Commands: hold})
		e.record("hold", hold, res)
		return err
	})
	e.leftState()
	return err
}

// releaseConfig runs policy.config_release (the undo of the hold) as step. On the way out it
// runs in a disconnected context and never stalls: a release that fails is a critical finding
// and the left state says the hold is still on.
func (e *evacuation) releaseConfig(req activities.ServiceRequest, step string) error {
	r := e.r
	if !e.held {
		return nil
	}
	release := r.Policy().ConfigRelease
	r.AddSteps(step)
	run := func(ctx workflow.Context) error {
		var res activities.ConfigManagementResult
		err := r.Exec(ctx, step, e.in.Host, hosts.ConfigManagement, &res,
			activities.ConfigManagementRequest{ServiceRequest: req, Action: "release", Commands: release})
		e.record("release", release, res)
		if err == nil {
			e.held = false
			r.step(step).Detail = "released: " + strings.Join(e.config["release"], "; ")
		}
		return err
	}
	if step == "release-config" {
		err := r.Do(step, StepOptions{Target: e.in.Host, NoSkip: true}, run)
		e.leftState()
		return err
	}
	ctx, _ := workflow.NewDisconnectedContext(r.ctx)
	ctx = r.ActivityOptions(ctx, 2*time.Minute, 0)
	r.setStepState(r.step(step), StepRunning, "releasing the configuration-management hold on the way out")
	if err := run(ctx); err != nil {
		r.setStepState(r.step(step), StepFailed, errText(err))
		r.AddFinding(activities.SeverityCritical, e.in.Host+"/nova-compute", "the configuration-management hold was NOT released on the way out (%s): run %s on %s by hand", errText(err), strings.Join(release, ", "), e.in.Host)
	} else {
		r.setStepState(r.step(step), StepDone, r.step(step).Detail)
	}
	e.leftState()
	return nil
}

// record keeps the commands of a hold or release for the report (detail config_management).
func (e *evacuation) record(action string, names []string, res activities.ConfigManagementResult) {
	lines := res.Ran
	if len(lines) == 0 {
		lines = names
	}
	e.config[action] = lines
	e.r.SetDetail("config_management", e.config)
	if action == "hold" {
		e.r.step("hold-config").Detail = fmt.Sprintf("held: %s", strings.Join(lines, "; "))
	}
}

// migrateBackCapacityChange is the workflow.GetVersion change that made migrate-back read the
// host's free capacity first.
const migrateBackCapacityChange = "evacuate-migrate-back-capacity"

// checkRoomBack reads the host's free capacity from Placement before the instances move back:
// during the maintenance the scheduler may have placed others there (the service was enabled
// again first). A shortfall fails the step (it stalls): free room and retry, or skip to leave the
// instances where they are now.
func (e *evacuation) checkRoomBack(ctx workflow.Context, back []Move) error {
	r, host := e.r, e.in.Host
	if len(back) == 0 || workflow.GetVersion(ctx, migrateBackCapacityChange, workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		return nil
	}
	var caps []activities.HostCapacity
	if err := r.Exec(ctx, "migrate-back", host, compute.Capacity, &caps, []string{host}); err != nil {
		return err
	}
	var v, ram, disk int
	for _, m := range back {
		v, ram, disk = v+m.VCPUs, ram+m.RAMMB, disk+m.DiskGB
	}
	if len(caps) != 1 {
		return fmt.Errorf("capacity of %s: Placement answered for %d host(s)", host, len(caps))
	}
	c := caps[0]
	r.SetDetail("capacity_back", c)
	if c.FreeVCPUs < v || c.FreeRAMMB < ram || c.FreeDiskGB < disk {
		return fmt.Errorf("not enough room on %s to move %d instance(s) back: they need %d vCPU, %d MB RAM, %d GB disk; %s has %d vCPU, %d MB RAM, %d GB disk free (Placement). Free room and retry, or skip to leave them where they are",
			host, len(back), v, ram, disk, host, c.FreeVCPUs, c.FreeRAMMB, c.FreeDiskGB)
	}
	return nil
}
