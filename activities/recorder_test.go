package activities

import (
	"context"
	"sync"

	"github.com/stackrun/stackrun/internal/infra/remote"
)

// recorder runs commands over the real pool and records the catalogue name of each, to show
// what ran (diagnose's and upgrade's tests).
type recorder struct {
	Runner
	mu    sync.Mutex
	names []string
}

func (r *recorder) Run(ctx context.Context, h remote.Host, cmd remote.Command) (remote.Result, error) {
	r.mu.Lock()
	r.names = append(r.names, cmd.Name)
	r.mu.Unlock()
	return r.Runner.Run(ctx, h, cmd)
}

// ran returns the names recorded since the last call.
func (r *recorder) ran() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.names
	r.names = nil
	return out
}
