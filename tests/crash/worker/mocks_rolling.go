package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/worker"

	"github.com/stackrun/stackrun/activities"
)

// Rolling maintenance's reboot (activities/rolling.go): the world holds each host's boot time
// (boot/<host>, RFC 3339, whole seconds as uptime gives it; an hour ago until the host reboots).
// A reboot is one effect, done only when the host has not booted since the run asked for it (the
// real RebootHost checks the boot time first); the host comes back at once, its nova-compute with
// it (the service reports again: mockCompute.service).

func registerRolling(w worker.Worker, h *mockHosts) {
	reg := func(name string, fn any) { w.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: name}) }
	reg("RebootHost", h.RebootHost)
	reg("WaitForBoot", h.WaitForBoot)
}

func bootKey(host string) string { return "boot/" + host }

// bootTime is the host's boot time in the world: an hour ago (the hour it is in) until rebooted.
func bootTime(v string) time.Time {
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t
	}
	return time.Now().Add(-time.Hour).Truncate(time.Hour)
}

// RebootHost reboots unless the host booted at or after req.After; the check and the reboot are
// one step under the store's lock.
func (h *mockHosts) RebootHost(ctx context.Context, req activities.RebootRequest) (activities.RebootResult, error) {
	time.Sleep(work)
	after := req.After.Truncate(time.Second)
	var res activities.RebootResult
	h.st.locked(func() {
		before := bootTime(h.st.world[bootKey(req.Host)])
		if !before.Before(after) {
			res = activities.RebootResult{Already: true, Detail: fmt.Sprintf("booted at %s, after the reboot was asked: not rebooted again", before.Format(time.RFC3339))}
			return
		}
		now := time.Now().UTC().Truncate(time.Second)
		b, _ := json.Marshal([2]string{bootKey(req.Host), now.Format(time.RFC3339)})
		appendLine(filepath.Join(h.st.Dir, "world.log"), string(b))
		h.st.follow()
		appendLine(filepath.Join(h.st.Dir, "effects.log"), "reboot "+req.Host)
		res = activities.RebootResult{BootBefore: before, Issued: true, Detail: "reboot sent"}
	})
	return res, nil
}

// WaitForBoot answers the host's boot time once it is at or after req.After. The mocked host
// comes back at once: one that has not rebooted was never rebooted (retried, then the step stalls).
func (h *mockHosts) WaitForBoot(ctx context.Context, req activities.BootWait) (time.Time, error) {
	time.Sleep(work)
	boot := bootTime(h.st.Get(bootKey(req.Host)))
	if boot.Before(req.After.Truncate(time.Second)) {
		return time.Time{}, fmt.Errorf("%s answers with boot time %s: not rebooted since %s", req.Host, boot.Format(time.RFC3339), req.After.Format(time.RFC3339))
	}
	return boot, nil
}
