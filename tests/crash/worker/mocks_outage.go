package main

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/config"
)

// mockOutage stands for activities.Outage: the smallest useful table (a database tier with
// its integrity check, a control tier of two services, a compute tier with the instances), one
// instance that ran before the outage. Every service is down at first: a start, and an
// instance's start, is a side effect; a second one is a repeat.
type mockOutage struct {
	st   *Store
	host string
}

func registerOutage(w worker.Worker, st *Store, host string) {
	o := &mockOutage{st: st, host: host}
	reg := func(name string, fn any) { w.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: name}) }
	reg("OutagePlan", o.OutagePlan)
	reg("OutageServiceState", o.OutageServiceState)
	reg("OutageStartService", o.OutageStartService)
	reg("OutageVerifyService", o.OutageVerifyService)
	reg("OutageHostUp", o.OutageHostUp)
	reg("OutageDBIntegrity", o.OutageDBIntegrity)
	reg("OutageInstancesBefore", o.OutageInstancesBefore)
	reg("OutageHypervisors", o.OutageHypervisors)
	reg("OutageStartInstance", o.OutageStartInstance)
}

func (o *mockOutage) OutagePlan(ctx context.Context) (activities.OutageTable, error) {
	time.Sleep(work)
	if scale > 0 {
		return o.largeTable(), nil
	}
	db := o.host + "-db"
	ctl := o.host + "-ctl"
	return activities.OutageTable{Instances: "nova", Tiers: []activities.OutageTier{
		{Priority: 1, Name: "database", Services: []activities.OutageService{{Host: db, Role: "db", Service: "mariadb", Verify: []string{"process"}}}, Checks: []string{"db-integrity"}},
		{Priority: 2, Name: "control", Services: []activities.OutageService{
			{Host: ctl, Role: "controller", Service: "keystone", Verify: []string{"process"}},
			{Host: ctl, Role: "controller", Service: "nova-api", Verify: []string{"process"}},
		}},
		{Priority: 3, Name: "compute", Hosts: []string{o.host}, HostVerify: []string{"ping"},
			Services: []activities.OutageService{{Host: o.host, Role: "compute", Service: "nova-compute", Verify: []string{"process"}}}, Instances: true},
	}}, nil
}

func svcKey(s activities.OutageService) string { return "outage/svc/" + s.Host + "/" + s.Service }

func (o *mockOutage) OutageServiceState(ctx context.Context, s activities.OutageService) (activities.ServiceState, error) {
	time.Sleep(work)
	return activities.ServiceState{Running: o.st.Get(svcKey(s)) == "up"}, nil
}

func (o *mockOutage) OutageStartService(ctx context.Context, s activities.OutageService) (activities.OutageStarted, error) {
	time.Sleep(work)
	// The real one's decision (activities.StartRecorded): the status first, the intent in the
	// heartbeat, then the start; a retry that finds it running and the intent says "started".
	running := func(context.Context) (bool, error) { return o.st.Get(svcKey(s)) == "up", nil }
	start := func(context.Context) error {
		o.st.Act(svcKey(s), "up", "start-service "+s.Host+" "+s.Service)
		return nil
	}
	return activities.StartRecorded(ctx, running, start)
}

func (o *mockOutage) OutageVerifyService(ctx context.Context, req activities.OutageVerifyRequest) (activities.OutageVerified, error) {
	time.Sleep(work)
	if o.st.Get(svcKey(req.OutageService)) != "up" {
		return activities.OutageVerified{}, temporal.NewApplicationError(fmt.Sprintf("%s on %s is not running", req.Service, req.Host), "NotVerified")
	}
	return activities.OutageVerified{Evidence: []string{req.Service + " running"}}, nil
}

func (o *mockOutage) OutageHostUp(ctx context.Context, req activities.OutageHostRequest) (activities.OutageHostResult, error) {
	time.Sleep(work)
	return activities.OutageHostResult{Evidence: []string{req.Host + " answers"}}, nil
}

func (o *mockOutage) OutageDBIntegrity(ctx context.Context) (activities.OutageDBCheck, error) {
	time.Sleep(work)
	return activities.OutageDBCheck{Command: "mysqlcheck --all-databases", Databases: []string{"keystone", "nova"}, Tables: 12}, nil
}

func (o *mockOutage) instance() activities.OutageInstance {
	return activities.OutageInstance{ID: "vm-ran-" + o.host, Name: "vm-ran", Host: o.host, VMState: "active", PowerState: activities.PowerRunning}
}

func (o *mockOutage) OutageInstancesBefore(ctx context.Context) ([]activities.OutageInstance, error) {
	time.Sleep(work)
	if scale > 0 {
		return o.largeInstances(), nil
	}
	off := activities.OutageInstance{ID: "vm-off-" + o.host, Name: "vm-off", Host: o.host, VMState: "stopped", PowerState: activities.PowerShutdown}
	return []activities.OutageInstance{o.instance(), off}, nil
}

func (o *mockOutage) OutageHypervisors(ctx context.Context, since time.Time) (activities.OutageHypervisorCheck, error) {
	time.Sleep(work)
	if scale > 0 {
		up := map[string]string{}
		for _, h := range o.cloud().compute {
			up[h] = "up"
		}
		return activities.OutageHypervisorCheck{Computes: up, Instances: len(o.largeInstances())}, nil
	}
	return activities.OutageHypervisorCheck{Computes: map[string]string{o.host: "up"}, Instances: 2}, nil
}

func (o *mockOutage) OutageStartInstance(ctx context.Context, req activities.OutageInstanceRequest) (activities.OutageInstanceResult, error) {
	time.Sleep(work)
	// The real one records its first start in the heartbeat and, on a retry, looks in Nova's
	// action log for a start asked since then (an earlier attempt's, whose answer was lost): the
	// mock's action log is the time of the start it asked, written with the start itself.
	var hb struct {
		FirstStart time.Time `json:"first_start"`
	}
	resumed := activity.HasHeartbeatDetails(ctx)
	if resumed {
		_ = activity.GetHeartbeatDetails(ctx, &hb)
	}
	if hb.FirstStart.IsZero() {
		hb.FirstStart = time.Now()
	}
	activity.RecordHeartbeat(ctx, hb)
	key := "outage/instance/" + req.ID
	if resumed {
		if at, err := time.Parse(time.RFC3339Nano, o.st.Get(key+"/asked")); err == nil && !at.Before(hb.FirstStart.Add(-time.Minute)) {
			return activities.OutageInstanceResult{ID: req.ID, Action: "start", Status: "ACTIVE", Power: activities.PowerRunning}, nil
		}
	}
	// The real one reads the power state first: a running instance is left alone.
	if !o.st.ActLogged(key, "running", "start-instance "+req.ID, key+"/asked", time.Now().Format(time.RFC3339Nano)) {
		return activities.OutageInstanceResult{ID: req.ID, Action: "already-up", Status: "ACTIVE", Power: activities.PowerRunning}, nil
	}
	return activities.OutageInstanceResult{ID: req.ID, Action: "start", Status: "ACTIVE", Power: activities.PowerRunning}, nil
}

// outageCloud is the large cloud of CRASH_SCALE=N hosts (history_test.go's largest plan): 3
// controllers (one also the dashboard), 3 network nodes, N/10 Swift storage nodes, N/25 cinder
// volume hosts, the rest computes.
type outageCloud struct{ controller, network, storage, volume, compute []string }

func (o *mockOutage) cloud() outageCloud {
	name := func(role string, n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("%s-%s%d", o.host, role, i+1)
		}
		return out
	}
	c := outageCloud{controller: name("ctl", 3), network: name("net", 3), storage: name("st", max(scale/10, 1)), volume: name("vol", max(scale/25, 1))}
	c.compute = name("cmp", max(scale-6-len(c.storage)-len(c.volume), 1))
	return c
}

// largeTable is the guide's table (config.DefaultOutageTiers, 13 tiers in priority order)
// resolved against the large cloud as workerapp.Outage resolves it: each tier's hosts by role,
// its services on every chosen host whose role runs them.
func (o *mockOutage) largeTable() activities.OutageTable {
	c := o.cloud()
	all := slices.Concat(c.controller, c.network, c.storage, c.volume, c.compute)
	slices.Sort(all)
	hostsOf := map[string][]string{"*": all, "controller": c.controller, "dashboard": c.controller[:1], "network": c.network,
		"storage": c.storage, "volume": c.volume, "compute": c.compute}
	// which role of the tier runs a service (the roles' services in the inventory)
	runs := map[string]string{"swift-account": "storage", "swift-container": "storage", "swift-object": "storage",
		"neutron-l3-agent": "network", "neutron-dhcp-agent": "network", "nova-compute": "compute", "cinder-volume": "volume",
		"apache2": "dashboard"}
	table := activities.OutageTable{Instances: config.OutageInstancesRanBefore}
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
		table.Tiers = append(table.Tiers, rt)
	}
	return table
}

// largeInstances: on every compute two instances that ran before the outage, and on every
// fourth one more that was shut off (not started).
func (o *mockOutage) largeInstances() []activities.OutageInstance {
	var out []activities.OutageInstance
	for i, h := range o.cloud().compute {
		for j := range 2 {
			id := fmt.Sprintf("vm-ran-%s-%d", h, j+1)
			out = append(out, activities.OutageInstance{ID: id, Name: id, Host: h, VMState: "active", PowerState: activities.PowerRunning})
		}
		if i%4 == 0 {
			id := "vm-off-" + h
			out = append(out, activities.OutageInstance{ID: id, Name: id, Host: h, VMState: "stopped", PowerState: activities.PowerShutdown})
		}
	}
	return out
}
