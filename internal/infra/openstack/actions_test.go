package openstack_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/gophercloud/gophercloud/v2"
	th "github.com/gophercloud/gophercloud/v2/testhelper"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stackrun/stackrun/internal/infra/openstack"
)

// actionServer answers POST /servers/a/action with code and keeps each body.
func actionServer(t *testing.T, f th.FakeServer, code int) *[]string {
	var bodies []string
	f.Mux.HandleFunc("/servers/a/action", func(w http.ResponseWriter, r *http.Request) {
		th.TestMethod(t, r, http.MethodPost)
		th.TestHeader(t, r, "X-OpenStack-Nova-API-Version", "2.90")
		b, _ := io.ReadAll(r.Body)
		bodies = append(bodies, string(b))
		w.WriteHeader(code)
	})
	return &bodies
}

func TestServerActionBodies(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		code int
		call func(c *openstack.Clients) error
		want string
	}{
		{"live, scheduler, auto", 202, func(c *openstack.Clients) error { return c.LiveMigrate(ctx, "a", openstack.LiveMigrateOpts{}) },
			`{"os-migrateLive": {"host": null, "block_migration": "auto"}}`},
		{"live, host, block", 202, func(c *openstack.Clients) error {
			return c.LiveMigrate(ctx, "a", openstack.LiveMigrateOpts{Host: "compute2", BlockMigration: "yes"})
		}, `{"os-migrateLive": {"host": "compute2", "block_migration": true}}`},
		{"cold to a host", 202, func(c *openstack.Clients) error { return c.Migrate(ctx, "a", openstack.MigrateOpts{Host: "compute2"}) },
			`{"migrate": {"host": "compute2"}}`},
		{"cold, scheduler", 202, func(c *openstack.Clients) error { return c.Migrate(ctx, "a", openstack.MigrateOpts{}) }, `{"migrate": {}}`},
		{"evacuate answers 200", 200, func(c *openstack.Clients) error { return c.Evacuate(ctx, "a", openstack.EvacuateOpts{}) }, `{"evacuate": {}}`},
		{"confirm resize answers 204", 204, func(c *openstack.Clients) error { return c.ConfirmResize(ctx, "a") }, `{"confirmResize": null}`},
		{"start", 202, func(c *openstack.Clients) error { return c.StartServer(ctx, "a") }, `{"os-start": null}`},
		{"soft reboot", 202, func(c *openstack.Clients) error { return c.RebootServer(ctx, "a", openstack.RebootOpts{}) }, `{"reboot": {"type": "SOFT"}}`},
		{"hard reboot", 202, func(c *openstack.Clients) error { return c.RebootServer(ctx, "a", openstack.RebootOpts{Hard: true}) }, `{"reboot": {"type": "HARD"}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := fake(t)
			bodies := actionServer(t, f, tc.code)
			require.NoError(t, tc.call(serviceClients(f)))
			require.Len(t, *bodies, 1)
			assert.JSONEq(t, tc.want, (*bodies)[0])
		})
	}
}

func TestServerActionRefusedKeepsTheCode(t *testing.T) {
	f := fake(t)
	f.Mux.HandleFunc("/servers/a/action", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusConflict)
		fmt.Fprint(w, `{"conflictingRequest": {"code": 409, "message": "Cannot 'os-start' instance a while it is in task_state powering-on"}}`)
	})
	err := serviceClients(f).StartServer(context.Background(), "a")
	assert.True(t, gophercloud.ResponseCodeIs(err, http.StatusConflict), "%v", err)
	assert.ErrorContains(t, err, "start server a")

	f2 := fake(t)
	actionServer(t, f2, 202)
	assert.Error(t, serviceClients(f2).Evacuate(context.Background(), "a", openstack.EvacuateOpts{}), "an evacuation answers 200, not 202")
}

func TestAbortLiveMigration(t *testing.T) {
	f := fake(t)
	var deleted []string
	f.Mux.HandleFunc("/servers/a/migrations", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"migrations": [{"id": 42, "status": "running"}]}`)
	})
	f.Mux.HandleFunc("/servers/a/migrations/42", func(w http.ResponseWriter, r *http.Request) {
		th.TestMethod(t, r, http.MethodDelete)
		deleted = append(deleted, "42")
		w.WriteHeader(http.StatusAccepted)
	})
	f.Mux.HandleFunc("/servers/b/migrations", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"migrations": []}`)
	})
	c := serviceClients(f)
	require.NoError(t, c.AbortLiveMigration(context.Background(), "a"))
	assert.Equal(t, []string{"42"}, deleted)
	assert.ErrorIs(t, c.AbortLiveMigration(context.Background(), "b"), openstack.ErrNoLiveMigration)
}

func TestUpdateServiceBodies(t *testing.T) {
	f := fake(t)
	var got map[string]any
	f.Mux.HandleFunc("/os-services/c1", func(w http.ResponseWriter, r *http.Request) {
		th.TestMethod(t, r, http.MethodPut)
		got = nil
		require.NoError(t, json.NewDecoder(r.Body).Decode(&got))
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"service": {"id": "c1", "binary": "nova-compute", "host": "compute1", "zone": "nova", "status": "disabled",
		  "state": "down", "disabled_reason": "maintenance", "forced_down": false, "updated_at": "2026-05-01T10:00:00.000000"}}`)
	})
	c := serviceClients(f)
	ctx := context.Background()
	s, err := c.UpdateService(ctx, "c1", openstack.ServiceUpdateOpts{Status: openstack.ServiceStatusDisabled, DisabledReason: "maintenance"})
	require.NoError(t, err)
	assert.Equal(t, map[string]any{"status": "disabled", "disabled_reason": "maintenance"}, got)
	assert.Equal(t, openstack.Service{ID: "c1", Host: "compute1", Binary: "nova-compute", Zone: "nova", Status: "disabled", State: "down", DisabledReason: "maintenance"}, s)

	no := false
	_, err = c.UpdateService(ctx, "c1", openstack.ServiceUpdateOpts{ForcedDown: &no})
	require.NoError(t, err)
	assert.Equal(t, map[string]any{"forced_down": false}, got, "false is sent (gophercloud's UpdateOpts would drop it)")

	_, err = c.UpdateService(ctx, "c1", openstack.ServiceUpdateOpts{Status: openstack.ServiceStatusEnabled})
	require.NoError(t, err)
	assert.Equal(t, map[string]any{"status": "enabled"}, got)
}

func TestQuotas(t *testing.T) {
	f := fake(t)
	serveJSON(t, f, "/os-quota-sets/p1/detail", nil, `{"quota_set": {"id": "p1",
	  "instances": {"in_use": 9, "limit": 10, "reserved": 1}, "cores": {"in_use": 20, "limit": 20, "reserved": 0},
	  "ram": {"in_use": 1024, "limit": 51200, "reserved": 0}, "server_groups": {"in_use": 0, "limit": -1, "reserved": 0},
	  "key_pairs": {"in_use": 1, "limit": 100, "reserved": 0}}}`)
	serveJSON(t, f, "/os-quota-sets/p1", map[string]string{"usage": "true"}, `{"quota_set": {"id": "p1",
	  "volumes": {"in_use": 19, "limit": 20, "reserved": 0, "allocated": 0}, "gigabytes_lvm": {"in_use": 10, "limit": -1, "reserved": 2, "allocated": 0}}}`)
	c := serviceClients(f)
	c.BlockStorage = c.Identity
	ctx := context.Background()
	n, err := c.ComputeQuotas(ctx, "p1")
	require.NoError(t, err)
	assert.Equal(t, openstack.ComputeQuotas{Instances: openstack.Quota{Limit: 10, InUse: 9, Reserved: 1}, Cores: openstack.Quota{Limit: 20, InUse: 20},
		RAM: openstack.Quota{Limit: 51200, InUse: 1024}, ServerGroups: openstack.Quota{Limit: -1}, KeyPairs: openstack.Quota{Limit: 100, InUse: 1}}, n)
	cq, err := c.BlockStorageQuotas(ctx, "p1")
	require.NoError(t, err)
	assert.Equal(t, map[string]openstack.Quota{"volumes": {Limit: 20, InUse: 19}, "gigabytes_lvm": {Limit: -1, InUse: 10, Reserved: 2}}, cq,
		"numbers read although gophercloud decodes them as json.Number")

	_, err = (&openstack.Clients{}).BlockStorageQuotas(ctx, "p1")
	assert.ErrorIs(t, err, openstack.ErrServiceUnavailable)
}
