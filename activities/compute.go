package activities

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"go.temporal.io/sdk/temporal"

	"github.com/stackrun/stackrun/internal/infra/openstack"
)

// Compute drives Nova and Placement for the compute runbooks (evacuation, host failure
// recovery, post-reboot starts). Every action checks the world first, so that a retried or
// replayed activity never starts a second migration or evacuation.
type Compute struct {
	// Clients connects lazily on first use.
	Clients func(ctx context.Context) (*openstack.Clients, error)
	// PollInterval between looks at a moving instance (default 2 s).
	PollInterval time.Duration
}

// Minimum compute microversions the compute activities rely on (LAB.md): services by UUID and
// disable with reason (2.53), migrations with uuid (2.59), block_migration "auto" (2.25), no
// "force" on live migration and evacuation (2.68), host on cold migration (2.56).
const minComputeMicroversion = 68

// Move kinds.
const (
	MoveLive     = "live"
	MoveCold     = "cold"
	MoveEvacuate = "evacuate"
)

func (c *Compute) clients(ctx context.Context) (*openstack.Clients, error) {
	if c == nil || c.Clients == nil {
		return nil, temporal.NewNonRetryableApplicationError("OpenStack is "+errNotConfigured.Error(), ErrTypeRefused, nil)
	}
	cl, err := c.Clients(ctx)
	if err != nil {
		return nil, err
	}
	if err := checkMicroversion(cl.Compute.Microversion); err != nil {
		return nil, err
	}
	return cl, nil
}

func checkMicroversion(mv string) error {
	var major, minor int
	if _, err := fmt.Sscanf(mv, "%d.%d", &major, &minor); err != nil || major != 2 || minor < minComputeMicroversion {
		return temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("compute microversion %q: the compute runbooks need 2.%d or later (openstack.compute_microversion)", mv, minComputeMicroversion),
			ErrTypeRefused, nil)
	}
	return nil
}

func (c *Compute) poll() time.Duration {
	if c.PollInterval > 0 {
		return c.PollInterval
	}
	return 2 * time.Second
}

// novaError maps a gophercloud error: 404 is NotFound, 400 and 403 cannot be fixed by retrying,
// 409 (instance busy) and 5xx are retried.
func novaError(what string, err error) error {
	if err == nil {
		return nil
	}
	var code gophercloud.ErrUnexpectedResponseCode
	if errors.As(err, &code) {
		msg := fmt.Sprintf("%s: HTTP %d: %s", what, code.Actual, strings.TrimSpace(string(code.Body)))
		switch code.Actual {
		case http.StatusNotFound:
			return temporal.NewNonRetryableApplicationError(msg, ErrTypeNotFound, nil)
		case http.StatusBadRequest, http.StatusForbidden:
			return temporal.NewNonRetryableApplicationError(msg, "NovaRefused", nil)
		}
		return temporal.NewApplicationError(msg, "NovaError")
	}
	return fmt.Errorf("%s: %w", what, err)
}

// ComputeServices lists every nova-compute service, sorted by host.
func (c *Compute) ComputeServices(ctx context.Context) ([]ComputeService, error) {
	cl, err := c.clients(ctx)
	if err != nil {
		return nil, err
	}
	return computeServices(ctx, cl)
}

func computeServices(ctx context.Context, cl *openstack.Clients) ([]ComputeService, error) {
	list, err := cl.ComputeServices(ctx, "nova-compute")
	if err != nil {
		return nil, novaError("list compute services", err)
	}
	out := make([]ComputeService, 0, len(list))
	for _, s := range list {
		out = append(out, ComputeService{Host: s.Host, ID: s.ID, Status: s.Status, State: s.State,
			DisabledReason: s.DisabledReason, ForcedDown: s.ForcedDown, UpdatedAt: s.UpdatedAt})
	}
	return out, nil
}

func findService(list []ComputeService, host string) (ComputeService, error) {
	for _, s := range list {
		if s.Host == host {
			return s, nil
		}
	}
	hosts := make([]string, len(list))
	for i, s := range list {
		hosts[i] = s.Host
	}
	return ComputeService{}, temporal.NewNonRetryableApplicationError(
		fmt.Sprintf("no nova-compute service on host %q (compute hosts: %s)", host, strings.Join(hosts, ", ")), ErrTypeNotFound, nil)
}

// InstancesOnHost lists the instances of every project on host, from the Nova API.
func (c *Compute) InstancesOnHost(ctx context.Context, host string) ([]Instance, error) {
	cl, err := c.clients(ctx)
	if err != nil {
		return nil, err
	}
	if host == "" {
		return nil, temporal.NewNonRetryableApplicationError("instances on host: empty host name", ErrTypeInvalidInput, nil)
	}
	list, err := cl.ServersOnHost(ctx, host) // filtered on the host attribute, sorted by name then ID
	if err != nil {
		return nil, novaError("list servers on "+host, err)
	}
	out := []Instance{}
	for _, s := range list {
		out = append(out, instanceFrom(s))
	}
	return out, nil
}

// GetInstance returns one instance.
func (c *Compute) GetInstance(ctx context.Context, id string) (Instance, error) {
	cl, err := c.clients(ctx)
	if err != nil {
		return Instance{}, err
	}
	return getInstance(ctx, cl, id)
}

func getInstance(ctx context.Context, cl *openstack.Clients, id string) (Instance, error) {
	s, err := cl.GetServer(ctx, id)
	if err != nil {
		return Instance{}, novaError("get server "+id, err)
	}
	return instanceFrom(s), nil
}

func instanceFrom(s openstack.Server) Instance {
	return Instance{ID: s.ID, Name: s.Name, Status: s.Status, TaskState: s.TaskState, PowerState: s.PowerState,
		Host: s.Host, ProjectID: s.ProjectID, Fault: s.Fault, VCPUs: s.FlavorVCPUs, RAMMB: s.FlavorRAMMB, DiskGB: s.FlavorDiskGB}
}

// Capacity returns the free vCPU, RAM and disk of each host from Placement (inventory minus
// reserved, times the allocation ratio, minus usage). The resource provider of a host is its
// hypervisor, whose ID is the provider's UUID from compute microversion 2.53 on.
func (c *Compute) Capacity(ctx context.Context, hosts []string) ([]HostCapacity, error) {
	cl, err := c.clients(ctx)
	if err != nil {
		return nil, err
	}
	if cl.Placement == nil {
		return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("placement: %v", cl.ServiceError(openstack.ServicePlacement)), ErrTypeRefused, nil)
	}
	hvs, err := cl.ListHypervisors(ctx) // at 2.87, a database read (see there)
	if err != nil {
		return nil, novaError("list hypervisors", err)
	}
	out := make([]HostCapacity, 0, len(hosts))
	for _, h := range hosts {
		var rp string
		for _, hv := range hvs {
			if hv.Host == h {
				rp = hv.ID
			}
		}
		if rp == "" {
			return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("host %s has no hypervisor in Nova", h), ErrTypeNotFound, nil)
		}
		inv, err := cl.ProviderInventories(ctx, rp)
		if err != nil {
			return nil, novaError("placement inventories of "+h, err)
		}
		use, err := cl.ProviderUsages(ctx, rp)
		if err != nil {
			return nil, novaError("placement usages of "+h, err)
		}
		free := func(class string) int {
			i, ok := inv[class]
			if !ok {
				return 0
			}
			ratio := i.AllocationRatio
			if ratio <= 0 {
				ratio = 1
			}
			return int(math.Floor(float64(i.Total-i.Reserved)*ratio)) - use[class]
		}
		out = append(out, HostCapacity{Host: h, Provider: rp, FreeVCPUs: free("VCPU"), FreeRAMMB: free("MEMORY_MB"), FreeDiskGB: free("DISK_GB")})
	}
	return out, nil
}

// SetComputeService enables or disables a host's nova-compute (with the reason), or sets its
// forced_down flag. It reads the service first and does nothing when it is already so.
func (c *Compute) SetComputeService(ctx context.Context, ch ServiceChange) (ComputeService, error) {
	cl, err := c.clients(ctx)
	if err != nil {
		return ComputeService{}, err
	}
	list, err := computeServices(ctx, cl)
	if err != nil {
		return ComputeService{}, err
	}
	s, err := findService(list, ch.Host)
	if err != nil {
		return ComputeService{}, err
	}
	var opts openstack.ServiceUpdateOpts
	switch {
	case ch.ForcedDown != nil:
		if s.ForcedDown == *ch.ForcedDown {
			return s, nil
		}
		opts.ForcedDown = ch.ForcedDown
	case ch.Disable:
		if s.Status == openstack.ServiceStatusDisabled && s.DisabledReason == ch.Reason {
			return s, nil
		}
		opts.Status, opts.DisabledReason = openstack.ServiceStatusDisabled, ch.Reason
	case ch.Enable:
		if s.Status == openstack.ServiceStatusEnabled {
			return s, nil
		}
		opts.Status = openstack.ServiceStatusEnabled
	default:
		return s, temporal.NewNonRetryableApplicationError("service change: nothing to change", ErrTypeInvalidInput, nil)
	}
	got, err := cl.UpdateService(ctx, s.ID, opts)
	if err != nil {
		return s, novaError("update service of "+ch.Host, err)
	}
	s.Status, s.State, s.DisabledReason, s.ForcedDown = got.Status, got.State, got.DisabledReason, got.ForcedDown
	return s, nil
}

// busy reports whether Nova is doing something with the instance.
func busy(in Instance) bool {
	if in.TaskState != "" {
		return true
	}
	switch in.Status {
	case "MIGRATING", "RESIZE", "REBUILD", "REBOOT", "HARD_REBOOT", "BUILD":
		return true
	}
	return false
}

func faultText(in Instance) string {
	if in.Fault == "" {
		return ""
	}
	return ": " + in.Fault
}
