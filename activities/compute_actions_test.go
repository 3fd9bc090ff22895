package activities_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
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
