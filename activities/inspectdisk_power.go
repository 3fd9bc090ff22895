package activities

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/stackrun/stackrun/internal/infra/openstack"
)

// SuspendInstance takes an ACTIVE instance out of use before its disk is exposed: suspend (its
// memory saved, its disk closed) or, under pause: stop, a clean stop. It checks first: an
// instance already SUSPENDED or SHUTOFF is left as it is; one busy with a task is waited for.
// Any other state (ERROR, PAUSED, ...) is refused: its disk may still be in use.
func (d *DiskInspector) SuspendInstance(ctx context.Context, req PowerRequest) (PowerResult, error) {
	action, target := openstack.PowerSuspend, "SUSPENDED"
	switch req.Mode {
	case PauseSuspend:
	case PauseStop:
		action, target = openstack.PowerStop, "SHUTOFF"
	default:
		return PowerResult{}, invalid("mode %q: must be %s or %s", req.Mode, PauseSuspend, PauseStop)
	}
	return d.power(ctx, req, func(s openstack.Server) (string, bool, error) {
		switch s.Status {
		case "SUSPENDED", "SHUTOFF":
			return "", true, nil
		case "ACTIVE":
			return action, false, nil
		}
		return "", false, refused("instance %s is %s: inspect-disk takes only ACTIVE, SUSPENDED or SHUTOFF instances (the disk may be in use)", s.ID, s.Status)
	}, target)
}

// ResumeInstance gives the instance back ACTIVE: resume from SUSPENDED, start from SHUTOFF,
// nothing when it is ACTIVE already. Any other state is an error that is retried, then stalls
// the step loudly: the instance must not be forgotten.
func (d *DiskInspector) ResumeInstance(ctx context.Context, req PowerRequest) (PowerResult, error) {
	if req.Mode != PauseSuspend && req.Mode != PauseStop {
		return PowerResult{}, invalid("mode %q: must be %s or %s", req.Mode, PauseSuspend, PauseStop)
	}
	return d.power(ctx, req, func(s openstack.Server) (string, bool, error) {
		switch s.Status {
		case "ACTIVE":
			return "", true, nil
		case "SUSPENDED":
			return openstack.PowerResume, false, nil
		case "SHUTOFF":
			return openstack.PowerStart, false, nil
		}
		return "", false, temporal.NewApplicationError(fmt.Sprintf("instance %s is %s: cannot give it back ACTIVE", s.ID, s.Status), "CannotResume")
	}, "ACTIVE")
}

// power waits until the instance has no task, asks decide what to do, acts at most once per
// attempt, and waits until the instance reaches target with no task.
func (d *DiskInspector) power(ctx context.Context, req PowerRequest, decide func(openstack.Server) (string, bool, error), target string) (PowerResult, error) {
	if !ValidInstanceID(req.Instance) {
		return PowerResult{}, invalid("instance %q: not an instance UUID", req.Instance)
	}
	cl, err := d.Compute.clients(ctx)
	if err != nil {
		return PowerResult{}, err
	}
	timeout := req.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Minute
	}
	end := time.Now().Add(timeout)
	res := PowerResult{Instance: req.Instance}
	// A retried attempt knows from its heartbeat that an earlier one already asked Nova.
	if activity.HasHeartbeatDetails(ctx) {
		var acted bool
		if activity.GetHeartbeatDetails(ctx, &acted) == nil {
			res.Acted = acted
		}
	}
	asked := false
	for {
		s, err := cl.GetServer(ctx, req.Instance)
		if err != nil {
			return res, novaError("get server "+req.Instance, err)
		}
		if res.Before == "" {
			res.Before = s.Status
		}
		res.After = s.Status
		activity.RecordHeartbeat(ctx, res.Acted)
		if s.TaskState == "" {
			if s.Status == target {
				return res, nil
			}
			action, done, err := decide(s)
			if err != nil {
				return res, err
			}
			if done {
				return res, nil
			}
			if !asked {
				res.Acted = true
				activity.RecordHeartbeat(ctx, true)
				if err := cl.ServerPowerAction(ctx, req.Instance, action); err != nil {
					// 409: the state changed under us (a task started); look again.
					if !gophercloud.ResponseCodeIs(err, http.StatusConflict) {
						return res, novaError(action+" "+req.Instance, err)
					}
				} else {
					asked = true
				}
			}
		}
		if time.Now().After(end) {
			return res, temporal.NewApplicationError(fmt.Sprintf("instance %s is %s (task %q) after %s, waiting for %s", req.Instance, s.Status, s.TaskState, timeout, target), "PowerTimeout")
		}
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(d.Compute.poll()):
		}
	}
}
