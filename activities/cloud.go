package activities

import (
	"context"
	"fmt"
	"strings"
	"time"

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
	case "volumes":
		all, err := cl.ListVolumes(ctx, "", "")
		if err != nil {
			return fail(err)
		}
		return APIProbeResult{OK: true, Detail: fmt.Sprintf("block-storage API answers: %d volume(s)", len(all))}, nil
	case "volume-services":
		all, err := cl.VolumeServices(ctx)
		if err != nil {
			return fail(err)
		}
		return volumeServicesUp(all, p), nil
	}
	return APIProbeResult{}, temporal.NewNonRetryableApplicationError(fmt.Sprintf("unknown API probe %q", p.Kind), ErrTypeInvalidInput, nil)
}

// volumeServicesUp: every binary of p is registered for p.Host (cinder-volume as Host@backend), up
// and enabled, and has reported since p.Since (Cinder's updated_at has whole seconds).
func volumeServicesUp(all []openstack.VolumeService, p APIProbe) APIProbeResult {
	since := p.Since.Truncate(time.Second)
	var seen []string
	for _, b := range p.Binaries {
		var found *openstack.VolumeService
		for i, s := range all {
			if s.Binary == b && (s.Host == p.Host || strings.HasPrefix(s.Host, p.Host+"@")) {
				found = &all[i]
				break
			}
		}
		switch {
		case found == nil:
			return APIProbeResult{Detail: fmt.Sprintf("no %s service registered for host %s", b, p.Host)}
		case found.State != "up":
			return APIProbeResult{Detail: fmt.Sprintf("%s on %s is %s (status %s)", b, found.Host, found.State, found.Status)}
		case found.Status == "disabled":
			return APIProbeResult{Detail: fmt.Sprintf("%s on %s is disabled: %s", b, found.Host, found.DisabledReason)}
		case !p.Since.IsZero() && found.UpdatedAt.Before(since):
			return APIProbeResult{Detail: fmt.Sprintf("%s on %s has not reported since its start at %s (last report %s)", b, found.Host,
				p.Since.UTC().Format(time.RFC3339), found.UpdatedAt.UTC().Format(time.RFC3339))}
		}
		seen = append(seen, b+" on "+found.Host)
	}
	if len(seen) == 0 {
		return APIProbeResult{Detail: "no Cinder binaries to check on " + p.Host}
	}
	return APIProbeResult{OK: true, Detail: "volume services up: " + strings.Join(seen, ", ")}
}
