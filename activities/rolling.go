package activities

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
)

// Rolling maintenance (workflows/rollingmaintenance.go): the inventory's hosts of a role, a host
// reboot over SSH and the wait until the host answers again with a boot time after the reboot.

// HostsWithRole lists the inventory's hosts that have role, in name order, with their facts.
func (h *Hosts) HostsWithRole(ctx context.Context, role string) ([]HostFacts, error) {
	names := make([]string, 0, len(h.Inventory))
	for n, inv := range h.Inventory {
		if slices.Contains(inv.Roles, role) {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	out := make([]HostFacts, 0, len(names))
	for _, n := range names {
		f, err := h.DescribeHost(ctx, n)
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, nil
}

// RebootRequest asks for one host to be rebooted. After is when the run decided to reboot it: a
// boot time at or after it means the reboot happened already (a retried or replayed attempt).
type RebootRequest struct {
	Host  string    `json:"host"`
	After time.Time `json:"after"`
}

// RebootResult says what RebootHost did.
type RebootResult struct {
	// BootBefore is the boot time the host reported before the reboot (zero if it did not answer).
	BootBefore time.Time `json:"boot_before,omitempty"`
	// Issued: the reboot command was sent. Already: the host had booted after After already.
	Issued  bool   `json:"issued,omitempty"`
	Already bool   `json:"already,omitempty"`
	Detail  string `json:"detail,omitempty"`
}

// rebootProgress is RebootHost's heartbeat: a retried attempt must not reboot twice.
type rebootProgress struct {
	Issued     bool      `json:"issued"`
	BootBefore time.Time `json:"boot_before"`
}

// RebootHost reboots a host with the catalogue's host_reboot (systemctl reboot; the lab maps it to
// labctl reboot). It checks first: a host whose boot time is after req.After has rebooted already,
// and an attempt that finds in its heartbeat that it sent the command does not send it again.
// The SSH session may break while the host goes down: that is the reboot, not a failure, when the
// host no longer answers afterwards; WaitForBoot then proves it by the boot time.
func (h *Hosts) RebootHost(ctx context.Context, req RebootRequest) (RebootResult, error) {
	if _, _, err := h.lookup(req.Host); err != nil {
		return RebootResult{}, err
	}
	var hb rebootProgress
	if activity.HasHeartbeatDetails(ctx) {
		_ = activity.GetHeartbeatDetails(ctx, &hb)
	}
	boot, err := h.BootTime(ctx, req.Host)
	switch {
	case err == nil && !boot.Before(req.After.Truncate(time.Second)):
		return RebootResult{BootBefore: hb.BootBefore, Already: true, Issued: hb.Issued,
			Detail: fmt.Sprintf("booted at %s, after the reboot was asked (%s): not rebooted again", boot.Format(time.RFC3339), req.After.Format(time.RFC3339))}, nil
	case hb.Issued:
		return RebootResult{BootBefore: hb.BootBefore, Issued: true, Detail: "reboot sent by an earlier attempt; the host is going down or booting"}, nil
	case err != nil:
		return RebootResult{}, err // the host does not answer, and no reboot was sent: retry
	}
	hb = rebootProgress{Issued: true, BootBefore: boot}
	activity.RecordHeartbeat(ctx, hb)
	res, err := h.run(ctx, req.Host, "", "host_reboot", nil)
	if err == nil && !res.OK() {
		return RebootResult{}, fmt.Errorf("host_reboot on %s: exit %d: %s", req.Host, res.ExitCode, strings.TrimSpace(res.Stderr+res.Stdout))
	}
	detail := "reboot sent: " + strings.TrimSpace(res.Stdout)
	if err != nil {
		// The session broke: the host went down under it (a reboot) or never got the command.
		if _, berr := h.BootTime(ctx, req.Host); berr == nil {
			return RebootResult{}, fmt.Errorf("host_reboot on %s failed and the host still answers: %w", req.Host, err)
		}
		detail = fmt.Sprintf("reboot sent; the session ended as the host went down (%v)", err)
	}
	return RebootResult{BootBefore: boot, Issued: true, Detail: detail}, nil
}

// BootWait asks WaitForBoot to follow a host until it answers with a boot time at or after After.
type BootWait struct {
	Host     string        `json:"host"`
	After    time.Time     `json:"after"`
	Timeout  time.Duration `json:"timeout"`
	Interval time.Duration `json:"interval,omitempty"`
}

// WaitForBoot polls the host over SSH (uptime) until it answers with a boot time at or after
// req.After, heartbeating while it waits; a host that does not come back within the timeout is an
// error (the step stalls). It returns the new boot time.
func (h *Hosts) WaitForBoot(ctx context.Context, req BootWait) (time.Time, error) {
	if _, _, err := h.lookup(req.Host); err != nil {
		return time.Time{}, err
	}
	interval := req.Interval
	if interval <= 0 {
		interval = 3 * time.Second
	}
	start := time.Now()
	var first time.Time
	if activity.HasHeartbeatDetails(ctx) {
		_ = activity.GetHeartbeatDetails(ctx, &first)
	}
	if first.IsZero() {
		first = start
	}
	deadline := first.Add(req.Timeout)
	after := req.After.Truncate(time.Second)
	last := "no answer yet"
	for {
		pctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		boot, err := h.BootTime(pctx, req.Host)
		cancel()
		switch {
		case err == nil && !boot.Before(after):
			return boot, nil
		case err == nil:
			last = fmt.Sprintf("answers, boot time %s (not yet rebooted)", boot.Format(time.RFC3339))
		default:
			last = "does not answer: " + err.Error()
		}
		activity.RecordHeartbeat(ctx, first)
		if time.Now().After(deadline) {
			return time.Time{}, temporal.NewApplicationError(fmt.Sprintf("%s did not come back within %s after the reboot: %s", req.Host, req.Timeout, last), "BootTimeout")
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-time.After(interval):
		}
	}
}
