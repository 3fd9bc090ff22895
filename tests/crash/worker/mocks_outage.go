package main

import (
	"context"
	"fmt"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"

	"github.com/stackrun/stackrun/activities"
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
	off := activities.OutageInstance{ID: "vm-off-" + o.host, Name: "vm-off", Host: o.host, VMState: "stopped", PowerState: activities.PowerShutdown}
	return []activities.OutageInstance{o.instance(), off}, nil
}

func (o *mockOutage) OutageHypervisors(ctx context.Context, since time.Time) (activities.OutageHypervisorCheck, error) {
	time.Sleep(work)
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
