package workflows

import "go.temporal.io/sdk/workflow"

// Each is the one bounded fan-out of the machinery (migrations, probes, ring distribution): it
// runs fn for the items 0..n-1 in order, each in a coroutine of its own (fn gets its context), at
// most parallel at once. The first error fn returns stops further starts; Each waits for the items
// under way and returns that error. An item fn never started for is left as it was: the caller
// says what that means (a migration "left", say).
func (r *Run) Each(ctx workflow.Context, n, parallel int, fn func(ctx workflow.Context, i int) error) error {
	parallel = max(parallel, 1)
	inflight := 0
	var first error
	for i := 0; i < n; i++ {
		_ = workflow.Await(ctx, func() bool { return inflight < parallel })
		if first != nil {
			break
		}
		inflight++
		workflow.Go(ctx, func(ctx workflow.Context) {
			defer func() { inflight-- }()
			if err := fn(ctx, i); err != nil && first == nil {
				first = err
			}
		})
	}
	_ = workflow.Await(ctx, func() bool { return inflight == 0 })
	return first
}
