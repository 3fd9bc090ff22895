package remote_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stackrun/stackrun/internal/infra/remote"
)

func TestDefaultCatalogueBuild(t *testing.T) {
	cat, err := remote.NewCatalogue(nil, nil, nil)
	require.NoError(t, err)
	for _, c := range []struct {
		name string
		args map[string]string
		list []string
		want []string
	}{
		{"service_start", map[string]string{"service": "nova-compute"}, nil, []string{"systemctl", "start", "nova-compute"}},
		{"service_status", map[string]string{"service": "nova-compute", "host": "compute1"}, nil, []string{"systemctl", "is-active", "nova-compute"}},
		{"log_tail", map[string]string{"lines": "200", "log": "/var/log/nova/nova-compute.log"}, nil, []string{"tail", "-n", "200", "/var/log/nova/nova-compute.log"}},
		{"uptime", nil, nil, []string{"cat", "/proc/uptime"}},
		{"mount_label", map[string]string{"label": "d1", "path": "/srv/node/d1"}, nil, []string{"mount", "LABEL=d1", "/srv/node/d1"}},
		{"mkfs_xfs", map[string]string{"label": "d1", "device_path": "/dev/sdb"}, nil, []string{"mkfs.xfs", "-L", "d1", "/dev/sdb"}},
		{"block_device", map[string]string{"device": "sdb"}, nil, []string{"lsblk", "-J", "-b", "-o", "NAME,SIZE,TYPE,FSTYPE,MOUNTPOINT,LABEL", "/dev/sdb"}},
		{"md5sum", nil, []string{"/etc/swift/object.ring.gz", "/etc/swift/account.ring.gz"}, []string{"md5sum", "/etc/swift/object.ring.gz", "/etc/swift/account.ring.gz"}},
		{"ring_add", map[string]string{"builder": "/etc/swift/object.builder", "ring_device": "r1z1-10.0.0.21:6200/d1", "weight": "100"}, nil,
			[]string{"swift-ring-builder", "/etc/swift/object.builder", "add", "r1z1-10.0.0.21:6200/d1", "100"}},
		{"ring_set_weight", map[string]string{"builder": "/etc/swift/object.builder", "ring_search": "d7", "weight": "0"}, nil,
			[]string{"swift-ring-builder", "/etc/swift/object.builder", "set_weight", "d7", "0"}},
	} {
		cmd, err := cat.Build(c.name, "compute", c.args, c.list...)
		if assert.NoError(t, err, c.name) {
			assert.Equal(t, c.want, cmd.Argv, c.name)
			assert.Equal(t, c.name, cmd.Name)
		}
	}
	// Every default template compiles and names only known placeholders.
	for name, argv := range remote.DefaultCommands() {
		_, err := remote.NewCatalogue(map[string][]string{name: argv}, nil, nil)
		assert.NoError(t, err, name)
	}
}

func TestCatalogueOverrides(t *testing.T) {
	cat, err := remote.NewCatalogue(nil,
		map[string][]string{"uptime": {"uptime", "-p"}, "sleep": {"sleep", "{seconds}"}},
		map[string]map[string][]string{"storage": {"service_start": {"/opt/lab/labctl", "start", "{host}", "{service}"}}})
	require.NoError(t, err)

	cmd, err := cat.Build("service_start", "storage", map[string]string{"host": "storage1", "service": "swift-object"})
	require.NoError(t, err)
	assert.Equal(t, []string{"/opt/lab/labctl", "start", "storage1", "swift-object"}, cmd.Argv)

	cmd, err = cat.Build("service_start", "compute", map[string]string{"host": "compute1", "service": "nova-compute"})
	require.NoError(t, err)
	assert.Equal(t, []string{"systemctl", "start", "nova-compute"}, cmd.Argv)

	cmd, err = cat.Build("uptime", "", nil)
	require.NoError(t, err)
	assert.Equal(t, []string{"uptime", "-p"}, cmd.Argv)

	cmd, err = cat.Build("sleep", "", map[string]string{"seconds": "5"})
	require.NoError(t, err)
	assert.Equal(t, []string{"sleep", "5"}, cmd.Argv)

	tmpl, ok := cat.Template("service_start", "storage")
	assert.True(t, ok)
	assert.Equal(t, "{host}", tmpl[2])
	assert.Contains(t, cat.Names("storage"), "ring_rebalance")
}

func TestCatalogueRefusesBadTemplates(t *testing.T) {
	for name, c := range map[string]struct {
		cmds   map[string][]string
		roles  map[string]map[string][]string
		reason string
	}{
		"unknown placeholder": {cmds: map[string][]string{"x": {"rm", "{target}"}}, reason: "unknown placeholder {target}"},
		"stray brace":         {cmds: map[string][]string{"x": {"echo", "{service"}}, reason: "stray"},
		"empty":               {cmds: map[string][]string{"x": {}}, reason: "empty template"},
		"empty element":       {cmds: map[string][]string{"x": {"echo", ""}}, reason: "element 1 is empty"},
		"program placeholder": {cmds: map[string][]string{"x": {"{path}", "-x"}}, reason: "must be literal"},
		"bad name":            {cmds: map[string][]string{"X Y": {"true"}}, reason: "invalid command name"},
		"variadic embedded":   {cmds: map[string][]string{"x": {"md5sum", "--x={path...}"}}, reason: "whole element"},
		"two variadic":        {cmds: map[string][]string{"x": {"cp", "{path...}", "{path...}"}}, reason: "at most one"},
		"role unknown ph":     {roles: map[string]map[string][]string{"storage": {"x": {"echo", "{nope}"}}}, reason: "role_commands.storage.x"},
	} {
		_, err := remote.NewCatalogue(nil, c.cmds, c.roles)
		if assert.Error(t, err, name) {
			assert.ErrorIs(t, err, remote.ErrInvalidArgument, name)
			assert.Contains(t, err.Error(), c.reason, name)
		}
	}
}

func TestBuildRefusesHostileArguments(t *testing.T) {
	cat, err := remote.NewCatalogue(nil, nil, nil)
	require.NoError(t, err)
	for _, c := range []struct {
		name string
		args map[string]string
		list []string
		want string
	}{
		{"service_stop", map[string]string{"service": "nova; reboot"}, nil, `command "service_stop": service`},
		{"service_stop", map[string]string{"service": "$(reboot)"}, nil, "command substitution"},
		{"service_stop", map[string]string{"service": "`reboot`"}, nil, "backtick"},
		{"log_tail", map[string]string{"lines": "10", "log": "/var/log/../../etc/shadow"}, nil, "log (path)"},
		{"log_tail", map[string]string{"lines": "10\n", "log": "/var/log/syslog"}, nil, "newline"},
		{"umount", map[string]string{"path": "/srv/node/d1 /"}, nil, "whitespace"},
		{"umount", map[string]string{"path": "/srv/node/d1\x00"}, nil, "NUL"},
		{"umount", map[string]string{}, nil, "missing argument"},
		{"mount_label", map[string]string{"label": "d1", "path": "/" + string(make([]byte, 5000))}, nil, "NUL"},
		{"md5sum", nil, []string{"/etc/swift/object.ring.gz", "/etc/x;id"}, "path[1]"},
		{"md5sum", nil, nil, "at least one"},
		{"uptime", nil, []string{"/x"}, "no list"},
		{"rm_rf", nil, nil, "unknown command"},
	} {
		_, err := cat.Build(c.name, "", c.args, c.list...)
		if assert.Error(t, err, "%s %v", c.name, c.args) {
			assert.ErrorIs(t, err, remote.ErrInvalidArgument)
			assert.Contains(t, err.Error(), c.want)
		}
	}
}

// The inspect-disk commands embed paths inside QEMU option strings: the path kind must keep out
// everything QEMU's key=value syntax would read (',' starts a new option), and every number
// (kill's pid above all) must be digits only.
func TestInspectDiskCommands(t *testing.T) {
	cat, err := remote.NewCatalogue(nil, nil, nil)
	require.NoError(t, err)
	cmd, err := cat.Build("inspect_export_qcow2", "compute", map[string]string{
		"image": "/var/lib/nova/instances/0b6f/disk", "mountpoint": "/run/stackrun/inspect/0b6f/export.raw", "pidfile": "/run/stackrun/inspect/0b6f/qsd.pid"})
	require.NoError(t, err)
	assert.Equal(t, []string{"qemu-storage-daemon",
		"--blockdev", "driver=file,node-name=img,filename=/var/lib/nova/instances/0b6f/disk,read-only=on,locking=on",
		"--blockdev", "driver=qcow2,node-name=disk,file=img,read-only=on",
		"--export", "type=fuse,id=exp,node-name=disk,mountpoint=/run/stackrun/inspect/0b6f/export.raw,writable=off",
		"--pidfile", "/run/stackrun/inspect/0b6f/qsd.pid", "--daemonize"}, cmd.Argv)

	for _, bad := range []string{"/var/lib/disk,read-only=off", "/var/lib/disk,file.locking=off", "relative/disk", "/var/lib/../etc/shadow"} {
		_, err := cat.Build("inspect_export_raw", "", map[string]string{"image": bad, "mountpoint": "/run/x", "pidfile": "/run/p"})
		assert.ErrorIs(t, err, remote.ErrInvalidArgument, bad)
	}
	for _, bad := range []string{"-1", "1 2", "0x10", ""} {
		_, err := cat.Build("process_term", "", map[string]string{"pid": bad})
		assert.ErrorIs(t, err, remote.ErrInvalidArgument, bad)
	}
	cmd, err = cat.Build("process_term", "", map[string]string{"pid": "4242"})
	require.NoError(t, err)
	assert.Equal(t, []string{"kill", "-TERM", "4242"}, cmd.Argv)
	cmd, err = cat.Build("guest_resolve", "", nil, "/run/m/etc/fstab", "/run/m/var/log/syslog")
	require.NoError(t, err)
	assert.Equal(t, []string{"realpath", "--canonicalize-missing", "/run/m/etc/fstab", "/run/m/var/log/syslog"}, cmd.Argv)
	_, err = cat.Build("guest_stat", "", nil, "/run/m/etc/fstab", "/run/m/etc\nshadow")
	assert.ErrorIs(t, err, remote.ErrInvalidArgument)
	cmd, err = cat.Build("mount_ro_ext4", "", map[string]string{"device_path": "/dev/loop6", "mountpoint": "/run/m"})
	require.NoError(t, err)
	assert.Equal(t, []string{"mount", "-t", "ext4", "-o", "ro,noload,nosuid,nodev,noexec", "/dev/loop6", "/run/m"}, cmd.Argv)
}
