//go:build e2e

package e2e

// The staged upgrade's smoke test when the answer to its create is lost: Nova (and Cinder)
// carried out the POST, the fault proxy then reset the connection. The smoke test must find the
// server (the volume) by its name and follow it, not create a second one. The faults are forced
// (faultproxy Options.Force: the first POST /servers and POST /volumes through this proxy, which
// only this test's clients use), so the test does not depend on the seed or on timing.

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/internal/infra/openstack"
	"github.com/stackrun/stackrun/internal/testenv/faultproxy"
)

func TestSmokeTestLostCreateOnLab(t *testing.T) {
	l := requireLab(t)
	proxy := faultproxy.New(faultproxy.Options{Force: []faultproxy.Forced{
		{Method: http.MethodPost, PathSuffix: "/servers", Kind: faultproxy.ResetAfter},
		{Method: http.MethodPost, PathSuffix: "/volumes", Kind: faultproxy.ResetAfter},
	}})
	t.Cleanup(proxy.Close)
	clouds := faultyClouds(t, proxy, l.CloudsFile)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cl, err := openstack.NewClients(ctx, openstack.Options{Cloud: "lab", CloudsFile: clouds, RequestTimeout: 30 * time.Second})
	require.NoError(t, err)
	volume := cl.BlockStorage != nil
	cloud := &activities.Cloud{Clients: func(context.Context) (*openstack.Clients, error) { return cl, nil }}

	req := activities.SmokeRequest{Name: fmt.Sprintf("e2e-lost-%d", time.Now().Unix()), Boot: true, Volume: volume}
	name := "stackrun-smoke-" + req.Name
	t.Cleanup(func() { deleteNamed(t, l, name) })
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	env.RegisterActivity(cloud)
	v, err := env.ExecuteActivity(cloud.UpgradeSmokeTest, req)
	require.NoError(t, err, "the smoke test survives its lost creates")
	var res activities.SmokeResult
	require.NoError(t, v.Get(&res))
	checks := strings.Join(res.Checks, "; ")
	t.Logf("smoke test: %s (faults %v)", checks, proxy.Stats().Faults)
	forced := 1
	if volume {
		forced = 2
	}
	require.Equal(t, map[faultproxy.Kind]int{faultproxy.ResetAfter: forced}, proxy.Stats().Faults, "the forced faults were injected")

	assert.Contains(t, checks, "nova: server "+res.Server+" created although the answer was lost")
	assert.Contains(t, checks, "nova: server deleted")
	// Soft-deleted rows stay in Nova's and Cinder's databases: one row each, nothing made twice.
	assert.Equal(t, "1", strings.TrimSpace(labSQL(t, l, "SELECT COUNT(*) FROM nova.instances WHERE display_name='"+name+"'")), "one server booted")
	if volume {
		assert.Contains(t, checks, "cinder: volume "+res.Volume+" created although the answer was lost")
		assert.Contains(t, checks, "cinder: volume deleted")
		assert.Equal(t, "1", strings.TrimSpace(labSQL(t, l, "SELECT COUNT(*) FROM cinder.volumes WHERE display_name='"+name+"'")), "one volume created")
	}
}

// deleteNamed deletes what a failed smoke test may have left (servers and volumes of that name).
func deleteNamed(t *testing.T, l *Lab, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if all, err := l.Clients.ListServers(ctx, openstack.ServerListOpts{}); err == nil {
		for _, s := range all {
			if s.Name == name {
				t.Logf("cleanup: delete server %s", s.ID)
				_ = l.Clients.DeleteServer(ctx, s.ID)
			}
		}
	}
	if l.Clients.BlockStorage == nil {
		return
	}
	if all, err := l.Clients.ListVolumes(ctx, name, ""); err == nil {
		for _, v := range all {
			t.Logf("cleanup: delete volume %s", v.ID)
			_ = l.Clients.DeleteVolume(ctx, v.ID)
		}
	}
}
