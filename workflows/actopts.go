package workflows

import (
	"cmp"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/stackrun/stackrun/activities"
)

// ActOpts shape the activities of one call site. Zero fields take the machinery's defaults:
// five minutes to run, policy.activity_max_attempts attempts (5 before the policy is loaded) from
// 2 s backing off to a minute, the stable non-retryable error types. Every activity allowed more
// than ActivityHeartbeat to run gets a heartbeat timeout of at most ActivityHeartbeat (the
// worker's keepalive heartbeats each one, internal/infra/keepalive), so that a killed worker
// costs a run less than RecoverWithin before the retry, not the activity's whole timeout.
type ActOpts struct {
	Timeout, Heartbeat   time.Duration
	Attempts             int
	Initial, MaxInterval time.Duration
	NonRetryable         []string
}

// A crash's cost: the server retries an activity whose worker died once its heartbeat timeout
// (or, for short activities, its start-to-close timeout) passes.
const (
	RecoverWithin     = 30 * time.Second
	ActivityHeartbeat = 20 * time.Second
)

// nonRetryable are the error types no retry can fix.
var nonRetryable = []string{activities.ErrTypeInvalidInput, activities.ErrTypeNotFound, activities.ErrTypeRefused, activities.ErrTypeHostKey, activities.ErrTypeAborted}

// options builds activity options from o: the one place they are built (runbooks, the machinery's
// notifications and policy, the lease workflow).
func (o ActOpts) options() workflow.ActivityOptions {
	if o.NonRetryable == nil {
		o.NonRetryable = nonRetryable
	}
	timeout := cmp.Or(o.Timeout, 5*time.Minute)
	hb := o.Heartbeat
	if timeout > ActivityHeartbeat && (hb <= 0 || hb > ActivityHeartbeat) {
		hb = ActivityHeartbeat
	}
	return workflow.ActivityOptions{
		StartToCloseTimeout: timeout,
		HeartbeatTimeout:    hb,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        cmp.Or(o.Initial, 2*time.Second),
			BackoffCoefficient:     2,
			MaximumInterval:        cmp.Or(o.MaxInterval, time.Minute),
			MaximumAttempts:        int32(cmp.Or(o.Attempts, 5)),
			NonRetryableErrorTypes: o.NonRetryable,
		},
	}
}

// WithActivity returns ctx with activity options built from o, policy.activity_max_attempts
// attempts unless o says otherwise.
func (r *Run) WithActivity(ctx workflow.Context, o ActOpts) workflow.Context {
	o.Attempts = cmp.Or(o.Attempts, r.policy.ActivityMaxAttempts)
	return workflow.WithActivityOptions(ctx, o.options())
}

// withLocalActivity is ctx with local activity options from o (the policy is read locally).
func withLocalActivity(ctx workflow.Context, o ActOpts) workflow.Context {
	ao := o.options()
	return workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{StartToCloseTimeout: ao.StartToCloseTimeout, RetryPolicy: ao.RetryPolicy})
}

// ActivityOptions returns ctx with the machinery's activity options and the given timeouts.
func (r *Run) ActivityOptions(ctx workflow.Context, startToClose, heartbeat time.Duration) workflow.Context {
	return r.WithActivity(ctx, ActOpts{Timeout: startToClose, Heartbeat: heartbeat})
}
