package openstack

import (
	"context"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/hypervisors"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/migrations"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/usage"
)

// Hypervisor is a Nova hypervisor: its ID is the Placement resource provider's UUID (2.53+).
type Hypervisor struct {
	ID   string
	Host string // the compute service's host
}

// hypervisorMicroversion: from 2.88 the hypervisor list carries each host's uptime, which
// nova-api asks every compute for over RPC, one after the other (60 s each when a compute does
// not answer). At 2.87 the list is a database read.
const hypervisorMicroversion = "2.87"

// ListHypervisors lists the hypervisors (host -> resource provider) at microversion 2.87.
func (c *Clients) ListHypervisors(ctx context.Context) ([]Hypervisor, error) {
	hc := *c.Compute
	hc.Microversion = hypervisorMicroversion
	list, err := listAll(ctx, "list hypervisors", hypervisors.List(&hc, hypervisors.ListOpts{}), hypervisors.ExtractHypervisors)
	if err != nil {
		return nil, err
	}
	return convert(list, func(h hypervisors.Hypervisor) Hypervisor { return Hypervisor{ID: h.ID, Host: h.Service.Host} }), nil
}

// Migration is one record of os-migrations.
type Migration struct {
	ID            int64 // grows with every migration: the newest has the largest
	UUID          string
	InstanceID    string
	MigrationType string // live-migration, migration, resize, evacuation
	Status        string // queued, running, completed, done, error, failed...
	SourceCompute string
	DestCompute   string
	CreatedAt     time.Time
}

// MigrationListOpts filters ListMigrations.
type MigrationListOpts struct {
	InstanceID string // "": every instance
}

// ListMigrations lists migration records in Nova's order.
func (c *Clients) ListMigrations(ctx context.Context, opts MigrationListOpts) ([]Migration, error) {
	var o migrations.ListOpts
	if opts.InstanceID != "" {
		o.InstanceID = &opts.InstanceID
	}
	list, err := listAll(ctx, "list migrations", migrations.List(c.Compute, o), migrations.ExtractMigrations)
	if err != nil {
		return nil, err
	}
	return convert(list, func(m migrations.Migration) Migration {
		return Migration{ID: m.ID, UUID: m.UUID, InstanceID: m.InstanceID, MigrationType: m.MigrationType, Status: m.Status,
			SourceCompute: m.SourceCompute, DestCompute: m.DestCompute, CreatedAt: m.CreatedAt}
	}), nil
}

// TenantUsage is one project's usage over a period (os-simple-tenant-usage, detailed).
type TenantUsage struct {
	ProjectID   string
	VCPUHours   float64
	RAMMBHours  float64
	DiskGBHours float64
	Hours       float64 // instance-hours
	Instances   int     // instances that ran in the period
}

// TenantUsageOpts is the period of ListTenantUsage.
type TenantUsageOpts struct {
	Start, End time.Time
}

// ListTenantUsage lists every project's usage over the period, in Nova's order.
func (c *Clients) ListTenantUsage(ctx context.Context, opts TenantUsageOpts) ([]TenantUsage, error) {
	start, end := opts.Start, opts.End
	list, err := listAll(ctx, "tenant usage",
		usage.AllTenants(c.Compute, usage.AllTenantsOpts{Detailed: true, Start: &start, End: &end}), usage.ExtractAllTenants)
	if err != nil {
		return nil, err
	}
	return convert(list, func(u usage.TenantUsage) TenantUsage {
		return TenantUsage{ProjectID: u.TenantID, VCPUHours: u.TotalVCPUsUsage, RAMMBHours: u.TotalMemoryMBUsage,
			DiskGBHours: u.TotalLocalGBUsage, Hours: u.TotalHours, Instances: len(u.ServerUsages)}
	}), nil
}

// HypervisorServers is one hypervisor and the servers Nova places on it.
type HypervisorServers struct {
	Host    string   // the compute service's host
	Node    string   // hypervisor_hostname
	State   string   // up | down
	Status  string   // enabled | disabled
	Servers []string // server UUIDs
}

// ListHypervisorServers lists every hypervisor with its servers (with_servers, 2.53+), at the
// database-read microversion of ListHypervisors.
func (c *Clients) ListHypervisorServers(ctx context.Context) ([]HypervisorServers, error) {
	hc := *c.Compute
	hc.Microversion = hypervisorMicroversion
	with := true
	list, err := listAll(ctx, "list hypervisors with servers", hypervisors.List(&hc, hypervisors.ListOpts{WithServers: &with}), hypervisors.ExtractHypervisors)
	if err != nil {
		return nil, err
	}
	return convert(list, func(h hypervisors.Hypervisor) HypervisorServers {
		out := HypervisorServers{Host: h.Service.Host, Node: h.HypervisorHostname, State: h.State, Status: h.Status}
		if h.Servers != nil {
			for _, s := range *h.Servers {
				out.Servers = append(out.Servers, s.UUID)
			}
		}
		return out
	}), nil
}
