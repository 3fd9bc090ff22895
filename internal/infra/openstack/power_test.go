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

func TestServerPowerActions(t *testing.T) {
	fake := th.SetupHTTP()
	defer fake.Teardown()
	var bodies []map[string]any
	fake.Mux.HandleFunc("/servers/a/action", func(w http.ResponseWriter, r *http.Request) {
		th.TestMethod(t, r, http.MethodPost)
		b, _ := io.ReadAll(r.Body)
		var m map[string]any
		require.NoError(t, json.Unmarshal(b, &m))
		bodies = append(bodies, m)
		if _, ok := m["resume"]; ok {
			w.WriteHeader(http.StatusConflict)
			fmt.Fprint(w, `{"conflictingRequest": {"code": 409, "message": "Cannot 'resume' instance a while it is in vm_state active"}}`)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	})
	fake.Mux.HandleFunc("/servers/a", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"server": {"id": "a", "name": "web-1", "status": "SUSPENDED", "OS-EXT-SRV-ATTR:host": "compute1",
			"OS-EXT-STS:task_state": null, "OS-EXT-STS:vm_state": "suspended"}}`)
	})
	fake.Mux.HandleFunc("/servers/gone", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, `{"itemNotFound": {"code": 404, "message": "Instance gone could not be found."}}`)
	})
	c := computeClients(fake, openstack.DefaultComputeMicroversion)
	ctx := context.Background()

	for _, a := range []string{openstack.PowerSuspend, openstack.PowerStop, openstack.PowerStart} {
		require.NoError(t, c.ServerPowerAction(ctx, "a", a), a)
	}
	err := c.ServerPowerAction(ctx, "a", openstack.PowerResume)
	assert.True(t, gophercloud.ResponseCodeIs(err, http.StatusConflict), "409 kept for the caller: %v", err)
	assert.Error(t, c.ServerPowerAction(ctx, "a", "reboot"))
	require.Len(t, bodies, 4)
	for i, key := range []string{"suspend", "os-stop", "os-start", "resume"} {
		assert.Contains(t, bodies[i], key)
	}

	s, err := c.GetServer(ctx, "a")
	require.NoError(t, err)
	assert.Equal(t, openstack.Server{ID: "a", Name: "web-1", Status: "SUSPENDED", VMState: "suspended", Host: "compute1"}, s)
	_, err = c.GetServer(ctx, "gone")
	assert.True(t, gophercloud.ResponseCodeIs(err, http.StatusNotFound), "%v", err)
}
