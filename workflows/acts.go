package workflows

import "github.com/stackrun/stackrun/activities"

// Nil pointers through which workflows name activities (the worker registers the real structs):
// workflow.ExecuteActivity(ctx, compute.MoveInstance, ...) names the activity "MoveInstance".
var (
	machine   *activities.Machine
	lease     *activities.Lease
	hosts     *activities.Hosts
	cloud     *activities.Cloud
	compute   *activities.Compute
	novadb    *activities.NovaDB
	swift     *activities.Swift
	checksAct *activities.Checks
)
