package openstack_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	th "github.com/gophercloud/gophercloud/v2/testhelper"
	fakeclient "github.com/gophercloud/gophercloud/v2/testhelper/client"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stackrun/stackrun/internal/infra/openstack"
)

const servicesBody = `{"services": [
 {"id": "4c6b5d2e-0000-4000-8000-000000000002", "binary": "nova-compute", "host": "compute2", "zone": "nova",
  "status": "disabled", "state": "down", "disabled_reason": "evacuate/compute2", "forced_down": true,
  "updated_at": "2026-05-01T10:00:05.000000"},
 {"id": "4c6b5d2e-0000-4000-8000-000000000001", "binary": "nova-compute", "host": "compute1", "zone": "nova",
  "status": "enabled", "state": "up", "disabled_reason": null, "forced_down": false,
  "updated_at": "2026-05-01T10:00:00.000000"}
]}`

const serversBody = `{"servers": [
 {"id": "b", "name": "web-2", "status": "ERROR", "tenant_id": "p2",
  "OS-EXT-SRV-ATTR:host": "compute1", "OS-EXT-SRV-ATTR:hypervisor_hostname": "compute1",
  "OS-EXT-STS:task_state": null, "OS-EXT-STS:vm_state": "error",
  "fault": {"code": 500, "message": "NoValidHost", "created": "2026-05-01T10:00:00Z"},
  "flavor": {"original_name": "m1.large", "vcpus": 4, "ram": 8192, "disk": 80, "ephemeral": 0, "swap": 0, "extra_specs": {}}},
 {"id": "a", "name": "web-1", "status": "ACTIVE", "tenant_id": "p1",
  "OS-EXT-SRV-ATTR:host": "compute1", "OS-EXT-SRV-ATTR:hypervisor_hostname": "compute1",
  "OS-EXT-STS:task_state": "migrating", "OS-EXT-STS:vm_state": "active",
  "flavor": {"original_name": "m1.small", "vcpus": 1, "ram": 2048, "disk": 20, "ephemeral": 0, "swap": 0, "extra_specs": {}}},
 {"id": "c", "name": "elsewhere", "status": "ACTIVE", "tenant_id": "p1",
  "OS-EXT-SRV-ATTR:host": "compute3", "OS-EXT-STS:vm_state": "active", "flavor": {"vcpus": 1, "ram": 512, "disk": 1}}
]}`

func computeClients(fake th.FakeServer, mv string) *openstack.Clients {
	sc := fakeclient.ServiceClient(fake)
	sc.Type = "compute"
	sc.Microversion = mv
	return &openstack.Clients{Compute: sc}
}

func TestComputeServicesSendsMicroversion(t *testing.T) {
	fake := th.SetupHTTP()
	defer fake.Teardown()
	fake.Mux.HandleFunc("/os-services", func(w http.ResponseWriter, r *http.Request) {
		th.TestMethod(t, r, http.MethodGet)
		th.TestHeader(t, r, "X-Auth-Token", fakeclient.TokenID)
		th.TestHeader(t, r, "X-OpenStack-Nova-API-Version", "2.90")
		th.TestHeader(t, r, "OpenStack-API-Version", "compute 2.90")
		th.TestFormValues(t, r, map[string]string{"binary": "nova-compute"})
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, servicesBody)
	})

	c := computeClients(fake, openstack.DefaultComputeMicroversion)
	got, err := c.ComputeServices(context.Background(), "nova-compute")
	require.NoError(t, err)
	require.Len(t, got, 2)
	assert.Equal(t, openstack.Service{
		ID: "4c6b5d2e-0000-4000-8000-000000000001", Host: "compute1", Binary: "nova-compute", Zone: "nova",
		Status: "enabled", State: "up", UpdatedAt: time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC),
	}, got[0], "sorted by host")
	assert.Equal(t, "compute2", got[1].Host)
	assert.True(t, got[1].ForcedDown)
	assert.Equal(t, "evacuate/compute2", got[1].DisabledReason)
	assert.Equal(t, openstack.ServiceStatusDisabled, got[1].Status)
}

func TestServersOnHost(t *testing.T) {
	fake := th.SetupHTTP()
	defer fake.Teardown()
	fake.Mux.HandleFunc("/servers/detail", func(w http.ResponseWriter, r *http.Request) {
		th.TestMethod(t, r, http.MethodGet)
		th.TestHeader(t, r, "X-OpenStack-Nova-API-Version", "2.79")
		th.TestFormValues(t, r, map[string]string{"all_tenants": "true", "host": "compute1"})
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, serversBody)
	})

	c := computeClients(fake, "2.79")
	got, err := c.ServersOnHost(context.Background(), "compute1")
	require.NoError(t, err)
	require.Len(t, got, 2, "server on compute3 filtered out client-side")
	assert.Equal(t, openstack.Server{
		ID: "a", Name: "web-1", Status: "ACTIVE", TaskState: "migrating", VMState: "active",
		Host: "compute1", HypervisorHostname: "compute1", ProjectID: "p1",
		FlavorName: "m1.small", FlavorVCPUs: 1, FlavorRAMMB: 2048, FlavorDiskGB: 20,
	}, got[0])
	assert.Equal(t, "web-2", got[1].Name)
	assert.Equal(t, "NoValidHost", got[1].Fault)
	assert.Equal(t, 8192, got[1].FlavorRAMMB)

	_, err = c.ServersOnHost(context.Background(), "")
	assert.Error(t, err)
}

func TestOptionalServiceMissing(t *testing.T) {
	c := &openstack.Clients{}
	_, err := c.ObjectStoreAccountStat(context.Background())
	assert.ErrorIs(t, err, openstack.ErrServiceUnavailable)
	_, err = c.ListImages(context.Background(), openstack.ImageListOpts{})
	assert.ErrorIs(t, err, openstack.ErrServiceUnavailable)
}

// fakeCloud is a Keystone v3 (token POST with a catalog) plus the service
// endpoints, all on one testhelper server.
type fakeCloud struct {
	th.FakeServer
	mu        sync.Mutex
	authBody  map[string]any
	authCalls int
}

func newFakeCloud(t *testing.T) *fakeCloud {
	fc := &fakeCloud{FakeServer: th.SetupHTTP()}
	t.Cleanup(fc.Teardown)
	base := fc.Server.URL
	endpoint := func(typ, url string) string {
		return fmt.Sprintf(`{"type": %q, "name": %q, "endpoints": [
		  {"interface": "public", "region": "RegionOne", "region_id": "RegionOne", "url": %q}]}`, typ, typ, url)
	}
	catalog := strings.Join([]string{
		endpoint("identity", base+"/identity/v3"),
		endpoint("compute", base+"/compute/v2.1"),
		endpoint("placement", base+"/placement"),
		endpoint("image", base+"/image"),
		endpoint("object-store", base+"/swift/v1/AUTH_p1"),
	}, ",")

	fc.Mux.HandleFunc("/v3/auth/tokens", func(w http.ResponseWriter, r *http.Request) {
		th.TestMethod(t, r, http.MethodPost)
		b, _ := io.ReadAll(r.Body)
		fc.mu.Lock()
		fc.authCalls++
		fc.authBody = nil
		_ = json.Unmarshal(b, &fc.authBody)
		fc.mu.Unlock()
		w.Header().Set("X-Subject-Token", "tok-1")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"token": {"expires_at": "2099-01-01T00:00:00.000000Z", "methods": ["password"],
		  "project": {"id": "p1", "name": "admin", "domain": {"id": "default", "name": "Default"}},
		  "user": {"id": "u1", "name": "admin", "domain": {"id": "default", "name": "Default"}},
		  "catalog": [%s]}}`, catalog)
	})
	// Version discovery of the unversioned endpoints.
	fc.Mux.HandleFunc("/placement/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"versions": [{"id": "v1.0", "status": "CURRENT", "min_version": "1.0", "max_version": "1.39", "links": []}]}`)
	})
	fc.Mux.HandleFunc("/image/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusMultipleChoices)
		fmt.Fprint(w, `{"versions": [{"id": "v2.16", "status": "CURRENT", "links": []}]}`)
	})
	fc.Mux.HandleFunc("/compute/v2.1/os-services", func(w http.ResponseWriter, r *http.Request) {
		th.TestHeader(t, r, "X-Auth-Token", "tok-1")
		th.TestHeader(t, r, "X-OpenStack-Nova-API-Version", "2.90")
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, servicesBody)
	})
	fc.Mux.HandleFunc("/identity/v3/projects", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"projects": [{"id": "p2", "name": "demo", "domain_id": "default", "enabled": true},
		  {"id": "p1", "name": "admin", "domain_id": "default", "enabled": true}], "links": {"next": null}}`)
	})
	fc.Mux.HandleFunc("/image/v2/images", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"images": [{"id": "i1", "name": "cirros", "status": "active", "visibility": "public", "owner": "p1", "size": 16338944}]}`)
	})
	fc.Mux.HandleFunc("/swift/v1/AUTH_p1/", func(w http.ResponseWriter, r *http.Request) {
		th.TestMethod(t, r, http.MethodHead)
		w.Header().Set("X-Account-Container-Count", "3")
		w.Header().Set("X-Account-Object-Count", "42")
		w.Header().Set("X-Account-Bytes-Used", "1048576")
		w.WriteHeader(http.StatusNoContent)
	})
	return fc
}

func (fc *fakeCloud) body() map[string]any {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	return fc.authBody
}

func clearOSEnv(t *testing.T) {
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "OS_") {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
}

func checkClients(t *testing.T, c *openstack.Clients) {
	t.Helper()
	ctx := context.Background()
	assert.Equal(t, "2.90", c.Compute.Microversion)
	require.NotNil(t, c.Placement)
	assert.Equal(t, openstack.DefaultPlacementMicroversion, c.Placement.Microversion)
	assert.NotNil(t, c.Image)
	assert.NotNil(t, c.ObjectStore)
	assert.Nil(t, c.BlockStorage, "no volume service in the catalog")
	assert.Nil(t, c.Network)
	assert.ErrorIs(t, c.ServiceError(openstack.ServiceBlockStorage), openstack.ErrServiceUnavailable)
	assert.NoError(t, c.ServiceError(openstack.ServiceCompute))

	svcs, err := c.ComputeServices(ctx, "")
	require.NoError(t, err)
	assert.Len(t, svcs, 2)

	projects, err := c.ListProjects(ctx)
	require.NoError(t, err)
	assert.Equal(t, []openstack.Project{
		{ID: "p1", Name: "admin", DomainID: "default", Enabled: true},
		{ID: "p2", Name: "demo", DomainID: "default", Enabled: true},
	}, projects)

	images, err := c.ListImages(ctx, openstack.ImageListOpts{})
	require.NoError(t, err)
	assert.Equal(t, []openstack.Image{{ID: "i1", Name: "cirros", Status: "active", Visibility: "public", Owner: "p1", SizeBytes: 16338944}}, images)

	stat, err := c.ObjectStoreAccountStat(ctx)
	require.NoError(t, err)
	assert.Equal(t, openstack.AccountStat{Containers: 3, Objects: 42, BytesUsed: 1048576}, stat)
}

func TestNewClientsFromCloudsYAML(t *testing.T) {
	clearOSEnv(t)
	fc := newFakeCloud(t)
	dir := t.TempDir()
	cloudsFile := filepath.Join(dir, "clouds.yaml")
	require.NoError(t, os.WriteFile(cloudsFile, []byte(`
clouds:
  lab:
    auth:
      auth_url: `+fc.Server.URL+`/v3
      username: admin
      password: labpass
      project_name: admin
      user_domain_name: Default
      project_domain_name: Default
    region_name: RegionOne
    interface: public
    identity_api_version: 3
`), 0o600))

	c, err := openstack.NewClients(context.Background(), openstack.Options{Cloud: "lab", CloudsFile: cloudsFile})
	require.NoError(t, err)
	assert.Equal(t, "RegionOne", c.Region)
	assert.Equal(t, "tok-1", c.Provider.TokenID)
	checkClients(t, c)

	auth := fc.body()["auth"].(map[string]any)
	scope := auth["scope"].(map[string]any)["project"].(map[string]any)
	assert.Equal(t, "admin", scope["name"])
	assert.Equal(t, "Default", scope["domain"].(map[string]any)["name"])

	_, err = openstack.NewClients(context.Background(), openstack.Options{Cloud: "nope", CloudsFile: cloudsFile})
	assert.ErrorContains(t, err, `"nope"`)
	_, err = openstack.NewClients(context.Background(), openstack.Options{Cloud: "lab", CloudsFile: filepath.Join(dir, "missing.yaml")})
	assert.ErrorContains(t, err, "missing.yaml")
	_, err = openstack.NewClients(context.Background(), openstack.Options{Cloud: "lab", CloudsFile: cloudsFile, Region: "RegionTwo"})
	var nf *gophercloud.ErrEndpointNotFound
	assert.True(t, errors.As(err, &nf), "compute is required: %v", err)
	_, err = openstack.NewClients(context.Background(), openstack.Options{Cloud: "lab", CloudsFile: cloudsFile, ComputeMicroversion: "2.53"})
	assert.ErrorContains(t, err, "below 2.60")
}

func TestNewClientsFromOpenrcEnv(t *testing.T) {
	clearOSEnv(t)
	fc := newFakeCloud(t)
	// A standard Keystone v3 openrc, as the lab writes it.
	for k, v := range map[string]string{
		"OS_AUTH_URL":             fc.Server.URL + "/v3",
		"OS_USERNAME":             "admin",
		"OS_PASSWORD":             "labpass",
		"OS_PROJECT_NAME":         "admin",
		"OS_USER_DOMAIN_NAME":     "Default",
		"OS_PROJECT_DOMAIN_NAME":  "Default",
		"OS_REGION_NAME":          "RegionOne",
		"OS_IDENTITY_API_VERSION": "3",
	} {
		t.Setenv(k, v)
	}
	c, err := openstack.NewClients(context.Background(), openstack.Options{})
	require.NoError(t, err)
	assert.Equal(t, "RegionOne", c.Region)
	checkClients(t, c)

	auth := fc.body()["auth"].(map[string]any)
	user := auth["identity"].(map[string]any)["password"].(map[string]any)["user"].(map[string]any)
	assert.Equal(t, "admin", user["name"])
	assert.Equal(t, "Default", user["domain"].(map[string]any)["name"])
	scope := auth["scope"].(map[string]any)["project"].(map[string]any)
	assert.Equal(t, "Default", scope["domain"].(map[string]any)["name"])
}

func TestEnvErrors(t *testing.T) {
	for name, env := range map[string]map[string]string{
		"OS_AUTH_URL":            {},
		"OS_PASSWORD":            {"OS_AUTH_URL": "http://x/v3", "OS_USERNAME": "a", "OS_USER_DOMAIN_NAME": "Default"},
		"OS_USER_DOMAIN_NAME":    {"OS_AUTH_URL": "http://x/v3", "OS_USERNAME": "a", "OS_PASSWORD": "p"},
		"OS_PROJECT_DOMAIN_NAME": {"OS_AUTH_URL": "http://x/v3", "OS_USERNAME": "a", "OS_PASSWORD": "p", "OS_USER_DOMAIN_NAME": "Default", "OS_PROJECT_NAME": "admin"},
	} {
		t.Run(name, func(t *testing.T) {
			clearOSEnv(t)
			for k, v := range env {
				t.Setenv(k, v)
			}
			_, err := openstack.NewClients(context.Background(), openstack.Options{})
			assert.ErrorContains(t, err, name)
		})
	}
}
