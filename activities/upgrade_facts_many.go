package activities

import (
	"context"
	"fmt"
	"sync"
)

// PackageFactsManyRequest asks for the packages of one service on many hosts.
type PackageFactsManyRequest struct {
	Hosts   []string `json:"hosts"`
	Service string   `json:"service"`
}

// packageFactsAtOnce bounds the hosts asked at once by one PackageFactsMany.
const packageFactsAtOnce = 8

// PackageFactsMany is PackageFacts for many hosts of one service (a few at a time), in the order
// of req.Hosts: a plan over thousands of compute hosts is then a few activities in the run's
// history instead of one per host (Temporal allows 2,000 pending activities per run). It changes
// nothing; the first host that fails fails it (a retry reads every host again: read-only).
func (u *Upgrade) PackageFactsMany(ctx context.Context, req PackageFactsManyRequest) ([][]PackageFact, error) {
	out := make([][]PackageFact, len(req.Hosts))
	errs := make([]error, len(req.Hosts))
	var mu sync.Mutex
	done := 0
	defer beatEvery(func() {
		mu.Lock()
		n := done
		mu.Unlock()
		heartbeat(ctx, fmt.Sprintf("package facts: %d of %d hosts", n, len(req.Hosts)))
	})()
	sem := make(chan struct{}, packageFactsAtOnce)
	var wg sync.WaitGroup
	for i, h := range req.Hosts {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			out[i], errs[i] = u.PackageFacts(ctx, PackageFactsRequest{Host: h, Service: req.Service})
			mu.Lock()
			done++
			mu.Unlock()
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err // its own type (an unknown host is not retried); it names the host
		}
	}
	return out, nil
}
