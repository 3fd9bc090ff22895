package workerapp

import (
	"context"
	"net/http"
	"slices"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/config"
	"github.com/stackrun/stackrun/internal/infra/checks/store"
	"github.com/stackrun/stackrun/internal/infra/openstack"
)

// checksActivities builds the recurring checks' activities from the checks: section. The
// reports store does not connect until first use, so a worker starts while the database is down.
func checksActivities(cfg *config.Config, c client.Client, hosts *activities.Hosts, swift activities.SwiftCluster,
	clients func(ctx context.Context) (*openstack.Clients, error)) (*activities.Checks, func(), error) {
	ch := cfg.Checks
	ops := slices.Clone(cfg.Policy.Approvers)
	for _, u := range cfg.Chat.Users {
		if !slices.Contains(ops, u.Operator) {
			ops = append(ops, u.Operator)
		}
	}
	slices.Sort(ops)
	a := &activities.Checks{
		Clients: clients, Hosts: hosts, Swift: swift, Temporal: c,
		HTTP: &http.Client{Timeout: 30 * time.Second},
		Settings: activities.CheckSettings{
			AlertmanagerURL: ch.Alertmanager.URL, ReceiverAddress: ch.Alertmanager.ReceiverAddress,
			DeliveryTimeout: ch.Alertmanager.DeliveryTimeout, TicketsURL: ch.TicketsURL,
			FailureDomains: ch.FailureDomains, OSFamilyLabel: ch.OSFamilyLabel, DefaultOSFamily: ch.DefaultOSFamily,
			QuotaPercent: ch.Thresholds.QuotaPercent, DiskPercent: ch.Thresholds.DiskPercent,
			IPFreePercent: ch.Thresholds.IPFreePercent, LargeVCPUs: ch.Thresholds.LargeInstanceVCPUs,
			LargeRAMMB: ch.Thresholds.LargeInstanceRAMMB, AccountMaxInactive: ch.AccountMaxInactive,
			NextRelease: ch.NextRelease, Parallelism: ch.Parallelism, ProbeTimeout: ch.ProbeTimeout,
			ReleaseTable: ch.ReleaseTable, ReleasePackage: ch.ReleasePackage, StuckAfter: ch.StuckAfter, DesiredStateKey: ch.DesiredStateKey,
			Operators: ops,
		},
	}
	closeFn := func() {}
	if ch.ReportsDSN != "" {
		st, err := store.Open(ch.ReportsDSN)
		if err != nil {
			return nil, nil, err
		}
		a.Store = st
		closeFn = func() { _ = st.Close() }
	}
	return a, closeFn, nil
}
