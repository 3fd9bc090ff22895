//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/stackrun/stackrun/internal/testenv/faultproxy"
)

// faultEnv: with STACKRUN_E2E_FAULT_RATE set (e.g. 0.2, what `make reliability-faults` sets),
// every worker an e2e test starts reaches the OpenStack APIs through a fault proxy with that
// rate (seed STACKRUN_E2E_FAULT_SEED, default 1): the whole e2e suite then shows which runbook
// survives faults. Unset, it adds nothing. Tests that set their own clouds file win (env order).
func faultEnv(t *testing.T) []string {
	rate, err := strconv.ParseFloat(os.Getenv("STACKRUN_E2E_FAULT_RATE"), 64)
	if err != nil || rate <= 0 {
		return nil
	}
	seed, _ := strconv.ParseInt(os.Getenv("STACKRUN_E2E_FAULT_SEED"), 10, 64)
	if seed == 0 {
		seed = 1
	}
	proxy := faultproxy.New(faultproxy.Options{Seed: seed, Rate: rate, HangFor: 15 * time.Second, SlowChunk: 20 * time.Millisecond})
	lab := requireLab(t)
	clouds := faultyClouds(t, proxy, lab.CloudsFile)
	t.Cleanup(func() {
		st := proxy.Stats()
		t.Logf("fault proxy: %d faults in %d requests %v", st.Total(), st.Requests, st.Faults)
		proxy.Close()
	})
	return []string{"STACKRUN_OPENSTACK_CLOUDS_FILE=" + clouds, "STACKRUN_OPENSTACK_REQUEST_TIMEOUT=5s"}
}

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
