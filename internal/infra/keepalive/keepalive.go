// Package keepalive heartbeats every activity of a worker while it runs, so that the server
// notices a dead worker within the activity's heartbeat timeout (20 s, workflows' ActOpts) instead
// of its start-to-close timeout (minutes for an SSH command or a migration poll).
//
// The heartbeat proves the worker process is alive, not that the activity progresses: a stuck
// command is still bounded by its start-to-close timeout and the remote layer's own timeouts.
// Activities that record their own progress (migration polls, refill waits) keep it: the keepalive
// re-sends the last details the activity recorded, never empty ones over them.
package keepalive

import (
	"context"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/interceptor"
)

// Every is how often the keepalive heartbeats (the SDK throttles what it sends to the server).
const Every = 5 * time.Second

// Interceptor returns the worker interceptor that heartbeats every activity with a heartbeat
// timeout, every `every` (Every when 0).
func Interceptor(every time.Duration) interceptor.WorkerInterceptor {
	if every <= 0 {
		every = Every
	}
	return &workerInterceptor{every: every}
}

type workerInterceptor struct {
	interceptor.WorkerInterceptorBase
	every time.Duration
}

func (w *workerInterceptor) InterceptActivity(ctx context.Context, next interceptor.ActivityInboundInterceptor) interceptor.ActivityInboundInterceptor {
	a := &inbound{every: w.every}
	a.Next = next
	return a
}

// inbound is made for each activity execution (the SDK builds the chain per attempt).
type inbound struct {
	interceptor.ActivityInboundInterceptorBase
	every time.Duration
	out   *outbound
}

func (a *inbound) Init(next interceptor.ActivityOutboundInterceptor) error {
	a.out = &outbound{}
	a.out.Next = next
	return a.Next.Init(a.out)
}

func (a *inbound) ExecuteActivity(ctx context.Context, in *interceptor.ExecuteActivityInput) (any, error) {
	info := activity.GetInfo(ctx)
	if info.HeartbeatTimeout <= 0 {
		return a.Next.ExecuteActivity(ctx, in)
	}
	o := a.out
	done := make(chan struct{})
	defer close(done)
	// An attempt that resumes from a previous attempt's details must not have them overwritten
	// before it records its own: until then the keepalive stays silent (such activities heartbeat
	// in their poll loops).
	resumed := activity.HasHeartbeatDetails(ctx)
	go func() {
		t := time.NewTicker(a.every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				if details, ok := o.last(); ok {
					o.Next.RecordHeartbeat(ctx, details...)
				} else if !resumed {
					o.Next.RecordHeartbeat(ctx)
				}
			}
		}
	}()
	return a.Next.ExecuteActivity(ctx, in)
}

// outbound remembers the details the activity itself last recorded.
type outbound struct {
	interceptor.ActivityOutboundInterceptorBase
	mu      sync.Mutex
	details []any
	set     bool
}

func (o *outbound) RecordHeartbeat(ctx context.Context, details ...any) {
	o.mu.Lock()
	o.details, o.set = details, true
	o.mu.Unlock()
	o.Next.RecordHeartbeat(ctx, details...)
}

func (o *outbound) last() ([]any, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.details, o.set
}
