package activities_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	th "github.com/gophercloud/gophercloud/v2/testhelper"
	fakeclient "github.com/gophercloud/gophercloud/v2/testhelper/client"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/internal/infra/openstack"
)

// The probes and compute activities against one fake cloud (gophercloud's testhelper server):
// what they conclude from Nova, Placement, Keystone, Glance and Neutron answers.

func fakeCloud(t *testing.T) *openstack.Clients {
	f := th.SetupHTTP()
	t.Cleanup(f.Teardown)
	serve := func(path, body string) {
		f.Mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, body)
		})
	}
	f.Mux.HandleFunc("/servers/detail", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		all := []string{
			`{"id": "s1", "name": "web-1", "status": "ACTIVE", "tenant_id": "p1", "OS-EXT-SRV-ATTR:host": "compute1",
			  "OS-EXT-STS:power_state": 1, "image": {"id": "img-cirros"}, "flavor": {"original_name": "m1.small", "vcpus": 1, "ram": 512, "disk": 1}}`,
			`{"id": "s2", "name": "big-1", "status": "SHUTOFF", "tenant_id": "p2", "OS-EXT-SRV-ATTR:host": "compute1",
			  "OS-EXT-STS:power_state": 4, "image": "", "flavor": {"original_name": "m1.xlarge", "vcpus": 16, "ram": 65536, "disk": 160}}`,
			`{"id": "s3", "name": "broken", "status": "ERROR", "tenant_id": "p1", "image": {"id": "img-cirros"},
			  "flavor": {"original_name": "m1.small", "vcpus": 1, "ram": 512, "disk": 1}}`,
			`{"id": "s4", "name": "elsewhere", "status": "ACTIVE", "tenant_id": "p1", "OS-EXT-SRV-ATTR:host": "compute2",
			  "OS-EXT-STS:power_state": 1, "image": {"id": "img-cirros"}, "flavor": {"original_name": "m1.small", "vcpus": 1, "ram": 512, "disk": 1}}`,
		}
		if h := r.URL.Query().Get("host"); h != "" && h != "compute1" {
			all = nil
		}
		fmt.Fprintf(w, `{"servers": [%s]}`, strings.Join(all, ","))
	})
	// The list leaves out the fault of s3; the server itself has it.
	serve("/servers/s3", `{"server": {"id": "s3", "name": "broken", "status": "ERROR", "tenant_id": "p1",
	  "fault": {"code": 500, "message": "No valid host was found.", "created": "2026-05-01T10:00:00Z"}}}`)
	serve("/servers/s1", `{"server": {"id": "s1", "name": "web-1", "status": "ACTIVE", "tenant_id": "p1", "OS-EXT-SRV-ATTR:host": "compute1",
	  "OS-EXT-STS:power_state": 1, "flavor": {"original_name": "m1.small", "vcpus": 1, "ram": 512, "disk": 1}}}`)
	f.Mux.HandleFunc("/os-services", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		svcs := []string{
			`{"id": "c2", "binary": "nova-compute", "host": "compute2", "zone": "nova", "status": "disabled", "state": "down",
			  "disabled_reason": "evacuate/compute2", "forced_down": true, "updated_at": "2026-05-01T10:00:05.000000"}`,
			`{"id": "c1", "binary": "nova-compute", "host": "compute1", "zone": "nova", "status": "enabled", "state": "up",
			  "disabled_reason": null, "forced_down": false, "updated_at": "2026-05-01T10:00:00.000000"}`,
			`{"id": "k1", "binary": "nova-conductor", "host": "control1", "zone": "internal", "status": "disabled", "state": "up",
			  "disabled_reason": "", "forced_down": false, "updated_at": "2026-05-01T10:00:00.000000"}`,
		}
		var out []string
		for _, s := range svcs {
			if h := r.URL.Query().Get("host"); h != "" && !strings.Contains(s, `"host": "`+h+`"`) {
				continue
			}
			if b := r.URL.Query().Get("binary"); b != "" && !strings.Contains(s, `"binary": "`+b+`"`) {
				continue
			}
			out = append(out, s)
		}
		fmt.Fprintf(w, `{"services": [%s]}`, strings.Join(out, ","))
	})
	serve("/os-hypervisors/detail", `{"hypervisors": [
	  {"id": "rp-1", "hypervisor_hostname": "compute1", "state": "up", "status": "enabled", "hypervisor_version": 8000000, "service": {"host": "compute1", "id": "c1"}},
	  {"id": "rp-2", "hypervisor_hostname": "compute2", "state": "down", "status": "disabled", "hypervisor_version": 8000000, "service": {"host": "compute2", "id": "c2"}}]}`)
	serve("/resource_providers", `{"resource_providers": [{"uuid": "rp-1", "name": "compute1"}, {"uuid": "rp-2", "name": "compute2"}]}`)
	for _, rp := range []string{"rp-1", "rp-2"} {
		serve("/resource_providers/"+rp+"/inventories", `{"resource_provider_generation": 1, "inventories": {
		  "VCPU": {"total": 4, "reserved": 0, "allocation_ratio": 4.0, "min_unit": 1, "max_unit": 4, "step_size": 1},
		  "MEMORY_MB": {"total": 8192, "reserved": 512, "allocation_ratio": 1.5, "min_unit": 1, "max_unit": 8192, "step_size": 1},
		  "DISK_GB": {"total": 100, "reserved": 0, "allocation_ratio": 1.0, "min_unit": 1, "max_unit": 100, "step_size": 1}}}`)
	}
	serve("/resource_providers/rp-1/usages", `{"resource_provider_generation": 1, "usages": {"VCPU": 15, "MEMORY_MB": 11000, "DISK_GB": 10}}`)
	serve("/resource_providers/rp-2/usages", `{"resource_provider_generation": 1, "usages": {"VCPU": 0, "MEMORY_MB": 0, "DISK_GB": 0}}`)
	serve("/os-simple-tenant-usage", `{"tenant_usages": [
	  {"tenant_id": "p2", "total_vcpus_usage": 720, "total_memory_mb_usage": 2949120, "total_local_gb_usage": 7200, "total_hours": 45, "server_usages": [{}]},
	  {"tenant_id": "p1", "total_vcpus_usage": 48.5, "total_memory_mb_usage": 24832, "total_local_gb_usage": 48.5, "total_hours": 48.5, "server_usages": [{}, {}]}]}`)
	serve("/projects", `{"projects": [{"id": "p2", "name": "demo", "domain_id": "default", "enabled": true},
	  {"id": "p1", "name": "admin", "domain_id": "default", "enabled": true}], "links": {"next": null}}`)
	serve("/users", `{"users": [{"id": "u1", "name": "alice", "enabled": true, "domain_id": "default", "last_active_at": "2025-01-02"},
	  {"id": "u2", "name": "bob", "enabled": false, "domain_id": "default"},
	  {"id": "u3", "name": "carol", "enabled": true, "domain_id": "default", "last_active_at": "2026-04-30"}], "links": {"next": null}}`)
	serve("/images", `{"images": [{"id": "img-old", "name": "old", "status": "deactivated", "visibility": "private", "size": 1048576},
	  {"id": "img-cirros", "name": "cirros", "status": "active", "visibility": "public", "size": 16338944}]}`)
	serve("/network-ip-availabilities", `{"network_ip_availabilities": [{"network_id": "n1", "network_name": "public", "total_ips": 10, "used_ips": 10,
	  "subnet_ip_availability": [{"subnet_id": "sub-1", "subnet_name": "public-v4", "cidr": "203.0.113.0/28", "ip_version": 4, "total_ips": 10, "used_ips": 10}]},
	  {"network_id": "n2", "network_name": "private", "total_ips": 250, "used_ips": 3,
	  "subnet_ip_availability": [{"subnet_id": "sub-2", "subnet_name": "private-v4", "cidr": "10.0.0.0/24", "ip_version": 4, "total_ips": 250, "used_ips": 3}]}]}`)
	serve("/os-migrations", `{"migrations": [
	  {"id": 3, "uuid": "m-3", "instance_uuid": "s1", "migration_type": "live-migration", "status": "completed", "created_at": "2026-05-01T10:00:00.000000", "updated_at": "2026-05-01T10:01:00.000000"},
	  {"id": 5, "uuid": "m-5", "instance_uuid": "s1", "migration_type": "evacuation", "status": "done", "created_at": "2026-05-02T10:00:00.000000", "updated_at": "2026-05-02T10:01:00.000000"}]}`)

	sc := func(typ, mv string) *gophercloud.ServiceClient {
		c := fakeclient.ServiceClient(f)
		c.Type, c.Microversion = typ, mv
		return c
	}
	return &openstack.Clients{Compute: sc("compute", "2.90"), Identity: sc("identity", ""), Placement: sc("placement", "1.29"),
		Image: sc("image", ""), Network: sc("network", "")}
}

func messages(fs []activities.CheckFinding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Severity+" "+f.Subject+": "+f.Message)
	}
	sort.Strings(out) // the order of a probe's findings is not part of its answer: Record sorts them
	return out
}

func TestCheckProbesOnAFakeCloud(t *testing.T) {
	cl := fakeCloud(t)
	now := time.Date(2026, 5, 2, 12, 0, 0, 0, time.UTC)
	c := &activities.Checks{
		Clients:  func(context.Context) (*openstack.Clients, error) { return cl, nil },
		Settings: activities.CheckSettings{LargeVCPUs: 8, LargeRAMMB: 32768, IPFreePercent: 10, AccountMaxInactive: 90 * 24 * time.Hour},
		Now:      func() time.Time { return now },
	}
	ctx := context.Background()
	probe := func(name string, f func(context.Context, activities.ProbeRequest) (activities.ProbeResult, error), cadence string) activities.ProbeResult {
		t.Helper()
		res, err := f(ctx, activities.ProbeRequest{Probe: name, Cadence: cadence, At: now})
		require.NoError(t, err, name)
		return res
	}

	res := probe("error-instances", c.ErrorInstancesProbe, "daily")
	assert.Equal(t, "4 instance(s): 1 in ERROR, 0 UNKNOWN, 0 stuck, 0 down against their desired state", res.Summary)
	assert.Equal(t, []string{"critical instance/s3: broken (project p1, host -) is in ERROR: No valid host was found. (code 500)"}, messages(res.Findings),
		"the fault the list left out is read from the server")

	res = probe("compute-services", c.ComputeServicesProbe, "daily")
	assert.Equal(t, "3 service(s), 1 down", res.Summary)
	assert.Equal(t, []string{
		`warning service/compute2/nova-compute: nova-compute on compute2 is down (forced down), disabled: "evacuate/compute2"`,
		"warning service/control1/nova-conductor/disabled: nova-conductor on control1 is disabled without a reason: say why (openstack compute service set --disable-reason) or enable it",
	}, messages(res.Findings))

	res = probe("capacity", c.CapacityProbe, "daily")
	assert.Equal(t, "VCPU 15/32 (46.9%), MEMORY_MB 11000/23040 (47.7%), DISK_GB 10/200 (5.0%)", res.Summary)
	assert.Empty(t, res.Findings)
	assert.Len(t, res.Metrics, 6)

	res = probe("large-instances", c.LargeInstancesProbe, "weekly")
	assert.Equal(t, "1 of 4 instance(s) at or above 8 vCPU or 32768 MiB", res.Summary)
	assert.Equal(t, []string{"info instance/s2: big-1 (project p2, host compute1): flavor m1.xlarge with 16 vCPU, 65536 MiB RAM"}, messages(res.Findings))

	res = probe("images", c.ImagesProbe, "weekly")
	assert.Equal(t, "2 image(s), 16.6 MiB in Glance; 1 used by instances; not used by any instance: old", res.Summary)
	assert.Equal(t, []string{"info images: " + res.Summary, "warning image/img-old: image old is deactivated"}, messages(res.Findings))

	res = probe("network-ips", c.NetworkProbe, "weekly")
	assert.Equal(t, "2 network(s), 2 subnet(s); floating IP pools are the external networks' subnets", res.Summary)
	assert.Equal(t, []string{"critical subnet/sub-1: subnet public-v4 (203.0.113.0/28) of network public: 10 of 10 addresses used, 0.0% free"}, messages(res.Findings))
	assert.Equal(t, []activities.CheckMetric{{Name: "network.subnet.used_ips", Subject: "public/public-v4", Value: 10}, {Name: "network.subnet.used_ips", Subject: "private/private-v4", Value: 3}}, res.Metrics)

	res = probe("usage", c.UsageProbe, "monthly")
	assert.Equal(t, "2 project(s) used 768.5 vCPU-hours over 2026-04-02..2026-05-02", res.Summary)
	assert.Equal(t, []string{
		"info project/admin: admin: 48.5 vCPU-hours, 24.2 GiB-hours of RAM, 48.5 disk GB-hours, 48.5 instance-hours over 2026-04-02..2026-05-02 (2 instance(s))",
		"info project/demo: demo: 720.0 vCPU-hours, 2880.0 GiB-hours of RAM, 7200.0 disk GB-hours, 45.0 instance-hours over 2026-04-02..2026-05-02 (1 instance(s))",
	}, messages(res.Findings))
	require.Len(t, res.Metrics, 6)
	assert.Equal(t, "admin", res.Metrics[0].Subject, "sorted by project ID, named")
	assert.Equal(t, 48.5, res.Metrics[0].Value)

	res = probe("accounts", c.AccountsProbe, "monthly")
	assert.Equal(t, "3 user(s), 0 operator(s) checked", res.Summary)
	assert.Equal(t, []string{
		"warning user/alice: user alice last active 2025-01-02, more than 2160h0m0s ago: remove it?",
		"warning user/bob: user bob (u2) is disabled: remove it, or say why it stays",
	}, messages(res.Findings))
}

func TestComputeActivitiesOnAFakeCloud(t *testing.T) {
	cl := fakeCloud(t)
	c := &activities.Compute{Clients: func(context.Context) (*openstack.Clients, error) { return cl, nil }}
	ctx := context.Background()

	ins, err := c.InstancesOnHost(ctx, "compute1")
	require.NoError(t, err)
	assert.Equal(t, []activities.Instance{
		{ID: "s2", Name: "big-1", Status: "SHUTOFF", PowerState: 4, Host: "compute1", ProjectID: "p2", VCPUs: 16, RAMMB: 65536, DiskGB: 160},
		{ID: "s1", Name: "web-1", Status: "ACTIVE", PowerState: 1, Host: "compute1", ProjectID: "p1", VCPUs: 1, RAMMB: 512, DiskGB: 1},
	}, ins, "only compute1's, sorted by name")

	in, err := c.GetInstance(ctx, "s1")
	require.NoError(t, err)
	assert.Equal(t, activities.Instance{ID: "s1", Name: "web-1", Status: "ACTIVE", PowerState: 1, Host: "compute1", ProjectID: "p1", VCPUs: 1, RAMMB: 512, DiskGB: 1}, in)

	svcs, err := c.ComputeServices(ctx)
	require.NoError(t, err)
	require.Len(t, svcs, 2, "nova-compute only")
	assert.Equal(t, "compute1", svcs[0].Host)
	assert.True(t, svcs[1].ForcedDown)

	capa, err := c.Capacity(ctx, []string{"compute1", "compute2"})
	require.NoError(t, err)
	assert.Equal(t, []activities.HostCapacity{
		{Host: "compute1", Provider: "rp-1", FreeVCPUs: 1, FreeRAMMB: 520, FreeDiskGB: 90},
		{Host: "compute2", Provider: "rp-2", FreeVCPUs: 16, FreeRAMMB: 11520, FreeDiskGB: 100},
	}, capa)
	_, err = c.Capacity(ctx, []string{"compute9"})
	assert.ErrorContains(t, err, "host compute9 has no hypervisor in Nova")

	ms, err := activities.InstanceMigrations(ctx, cl, "s1")
	require.NoError(t, err)
	require.Len(t, ms, 2)
	assert.True(t, slices.ContainsFunc(ms, func(m openstack.Migration) bool { return m.MigrationType == "evacuation" && m.Status == "done" }))
}

func TestAPIProbesOnAFakeCloud(t *testing.T) {
	cl := fakeCloud(t)
	c := &activities.Cloud{Clients: func(context.Context) (*openstack.Clients, error) { return cl, nil }}
	for _, c2 := range []struct {
		probe activities.APIProbe
		want  activities.APIProbeResult
	}{
		{activities.APIProbe{Kind: "servers"}, activities.APIProbeResult{OK: true, Detail: "compute API answers: 4 server(s) listed"}},
		{activities.APIProbe{Kind: "images"}, activities.APIProbeResult{OK: true, Detail: "image API answers: 2 image(s)"}},
		{activities.APIProbe{Kind: "projects"}, activities.APIProbeResult{OK: true, Detail: "identity API answers: 2 project(s)"}},
		{activities.APIProbe{Kind: "compute-service", Host: "compute1"}, activities.APIProbeResult{OK: true, Detail: "nova-compute on compute1 is up (enabled)"}},
		{activities.APIProbe{Kind: "compute-service", Host: "compute2"}, activities.APIProbeResult{OK: false, Detail: "nova-compute on compute2 is down (status disabled, forced down true)"}},
		{activities.APIProbe{Kind: "compute-service", Host: "compute9"}, activities.APIProbeResult{OK: false, Detail: "no nova-compute service registered for host compute9"}},
	} {
		probe, want := c2.probe, c2.want
		got, err := c.Probe(context.Background(), probe)
		require.NoError(t, err, probe)
		assert.Equal(t, want, got, probe)
	}
}

// A fake Nova that acts: server actions change the one server's state, service updates change
// the service, and every request body is kept, so the tests see what the activities asked for.
type actingNova struct {
	mu                       sync.Mutex
	host, status             string
	power                    int
	actions                  []string // action bodies, in order
	serviceBody              map[string]any
	deleted                  []string
	migrationsOfServerInPlay bool
}

func newActingNova(t *testing.T, host, status string, power int) (*actingNova, *openstack.Clients) {
	n := &actingNova{host: host, status: status, power: power}
	f := th.SetupHTTP()
	t.Cleanup(f.Teardown)
	js := func(w http.ResponseWriter, code int, body string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		fmt.Fprint(w, body)
	}
	f.Mux.HandleFunc("/servers/s1", func(w http.ResponseWriter, r *http.Request) {
		n.mu.Lock()
		defer n.mu.Unlock()
		js(w, 200, fmt.Sprintf(`{"server": {"id": "s1", "name": "web-1", "status": %q, "tenant_id": "p1", "OS-EXT-SRV-ATTR:host": %q,
		  "OS-EXT-STS:power_state": %d, "flavor": {"vcpus": 1, "ram": 512, "disk": 1}}}`, n.status, n.host, n.power))
	})
	f.Mux.HandleFunc("/servers/s1/action", func(w http.ResponseWriter, r *http.Request) {
		th.TestMethod(t, r, http.MethodPost)
		b, _ := io.ReadAll(r.Body)
		var body map[string]any
		require.NoError(t, json.Unmarshal(b, &body))
		n.mu.Lock()
		defer n.mu.Unlock()
		n.actions = append(n.actions, strings.TrimSpace(string(b)))
		code := 202
		has := func(k string) bool { _, ok := body[k]; return ok }
		switch {
		case has("os-migrateLive"):
			n.host = "compute2"
		case has("evacuate"):
			n.host, code = "compute2", 200
		case has("migrate"):
			n.host, n.status = "compute2", "VERIFY_RESIZE"
		case has("os-start") || has("reboot"):
			n.status, n.power = "ACTIVE", 1
		case has("confirmResize"):
			n.status, code = "ACTIVE", 204
		default:
			t.Errorf("unexpected action %s", b)
		}
		w.WriteHeader(code)
	})
	f.Mux.HandleFunc("/os-migrations", func(w http.ResponseWriter, r *http.Request) { js(w, 200, `{"migrations": []}`) })
	f.Mux.HandleFunc("/servers/s1/migrations", func(w http.ResponseWriter, r *http.Request) {
		js(w, 200, `{"migrations": [{"id": 12, "status": "running"}]}`)
	})
	f.Mux.HandleFunc("/servers/s1/migrations/12", func(w http.ResponseWriter, r *http.Request) {
		th.TestMethod(t, r, http.MethodDelete)
		n.mu.Lock()
		n.deleted = append(n.deleted, "12")
		n.mu.Unlock()
		w.WriteHeader(202)
	})
	f.Mux.HandleFunc("/os-services", func(w http.ResponseWriter, r *http.Request) {
		js(w, 200, `{"services": [{"id": "c1", "binary": "nova-compute", "host": "compute1", "zone": "nova", "status": "enabled", "state": "up",
		  "disabled_reason": null, "forced_down": false, "updated_at": "2026-05-01T10:00:00.000000"}]}`)
	})
	f.Mux.HandleFunc("/os-services/c1", func(w http.ResponseWriter, r *http.Request) {
		th.TestMethod(t, r, http.MethodPut)
		var body map[string]any
		require.NoError(t, json.NewDecoder(r.Body).Decode(&body))
		n.mu.Lock()
		n.serviceBody = body
		n.mu.Unlock()
		reason, _ := body["disabled_reason"].(string)
		forced, _ := body["forced_down"].(bool)
		status, _ := body["status"].(string)
		if status == "" {
			status = "enabled"
		}
		js(w, 200, fmt.Sprintf(`{"service": {"id": "c1", "binary": "nova-compute", "host": "compute1", "zone": "nova", "status": %q,
		  "state": "up", "disabled_reason": %q, "forced_down": %v, "updated_at": "2026-05-01T10:00:09.000000"}}`, status, reason, forced))
	})
	f.Mux.HandleFunc("/projects", func(w http.ResponseWriter, r *http.Request) {
		js(w, 200, `{"projects": [{"id": "p1", "name": "admin", "domain_id": "default", "enabled": true}], "links": {"next": null}}`)
	})
	f.Mux.HandleFunc("/os-quota-sets/p1/detail", func(w http.ResponseWriter, r *http.Request) {
		js(w, 200, `{"quota_set": {"id": "p1", "instances": {"in_use": 9, "limit": 10, "reserved": 0}, "cores": {"in_use": 20, "limit": 20, "reserved": 0},
		  "ram": {"in_use": 1024, "limit": 51200, "reserved": 0}, "server_groups": {"in_use": 0, "limit": -1, "reserved": 0},
		  "key_pairs": {"in_use": 1, "limit": 100, "reserved": 0}}}`)
	})
	f.Mux.HandleFunc("/os-quota-sets/p1", func(w http.ResponseWriter, r *http.Request) {
		th.TestFormValues(t, r, map[string]string{"usage": "true"})
		js(w, 200, `{"quota_set": {"id": "p1", "volumes": {"in_use": 19, "limit": 20, "reserved": 0, "allocated": 0},
		  "gigabytes": {"in_use": 10, "limit": 1000, "reserved": 0, "allocated": 0}}}`)
	})
	sc := func(typ, mv string) *gophercloud.ServiceClient {
		c := fakeclient.ServiceClient(f)
		c.Type, c.Microversion = typ, mv
		return c
	}
	return n, &openstack.Clients{Compute: sc("compute", "2.90"), Identity: sc("identity", ""), BlockStorage: sc("volumev3", "")}
}

func (n *actingNova) sent() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.actions...)
}

func activityEnv(t *testing.T, c *activities.Compute) *testsuite.TestActivityEnvironment {
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	env.RegisterActivity(c)
	return env
}

func TestMoveInstanceSendsEachKindOfMove(t *testing.T) {
	for kind, want := range map[string]string{
		activities.MoveLive:     `{"os-migrateLive":{"block_migration":"auto","host":"compute2"}}`,
		activities.MoveEvacuate: `{"evacuate":{"host":"compute2"}}`,
		activities.MoveCold:     `{"migrate":{"host":"compute2"}}`,
	} {
		t.Run(kind, func(t *testing.T) {
			n, cl := newActingNova(t, "compute1", "ACTIVE", 1)
			c := &activities.Compute{Clients: func(context.Context) (*openstack.Clients, error) { return cl, nil }, PollInterval: time.Millisecond}
			val, err := activityEnv(t, c).ExecuteActivity(c.MoveInstance, activities.MoveRequest{ID: "s1", Source: "compute1", Target: "compute2", Kind: kind, Timeout: time.Minute})
			require.NoError(t, err)
			var res activities.MoveResult
			require.NoError(t, val.Get(&res))
			assert.Equal(t, "compute2", res.To)
			assert.True(t, res.Started)
			sent := n.sent()
			require.NotEmpty(t, sent)
			assert.JSONEq(t, want, sent[0])
			if kind == activities.MoveCold {
				require.Len(t, sent, 2)
				assert.JSONEq(t, `{"confirmResize":null}`, sent[1], "VERIFY_RESIZE is confirmed")
			}
		})
	}
}

func TestMoveInstanceLiveWithBlockMigrationAndScheduler(t *testing.T) {
	n, cl := newActingNova(t, "compute1", "ACTIVE", 1)
	c := &activities.Compute{Clients: func(context.Context) (*openstack.Clients, error) { return cl, nil }, PollInterval: time.Millisecond}
	_, err := activityEnv(t, c).ExecuteActivity(c.MoveInstance, activities.MoveRequest{ID: "s1", Source: "compute1", Kind: activities.MoveLive, BlockMigration: "no", Timeout: time.Minute})
	require.NoError(t, err)
	assert.JSONEq(t, `{"os-migrateLive":{"block_migration":false,"host":null}}`, n.sent()[0])
}

func TestRecoverInstanceStartsAShutoffInstance(t *testing.T) {
	n, cl := newActingNova(t, "compute1", "SHUTOFF", 4)
	c := &activities.Compute{Clients: func(context.Context) (*openstack.Clients, error) { return cl, nil }, PollInterval: time.Millisecond}
	val, err := activityEnv(t, c).ExecuteActivity(c.RecoverInstance, "s1", time.Second)
	require.NoError(t, err)
	var rec activities.InstanceRecovery
	require.NoError(t, val.Get(&rec))
	assert.Equal(t, activities.InstanceRecovery{ID: "s1", Name: "web-1", Before: "SHUTOFF", Action: "start", After: "ACTIVE"}, rec)
	assert.Equal(t, []string{`{"os-start":null}`}, n.sent())
}

func TestRecoverInstanceRebootsAStoppedGuest(t *testing.T) {
	n, cl := newActingNova(t, "compute1", "ACTIVE", 4)
	c := &activities.Compute{Clients: func(context.Context) (*openstack.Clients, error) { return cl, nil }, PollInterval: time.Millisecond}
	_, err := activityEnv(t, c).ExecuteActivity(c.RecoverInstance, "s1", time.Second)
	require.NoError(t, err)
	require.Len(t, n.sent(), 1)
	assert.JSONEq(t, `{"reboot":{"type":"SOFT"}}`, n.sent()[0])
}

func TestHardRebootOn(t *testing.T) {
	n, cl := newActingNova(t, "compute2", "ACTIVE", 4)
	c := &activities.Compute{Clients: func(context.Context) (*openstack.Clients, error) { return cl, nil }, PollInterval: time.Millisecond}
	val, err := activityEnv(t, c).ExecuteActivity(c.HardRebootOn, activities.HardRebootRequest{ID: "s1", Host: "compute2", Wait: time.Second})
	require.NoError(t, err)
	var res activities.HardRebootResult
	require.NoError(t, val.Get(&res))
	assert.Equal(t, activities.HardRebootResult{ID: "s1", Name: "web-1", Before: "ACTIVE", Status: "ACTIVE", Host: "compute2"}, res)
	require.Len(t, n.sent(), 1)
	assert.JSONEq(t, `{"reboot":{"type":"HARD"}}`, n.sent()[0])

	_, err = activityEnv(t, c).ExecuteActivity(c.HardRebootOn, activities.HardRebootRequest{ID: "s1", Host: "compute1"})
	assert.ErrorContains(t, err, "not rebooting it")
	assert.Len(t, n.sent(), 1)
}

func TestSetComputeServiceBodies(t *testing.T) {
	n, cl := newActingNova(t, "compute1", "ACTIVE", 1)
	c := &activities.Compute{Clients: func(context.Context) (*openstack.Clients, error) { return cl, nil }}
	ctx := context.Background()

	s, err := c.SetComputeService(ctx, activities.ServiceChange{Host: "compute1", Disable: true, Reason: "evacuate/compute1"})
	require.NoError(t, err)
	assert.Equal(t, map[string]any{"status": "disabled", "disabled_reason": "evacuate/compute1"}, n.serviceBody)
	assert.Equal(t, "disabled", s.Status)
	assert.Equal(t, "evacuate/compute1", s.DisabledReason)
	assert.Equal(t, "c1", s.ID)

	down := false
	s, err = c.SetComputeService(ctx, activities.ServiceChange{Host: "compute1", ForcedDown: &down})
	require.NoError(t, err)
	assert.Nil(t, n.serviceBody["forced_down"], "already not forced down: nothing sent")
	up := true
	s, err = c.SetComputeService(ctx, activities.ServiceChange{Host: "compute1", ForcedDown: &up})
	require.NoError(t, err)
	assert.Equal(t, map[string]any{"forced_down": true}, n.serviceBody, "forced_down alone")
	assert.True(t, s.ForcedDown)

	n.serviceBody = nil
	_, err = c.SetComputeService(ctx, activities.ServiceChange{Host: "compute1", Enable: true})
	require.NoError(t, err)
	assert.Nil(t, n.serviceBody, "already enabled: nothing sent")
}

func TestQuotasProbeNovaAndCinder(t *testing.T) {
	_, cl := newActingNova(t, "compute1", "ACTIVE", 1)
	c := &activities.Checks{Clients: func(context.Context) (*openstack.Clients, error) { return cl, nil }, Settings: activities.CheckSettings{QuotaPercent: 80}}
	res, err := c.QuotasProbe(context.Background(), activities.ProbeRequest{Probe: "quotas"})
	require.NoError(t, err)
	assert.Equal(t, "1 project(s) checked against 80% (Nova and Cinder)", res.Summary)
	got := messages(res.Findings)
	sort.Strings(got)
	assert.Equal(t, []string{
		"critical project/admin/nova/cores: project admin uses 20 of 20 cores (100%)",
		"warning project/admin/cinder/volumes: project admin uses 19 of 20 volumes (95%)",
		"warning project/admin/nova/instances: project admin uses 9 of 10 instances (90%)",
	}, got)
}
