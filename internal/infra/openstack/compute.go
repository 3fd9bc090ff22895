package openstack

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/services"
)

// Service is a Nova service (os-services), e.g. one nova-compute.
type Service struct {
	ID             string // UUID (microversion >= 2.53)
	Host           string
	Binary         string // nova-compute, nova-conductor, nova-scheduler...
	Zone           string
	Status         string // enabled | disabled
	State          string // up | down
	DisabledReason string
	ForcedDown     bool
	UpdatedAt      time.Time
}

// Nova service states and statuses.
const (
	ServiceStatusEnabled  = "enabled"
	ServiceStatusDisabled = "disabled"
	ServiceStateUp        = "up"
	ServiceStateDown      = "down"
)

// ServiceListOpts filters ListServices; empty fields do not filter.
type ServiceListOpts struct {
	Binary string // nova-compute, nova-conductor...
	Host   string
}

// ListServices lists Nova services, sorted by host then binary.
func (c *Clients) ListServices(ctx context.Context, opts ServiceListOpts) ([]Service, error) {
	list, err := listAll(ctx, "list compute services",
		services.List(c.Compute, services.ListOpts{Binary: opts.Binary, Host: opts.Host}), services.ExtractServices)
	if err != nil {
		return nil, err
	}
	out := convert(list, func(s services.Service) Service {
		return Service{
			ID:             s.ID,
			Host:           s.Host,
			Binary:         s.Binary,
			Zone:           s.Zone,
			Status:         s.Status,
			State:          s.State,
			DisabledReason: s.DisabledReason,
			ForcedDown:     s.ForcedDown,
			UpdatedAt:      s.UpdatedAt,
		}
	})
	slices.SortFunc(out, func(a, b Service) int {
		return cmp.Or(cmp.Compare(a.Host, b.Host), cmp.Compare(a.Binary, b.Binary))
	})
	return out, nil
}

// ComputeServices lists Nova services, only those of binary unless it is ""
// (all), sorted by host then binary.
func (c *Clients) ComputeServices(ctx context.Context, binary string) ([]Service, error) {
	return c.ListServices(ctx, ServiceListOpts{Binary: binary})
}

// Server is a Nova server as runbooks need it.
type Server struct {
	ID                 string
	Name               string
	Status             string // ACTIVE, SHUTOFF, MIGRATING, ERROR...
	TaskState          string // "" when idle; migrating, rebuilding...
	VMState            string // active, stopped, error...
	PowerState         int    // 1 running, 4 shutdown...
	Host               string // OS-EXT-SRV-ATTR:host
	HypervisorHostname string
	ProjectID          string
	ImageID            string // "" for a server booted from a volume
	FlavorName         string // original_name of the embedded flavor
	FlavorVCPUs        int
	FlavorRAMMB        int
	FlavorDiskGB       int
	Fault              string // fault message, "" if none
	FaultCode          int
	Updated            time.Time         // last change of the server record
	Metadata           map[string]string // user metadata
}

// ServerListOpts filters ListServers. Nova honours AllTenants and Host for admins only.
type ServerListOpts struct {
	AllTenants bool
	Host       string
	// Limit is the page size (0: Nova's default); every page is read.
	Limit int
}

// ListServers lists servers (details, every page) in Nova's order.
func (c *Clients) ListServers(ctx context.Context, opts ServerListOpts) ([]Server, error) {
	list, err := listAll(ctx, "list servers",
		servers.List(c.Compute, servers.ListOpts{AllTenants: opts.AllTenants, Host: opts.Host, Limit: opts.Limit}), servers.ExtractServers)
	if err != nil {
		return nil, err
	}
	return convert(list, serverFrom), nil
}

// ServersOnHost lists the servers of every project whose compute host is
// host, sorted by name then ID. It needs an admin token: Nova ignores the
// all_tenants and host filters for others, so the result is also filtered
// here on the host attribute.
func (c *Clients) ServersOnHost(ctx context.Context, host string) ([]Server, error) {
	if host == "" {
		return nil, errors.New("servers on host: empty host name")
	}
	list, err := c.ListServers(ctx, ServerListOpts{AllTenants: true, Host: host})
	if err != nil {
		return nil, err
	}
	out := slices.DeleteFunc(list, func(s Server) bool { return s.Host != host })
	slices.SortFunc(out, func(a, b Server) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.ID, b.ID))
	})
	return out, nil
}

func serverFrom(s servers.Server) Server {
	out := Server{
		ID:                 s.ID,
		Name:               s.Name,
		Status:             s.Status,
		TaskState:          s.TaskState,
		VMState:            s.VmState,
		PowerState:         int(s.PowerState),
		Host:               s.Host,
		HypervisorHostname: s.HypervisorHostname,
		ProjectID:          s.TenantID,
		Fault:              s.Fault.Message,
		FaultCode:          s.Fault.Code,
		Updated:            s.Updated,
		Metadata:           s.Metadata,
	}
	out.ImageID, _ = s.Image["id"].(string)
	// Embedded flavor (microversion >= 2.47).
	if f := s.Flavor; f != nil {
		out.FlavorName, _ = f["original_name"].(string)
		out.FlavorVCPUs = intOf(f["vcpus"])
		out.FlavorRAMMB = intOf(f["ram"])
		out.FlavorDiskGB = intOf(f["disk"])
	}
	return out
}

func intOf(v any) int {
	switch x := v.(type) {
	case float64:
		return int(x)
	case int:
		return x
	case json.Number:
		if n, err := x.Int64(); err == nil {
			return int(n)
		}
		f, _ := x.Float64()
		return int(f)
	}
	return 0
}
