package workflows_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"

	"github.com/stackrun/stackrun/activities"
	wf "github.com/stackrun/stackrun/workflows"
)

// The compute hosts go in batches of child runs (--batch-size 1: one batch per compute); the
// parent's report has every host's package step and archive and links the batch runs; the
// database dumps and schema commands stay in the parent.
func TestStagedUpgradeComputesInBatches(t *testing.T) {
	f := newFixture(t, upgradePolicy())
	w := &upgradeWorld{installed: map[string]string{"python3-glance": glanceOld, "python3-nova": novaOld}}
	f.upgradeMocks(w)
	f.approveEverything(nil)
	in := upgradeInput()
	in.BatchSize = 1
	f.run(wf.StagedUpgrade.Type, in)
	rep := f.report()
	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	assert.Contains(t, strings.Join(rep.Plan, "\n"), "nova: the compute hosts in 2 batch(es) of up to 1")
	steps := map[string]wf.StepStatus{}
	for _, s := range rep.Steps {
		steps[s.Name] = s
	}
	for _, n := range []string{"nova/computes-1/pin", "nova/computes-2/pin", "nova/computes-1/upgrade", "nova/computes-2/upgrade", "nova/computes-1/unpin", "nova/computes-2/unpin"} {
		if assert.Contains(t, steps, n) {
			assert.Equal(t, wf.StepDone, steps[n].State, n)
			assert.Contains(t, steps[n].Detail, rep.WorkflowID+"/"+n, "the step names its batch run")
		}
	}
	assert.NotContains(t, steps, "nova/compute1/upgrade", "a compute's steps are in its batch's run")
	assert.Contains(t, steps, "nova/controller/upgrade")
	assert.Len(t, rep.Details["batch_runs"], 6)
	pk := rep.Details["packages"].([]any)
	assert.Contains(t, pk, "nova on compute1: already at the target version")
	assert.Contains(t, pk, "nova on compute2: already at the target version")
	bk := rep.Details["backups"].([]any)
	assert.Len(t, bk, 4+2, "a config archive per host and service (the computes' from their batches), one dump per service")
	assert.ElementsMatch(t, []string{"nova/compute1", "nova/compute2"}, w.order[2:])
	f.env.AssertNumberOfCalls(t, "SetUpgradeLevels", 6) // pin and unpin on 3 hosts
	f.env.AssertNumberOfCalls(t, "BackupDatabase", 2)
	f.env.AssertNumberOfCalls(t, "SchemaSync", 2)
	f.env.AssertNumberOfCalls(t, "PackageFactsMany", 2) // one per batch
	assert.Empty(t, rep.LeftState)
	for _, fd := range rep.Findings {
		assert.NotContains(t, fd.Message, "still set", "every pin removed")
	}
}

// A batch is started by its staged-upgrade run only: one that claims a parent it does not have
// is refused before anything is done.
func TestStagedUpgradeBatchRefusedWithoutItsParent(t *testing.T) {
	f := newFixture(t, upgradePolicy())
	f.upgradeMocks(&upgradeWorld{installed: map[string]string{"python3-nova": novaOld}})
	in := wf.StagedUpgradeInput{Meta: wf.Meta{RequestedBy: "alice", Reason: "sneaky"}, Batch: &wf.UpgradeBatch{
		Parent: "staged-upgrade/cloud", Index: 1, Phase: "upgrade", Tag: "su-0123456789ab", Parallel: 1, SchemaHost: "controller",
		Targets: map[string]string{"python3-nova": novaNew},
		Service: activities.UpgradeServiceFacts{UpgradeService: activities.UpgradeService{Name: "nova", Packages: []string{"python3-nova"}},
			Hosts: []activities.UpgradeHost{{Host: "compute1", Processes: []activities.ServiceFacts{{Role: "compute", Name: "nova-compute"}}}}},
	}}
	f.run(wf.StagedUpgrade.Type, in)
	rep := f.report()
	require.Equal(t, wf.StatusFailed, rep.Status, rep.Summary)
	assert.Contains(t, rep.Summary, "refused")
	assert.Contains(t, rep.Summary, "batch.parent")
	f.env.AssertNotCalled(t, "SetService", mock.Anything, mock.Anything)
	f.env.AssertNotCalled(t, "InstallPackages", mock.Anything, mock.Anything)
	f.env.AssertNotCalled(t, "SetUpgradeLevels", mock.Anything, mock.Anything)
}

// A batch asked for its record (UpgradeBatch.Record) returns the record, not its report, and
// answers the query report with its whole report: here a batch refused (it claims a parent it
// does not have), whose record has its status and summary, and whose report also has what it
// refused and who started it.
func TestStagedUpgradeBatchRecordAndItsReportByQuery(t *testing.T) {
	f := newFixture(t, upgradePolicy())
	f.upgradeMocks(&upgradeWorld{installed: map[string]string{"python3-nova": novaOld}})
	in := wf.StagedUpgradeInput{Meta: wf.Meta{RequestedBy: "alice", Reason: "sneaky"}, Batch: &wf.UpgradeBatch{
		Parent: "staged-upgrade/cloud", Index: 1, Phase: "upgrade", Tag: "su-0123456789ab", Parallel: 1, SchemaHost: "controller",
		Targets: map[string]string{"python3-nova": novaNew}, Record: true,
		Service: activities.UpgradeServiceFacts{UpgradeService: activities.UpgradeService{Name: "nova", Packages: []string{"python3-nova"}},
			Hosts: []activities.UpgradeHost{{Host: "compute1", Processes: []activities.ServiceFacts{{Role: "compute", Name: "nova-compute"}}}}},
	}}
	f.run(wf.StagedUpgrade.Type, in)
	rec := f.report()
	assert.True(t, rec.Record)
	assert.Equal(t, wf.StatusFailed, rec.Status)
	assert.Contains(t, rec.Summary, "batch.parent")
	assert.Empty(t, rec.Refused, "the record has what the parent needs only")
	assert.Nil(t, rec.Start)
	v, err := f.env.QueryWorkflow(wf.QueryReport)
	require.NoError(t, err)
	var full wf.Report
	require.NoError(t, v.Get(&full))
	assert.False(t, full.Record)
	assert.Equal(t, rec.Summary, full.Summary)
	assert.Equal(t, rec.WorkflowID, full.WorkflowID)
	assert.NotEmpty(t, full.Refused, "the whole report has what the run refused")
	assert.NotNil(t, full.Start, "and who started it")
}
