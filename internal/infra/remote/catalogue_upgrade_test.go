package remote_test

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stackrun/stackrun/internal/infra/placeholder"
	"github.com/stackrun/stackrun/internal/infra/remote"
)

func TestUpgradeCommandsBuild(t *testing.T) {
	cat, err := remote.NewCatalogue(nil, nil, nil)
	require.NoError(t, err)

	cmd, err := cat.Build("package_install", "controller", nil, "python3-nova=2:26.2.2-1~deb12u5", "python3-glance=2:25.1.0-2+deb12u5")
	require.NoError(t, err)
	assert.Equal(t, []string{"setsid", "--wait", "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-q", "--no-install-recommends",
		"-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold", "-o", "DPkg::Lock::Timeout=300",
		"python3-nova=2:26.2.2-1~deb12u5", "python3-glance=2:25.1.0-2+deb12u5"}, cmd.Argv)
	// '~' reaches the host quoted, never as a home-directory expansion
	assert.Contains(t, cmd.String(), `'python3-nova=2:26.2.2-1~deb12u5'`)

	cmd, err = cat.Build("db_dump", "controller", map[string]string{"defaults_file": "/etc/mysql/debian.cnf", "partial": "/var/backups/stackrun/nova/db-x.sql.partial"}, "nova_api", "nova")
	require.NoError(t, err)
	assert.Equal(t, "--defaults-file=/etc/mysql/debian.cnf", cmd.Argv[1])
	assert.Equal(t, []string{"--databases", "nova_api", "nova"}, cmd.Argv[len(cmd.Argv)-3:])

	cmd, err = cat.Build("db_restore", "controller", map[string]string{"defaults_file": "/etc/mysql/debian.cnf", "path": "/var/backups/k.sql"})
	require.NoError(t, err)
	assert.Equal(t, "--execute=source /var/backups/k.sql", cmd.Argv[len(cmd.Argv)-1])

	cmd, err = cat.Build("version_lt", "", map[string]string{"version": "2:22.0.2-0+deb12u3", "version_b": "2:22.0.2-0+deb12u6"})
	require.NoError(t, err)
	assert.Equal(t, []string{"dpkg", "--compare-versions", "2:22.0.2-0+deb12u3", "lt", "2:22.0.2-0+deb12u6"}, cmd.Argv)

	for _, name := range []string{"schema_sync_keystone", "schema_sync_placement", "schema_sync_glance", "schema_sync_nova_api", "schema_sync_nova", "schema_sync_cinder", "nova_upgrade_check"} {
		_, err := cat.Build(name, "controller", map[string]string{"config_file": "/etc/x/x.conf"})
		assert.NoError(t, err, name)
	}
}

func TestUpgradeCommandsRefuseHostileValues(t *testing.T) {
	cat, err := remote.NewCatalogue(nil, nil, nil)
	require.NoError(t, err)
	for _, c := range []struct {
		name, arg string
		args      map[string]string
		list      []string
	}{
		{"package_install", "package_version[0]", nil, []string{"python3-nova=1;reboot"}},
		{"package_install", "package_version[0]", nil, []string{"python3-nova"}},                 // no version
		{"package_install", "package_version[1]", nil, []string{"python3-nova=1", "-oAPT::x=1"}}, // an option
		{"package_install", "package_version[0]", nil, []string{"python3-nova=~1"}},              // a version starts with a digit
		{"package_install", "package_version[0]", nil, []string{"Python3-Nova=1"}},
		{"package_status", "package[0]", nil, []string{"python3-nova$(id)"}},
		{"version_lt", "version", map[string]string{"version": "1 2", "version_b": "1"}, nil},
		{"db_dump", "database[0]", map[string]string{"defaults_file": "/etc/my.cnf", "partial": "/b/x.sql.partial"}, []string{"nova;drop"}},
		{"db_dump", "partial", map[string]string{"defaults_file": "/etc/my.cnf", "partial": "/etc/passwd"}, []string{"nova"}},
		{"partial_remove", "partial", map[string]string{"partial": "/var/lib/mysql"}, nil},
		{"archive_create", "entry", map[string]string{"partial": "/b/x.tar.partial", "dir": "/etc", "entry": "../root"}, nil},
		{"archive_create", "entry", map[string]string{"partial": "/b/x.tar.partial", "dir": "/etc", "entry": "nova/x"}, nil},
	} {
		_, err := cat.Build(c.name, "controller", c.args, c.list...)
		var ae *remote.ArgError
		if assert.Error(t, err, "%s %v %v", c.name, c.args, c.list) && assert.True(t, errors.As(err, &ae)) {
			assert.Equal(t, c.arg, ae.Arg, "%s: %v", c.name, err)
			assert.ErrorIs(t, err, remote.ErrInvalidArgument)
		}
	}
	// '~' stays refused where it could mean a home directory
	assert.Error(t, remote.ValidateArg(placeholder.KindPath, "~/x"))
	assert.NoError(t, remote.ValidateArg(placeholder.KindDebVersion, "2:26.2.2-1~deb12u4"))
}
