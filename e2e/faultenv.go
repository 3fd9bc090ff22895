//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
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
	// The lab's clouds.yaml, not requireLab: a worker started during a power loss (the outage
	// test's replacement) must not need Keystone to answer.
	clouds := faultyClouds(t, proxy, filepath.Join(labDir(t), "clouds.yaml"))
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

// faultConfig: with STACKRUN_E2E_SSH_FAULT_RATE set (0-1, `make reliability-faults
// SSH_FAULT_RATE=`), the worker reaches every host's sshd through a TCP cutter that kills that
// share of its SSH connections at a random moment of their first 15 s (a command half run; the
// pool keeps its connections, so one that lives past 15 s is safe); host keys stay verified.
// STACKRUN_E2E_DB_FAULT_RATE (DB_FAULT_RATE=) does the same to its MariaDB connections: every
// go-sql-driver DSN of the config (…@tcp(host:port)/…) goes through a cutter. Unset, the
// worker's config is cfgPath unchanged. A test's own env for the worker wins (…_RATE=0: none).
func faultConfig(t *testing.T, cfgPath string, env []string) string {
	seed, _ := strconv.ParseInt(os.Getenv("STACKRUN_E2E_FAULT_SEED"), 10, 64)
	if seed == 0 {
		seed = 1
	}
	cutter := func(name, what string) *faultproxy.TCP {
		v := os.Getenv(name)
		for _, e := range env {
			if k, val, _ := strings.Cut(e, "="); k == name {
				v = val
			}
		}
		rate, err := strconv.ParseFloat(v, 64)
		if err != nil || rate <= 0 {
			return nil
		}
		c := faultproxy.NewTCP(seed, rate, 15*time.Second)
		t.Cleanup(func() {
			conns, cuts := c.Counts()
			t.Logf("%s fault proxy: %d connections, %d cut mid-stream", what, conns, cuts)
			c.Close()
		})
		return c
	}
	if c := cutter("STACKRUN_E2E_DB_FAULT_RATE", "mariadb"); c != nil {
		cfgPath = dbFaultConfig(t, c, cfgPath)
	}
	if c := cutter("STACKRUN_E2E_SSH_FAULT_RATE", "ssh"); c != nil {
		cfgPath = sshFaultConfig(t, c, cfgPath, "")
	}
	return cfgPath
}

var dsnAddress = regexp.MustCompile(`@tcp\(([^)]+)\)`)

// dbFaultConfig writes a copy of the config at cfgPath whose DSNs reach their servers through
// cutter (one forwarded port per server address).
func dbFaultConfig(t *testing.T, cutter *faultproxy.TCP, cfgPath string) string {
	t.Helper()
	b, err := os.ReadFile(cfgPath)
	require.NoError(t, err)
	fronts := map[string]string{}
	var ferr error
	out := dsnAddress.ReplaceAllStringFunc(string(b), func(m string) string {
		addr := dsnAddress.FindStringSubmatch(m)[1]
		if _, ok := fronts[addr]; !ok {
			ip, _, _ := strings.Cut(addr, ":")
			front, err := cutter.ForwardOn(ip, addr)
			if err != nil {
				ferr = err
			}
			fronts[addr] = front
		}
		return "@tcp(" + fronts[addr] + ")"
	})
	require.NoError(t, ferr)
	require.NotEmpty(t, fronts, "%s has no DSN to fault", cfgPath)
	p := filepath.Join(t.TempDir(), "stackrun.yaml")
	require.NoError(t, os.WriteFile(p, []byte(out), 0o600))
	return p
}

// sshFaultConfig writes a copy of the lab's stackrun.yaml whose inventory reaches every host's
// sshd through cutter (each host gets a forwarded port of its own on its own address, so that a
// ping or a port check of the host still reaches the host; the host's own keys in a known_hosts
// of its own: host keys stay verified). knownHosts "" means the config's
// own ssh.known_hosts_file.
func sshFaultConfig(t *testing.T, cutter *faultproxy.TCP, cfgPath, knownHosts string) string {
	t.Helper()
	b, err := os.ReadFile(cfgPath)
	require.NoError(t, err)
	var doc map[string]any
	require.NoError(t, yaml.Unmarshal(b, &doc))
	if knownHosts == "" {
		knownHosts, _ = doc["ssh"].(map[string]any)["known_hosts_file"].(string)
		require.NotEmpty(t, knownHosts, "%s names no ssh.known_hosts_file", cfgPath)
	}
	kh, err := os.ReadFile(knownHosts)
	require.NoError(t, err)
	var lines []string
	inv, _ := doc["inventory"].(map[string]any)
	require.NotEmpty(t, inv)
	for name, h := range inv {
		host := h.(map[string]any)
		addr := fmt.Sprintf("%v:%v", host["address"], host["port"])
		front, err := cutter.ForwardOn(fmt.Sprint(host["address"]), addr)
		require.NoError(t, err)
		fh, fp, _ := strings.Cut(front, ":")
		host["address"], host["port"] = fh, fp
		want := fmt.Sprintf("[%v]:%v ", strings.Split(addr, ":")[0], strings.Split(addr, ":")[1])
		found := false
		for _, l := range strings.Split(string(kh), "\n") {
			if strings.HasPrefix(l, want) {
				lines = append(lines, fmt.Sprintf("[%s]:%s %s", fh, fp, strings.TrimPrefix(l, want)))
				found = true
			}
		}
		require.True(t, found, "no known_hosts entry for %s (%s)", name, addr)
	}
	dir := t.TempDir()
	khPath := filepath.Join(dir, "known_hosts")
	require.NoError(t, os.WriteFile(khPath, []byte(strings.Join(lines, "\n")+"\n"), 0o600))
	doc["ssh"].(map[string]any)["known_hosts_file"] = khPath
	out, err := yaml.Marshal(doc)
	require.NoError(t, err)
	p := filepath.Join(dir, "stackrun.yaml")
	require.NoError(t, os.WriteFile(p, out, 0o600))
	return p
}
