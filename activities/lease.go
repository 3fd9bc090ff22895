package activities

import (
	"context"
	"errors"
	"fmt"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
)

// Lease talks to the cloud-wide lease workflow through the Temporal client.
type Lease struct {
	Client    client.Client
	TaskQueue string
}

// RequestLease sends "acquire" to the lease workflow, starting it if needed. The grant arrives
// later as a signal to the requesting run. Asking twice is harmless: the lease workflow answers a
// holder's repeated request with the same grant.
func (l *Lease) RequestLease(ctx context.Context, req LeaseRequest) error {
	_, err := l.Client.SignalWithStartWorkflow(ctx, req.LeaseID(), "acquire", req,
		client.StartWorkflowOptions{ID: req.LeaseID(), TaskQueue: l.TaskQueue}, LeaseWorkflowType, LeaseState{Max: req.Max})
	if err != nil {
		return fmt.Errorf("request lease for %s: %w", req.Host, err)
	}
	return nil
}

// ReleaseLease sends "release" to the lease workflow. A lease workflow that no longer runs holds
// nothing, so that is not an error.
func (l *Lease) ReleaseLease(ctx context.Context, req LeaseRequest) error {
	err := l.Client.SignalWorkflow(ctx, req.LeaseID(), "", "release", req)
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return nil
	}
	return err
}

// StillRunning returns which of the given workflow IDs are still running; the lease workflow uses
// it to take back the slots of runs that ended without releasing them (terminated runs).
func (l *Lease) StillRunning(ctx context.Context, ids []string) ([]string, error) {
	var out []string
	for _, id := range ids {
		d, err := l.Client.DescribeWorkflowExecution(ctx, id, "")
		var nf *serviceerror.NotFound
		if errors.As(err, &nf) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if d.WorkflowExecutionInfo.Status == enums.WORKFLOW_EXECUTION_STATUS_RUNNING {
			out = append(out, id)
		}
	}
	return out, nil
}

// LeaseHolder is one run holding or waiting for a slot.
type LeaseHolder struct {
	WorkflowID string `json:"workflow_id"`
	RunID      string `json:"run_id,omitempty"`
	Host       string `json:"host"`
}

// LeaseState is the lease workflow's state, carried across continue-as-new.
type LeaseState struct {
	Max     int           `json:"max"`
	Holders []LeaseHolder `json:"holders"`
	Waiting []LeaseHolder `json:"waiting"`
	// Refused are the last messages the lease refused (a release or an acquire the named run
	// did not send), for the people who look at it.
	Refused []string `json:"refused,omitempty"`
}

// QueryLeaseState and QueryRunLeases are the queries the lease checks go through: the lease
// workflow's state, and the keys a run holds or waits for (workflows registers both).
const (
	QueryLeaseState = "lease"
	QueryRunLeases  = "leases"
)

// LeaseCheck asks whether a run really is a holder of a key of a lease workflow.
type LeaseCheck struct {
	Lease  string      `json:"lease"`
	Holder LeaseHolder `json:"holder"`
}

// Holds reports whether the lease workflow (the real one: running, of the lease workflow type)
// lists the holder. A run checks every grant it receives with it, so that a "lease-granted"
// signal anyone can send grants nothing by itself.
func (l *Lease) Holds(ctx context.Context, c LeaseCheck) (bool, error) {
	d, err := l.Client.DescribeWorkflowExecution(ctx, c.Lease, "")
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	info := d.GetWorkflowExecutionInfo()
	if info.GetType().GetName() != LeaseWorkflowType || info.GetStatus() != enums.WORKFLOW_EXECUTION_STATUS_RUNNING {
		return false, nil
	}
	v, err := l.Client.QueryWorkflow(ctx, c.Lease, info.GetExecution().GetRunId(), QueryLeaseState)
	if err != nil {
		return false, fmt.Errorf("query %s: %w", c.Lease, err)
	}
	var st LeaseState
	if err := v.Get(&st); err != nil {
		return false, err
	}
	for _, h := range st.Holders {
		if h == c.Holder {
			return true, nil
		}
	}
	return false, nil
}

// Wants reports whether the run still holds or waits for the key: the lease workflow asks the
// run itself before it frees a slot on a "release" or grants one on an "acquire", so that neither
// signal, which anyone can send, changes the lease against the run's own state. A run that has
// ended wants nothing; a run that continued as new answers through its chain's open run; a run
// from before the query existed is taken at its word (true).
func (l *Lease) Wants(ctx context.Context, h LeaseHolder) (bool, error) {
	d, err := l.Client.DescribeWorkflowExecution(ctx, h.WorkflowID, h.RunID)
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	runID := h.RunID
	switch info := d.GetWorkflowExecutionInfo(); info.GetStatus() {
	case enums.WORKFLOW_EXECUTION_STATUS_RUNNING:
	case enums.WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW:
		// The holder continued as new (workflows/continue.go): the chain's open run answers,
		// if it is the same chain (one first run) and not a later start of the workflow ID.
		cur, err := l.Client.DescribeWorkflowExecution(ctx, h.WorkflowID, "")
		if err != nil {
			return false, err
		}
		ci := cur.GetWorkflowExecutionInfo()
		if ci.GetStatus() != enums.WORKFLOW_EXECUTION_STATUS_RUNNING || ci.GetFirstRunId() != info.GetFirstRunId() {
			return false, nil
		}
		runID = ci.GetExecution().GetRunId()
	default:
		return false, nil
	}
	v, err := l.Client.QueryWorkflow(ctx, h.WorkflowID, runID, QueryRunLeases)
	var qf *serviceerror.QueryFailed
	if errors.As(err, &qf) {
		return true, nil // no such query: a run from before
	}
	if err != nil {
		return false, fmt.Errorf("query %s: %w", h.WorkflowID, err)
	}
	var keys []string
	if err := v.Get(&keys); err != nil {
		return false, err
	}
	for _, k := range keys {
		if k == h.Host {
			return true, nil
		}
	}
	return false, nil
}

// StartNonceType is the workflow type of the markers ClaimStartNonce starts (workflows.StartNonce,
// a workflow that returns at once).
const StartNonceType = "StartNonce"

// StartNonceClaim claims a start signature's nonce for one run.
type StartNonceClaim struct {
	Nonce      string `json:"nonce"`
	WorkflowID string `json:"workflow_id"`
	RunID      string `json:"run_id"`
}

// ClaimStartNonce makes a start signature single-use across runs: it starts a marker workflow
// whose ID is the nonce, which Temporal refuses to start twice while the namespace keeps it (its
// retention, which must be longer than trust.max_signature_age). It returns false when another run
// claimed the nonce first (a start replayed after its run ended); a retry of the same claim finds
// its own marker and returns true.
func (l *Lease) ClaimStartNonce(ctx context.Context, c StartNonceClaim) (bool, error) {
	id := "stackrun/start-nonce/" + c.Nonce
	_, err := l.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID: id, TaskQueue: l.TaskQueue,
		WorkflowIDReusePolicy:                    enums.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		WorkflowIDConflictPolicy:                 enums.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
		WorkflowExecutionErrorWhenAlreadyStarted: true,
		Memo:                                     map[string]any{"claimed_by": c.WorkflowID + "/" + c.RunID},
	}, StartNonceType)
	var already *serviceerror.WorkflowExecutionAlreadyStarted
	if !errors.As(err, &already) {
		if err != nil {
			return false, fmt.Errorf("claim start nonce: %w", err)
		}
		return true, nil
	}
	d, err := l.Client.DescribeWorkflowExecution(ctx, id, "")
	if err != nil {
		return false, fmt.Errorf("claim start nonce: %w", err)
	}
	var by string
	if p := d.GetWorkflowExecutionInfo().GetMemo().GetFields()["claimed_by"]; p != nil {
		_ = converter.GetDefaultDataConverter().FromPayload(p, &by)
	}
	return by == c.WorkflowID+"/"+c.RunID, nil
}
