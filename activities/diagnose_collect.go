package activities

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/stackrun/stackrun/internal/infra/diagnose"
	"github.com/stackrun/stackrun/internal/infra/openstack"
	"github.com/stackrun/stackrun/internal/infra/remote"
)

// Every collector returns the facts it found. What it could not find is a Failure inside the
// facts (one dead host does not hide the others); an error is returned only when the collector
// could not run at all, and the workflow then records it as a failure too.

// cmd runs one read-only catalogue command on a host and returns its output and a source line
// ("ssh compute1: vmstat -d"); callers decide what a non-zero exit means.
func (d *Diagnose) cmd(ctx context.Context, host, role, name string, args map[string]string) (remote.Result, string, error) {
	src := "ssh " + host + ": " + name
	if d.hosts.Catalogue != nil {
		a := map[string]string{"host": host}
		for k, v := range args {
			a[k] = v
		}
		if c, err := d.hosts.Catalogue.Build(name, role, a); err == nil {
			src = "ssh " + host + ": " + strings.Join(c.Argv, " ")
		}
	}
	// Hosts.run refuses output cut at the SSH layer's limit (RemoteOutputTruncated): a partial
	// table is never parsed as evidence.
	res, err := d.hosts.run(ctx, host, role, name, args)
	return res, src, err
}

func roleOf(inv InventoryHost) string {
	if len(inv.Roles) > 0 {
		return inv.Roles[0]
	}
	return ""
}

func fail(f *diagnose.Facts, collector, src string, err error) {
	f.Failures = append(f.Failures, diagnose.Failure{Collector: collector, Source: src, Error: err.Error()})
}

// DiagnoseNode reads a host's resources: load average and CPUs, memory, disk IO (vmstat -d) and
// file systems (df).
func (d *Diagnose) DiagnoseNode(ctx context.Context, req CollectRequest) (diagnose.Facts, error) {
	host := req.Spec.Host
	inv, _, err := d.hosts.lookup(host)
	if err != nil {
		return diagnose.Facts{}, err
	}
	role := roleOf(inv)
	var f diagnose.Facts
	n := diagnose.Node{Host: host}
	id := req.Spec.ID()
	step := func(name string, parse func(out string) error) {
		res, src, err := d.cmd(ctx, host, role, name, nil)
		n.Sources = append(n.Sources, src)
		if err == nil && !res.OK() && name == "disk_free_all" && strings.HasPrefix(res.Stdout, "Filesystem") {
			// df lists what it could read and exits 1 for the rest: those are findings.
			for _, l := range strings.Split(strings.TrimSpace(res.Stderr), "\n") {
				if l = strings.TrimSpace(l); l != "" {
					n.FSErrors = append(n.FSErrors, shortText(l, 200))
				}
			}
		} else if err == nil && !res.OK() {
			err = fmt.Errorf("exit %d: %s", res.ExitCode, lastLine(res.Stderr+res.Stdout))
		}
		if err == nil {
			err = parse(res.Stdout)
		}
		if err != nil {
			fail(&f, id+"/"+name, src, err)
		}
	}
	step("loadavg", func(out string) (err error) { n.Load1, n.Load5, n.Load15, err = diagnose.ParseLoadavg(out); return })
	step("cpu_count", func(out string) (err error) { n.CPUs, err = strconv.Atoi(strings.TrimSpace(out)); return })
	step("meminfo", func(out string) (err error) {
		n.MemTotal, n.MemAvail, n.SwapTot, n.SwapFree, err = diagnose.ParseMeminfo(out)
		return
	})
	step("vmstat_disk", func(out string) (err error) { n.Disks, err = diagnose.ParseVmstatDisk(out); return })
	step("disk_free_all", func(out string) error {
		fss, err := diagnose.ParseDF(out)
		for _, fs := range fss {
			if contains(pseudoFS, fs.Source) || strings.HasPrefix(fs.Mount, "/proc") || strings.HasPrefix(fs.Mount, "/sys") || strings.HasPrefix(fs.Mount, "/dev") || strings.HasPrefix(fs.Mount, "/run") {
				continue
			}
			n.FS = append(n.FS, fs)
		}
		return err
	})
	f.Nodes = append(f.Nodes, n)
	return f, nil
}

// DiagnoseProcesses asks a host whether each implicated service's process runs (service_status).
func (d *Diagnose) DiagnoseProcesses(ctx context.Context, req CollectRequest) (diagnose.Facts, error) {
	var f diagnose.Facts
	for _, s := range req.Spec.Services {
		res, src, err := d.cmd(ctx, req.Spec.Host, s.Role, "service_status", map[string]string{"service": s.Name})
		if err != nil {
			fail(&f, req.Spec.ID()+"/"+s.Name, src, err)
			continue
		}
		f.Processes = append(f.Processes, diagnose.Process{Host: req.Spec.Host, Service: s.Name, Running: res.OK(),
			Output: shortText(strings.TrimSpace(res.Stdout+" "+res.Stderr), 200), Source: src})
	}
	return f, nil
}

// DiagnoseLogs reads the tail of one service's log and keeps the lines inside the window that
// matter (database, message queue, scheduling, timeouts, errors).
func (d *Diagnose) DiagnoseLogs(ctx context.Context, req CollectRequest) (diagnose.Facts, error) {
	var f diagnose.Facts
	lines := d.LogLines
	if lines <= 0 {
		lines = 3000
	}
	for _, s := range req.Spec.Services {
		args := map[string]string{"service": s.Name, "lines": strconv.Itoa(lines)}
		if s.Log != "" {
			args["log"] = s.Log
		}
		res, src, err := d.cmd(ctx, req.Spec.Host, s.Role, "log_tail", args)
		if err == nil && !res.OK() {
			err = fmt.Errorf("exit %d: %s", res.ExitCode, lastLine(res.Stderr+res.Stdout))
		}
		if err != nil {
			fail(&f, req.Spec.ID(), src, err)
			continue
		}
		ex := diagnose.ScanLog(res.Stdout, req.Since, req.Until, d.loc())
		ex.Host, ex.Service, ex.Source = req.Spec.Host, s.Name, src
		f.Logs = append(f.Logs, ex)
	}
	return f, nil
}

// ARP requests and pings per vantage point.
const (
	arpCount  = 3
	pingCount = 3
	maxNetns  = 8
)

// DiagnoseNetwork looks at each address from one host: whether the host or one of its network
// namespaces (Neutron's qdhcp-/qrouter- namespaces) is on the address's segment; from each such
// vantage point, ARP (every machine that holds the address answers: two MACs is a duplicate
// address), the neighbour table, and ping. MACs are matched against Neutron's ports.
func (d *Diagnose) DiagnoseNetwork(ctx context.Context, req CollectRequest) (diagnose.Facts, error) {
	host := req.Spec.Host
	inv, _, err := d.hosts.lookup(host)
	if err != nil {
		return diagnose.Facts{}, err
	}
	role := roleOf(inv)
	var f diagnose.Facts
	id := req.Spec.ID()
	for _, addr := range req.Spec.Addresses {
		if net.ParseIP(addr) == nil {
			return diagnose.Facts{}, fmt.Errorf("address %q: not an IP address", addr)
		}
		known, asked := d.knownMACs(ctx, addr, &f)
		type vantage struct{ netns, dev string }
		var vs []vantage
		var holders []string
		var sources []string
		res, src, err := d.cmd(ctx, host, role, "route_get", map[string]string{"address": addr})
		sources = append(sources, src)
		if err == nil && res.OK() {
			if r, err := diagnose.ParseRoute(res.Stdout); err == nil && r.OnLink() {
				vs = append(vs, vantage{"", r.Dev})
			}
		}
		res, src, err = d.cmd(ctx, host, role, "netns_route_get", map[string]string{"address": addr})
		sources = append(sources, src)
		if err != nil {
			fail(&f, id+"/netns", src, err)
		} else if rs, err := diagnose.ParseNetnsRoutes(res.Stdout); err != nil {
			fail(&f, id+"/netns", src, err)
		} else {
			for _, r := range rs {
				switch {
				case r.Route.Type == "local":
					holders = append(holders, r.Netns)
				case r.Route.OnLink() && len(vs) < maxNetns:
					vs = append(vs, vantage{r.Netns, r.Route.Dev})
				}
			}
		}
		slices.Sort(holders)
		if len(vs) == 0 {
			// Not on any local segment: reachability only.
			p := diagnose.NetProbe{Host: host, Address: addr, Holders: holders, Known: known, NeutronAsked: asked, Sources: slices.Clone(sources)}
			d.ping(ctx, host, role, "", &p)
			f.Network = append(f.Network, p)
			continue
		}
		for _, v := range vs {
			p := diagnose.NetProbe{Host: host, Netns: v.netns, Interface: v.dev, Address: addr, OnLink: true, Holders: holders, Known: known, NeutronAsked: asked, Sources: slices.Clone(sources)}
			args := map[string]string{"address": addr, "interface": v.dev, "count": strconv.Itoa(arpCount)}
			name := "arp_probe"
			if v.netns != "" {
				name, args["netns"] = "netns_arp_probe", v.netns
			}
			// arping exits non-zero in several cases where it did answer (-b): read its output.
			res, src, err := d.cmd(ctx, host, role, name, args)
			p.ARPSource = src
			if err == nil {
				p.ARPSent, p.ARPReplies, p.MACs, err = diagnose.ParseArping(res.Stdout, addr)
				if err != nil && strings.TrimSpace(res.Stderr) != "" {
					err = fmt.Errorf("%v; stderr: %s", err, lastLine(res.Stderr))
				}
			}
			if err != nil {
				p.Error = err.Error()
			}
			nname, nargs := "neigh_show", map[string]string{}
			if v.netns != "" {
				nname, nargs = "netns_neigh_show", map[string]string{"netns": v.netns}
			}
			if res, src, err := d.cmd(ctx, host, role, nname, nargs); err == nil && res.OK() {
				p.NeighSource = src
				p.NeighMAC, p.NeighState, _ = diagnose.ParseNeigh(res.Stdout, addr)
			}
			d.ping(ctx, host, role, v.netns, &p)
			f.Network = append(f.Network, p)
		}
	}
	return f, nil
}

func (d *Diagnose) ping(ctx context.Context, host, role, netns string, p *diagnose.NetProbe) {
	name, args := "ping", map[string]string{"address": p.Address, "count": strconv.Itoa(pingCount), "seconds": "1"}
	if netns != "" {
		name, args["netns"] = "netns_ping", netns
	}
	res, src, err := d.cmd(ctx, host, role, name, args)
	p.PingSource = src
	if err != nil {
		p.Error = strings.TrimPrefix(p.Error+"; ping: "+err.Error(), "; ")
		return
	}
	if s, r, err := diagnose.ParsePing(res.Stdout); err == nil {
		p.PingSent, p.PingRecv = s, r
	} else {
		p.Error = strings.TrimSpace(strings.TrimPrefix(p.Error+"; ping: "+lastLine(res.Stderr+res.Stdout), "; "))
	}
}

// knownMACs asks Neutron which ports hold addr: MAC -> "port P (device owner D of DEVICE)".
func (d *Diagnose) knownMACs(ctx context.Context, addr string, f *diagnose.Facts) (map[string]string, bool) {
	if d.clients == nil {
		return nil, false
	}
	cl, err := d.clients(ctx)
	if err != nil || cl.Network == nil {
		return nil, false
	}
	src := "GET network /v2.0/ports?fixed_ips=ip_address=" + addr
	ps, err := cl.PortsWithIP(ctx, addr)
	if err != nil {
		fail(f, "neutron-ports", src, err)
		return nil, false
	}
	out := map[string]string{}
	for _, p := range ps {
		out[p.MAC] = fmt.Sprintf("Neutron port %s, %s %s", p.ID, dashIf(p.DeviceOwner), dashIf(p.DeviceID))
	}
	if len(out) == 0 {
		f.Notes = append(f.Notes, diagnose.Note{Message: fmt.Sprintf("Neutron has no port with address %s", addr), Source: src})
	}
	return out, true
}

func dashIf(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func shortText(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// DiagnoseConnects tries the database endpoints from the worker: TCP first (refused means nothing
// listens), then a ping with the read-only account (too many connections, access denied...).
func (d *Diagnose) DiagnoseConnects(ctx context.Context, req CollectRequest) (diagnose.Facts, error) {
	var f diagnose.Facts
	if len(d.DB) == 0 {
		f.Notes = append(f.Notes, diagnose.Note{Message: "no database DSN configured (databases.*_dsn): the worker did not try the database itself"})
		return f, nil
	}
	dial := d.Dial
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	seen := map[string]bool{}
	for _, t := range d.DB {
		if seen[t.Addr] {
			continue
		}
		seen[t.Addr] = true
		c := diagnose.Connect{Component: "mariadb", Target: t.Addr, Source: "tcp connect from the worker to " + t.Addr + " (" + t.Name + ")"}
		start := time.Now()
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		conn, err := dial(dctx, "tcp", t.Addr)
		cancel()
		c.Took = time.Since(start)
		if err != nil {
			c.Error = err.Error()
			f.Connects = append(f.Connects, c)
			continue
		}
		conn.Close()
		c.OK = true
		f.Connects = append(f.Connects, c)
		if t.DSN == "" {
			continue
		}
		p := diagnose.Connect{Component: "mariadb", Target: t.Addr, Source: "database ping from the worker (" + t.Name + ")"}
		start = time.Now()
		if err := pingDB(ctx, t.DSN); err != nil {
			p.Error = err.Error()
		} else {
			p.OK = true
		}
		p.Took = time.Since(start)
		f.Connects = append(f.Connects, p)
	}
	return f, nil
}

func pingDB(ctx context.Context, dsn string) error {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return fmt.Errorf("DSN: %w", err)
	}
	cfg.Timeout, cfg.ReadTimeout = 5*time.Second, 5*time.Second
	db, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		return err
	}
	defer db.Close()
	pctx, cancel := context.WithTimeout(ctx, 8*time.Second)
	defer cancel()
	return db.PingContext(pctx)
}

// DiagnoseComponents reads the components' own state: Nova's services, Neutron's agents and
// Cinder's services (each when the cloud has it).
func (d *Diagnose) DiagnoseComponents(ctx context.Context, req CollectRequest) (diagnose.Facts, error) {
	cl, err := d.cloud(ctx)
	if err != nil {
		return diagnose.Facts{}, err
	}
	var f diagnose.Facts
	svcs, err := cl.ComputeServices(ctx, "")
	if err != nil {
		fail(&f, "components/nova", "GET compute /os-services", err)
	}
	for _, s := range svcs {
		f.Services = append(f.Services, diagnose.Service{Component: "nova", Binary: s.Binary, Host: s.Host, State: s.State, Status: s.Status,
			Reason: s.DisabledReason, Forced: s.ForcedDown, Updated: s.UpdatedAt, Source: "GET compute /os-services"})
	}
	if cl.Network != nil {
		src := "GET network /v2.0/agents"
		if as, err := cl.NetworkAgents(ctx); err != nil {
			fail(&f, "components/neutron", src, err)
		} else {
			for _, a := range as {
				st, status := "down", "disabled"
				if a.Alive {
					st = "up"
				}
				if a.AdminUp {
					status = "enabled"
				}
				f.Services = append(f.Services, diagnose.Service{Component: "neutron", Binary: a.Binary, Host: a.Host, State: st, Status: status, Updated: a.Heartbeat, Source: src})
			}
			if len(as) == 0 {
				f.Notes = append(f.Notes, diagnose.Note{Message: "Neutron reports no agents", Source: src})
			}
		}
	}
	if cl.BlockStorage != nil {
		src := "GET block-storage /os-services"
		if ss, err := cl.VolumeServices(ctx); err != nil {
			fail(&f, "components/cinder", src, err)
		} else {
			for _, s := range ss {
				f.Services = append(f.Services, diagnose.Service{Component: "cinder", Binary: s.Binary, Host: s.Host, State: s.State, Status: s.Status, Reason: s.DisabledReason, Updated: s.UpdatedAt, Source: src})
			}
		}
	} else if req.Symptom == "volume-create-timeout" {
		f.Notes = append(f.Notes, diagnose.Note{Message: "no Cinder (volumev3) in the service catalog"})
	}
	return f, nil
}

// DiagnoseRelated lists the other resources that show the symptom: instances in ERROR changed in
// the window (instance-wont-boot), the instances on the subject's host (instance-unreachable),
// volumes in error or stuck creating (volume-create-timeout).
func (d *Diagnose) DiagnoseRelated(ctx context.Context, req CollectRequest) (diagnose.Facts, error) {
	cl, err := d.cloud(ctx)
	if err != nil {
		return diagnose.Facts{}, err
	}
	var f diagnose.Facts
	switch req.Symptom {
	case diagnose.VolumeCreateTimeout:
		if cl.BlockStorage == nil {
			return f, nil
		}
		for _, st := range []string{"error", "creating"} {
			src := "GET block-storage /volumes/detail?all_tenants=1&status=" + st
			vs, err := cl.ListVolumes(ctx, "", st)
			if err != nil {
				fail(&f, "related/volumes", src, err)
				continue
			}
			for _, v := range vs {
				if v.Updated.Before(req.Since) && v.Created.Before(req.Since) {
					continue
				}
				f.Related = append(f.Related, *volumeResource(v, src))
			}
		}
		return f, nil
	case diagnose.InstanceUnreachable:
		if req.Resource == nil || req.Resource.Host == "" {
			return f, nil
		}
		src := "GET compute /servers/detail?all_tenants=1&host=" + req.Resource.Host
		list, err := cl.ServersOnHost(ctx, req.Resource.Host)
		if err != nil {
			return f, fmt.Errorf("%s: %w", src, err)
		}
		for _, s := range list {
			f.Related = append(f.Related, diagnose.Resource{Kind: "instance", ID: s.ID, Name: s.Name, Status: s.Status, TaskState: s.TaskState, Host: s.Host, Project: s.ProjectID, Fault: s.Fault, Source: src})
		}
		return f, nil
	}
	q := openstack.ServerQuery{AllTenants: true, Status: "ERROR", ChangesSince: req.Since}
	all, err := cl.FindServers(ctx, q)
	if err != nil {
		return f, fmt.Errorf("%s: %w", q.URL(), err)
	}
	for i, s := range all {
		if s.Fault == "" && i < 50 {
			// The list may leave out the fault (instances that never left cell0): ask for it.
			if full, err := cl.GetServerDetail(ctx, s.ID); err == nil {
				s = full
			}
		}
		f.Related = append(f.Related, *instanceResource(s, q.URL()))
	}
	return f, nil
}

// DiagnoseCapacity is the scheduling picture: Placement summed over providers, each compute's
// free resources, and whether the failed instance's flavor fits one of them.
func (d *Diagnose) DiagnoseCapacity(ctx context.Context, req CollectRequest) (diagnose.Facts, error) {
	cl, err := d.cloud(ctx)
	if err != nil {
		return diagnose.Facts{}, err
	}
	var f diagnose.Facts
	src := "GET placement /resource_providers and each one's /inventories and /usages"
	used, total, err := capacity(ctx, cl)
	if err != nil {
		return f, fmt.Errorf("%s: %w", src, err)
	}
	c := &diagnose.Capacity{Source: src}
	for _, rc := range capacityClasses {
		c.Classes = append(c.Classes, diagnose.ClassUsage{Class: rc, Used: used[rc], Total: total[rc]})
	}
	svcs, err := cl.ComputeServices(ctx, "nova-compute")
	if err != nil {
		return f, fmt.Errorf("GET compute /os-services?binary=nova-compute: %w", err)
	}
	for _, s := range svcs {
		c.Computes++
		if s.State == "up" && s.Status == "enabled" {
			c.ComputesUp++
		}
	}
	var need struct{ vcpus, ram, disk int }
	if r := req.Resource; r != nil && r.Kind == "instance" {
		if s, err := cl.GetServer(ctx, r.ID); err == nil && s.FlavorVCPUs > 0 {
			need.vcpus, need.ram, need.disk = s.FlavorVCPUs, s.FlavorRAMMB, s.FlavorDiskGB
			c.FlavorNeeds = fmt.Sprintf("flavor %s (%d VCPU, %d MB RAM, %d GB disk)", s.FlavorName, need.vcpus, need.ram, need.disk)
		}
	}
	// Per provider: what is free, and the most one allocation may take (max_unit): a flavor
	// larger than max_unit fits nowhere however much is free.
	rps, err := cl.ListResourceProviders(ctx)
	if err != nil {
		fail(&f, "capacity/providers", src, err)
	}
	bestFree := -1.0
	for _, rp := range rps {
		inv, err1 := cl.ProviderInventories(ctx, rp.UUID)
		use, err2 := cl.ProviderUsages(ctx, rp.UUID)
		if err := errors.Join(err1, err2); err != nil {
			fail(&f, "capacity/"+rp.Name, src, err)
			continue
		}
		room := func(class string) (free, maxUnit int) {
			i, ok := inv[class]
			if !ok {
				return 0, 0
			}
			ratio := i.AllocationRatio
			if ratio <= 0 {
				ratio = 1
			}
			free = int(float64(i.Total-i.Reserved)*ratio) - use[class]
			maxUnit = i.MaxUnit
			if maxUnit <= 0 {
				maxUnit = i.Total
			}
			return free, maxUnit
		}
		fv, mv := room("VCPU")
		fr, mr := room("MEMORY_MB")
		fd, md := room("DISK_GB")
		if _, ok := inv["VCPU"]; !ok {
			continue // not a compute node (shared storage, a network provider...)
		}
		if need.vcpus > 0 && need.vcpus <= min(fv, mv) && need.ram <= min(fr, mr) && need.disk <= min(fd, md) {
			c.FitsSomewhere = true
		}
		if float64(fv) > bestFree {
			bestFree = float64(fv)
			c.LargestFree = fmt.Sprintf("%s: %d VCPU free (at most %d per instance), %d MB RAM (at most %d), %d GB disk (at most %d)", rp.Name, fv, mv, fr, mr, fd, md)
		}
	}
	f.Capacity = c
	return f, nil
}

// DiagnoseAPIs times one cheap read-only GET per API in the catalog.
func (d *Diagnose) DiagnoseAPIs(ctx context.Context, req CollectRequest) (diagnose.Facts, error) {
	cl, err := d.cloud(ctx)
	if err != nil {
		return diagnose.Facts{}, err
	}
	var f diagnose.Facts
	for _, api := range req.Spec.APIs {
		tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		tm, err := cl.TimeAPI(tctx, api)
		cancel()
		if errors.Is(err, openstack.ErrServiceUnavailable) {
			f.Notes = append(f.Notes, diagnose.Note{Message: fmt.Sprintf("%s is not in the service catalog: not timed", api)})
			continue
		}
		t := diagnose.APITiming{API: api, URL: tm.URL, Status: tm.Status, Took: tm.Took, Source: "GET " + api + " " + tm.URL}
		if err != nil {
			t.Error = shortText(err.Error(), 300)
		}
		f.APIs = append(f.APIs, t)
	}
	return f, nil
}
