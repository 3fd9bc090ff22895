package config_test

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stackrun/stackrun/config"
)

func TestUpgradeSection(t *testing.T) {
	home := isolate(t)
	p := write(t, home, "stackrun.yaml", `
inventory:
  controller: {address: 10.0.0.10, roles: [controller]}
roles:
  controller: {services: [{name: nova-api}]}
upgrade:
  backup_dir: /srv/lab/hosts/{host}/backups
  database_host: controller
  order: [keystone, nova]
  services:
    nova:
      config_dir: /srv/lab/hosts/{host}/etc/nova
      schema: [schema_sync_nova_api, schema_sync_nova]
`)
	cfg, err := config.Load(config.LoadOptions{Path: p, LookupEnv: env(home)})
	require.NoError(t, err)
	require.NoError(t, cfg.Validate())
	assert.Equal(t, "/srv/lab/hosts/{host}/etc/nova", cfg.Upgrade.Services["nova"].ConfigDir)
	assert.Equal(t, config.DefaultUpgradeDefaultsFile, cfg.Upgrade.DatabaseDefaultsFile)

	bad := write(t, home, "bad.yaml", `
upgrade:
  backup_dir: relative/{host}
  database_host: db9
  order: [keystone, swift, keystone]
  services:
    nova:
      packages: ["python3-nova;reboot"]
      config_dir: "/etc/{service}/nova"
      databases: [Nova]
      processes: ["nova api"]
      schema: ["nova-manage db sync"]
`)
	cfg, err = config.Load(config.LoadOptions{Path: bad, LookupEnv: env(home)})
	require.NoError(t, err)
	var ps config.Problems
	require.True(t, errors.As(cfg.Validate(), &ps))
	for _, key := range []string{"upgrade.backup_dir", "upgrade.database_host", "upgrade.order[1]", "upgrade.order[2]",
		"upgrade.services.nova.packages[0]", "upgrade.services.nova.config_dir", "upgrade.services.nova.databases[0]",
		"upgrade.services.nova.processes[0]", "upgrade.services.nova.schema[0]"} {
		assert.Contains(t, ps.Keys(), key)
	}
}
