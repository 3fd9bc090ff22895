package activities

import (
	"context"
	"fmt"

	"go.temporal.io/sdk/temporal"

	"github.com/stackrun/stackrun/internal/infra/openstack"
)

// Cloud asks the OpenStack APIs through gophercloud.
type Cloud struct {
	// Clients connects lazily on first use, so a worker starts even while the cloud is down.
	Clients func(ctx context.Context) (*openstack.Clients, error)
}

func (c *Cloud) clients(ctx context.Context) (*openstack.Clients, error) {
	if c == nil || c.Clients == nil {
		return nil, temporal.NewNonRetryableApplicationError("OpenStack is "+errNotConfigured.Error(), ErrTypeRefused, nil)
	}
	return c.Clients(ctx)
}

// Probe asks one API a read-only question. An API that answers with an error is a result
// (OK false), not an activity failure: the check reports it as a finding.
func (c *Cloud) Probe(ctx context.Context, p APIProbe) (APIProbeResult, error) {
	cl, err := c.clients(ctx)
	if err != nil {
		return APIProbeResult{OK: false, Detail: fmt.Sprintf("%s: cannot authenticate: %v", p.Kind, err)}, nil
	}
	fail := func(err error) (APIProbeResult, error) {
		return APIProbeResult{OK: false, Detail: fmt.Sprintf("%s API: %v", p.Kind, err)}, nil
	}
	switch p.Kind {
	case "servers":
		all, err := cl.ListServers(ctx, openstack.ServerListOpts{AllTenants: true, Limit: 100})
		if err != nil {
			return fail(err)
		}
		return APIProbeResult{OK: true, Detail: fmt.Sprintf("compute API answers: %d server(s) listed", len(all))}, nil
	case "images":
		all, err := cl.ListImages(ctx, openstack.ImageListOpts{Limit: 100})
		if err != nil {
			return fail(err)
		}
		return APIProbeResult{OK: true, Detail: fmt.Sprintf("image API answers: %d image(s)", len(all))}, nil
	case "projects":
		all, err := cl.ListProjects(ctx)
		if err != nil {
			return fail(err)
		}
		return APIProbeResult{OK: true, Detail: fmt.Sprintf("identity API answers: %d project(s)", len(all))}, nil
	case "object-store":
		h, err := cl.ObjectStoreAccountStat(ctx)
		if err != nil {
			return fail(err)
		}
		return APIProbeResult{OK: true, Detail: fmt.Sprintf("object store answers: %d container(s), %d object(s)", h.Containers, h.Objects)}, nil
	case "compute-service":
		all, err := cl.ListServices(ctx, openstack.ServiceListOpts{Host: p.Host, Binary: "nova-compute"})
		if err != nil {
			return fail(err)
		}
		if len(all) == 0 {
			return APIProbeResult{OK: false, Detail: fmt.Sprintf("no nova-compute service registered for host %s", p.Host)}, nil
		}
		s := all[0]
		if s.State != openstack.ServiceStateUp {
			return APIProbeResult{OK: false, Detail: fmt.Sprintf("nova-compute on %s is %s (status %s, forced down %v)", p.Host, s.State, s.Status, s.ForcedDown)}, nil
		}
		return APIProbeResult{OK: true, Detail: fmt.Sprintf("nova-compute on %s is up (%s)", p.Host, s.Status)}, nil
	}
	return APIProbeResult{}, temporal.NewNonRetryableApplicationError(fmt.Sprintf("unknown API probe %q", p.Kind), ErrTypeInvalidInput, nil)
}
