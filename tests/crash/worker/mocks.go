package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"

	"github.com/stackrun/stackrun/activities"
)

// The mocked activities, registered under the real activities' names. Each checks the store (the
// world) before it acts; a side effect it does is a line in effects.log. A short pause stands
// for the work, so that a crash "at start" really lands while the activity runs.
var work = 50 * time.Millisecond

// mockHosts stands for activities.Hosts: every host runs "nova-compute" (role compute).
type mockHosts struct{ st *Store }

func registerMocks(w worker.Worker, st *Store) {
	h := &mockHosts{st: st}
	reg := func(name string, fn any) { w.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: name}) }
	reg("DescribeHost", h.DescribeHost)
	reg("ServiceStatus", h.ServiceStatus)
	reg("SetService", h.SetService)
	reg("CheckAMQP", h.CheckAMQP)
	reg("BootTime", h.BootTime)
	reg("Probe", h.Probe)
	registerRolling(w, h)
}

func (h *mockHosts) DescribeHost(ctx context.Context, name string) (activities.HostFacts, error) {
	time.Sleep(work)
	return activities.HostFacts{Name: name, Address: "192.0.2.10", Roles: []string{"compute"},
		Services: []activities.ServiceFacts{{Role: "compute", Name: "nova-compute", Log: "/var/log/nova/nova-compute.log", AMQP: true}}}, nil
}

func serviceKey(r activities.ServiceRequest) string { return "service/" + r.Host + "/" + r.Service }

func stoppedKey(r activities.ServiceRequest) string { return "stopped-at/" + r.Host + "/" + r.Service }

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
	if h.st.Act(serviceKey(a.ServiceRequest), want, a.Action+" "+a.Host+"/"+a.Service) && a.Action == "stop" {
		// Its last report to Nova (mockCompute.service) is now, until it starts again.
		h.st.Set(stoppedKey(a.ServiceRequest), time.Now().UTC().Format(time.RFC3339Nano))
	}
	return nil
}

// CheckAMQP: a running service (not stopped in the world) has connected.
func (h *mockHosts) CheckAMQP(ctx context.Context, req activities.AMQPRequest) (activities.AMQPResult, error) {
	time.Sleep(work)
	return activities.AMQPResult{Connected: h.st.Get(serviceKey(req.ServiceRequest)) != "stopped"}, nil
}

// mockCompute stands for activities.Compute and NovaDB: the hosts of CRASH_HOSTS (the first is
// the one emptied) run nova-compute; instances vm-1 and vm-2 start on the first host. The
// world holds each host's service status and each instance's host.
type mockCompute struct {
	st     *Store
	hosts  []string
	status string
	// dead: the first host died (recover-host): its nova-compute reports down, SSH does not answer.
	dead bool
}

// instances are vm-1 and vm-2, or vm-1..vm-N with CRASH_SCALE=N (the history tests' largest plans).
var instances = []string{"vm-1", "vm-2"}

func registerCompute(w worker.Worker, st *Store, hosts []string, status string, dead bool) {
	c := &mockCompute{st: st, hosts: hosts, status: status, dead: dead}
	if c.status == "" {
		c.status = "ACTIVE"
	}
	reg := func(name string, fn any) { w.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: name}) }
	reg("ComputeServices", c.ComputeServices)
	reg("SetComputeService", c.SetComputeService)
	reg("InstancesOnHost", c.InstancesOnHost)
	reg("DBInstancesOnHost", c.DBInstancesOnHost)
	reg("Capacity", c.Capacity)
	reg("MoveInstance", c.MoveInstance)
	reg("RecoverInstance", c.RecoverInstance)
	reg("SSHReachable", c.SSHReachable)
	reg("PingAddress", c.PingAddress)
	reg("DBVolumeAttachments", c.DBVolumeAttachments)
	reg("HostsWithRole", c.HostsWithRole)
	theCompute = c // GetInstance is registered by the inspector's mock, which asks this world for vm-N
}

var theCompute *mockCompute

func (c *mockCompute) service(h string) activities.ComputeService {
	s := activities.ComputeService{Host: h, ID: "svc-" + h, Status: "enabled", State: "up"}
	if c.st.Get("compute/"+h) == "disabled" {
		s.Status, s.DisabledReason = "disabled", "crash matrix"
	}
	if c.dead && h == c.hosts[0] {
		s.State = "down"
		s.ForcedDown = c.st.Get("forced/"+h) == "down"
		return s
	}
	// updated_at: a running nova-compute reports every report_interval (here: all the time), so
	// its last report is now, after its last start or its host's boot, as Nova shows once the
	// service has reconnected; a stopped one's is its last before the stop.
	req := activities.ServiceRequest{Host: h, Service: "nova-compute"}
	s.UpdatedAt = time.Now().UTC()
	if c.st.Get(serviceKey(req)) == "stopped" {
		s.UpdatedAt, _ = time.Parse(time.RFC3339Nano, c.st.Get(stoppedKey(req)))
	}
	return s
}

func (c *mockCompute) ComputeServices(ctx context.Context) ([]activities.ComputeService, error) {
	time.Sleep(work)
	var out []activities.ComputeService
	for _, h := range c.hosts {
		out = append(out, c.service(h))
	}
	return out, nil
}

// SetComputeService disables or enables unless the service already is so (Nova's API answers
// the same; the real activity reads the service first).
func (c *mockCompute) SetComputeService(ctx context.Context, ch activities.ServiceChange) (activities.ComputeService, error) {
	time.Sleep(work)
	switch {
	case ch.ForcedDown != nil:
		want := map[bool]string{true: "down", false: "up"}[*ch.ForcedDown]
		c.st.Act("forced/"+ch.Host, want, "forced_down="+want+" "+ch.Host)
	case ch.Disable:
		c.st.Act("compute/"+ch.Host, "disabled", "disable "+ch.Host)
	case ch.Enable:
		c.st.Act("compute/"+ch.Host, "enabled", "enable "+ch.Host)
	}
	return c.service(ch.Host), nil
}

func (c *mockCompute) where(id string) string {
	if h := c.st.Get("instance/" + id); h != "" {
		return h
	}
	if h, ok := home[id]; ok {
		return h
	}
	return c.hosts[0]
}

// home is each instance's host before anything moved it, when it is not the first host
// (CRASH_WAVE_INSTANCES: a few instances on every host of the wave).
var home = map[string]string{}

// waveWorld is rolling-maintenance's largest wave: n compute hosts named after first (first,
// first-t1 .. first-t<n-1>), k instances at home on each.
func waveWorld(first string, n, k int) []string {
	hosts := []string{first}
	for i := 1; i < n; i++ {
		hosts = append(hosts, fmt.Sprintf("%s-t%d", first, i))
	}
	instances = nil
	for i, h := range hosts {
		for j := range k {
			id := fmt.Sprintf("vm-%d-%d", i+1, j+1)
			instances = append(instances, id)
			home[id] = h
		}
	}
	return hosts
}

// HostsWithRole: every compute host of the world, as DescribeHost describes it (rolling-
// maintenance --role compute, the wave larger than --hosts allows).
func (c *mockCompute) HostsWithRole(ctx context.Context, role string) ([]activities.HostFacts, error) {
	time.Sleep(work)
	var out []activities.HostFacts
	for _, h := range c.hosts {
		f, _ := (&mockHosts{st: c.st}).DescribeHost(ctx, h)
		out = append(out, f)
	}
	slices.SortFunc(out, func(a, b activities.HostFacts) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

func (c *mockCompute) InstancesOnHost(ctx context.Context, host string) ([]activities.Instance, error) {
	time.Sleep(work)
	var out []activities.Instance
	for _, id := range instances {
		if c.where(id) == host {
			st, power := c.power(id), 1
			if st != "ACTIVE" {
				power = 4 // shut down
			}
			out = append(out, activities.Instance{ID: id, Name: id, Status: st, PowerState: power, Host: host, VCPUs: 1, RAMMB: 512, DiskGB: 1})
		}
	}
	return out, nil
}

// GetInstance: an instance of the world, on its host (rolling-maintenance's migrate-back).
// mockInspector.GetInstance answers for these instances with it.
func (c *mockCompute) GetInstance(ctx context.Context, id string) (activities.Instance, error) {
	time.Sleep(work)
	list, _ := c.InstancesOnHost(ctx, c.where(id))
	for _, i := range list {
		if i.ID == id {
			return i, nil
		}
	}
	return activities.Instance{}, temporal.NewNonRetryableApplicationError("no instance "+id, activities.ErrTypeNotFound, nil)
}

func (c *mockCompute) DBInstancesOnHost(ctx context.Context, host string) ([]string, error) {
	var ids []string
	list, _ := c.InstancesOnHost(ctx, host)
	for _, i := range list {
		ids = append(ids, i.ID)
	}
	return ids, nil
}

func (c *mockCompute) Capacity(ctx context.Context, targets []string) ([]activities.HostCapacity, error) {
	time.Sleep(work)
	var out []activities.HostCapacity
	for _, h := range targets {
		out = append(out, activities.HostCapacity{Host: h, Provider: "rp-" + h, FreeVCPUs: 16 + scale, FreeRAMMB: 16384 + 512*scale, FreeDiskGB: 100 + scale})
	}
	return out, nil
}

// MoveInstance migrates unless the instance already left its source (the real one reads the
// server and its migration records first).
func (c *mockCompute) MoveInstance(ctx context.Context, req activities.MoveRequest) (activities.MoveResult, error) {
	time.Sleep(4 * work)
	to := req.Target
	res := activities.MoveResult{ID: req.ID, From: req.Source, To: to, Status: "ACTIVE", Migration: "mig-" + req.ID, MigrationStat: "completed"}
	if c.where(req.ID) != req.Source {
		res.To, res.AlreadyMoved = c.where(req.ID), true
		return res, nil
	}
	res.Started = c.st.Act("instance/"+req.ID, to, fmt.Sprintf("migrate %s %s->%s", req.ID, req.Source, to))
	return res, nil
}

// power is an instance's status: ACTIVE, or CRASH_INSTANCE_STATUS before anything started it.
func (c *mockCompute) power(id string) string {
	if s := c.st.Get("status/" + id); s != "" {
		return s
	}
	return c.status
}

// RecoverInstance starts an instance unless it already runs (the real one reads it first).
func (c *mockCompute) RecoverInstance(ctx context.Context, id string, wait time.Duration) (activities.InstanceRecovery, error) {
	time.Sleep(work)
	rec := activities.InstanceRecovery{ID: id, Name: id, Before: c.power(id), Action: "none", After: "ACTIVE"}
	if c.st.Act("status/"+id, "ACTIVE", "start "+id) {
		rec.Action = "start"
	}
	return rec, nil
}

// BootTime: the host booted an hour ago, or when it was rebooted (mocks_rolling.go).
func (h *mockHosts) BootTime(ctx context.Context, host string) (time.Time, error) {
	time.Sleep(work)
	return bootTime(h.st.Get(bootKey(host))), nil
}

// Probe: every API answers.
func (h *mockHosts) Probe(ctx context.Context, p activities.APIProbe) (activities.APIProbeResult, error) {
	time.Sleep(work)
	return activities.APIProbeResult{OK: true, Detail: p.Kind + " answers"}, nil
}

// SSHReachable: the dead host does not answer (fenced), the others do.
func (c *mockCompute) SSHReachable(ctx context.Context, host string) (activities.Reachability, error) {
	time.Sleep(work)
	if c.dead && host == c.hosts[0] {
		return activities.Reachability{Host: host, Detail: "connection refused"}, nil
	}
	return activities.Reachability{Host: host, Reachable: true, Detail: "SSH-2.0-OpenSSH_9.2"}, nil
}

// PingAddress: as SSH, the dead host's management address does not answer, the others do.
func (c *mockCompute) PingAddress(ctx context.Context, host string) (activities.Reachability, error) {
	time.Sleep(work)
	if c.dead && host == c.hosts[0] {
		return activities.Reachability{Host: host, Detail: "100% packet loss"}, nil
	}
	return activities.Reachability{Host: host, Reachable: true, Detail: "1 packets received"}, nil
}

// DBVolumeAttachments: every instance on host has one volume, attached where the instance is.
func (c *mockCompute) DBVolumeAttachments(ctx context.Context, host string) ([]activities.VolumeAttachment, error) {
	time.Sleep(work)
	var out []activities.VolumeAttachment
	for _, id := range instances {
		if c.where(id) == host {
			out = append(out, activities.VolumeAttachment{InstanceID: id, VolumeID: "vol-" + id, Device: "/dev/vdb", Status: "in-use", AttachStatus: "attached", AttachedHost: host})
		}
	}
	return out, nil
}

// scale is CRASH_SCALE (0: the matrix's small world).
var scale int

// scaled names n hosts prefix-1..prefix-n, or the defaults when not scaled.
func scaled(prefix string, defaults ...string) []string {
	if scale == 0 {
		return defaults
	}
	out := make([]string, scale)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%d", prefix, i+1)
	}
	return out
}
