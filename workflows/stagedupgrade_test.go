package workflows_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/config/policy"
	wf "github.com/stackrun/stackrun/workflows"
)

var upg *activities.Upgrade

const (
	glanceOld, glanceNew = "2:25.1.0-2+deb12u3", "2:25.1.0-2+deb12u5"
	novaOld, novaNew     = "2:26.2.2-1~deb12u4", "2:26.2.2-1~deb12u5"
	cinderOnly           = "2:21.3.1-1~deb12u1" // Debian 12 has one build
)

func upgradePolicy() policy.Policy {
	p := basePolicy()
	p.TwoPersonGates = []string{wf.GateReleaseNotesRead, wf.GateTestedOnStaging, wf.GateCanaryOK, wf.GateConfigUpdated, wf.GateRollback}
	return p
}

var upgradeFacts = activities.UpgradeFacts{DatabaseHost: "controller", Order: []string{"glance", "nova"}, Services: map[string]activities.UpgradeServiceFacts{
	"glance": {UpgradeService: activities.UpgradeService{Name: "glance", Packages: []string{"python3-glance"}, ConfigDir: "/etc/glance", Databases: []string{"glance"}, Processes: []string{"glance-api"}, Schema: []string{"schema_sync_glance"}},
		Hosts: []activities.UpgradeHost{{Host: "controller", Processes: []activities.ServiceFacts{{Role: "controller", Name: "glance-api"}}}}},
	"nova": {UpgradeService: activities.UpgradeService{Name: "nova", Packages: []string{"python3-nova"}, ConfigDir: "/etc/nova", Databases: []string{"nova_api", "nova"}, Processes: []string{"nova-conductor", "nova-api", "nova-compute"}, Schema: []string{"schema_sync_nova_api", "schema_sync_nova"}},
		Hosts: []activities.UpgradeHost{
			{Host: "compute1", Processes: []activities.ServiceFacts{{Role: "compute", Name: "nova-compute", AMQP: true, Log: "/l"}}},
			{Host: "compute2", Processes: []activities.ServiceFacts{{Role: "compute", Name: "nova-compute", AMQP: true, Log: "/l"}}},
			{Host: "controller", Processes: []activities.ServiceFacts{{Role: "controller", Name: "nova-conductor", AMQP: true, Log: "/l"}, {Role: "controller", Name: "nova-api"}}}}},
	"cinder": {UpgradeService: activities.UpgradeService{Name: "cinder", Packages: []string{"python3-cinder"}, Processes: []string{"cinder-api"}}},
}}

// upgradeWorld is the mocked cloud: package versions per host that the install mock changes.
type upgradeWorld struct {
	mu        sync.Mutex
	installed map[string]string // package -> version (one shared package set, as in the lab)
	order     []string          // hosts in the order their packages step ran
	restores  []string
	verifyBad map[string]bool          // "glance-api": not running after start
	facts     *activities.UpgradeFacts // nil: upgradeFacts
	probes    []activities.APIProbe    // every API probe asked, in order
	smokes    []activities.SmokeRequest
	probe     func(activities.APIProbe) activities.APIProbeResult // nil: OK
	// perHost: every host has its own package set (installed starts each one; host/package
	// keys in hostInstalled), as in a real cloud: every host's install changes something.
	perHost       bool
	hostInstalled map[string]string
}

// version is the package's installed version on host (w.mu held).
func (w *upgradeWorld) version(host, pkg string) string {
	if w.perHost {
		if v, ok := w.hostInstalled[host+"/"+pkg]; ok {
			return v
		}
	}
	return w.installed[pkg]
}

func (w *upgradeWorld) setVersion(host, pkg, v string) {
	if !w.perHost {
		w.installed[pkg] = v
		return
	}
	if w.hostInstalled == nil {
		w.hostInstalled = map[string]string{}
	}
	w.hostInstalled[host+"/"+pkg] = v
}

func (f *fixture) upgradeMocks(w *upgradeWorld) {
	f.env.RegisterActivity(upg)
	f.env.OnActivity(upg.DescribeUpgrade, mock.Anything).Return(func(context.Context) (activities.UpgradeFacts, error) {
		if w.facts != nil {
			return *w.facts, nil
		}
		return upgradeFacts, nil
	})
	packageFacts := func(_ context.Context, r activities.PackageFactsRequest) ([]activities.PackageFact, error) {
		w.mu.Lock()
		defer w.mu.Unlock()
		pkg := map[string]string{"glance": "python3-glance", "nova": "python3-nova", "cinder": "python3-cinder"}[r.Service]
		avail := map[string][]string{"python3-glance": {glanceNew, glanceOld}, "python3-nova": {novaNew, novaOld}, "python3-cinder": {cinderOnly}}[pkg]
		return []activities.PackageFact{{Package: pkg, Installed: w.version(r.Host, pkg), Status: "install ok installed", Candidate: avail[0], Available: avail}}, nil
	}
	f.env.OnActivity(upg.PackageFacts, mock.Anything, mock.Anything).Return(packageFacts)
	f.env.OnActivity(upg.PackageFactsMany, mock.Anything, mock.Anything).Return(func(ctx context.Context, r activities.PackageFactsManyRequest) ([][]activities.PackageFact, error) {
		out := make([][]activities.PackageFact, len(r.Hosts))
		for i, h := range r.Hosts {
			out[i], _ = packageFacts(ctx, activities.PackageFactsRequest{Host: h, Service: r.Service})
		}
		return out, nil
	})
	f.env.OnActivity(upg.InstallPackages, mock.Anything, mock.Anything).Return(func(_ context.Context, r activities.PackageInstallRequest) (activities.PackageTransaction, error) {
		w.mu.Lock()
		defer w.mu.Unlock()
		tx := activities.PackageTransaction{Host: r.Host, Service: r.Service}
		w.order = append(w.order, r.Service+"/"+r.Host)
		for _, t := range r.Targets {
			if from := w.version(r.Host, t.Package); from != t.Version {
				tx.Changes = append(tx.Changes, activities.PackageChange{Package: t.Package, From: from, To: t.Version})
				w.setVersion(r.Host, t.Package, t.Version)
			}
		}
		tx.Skipped = len(tx.Changes) == 0
		if tx.Skipped {
			tx.Note = "already at the target version"
		}
		return tx, nil
	})
	f.env.OnActivity(upg.BackupConfig, mock.Anything, mock.Anything).Return(func(_ context.Context, r activities.UpgradeBackupRequest) (activities.ConfigBackup, error) {
		return activities.ConfigBackup{Host: r.Host, Service: r.Service, Dir: "/etc/" + r.Service, Archive: "/b/" + r.Service + "/etc-0123456789abcdef.tar", SHA256: strings.Repeat("ab", 32), Size: 10240}, nil
	})
	f.env.OnActivity(upg.BackupDatabase, mock.Anything, mock.Anything).Return(func(_ context.Context, r activities.UpgradeBackupRequest) (activities.DatabaseBackup, error) {
		return activities.DatabaseBackup{Host: "controller", Service: r.Service, Databases: []string{r.Service}, File: "/b/" + r.Service + "/db-" + r.Tag + ".sql", SHA256: strings.Repeat("cd", 32), Size: 5000, Tables: 14}, nil
	})
	f.env.OnActivity(upg.SchemaSync, mock.Anything, mock.Anything).Return(activities.SchemaSyncResult{Note: "no schema change"}, nil)
	f.env.OnActivity(upg.NovaUpgradeCheck, mock.Anything, mock.Anything).Return(activities.NovaCheckResult{Level: activities.CheckOK}, nil)
	migrations := 0
	f.env.OnActivity(upg.NovaOnlineDataMigrations, mock.Anything, mock.Anything).Return(func(context.Context, activities.OnlineMigrationsRequest) (activities.OnlineMigrationsResult, error) {
		migrations++
		if migrations == 1 {
			return activities.OnlineMigrationsResult{State: activities.MigrationsMore, Code: 1}, nil
		}
		return activities.OnlineMigrationsResult{State: activities.MigrationsDone}, nil
	})
	f.env.OnActivity(upg.SetUpgradeLevels, mock.Anything, mock.Anything).Return(activities.UpgradeLevelsResult{Changed: true}, nil)
	f.env.OnActivity(upg.RestoreConfig, mock.Anything, mock.Anything).Return(func(_ context.Context, b activities.ConfigBackup) (activities.RestoreResult, error) {
		w.mu.Lock()
		w.restores = append(w.restores, "config:"+b.Service+"/"+b.Host)
		w.mu.Unlock()
		return activities.RestoreResult{Verified: true, SetAside: b.Dir + ".before-restore-x"}, nil
	})
	f.env.OnActivity(upg.RestoreDatabase, mock.Anything, mock.Anything).Return(func(_ context.Context, b activities.DatabaseBackup) (activities.RestoreResult, error) {
		w.mu.Lock()
		w.restores = append(w.restores, "db:"+b.Service)
		w.mu.Unlock()
		return activities.RestoreResult{Verified: true}, nil
	})
	f.env.OnActivity(cloud.UpgradeSmokeTest, mock.Anything, mock.Anything).Return(func(_ context.Context, r activities.SmokeRequest) (activities.SmokeResult, error) {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.smokes = append(w.smokes, r)
		return activities.SmokeResult{Checks: []string{"keystone: token issued"}}, nil
	})
	f.env.OnActivity(cloud.Probe, mock.Anything, mock.Anything).Return(func(_ context.Context, p activities.APIProbe) (activities.APIProbeResult, error) {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.probes = append(w.probes, p)
		if w.probe != nil {
			return w.probe(p), nil
		}
		return activities.APIProbeResult{OK: true}, nil
	})
	f.env.OnActivity(hosts.SetService, mock.Anything, mock.Anything).Return(nil)
	f.env.OnActivity(hosts.ServiceStatus, mock.Anything, mock.Anything).Return(func(_ context.Context, r activities.ServiceRequest) (activities.ServiceState, error) {
		w.mu.Lock()
		defer w.mu.Unlock()
		return activities.ServiceState{Running: !w.verifyBad[r.Service]}, nil
	})
	f.env.OnActivity(hosts.CheckAMQP, mock.Anything, mock.Anything).Return(activities.AMQPResult{Connected: true}, nil)
}

// approveEverything approves every open gate as bob, once a minute, until the run ends.
func (f *fixture) approveEverything(approved *[]string) {
	var tick func()
	tick = func() {
		for _, g := range f.status().OpenGates {
			if !strings.HasPrefix(g.Name, wf.GateRollback) || approved != nil {
				f.update(wf.UpdateApprove, wf.GateDecisionRequest{Gate: g.Name, By: "bob"}, "")
				if approved != nil {
					*approved = append(*approved, g.Name)
				}
			}
		}
		if !f.env.IsWorkflowCompleted() {
			f.env.RegisterDelayedCallback(tick, time.Minute)
		}
	}
	f.env.RegisterDelayedCallback(tick, time.Minute)
}

func upgradeInput() wf.StagedUpgradeInput {
	return wf.StagedUpgradeInput{Meta: wf.Meta{RequestedBy: "alice", Reason: "Zed security builds"}, ToCandidate: true}
}

func TestStagedUpgradeCanaryFirstEveryGateTwoPerson(t *testing.T) {
	f := newFixture(t, upgradePolicy())
	w := &upgradeWorld{installed: map[string]string{"python3-glance": glanceOld, "python3-nova": novaOld}}
	f.upgradeMocks(w)
	var gates []string
	f.env.RegisterDelayedCallback(func() {
		st := f.status()
		require.Len(t, st.OpenGates, 1)
		require.Equal(t, wf.GateReleaseNotesRead, st.OpenGates[0].Name)
		require.True(t, st.OpenGates[0].Destructive)
		plan := strings.Join(st.Plan, "\n")
		assert.Contains(t, plan, "python3-glance "+glanceOld+" → "+glanceNew)
		assert.Contains(t, plan, "nova: canary controller, gate canary-ok:nova, then compute1, compute2 (2 at a time)")
		assert.Contains(t, plan, "cinder: not upgraded, not present: it is not in upgrade.order", "the usual services left out are named")
		f.update(wf.UpdateApprove, wf.GateDecisionRequest{Gate: wf.GateReleaseNotesRead, By: "alice"}, "may not approve the destructive gate")
	}, 30*time.Second)
	f.approveEverything(&gates)
	f.run(wf.StagedUpgrade.Type, upgradeInput())
	rep := f.report()
	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	assert.Equal(t, []string{wf.GateReleaseNotesRead, wf.GateTestedOnStaging, "canary-ok:glance", "canary-ok:nova"}, gates)
	assert.Equal(t, "glance/controller", w.order[0])
	assert.Equal(t, "nova/controller", w.order[1], "nova's canary is the control plane (conductors before computes)")
	assert.ElementsMatch(t, []string{"nova/compute1", "nova/compute2"}, w.order[2:])
	assert.Contains(t, rep.Summary, "python3-glance "+glanceOld+" → "+glanceNew+" on controller")
	assert.Contains(t, rep.Summary, "python3-nova "+novaOld+" → "+novaNew+" on controller")
	assert.Equal(t, map[string]string{"python3-glance": glanceNew, "python3-nova": novaNew}, w.installed)
	pk := rep.Details["packages"].([]any)
	assert.Contains(t, pk, "nova on compute1: already at the target version", "the shared package set: compute1 skipped honestly")
	bk := rep.Details["backups"].([]any)
	assert.Len(t, bk, 4+2, "a config archive per host and service, one dump per service")
	f.env.AssertNumberOfCalls(t, "NovaOnlineDataMigrations", 2)
	f.env.AssertNumberOfCalls(t, "SetUpgradeLevels", 6) // pin and unpin on 3 hosts
	f.env.AssertNumberOfCalls(t, "BackupDatabase", 2)
	f.env.AssertNotCalled(t, "RestoreConfig", mock.Anything, mock.Anything)
}

func TestStagedUpgradeRefusesBadInputBeforeAnyChange(t *testing.T) {
	for _, c := range []struct {
		mod  func(*wf.StagedUpgradeInput)
		want string
	}{
		{func(in *wf.StagedUpgradeInput) { in.Services = []string{"glance", "swiftly"} }, `services[1] "swiftly": unknown service`},
		{func(in *wf.StagedUpgradeInput) { in.Services = []string{"cinder"} }, `no host of the inventory runs it`},
		{func(in *wf.StagedUpgradeInput) {
			in.ToCandidate, in.ToVersion = false, []string{"python3-glance=2:99.0-1"}
		}, "version does not exist on controller"},
		{func(in *wf.StagedUpgradeInput) {
			in.ToCandidate, in.ToVersion = false, []string{"python3-keystone=1:1"}
		}, "not a package of the services upgraded"},
		{func(in *wf.StagedUpgradeInput) {
			in.ToCandidate, in.ToVersion = false, []string{"python3-glance=1;reboot"}
		}, "to_version[0]"},
		{func(in *wf.StagedUpgradeInput) { in.Services = []string{"glance$(id)"} }, "services[0]"},
		{func(in *wf.StagedUpgradeInput) { in.Canary = "compute9" }, `canary "compute9"`},
		{func(in *wf.StagedUpgradeInput) { in.ToVersion = []string{"python3-glance=" + glanceNew} }, "exactly one of"},
	} {
		f := newFixture(t, upgradePolicy())
		w := &upgradeWorld{installed: map[string]string{"python3-glance": glanceOld, "python3-nova": novaOld}}
		f.upgradeMocks(w)
		in := upgradeInput()
		c.mod(&in)
		f.run(wf.StagedUpgrade.Type, in)
		rep := f.report()
		require.Equal(t, wf.StatusFailed, rep.Status, c.want)
		assert.Contains(t, rep.Summary, c.want)
		f.env.AssertNotCalled(t, "SetService", mock.Anything, mock.Anything)
		f.env.AssertNotCalled(t, "InstallPackages", mock.Anything, mock.Anything)
	}
	// A target older than what runs is refused too (only the rollback downgrades).
	f := newFixture(t, upgradePolicy())
	f.upgradeMocks(&upgradeWorld{installed: map[string]string{"python3-glance": glanceNew, "python3-nova": novaNew}})
	in := upgradeInput()
	in.ToCandidate, in.ToVersion = false, []string{"python3-glance=" + glanceOld}
	f.run(wf.StagedUpgrade.Type, in)
	rep := f.report()
	assert.Contains(t, rep.Summary, "does not downgrade")
}

func TestStagedUpgradeRollbackAfterAbort(t *testing.T) {
	f := newFixture(t, upgradePolicy())
	w := &upgradeWorld{installed: map[string]string{"python3-glance": glanceOld, "python3-nova": novaOld}, verifyBad: map[string]bool{"glance-api": true}}
	f.upgradeMocks(w)
	var gates []string
	f.approveEverything(&gates)
	// glance-api does not come back: the verify step stalls; the operator aborts it.
	var tick func()
	tick = func() {
		for _, s := range f.status().Stalled {
			if s.Step == "glance/controller/verify" {
				f.update(wf.UpdateResolve, wf.ResolveRequest{Step: s.Step, Action: wf.ResolveAbort, By: "alice"}, "")
				// the rollback's start must find glance-api running again
				w.mu.Lock()
				w.verifyBad = nil
				w.mu.Unlock()
				return
			}
		}
		f.env.RegisterDelayedCallback(tick, time.Minute)
	}
	f.env.RegisterDelayedCallback(tick, time.Minute)
	in := upgradeInput()
	in.Services = []string{"glance"}
	f.run(wf.StagedUpgrade.Type, in)
	rep := f.report()
	require.Equal(t, wf.StatusAborted, rep.Status, rep.Summary)
	assert.Contains(t, gates, "rollback:glance")
	assert.Contains(t, rep.Summary, "rolled back")
	assert.Equal(t, []string{"config:glance/controller", "db:glance"}, w.restores)
	assert.Equal(t, glanceOld, w.installed["python3-glance"], "downgraded to the recorded version")
	restored := rep.Details["restored"].([]any)
	assert.Contains(t, restored, "glance: package python3-glance back to "+glanceOld+" on controller")
}

func TestStagedUpgradeDryRunIsThePlan(t *testing.T) {
	f := newFixture(t, upgradePolicy())
	f.upgradeMocks(&upgradeWorld{installed: map[string]string{"python3-glance": glanceOld, "python3-nova": novaOld}})
	in := upgradeInput()
	in.DryRun = true
	f.run(wf.StagedUpgrade.Type, in)
	rep := f.report()
	require.Equal(t, wf.StatusCompleted, rep.Status)
	plan := strings.Join(rep.Plan, "\n")
	assert.Contains(t, plan, "glance/controller: python3-glance "+glanceOld+" → "+glanceNew)
	assert.Contains(t, plan, "online_data_migrations on controller")
	f.env.AssertNotCalled(t, "SetService", mock.Anything, mock.Anything)
	f.env.AssertNotCalled(t, "BackupConfig", mock.Anything, mock.Anything)
}
