package config_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stackrun/stackrun/config"
)

func TestInspectDiskSection(t *testing.T) {
	home := isolate(t)
	cfg, err := config.Load(config.LoadOptions{LookupEnv: env(home)})
	require.NoError(t, err)
	assert.Equal(t, config.InspectDisk{InstancesPath: "/var/lib/nova/instances", WorkDir: "/run/stackrun/inspect",
		Pause: "suspend", Method: "qemu-storage-daemon", DefaultFormat: "qcow2"}, cfg.InspectDisk)

	p := write(t, home, "s.yaml", "inspect_disk:\n  instances_path: /srv/lab/hosts/{host}/instances\n  pause: stop\n")
	cfg, err = config.Load(config.LoadOptions{Path: p, LookupEnv: env(home, "STACKRUN_INSPECT_DISK_WORK_DIR", "/run/x")})
	require.NoError(t, err)
	require.NoError(t, cfg.Validate())
	assert.Equal(t, "/srv/lab/hosts/{host}/instances", cfg.InspectDisk.InstancesPath)
	assert.Equal(t, "stop", cfg.InspectDisk.Pause)
	assert.Equal(t, "/run/x", cfg.InspectDisk.WorkDir, "environment")

	p = write(t, home, "bad.yaml", "inspect_disk:\n  instances_path: var/{uuid}\n  work_dir: /\n  pause: pause\n  method: loop\n  default_format: vmdk\n")
	cfg, err = config.Load(config.LoadOptions{Path: p, LookupEnv: env(home)})
	require.NoError(t, err)
	keys := problemKeys(t, cfg.Validate())
	for _, k := range []string{"inspect_disk.instances_path", "inspect_disk.work_dir", "inspect_disk.pause", "inspect_disk.method", "inspect_disk.default_format"} {
		assert.Contains(t, keys, k)
	}
}
