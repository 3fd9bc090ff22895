package activities

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/stackrun/stackrun/internal/infra/openstack"
)

// RecoverInstance brings one instance of a rebooted compute back per policy: a SHUTOFF instance
// is started, an ACTIVE one whose guest does not run is rebooted; when that does not bring it to
// ACTIVE and running, it is hard-rebooted (the hypervisor lost its definition). It checks first:
// a running instance is left alone.
func (c *Compute) RecoverInstance(ctx context.Context, id string, wait time.Duration) (InstanceRecovery, error) {
	cl, err := c.clients(ctx)
	if err != nil {
		return InstanceRecovery{}, err
	}
	in, err := getInstance(ctx, cl, id)
	if err != nil {
		return InstanceRecovery{}, err
	}
	rec := InstanceRecovery{ID: id, Name: in.Name, Before: in.Status, Action: "none", After: in.Status}
	const running = 1
	if wait <= 0 {
		wait = 2 * time.Minute
	}
	healthy := func(i Instance) bool { return i.Status == "ACTIVE" && i.PowerState == running && i.TaskState == "" }
	if healthy(in) || busy(in) {
		return rec, nil
	}
	act := func(action string, do func() error) (Instance, error) {
		rec.Action = action
		if err := do(); err != nil {
			return in, novaError(action+" "+id, err)
		}
		end := time.Now().Add(wait)
		for {
			cur, err := getInstance(ctx, cl, id)
			if err != nil {
				return cur, err
			}
			activity.RecordHeartbeat(ctx, cur.Status)
			if (healthy(cur) || cur.Status == "ERROR") || time.Now().After(end) {
				return cur, nil
			}
			select {
			case <-ctx.Done():
				return cur, ctx.Err()
			case <-time.After(c.poll()):
			}
		}
	}
	var cur Instance
	switch in.Status {
	case "SHUTOFF":
		cur, err = act("start", func() error { return cl.StartServer(ctx, id) })
	case "ACTIVE":
		cur, err = act("reboot", func() error { return cl.RebootServer(ctx, id, openstack.RebootOpts{}) })
	default:
		cur, err = in, nil
	}
	if err != nil && !isRefusal(err) {
		return rec, err
	}
	if err != nil || !healthy(cur) {
		cur, err = act("hard-reboot", func() error { return cl.RebootServer(ctx, id, openstack.RebootOpts{Hard: true}) })
		if err != nil {
			return rec, err
		}
	}
	rec.After = cur.Status
	if !healthy(cur) {
		return rec, temporal.NewApplicationError(fmt.Sprintf("%s (%s) is %s after %s%s", in.Name, id, cur.Status, rec.Action, faultText(cur)), "RecoverFailed")
	}
	return rec, nil
}

func isRefusal(err error) bool {
	var app *temporal.ApplicationError
	return errors.As(err, &app) && app.Type() == "NovaRefused"
}

// SSHReachable asks the host a harmless question over SSH (uptime) and says whether it answered.
// An unreachable host is a result, not an error: fencing decisions need the answer.
func (h *Hosts) SSHReachable(ctx context.Context, host string) (Reachability, error) {
	if _, _, err := h.lookup(host); err != nil {
		return Reachability{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	res, err := h.run(ctx, host, "", "uptime", nil)
	if err != nil {
		var app *temporal.ApplicationError
		if errors.As(err, &app) && app.Type() == ErrTypeHostKey {
			return Reachability{}, err
		}
		return Reachability{Host: host, Reachable: false, Detail: err.Error()}, nil
	}
	return Reachability{Host: host, Reachable: true, Detail: fmt.Sprintf("answered uptime (exit %d): %s", res.ExitCode, strings.TrimSpace(res.Stdout))}, nil
}

// HardRebootOn hard-reboots an instance through the API (the hypervisor recreates the guest from
// the database, as the guide's manual path does after rewriting instances.host) and waits until
// it is ACTIVE, running and idle on req.Host. It refuses an instance that the API does not place
// on req.Host. A retried attempt follows instead of asking again when its heartbeat says the
// reboot was asked or the action log shows one since the first attempt (the answer was lost); an
// instance that is busy rebooting is followed too.
func (c *Compute) HardRebootOn(ctx context.Context, req HardRebootRequest) (HardRebootResult, error) {
	cl, err := c.clients(ctx)
	if err != nil {
		return HardRebootResult{}, err
	}
	in, err := getInstance(ctx, cl, req.ID)
	if err != nil {
		return HardRebootResult{}, err
	}
	res := HardRebootResult{ID: req.ID, Name: in.Name, Before: in.Status, Status: in.Status, Host: in.Host}
	if in.Host != req.Host {
		return res, temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s (%s) is on %q, not %s: not rebooting it", in.Name, req.ID, in.Host, req.Host), ErrTypeRefused, nil)
	}
	// FirstStart reaches a retry in the heartbeat, recorded before the request: a hard reboot
	// whose answer was lost (Nova carried it out, the guest may be up again already) is then
	// found in the action log and followed, not sent a second time.
	var hb struct {
		Asked      bool      `json:"asked"`
		FirstStart time.Time `json:"first_start"`
	}
	resumed := activity.HasHeartbeatDetails(ctx)
	if resumed && activity.GetHeartbeatDetails(ctx, &hb) != nil {
		_ = activity.GetHeartbeatDetails(ctx, &hb.Asked) // an attempt of a worker from before: a bool
	}
	if hb.FirstStart.IsZero() {
		hb.FirstStart = time.Now()
	}
	activity.RecordHeartbeat(ctx, hb)
	if resumed && !hb.Asked && !busy(in) {
		a, err := askedSince(ctx, cl, req.ID, hb.FirstStart, "reboot")
		if err != nil {
			return res, err
		}
		hb.Asked = a != ""
	}
	if !hb.Asked && !busy(in) {
		if err := cl.RebootServer(ctx, req.ID, openstack.RebootOpts{Hard: true}); err != nil {
			return res, novaError("hard reboot of "+req.ID, err)
		}
		hb.Asked = true
		activity.RecordHeartbeat(ctx, hb)
	}
	wait := cmp.Or(req.Wait, 3*time.Minute)
	end := time.Now().Add(wait)
	const running = 1
	for {
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(c.poll()):
		}
		cur, err := getInstance(ctx, cl, req.ID)
		if err != nil {
			return res, err
		}
		res.Status, res.Host = cur.Status, cur.Host
		activity.RecordHeartbeat(ctx, hb)
		if cur.TaskState == "" && cur.Status == "ACTIVE" && cur.PowerState == running && cur.Host == req.Host {
			return res, nil
		}
		if cur.TaskState == "" && cur.Status == "ERROR" {
			return res, temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s (%s) is in ERROR on %s after the hard reboot%s", cur.Name, req.ID, cur.Host, faultText(cur)), "RebootFailed", nil)
		}
		if time.Now().After(end) {
			return res, temporal.NewApplicationError(fmt.Sprintf("%s (%s) is %s (task %q, power state %d) on %s %s after the hard reboot", cur.Name, req.ID, cur.Status, cur.TaskState, cur.PowerState, cur.Host, wait), "RebootTimeout")
		}
	}
}

// LostInstance is an instance the Nova database places on a host that its hypervisor does not run.
type LostInstance struct {
	ID     string `json:"id"`
	Detail string `json:"detail"`
}

// lostAsks is how often LostOnHypervisor asks about one instance before the attempt fails: a
// diagnostics call crosses nova-api -> RabbitMQ -> nova-compute, and one lost RPC reply (Nova's
// MessagingTimeout, a 500 after rpc_response_timeout) must not decide the question.
const lostAsks = 3

// LostOnHypervisor asks, for each ACTIVE instance given, whether the hypervisor runs it
// (diagnostics, answered by nova-compute from the driver), and returns those it does not: the
// hypervisor lost their definition (after a reboot, libvirt's domains or the fake driver's
// memory are gone) while the database still says ACTIVE and running. Read-only. A failed
// question is asked again (lostAsks times); the answers so far are heartbeat details, so a
// retried attempt asks only about the rest. An instance deleted meanwhile (404) is not lost.
func (c *Compute) LostOnHypervisor(ctx context.Context, ids []string) ([]LostInstance, error) {
	cl, err := c.clients(ctx)
	if err != nil {
		return nil, err
	}
	answered := map[string]string{} // id -> why it is lost, "" when the hypervisor runs it
	if activity.IsActivity(ctx) && activity.HasHeartbeatDetails(ctx) {
		_ = activity.GetHeartbeatDetails(ctx, &answered)
	}
	var mu sync.Mutex
	beat := func() {
		mu.Lock()
		defer mu.Unlock()
		heartbeat(ctx, maps.Clone(answered))
	}
	// One call can take Nova's whole RPC timeout (60 s): heartbeat while it runs.
	defer beatEvery(beat)()
	for _, id := range ids {
		mu.Lock()
		_, known := answered[id]
		mu.Unlock()
		if known {
			continue
		}
		why, err := c.askHypervisor(ctx, cl, id)
		if err != nil {
			return nil, err
		}
		mu.Lock()
		answered[id] = why
		mu.Unlock()
		beat()
	}
	out := []LostInstance{}
	for _, id := range ids {
		if why := answered[id]; why != "" && why != deletedMeanwhile {
			out = append(out, LostInstance{ID: id, Detail: why})
		}
	}
	return out, nil
}

// deletedMeanwhile marks an instance that Nova no longer knows (404): not lost, gone.
const deletedMeanwhile = "-deleted"

// askHypervisor asks about one instance, lostAsks times at most: "" when the hypervisor runs
// it, why it does not otherwise.
func (c *Compute) askHypervisor(ctx context.Context, cl *openstack.Clients, id string) (string, error) {
	var last error
	for try := 1; try <= lostAsks; try++ {
		runs, why, err := cl.HypervisorRuns(ctx, id)
		switch {
		case err == nil && runs:
			return "", nil
		case err == nil:
			return why, nil
		}
		last = novaError("ask the hypervisor about "+id, err)
		var app *temporal.ApplicationError
		if errors.As(last, &app) {
			if app.Type() == ErrTypeNotFound {
				return deletedMeanwhile, nil
			}
			if app.NonRetryable() {
				return "", last
			}
		}
		if try < lostAsks {
			select {
			case <-ctx.Done():
				return "", ctx.Err()
			case <-time.After(c.poll()):
			}
		}
	}
	return "", fmt.Errorf("asked %d times: %w", lostAsks, last)
}
