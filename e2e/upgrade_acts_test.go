//go:build e2e

package e2e

// The staged upgrade's activities against the lab, one by one, over real SSH: real apt
// transactions between the two Debian builds of python3-glance, a real mariadb-dump and restore
// of glance's database, the real schema commands, nova-status and online data migrations. Run
// under the lab lock: it stops glance-api and changes the machine's packages (every lab host
// shares them), and leaves both as it found them.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/config"
	"github.com/stackrun/stackrun/internal/app/workerapp"
	"github.com/stackrun/stackrun/internal/infra/remote"
)

// labUpgrade builds the Upgrade activities as the worker does, from the lab's stackrun.yaml.
func labUpgrade(t *testing.T, l *Lab) *activities.Upgrade {
	t.Helper()
	cfg, err := config.Load(config.LoadOptions{Path: l.Config})
	require.NoError(t, err)
	pool, err := remote.NewPool(remote.Options{User: cfg.SSH.User, KeyFile: cfg.SSH.KeyFile, KnownHostsFile: cfg.SSH.KnownHostsFile,
		CommandTimeout: 5 * time.Minute})
	require.NoError(t, err)
	t.Cleanup(func() { _ = pool.Close() })
	cat, err := remote.NewCatalogue(remote.DefaultCommands(), cfg.Commands, cfg.RoleCommands)
	require.NoError(t, err)
	inv := map[string]activities.InventoryHost{}
	for name, h := range cfg.Inventory {
		port := h.Port
		if port == 0 {
			port = cfg.SSH.Port
		}
		inv[name] = activities.InventoryHost{Address: h.Address, Port: port, Roles: h.Roles, Labels: h.Labels}
	}
	services := map[string][]activities.ServiceFacts{}
	for role, r := range cfg.Roles {
		for _, s := range r.Services {
			services[role] = append(services[role], activities.ServiceFacts{Role: role, Name: s.Name, Log: s.Log, AMQP: s.AMQP})
		}
	}
	hosts := &activities.Hosts{Inventory: inv, Services: services, Runner: pool, Catalogue: cat}
	u, err := workerapp.Upgrade(cfg, hosts, pool, cat)
	require.NoError(t, err)
	return u
}

func TestUpgradeActivitiesOnLab(t *testing.T) {
	l := requireLab(t)
	u := labUpgrade(t, l)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	start := time.Now()

	facts, err := u.DescribeUpgrade(ctx)
	require.NoError(t, err)
	require.Equal(t, "controller", facts.DatabaseHost)
	var novaHosts []string
	for _, h := range facts.Services["nova"].Hosts {
		novaHosts = append(novaHosts, h.Host)
	}
	require.Equal(t, []string{"compute1", "compute2", "compute3", "controller"}, novaHosts, "the inventory says which hosts run nova")

	pf, err := u.PackageFacts(ctx, activities.PackageFactsRequest{Host: "controller", Service: "glance"})
	require.NoError(t, err)
	glance := pf[0]
	require.GreaterOrEqual(t, len(glance.Available), 2, "Debian 12 carries two builds of python3-glance: %+v", glance)
	initial, newer, older := glance.Installed, glance.Available[0], glance.Available[len(glance.Available)-1]
	t.Logf("python3-glance installed %s; builds %v", initial, glance.Available)

	// Leave the lab as found: the initial build, glance-api running, the database and config as they were.
	glanceAPI := activities.ServiceAction{ServiceRequest: activities.ServiceRequest{Host: "controller", Role: "controller", Service: "glance-api"}}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		if _, err := u.InstallPackages(ctx, activities.PackageInstallRequest{Host: "controller", Service: "glance",
			Targets: []activities.PackageTarget{{Package: "python3-glance", Version: initial}}, Downgrade: true}); err != nil {
			t.Errorf("cleanup: python3-glance back to %s: %v", initial, err)
		}
		glanceAPI.Action = "start"
		if err := u.Hosts.SetService(ctx, glanceAPI); err != nil {
			t.Errorf("cleanup: start glance-api: %v", err)
		}
	})

	// Bad input is refused before anything runs, naming the field.
	_, err = u.InstallPackages(ctx, activities.PackageInstallRequest{Host: "controller", Service: "glance",
		Targets: []activities.PackageTarget{{Package: "python3-glance", Version: "2:99.0.0-1"}}})
	requireField(t, err, "targets[0].version")
	_, err = u.InstallPackages(ctx, activities.PackageInstallRequest{Host: "controller", Service: "cinderella",
		Targets: []activities.PackageTarget{{Package: "python3-glance", Version: older}}})
	requireField(t, err, "service")
	_, err = u.InstallPackages(ctx, activities.PackageInstallRequest{Host: "controller", Service: "glance",
		Targets: []activities.PackageTarget{{Package: "python3-glance", Version: older + "$(reboot)"}}})
	requireField(t, err, "targets[0].version")
	if initial == newer {
		_, err = u.InstallPackages(ctx, activities.PackageInstallRequest{Host: "controller", Service: "glance",
			Targets: []activities.PackageTarget{{Package: "python3-glance", Version: older}}})
		requireField(t, err, "targets[0].version") // older than installed: only a rollback downgrades
	}
	pf, err = u.PackageFacts(ctx, activities.PackageFactsRequest{Host: "controller", Service: "glance"})
	require.NoError(t, err)
	require.Equal(t, initial, pf[0].Installed, "refused input changed nothing")

	// Stop, back up configuration and database (twice: the second call reuses the first).
	glanceAPI.Action = "stop"
	require.NoError(t, u.Hosts.SetService(ctx, glanceAPI))
	cb, err := u.BackupConfig(ctx, activities.UpgradeBackupRequest{Host: "controller", Service: "glance"})
	require.NoError(t, err)
	cb2, err := u.BackupConfig(ctx, activities.UpgradeBackupRequest{Host: "controller", Service: "glance"})
	require.NoError(t, err)
	assert.True(t, cb2.Reused)
	assert.Equal(t, cb.Archive, cb2.Archive)
	tag := fmt.Sprintf("e2e-%d", time.Now().UnixNano())
	db, err := u.BackupDatabase(ctx, activities.UpgradeBackupRequest{Host: "controller", Service: "glance", Tag: tag})
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.Remove(db.File) })
	assert.Positive(t, db.Tables)
	assert.Len(t, db.SHA256, 64)
	db2, err := u.BackupDatabase(ctx, activities.UpgradeBackupRequest{Host: "controller", Service: "glance", Tag: tag})
	require.NoError(t, err)
	assert.True(t, db2.Reused, "backup already taken: not taken again")
	assert.Equal(t, db.SHA256, db2.SHA256)
	t.Logf("backups: %s (%s), %s (%s, %d tables)", cb.Archive, cb.SHA256[:12], db.File, db.SHA256[:12], db.Tables)

	// Real package transactions: to the other build and back, one apt transaction each.
	other := older
	if initial == older {
		other = newer
	}
	t0 := time.Now()
	tx, err := u.InstallPackages(ctx, activities.PackageInstallRequest{Host: "controller", Service: "glance",
		Targets: []activities.PackageTarget{{Package: "python3-glance", Version: other}}, Downgrade: other == older})
	require.NoError(t, err)
	t.Logf("apt transaction in %s: %+v", time.Since(t0).Round(time.Second), tx.Changes)
	require.Contains(t, tx.Changes, activities.PackageChange{Package: "python3-glance", From: initial, To: other})
	tx2, err := u.InstallPackages(ctx, activities.PackageInstallRequest{Host: "compute1", Service: "glance",
		Targets: []activities.PackageTarget{{Package: "python3-glance", Version: other}}, Downgrade: other == older})
	require.NoError(t, err)
	assert.True(t, tx2.Skipped, "the shared package set: compute1 finds it at the target already")

	// Schema commands: real, and no-ops between patch builds.
	for _, svc := range []string{"glance", "keystone", "placement", "nova"} {
		res, err := u.SchemaSync(ctx, activities.ServiceHostRequest{Host: "controller", Service: svc})
		require.NoError(t, err, svc)
		assert.False(t, res.Changed, "%s: %s", svc, res.Note)
		assert.NotEmpty(t, res.After, svc)
		t.Logf("%s schema: %d commands, %s", svc, len(res.Steps), res.Note)
	}

	// A broken configuration and a changed database, then both restored from the backups.
	conf := filepath.Join(cb.Dir, "glance-api.conf")
	require.NoError(t, os.WriteFile(conf, []byte("[DEFAULT]\nthis is not a configuration\n"), 0o644))
	labSQL(t, l, "CREATE TABLE glance.stackrun_e2e_marker (id INT)")
	rc, err := u.RestoreConfig(ctx, cb)
	require.NoError(t, err)
	assert.True(t, rc.Verified)
	assert.NotEmpty(t, rc.SetAside)
	t.Cleanup(func() { _ = os.RemoveAll(rc.SetAside) })
	rd, err := u.RestoreDatabase(ctx, db)
	require.NoError(t, err)
	assert.True(t, rd.Verified, "%+v", rd)
	assert.False(t, rd.Already)
	assert.NotContains(t, labSQL(t, l, "SHOW TABLES FROM glance"), "stackrun_e2e_marker")
	rd, err = u.RestoreDatabase(ctx, db)
	require.NoError(t, err)
	assert.True(t, rd.Already, "a retried restore changes nothing")

	// Back to the initial build, start, and glance answers.
	_, err = u.InstallPackages(ctx, activities.PackageInstallRequest{Host: "controller", Service: "glance",
		Targets: []activities.PackageTarget{{Package: "python3-glance", Version: initial}}, Downgrade: initial == older})
	require.NoError(t, err)
	glanceAPI.Action = "start"
	require.NoError(t, u.Hosts.SetService(ctx, glanceAPI))
	require.Eventually(t, func() bool {
		pages, err := images.List(l.Clients.Image, images.ListOpts{}).AllPages(ctx)
		if err != nil {
			return false
		}
		imgs, err := images.ExtractImages(pages)
		return err == nil && len(imgs) > 0
	}, 90*time.Second, 2*time.Second, "glance answers after the round trip")

	// Nova's checks and the pin.
	nc, err := u.NovaUpgradeCheck(ctx, activities.ServiceHostRequest{Host: "controller", Service: "nova"})
	require.NoError(t, err)
	assert.Equal(t, activities.CheckOK, nc.Level, nc.Output)
	om, err := u.NovaOnlineDataMigrations(ctx, activities.OnlineMigrationsRequest{Host: "controller", MaxCount: 50})
	require.NoError(t, err)
	assert.Contains(t, []string{activities.MigrationsDone, activities.MigrationsMore}, om.State, om.Output)
	pin, err := u.SetUpgradeLevels(ctx, activities.UpgradeLevelsRequest{Host: "compute1", Compute: "auto"})
	require.NoError(t, err)
	t.Cleanup(func() {
		_, _ = u.SetUpgradeLevels(context.Background(), activities.UpgradeLevelsRequest{Host: "compute1", Compute: pin.Before})
	})
	pin2, err := u.SetUpgradeLevels(ctx, activities.UpgradeLevelsRequest{Host: "compute1", Compute: "auto"})
	require.NoError(t, err)
	assert.False(t, pin2.Changed)
	t.Logf("TestUpgradeActivitiesOnLab took %s", time.Since(start).Round(time.Second))
}

func requireField(t *testing.T, err error, field string) {
	t.Helper()
	var app *temporal.ApplicationError
	require.ErrorAs(t, err, &app)
	assert.Equal(t, activities.ErrTypeInvalidInput, app.Type(), "%v", err)
	assert.True(t, strings.HasPrefix(app.Error(), field+":"), "names %s: %v", field, err)
}

// labSQL runs a statement as the lab's root through the controller's socket.
func labSQL(t *testing.T, l *Lab, stmt string) string {
	t.Helper()
	out, err := exec.Command("mariadb", "--defaults-file="+filepath.Join(l.Dir, "hosts", "controller", "etc", "my.cnf"), "-N", "-B", "-e", stmt).CombinedOutput()
	require.NoError(t, err, string(out))
	return string(out)
}
