package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/stackrun/stackrun/activities"
)

// InstanceRecovery is what the post-reboot check did to one instance of a compute.
type InstanceRecovery = activities.InstanceRecovery

func computeInstancesPlan(in PostRebootCheckInput) string {
	if in.StartInstances {
		return fmt.Sprintf("list the instances on %s; start SHUTOFF ones and reboot those whose guest does not run (hard reboot when a soft one fails)", in.Host)
	}
	return fmt.Sprintf("list the instances on %s and report those that do not run (read-only; --start-instances starts them)", in.Host)
}

// healthyInstance is an ACTIVE instance whose guest runs (power state 1) and that no task holds.
func healthyInstance(i Instance) bool {
	return i.Status == "ACTIVE" && i.PowerState == 1 && i.TaskState == ""
}

// computeInstances is the compute part of the post-reboot check: the host's instances are listed
// and, with StartInstances, brought back one by one (RecoverInstance checks each first).
func (r *Run) computeInstances(in PostRebootCheckInput) error {
	r.AddSteps("instances")
	var list []Instance
	err := r.Do("instances", StepOptions{Target: in.Host}, func(ctx workflow.Context) error {
		if err := r.Exec(ctx, "instances", in.Host, compute.InstancesOnHost, &list, in.Host); err != nil {
			return err
		}
		var down []Instance
		for _, i := range list {
			if !healthyInstance(i) {
				down = append(down, i)
			}
		}
		r.SetDetail("instances", list)
		if !in.StartInstances {
			for _, i := range down {
				r.AddFinding(SeverityWarning, in.Host+"/"+i.ID, "%s (%s) is %s (power state %d) after the reboot", i.Name, i.ID, i.Status, i.PowerState)
			}
			r.step("instances").Detail = fmt.Sprintf("%d instance(s), %d not running (listed only)", len(list), len(down))
			return nil
		}
		var done []InstanceRecovery
		actx := r.ActivityOptions(ctx, 10*time.Minute, time.Minute)
		for _, i := range down {
			var rec InstanceRecovery
			if err := r.Exec(actx, "instances", i.ID, compute.RecoverInstance, &rec, i.ID, 3*time.Minute); err != nil {
				r.AddFinding(SeverityCritical, in.Host+"/"+i.ID, "%s (%s) could not be brought back: %s", i.Name, i.ID, errText(err))
				continue
			}
			done = append(done, rec)
		}
		r.SetDetail("recovered", done)
		r.step("instances").Detail = fmt.Sprintf("%d instance(s), %d were not running, %d brought back", len(list), len(down), len(done))
		return nil
	})
	return err
}
