//go:build e2e

package e2e

// Runbooks under injected API faults: the worker reaches Keystone, Nova, Placement, Glance,
// Neutron and Swift only through a real proxy (internal/testenv/faultproxy) that answers 20 % of
// the requests with a 503, a reset before or after the service handled them, an answer held
// past the client's timeout, or a slow body. The runs must end as they do without faults, with
// nothing done twice: a live migration whose POST was "lost" after Nova accepted it is found on
// the retry, not started again.

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/stackrun/stackrun/internal/testenv/faultproxy"
	"github.com/stackrun/stackrun/workflows"
)

// faultyClouds writes a clouds.yaml whose entries authenticate through proxy (and so, by the
// rewritten catalogue, reach every service through it).
func faultyClouds(t *testing.T, proxy *faultproxy.Proxy, cloudsFile string) string {
	t.Helper()
	b, err := os.ReadFile(cloudsFile)
	require.NoError(t, err)
	var doc map[string]any
	require.NoError(t, yaml.Unmarshal(b, &doc))
	clouds, _ := doc["clouds"].(map[string]any)
	require.NotEmpty(t, clouds, "no clouds in %s", cloudsFile)
	for name, c := range clouds {
		auth, _ := c.(map[string]any)["auth"].(map[string]any)
		u, _ := auth["auth_url"].(string)
		require.NotEmpty(t, u, "cloud %s has no auth_url", name)
		front, err := proxy.Front(u)
		require.NoError(t, err)
		auth["auth_url"] = front
	}
	out, err := yaml.Marshal(doc)
	require.NoError(t, err)
	p := filepath.Join(t.TempDir(), "clouds.yaml")
	require.NoError(t, os.WriteFile(p, out, 0o600))
	return p
}

func TestFaultsOnLab(t *testing.T) {
	proxy := faultproxy.New(faultproxy.Options{Seed: 20261201, Rate: 0.2, HangFor: 15 * time.Second, SlowChunk: 20 * time.Millisecond})
	t.Cleanup(proxy.Close)
	lab := requireLab(t)
	clouds := faultyClouds(t, proxy, lab.CloudsFile)
	// The test's own clients go straight to the lab; only the worker's pass through the proxy.
	l := newNovaLab(t, "STACKRUN_OPENSTACK_CLOUDS_FILE="+clouds, "STACKRUN_OPENSTACK_REQUEST_TIMEOUT=5s")

	proxy.Enable(false)
	ids := l.boot("fault", "compute1", 3)
	l.stop(ids[2])
	proxy.Enable(true)

	// Evacuation: two live migrations, one cold migration with its confirm, the service disabled
	// and enabled again, all through the faults.
	id := l.start("evacuate", evacInput("compute1"))
	l.waitFor(id, 5*time.Minute, "gate approve-plan", func(st workflows.Status) bool {
		return len(st.OpenGates) == 1 && st.OpenGates[0].Name == workflows.GateApprovePlan
	})
	l.approve(id, workflows.GateApprovePlan, "bob")
	rep := l.report(id, 15*time.Minute)
	require.Equal(t, workflows.StatusCompleted, rep.Status, "%s\nsteps: %+v\nfindings: %+v", rep.Summary, rep.Steps, rep.Findings)
	proxy.Enable(false)
	for i, sid := range ids {
		s := l.server(sid)
		assert.Contains(t, []string{"compute2", "compute3"}, s.Host, sid)
		if i < 2 {
			assert.Equal(t, "ACTIVE", s.Status, sid)
		} else {
			assert.Equal(t, "SHUTOFF", s.Status, sid)
		}
		n := l.migrations([]string{sid})
		assert.Equal(t, 1, n["live-migration"]+n["migration"], "%s migrated %v times: nothing may be done twice", sid, n)
	}
	assert.Equal(t, "enabled", l.service("compute1").Status, "compute1 is enabled after")
	evac := proxy.Stats()

	// A post-reboot check of the controller (every API probed through the faults) still finds
	// every service up: injected faults are retried, not reported as outages.
	proxy.Enable(true)
	in := &workflows.PostRebootCheckInput{Meta: workflows.Meta{RequestedBy: "carol"}, Host: "controller"}
	rep = l.report(l.start("post-reboot-check", in), 10*time.Minute)
	require.Equal(t, workflows.StatusCompleted, rep.Status, rep.Summary)
	for _, f := range rep.Findings {
		assert.NotContains(t, strings.ToLower(f.Message), "injected", "a fault reached the report: %+v", f)
	}
	all := proxy.Stats()
	t.Logf("faults injected: evacuation %d of %d requests %v; in all %d of %d %v (by method %v)",
		evac.Total(), evac.Requests, evac.Faults, all.Total(), all.Requests, all.Faults, all.ByMethod)
	require.Greater(t, evac.Total(), 5, "too few faults injected during the evacuation to prove anything")
	require.Positive(t, all.ByMethod["POST"]+all.ByMethod["PUT"], "no write met a fault")
}
