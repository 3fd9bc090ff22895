package workflows

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/config"
)

// outageCloudPlan is outage-recovery's plan of the crash worker's large cloud (tests/crash/worker,
// largeTable and largeInstances) of n hosts, with every tier done as the worker answers (Act's
// report lines as outageTier and outageInstances write them): the state of the chain's last run.
func outageCloudPlan(n int, compact bool) *outageRecoveryPlan {
	name := func(role string, k int) []string {
		out := make([]string, k)
		for i := range out {
			out[i] = fmt.Sprintf("w1-%s%d", role, i+1)
		}
		return out
	}
	ctl, netw, st, vol := name("ctl", 3), name("net", 3), name("st", max(n/10, 1)), name("vol", max(n/25, 1))
	cmpt := name("cmp", max(n-6-len(st)-len(vol), 1))
	all := slices.Concat(ctl, netw, st, vol, cmpt)
	slices.Sort(all)
	hostsOf := map[string][]string{"*": all, "controller": ctl, "dashboard": ctl[:1], "network": netw, "storage": st, "volume": vol, "compute": cmpt}
	runs := map[string]string{"swift-account": "storage", "swift-container": "storage", "swift-object": "storage",
		"neutron-l3-agent": "network", "neutron-dhcp-agent": "network", "nova-compute": "compute", "cinder-volume": "volume", "apache2": "dashboard"}
	p := &outageRecoveryPlan{table: activities.OutageTable{Instances: config.OutageInstancesRanBefore}, restarted: map[string]bool{}, compact: compact}
	for _, t := range config.DefaultOutageTiers() {
		rt := activities.OutageTier{Priority: t.Priority, Name: t.Name, HostVerify: t.HostVerify, Checks: t.Checks, Instances: t.Instances}
		for _, role := range t.Roles {
			rt.Hosts = append(rt.Hosts, hostsOf[role]...)
		}
		for _, s := range t.Services {
			role := cmp.Or(runs[s.Name], "controller")
			for _, h := range hostsOf[role] {
				rt.Services = append(rt.Services, activities.OutageService{Host: h, Role: role, Service: s.Name, Verify: slices.Clone(s.Verify)})
			}
		}
		p.table.Tiers = append(p.table.Tiers, rt)
	}
	for i, h := range cmpt {
		for j := range 2 {
			id := fmt.Sprintf("vm-ran-%s-%d", h, j+1)
			p.before = append(p.before, activities.OutageInstance{ID: id, Name: id, Host: h, VMState: "active", PowerState: activities.PowerRunning})
		}
		if i%4 == 0 {
			id := "vm-off-" + h
			p.before = append(p.before, activities.OutageInstance{ID: id, Name: id, Host: h, VMState: "stopped", PowerState: activities.PowerShutdown})
		}
	}
	p.notRun, p.order = outageOrder(p.table.Tiers, 0)
	p.acting, p.began, p.next = true, time.Date(2026, 12, 2, 16, 0, 0, 0, time.UTC), len(p.order)
	for _, t := range p.order {
		tr := &OutageTierReport{Priority: t.Priority, Name: t.Name, State: "verified", Seconds: 12.3}
		if len(t.HostVerify) > 0 {
			for _, h := range t.Hosts {
				tr.Verified = append(tr.Verified, h+" answers")
			}
		}
		for _, s := range t.Services {
			tr.Started = append(tr.Started, s.Service+"@"+s.Host)
			tr.Verified = append(tr.Verified, s.Service+" running")
			if s.Service == "nova-compute" {
				p.restarted[s.Host] = true
			}
		}
		if t.Instances {
			for _, x := range p.before {
				if x.RanBefore() {
					tr.Started = append(tr.Started, fmt.Sprintf("%s (%s) started", x.Name, x.ID))
					tr.Verified = append(tr.Verified, fmt.Sprintf("%s: ACTIVE, power state 1", x.Name))
				}
			}
		}
		p.reports = append(p.reports, tr)
	}
	return p
}

// TestOutageCarriedStateStaysSmall: the state a 2,000-host chain's last run carries stays under
// 1 MB (outageCompactChange; the whole input under Temporal's 2 MB payload limit with the
// steps, the plan's lines and the audit), and comes back as the plan it was.
func TestOutageCarriedStateStaysSmall(t *testing.T) {
	for _, n := range []int{500, 2000} {
		old, err := json.Marshal(outageCloudPlan(n, false))
		require.NoError(t, err)
		p := outageCloudPlan(n, true)
		b, err := json.Marshal(p)
		require.NoError(t, err)
		t.Logf("%d hosts: carried state %d bytes before outage-compact-carry, %d after", n, len(old), len(b))
		if n == 2000 {
			assert.Less(t, len(b), 1<<20, "the carried state of a 2,000-host chain")
		}
		var got outageRecoveryPlan
		require.NoError(t, json.Unmarshal(b, &got))
		assert.Equal(t, p.order, got.order)
		assert.Equal(t, p.notRun, got.notRun)
		assert.Equal(t, p.reports, got.reports)
		assert.Equal(t, p.restarted, got.restarted)
		var ran []activities.OutageInstance
		for _, x := range p.before {
			if x.RanBefore() {
				ran = append(ran, x)
			}
		}
		assert.Equal(t, ran, got.before)
		assert.True(t, got.compact)
	}
	// A record read and empty stays read (not read again); one not read stays unread.
	for _, before := range [][]activities.OutageInstance{{}, nil} {
		b, err := json.Marshal(&outageRecoveryPlan{compact: true, before: before, fromTier: 4})
		require.NoError(t, err)
		var got outageRecoveryPlan
		require.NoError(t, json.Unmarshal(b, &got))
		assert.Equal(t, before == nil, got.before == nil, string(b))
		assert.Equal(t, 4, got.fromTier)
	}
}
