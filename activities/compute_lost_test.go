package activities_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	th "github.com/gophercloud/gophercloud/v2/testhelper"
	fakeclient "github.com/gophercloud/gophercloud/v2/testhelper/client"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/internal/infra/openstack"
)

// diagnosticsNova answers GET /servers/{id}/diagnostics from a script per server: each call
// takes the next status (the last one repeats) and is counted.
func diagnosticsNova(t *testing.T, script map[string][]int) (*activities.Compute, func(string) int) {
	f := th.SetupHTTP()
	t.Cleanup(f.Teardown)
	var mu sync.Mutex
	calls := map[string]int{}
	for id, codes := range script {
		f.Mux.HandleFunc("/servers/"+id+"/diagnostics", func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			n := calls[id]
			calls[id]++
			mu.Unlock()
			code := codes[min(n, len(codes)-1)]
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(code)
			switch code {
			case 200:
				fmt.Fprint(w, `{"state": "running", "driver": "fake"}`)
			case 409:
				fmt.Fprintf(w, `{"conflictingRequest": {"code": 409, "message": "Cannot 'get_diagnostics' instance %s while it is in power state pending"}}`, id)
			case 404:
				fmt.Fprint(w, `{"itemNotFound": {"code": 404, "message": "Instance could not be found."}}`)
			default:
				fmt.Fprint(w, `{"computeFault": {"code": 500, "message": "Unexpected API Error. MessagingTimeout"}}`)
			}
		})
	}
	sc := fakeclient.ServiceClient(f)
	sc.Type, sc.Microversion = "compute", "2.90"
	cl := &openstack.Clients{Compute: sc}
	c := &activities.Compute{Clients: func(context.Context) (*openstack.Clients, error) { return cl, nil }, PollInterval: time.Millisecond}
	return c, func(id string) int { mu.Lock(); defer mu.Unlock(); return calls[id] }
}

func lostIDs(t *testing.T, val interface{ Get(any) error }) map[string]string {
	var lost []activities.LostInstance
	require.NoError(t, val.Get(&lost))
	out := map[string]string{}
	for _, l := range lost {
		out[l.ID] = l.Detail
	}
	return out
}

// One lost RPC reply (a 500 from nova-api) is asked again instead of failing the question; a
// 409 is lost, a 404 is gone (not lost), a 200 runs.
func TestLostOnHypervisorAsksAgainAfterATimeout(t *testing.T) {
	c, calls := diagnosticsNova(t, map[string][]int{"runs": {500, 200}, "lost": {500, 500, 409}, "deleted": {404}})
	val, err := activityEnv(t, c).ExecuteActivity(c.LostOnHypervisor, []string{"runs", "lost", "deleted"})
	require.NoError(t, err)
	lost := lostIDs(t, val)
	require.Len(t, lost, 1, "%v", lost)
	assert.Contains(t, lost["lost"], "409")
	assert.Equal(t, 2, calls("runs"))
	assert.Equal(t, 3, calls("lost"))
	assert.Equal(t, 1, calls("deleted"))
}

// Without an answer after three questions the attempt fails (retryable): no guess either way.
func TestLostOnHypervisorFailsWithoutAnAnswer(t *testing.T) {
	c, calls := diagnosticsNova(t, map[string][]int{"mute": {500}})
	_, err := activityEnv(t, c).ExecuteActivity(c.LostOnHypervisor, []string{"mute"})
	require.Error(t, err)
	assert.ErrorContains(t, err, "asked 3 times")
	assert.Equal(t, 3, calls("mute"))
}

// A retried attempt takes the answers of the earlier one from the heartbeat details and asks
// only about the rest.
func TestLostOnHypervisorResumesFromHeartbeat(t *testing.T) {
	c, calls := diagnosticsNova(t, map[string][]int{"a": {200}, "b": {409}, "c": {409}})
	env := activityEnv(t, c)
	env.SetHeartbeatDetails(map[string]string{"a": "", "b": "the hypervisor does not run it (earlier attempt)"})
	val, err := env.ExecuteActivity(c.LostOnHypervisor, []string{"a", "b", "c"})
	require.NoError(t, err)
	lost := lostIDs(t, val)
	assert.Equal(t, "the hypervisor does not run it (earlier attempt)", lost["b"])
	assert.Contains(t, lost["c"], "409")
	assert.NotContains(t, lost, "a")
	assert.Zero(t, calls("a")+calls("b"), "answered before: not asked again")
	assert.Equal(t, 1, calls("c"))
}
