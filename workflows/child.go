package workflows

import (
	"fmt"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// The child runs of a runbook (rolling-maintenance's evacuate and post-reboot-check, the staged
// upgrade's batches of compute hosts): each is a runbook's run of its own, started inside one
// step of the parent, named after it, and outliving the parent's worker (Temporal records the
// start, so a replayed parent never starts it twice). A child that ends other than Completed
// stalls the parent's step; retry starts a new child.

// childRunID is the ID of the child run started by step on its attempt-th try: this run's ID +
// "/" + step, and "-<attempt>" from the second (a finished child's ID is not reused).
func (r *Run) childRunID(step string, attempt int) string {
	id := r.info.WorkflowExecution.ID + "/" + step
	if attempt > 1 {
		id += fmt.Sprintf("-%d", attempt)
	}
	return id
}

// childRunContext carries the child's options: its ID, abandoned (not cancelled) when this run
// closes, and its search attributes from its start, so that `stackrun list` shows it at once.
func (r *Run) childRunContext(ctx workflow.Context, id string, rb Runbook, in Input) workflow.Context {
	return workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
		WorkflowID:            id,
		ParentClosePolicy:     enums.PARENT_CLOSE_POLICY_ABANDON,
		WorkflowIDReusePolicy: enums.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE_FAILED_ONLY,
		TypedSearchAttributes: temporal.NewSearchAttributes(
			AttrStatus.ValueSet(string(StatusPlanning)), AttrTarget.ValueSet(rb.Target(in)), AttrRequestedBy.ValueSet(r.meta.RequestedBy)),
	})
}
