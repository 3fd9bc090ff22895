package openstack

import (
	"context"
	"fmt"

	"github.com/gophercloud/gophercloud/v2/openstack/placement/v1/resourceproviders"
)

// ResourceProvider is a Placement resource provider (a compute node's is its hypervisor's ID).
type ResourceProvider struct {
	UUID string
	Name string
}

// ListResourceProviders lists every resource provider in Placement's order.
func (c *Clients) ListResourceProviders(ctx context.Context) ([]ResourceProvider, error) {
	sc, err := c.need(c.Placement, ServicePlacement)
	if err != nil {
		return nil, err
	}
	list, err := listAll(ctx, "list resource providers", resourceproviders.List(sc, resourceproviders.ListOpts{}), resourceproviders.ExtractResourceProviders)
	if err != nil {
		return nil, err
	}
	return convert(list, func(rp resourceproviders.ResourceProvider) ResourceProvider {
		return ResourceProvider{UUID: rp.UUID, Name: rp.Name}
	}), nil
}

// Inventory is one resource class of a provider. What can be allocated is
// (Total - Reserved) * AllocationRatio.
type Inventory struct {
	Total           int
	Reserved        int
	AllocationRatio float64 // as Placement sends it (a float32 there); 0 when unset
	// MaxUnit is the most one allocation may take (0 when unset): a flavor larger than it
	// fits nowhere on the provider, however much is free.
	MaxUnit int
}

// ProviderInventories returns a provider's inventories by resource class (VCPU, MEMORY_MB, DISK_GB...).
func (c *Clients) ProviderInventories(ctx context.Context, uuid string) (map[string]Inventory, error) {
	sc, err := c.need(c.Placement, ServicePlacement)
	if err != nil {
		return nil, err
	}
	inv, err := resourceproviders.GetInventories(ctx, sc, uuid).Extract()
	if err != nil {
		return nil, fmt.Errorf("inventories of resource provider %s: %w", uuid, err)
	}
	out := make(map[string]Inventory, len(inv.Inventories))
	for rc, i := range inv.Inventories {
		out[rc] = Inventory{Total: i.Total, Reserved: i.Reserved, AllocationRatio: float64(i.AllocationRatio), MaxUnit: i.MaxUnit}
	}
	return out, nil
}

// ProviderUsages returns what is allocated on a provider by resource class.
func (c *Clients) ProviderUsages(ctx context.Context, uuid string) (map[string]int, error) {
	sc, err := c.need(c.Placement, ServicePlacement)
	if err != nil {
		return nil, err
	}
	u, err := resourceproviders.GetUsages(ctx, sc, uuid).Extract()
	if err != nil {
		return nil, fmt.Errorf("usages of resource provider %s: %w", uuid, err)
	}
	return u.Usages, nil
}
