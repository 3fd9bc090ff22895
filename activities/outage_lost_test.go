package activities_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	th "github.com/gophercloud/gophercloud/v2/testhelper"
	fakeclient "github.com/gophercloud/gophercloud/v2/testhelper/client"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/internal/infra/openstack"
)

// rebootNova has one instance that Nova lists ACTIVE but whose hypervisor lost it (power state
// 0). A hard reboot brings it back (power 1) and is logged in its action log; the answer to the
// request is then dropped (the lost 202).
type rebootNova struct {
	mu      sync.Mutex
	power   int
	actions []string // action log, JSON
	posts   []string
}

func newRebootNova(t *testing.T) (*rebootNova, *openstack.Clients) {
	n := &rebootNova{}
	f := th.SetupHTTP()
	t.Cleanup(f.Teardown)
	f.Mux.HandleFunc("/servers/s1", func(w http.ResponseWriter, r *http.Request) {
		n.mu.Lock()
		defer n.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"server": {"id": "s1", "name": "web-1", "status": "ACTIVE", "OS-EXT-STS:task_state": "", "tenant_id": "p1",
		  "OS-EXT-SRV-ATTR:host": "compute1", "OS-EXT-STS:power_state": %d, "flavor": {"vcpus": 1, "ram": 512, "disk": 0}}}`, n.power)
	})
	f.Mux.HandleFunc("/servers/s1/action", func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		require.NoError(t, json.NewDecoder(r.Body).Decode(&body))
		n.mu.Lock()
		for k := range body {
			n.posts = append(n.posts, k)
		}
		n.power = 1
		ts := time.Now().UTC().Format("2006-01-02T15:04:05.000000")
		n.actions = append(n.actions, fmt.Sprintf(`{"action": "reboot", "instance_uuid": "s1", "request_id": "req-%d", "start_time": %q, "message": null, "project_id": "p1", "user_id": "u1"}`, len(n.posts), ts))
		n.mu.Unlock()
		dropAnswer(t, w)
	})
	f.Mux.HandleFunc("/servers/s1/os-instance-actions", func(w http.ResponseWriter, r *http.Request) {
		n.mu.Lock()
		defer n.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"instanceActions": [%s]}`, strings.Join(n.actions, ","))
	})
	c := fakeclient.ServiceClient(f)
	c.Type, c.Microversion = "compute", "2.90"
	return n, &openstack.Clients{Compute: c}
}

func (n *rebootNova) sent() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.posts...)
}

// A lost instance is hard-rebooted once: the retry after the lost answer finds the reboot in
// the action log and only waits (a second hard reboot would cut the booting guest again).
func TestOutageStartInstanceLostAnswerRebootsOnce(t *testing.T) {
	n, cl := newRebootNova(t)
	o := &activities.Outage{Clients: func(context.Context) (*openstack.Clients, error) { return cl, nil }, Poll: 5 * time.Millisecond}
	req := activities.OutageInstanceRequest{ID: "s1", Recreate: true}
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	env.RegisterActivity(o)
	_, err := env.ExecuteActivity(o.OutageStartInstance, req)
	require.Error(t, err, "the first attempt lost Nova's answer")

	env = suite.NewTestActivityEnvironment()
	env.RegisterActivity(o)
	env.SetHeartbeatDetails(map[string]any{"first_start": time.Now().Add(-2 * time.Second)})
	v, err := env.ExecuteActivity(o.OutageStartInstance, req)
	require.NoError(t, err)
	var res activities.OutageInstanceResult
	require.NoError(t, v.Get(&res))
	assert.Equal(t, "hard-reboot", res.Action, "%+v", res)
	assert.Equal(t, "ACTIVE", res.Status)
	assert.Equal(t, []string{"reboot"}, n.sent(), "one hard reboot")
}

// The same for the post-reboot check's and recover-host's hard reboot (HardRebootOn): the retry
// after the lost answer finds the reboot in the action log, does not send a second one.
func TestHardRebootOnLostAnswerRebootsOnce(t *testing.T) {
	n, cl := newRebootNova(t)
	c := &activities.Compute{Clients: func(context.Context) (*openstack.Clients, error) { return cl, nil }, PollInterval: 5 * time.Millisecond}
	req := activities.HardRebootRequest{ID: "s1", Host: "compute1", Wait: 10 * time.Second}
	_, err := activityEnv(t, c).ExecuteActivity(c.HardRebootOn, req)
	require.Error(t, err, "the first attempt lost Nova's answer")
	v, err := retried(t, c).ExecuteActivity(c.HardRebootOn, req)
	require.NoError(t, err)
	var res activities.HardRebootResult
	require.NoError(t, v.Get(&res))
	assert.Equal(t, "ACTIVE", res.Status)
	assert.Equal(t, []string{"reboot"}, n.sent(), "one hard reboot")
}
