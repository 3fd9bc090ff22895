package workflows_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"

	"github.com/stackrun/stackrun/activities"
	wf "github.com/stackrun/stackrun/workflows"
)

// cinderFacts: Cinder on the controller, as in the lab (api, scheduler and volume).
func cinderFacts() *activities.UpgradeFacts {
	procs := []activities.ServiceFacts{{Role: "controller", Name: "cinder-scheduler", AMQP: true, Log: "/l"},
		{Role: "controller", Name: "cinder-volume", AMQP: true, Log: "/l"}, {Role: "controller", Name: "cinder-api"}}
	return &activities.UpgradeFacts{DatabaseHost: "controller", Order: []string{"glance", "nova", "cinder"}, Services: map[string]activities.UpgradeServiceFacts{
		"glance": upgradeFacts.Services["glance"],
		"nova":   upgradeFacts.Services["nova"],
		"cinder": {UpgradeService: activities.UpgradeService{Name: "cinder", Packages: []string{"python3-cinder"}, ConfigDir: "/etc/cinder",
			Databases: []string{"cinder"}, Processes: []string{"cinder-scheduler", "cinder-volume", "cinder-api"}, Schema: []string{"schema_sync_cinder"}},
			Hosts: []activities.UpgradeHost{{Host: "controller", Processes: procs}}},
	}}
}

// Cinder's one build: the package step says so, stop, backups, schema, start and verify run, and
// verify asks the block-storage API (volume list, scheduler and volume up since the start); the
// smoke test makes a volume.
func TestStagedUpgradeCinderVerifiesVolumeServices(t *testing.T) {
	f := newFixture(t, upgradePolicy())
	w := &upgradeWorld{installed: map[string]string{"python3-glance": glanceOld, "python3-nova": novaOld, "python3-cinder": cinderOnly}, facts: cinderFacts()}
	f.upgradeMocks(w)
	var gates []string
	f.approveEverything(&gates)
	f.run(wf.StagedUpgrade.Type, upgradeInput())
	rep := f.report()
	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	assert.Contains(t, gates, "canary-ok:cinder")
	assert.Contains(t, w.order, "cinder/controller")
	assert.Contains(t, rep.Details["packages"].([]any), "cinder on controller: already at the target version")
	assert.Contains(t, strings.Join(rep.Plan, "\n"), "1 GiB volume created until available and deleted")
	var kinds []string
	var svc activities.APIProbe
	for _, p := range w.probes {
		if p.Kind == "volumes" || p.Kind == "volume-services" {
			kinds = append(kinds, p.Kind)
		}
		if p.Kind == "volume-services" {
			svc = p
		}
	}
	assert.Equal(t, []string{"volumes", "volume-services"}, kinds, "cinder's verify asks the block-storage API")
	assert.Equal(t, "controller", svc.Host)
	assert.Equal(t, []string{"cinder-scheduler", "cinder-volume"}, svc.Binaries)
	assert.False(t, svc.Since.IsZero(), "reports since the start count, not a state from before the stop")
	var volume []string
	for _, s := range w.smokes {
		if s.Volume {
			volume = append(volume, s.Name)
		}
	}
	require.Len(t, volume, 1, "one smoke test makes a volume: cinder's")
	assert.True(t, strings.HasSuffix(volume[0], "-cinder"), volume[0])
	for _, step := range []string{"stop", "backup", "upgrade", "schema", "start", "verify"} {
		assert.NotNil(t, stepNamed(rep, "cinder/controller/"+step), step)
	}
	f.env.AssertNumberOfCalls(t, "BackupDatabase", 3) // glance, nova, cinder
	f.env.AssertNotCalled(t, "RestoreConfig", mock.Anything, mock.Anything)
}

// A cinder-volume that does not report after its start stalls cinder's verify.
func TestStagedUpgradeCinderVolumeDownStalls(t *testing.T) {
	f := newFixture(t, upgradePolicy())
	w := &upgradeWorld{installed: map[string]string{"python3-cinder": cinderOnly}, facts: cinderFacts(),
		probe: func(p activities.APIProbe) activities.APIProbeResult {
			if p.Kind == "volume-services" {
				return activities.APIProbeResult{Detail: "cinder-volume on controller@fake is down (status enabled)"}
			}
			return activities.APIProbeResult{OK: true}
		}}
	f.upgradeMocks(w)
	var gates []string
	f.approveEverything(&gates)
	stalled := ""
	var tick func()
	tick = func() {
		for _, s := range f.status().Stalled {
			stalled = s.Step + ": " + s.Error
			f.update(wf.UpdateResolve, wf.ResolveRequest{Step: s.Step, Action: wf.ResolveAbort, By: "alice"}, "")
			w.mu.Lock()
			w.probe = nil // the rollback's verify finds cinder-volume reporting again
			w.mu.Unlock()
			return
		}
		f.env.RegisterDelayedCallback(tick, time.Minute)
	}
	f.env.RegisterDelayedCallback(tick, time.Minute)
	in := upgradeInput()
	in.Services = []string{"cinder"}
	f.run(wf.StagedUpgrade.Type, in)
	rep := f.report()
	assert.Equal(t, wf.StatusAborted, rep.Status, rep.Summary)
	assert.Contains(t, gates, "rollback:cinder")
	assert.True(t, strings.HasPrefix(stalled, "cinder/controller/verify: "), stalled)
	assert.Contains(t, stalled, "cinder-volume on controller@fake is down")
	for _, s := range w.smokes {
		assert.False(t, s.Volume, "no smoke test after a failed verify")
	}
}
