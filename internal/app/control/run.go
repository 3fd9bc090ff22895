package control

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/stackrun/stackrun/workflows"
)

// RefusedError is a decision the workflow's validator refused (not an open gate, not an
// approver, the two-person rule...). Nothing changed in the run. Error() is the workflow's
// message, verbatim.
type RefusedError struct {
	WorkflowID string
	Message    string
}

func (e *RefusedError) Error() string { return e.Message }

// IsRefused reports whether err is a validator's refusal.
func IsRefused(err error) bool {
	var r *RefusedError
	return errors.As(err, &r)
}

// notFound turns the server's NotFound into a message that names the run.
func notFound(id string, err error) error {
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return fmt.Errorf("run %s not found (see `stackrun list`)", id)
	}
	return nil
}

// Status asks a run for its status (the status query).
func Status(ctx context.Context, c client.Client, id string) (workflows.Status, error) {
	var st workflows.Status
	if id == "" {
		return st, errors.New("status: no run ID")
	}
	v, err := c.QueryWorkflow(ctx, id, "", workflows.QueryStatus)
	if err != nil {
		if e := notFound(id, err); e != nil {
			return st, e
		}
		return st, fmt.Errorf("status of %s: %w", id, err)
	}
	if err := v.Get(&st); err != nil {
		return st, fmt.Errorf("status of %s: decode: %w", id, err)
	}
	return st, nil
}

// Approve decides an open gate in favour, through the approve update. The workflow's validator
// answers at once; a refusal comes back as a *RefusedError and changes nothing.
func Approve(ctx context.Context, c client.Client, id string, req workflows.GateDecisionRequest) (workflows.Decision, error) {
	return decide(ctx, c, id, workflows.UpdateApprove, req.Gate, req)
}

// Reject decides an open gate against, through the reject update; the run then aborts.
func Reject(ctx context.Context, c client.Client, id string, req workflows.GateDecisionRequest) (workflows.Decision, error) {
	return decide(ctx, c, id, workflows.UpdateReject, req.Gate, req)
}

// Resolve decides a stalled step (retry, skip or abort), through the resolve update.
func Resolve(ctx context.Context, c client.Client, id string, req workflows.ResolveRequest) (workflows.Decision, error) {
	if !slices.Contains([]string{workflows.ResolveRetry, workflows.ResolveSkip, workflows.ResolveAbort}, req.Action) {
		return workflows.Decision{}, fmt.Errorf("action %q: must be retry, skip or abort", req.Action)
	}
	return decide(ctx, c, id, workflows.UpdateResolve, req.Step, req)
}

func decide(ctx context.Context, c client.Client, id, update, name string, arg any) (workflows.Decision, error) {
	var d workflows.Decision
	if id == "" {
		return d, fmt.Errorf("%s: no run ID", update)
	}
	if name == "" {
		return d, fmt.Errorf("%s: no gate or step named", update)
	}
	h, err := c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID:   id,
		UpdateName:   update,
		Args:         []any{arg},
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err == nil {
		err = h.Get(ctx, &d)
	}
	if err != nil {
		if e := notFound(id, err); e != nil {
			return d, e
		}
		var app *temporal.ApplicationError
		if errors.As(err, &app) {
			return d, &RefusedError{WorkflowID: id, Message: app.Message()}
		}
		return d, fmt.Errorf("%s %s on %s: %w", update, name, id, err)
	}
	return d, nil
}

// StillRunningError is Report's answer for a run that has no result yet.
type StillRunningError struct {
	WorkflowID string
	Status     workflows.RunStatus
}

func (e *StillRunningError) Error() string {
	st := string(e.Status)
	if st == "" {
		st = "running"
	}
	return fmt.Sprintf("run %s is still %s; use --wait", e.WorkflowID, st)
}

// Report returns a run's report, the workflow's result. When the run is still open it waits
// (wait) or fails with a *StillRunningError that says what the run is doing.
func Report(ctx context.Context, c client.Client, id string, wait bool) (*workflows.Report, error) {
	if id == "" {
		return nil, errors.New("report: no run ID")
	}
	if !wait {
		desc, err := c.DescribeWorkflowExecution(ctx, id, "")
		if err != nil {
			if e := notFound(id, err); e != nil {
				return nil, e
			}
			return nil, fmt.Errorf("report of %s: %w", id, err)
		}
		if desc.GetWorkflowExecutionInfo().GetStatus() == enums.WORKFLOW_EXECUTION_STATUS_RUNNING {
			e := &StillRunningError{WorkflowID: id}
			if st, err := Status(ctx, c, id); err == nil {
				e.Status = st.Status
			}
			return nil, e
		}
	}
	var rep workflows.Report
	if err := c.GetWorkflow(ctx, id, "").Get(ctx, &rep); err != nil {
		if e := notFound(id, err); e != nil {
			return nil, e
		}
		return nil, fmt.Errorf("report of %s: the run ended without a report: %w", id, err)
	}
	return &rep, nil
}
