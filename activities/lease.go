package activities

import (
	"context"
	"errors"
	"fmt"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
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
	Host       string `json:"host"`
}

// LeaseState is the lease workflow's state, carried across continue-as-new.
type LeaseState struct {
	Max     int           `json:"max"`
	Holders []LeaseHolder `json:"holders"`
	Waiting []LeaseHolder `json:"waiting"`
}
