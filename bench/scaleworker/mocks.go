package main

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.temporal.io/sdk/worker"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/config"
)

// work stands for what a host command or an API call takes; a migration takes four times as long.
const work = 50 * time.Millisecond

// world is the mocked cloud: every inventory host runs nova-compute with two instances on it
// (the instances of every third host, index ≡ 2 mod 3, are shut off: the hosts the bench gives
// post-reboot-check --start-instances). Nova lists every host's compute service, as the real API
// does, so that a run sees the whole inventory's size.
type world struct {
	real  *activities.Hosts // DescribeHost reads the inventory: the real activity
	hosts []string
	first *firstLog

	mu       sync.Mutex
	stopped  map[string]bool   // "host/service"
	disabled map[string]string // compute host -> disabled reason
	where    map[string]string // instance -> host, once moved
	started  map[string]bool   // instance started by RecoverInstance
}

func newWorld(cfg *config.Config) *world {
	inv := map[string]activities.InventoryHost{}
	for name, h := range cfg.Inventory {
		inv[name] = activities.InventoryHost{Address: h.Address, Port: h.Port, Roles: h.Roles, Labels: h.Labels}
	}
	services := map[string][]activities.ServiceFacts{}
	for role, r := range cfg.Roles {
		for _, s := range r.Services {
			services[role] = append(services[role], activities.ServiceFacts{Role: role, Name: s.Name, Log: s.Log, AMQP: s.AMQP})
		}
	}
	w := &world{real: &activities.Hosts{Inventory: inv, Services: services},
		stopped: map[string]bool{}, disabled: map[string]string{}, where: map[string]string{}, started: map[string]bool{}}
	for name := range inv {
		w.hosts = append(w.hosts, name)
	}
	sort.Strings(w.hosts)
	return w
}

func registerMocks(w worker.Worker, wd *world, first *firstLog) {
	wd.first = first
	for name, fn := range map[string]any{
		"DescribeHost": wd.DescribeHost, "ServiceStatus": wd.ServiceStatus, "SetService": wd.SetService,
		"CheckAMQP": wd.CheckAMQP, "BootTime": wd.BootTime, "Probe": wd.Probe,
		"ComputeServices": wd.ComputeServices, "SetComputeService": wd.SetComputeService,
		"InstancesOnHost": wd.InstancesOnHost, "DBInstancesOnHost": wd.DBInstancesOnHost,
		"Capacity": wd.Capacity, "MoveInstance": wd.MoveInstance, "RecoverInstance": wd.RecoverInstance,
	} {
		register(w, name, fn)
	}
}

func (w *world) begin(ctx context.Context, d time.Duration) {
	w.first.note(ctx)
	time.Sleep(d)
}

func (w *world) DescribeHost(ctx context.Context, name string) (activities.HostFacts, error) {
	w.begin(ctx, 0)
	return w.real.DescribeHost(ctx, name)
}

func svcKey(r activities.ServiceRequest) string { return r.Host + "/" + r.Service }

func (w *world) ServiceStatus(ctx context.Context, req activities.ServiceRequest) (activities.ServiceState, error) {
	w.begin(ctx, work)
	w.mu.Lock()
	defer w.mu.Unlock()
	return activities.ServiceState{Running: !w.stopped[svcKey(req)], Output: "active"}, nil
}

// SetService stops or starts unless the service already is so.
func (w *world) SetService(ctx context.Context, a activities.ServiceAction) error {
	w.begin(ctx, work)
	w.mu.Lock()
	defer w.mu.Unlock()
	switch a.Action {
	case "stop":
		w.stopped[svcKey(a.ServiceRequest)] = true
	case "start":
		delete(w.stopped, svcKey(a.ServiceRequest))
	default:
		return fmt.Errorf("action %q", a.Action)
	}
	return nil
}

func (w *world) CheckAMQP(ctx context.Context, req activities.AMQPRequest) (activities.AMQPResult, error) {
	w.begin(ctx, work)
	w.mu.Lock()
	defer w.mu.Unlock()
	return activities.AMQPResult{Connected: !w.stopped[svcKey(req.ServiceRequest)]}, nil
}

func (w *world) BootTime(ctx context.Context, host string) (time.Time, error) {
	w.begin(ctx, work)
	return time.Now().Add(-time.Hour).Truncate(time.Hour), nil
}

func (w *world) Probe(ctx context.Context, p activities.APIProbe) (activities.APIProbeResult, error) {
	w.begin(ctx, work)
	return activities.APIProbeResult{OK: true, Detail: p.Kind + " answers"}, nil
}

func (w *world) service(h string) activities.ComputeService {
	s := activities.ComputeService{Host: h, ID: "svc-" + h, Status: "enabled", State: "up"}
	if r, ok := w.disabled[h]; ok {
		s.Status, s.DisabledReason = "disabled", r
	}
	return s
}

// ComputeServices lists every host's nova-compute service, as Nova's os-services does.
func (w *world) ComputeServices(ctx context.Context) ([]activities.ComputeService, error) {
	w.begin(ctx, work)
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]activities.ComputeService, len(w.hosts))
	for i, h := range w.hosts {
		out[i] = w.service(h)
	}
	return out, nil
}

func (w *world) SetComputeService(ctx context.Context, ch activities.ServiceChange) (activities.ComputeService, error) {
	w.begin(ctx, work)
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case ch.Disable:
		w.disabled[ch.Host] = ch.Reason
	case ch.Enable:
		delete(w.disabled, ch.Host)
	}
	return w.service(ch.Host), nil
}

// home is the host an instance was created on: "<host>-vm<n>".
func home(id string) string { return id[:strings.LastIndex(id, "-vm")] }

func (w *world) location(id string) string {
	if h, ok := w.where[id]; ok {
		return h
	}
	return home(id)
}

func (w *world) status(id string) string {
	h := home(id)
	if n, err := strconv.Atoi(strings.TrimLeft(h, "abcdefghijklmnopqrstuvwxyz-")); err == nil && n%3 == 2 && !w.started[id] {
		return "SHUTOFF"
	}
	return "ACTIVE"
}

func (w *world) InstancesOnHost(ctx context.Context, host string) ([]activities.Instance, error) {
	w.begin(ctx, work)
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []activities.Instance
	for _, id := range []string{host + "-vm1", host + "-vm2"} {
		if w.location(id) != host {
			continue
		}
		st, power := w.status(id), 1
		if st != "ACTIVE" {
			power = 4 // shut down
		}
		out = append(out, activities.Instance{ID: id, Name: id, Status: st, PowerState: power, Host: host, VCPUs: 2, RAMMB: 4096, DiskGB: 20})
	}
	return out, nil
}

func (w *world) DBInstancesOnHost(ctx context.Context, host string) ([]string, error) {
	list, err := w.InstancesOnHost(ctx, host)
	ids := make([]string, len(list))
	for i, in := range list {
		ids[i] = in.ID
	}
	return ids, err
}

// Capacity answers for every target asked about, as Placement does.
func (w *world) Capacity(ctx context.Context, targets []string) ([]activities.HostCapacity, error) {
	w.begin(ctx, work)
	out := make([]activities.HostCapacity, len(targets))
	for i, h := range targets {
		out[i] = activities.HostCapacity{Host: h, Provider: "rp-" + h, FreeVCPUs: 16, FreeRAMMB: 65536, FreeDiskGB: 500}
	}
	return out, nil
}

// MoveInstance migrates unless the instance already left its source.
func (w *world) MoveInstance(ctx context.Context, req activities.MoveRequest) (activities.MoveResult, error) {
	w.begin(ctx, 4*work)
	w.mu.Lock()
	defer w.mu.Unlock()
	res := activities.MoveResult{ID: req.ID, From: req.Source, To: req.Target, Status: "ACTIVE", Migration: "mig-" + req.ID, MigrationStat: "completed"}
	if at := w.location(req.ID); at != req.Source {
		res.To, res.AlreadyMoved = at, true
		return res, nil
	}
	w.where[req.ID] = req.Target
	res.Started = true
	return res, nil
}

// RecoverInstance starts an instance unless it already runs.
func (w *world) RecoverInstance(ctx context.Context, id string, wait time.Duration) (activities.InstanceRecovery, error) {
	w.begin(ctx, work)
	w.mu.Lock()
	defer w.mu.Unlock()
	rec := activities.InstanceRecovery{ID: id, Name: id, Before: w.status(id), Action: "none", After: "ACTIVE"}
	if rec.Before != "ACTIVE" {
		w.started[id], rec.Action = true, "start"
	}
	return rec, nil
}
