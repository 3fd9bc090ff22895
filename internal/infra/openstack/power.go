package openstack

import (
	"context"
	"fmt"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/instanceactions"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
)

// Power actions on one server (POST /servers/{id}/action). Nova answers 202 and acts
// asynchronously: poll GetServer for the status it leads to.
const (
	PowerSuspend = "suspend" // ACTIVE -> SUSPENDED (the guest's memory is saved, its disk closed)
	PowerResume  = "resume"  // SUSPENDED -> ACTIVE
	PowerStop    = "stop"    // ACTIVE -> SHUTOFF
	PowerStart   = "start"   // SHUTOFF -> ACTIVE
)

// GetServer returns one server. A missing server is gophercloud's 404 error, wrapped.
func (c *Clients) GetServer(ctx context.Context, id string) (Server, error) {
	if id == "" {
		return Server{}, fmt.Errorf("get server: empty id")
	}
	s, err := servers.Get(ctx, c.Compute, id).Extract()
	if err != nil {
		return Server{}, fmt.Errorf("get server %s: %w", id, err)
	}
	return serverFrom(*s), nil
}

// ServerPowerAction asks Nova for one of the Power* actions. It does not check the server's
// state first: callers do (Nova answers 409 when the state does not allow the action).
func (c *Clients) ServerPowerAction(ctx context.Context, id, action string) error {
	var err error
	switch action {
	case PowerSuspend:
		err = servers.Suspend(ctx, c.Compute, id).ExtractErr()
	case PowerResume:
		err = servers.Resume(ctx, c.Compute, id).ExtractErr()
	case PowerStop:
		err = servers.Stop(ctx, c.Compute, id).ExtractErr()
	case PowerStart:
		err = servers.Start(ctx, c.Compute, id).ExtractErr()
	default:
		return fmt.Errorf("server %s: unknown power action %q (suspend, resume, stop or start)", id, action)
	}
	if err != nil {
		return fmt.Errorf("%s server %s: %w", action, id, err)
	}
	return nil
}

// InstanceAction is one entry of a server's action log (os-instance-actions): what was asked
// of it (reboot, start, migrate...) and when Nova started it.
type InstanceAction struct {
	Action    string
	RequestID string
	StartTime time.Time
}

// InstanceActions lists a server's action log. A request whose answer was lost is in it: the
// way to tell "asked, answer lost" from "never asked" before asking again.
func (c *Clients) InstanceActions(ctx context.Context, id string) ([]InstanceAction, error) {
	list, err := listAll(ctx, "instance actions of "+id, instanceactions.List(c.Compute, id, nil), instanceactions.ExtractInstanceActions)
	if err != nil {
		return nil, err
	}
	out := make([]InstanceAction, 0, len(list))
	for _, a := range list {
		out = append(out, InstanceAction{Action: a.Action, RequestID: a.RequestID, StartTime: a.StartTime})
	}
	return out, nil
}
