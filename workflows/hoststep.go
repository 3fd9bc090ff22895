package workflows

import (
	"go.temporal.io/sdk/workflow"

	"github.com/stackrun/stackrun/activities"
)

// DescribeHost runs the step "describe-host": what the worker's inventory knows about the host
// (address, roles, labels, the services of its roles). An unknown host ends the run (NotFound).
func (r *Run) DescribeHost(host string) (activities.HostFacts, error) {
	var facts activities.HostFacts
	err := r.Do("describe-host", StepOptions{Target: host, NoSkip: true}, func(ctx workflow.Context) error {
		return r.Exec(ctx, "describe-host", host, hosts.DescribeHost, &facts, host)
	})
	return facts, err
}
