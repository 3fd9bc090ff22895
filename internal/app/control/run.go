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

	"github.com/stackrun/stackrun/activities"
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

// Approve decides an open gate in favour, through the approve update, signed by s for the run
// open now. The workflow's validator answers at once; a refusal comes back as a *RefusedError
// and changes nothing.
func Approve(ctx context.Context, c client.Client, id string, req workflows.GateDecisionRequest, s Signer) (workflows.Decision, error) {
	return DecideGate(ctx, c, id, "", req, true, s)
}

// Reject decides an open gate against, through the reject update; the run then aborts.
func Reject(ctx context.Context, c client.Client, id string, req workflows.GateDecisionRequest, s Signer) (workflows.Decision, error) {
	return DecideGate(ctx, c, id, "", req, false, s)
}

// DecideGate approves or rejects a gate of the run runID of workflow id ("" = the run open now).
// A chat button names the run it was posted for: pressed after that run ended, it decides
// nothing, even when a newer run on the same target waits at a gate of the same name.
func DecideGate(ctx context.Context, c client.Client, id, runID string, req workflows.GateDecisionRequest, approve bool, s Signer) (workflows.Decision, error) {
	update := workflows.UpdateReject
	if approve {
		update = workflows.UpdateApprove
	}
	return decide(ctx, c, id, runID, update, req.Gate, s, func(runID string) (any, error) {
		if s == nil {
			return req, nil
		}
		sig, err := s.Sign(GateStatement(id, runID, req, approve))
		if err != nil {
			return nil, err
		}
		req.Signature = &sig
		return req, nil
	})
}

// Resolve decides a stalled step (retry, skip or abort), through the resolve update, signed by s.
func Resolve(ctx context.Context, c client.Client, id string, req workflows.ResolveRequest, s Signer) (workflows.Decision, error) {
	return ResolveRun(ctx, c, id, "", req, s)
}

// ResolveRun decides a stalled step of the run runID of workflow id ("" = the run open now).
func ResolveRun(ctx context.Context, c client.Client, id, runID string, req workflows.ResolveRequest, s Signer) (workflows.Decision, error) {
	if !slices.Contains([]string{workflows.ResolveRetry, workflows.ResolveSkip, workflows.ResolveAbort}, req.Action) {
		return workflows.Decision{}, fmt.Errorf("action %q: must be retry, skip or abort", req.Action)
	}
	return decide(ctx, c, id, runID, workflows.UpdateResolve, req.Step, s, func(runID string) (any, error) {
		if s == nil {
			return req, nil
		}
		sig, err := s.Sign(ResolveStatement(id, runID, req))
		if err != nil {
			return nil, err
		}
		req.Signature = &sig
		return req, nil
	})
}

// decide sends the update to the run runID, or (signed, runID "") to the run open now, whose run ID
// it signs. It goes to that run only: if another run took the workflow ID meanwhile, the update
// fails instead of deciding the newer run.
func decide(ctx context.Context, c client.Client, id, runID, update, name string, s Signer, arg func(runID string) (any, error)) (workflows.Decision, error) {
	var d workflows.Decision
	if id == "" {
		return d, fmt.Errorf("%s: no run ID", update)
	}
	if name == "" {
		return d, fmt.Errorf("%s: no gate or step named", update)
	}
	if runID == "" && s != nil {
		var err error
		if runID, err = CurrentRunID(ctx, c, id); err != nil {
			return d, err
		}
	}
	a, err := arg(runID)
	if err != nil {
		return d, fmt.Errorf("%s %s on %s: %w", update, name, id, err)
	}
	h, err := c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID:   id,
		RunID:        runID,
		UpdateName:   update,
		Args:         []any{a},
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
	if rep.Record {
		// A child run whose result is the record its parent needs (a staged upgrade's batch):
		// its whole report is its answer to the query report (a worker replays it).
		v, err := c.QueryWorkflow(ctx, id, "", workflows.QueryReport)
		var full workflows.Report
		if err == nil {
			err = v.Get(&full)
		}
		if err == nil {
			return &full, nil
		}
		rep.Findings = append(rep.Findings, activities.Finding{Severity: activities.SeverityWarning, Subject: "report",
			Message: fmt.Sprintf("this is the record %s handed its parent, not its whole report: the run answers the query %q with that once a worker runs (%v)", id, workflows.QueryReport, err)})
	}
	return &rep, nil
}
