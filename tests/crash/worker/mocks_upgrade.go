package main

import (
	"context"
	"strconv"
	"strings"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/worker"

	"github.com/stackrun/stackrun/activities"
)

// mockUpgrade stands for activities.Upgrade and Cloud.UpgradeSmokeTest: glance on the
// controller, nova on the controller and two computes (the run's host HOST-ctl, HOST-c1,
// HOST-c2), one package each, a newer build as apt's candidate. The world holds each host's
// installed versions, the backups, the schema, the online data migrations' progress and the
// upgrade levels. Effects: package transactions, config backups, database dumps, schema syncs,
// online-migration batches, upgrade-level changes (the services' stops and starts are mockHosts').
type mockUpgrade struct {
	st   *Store
	host string
}

var upgradeBuilds = map[string][2]string{ // package: installed, candidate
	"python3-glance": {"2:25.1.0-2+deb12u3", "2:25.1.0-2+deb12u5"},
	"python3-nova":   {"2:26.2.2-1~deb12u4", "2:26.2.2-1~deb12u5"},
}

func registerUpgrade(w worker.Worker, st *Store, host string) {
	u := &mockUpgrade{st: st, host: host}
	reg := func(name string, fn any) { w.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: name}) }
	reg("DescribeUpgrade", u.DescribeUpgrade)
	reg("PackageFacts", u.PackageFacts)
	reg("PackageFactsMany", u.PackageFactsMany)
	reg("InstallPackages", u.InstallPackages)
	reg("BackupConfig", u.BackupConfig)
	reg("BackupDatabase", u.BackupDatabase)
	reg("RestoreConfig", u.RestoreConfig)
	reg("RestoreDatabase", u.RestoreDatabase)
	reg("SchemaSync", u.SchemaSync)
	reg("NovaUpgradeCheck", u.NovaUpgradeCheck)
	reg("NovaOnlineDataMigrations", u.NovaOnlineDataMigrations)
	reg("SetUpgradeLevels", u.SetUpgradeLevels)
	reg("UpgradeSmokeTest", u.UpgradeSmokeTest)
}

func (u *mockUpgrade) DescribeUpgrade(ctx context.Context) (activities.UpgradeFacts, error) {
	time.Sleep(work)
	ctl, c1, c2 := u.host+"-ctl", u.host+"-c1", u.host+"-c2"
	compute := []activities.ServiceFacts{{Role: "compute", Name: "nova-compute", AMQP: true, Log: "/var/log/nova/nova-compute.log"}}
	f := activities.UpgradeFacts{DatabaseHost: ctl, Order: []string{"glance", "nova"}, Services: map[string]activities.UpgradeServiceFacts{
		"glance": {UpgradeService: activities.UpgradeService{Name: "glance", Packages: []string{"python3-glance"}, ConfigDir: "/etc/glance", Databases: []string{"glance"},
			Processes: []string{"glance-api"}, Schema: []string{"schema_sync_glance"}},
			Hosts: []activities.UpgradeHost{{Host: ctl, Processes: []activities.ServiceFacts{{Role: "controller", Name: "glance-api"}}}}},
		"nova": {UpgradeService: activities.UpgradeService{Name: "nova", Packages: []string{"python3-nova"}, ConfigDir: "/etc/nova", Databases: []string{"nova_api", "nova"},
			Processes: []string{"nova-conductor", "nova-api", "nova-compute"}, Schema: []string{"schema_sync_nova_api", "schema_sync_nova"}},
			Hosts: []activities.UpgradeHost{
				{Host: ctl, Processes: []activities.ServiceFacts{{Role: "controller", Name: "nova-conductor", AMQP: true, Log: "/var/log/nova/nova-conductor.log"}, {Role: "controller", Name: "nova-api"}}},
			}},
	}}
	for _, h := range append([]string{c1, c2}, scaled(u.host + "-c")[min(2, scale):]...) {
		nova := f.Services["nova"]
		nova.Hosts = append(nova.Hosts, activities.UpgradeHost{Host: h, Processes: compute})
		f.Services["nova"] = nova
	}
	return f, nil
}

func (u *mockUpgrade) installed(host, pkg string) string {
	if v := u.st.Get("pkg/" + host + "/" + pkg); v != "" {
		return v
	}
	return upgradeBuilds[pkg][0]
}

func (u *mockUpgrade) PackageFacts(ctx context.Context, req activities.PackageFactsRequest) ([]activities.PackageFact, error) {
	time.Sleep(work)
	pkgs := req.Packages
	if len(pkgs) == 0 {
		pkgs = []string{map[string]string{"glance": "python3-glance", "nova": "python3-nova"}[req.Service]}
	}
	var out []activities.PackageFact
	for _, p := range pkgs {
		b := upgradeBuilds[p]
		out = append(out, activities.PackageFact{Package: p, Installed: u.installed(req.Host, p), Status: "install ok installed", Candidate: b[1], Available: []string{b[1], b[0]}})
	}
	return out, nil
}

// PackageFactsMany is PackageFacts host by host (read-only).
func (u *mockUpgrade) PackageFactsMany(ctx context.Context, req activities.PackageFactsManyRequest) ([][]activities.PackageFact, error) {
	out := make([][]activities.PackageFact, len(req.Hosts))
	for i, h := range req.Hosts {
		f, err := u.PackageFacts(ctx, activities.PackageFactsRequest{Host: h, Service: req.Service})
		if err != nil {
			return nil, err
		}
		out[i] = f
	}
	return out, nil
}

// InstallPackages installs the targets not installed yet: one package transaction per change.
func (u *mockUpgrade) InstallPackages(ctx context.Context, req activities.PackageInstallRequest) (activities.PackageTransaction, error) {
	time.Sleep(2 * work)
	tx := activities.PackageTransaction{Host: req.Host, Service: req.Service, At: time.Now()}
	for _, t := range req.Targets {
		from := u.installed(req.Host, t.Package)
		if u.st.Act("pkg/"+req.Host+"/"+t.Package, t.Version, "package transaction "+req.Host+" "+t.Package+" "+from+" -> "+t.Version) {
			tx.Changes = append(tx.Changes, activities.PackageChange{Package: t.Package, From: from, To: t.Version})
		}
	}
	tx.Skipped = len(tx.Changes) == 0
	if tx.Skipped {
		tx.Note = "already at the target version"
	}
	return tx, nil
}

// BackupConfig archives the configuration once per host, service and tag (the real one finds
// its archive by the tag); the effect does not name the tag, which names the run.
func (u *mockUpgrade) BackupConfig(ctx context.Context, req activities.UpgradeBackupRequest) (activities.ConfigBackup, error) {
	time.Sleep(work)
	u.st.Act("config-backup/"+req.Host+"/"+req.Service+"/"+req.Tag, "done", "config backup "+req.Service+" on "+req.Host)
	return activities.ConfigBackup{Host: req.Host, Service: req.Service, Dir: "/etc/" + req.Service, Archive: "/var/backups/stackrun/" + req.Service + "/etc-" + req.Tag + ".tar",
		SHA256: strings.Repeat("ab", 32), Size: 10240}, nil
}

// BackupDatabase dumps the service's databases once per tag.
func (u *mockUpgrade) BackupDatabase(ctx context.Context, req activities.UpgradeBackupRequest) (activities.DatabaseBackup, error) {
	time.Sleep(work)
	u.st.Act("db-dump/"+req.Service+"/"+req.Tag, "done", "db dump "+req.Service)
	return activities.DatabaseBackup{Host: req.Host, Service: req.Service, Databases: []string{req.Service}, File: "/var/backups/stackrun/" + req.Service + "/db-" + req.Tag + ".sql",
		SHA256: strings.Repeat("cd", 32), Size: 5000, Tables: 14}, nil
}

func (u *mockUpgrade) RestoreConfig(ctx context.Context, b activities.ConfigBackup) (activities.RestoreResult, error) {
	time.Sleep(work)
	u.st.Act("config-restore/"+b.Host+"/"+b.Service, "done", "config restore "+b.Service+" on "+b.Host)
	return activities.RestoreResult{Host: b.Host, Service: b.Service, Verified: true}, nil
}

func (u *mockUpgrade) RestoreDatabase(ctx context.Context, b activities.DatabaseBackup) (activities.RestoreResult, error) {
	time.Sleep(work)
	u.st.Act("db-restore/"+b.Service, "done", "db restore "+b.Service)
	return activities.RestoreResult{Host: b.Host, Service: b.Service, Verified: true}, nil
}

// SchemaSync: the schema follows the installed build; a sync at the same build changes nothing.
func (u *mockUpgrade) SchemaSync(ctx context.Context, req activities.ServiceHostRequest) (activities.SchemaSyncResult, error) {
	time.Sleep(work)
	pkg := map[string]string{"glance": "python3-glance", "nova": "python3-nova"}[req.Service]
	changed := u.st.Act("schema/"+req.Service, u.installed(req.Host, pkg), "schema sync "+req.Service+" to "+u.installed(req.Host, pkg))
	return activities.SchemaSyncResult{Host: req.Host, Service: req.Service, Changed: changed, Note: "synced"}, nil
}

func (u *mockUpgrade) NovaUpgradeCheck(ctx context.Context, req activities.ServiceHostRequest) (activities.NovaCheckResult, error) {
	time.Sleep(work)
	return activities.NovaCheckResult{Host: req.Host, Level: activities.CheckOK}, nil
}

// NovaOnlineDataMigrations migrates in two batches: the first answers "more", the second "done";
// a call after both changes nothing.
func (u *mockUpgrade) NovaOnlineDataMigrations(ctx context.Context, req activities.OnlineMigrationsRequest) (activities.OnlineMigrationsResult, error) {
	time.Sleep(work)
	n, _ := strconv.Atoi(u.st.Get("online-migrations"))
	if n >= 2 {
		return activities.OnlineMigrationsResult{Host: req.Host, State: activities.MigrationsDone}, nil
	}
	u.st.Act("online-migrations", strconv.Itoa(n+1), "online data migrations batch "+strconv.Itoa(n+1))
	if n+1 == 1 {
		return activities.OnlineMigrationsResult{Host: req.Host, State: activities.MigrationsMore, Code: 1}, nil
	}
	return activities.OnlineMigrationsResult{Host: req.Host, State: activities.MigrationsDone}, nil
}

func (u *mockUpgrade) SetUpgradeLevels(ctx context.Context, req activities.UpgradeLevelsRequest) (activities.UpgradeLevelsResult, error) {
	time.Sleep(work)
	want := req.Compute
	if want == "" {
		want = "auto"
	}
	changed := u.st.Act("upgrade-levels/"+req.Host, want, "upgrade levels "+req.Host+" compute="+want)
	return activities.UpgradeLevelsResult{Host: req.Host, File: "/etc/nova/nova.conf.d/upgrade-levels.conf", Changed: changed}, nil
}

func (u *mockUpgrade) UpgradeSmokeTest(ctx context.Context, req activities.SmokeRequest) (activities.SmokeResult, error) {
	time.Sleep(work)
	return activities.SmokeResult{Checks: []string{"keystone: token issued", "nova: servers listed"}}, nil
}
