package activities

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"

	"github.com/stackrun/stackrun/internal/infra/remote"
	"github.com/stackrun/stackrun/internal/testenv/sshd"
)

// The upgrade activities over a real sshd on this machine: real dpkg-query and apt-cache, real
// tar, sha256sum and ln, a real SFTP write. Package changes and database dumps need the lab (the
// e2e tests run them under the lab lock).

func newUpgradeRig(t *testing.T) (*Upgrade, *recorder, string) {
	t.Helper()
	srv := sshd.Start(t, sshd.WithLoopback("127.0.0.41"))
	pool, err := remote.NewPool(remote.Options{User: srv.User, KeyFile: srv.UserKeyFile, KnownHostsFile: srv.KnownHostsFile})
	require.NoError(t, err)
	t.Cleanup(func() { _ = pool.Close() })
	cat, err := remote.NewCatalogue(nil, nil, nil)
	require.NoError(t, err)
	root := t.TempDir()
	rec := &recorder{Runner: pool}
	hosts := &Hosts{
		Inventory: map[string]InventoryHost{"node1": {Address: srv.IP, Port: srv.Port, Roles: []string{"controller"}}},
		Services:  map[string][]ServiceFacts{"controller": {{Name: "keystone"}, {Name: "nova-api"}, {Name: "nova-conductor", AMQP: true, Log: "/x.log"}}},
		Runner:    rec, Catalogue: cat,
	}
	svcs := DefaultUpgradeServices()
	k := svcs["keystone"]
	k.ConfigDir = filepath.Join(root, "hosts", "{host}", "etc", "keystone")
	svcs["keystone"] = k
	n := svcs["nova"]
	n.ConfigFile = filepath.Join(root, "hosts", "{host}", "etc", "nova", "nova.conf")
	svcs["nova"] = n
	u := &Upgrade{Hosts: hosts, Files: pool, Services: svcs, BackupDir: filepath.Join(root, "hosts", "{host}", "backups")}
	return u, rec, root
}

func requireInvalid(t *testing.T, err error, field string) {
	t.Helper()
	var app *temporal.ApplicationError
	require.ErrorAs(t, err, &app)
	assert.Equal(t, ErrTypeInvalidInput, app.Type(), "%v", err)
	assert.True(t, app.NonRetryable())
	assert.True(t, strings.HasPrefix(app.Error(), field+":"), "error names %s: %v", field, err)
}

func TestUpgradePackagesOverSSH(t *testing.T) {
	u, rec, _ := newUpgradeRig(t)
	ctx := context.Background()

	facts, err := u.PackageFacts(ctx, PackageFactsRequest{Host: "node1", Packages: []string{"openssh-server", "python3-stackrun-nosuch"}})
	require.NoError(t, err)
	require.Len(t, facts, 2)
	ssh := facts[0]
	require.NotEmpty(t, ssh.Installed, "openssh-server runs this test")
	assert.Equal(t, "install ok installed", ssh.Status)
	assert.Equal(t, PackageFact{Package: "python3-stackrun-nosuch"}, facts[1])

	// The installed version again: checked first, nothing runs.
	if ssh.Has(ssh.Installed) {
		rec.ran()
		u.Services["sshd"] = UpgradeService{Name: "sshd", Packages: []string{"openssh-server"}}
		tx, err := u.InstallPackages(ctx, PackageInstallRequest{Host: "node1", Service: "sshd", Targets: []PackageTarget{{"openssh-server", ssh.Installed}}})
		require.NoError(t, err)
		assert.True(t, tx.Skipped, "%+v", tx)
		assert.Contains(t, tx.Note, "already at the target version")
		assert.NotContains(t, rec.ran(), "package_install")
	}

	// Refused before anything changes, naming the field.
	rec.ran()
	for _, c := range []struct {
		req   PackageInstallRequest
		field string
	}{
		{PackageInstallRequest{Host: "node1", Service: "swift-nope", Targets: []PackageTarget{{"python3-nova", "1"}}}, "service"},
		{PackageInstallRequest{Host: "node1", Service: "nova"}, "targets"},
		{PackageInstallRequest{Host: "node1", Service: "nova", Targets: []PackageTarget{{"python3-nova;reboot", "1"}}}, "targets[0].package"},
		{PackageInstallRequest{Host: "node1", Service: "nova", Targets: []PackageTarget{{"python3-nova", "$(reboot)"}}}, "targets[0].version"},
		{PackageInstallRequest{Host: "node1", Service: "nova", Targets: []PackageTarget{{"openssh-server", "1"}}}, "targets[0].package"}, // not nova's
	} {
		_, err := u.InstallPackages(ctx, c.req)
		requireInvalid(t, err, c.field)
	}
	assert.Empty(t, rec.ran(), "no command ran for refused input")

	// A version that does not exist: found out by asking dpkg and apt, refused before apt-get runs.
	_, err = u.InstallPackages(ctx, PackageInstallRequest{Host: "node1", Service: "sshd", Targets: []PackageTarget{{"openssh-server", "1:0.0.1-9~nosuch"}}})
	requireInvalid(t, err, "targets[0].version")
	assert.Contains(t, err.Error(), "does not exist")
	assert.Equal(t, []string{"package_status", "package_policy"}, rec.ran())

	_, err = u.PackageFacts(ctx, PackageFactsRequest{Host: "node9", Service: "nova"})
	var app *temporal.ApplicationError
	require.ErrorAs(t, err, &app)
	assert.Equal(t, ErrTypeNotFound, app.Type())
}

func TestUpgradeConfigBackupRestoreOverSSH(t *testing.T) {
	u, rec, root := newUpgradeRig(t)
	ctx := context.Background()
	dir := filepath.Join(root, "hosts", "node1", "etc", "keystone")
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "fernet-keys"), 0o750))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "keystone.conf"), []byte("[DEFAULT]\ndebug = false\n"), 0o640))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "fernet-keys", "0"), []byte("secret0"), 0o600))
	backups := filepath.Join(root, "hosts", "node1", "backups", "keystone")

	first, err := u.BackupConfig(ctx, UpgradeBackupRequest{Host: "node1", Service: "keystone"})
	require.NoError(t, err)
	assert.False(t, first.Reused)
	assert.Len(t, first.SHA256, 64)
	assert.Equal(t, filepath.Join(backups, "etc-"+first.SHA256[:16]+".tar"), first.Archive)
	assert.Positive(t, first.Size)

	// Same content: the first archive is reused, not overwritten, and no second file appears.
	again, err := u.BackupConfig(ctx, UpgradeBackupRequest{Host: "node1", Service: "keystone"})
	require.NoError(t, err)
	assert.True(t, again.Reused)
	assert.Equal(t, first.Archive, again.Archive)
	entries, err := os.ReadDir(backups)
	require.NoError(t, err)
	assert.Len(t, entries, 1, "one archive, no .partial left")

	// A configuration change (as a config-updated gate would make) is archived separately.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "keystone.conf"), []byte("[DEFAULT]\ndebug = true\nbroken\n"), 0o640))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "new.conf"), []byte("x"), 0o644))
	changed, err := u.BackupConfig(ctx, UpgradeBackupRequest{Host: "node1", Service: "keystone"})
	require.NoError(t, err)
	assert.NotEqual(t, first.SHA256, changed.SHA256)

	// Restore the first: the changed directory is set aside (kept), the archive extracted and verified.
	res, err := u.RestoreConfig(ctx, first)
	require.NoError(t, err)
	assert.True(t, res.Verified, "%+v", res)
	assert.False(t, res.Already)
	assert.Equal(t, dir+".before-restore-"+changed.SHA256[:16], res.SetAside)
	b, err := os.ReadFile(filepath.Join(dir, "keystone.conf"))
	require.NoError(t, err)
	assert.Equal(t, "[DEFAULT]\ndebug = false\n", string(b))
	assert.NoFileExists(t, filepath.Join(dir, "new.conf"))
	assert.FileExists(t, filepath.Join(res.SetAside, "new.conf"))
	st, err := os.Stat(filepath.Join(dir, "fernet-keys", "0"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())

	// A second restore (a retried step) finds the world restored and changes nothing.
	rec.ran()
	res, err = u.RestoreConfig(ctx, first)
	require.NoError(t, err)
	assert.True(t, res.Already)
	assert.NotContains(t, rec.ran(), "archive_extract")

	// A tampered archive, a foreign path or a wrong directory is refused before anything changes.
	bad := first
	bad.SHA256 = strings.Repeat("0", 64)
	_, err = u.RestoreConfig(ctx, bad)
	var app *temporal.ApplicationError
	require.ErrorAs(t, err, &app)
	assert.Equal(t, ErrTypeBackupChanged, app.Type())
	bad = first
	bad.Archive = "/etc/passwd"
	_, err = u.RestoreConfig(ctx, bad)
	requireInvalid(t, err, "archive")
	bad = first
	bad.Dir = "/etc"
	_, err = u.RestoreConfig(ctx, bad)
	requireInvalid(t, err, "dir")

	_, err = u.BackupDatabase(ctx, UpgradeBackupRequest{Host: "node1", Service: "keystone", Tag: "../x"})
	requireInvalid(t, err, "tag")
	_, err = u.BackupDatabase(ctx, UpgradeBackupRequest{Host: "node1", Service: "keystone", Tag: "run1"})
	requireInvalid(t, err, "upgrade.database_host")
}

func TestUpgradeLevelsOverSFTP(t *testing.T) {
	u, _, root := newUpgradeRig(t)
	ctx := context.Background()
	conf := filepath.Join(root, "hosts", "node1", "etc", "nova", "nova.conf")
	require.NoError(t, os.MkdirAll(filepath.Dir(conf), 0o755))
	orig := "# Nova\n[DEFAULT]\nhost = node1\n\n[upgrade_levels]\n# compute = mitaka\n\n[database]\nconnection = x\n"
	require.NoError(t, os.WriteFile(conf, []byte(orig), 0o640))

	res, err := u.SetUpgradeLevels(ctx, UpgradeLevelsRequest{Host: "node1", Compute: "auto"})
	require.NoError(t, err)
	assert.True(t, res.Changed)
	b, _ := os.ReadFile(conf)
	assert.Equal(t, "# Nova\n[DEFAULT]\nhost = node1\n\n[upgrade_levels]\ncompute = auto\n# compute = mitaka\n\n[database]\nconnection = x\n", string(b))
	st, _ := os.Stat(conf)
	assert.Equal(t, os.FileMode(0o640), st.Mode().Perm(), "mode kept")

	res, err = u.SetUpgradeLevels(ctx, UpgradeLevelsRequest{Host: "node1", Compute: "auto"})
	require.NoError(t, err)
	assert.False(t, res.Changed, "already pinned: nothing written")

	res, err = u.SetUpgradeLevels(ctx, UpgradeLevelsRequest{Host: "node1"})
	require.NoError(t, err)
	assert.True(t, res.Changed)
	assert.Equal(t, "auto", res.Before)
	b, _ = os.ReadFile(conf)
	assert.Equal(t, orig, string(b), "pin removed, the rest as it was")

	_, err = u.SetUpgradeLevels(ctx, UpgradeLevelsRequest{Host: "node1", Compute: "auto\n[DEFAULT]"})
	requireInvalid(t, err, "compute")
}

func TestUpgradeParsers(t *testing.T) {
	policy := `python3-keystone:
  Installed: 2:22.0.2-0+deb12u6
  Candidate: 2:22.0.2-0+deb12u6
  Version table:
 *** 2:22.0.2-0+deb12u6 500
        500 http://deb.debian.org/debian-security bookworm-security/main amd64 Packages
        100 /var/lib/dpkg/status
     2:22.0.2-0+deb12u3 500
        500 http://deb.debian.org/debian bookworm/main amd64 Packages
python3-cinder:
  Installed: (none)
  Candidate: 2:21.3.1-1~deb12u1
  Version table:
     2:21.3.1-1~deb12u1 500
        500 http://deb.debian.org/debian bookworm/main amd64 Packages
        500 http://deb.debian.org/debian-security bookworm-security/main amd64 Packages
python3-local:
  Installed: 1.0
  Candidate: 1.0
  Version table:
 *** 1.0 100
        100 /var/lib/dpkg/status
`
	p := ParseAptPolicy(policy)
	assert.Equal(t, PackageFact{Package: "python3-keystone", Installed: "2:22.0.2-0+deb12u6", Candidate: "2:22.0.2-0+deb12u6",
		Available: []string{"2:22.0.2-0+deb12u6", "2:22.0.2-0+deb12u3"}}, p["python3-keystone"])
	assert.Equal(t, PackageFact{Package: "python3-cinder", Candidate: "2:21.3.1-1~deb12u1", Available: []string{"2:21.3.1-1~deb12u1"}}, p["python3-cinder"])
	assert.Empty(t, p["python3-local"].Available, "known only from dpkg's status: not installable")

	st := ParseDpkgStatus("Package: python3-nova\nStatus: install ok installed\nPriority: optional\nVersion: 2:26.2.2-1~deb12u5\n\nPackage: python3-x\nStatus: deinstall ok config-files\nVersion: 1\n")
	assert.Equal(t, "2:26.2.2-1~deb12u5", st["python3-nova"].Installed)
	assert.Equal(t, "deinstall ok config-files", st["python3-x"].Status)

	out := "Preparing to unpack .../python3-nova_2%3a26.2.2-1~deb12u4_all.deb ...\nUnpacking python3-nova (2:26.2.2-1~deb12u4) over (2:26.2.2-1~deb12u5) ...\nSelecting previously unselected package python3-y.\nUnpacking python3-y:amd64 (3.1) ...\n"
	assert.Equal(t, []PackageChange{{Package: "python3-nova", From: "2:26.2.2-1~deb12u5", To: "2:26.2.2-1~deb12u4"}, {Package: "python3-y", To: "3.1"}}, ParseAptUnpacked(out))

	ini := []byte("[DEFAULT]\nx = 1\n")
	set := IniSet(ini, "upgrade_levels", "compute", "auto")
	assert.Equal(t, "[DEFAULT]\nx = 1\n\n[upgrade_levels]\ncompute = auto\n", string(set))
	v, ok := IniGet(set, "upgrade_levels", "compute")
	assert.True(t, ok)
	assert.Equal(t, "auto", v)
	_, ok = IniGet(set, "DEFAULT", "compute")
	assert.False(t, ok)
}

func TestDescribeUpgrade(t *testing.T) {
	u, _, _ := newUpgradeRig(t)
	f, err := u.DescribeUpgrade(context.Background())
	require.NoError(t, err)
	nova := f.Services["nova"]
	require.Len(t, nova.Hosts, 1)
	var names []string
	for _, p := range nova.Hosts[0].Processes {
		names = append(names, p.Name)
	}
	assert.Equal(t, []string{"nova-conductor", "nova-api"}, names, "the service's restart order: conductors first, API last")
	assert.Empty(t, f.Services["cinder"].Hosts)
}
