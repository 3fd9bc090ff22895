package openstack

import (
	"context"
	"errors"
	"fmt"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/quotasets"
)

// Server actions and service updates the compute runbooks send. Bodies are written out where
// gophercloud's option structs cannot say what Nova accepts: block_migration "auto", a cold
// migration's host, an evacuation without onSharedStorage, forced_down false. Every call
// returns gophercloud's error wrapped (errors.As finds its ErrUnexpectedResponseCode: a 409 is
// an instance that is busy, a 400 a refused request).

// serverAction POSTs body to /servers/{id}/action and accepts only ok.
func (c *Clients) serverAction(ctx context.Context, what, id string, body map[string]any, ok ...int) error {
	if _, err := c.Compute.Post(ctx, c.Compute.ServiceURL("servers", id, "action"), body, nil, &gophercloud.RequestOpts{OkCodes: ok}); err != nil {
		return fmt.Errorf("%s server %s: %w", what, id, err)
	}
	return nil
}

// LiveMigrateOpts: Host "" lets the scheduler choose; BlockMigration is "auto" (also for ""),
// "yes" or "no".
type LiveMigrateOpts struct {
	Host           string
	BlockMigration string
}

// LiveMigrate starts a live migration (os-migrateLive, 2.68: no force).
func (c *Clients) LiveMigrate(ctx context.Context, id string, opts LiveMigrateOpts) error {
	var host any
	if opts.Host != "" {
		host = opts.Host
	}
	var bm any = "auto"
	switch opts.BlockMigration {
	case "yes":
		bm = true
	case "no":
		bm = false
	}
	return c.serverAction(ctx, "live-migrate", id, map[string]any{"os-migrateLive": map[string]any{"host": host, "block_migration": bm}}, 202)
}

// MigrateOpts: Host "" lets the scheduler choose (a host needs 2.56).
type MigrateOpts struct {
	Host string
}

// Migrate starts a cold migration; it ends in VERIFY_RESIZE, for ConfirmResize.
func (c *Clients) Migrate(ctx context.Context, id string, opts MigrateOpts) error {
	m := map[string]any{}
	if opts.Host != "" {
		m["host"] = opts.Host
	}
	return c.serverAction(ctx, "migrate", id, map[string]any{"migrate": m}, 202)
}

// EvacuateOpts: Host "" lets the scheduler choose.
type EvacuateOpts struct {
	Host string
}

// Evacuate rebuilds a server of a down compute elsewhere (2.68: no force, no onSharedStorage).
func (c *Clients) Evacuate(ctx context.Context, id string, opts EvacuateOpts) error {
	m := map[string]any{}
	if opts.Host != "" {
		m["host"] = opts.Host
	}
	return c.serverAction(ctx, "evacuate", id, map[string]any{"evacuate": m}, 200)
}

// ConfirmResize confirms a finished cold migration (VERIFY_RESIZE).
func (c *Clients) ConfirmResize(ctx context.Context, id string) error {
	return c.serverAction(ctx, "confirm resize of", id, map[string]any{"confirmResize": nil}, 202, 204)
}

// StartServer starts a SHUTOFF server (os-start).
func (c *Clients) StartServer(ctx context.Context, id string) error {
	return c.serverAction(ctx, "start", id, map[string]any{"os-start": nil}, 202)
}

// RebootOpts: Hard recreates the guest from the database (the hypervisor lost its definition).
type RebootOpts struct {
	Hard bool
}

// RebootServer reboots a server, soft or hard.
func (c *Clients) RebootServer(ctx context.Context, id string, opts RebootOpts) error {
	typ := "SOFT"
	if opts.Hard {
		typ = "HARD"
	}
	return c.serverAction(ctx, "reboot", id, map[string]any{"reboot": map[string]any{"type": typ}}, 202)
}

// ErrNoLiveMigration: AbortLiveMigration found no migration in progress.
var ErrNoLiveMigration = errors.New("no live migration in progress")

// AbortLiveMigration aborts the server's in-progress live migration (DELETE
// /servers/{id}/migrations/{mid}): Nova's own answer to a migration that never converges.
func (c *Clients) AbortLiveMigration(ctx context.Context, id string) error {
	var res struct {
		Migrations []struct {
			ID int64 `json:"id"`
		} `json:"migrations"`
	}
	if _, err := c.Compute.Get(ctx, c.Compute.ServiceURL("servers", id, "migrations"), &res, nil); err != nil {
		return fmt.Errorf("migrations of server %s: %w", id, err)
	}
	if len(res.Migrations) == 0 {
		return ErrNoLiveMigration
	}
	mid := fmt.Sprint(res.Migrations[0].ID)
	if _, err := c.Compute.Delete(ctx, c.Compute.ServiceURL("servers", id, "migrations", mid), &gophercloud.RequestOpts{OkCodes: []int{202}}); err != nil {
		return fmt.Errorf("abort migration %s of server %s: %w", mid, id, err)
	}
	return nil
}

// ServiceUpdateOpts changes a Nova service (PUT /os-services/{id}, 2.53+): its status (with a
// reason when disabling), or, when ForcedDown is set, only its forced_down flag.
type ServiceUpdateOpts struct {
	Status         string // ServiceStatusEnabled or ServiceStatusDisabled
	DisabledReason string
	ForcedDown     *bool
}

// UpdateService applies opts and returns the service as Nova answers (UpdatedAt is not read).
func (c *Clients) UpdateService(ctx context.Context, id string, opts ServiceUpdateOpts) (Service, error) {
	body := map[string]any{}
	if opts.ForcedDown != nil {
		body["forced_down"] = *opts.ForcedDown
	} else {
		body["status"] = opts.Status
		if opts.DisabledReason != "" {
			body["disabled_reason"] = opts.DisabledReason
		}
	}
	var res struct {
		Service struct {
			ID             string `json:"id"`
			Host           string `json:"host"`
			Binary         string `json:"binary"`
			Zone           string `json:"zone"`
			Status         string `json:"status"`
			State          string `json:"state"`
			DisabledReason string `json:"disabled_reason"`
			ForcedDown     bool   `json:"forced_down"`
		} `json:"service"`
	}
	if _, err := c.Compute.Put(ctx, c.Compute.ServiceURL("os-services", id), body, &res, &gophercloud.RequestOpts{OkCodes: []int{200}}); err != nil {
		return Service{}, fmt.Errorf("update compute service %s: %w", id, err)
	}
	s := res.Service
	return Service{ID: s.ID, Host: s.Host, Binary: s.Binary, Zone: s.Zone, Status: s.Status, State: s.State,
		DisabledReason: s.DisabledReason, ForcedDown: s.ForcedDown}, nil
}

// Quota is one limit of a project and what uses it. Limit -1 is unlimited.
type Quota struct {
	Limit    int
	InUse    int
	Reserved int
}

// ComputeQuotas is what ComputeQuotas reports, in the order the quotas probe reads them.
type ComputeQuotas struct {
	Instances, Cores, RAM, ServerGroups, KeyPairs Quota
}

// ComputeQuotas returns a project's Nova quotas with their usage (os-quota-sets detail).
func (c *Clients) ComputeQuotas(ctx context.Context, projectID string) (ComputeQuotas, error) {
	q, err := quotasets.GetDetail(ctx, c.Compute, projectID).Extract()
	if err != nil {
		return ComputeQuotas{}, fmt.Errorf("nova quotas of project %s: %w", projectID, err)
	}
	of := func(d quotasets.QuotaDetail) Quota {
		return Quota{Limit: d.Limit, InUse: d.InUse, Reserved: d.Reserved}
	}
	return ComputeQuotas{Instances: of(q.Instances), Cores: of(q.Cores), RAM: of(q.RAM), ServerGroups: of(q.ServerGroups), KeyPairs: of(q.KeyPairs)}, nil
}

// BlockStorageQuotas returns a project's Cinder quotas with their usage, by name (volumes,
// gigabytes, snapshots, per volume type...).
func (c *Clients) BlockStorageQuotas(ctx context.Context, projectID string) (map[string]Quota, error) {
	sc, err := c.need(c.BlockStorage, ServiceBlockStorage)
	if err != nil {
		return nil, err
	}
	var body struct {
		QuotaSet map[string]any `json:"quota_set"`
	}
	if _, err := sc.Get(ctx, sc.ServiceURL("os-quota-sets", projectID)+"?usage=true", &body, nil); err != nil {
		return nil, fmt.Errorf("cinder quotas of project %s: %w", projectID, err)
	}
	// gophercloud decodes the numbers of a map[string]any as json.Number (intOf reads both).
	out := map[string]Quota{}
	for k, v := range body.QuotaSet {
		m, ok := v.(map[string]any) // "id" is a string
		if !ok {
			continue
		}
		num := func(k string) int { return intOf(m[k]) }
		out[k] = Quota{Limit: num("limit"), InUse: num("in_use"), Reserved: num("reserved")}
	}
	return out, nil
}
