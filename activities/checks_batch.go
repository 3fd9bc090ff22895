package activities

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
)

// HostProbesRequest is one batch of a per-host probe: the same probe on several hosts.
type HostProbesRequest struct {
	ProbeRequest
	Targets []string `json:"targets"`
}

// HostProbeResult is one host's answer in a batch: its result, or the error that made it blind.
type HostProbeResult struct {
	Target string      `json:"target"`
	Result ProbeResult `json:"result"`
	Error  string      `json:"error,omitempty"`
}

// HostProbes runs a per-host probe (security-updates, disks) on a batch of hosts at once through
// the worker's SSH pool: one activity (a few Temporal events) instead of one per host, which is
// what a repeated fan-out over a kept pool spends its time on. Each host is tried hostProbeTries
// times, hostProbeBackoff and then twice that apart (an SSH connection cut mid-command twice in a
// row is a flap the next connection usually rides out: the 20 % SSH-fault runs on the lab); a
// host that still fails is an answer (Error), not the batch's failure. Every
// host finished is heartbeated with the results so far, so a retry after a worker died skips them.
func (c *Checks) HostProbes(ctx context.Context, req HostProbesRequest) ([]HostProbeResult, error) {
	probe := c.hostProbe(req.Probe)
	if probe == nil {
		return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("probe %q is not a per-host probe", req.Probe), ErrTypeInvalidInput, nil)
	}
	done := map[string]HostProbeResult{}
	if activity.HasHeartbeatDetails(ctx) {
		_ = activity.GetHeartbeatDetails(ctx, &done)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, t := range req.Targets {
		if _, ok := done[t]; ok {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := req.ProbeRequest
			r.Target = t
			res, err := probe(ctx, r)
			wait := hostProbeBackoff
			for try := 1; try < hostProbeTries && err != nil && retryableProbeErr(err); try++ {
				select {
				case <-ctx.Done():
				case <-time.After(wait):
					res, err = probe(ctx, r)
				}
				if ctx.Err() != nil {
					break
				}
				wait *= 2
			}
			hr := HostProbeResult{Target: t, Result: res}
			if err != nil {
				hr.Result, hr.Error = ProbeResult{}, probeErrText(err)
			}
			mu.Lock()
			defer mu.Unlock()
			done[t] = hr
			activity.RecordHeartbeat(ctx, done)
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := make([]HostProbeResult, 0, len(req.Targets))
	for _, t := range req.Targets {
		out = append(out, done[t])
	}
	return out, nil
}

// hostProbeTries is how often HostProbes tries a host before its error is the answer.
const hostProbeTries = 3

// hostProbeBackoff is the wait before a host's second try (doubled before the third).
var hostProbeBackoff = time.Second

// retryableProbeErr: an error worth another try (not a refusal such as a host-key mismatch).
func retryableProbeErr(err error) bool {
	var app *temporal.ApplicationError
	return !(errors.As(err, &app) && app.NonRetryable())
}

// hostProbe is the per-host probe of that name (nil: not one).
func (c *Checks) hostProbe(name string) func(context.Context, ProbeRequest) (ProbeResult, error) {
	switch name {
	case ProbeSecurityUpdates:
		return c.SecurityUpdatesProbe
	case ProbeDisks:
		return c.DisksProbe
	}
	return nil
}

// IsHostProbe says whether the probe runs per host (batched through HostProbes).
func IsHostProbe(name string) bool { return slices.Contains(perHostProbes, name) }

// probeErrText is the error as the workflow shows an activity's failure: "Type: message" for
// typed application errors.
func probeErrText(err error) string {
	var app *temporal.ApplicationError
	if errors.As(err, &app) && app.Type() != "" && app.Type() != "errorString" && !strings.HasPrefix(app.Type(), "*") {
		return app.Type() + ": " + app.Error()
	}
	return err.Error()
}
