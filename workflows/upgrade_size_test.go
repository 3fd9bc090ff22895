package workflows_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/workflow"

	"github.com/stackrun/stackrun/activities"
	wf "github.com/stackrun/stackrun/workflows"
)

// sizeConverter is the default data converter that records the largest payload it encoded (a
// run's result, a child's input or result, an activity's input) and of what type.
type sizeConverter struct {
	converter.DataConverter
	mu          sync.Mutex
	largest     int
	largestType string
}

func (c *sizeConverter) ToPayload(v any) (*commonpb.Payload, error) {
	p, err := c.DataConverter.ToPayload(v)
	if err == nil {
		c.note(v, p)
	}
	return p, err
}

func (c *sizeConverter) ToPayloads(vs ...any) (*commonpb.Payloads, error) {
	ps, err := c.DataConverter.ToPayloads(vs...)
	if err == nil {
		for i, p := range ps.GetPayloads() {
			c.note(vs[i], p)
		}
	}
	return ps, err
}

func (c *sizeConverter) note(v any, p *commonpb.Payload) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := len(p.GetData()); n > c.largest {
		c.largest, c.largestType = n, fmt.Sprintf("%T", v)
	}
}

// manyComputes is upgradeFacts with nova on the controller and n compute hosts named as the
// history test's (tests/crash: long names, which the report repeats).
func manyComputes(n int) (*activities.UpgradeFacts, []string) {
	f := upgradeFacts
	f.Services = map[string]activities.UpgradeServiceFacts{}
	for k, v := range upgradeFacts.Services {
		f.Services[k] = v
	}
	nova := f.Services["nova"]
	nova.Hosts = []activities.UpgradeHost{upgradeFacts.Services["nova"].Hosts[2]}
	var names []string
	for i := range n {
		h := fmt.Sprintf("hist-staged-upgrade-to-candidate-2-000-computes-c-%d", i+1)
		names = append(names, h)
		nova.Hosts = append(nova.Hosts, activities.UpgradeHost{Host: h, Processes: []activities.ServiceFacts{{Role: "compute", Name: "nova-compute", AMQP: true, Log: "/var/log/nova/nova-compute.log"}}})
	}
	f.Services["nova"] = nova
	return &f, names
}

// A large cloud's staged upgrade ends with its report: the run's result is one payload, and
// Temporal terminates a run whose result passes 2 MB (blob size limit; the 2,000-compute history
// test's parent was terminated so, "CompleteWorkflowExecutionCommandAttributes.Result exceeds
// size limit"). At 1,000 computes (every one with a package change and its own archive) no
// payload of the run or of its batches reaches the SDK's 512 KB warning, a quarter of the
// limit: the report grows by some 400 bytes per compute (before: over 1,000), and it still has
// every compute's package transaction and configuration archive, and every batch run.
func TestStagedUpgradeReportOfManyComputesStaysSmall(t *testing.T) {
	const computes = 1000
	f := newFixture(t, upgradePolicy())
	dc := &sizeConverter{DataConverter: converter.GetDefaultDataConverter()}
	f.env.SetDataConverter(dc)
	results := childResults(f)
	facts, names := manyComputes(computes)
	w := &upgradeWorld{installed: map[string]string{"python3-glance": glanceOld, "python3-nova": novaOld}, facts: facts, perHost: true}
	f.upgradeMocks(w)
	f.approveEverything(nil)
	in := upgradeInput()
	in.Parallel = 8
	f.run(wf.StagedUpgrade.Type, in)
	rep := f.report()
	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	b, err := json.Marshal(rep)
	require.NoError(t, err)
	t.Logf("report %d bytes at %d computes (%d per compute); largest payload %d bytes (%s)", len(b), computes, len(b)/computes, dc.largest, dc.largestType)
	assert.Less(t, dc.largest, 512<<10, "the largest payload (%s)", dc.largestType)
	// The parent's history: its batches' results are their batch records.
	require.Len(t, results(), 3*computes/wf.DefaultUpgradeBatch)
	n := assertBatchRecords(t, results(), computes)
	t.Logf("batch results %d bytes (%d per compute)", n, n/computes)
	pk := strings.Join(toStrings(rep.Details["packages"]), "\n") + "\n"
	bk := strings.Join(toStrings(rep.Details["backups"]), "\n") + "\n"
	for _, h := range names {
		assert.Contains(t, pk, "nova on "+h+": python3-nova "+novaOld+" → "+novaNew+"\n", "%s's package transaction", h)
		assert.Contains(t, bk, "nova on "+h+": /b/nova/etc-0123456789abcdef.tar sha256 "+strings.Repeat("ab", 32)+" (10240 bytes)\n", "%s's archive", h)
	}
	assert.Len(t, rep.Details["batch_runs"], 3*computes/wf.DefaultUpgradeBatch)
	var planned int
	for _, e := range rep.Details["upgrade_plan"].([]any) {
		m := e.(map[string]any)
		if hs, ok := m["hosts"].([]any); ok {
			planned += len(hs)
		} else {
			planned++
		}
	}
	assert.Equal(t, computes+1+1, planned, "the upgrade plan has every host (nova's computes and controller, glance's controller)")
}

func toStrings(v any) []string {
	var out []string
	for _, s := range v.([]any) {
		out = append(out, s.(string))
	}
	return out
}

// childResults collects the results of f's child runs as their payloads (JSON), in the order
// they ended: what the parent's history holds of them (ChildWorkflowExecutionCompleted).
func childResults(f *fixture) func() []json.RawMessage {
	var mu sync.Mutex
	var out []json.RawMessage
	f.env.SetOnChildWorkflowCompletedListener(func(_ *workflow.Info, v converter.EncodedValue, err error) {
		var raw json.RawMessage
		if err == nil && v != nil && v.HasValue() && v.Get(&raw) == nil {
			mu.Lock()
			out = append(out, raw)
			mu.Unlock()
		}
	})
	return func() []json.RawMessage {
		mu.Lock()
		defer mu.Unlock()
		return out
	}
}

// batchRecordBytesPerHost bounds what the batch records of the three phases carry per compute
// host here (names of 55 characters, as the history test's): the host touched and pinned
// (2 x 58), its package transaction (host, service, one change: some 170) and its configuration
// archive (host, service, directory, archive, sha256, size: some 250): about 540.
// batchEnvelope bounds the rest of a batch's result: IDs, target, requester, status, times,
// summary, left state.
const (
	batchRecordBytesPerHost = 640
	batchEnvelope           = 1024
)

// assertBatchRecords checks that each batch's result is its batch record (what the parent needs)
// and that they stay under the bound per compute host; it returns their bytes.
func assertBatchRecords(t *testing.T, results []json.RawMessage, computes int) int {
	t.Helper()
	total := 0
	for _, raw := range results {
		total += len(raw)
		var r wf.Report
		require.NoError(t, json.Unmarshal(raw, &r))
		assert.True(t, r.Record, "%s returns its batch record", r.WorkflowID)
		assert.Empty(t, r.Steps, r.WorkflowID)
		assert.Empty(t, r.Plan, r.WorkflowID)
		assert.Empty(t, r.Audit, r.WorkflowID)
		rec, err := json.Marshal(r.Details["upgrade_batch"])
		require.NoError(t, err)
		assert.LessOrEqual(t, len(raw)-len(rec), batchEnvelope, "%s: the result besides its batch record", r.WorkflowID)
	}
	assert.LessOrEqual(t, total, computes*batchRecordBytesPerHost+len(results)*batchEnvelope,
		"the batches' results (in the parent's history): %d bytes for %d computes in %d results", total, computes, len(results))
	return total
}

// The parent's history holds every batch's result: each batch hands back its batch record, some
// 540 bytes per compute host over its three phases, not its whole report (its plan, six steps
// per host, audit and details: some 4 KB per host in runs from before, batchRecordChange), and
// the parent's report still has every host's transaction and archive from them.
func TestStagedUpgradeBatchesHandTheParentTheirRecord(t *testing.T) {
	const computes = 50
	f := newFixture(t, upgradePolicy())
	results := childResults(f)
	facts, names := manyComputes(computes)
	w := &upgradeWorld{installed: map[string]string{"python3-glance": glanceOld, "python3-nova": novaOld}, facts: facts, perHost: true}
	f.upgradeMocks(w)
	f.approveEverything(nil)
	in := upgradeInput()
	in.Parallel = 4
	in.BatchSize = 25
	f.run(wf.StagedUpgrade.Type, in)
	rep := f.report()
	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	require.Len(t, results(), 3*2, "two batches, three phases")
	total := assertBatchRecords(t, results(), computes)
	t.Logf("batch results %d bytes for %d computes (%d per compute)", total, computes, total/computes)
	pk := strings.Join(toStrings(rep.Details["packages"]), "\n") + "\n"
	bk := strings.Join(toStrings(rep.Details["backups"]), "\n") + "\n"
	for _, h := range names {
		assert.Contains(t, pk, "nova on "+h+": python3-nova "+novaOld+" → "+novaNew+"\n", "%s's package transaction", h)
		assert.Contains(t, bk, "nova on "+h+": /b/nova/etc-0123456789abcdef.tar sha256 "+strings.Repeat("ab", 32)+" (10240 bytes)\n", "%s's archive", h)
	}
	assert.Len(t, rep.Details["batch_runs"], 6)
	for _, fd := range rep.Findings {
		assert.NotContains(t, fd.Message, "still set", "every pin removed")
	}
}
