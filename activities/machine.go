package activities

import (
	"context"
	"log/slog"

	"github.com/stackrun/stackrun/config/policy"
	"github.com/stackrun/stackrun/internal/infra/trust"
)

// Machine holds what the runbook machinery itself needs: the worker's policy and where to send
// notifications.
type Machine struct {
	Policy policy.Policy
	// Keys returns the key policy (who holds which key, what the chat gateway may vouch for),
	// read again whenever its files change, so that a revoked key stops working in waiting runs
	// at their next decision. nil: no keys, every signed message is refused.
	Keys func() (trust.Policy, error)
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

// LoadKeys returns the key policy runs verify signatures against: at the start of every run, and
// again (a local activity in the decision's handler) before a decision is accepted.
func (m *Machine) LoadKeys(ctx context.Context) (trust.Policy, error) {
	if m.Keys == nil {
		return trust.Policy{}, nil
	}
	return m.Keys()
}
