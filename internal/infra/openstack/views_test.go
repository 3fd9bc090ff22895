package openstack_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	th "github.com/gophercloud/gophercloud/v2/testhelper"
	fakeclient "github.com/gophercloud/gophercloud/v2/testhelper/client"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stackrun/stackrun/internal/infra/openstack"
)

func TestTriageViews(t *testing.T) {
	fake := th.SetupHTTP()
	defer fake.Teardown()
	json := func(w http.ResponseWriter, r *http.Request, code int, body string) {
		th.TestMethod(t, r, http.MethodGet)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		fmt.Fprint(w, body)
	}
	fake.Mux.HandleFunc("/servers/missing", func(w http.ResponseWriter, r *http.Request) {
		json(w, r, http.StatusNotFound, `{"itemNotFound": {"code": 404, "message": "Instance missing could not be found."}}`)
	})
	fake.Mux.HandleFunc("/servers/detail", func(w http.ResponseWriter, r *http.Request) {
		assert.Equal(t, `^10\.0\.0\.5$`, r.URL.Query().Get("ip"))
		json(w, r, 200, `{"servers": [{"id": "b", "name": "web", "status": "ACTIVE", "created": "2026-12-01T08:00:00Z",
		 "addresses": {"private": [{"addr": "10.0.0.5", "version": 4, "OS-EXT-IPS-MAC:mac_addr": "FA:16:3E:00:00:05"}]}}]}`)
	})
	fake.Mux.HandleFunc("/servers", func(w http.ResponseWriter, r *http.Request) { json(w, r, 200, `{"servers": []}`) })
	fake.Mux.HandleFunc("/ports", func(w http.ResponseWriter, r *http.Request) {
		assert.Equal(t, "ip_address=10.0.0.5", r.URL.Query().Get("fixed_ips"))
		json(w, r, 200, `{"ports": [{"id": "p1", "mac_address": "FA:16:3E:00:00:05", "device_owner": "compute:nova", "device_id": "b"}]}`)
	})
	compute := fakeclient.ServiceClient(fake)
	compute.Type, compute.Microversion = "compute", openstack.DefaultComputeMicroversion
	network := fakeclient.ServiceClient(fake)
	network.Type = "network"
	cl := &openstack.Clients{Compute: compute, Network: network}
	ctx := context.Background()

	_, err := cl.GetServerDetail(ctx, "missing")
	require.Error(t, err)
	assert.True(t, openstack.IsNotFound(err), "%v", err)
	assert.False(t, openstack.IsNotFound(errors.New("boom")))

	q := openstack.ServerQuery{AllTenants: true, IP: "10.0.0.5", Status: "ERROR", ChangesSince: time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)}
	assert.Equal(t, `GET compute /servers/detail?all_tenants=1&ip=^10\.0\.0\.5$&status=ERROR&changes-since=2026-12-01T08:00:00Z`, q.URL())
	found, err := cl.FindServers(ctx, openstack.ServerQuery{AllTenants: true, IP: "10.0.0.5"})
	require.NoError(t, err)
	require.Len(t, found, 1)
	assert.Equal(t, []openstack.ServerAddress{{Network: "private", IP: "10.0.0.5", MAC: "fa:16:3e:00:00:05"}}, found[0].Addresses)
	assert.Equal(t, time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC), found[0].Created)

	ps, err := cl.PortsWithIP(ctx, "10.0.0.5")
	require.NoError(t, err)
	assert.Equal(t, []openstack.Port{{ID: "p1", MAC: "fa:16:3e:00:00:05", DeviceOwner: "compute:nova", DeviceID: "b"}}, ps)

	tm, err := cl.TimeAPI(ctx, "compute")
	require.NoError(t, err)
	assert.Equal(t, 200, tm.Status)
	assert.Positive(t, tm.Took)
	_, err = cl.TimeAPI(ctx, "block-storage")
	assert.ErrorIs(t, err, openstack.ErrServiceUnavailable)
	_, err = cl.TimeAPI(ctx, "nova")
	assert.Error(t, err)
}
