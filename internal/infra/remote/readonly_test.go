package remote_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stackrun/stackrun/internal/infra/remote"
)

// Every default command is classified exactly once, and nothing is classified that does not exist.
func TestEveryDefaultCommandIsClassified(t *testing.T) {
	ro, mut := remote.ReadOnlyNames(), remote.MutatingNames()
	defaults := remote.DefaultCommands()
	for name := range defaults {
		inRO, inMut := slices.Contains(ro, name), slices.Contains(mut, name)
		assert.True(t, inRO != inMut, "%s: read-only %v, mutating %v: classify it in readonly.go exactly once", name, inRO, inMut)
	}
	for _, n := range append(ro, mut...) {
		assert.Contains(t, defaults, n, "classified command %s is not a default command", n)
	}
	// The obviously mutating programs and verbs are never marked read-only.
	for _, name := range ro {
		argv := defaults[name]
		assert.NotContains(t, []string{"mkfs.xfs", "mount", "umount", "mkdir", "chown", "cp", "rm", "kill", "reboot"}, argv[0], name)
		switch argv[0] {
		case "systemctl":
			assert.Contains(t, []string{"is-active", "show", "status"}, argv[1], name)
		case "swift-ring-builder":
			assert.NotContains(t, argv, "rebalance", name)
			assert.NotContains(t, argv, "write_ring", name)
		case "apt-get":
			assert.Contains(t, argv, "-s", name)
		}
	}
	for _, name := range []string{"service_start", "service_stop", "service_restart", "mkfs_xfs_force", "umount", "ring_rebalance", "ring_write"} {
		assert.False(t, remote.IsReadOnly(name), name)
	}
}

func TestReadOnlyViewRefusesMutatingCommands(t *testing.T) {
	cat, err := remote.NewCatalogue(nil,
		map[string][]string{
			"log_tail":     {"/opt/lab/labctl", "tail", "{host}", "{service}", "{lines}"}, // override of a read-only name
			"custom_probe": {"cat", "/proc/version"},                                      // added by config: not vouched for
		}, nil)
	require.NoError(t, err)
	ro := cat.ReadOnlyView()
	require.True(t, ro.IsReadOnlyView())
	require.False(t, cat.IsReadOnlyView())

	for _, name := range append(remote.MutatingNames(), "custom_probe") {
		_, err := ro.Build(name, "controller", map[string]string{"service": "mariadb", "host": "controller", "path": "/srv/node/d1",
			"label": "d1", "device_path": "/dev/sdb", "dest": "/tmp/x", "builder": "/etc/swift/object.builder", "ring_search": "d1",
			"ring_device": "r1z1-10.0.0.1:6200/d1", "weight": "100"})
		require.Error(t, err, name)
		assert.True(t, errors.Is(err, remote.ErrNotReadOnly), "%s: %v", name, err)
		assert.True(t, errors.Is(err, remote.ErrInvalidArgument), "%s: %v", name, err)
		assert.Equal(t, remote.TypeInvalidArgument, remote.ErrorType(err))
		assert.False(t, remote.Retryable(err))
		assert.Contains(t, err.Error(), name)
	}
	// The full catalogue still builds them.
	_, err = cat.Build("service_stop", "controller", map[string]string{"service": "mariadb"})
	require.NoError(t, err)

	cmd, err := ro.Build("log_tail", "controller", map[string]string{"host": "controller", "service": "nova-api", "lines": "500"})
	require.NoError(t, err)
	assert.Equal(t, []string{"/opt/lab/labctl", "tail", "controller", "nova-api", "500"}, cmd.Argv)
}

func TestDiagnoseCommands(t *testing.T) {
	cat, err := remote.NewCatalogue(nil, nil, nil)
	require.NoError(t, err)
	ro := cat.ReadOnlyView()
	for _, c := range []struct {
		name string
		args map[string]string
		want []string
	}{
		{"loadavg", nil, []string{"cat", "/proc/loadavg"}},
		{"meminfo", nil, []string{"cat", "/proc/meminfo"}},
		{"vmstat_disk", nil, []string{"vmstat", "-d"}},
		{"disk_free_all", nil, []string{"df", "-P", "-B1", "-l"}},
		{"neigh_show", nil, []string{"ip", "-j", "neigh", "show"}},
		{"netns_neigh_show", map[string]string{"netns": "qdhcp-5b0c1e52-3f7e-4c2a-9d1c-0a9b8c7d6e5f"},
			[]string{"ip", "-n", "qdhcp-5b0c1e52-3f7e-4c2a-9d1c-0a9b8c7d6e5f", "-j", "neigh", "show"}},
		{"route_get", map[string]string{"address": "10.0.0.5"}, []string{"ip", "-j", "route", "get", "10.0.0.5"}},
		{"netns_route_get", map[string]string{"address": "fd00::5"}, []string{"ip", "-all", "netns", "exec", "ip", "-j", "route", "get", "fd00::5"}},
		{"arp_probe", map[string]string{"count": "3", "interface": "br-ex", "address": "10.0.0.5"},
			[]string{"arping", "-b", "-c", "3", "-I", "br-ex", "10.0.0.5"}},
		{"netns_arp_probe", map[string]string{"netns": "qrouter-1", "count": "3", "interface": "qr-1a2b3c4d-5e", "address": "10.0.0.5"},
			[]string{"ip", "netns", "exec", "qrouter-1", "arping", "-b", "-c", "3", "-I", "qr-1a2b3c4d-5e", "10.0.0.5"}},
		{"ping", map[string]string{"count": "3", "seconds": "1", "address": "10.0.0.5"}, []string{"ping", "-n", "-c", "3", "-W", "1", "10.0.0.5"}},
	} {
		cmd, err := ro.Build(c.name, "", c.args)
		if assert.NoError(t, err, c.name) {
			assert.Equal(t, c.want, cmd.Argv, c.name)
		}
	}
	// Hostile interface and namespace names are refused before anything runs.
	for _, bad := range []map[string]string{
		{"netns": "ns;reboot", "count": "3", "interface": "eth0", "address": "10.0.0.5"},
		{"netns": "-all", "count": "3", "interface": "eth0", "address": "10.0.0.5"},
		{"netns": "ns1", "count": "3", "interface": "eth0 -U", "address": "10.0.0.5"},
		{"netns": "ns1", "count": "3", "interface": "averyveryverylongname", "address": "10.0.0.5"},
		{"netns": "ns1", "count": "3", "interface": "eth0", "address": "10.0.0.5;ls"},
		{"netns": "../x", "count": "3", "interface": "eth0", "address": "10.0.0.5"},
	} {
		_, err := ro.Build("netns_arp_probe", "", bad)
		assert.ErrorIs(t, err, remote.ErrInvalidArgument, "%v", bad)
	}
}
