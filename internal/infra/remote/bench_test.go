package remote_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/stackrun/stackrun/internal/infra/remote"
	"github.com/stackrun/stackrun/internal/testenv/sshd"
)

// BenchmarkRunParallel runs `uptime` on N loopback sshd targets with at most P
// commands in flight (one op = one fan-out over all targets), the way a
// runbook fans out. Connections are pooled, so after the first op this
// measures session setup and command time. Compare with
// `parallel-ssh -h hosts -p P cat /proc/uptime`.
func BenchmarkRunParallel(b *testing.B) {
	for _, c := range []struct{ targets, parallel int }{{4, 4}, {8, 4}, {8, 8}} {
		b.Run(fmt.Sprintf("targets=%d/parallel=%d", c.targets, c.parallel), func(b *testing.B) {
			first := sshd.Start(b, sshd.WithLoopback("127.0.1.1"))
			hosts := []remote.Host{hostOf("t0", first)}
			lines := []string{first.KnownHostsLine()}
			for i := 1; i < c.targets; i++ {
				s := sshd.Start(b, sshd.WithLoopback(fmt.Sprintf("127.0.1.%d", i+1)), sshd.WithAuthorizedKeys(first.UserSigner.PublicKey()))
				hosts = append(hosts, hostOf(fmt.Sprintf("t%d", i), s))
				lines = append(lines, s.KnownHostsLine())
			}
			kh := writeKnownHosts(b, lines...)
			p := newPool(b, first, func(o *remote.Options) { o.KnownHostsFile = kh })
			cmd := build(b, "uptime", nil)
			fanOut := func() error {
				sem := make(chan struct{}, c.parallel)
				errs := make(chan error, len(hosts))
				var wg sync.WaitGroup
				for _, h := range hosts {
					wg.Add(1)
					sem <- struct{}{}
					go func() {
						defer wg.Done()
						defer func() { <-sem }()
						res, err := p.Run(context.Background(), h, cmd)
						if err == nil && res.ExitCode != 0 {
							err = fmt.Errorf("%s: exit %d", h.Name, res.ExitCode)
						}
						errs <- err
					}()
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					if err != nil {
						return err
					}
				}
				return nil
			}
			if err := fanOut(); err != nil { // connect outside the timing
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := fanOut(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*len(hosts))/1000, "ms/command")
		})
	}
}
