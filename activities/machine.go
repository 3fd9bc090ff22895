package activities

import (
	"context"
	"log/slog"

	"github.com/stackrun/stackrun/config/policy"
)

// Machine holds what the runbook machinery itself needs: the worker's policy and where to send
// notifications.
type Machine struct {
	Policy policy.Policy
	// Sinks receive every notification (Slack, Mattermost, a generic webhook: see Notify). The
	// worker builds them from configuration; none means notifications go to the log only.
	Sinks []NotifySink
	Log   *slog.Logger
}

// LoadPolicy returns the worker's policy. Runs as a local activity at the start of every run, so
// the worker's configuration, not the caller's, decides who may approve what.
func (m *Machine) LoadPolicy(ctx context.Context) (policy.Policy, error) {
	return m.Policy, nil
}
