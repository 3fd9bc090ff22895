package main

import (
	"context"
	"fmt"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/worker"

	"github.com/stackrun/stackrun/activities"
)

// The mocked activities, registered under the real activities' names. Each checks the store (the
// world) before it acts; a side effect it does is a line in effects.log. A short pause stands
// for the work, so that a crash "at start" really lands while the activity runs.
const work = 50 * time.Millisecond

// mockHosts stands for activities.Hosts: every host runs "nova-compute" (role compute).
type mockHosts struct{ st *Store }

func registerMocks(w worker.Worker, st *Store) {
	h := &mockHosts{st: st}
	reg := func(name string, fn any) { w.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: name}) }
	reg("DescribeHost", h.DescribeHost)
	reg("ServiceStatus", h.ServiceStatus)
	reg("SetService", h.SetService)
	reg("CheckAMQP", h.CheckAMQP)
}

func (h *mockHosts) DescribeHost(ctx context.Context, name string) (activities.HostFacts, error) {
	time.Sleep(work)
	return activities.HostFacts{Name: name, Address: "192.0.2.10", Roles: []string{"compute"},
		Services: []activities.ServiceFacts{{Role: "compute", Name: "nova-compute", Log: "/var/log/nova/nova-compute.log", AMQP: true}}}, nil
}

func serviceKey(r activities.ServiceRequest) string { return "service/" + r.Host + "/" + r.Service }

func (h *mockHosts) ServiceStatus(ctx context.Context, req activities.ServiceRequest) (activities.ServiceState, error) {
	time.Sleep(work)
	st := h.st.Get(serviceKey(req))
	return activities.ServiceState{Running: st != "stopped", Output: "state " + st}, nil
}

// SetService stops or starts a service unless it already is so (the real one asks systemctl).
func (h *mockHosts) SetService(ctx context.Context, a activities.ServiceAction) error {
	time.Sleep(work)
	want := map[string]string{"stop": "stopped", "start": "running"}[a.Action]
	if want == "" {
		return fmt.Errorf("action %q", a.Action)
	}
	h.st.Act(serviceKey(a.ServiceRequest), want, a.Action+" "+a.Host+"/"+a.Service)
	return nil
}

// CheckAMQP: a started service has connected (its "start" effect is in the world).
func (h *mockHosts) CheckAMQP(ctx context.Context, req activities.AMQPRequest) (activities.AMQPResult, error) {
	time.Sleep(work)
	return activities.AMQPResult{Connected: h.st.Get(serviceKey(req.ServiceRequest)) == "running"}, nil
}
