package openstack

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/diagnostics"
)

// ServerMigration is a live migration of one server in progress (GET /servers/{id}/migrations,
// 2.23+): Nova lists only running ones, with the hypervisor's progress counters. Nova fills the
// memory and disk counters from libvirt's job info; a driver that does not report them leaves 0.
type ServerMigration struct {
	ID              int64  `json:"id"`
	UUID            string `json:"uuid"`
	Status          string `json:"status"`
	SourceCompute   string `json:"source_compute"`
	DestCompute     string `json:"dest_compute"`
	MemoryTotal     int64  `json:"memory_total_bytes"`
	MemoryProcessed int64  `json:"memory_processed_bytes"`
	MemoryRemaining int64  `json:"memory_remaining_bytes"`
	DiskTotal       int64  `json:"disk_total_bytes"`
	DiskProcessed   int64  `json:"disk_processed_bytes"`
	DiskRemaining   int64  `json:"disk_remaining_bytes"`
	CreatedAt       time.Time
	UpdatedAt       time.Time
}

// Remaining is what is left to copy, memory and disk.
func (m ServerMigration) Remaining() int64 { return m.MemoryRemaining + m.DiskRemaining }

// ServerMigrations lists the server's live migrations in progress.
func (c *Clients) ServerMigrations(ctx context.Context, id string) ([]ServerMigration, error) {
	var res struct {
		Migrations []struct {
			ServerMigration
			CreatedAt string `json:"created_at"`
			UpdatedAt string `json:"updated_at"`
		} `json:"migrations"`
	}
	if _, err := c.Compute.Get(ctx, c.Compute.ServiceURL("servers", id, "migrations"), &res, nil); err != nil {
		return nil, fmt.Errorf("migrations of server %s: %w", id, err)
	}
	out := make([]ServerMigration, 0, len(res.Migrations))
	for _, m := range res.Migrations {
		sm := m.ServerMigration
		sm.CreatedAt, sm.UpdatedAt = novaTime(m.CreatedAt), novaTime(m.UpdatedAt)
		out = append(out, sm)
	}
	return out, nil
}

// novaTime reads Nova's times ("2026-05-01T10:00:00.000000", UTC, no zone); zero when empty.
func novaTime(s string) time.Time {
	for _, layout := range []string{"2006-01-02T15:04:05.999999", time.RFC3339Nano} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC()
		}
	}
	return time.Time{}
}

// ForceCompleteLiveMigration asks Nova to finish the live migration mid of server id now (POST
// /servers/{id}/migrations/{mid}/action {"force_complete": null}, 2.22+): libvirt pauses the
// guest (or switches to post-copy) so that the copy catches up. 202 when accepted; 409 when the
// migration is not running any more.
func (c *Clients) ForceCompleteLiveMigration(ctx context.Context, id string, mid int64) error {
	url := c.Compute.ServiceURL("servers", id, "migrations", fmt.Sprint(mid), "action")
	body := map[string]any{"force_complete": nil}
	if _, err := c.Compute.Post(ctx, url, body, nil, &gophercloud.RequestOpts{OkCodes: []int{202}}); err != nil {
		return fmt.Errorf("force-complete migration %d of server %s: %w", mid, id, err)
	}
	return nil
}

// HypervisorRuns asks the server's compute whether its hypervisor runs it (GET
// /servers/{id}/diagnostics, admin): nova-compute reads the power state from the driver and
// answers 200 only when it is RUNNING, 409 otherwise, which for an ACTIVE server means the
// hypervisor lost it (power state NOSTATE) or stopped it. Read-only. The compute must be up:
// the question goes to it over RPC.
func (c *Clients) HypervisorRuns(ctx context.Context, id string) (bool, string, error) {
	_, err := diagnostics.Get(ctx, c.Compute, id).Extract()
	if err == nil {
		return true, "the hypervisor runs it (diagnostics answered)", nil
	}
	if gophercloud.ResponseCodeIs(err, http.StatusConflict) {
		return false, "the hypervisor does not run it (diagnostics: 409, its power state there is not RUNNING)", nil
	}
	return false, "", fmt.Errorf("diagnostics of server %s: %w", id, err)
}
