package activities

import (
	"context"
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

	"github.com/stackrun/stackrun/internal/infra/diagnose"
	"github.com/stackrun/stackrun/internal/infra/openstack"
)

// The API side of read-only: every request the API collectors send is a GET. (The lab's e2e
// tests run them against the real APIs; this fake records methods and serves Nova's and
// Neutron's documented shapes.)
func TestDiagnoseAPICollectorsOnlyRead(t *testing.T) {
	fake := th.SetupHTTP()
	defer fake.Teardown()
	var mu sync.Mutex
	var calls []string
	record := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json") // gophercloud's pager reads JSON only
		mu.Lock()
		calls = append(calls, r.Method+" "+r.URL.Path+"?"+r.URL.RawQuery)
		mu.Unlock()
	}
	server := `{"id": "11111111-2222-3333-4444-555555555555", "name": "big", "status": "ERROR", "tenant_id": "p1",
	 "OS-EXT-SRV-ATTR:host": null, "OS-EXT-STS:task_state": null, "OS-EXT-STS:vm_state": "error",
	 "created": "2026-12-01T08:50:00Z", "updated": "2026-12-01T08:50:05Z",
	 "fault": {"code": 500, "message": "No valid host was found. ", "created": "2026-12-01T08:50:05Z"},
	 "addresses": {}, "flavor": {"original_name": "huge", "vcpus": 4096, "ram": 512, "disk": 1}}`
	fake.Mux.HandleFunc("/servers/11111111-2222-3333-4444-555555555555", func(w http.ResponseWriter, r *http.Request) {
		record(w, r)
		fmt.Fprintf(w, `{"server": %s}`, server)
	})
	fake.Mux.HandleFunc("/servers/detail", func(w http.ResponseWriter, r *http.Request) {
		record(w, r)
		assert.Equal(t, "ERROR", r.URL.Query().Get("status"))
		assert.NotEmpty(t, r.URL.Query().Get("changes-since"))
		fmt.Fprintf(w, `{"servers": [%s, {"id": "other", "name": "o", "status": "ERROR", "tenant_id": "p2", "fault": {"code": 500, "message": "No valid host was found."}}]}`, server)
	})
	fake.Mux.HandleFunc("/os-services", func(w http.ResponseWriter, r *http.Request) {
		record(w, r)
		fmt.Fprint(w, `{"services": [{"id": "s1", "binary": "nova-compute", "host": "compute1", "zone": "nova", "status": "enabled", "state": "up", "updated_at": "2026-12-01T08:59:00.000000"},
		 {"id": "s2", "binary": "nova-scheduler", "host": "controller", "zone": "internal", "status": "enabled", "state": "down", "updated_at": "2026-12-01T08:40:00.000000"}]}`)
	})
	fake.Mux.HandleFunc("/agents", func(w http.ResponseWriter, r *http.Request) {
		record(w, r)
		fmt.Fprint(w, `{"agents": [{"id": "a1", "binary": "neutron-dhcp-agent", "host": "controller", "alive": false, "admin_state_up": true, "heartbeat_timestamp": "2026-12-01 08:30:00"}]}`)
	})
	compute := fakeclient.ServiceClient(fake)
	compute.Type, compute.Microversion = "compute", openstack.DefaultComputeMicroversion
	network := fakeclient.ServiceClient(fake)
	network.Type = "network"
	cl := &openstack.Clients{Compute: compute, Network: network}
	d := NewDiagnose(&Hosts{Inventory: map[string]InventoryHost{}}, func(context.Context) (*openstack.Clients, error) { return cl, nil })
	ctx := context.Background()
	now := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	req := DiagnoseRequest{Symptom: diagnose.InstanceWontBoot, Subject: diagnose.Subject{Kind: diagnose.SubjectUUID, Value: "11111111-2222-3333-4444-555555555555"},
		Since: now.Add(-30 * time.Minute), Until: now}

	plan, err := d.DiagnosePlan(ctx, req)
	require.NoError(t, err)
	require.NotNil(t, plan.Facts.Resource)
	r := plan.Facts.Resource
	assert.Equal(t, "ERROR", r.Status)
	assert.Contains(t, r.Fault, "No valid host")
	assert.Equal(t, "GET compute /servers/11111111-2222-3333-4444-555555555555", r.Source)
	var kinds []string
	for _, s := range plan.Collectors {
		kinds = append(kinds, s.Kind)
	}
	assert.Equal(t, []string{CollectComponents, CollectRelated, CollectCapacity}, kinds, "no inventory: API views only")

	f := plan.Facts
	creq := CollectRequest{DiagnoseRequest: req, Resource: r}
	part, err := d.DiagnoseComponents(ctx, creq)
	require.NoError(t, err)
	f.Merge(part)
	part, err = d.DiagnoseRelated(ctx, creq)
	require.NoError(t, err)
	f.Merge(part)
	assert.Len(t, f.Related, 2)
	assert.Len(t, f.Services, 3)

	mu.Lock()
	for _, c := range calls {
		assert.True(t, strings.HasPrefix(c, "GET "), "the collectors only read: %s", c)
	}
	assert.NotEmpty(t, calls)
	mu.Unlock()

	rep := diagnose.Analyze(f)
	assert.Equal(t, "nova-scheduler", rep.Suspects[0].Component, "%+v", rep.Suspects)
	assert.Equal(t, diagnose.ScopeEverything, rep.Blast.Scope, "two instances in two projects never placed")
}
