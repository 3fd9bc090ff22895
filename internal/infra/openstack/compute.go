package openstack

import (
	"cmp"
	"context"
	"errors"
	"fmt"
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

// ComputeServices lists Nova services, only those of binary unless it is ""
// (all), sorted by host then binary.
func (c *Clients) ComputeServices(ctx context.Context, binary string) ([]Service, error) {
	pages, err := services.List(c.Compute, services.ListOpts{Binary: binary}).AllPages(ctx)
	if err != nil {
		return nil, fmt.Errorf("list compute services: %w", err)
	}
	list, err := services.ExtractServices(pages)
	if err != nil {
		return nil, fmt.Errorf("list compute services: %w", err)
	}
	out := make([]Service, 0, len(list))
	for _, s := range list {
		out = append(out, Service{
			ID:             s.ID,
			Host:           s.Host,
			Binary:         s.Binary,
			Zone:           s.Zone,
			Status:         s.Status,
			State:          s.State,
			DisabledReason: s.DisabledReason,
			ForcedDown:     s.ForcedDown,
			UpdatedAt:      s.UpdatedAt,
		})
	}
	slices.SortFunc(out, func(a, b Service) int {
		return cmp.Or(cmp.Compare(a.Host, b.Host), cmp.Compare(a.Binary, b.Binary))
	})
	return out, nil
}

// Server is a Nova server as runbooks need it.
type Server struct {
	ID                 string
	Name               string
	Status             string // ACTIVE, SHUTOFF, MIGRATING, ERROR...
	TaskState          string // "" when idle; migrating, rebuilding...
	VMState            string // active, stopped, error...
	Host               string // OS-EXT-SRV-ATTR:host
	HypervisorHostname string
	ProjectID          string
	FlavorName         string // original_name of the embedded flavor
	FlavorVCPUs        int
	FlavorRAMMB        int
	FlavorDiskGB       int
	Fault              string // fault message, "" if none
}

// ServersOnHost lists the servers of every project whose compute host is
// host, sorted by name then ID. It needs an admin token: Nova ignores the
// all_tenants and host filters for others, so the result is also filtered
// here on the host attribute.
func (c *Clients) ServersOnHost(ctx context.Context, host string) ([]Server, error) {
	if host == "" {
		return nil, errors.New("servers on host: empty host name")
	}
	pages, err := servers.List(c.Compute, servers.ListOpts{AllTenants: true, Host: host}).AllPages(ctx)
	if err != nil {
		return nil, fmt.Errorf("list servers on %s: %w", host, err)
	}
	list, err := servers.ExtractServers(pages)
	if err != nil {
		return nil, fmt.Errorf("list servers on %s: %w", host, err)
	}
	out := make([]Server, 0, len(list))
	for _, s := range list {
		if s.Host != host {
			continue
		}
		out = append(out, serverFrom(s))
	}
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
		Host:               s.Host,
		HypervisorHostname: s.HypervisorHostname,
		ProjectID:          s.TenantID,
		Fault:              s.Fault.Message,
	}
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
	}
	return 0
}
