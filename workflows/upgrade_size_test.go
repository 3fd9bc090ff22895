package workflows_test

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"

	"github.com/stackrun/stackrun/activities"
	wf "github.com/stackrun/stackrun/workflows"
)

// sizeConverter records the size of every payload of a Report (the runs' results) it encodes.
type sizeConverter struct {
	converter.DataConverter
	mu          sync.Mutex
	reports     []int
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
	n := len(p.GetData())
	if n > c.largest {
		c.largest = n
		c.largestType = fmt.Sprintf("%T", v)
	}
	switch v.(type) {
	case wf.Report, *wf.Report:
		c.reports = append(c.reports, n)
	}
}

func manyComputes(n int) *activities.UpgradeFacts {
	f := upgradeFacts
	f.Services = map[string]activities.UpgradeServiceFacts{}
	for k, v := range upgradeFacts.Services {
		f.Services[k] = v
	}
	nova := f.Services["nova"]
	nova.Hosts = []activities.UpgradeHost{upgradeFacts.Services["nova"].Hosts[2]}
	for i := range n {
		nova.Hosts = append(nova.Hosts, activities.UpgradeHost{Host: fmt.Sprintf("hist-staged-upgrade-to-candidate-2-000-computes-c-%d", i+1), Processes: []activities.ServiceFacts{{Role: "compute", Name: "nova-compute", AMQP: true, Log: "/var/log/nova/nova-compute.log"}}})
	}
	f.Services["nova"] = nova
	return &f
}

func TestMeasureUpgradePayloads(t *testing.T) {
	f := newFixture(t, upgradePolicy())
	dc := &sizeConverter{DataConverter: converter.GetDefaultDataConverter()}
	f.env.SetDataConverter(dc)
	w := &upgradeWorld{installed: map[string]string{"python3-glance": glanceOld, "python3-nova": novaOld}, facts: manyComputes(2000), perHost: true}
	f.upgradeMocks(w)
	f.approveEverything(nil)
	in := upgradeInput()
	in.Parallel = 8
	f.run(wf.StagedUpgrade.Type, in)
	rep := f.report()
	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	t.Logf("reports: %v largest payload %d (%s)", dc.reports, dc.largest, dc.largestType)
}

func TestMeasureBreakdown(t *testing.T) {
	f := newFixture(t, upgradePolicy())
	w := &upgradeWorld{installed: map[string]string{"python3-glance": glanceOld, "python3-nova": novaOld}, facts: manyComputes(2000), perHost: true}
	f.upgradeMocks(w)
	f.approveEverything(nil)
	in := upgradeInput()
	in.Parallel = 8
	f.run(wf.StagedUpgrade.Type, in)
	rep := f.report()
	sz := func(v any) int { b, _ := json.Marshal(v); return len(b) }
	t.Logf("plan %d steps %d findings %d decisions %d audit %d (%d entries) start %d", sz(rep.Plan), sz(rep.Steps), sz(rep.Findings), sz(rep.Decisions), sz(rep.Audit), len(rep.Audit), sz(rep.Start))
	for k, v := range rep.Details {
		t.Logf("detail %s %d", k, sz(v))
	}
	pk := rep.Details["packages"].([]any)
	t.Logf("%v", pk[len(pk)-3:])
	bk := rep.Details["backups"].([]any)
	t.Logf("%v", bk[len(bk)-3:])
	t.Logf("%v", rep.Plan[len(rep.Plan)-3:])
}
