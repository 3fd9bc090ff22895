package openstack_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	th "github.com/gophercloud/gophercloud/v2/testhelper"
	fakeclient "github.com/gophercloud/gophercloud/v2/testhelper/client"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stackrun/stackrun/internal/infra/openstack"
)

// Fixture tests of the List* and Get helpers: what each sends (path, query, microversion) and
// what it makes of Nova's, Placement's, Keystone's and Neutron's answers.

func fake(t *testing.T) th.FakeServer {
	f := th.SetupHTTP()
	t.Cleanup(f.Teardown)
	return f
}

func serveJSON(t *testing.T, f th.FakeServer, path string, query map[string]string, body string) {
	f.Mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
		th.TestMethod(t, r, http.MethodGet)
		th.TestHeader(t, r, "X-Auth-Token", fakeclient.TokenID)
		if query != nil {
			th.TestFormValues(t, r, query)
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, body)
	})
}

func serviceClients(f th.FakeServer) *openstack.Clients {
	sc := func(typ, mv string) *gophercloud.ServiceClient {
		c := fakeclient.ServiceClient(f)
		c.Type, c.Microversion = typ, mv
		return c
	}
	return &openstack.Clients{Compute: sc("compute", "2.90"), Identity: sc("identity", ""), Placement: sc("placement", "1.29"),
		Image: sc("image", ""), Network: sc("network", "")}
}

func TestListServersReadsEveryPageInNovaOrder(t *testing.T) {
	f := fake(t)
	f.Mux.HandleFunc("/servers/detail", func(w http.ResponseWriter, r *http.Request) {
		th.TestHeader(t, r, "X-OpenStack-Nova-API-Version", "2.90")
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Query().Get("marker") {
		case "":
			th.TestFormValues(t, r, map[string]string{"all_tenants": "true", "limit": "1"})
			fmt.Fprintf(w, `{"servers": [{"id": "z", "name": "web-9", "status": "ERROR", "tenant_id": "p1",
			  "OS-EXT-SRV-ATTR:host": "compute2", "OS-EXT-STS:power_state": 0,
			  "image": {"id": "img-1"}, "fault": {"code": 500, "message": "NoValidHost", "created": "2026-05-01T10:00:00Z"},
			  "flavor": {"original_name": "m1.large", "vcpus": 4, "ram": 8192, "disk": 80}}],
			  "servers_links": [{"rel": "next", "href": "%s/servers/detail?all_tenants=true&limit=1&marker=z"}]}`, f.Server.URL)
		case "z":
			fmt.Fprint(w, `{"servers": [{"id": "a", "name": "db-1", "status": "ACTIVE", "tenant_id": "p2",
			  "OS-EXT-SRV-ATTR:host": "compute1", "OS-EXT-STS:power_state": 1, "image": "",
			  "flavor": {"original_name": "m1.small", "vcpus": 1, "ram": 2048, "disk": 20}}]}`)
		default:
			t.Errorf("unexpected marker %q", r.URL.Query().Get("marker"))
		}
	})
	got, err := serviceClients(f).ListServers(context.Background(), openstack.ServerListOpts{AllTenants: true, Limit: 1})
	require.NoError(t, err)
	require.Len(t, got, 2, "both pages")
	assert.Equal(t, openstack.Server{ID: "z", Name: "web-9", Status: "ERROR", Host: "compute2", ProjectID: "p1", ImageID: "img-1",
		FlavorName: "m1.large", FlavorVCPUs: 4, FlavorRAMMB: 8192, FlavorDiskGB: 80, Fault: "NoValidHost", FaultCode: 500}, got[0], "Nova's order, not sorted")
	assert.Equal(t, "a", got[1].ID)
	assert.Equal(t, 1, got[1].PowerState)
	assert.Empty(t, got[1].ImageID, "booted from a volume")
}

func TestGetServerKeepsGophercloudsError(t *testing.T) {
	f := fake(t)
	serveJSON(t, f, "/servers/a", nil, `{"server": {"id": "a", "name": "db-1", "status": "SHUTOFF", "OS-EXT-STS:power_state": 4,
	  "OS-EXT-SRV-ATTR:host": "compute1", "OS-EXT-STS:task_state": "powering-on", "tenant_id": "p2"}}`)
	f.Mux.HandleFunc("/servers/gone", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, `{"itemNotFound": {"code": 404, "message": "Instance gone could not be found."}}`)
	})
	c := serviceClients(f)
	s, err := c.GetServer(context.Background(), "a")
	require.NoError(t, err)
	assert.Equal(t, openstack.Server{ID: "a", Name: "db-1", Status: "SHUTOFF", PowerState: 4, Host: "compute1", TaskState: "powering-on", ProjectID: "p2"}, s)

	_, err = c.GetServer(context.Background(), "gone")
	var code gophercloud.ErrUnexpectedResponseCode
	require.True(t, errors.As(err, &code), "%v", err)
	assert.Equal(t, http.StatusNotFound, code.Actual)
}

func TestListServicesFilters(t *testing.T) {
	f := fake(t)
	serveJSON(t, f, "/os-services", map[string]string{"host": "compute2", "binary": "nova-compute"}, servicesBody)
	got, err := serviceClients(f).ListServices(context.Background(), openstack.ServiceListOpts{Host: "compute2", Binary: "nova-compute"})
	require.NoError(t, err)
	require.Len(t, got, 2)
	assert.Equal(t, "compute1", got[0].Host, "sorted by host")
	assert.Equal(t, openstack.ServiceStateDown, got[1].State)
}

func TestListHypervisorsAsksAt287(t *testing.T) {
	f := fake(t)
	f.Mux.HandleFunc("/os-hypervisors/detail", func(w http.ResponseWriter, r *http.Request) {
		// 2.88+ would make nova-api ask every compute for its uptime, one after the other.
		th.TestHeader(t, r, "X-OpenStack-Nova-API-Version", "2.87")
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"hypervisors": [
		  {"id": "rp-2", "hypervisor_hostname": "compute2.lab", "state": "up", "status": "enabled", "hypervisor_version": 8000000, "service": {"host": "compute2", "id": "s2"}},
		  {"id": "rp-1", "hypervisor_hostname": "compute1.lab", "state": "up", "status": "enabled", "hypervisor_version": 8000000, "service": {"host": "compute1", "id": "s1"}}]}`)
	})
	c := serviceClients(f)
	got, err := c.ListHypervisors(context.Background())
	require.NoError(t, err)
	assert.Equal(t, []openstack.Hypervisor{{ID: "rp-2", Host: "compute2"}, {ID: "rp-1", Host: "compute1"}}, got)
	assert.Equal(t, "2.90", c.Compute.Microversion, "the shared client keeps its microversion")
}

func TestListMigrationsOfOneInstance(t *testing.T) {
	f := fake(t)
	serveJSON(t, f, "/os-migrations", map[string]string{"instance_uuid": "a"}, `{"migrations": [
	  {"id": 7, "uuid": "m-7", "instance_uuid": "a", "migration_type": "live-migration", "status": "completed",
	   "source_compute": "compute1", "dest_compute": "compute2", "created_at": "2026-05-01T10:00:00.000000", "updated_at": "2026-05-01T10:01:00.000000"}]}`)
	got, err := serviceClients(f).ListMigrations(context.Background(), openstack.MigrationListOpts{InstanceID: "a"})
	require.NoError(t, err)
	assert.Equal(t, []openstack.Migration{{ID: 7, UUID: "m-7", InstanceID: "a", MigrationType: "live-migration", Status: "completed",
		SourceCompute: "compute1", DestCompute: "compute2", CreatedAt: time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)}}, got)
}

func TestListTenantUsageIsDetailedOverThePeriod(t *testing.T) {
	f := fake(t)
	start, end := time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	serveJSON(t, f, "/os-simple-tenant-usage", map[string]string{"detailed": "1", "start": "2026-04-01T00:00:00", "end": "2026-05-01T00:00:00"},
		`{"tenant_usages": [{"tenant_id": "p1", "total_vcpus_usage": 48, "total_memory_mb_usage": 98304, "total_local_gb_usage": 960,
		  "total_hours": 24, "server_usages": [{"instance_id": "a"}, {"instance_id": "b"}],
		  "start": "2026-04-01T00:00:00.000000", "stop": "2026-05-01T00:00:00.000000"}]}`)
	got, err := serviceClients(f).ListTenantUsage(context.Background(), openstack.TenantUsageOpts{Start: start, End: end})
	require.NoError(t, err)
	assert.Equal(t, []openstack.TenantUsage{{ProjectID: "p1", VCPUHours: 48, RAMMBHours: 98304, DiskGBHours: 960, Hours: 24, Instances: 2}}, got)
}

func TestPlacementProvidersInventoriesUsages(t *testing.T) {
	f := fake(t)
	serveJSON(t, f, "/resource_providers", nil, `{"resource_providers": [{"uuid": "rp-1", "name": "compute1.lab", "generation": 3}]}`)
	serveJSON(t, f, "/resource_providers/rp-1/inventories", nil, `{"resource_provider_generation": 3, "inventories": {
	  "VCPU": {"total": 8, "reserved": 0, "allocation_ratio": 4.0, "min_unit": 1, "max_unit": 8, "step_size": 1},
	  "MEMORY_MB": {"total": 16384, "reserved": 512, "allocation_ratio": 1.5, "min_unit": 1, "max_unit": 16384, "step_size": 1}}}`)
	serveJSON(t, f, "/resource_providers/rp-1/usages", nil, `{"resource_provider_generation": 3, "usages": {"VCPU": 6, "MEMORY_MB": 4096}}`)
	c := serviceClients(f)
	ctx := context.Background()
	rps, err := c.ListResourceProviders(ctx)
	require.NoError(t, err)
	assert.Equal(t, []openstack.ResourceProvider{{UUID: "rp-1", Name: "compute1.lab"}}, rps)
	inv, err := c.ProviderInventories(ctx, "rp-1")
	require.NoError(t, err)
	assert.Equal(t, map[string]openstack.Inventory{"VCPU": {Total: 8, AllocationRatio: 4, MaxUnit: 8}, "MEMORY_MB": {Total: 16384, Reserved: 512, AllocationRatio: 1.5, MaxUnit: 16384}}, inv)
	use, err := c.ProviderUsages(ctx, "rp-1")
	require.NoError(t, err)
	assert.Equal(t, map[string]int{"VCPU": 6, "MEMORY_MB": 4096}, use)

	_, err = (&openstack.Clients{}).ListResourceProviders(ctx)
	assert.ErrorIs(t, err, openstack.ErrServiceUnavailable)
}

func TestListUsersLastActive(t *testing.T) {
	f := fake(t)
	serveJSON(t, f, "/users", nil, `{"users": [
	  {"id": "u1", "name": "alice", "enabled": true, "domain_id": "default", "last_active_at": "2026-01-31"},
	  {"id": "u2", "name": "old", "enabled": false, "domain_id": "default"}], "links": {"next": null}}`)
	got, err := serviceClients(f).ListUsers(context.Background())
	require.NoError(t, err)
	assert.Equal(t, []openstack.User{{ID: "u1", Name: "alice", Enabled: true, LastActiveAt: "2026-01-31"}, {ID: "u2", Name: "old"}}, got)
}

func TestListImagesPageSize(t *testing.T) {
	f := fake(t)
	serveJSON(t, f, "/images", map[string]string{"limit": "1000"},
		`{"images": [{"id": "i2", "name": "ubuntu", "status": "queued", "visibility": "private", "owner": "p2", "size": 0},
		  {"id": "i1", "name": "cirros", "status": "active", "visibility": "public", "owner": "p1", "size": 16338944}]}`)
	got, err := serviceClients(f).ListImages(context.Background(), openstack.ImageListOpts{Limit: 1000})
	require.NoError(t, err)
	require.Len(t, got, 2)
	assert.Equal(t, "cirros", got[0].Name, "sorted by name")
	assert.Equal(t, openstack.ImageStatusActive, got[0].Status)
}

func TestListNetworkIPAvailabilities(t *testing.T) {
	f := fake(t)
	serveJSON(t, f, "/network-ip-availabilities", nil, `{"network_ip_availabilities": [{"network_id": "n1", "network_name": "public",
	  "total_ips": 253, "used_ips": 250, "subnet_ip_availability": [
	   {"subnet_id": "s1", "subnet_name": "public-v4", "cidr": "203.0.113.0/24", "ip_version": 4, "total_ips": 253, "used_ips": 250},
	   {"subnet_id": "s2", "subnet_name": "public-v6", "cidr": "2001:db8::/64", "ip_version": 6, "total_ips": 18446744073709551614, "used_ips": 3}]}]}`)
	got, err := serviceClients(f).ListNetworkIPAvailabilities(context.Background())
	require.NoError(t, err)
	assert.Equal(t, []openstack.NetworkIPAvailability{{NetworkID: "n1", NetworkName: "public", Subnets: []openstack.SubnetIPAvailability{
		{SubnetID: "s1", SubnetName: "public-v4", CIDR: "203.0.113.0/24", TotalIPs: "253", UsedIPs: "250"},
		{SubnetID: "s2", SubnetName: "public-v6", CIDR: "2001:db8::/64", TotalIPs: "18446744073709551614", UsedIPs: "3"},
	}}}, got)
}

func TestListErrorsSayWhatWasListed(t *testing.T) {
	f := fake(t)
	f.Mux.HandleFunc("/users", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusForbidden) })
	_, err := serviceClients(f).ListUsers(context.Background())
	assert.ErrorContains(t, err, "list users: ")
	assert.True(t, gophercloud.ResponseCodeIs(err, http.StatusForbidden), "gophercloud's error is wrapped, not replaced: %v", err)
}
