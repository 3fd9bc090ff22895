package openstack

import (
	"context"
	"fmt"
	"slices"

	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/flavors"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
)

// What the staged upgrade's smoke test needs: the smallest flavor, a server booted without
// networks (microversion 2.37 or later) and deleted again.

// Flavor is a compute flavor.
type Flavor struct {
	ID    string
	Name  string
	VCPUs int
	RAMMB int
}

// SmallestFlavor returns the flavor with the least RAM (then vCPUs, then name).
func (c *Clients) SmallestFlavor(ctx context.Context) (Flavor, error) {
	list, err := listAll(ctx, "list flavors", flavors.ListDetail(c.Compute, flavors.ListOpts{}), flavors.ExtractFlavors)
	if err != nil {
		return Flavor{}, err
	}
	if len(list) == 0 {
		return Flavor{}, fmt.Errorf("list flavors: none")
	}
	slices.SortFunc(list, func(a, b flavors.Flavor) int {
		if a.RAM != b.RAM {
			return a.RAM - b.RAM
		}
		if a.VCPUs != b.VCPUs {
			return a.VCPUs - b.VCPUs
		}
		return compareStrings(a.Name, b.Name)
	})
	f := list[0]
	return Flavor{ID: f.ID, Name: f.Name, VCPUs: f.VCPUs, RAMMB: f.RAM}, nil
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// CreateServerNoNetwork boots a server with networks "none".
func (c *Clients) CreateServerNoNetwork(ctx context.Context, name, imageID, flavorID string) (Server, error) {
	s, err := servers.Create(ctx, c.Compute, servers.CreateOpts{Name: name, ImageRef: imageID, FlavorRef: flavorID, Networks: "none"}, nil).Extract()
	if err != nil {
		return Server{}, fmt.Errorf("create server %s: %w", name, err)
	}
	return serverFrom(*s), nil
}

// DeleteServer deletes a server (asynchronously: poll GetServer until 404).
func (c *Clients) DeleteServer(ctx context.Context, id string) error {
	if err := servers.Delete(ctx, c.Compute, id).ExtractErr(); err != nil {
		return fmt.Errorf("delete server %s: %w", id, err)
	}
	return nil
}
