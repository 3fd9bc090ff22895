package openstack

import (
	"context"

	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/networkipavailabilities"
)

// NetworkIPAvailability is Neutron's count of a network's addresses, per subnet.
type NetworkIPAvailability struct {
	NetworkID   string
	NetworkName string
	Subnets     []SubnetIPAvailability
}

// SubnetIPAvailability counts one subnet's addresses. The counts are decimal strings: an IPv6
// subnet holds more addresses than an int64.
type SubnetIPAvailability struct {
	SubnetID   string
	SubnetName string
	CIDR       string
	TotalIPs   string
	UsedIPs    string
}

// ListNetworkIPAvailabilities lists the IP availability of every network in Neutron's order.
func (c *Clients) ListNetworkIPAvailabilities(ctx context.Context) ([]NetworkIPAvailability, error) {
	sc, err := c.need(c.Network, ServiceNetwork)
	if err != nil {
		return nil, err
	}
	list, err := listAll(ctx, "network IP availabilities",
		networkipavailabilities.List(sc, networkipavailabilities.ListOpts{}), networkipavailabilities.ExtractNetworkIPAvailabilities)
	if err != nil {
		return nil, err
	}
	return convert(list, func(n networkipavailabilities.NetworkIPAvailability) NetworkIPAvailability {
		return NetworkIPAvailability{NetworkID: n.NetworkID, NetworkName: n.NetworkName,
			Subnets: convert(n.SubnetIPAvailabilities, func(s networkipavailabilities.SubnetIPAvailability) SubnetIPAvailability {
				return SubnetIPAvailability{SubnetID: s.SubnetID, SubnetName: s.SubnetName, CIDR: s.CIDR, TotalIPs: s.TotalIPs, UsedIPs: s.UsedIPs}
			})}
	}), nil
}
