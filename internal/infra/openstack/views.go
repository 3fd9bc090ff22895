package openstack

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	cinderservices "github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/services"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/volumes"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/agents"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
)

// Read-only views for triage (the diagnose runbook): servers found by name, address or status
// with their addresses and times, Neutron's agents and ports, Cinder's services and volumes, and
// a timed GET per API. Every call here is a GET.

// ServerDetail is a Server with what triage reads besides: its addresses and its times.
type ServerDetail struct {
	Server
	Addresses []ServerAddress
	Created   time.Time
	Updated   time.Time
	FaultAt   time.Time
}

// ServerAddress is one address of a server on one of its networks.
type ServerAddress struct {
	Network string
	IP      string
	MAC     string // lower case; "" when Nova does not say
}

// ServerQuery filters FindServers. Name and IP are matched exactly (Nova's filters are regular
// expressions: the values are quoted here).
type ServerQuery struct {
	AllTenants   bool
	Name, IP     string
	Status       string    // ERROR, BUILD...
	ChangesSince time.Time // zero: no filter
}

// URL is the request FindServers sends, for reports.
func (q ServerQuery) URL() string {
	opts := q.listOpts()
	v := []string{}
	if opts.AllTenants {
		v = append(v, "all_tenants=1")
	}
	for _, kv := range [][2]string{{"name", opts.Name}, {"ip", opts.IP}, {"status", opts.Status}, {"changes-since", opts.ChangesSince}} {
		if kv[1] != "" {
			v = append(v, kv[0]+"="+kv[1])
		}
	}
	return "GET compute /servers/detail?" + strings.Join(v, "&")
}

func (q ServerQuery) listOpts() servers.ListOpts {
	o := servers.ListOpts{AllTenants: q.AllTenants, Status: q.Status}
	if q.Name != "" {
		o.Name = "^" + regexp.QuoteMeta(q.Name) + "$"
	}
	if q.IP != "" {
		o.IP = "^" + regexp.QuoteMeta(q.IP) + "$"
	}
	if !q.ChangesSince.IsZero() {
		o.ChangesSince = q.ChangesSince.UTC().Format(time.RFC3339)
	}
	return o
}

// FindServers lists the servers matching q (every page), sorted by name then ID.
func (c *Clients) FindServers(ctx context.Context, q ServerQuery) ([]ServerDetail, error) {
	list, err := listAll(ctx, "find servers", servers.List(c.Compute, q.listOpts()), servers.ExtractServers)
	if err != nil {
		return nil, err
	}
	out := convert(list, serverDetailFrom)
	slices.SortFunc(out, func(a, b ServerDetail) int {
		if a.Name != b.Name {
			return strings.Compare(a.Name, b.Name)
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// GetServerDetail returns one server with its addresses and times; a missing one is an error
// for which IsNotFound is true.
func (c *Clients) GetServerDetail(ctx context.Context, id string) (ServerDetail, error) {
	if id == "" {
		return ServerDetail{}, fmt.Errorf("get server: empty id")
	}
	s, err := servers.Get(ctx, c.Compute, id).Extract()
	if err != nil {
		return ServerDetail{}, fmt.Errorf("get server %s: %w", id, err)
	}
	return serverDetailFrom(*s), nil
}

// IsNotFound reports an API's 404.
func IsNotFound(err error) bool {
	var code gophercloud.ErrUnexpectedResponseCode
	return errors.As(err, &code) && code.Actual == http.StatusNotFound || gophercloud.ResponseCodeIs(err, http.StatusNotFound)
}

func serverDetailFrom(s servers.Server) ServerDetail {
	d := ServerDetail{Server: serverFrom(s), Created: s.Created, Updated: s.Updated, FaultAt: s.Fault.Created}
	d.FaultCode = s.Fault.Code
	nets := make([]string, 0, len(s.Addresses))
	for n := range s.Addresses {
		nets = append(nets, n)
	}
	slices.Sort(nets)
	for _, n := range nets {
		list, _ := s.Addresses[n].([]any)
		for _, a := range list {
			m, _ := a.(map[string]any)
			ip, _ := m["addr"].(string)
			mac, _ := m["OS-EXT-IPS-MAC:mac_addr"].(string)
			if ip != "" {
				d.Addresses = append(d.Addresses, ServerAddress{Network: n, IP: ip, MAC: strings.ToLower(mac)})
			}
		}
	}
	return d
}

// Agent is a Neutron agent.
type Agent struct {
	Binary, Host, Type string
	Alive, AdminUp     bool
	Heartbeat          time.Time
}

// NetworkAgents lists Neutron's agents (an empty list on a Neutron without agents).
func (c *Clients) NetworkAgents(ctx context.Context) ([]Agent, error) {
	sc, err := c.need(c.Network, ServiceNetwork)
	if err != nil {
		return nil, err
	}
	list, err := listAll(ctx, "list network agents", agents.List(sc, agents.ListOpts{}), agents.ExtractAgents)
	if err != nil {
		return nil, err
	}
	return convert(list, func(a agents.Agent) Agent {
		return Agent{Binary: a.Binary, Host: a.Host, Type: a.AgentType, Alive: a.Alive, AdminUp: a.AdminStateUp, Heartbeat: a.HeartbeatTimestamp}
	}), nil
}

// Port is a Neutron port, as far as triage needs it.
type Port struct {
	ID, MAC, DeviceOwner, DeviceID, NetworkID string
}

// PortsWithIP lists the ports that hold ip as a fixed IP (in any network).
func (c *Clients) PortsWithIP(ctx context.Context, ip string) ([]Port, error) {
	sc, err := c.need(c.Network, ServiceNetwork)
	if err != nil {
		return nil, err
	}
	list, err := listAll(ctx, "list ports of "+ip, ports.List(sc, ports.ListOpts{FixedIPs: []ports.FixedIPOpts{{IPAddress: ip}}}), ports.ExtractPorts)
	if err != nil {
		return nil, err
	}
	return convert(list, func(p ports.Port) Port {
		return Port{ID: p.ID, MAC: strings.ToLower(p.MACAddress), DeviceOwner: p.DeviceOwner, DeviceID: p.DeviceID, NetworkID: p.NetworkID}
	}), nil
}

// VolumeService is a Cinder service.
type VolumeService struct {
	Binary, Host, State, Status, DisabledReason string
	UpdatedAt                                   time.Time
}

// VolumeServices lists Cinder's services.
func (c *Clients) VolumeServices(ctx context.Context) ([]VolumeService, error) {
	sc, err := c.need(c.BlockStorage, ServiceBlockStorage)
	if err != nil {
		return nil, err
	}
	list, err := listAll(ctx, "list volume services", cinderservices.List(sc, cinderservices.ListOpts{}), cinderservices.ExtractServices)
	if err != nil {
		return nil, err
	}
	return convert(list, func(s cinderservices.Service) VolumeService {
		return VolumeService{Binary: s.Binary, Host: s.Host, State: s.State, Status: s.Status, DisabledReason: s.DisabledReason, UpdatedAt: s.UpdatedAt}
	}), nil
}

// Volume is a Cinder volume.
type Volume struct {
	ID, Name, Status, Host, ProjectID string
	Created, Updated                  time.Time
}

func volumeFrom(v volumes.Volume) Volume {
	return Volume{ID: v.ID, Name: v.Name, Status: v.Status, Host: v.Host, ProjectID: v.TenantID, Created: v.CreatedAt, Updated: v.UpdatedAt}
}

// GetVolume returns one volume.
func (c *Clients) GetVolume(ctx context.Context, id string) (Volume, error) {
	sc, err := c.need(c.BlockStorage, ServiceBlockStorage)
	if err != nil {
		return Volume{}, err
	}
	v, err := volumes.Get(ctx, sc, id).Extract()
	if err != nil {
		return Volume{}, fmt.Errorf("get volume %s: %w", id, err)
	}
	return volumeFrom(*v), nil
}

// ListVolumes lists the volumes of every project with the name and status given ("" = any).
func (c *Clients) ListVolumes(ctx context.Context, name, status string) ([]Volume, error) {
	sc, err := c.need(c.BlockStorage, ServiceBlockStorage)
	if err != nil {
		return nil, err
	}
	list, err := listAll(ctx, "list volumes", volumes.List(sc, volumes.ListOpts{AllTenants: true, Name: name, Status: status}), volumes.ExtractVolumes)
	if err != nil {
		return nil, err
	}
	return convert(list, volumeFrom), nil
}

// APITiming is one timed GET.
type APITiming struct {
	URL    string
	Status int
	Took   time.Duration
}

// TimeAPI sends one cheap GET to an API (identity, compute, placement, image, network,
// block-storage, object-store) and times it. An API not in the catalog wraps
// ErrServiceUnavailable; an answer other than 2xx is an error, with the timing filled.
func (c *Clients) TimeAPI(ctx context.Context, api string) (APITiming, error) {
	var (
		sc   *gophercloud.ServiceClient
		path string
		svc  = api
	)
	switch api {
	case "identity":
		sc, path = c.Identity, "projects?limit=1"
	case "compute":
		sc, path = c.Compute, "servers?limit=1"
	case "placement":
		sc, path = c.Placement, "resource_providers" // limit needs microversion 1.29; the lab has a handful
	case "image":
		sc, path = c.Image, "images?limit=1"
	case "network":
		sc, path = c.Network, "networks?limit=1"
	case "block-storage":
		sc, path = c.BlockStorage, "volumes?limit=1"
	case "object-store":
		sc = c.ObjectStore
	default:
		return APITiming{}, fmt.Errorf("time API: unknown API %q", api)
	}
	sc, err := c.need(sc, svc)
	if err != nil {
		return APITiming{}, err
	}
	url := sc.ServiceURL(path)
	if api == "object-store" {
		url = strings.TrimRight(sc.Endpoint, "/") + "?format=json&limit=1"
	}
	t := APITiming{URL: url}
	start := time.Now()
	resp, err := sc.Get(ctx, url, nil, &gophercloud.RequestOpts{OkCodes: []int{200, 204}})
	t.Took = time.Since(start)
	if resp != nil {
		t.Status = resp.StatusCode
	}
	var code gophercloud.ErrUnexpectedResponseCode
	if errors.As(err, &code) {
		t.Status = code.Actual
	}
	return t, err
}
