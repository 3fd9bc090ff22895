package activities

import (
	"context"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/stackrun/stackrun/internal/infra/diagnose"
	"github.com/stackrun/stackrun/internal/infra/openstack"
)

// Diagnose holds the read-only collectors of the Diagnose runbook (RUNBOOKS.md §9). It changes
// nothing, and that is enforced rather than promised: its commands come from a read-only view of
// the catalogue (remote.Catalogue.ReadOnlyView), which refuses every command not marked
// read-only before anything connects, and its OpenStack calls are GETs only.
type Diagnose struct {
	hosts   *Hosts
	clients func(ctx context.Context) (*openstack.Clients, error)
	// DB are the database endpoints the worker knows (databases.*_dsn), probed from the worker.
	DB []DBTarget
	// Location is the time zone of the services' logs (checks.time_zone); nil means UTC.
	Location *time.Location
	// LogLines is how many lines of each log are read (default 3000).
	LogLines int
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
	// Dial opens the worker's own TCP probes (tests); nil means net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// DBTarget is a database endpoint: its config key, its address, and a DSN for a ping (which the
// facts never show).
type DBTarget struct {
	Name string `json:"name"` // e.g. databases.nova_dsn
	Addr string `json:"addr"` // host:port
	DSN  string `json:"-"`
}

// NewDiagnose returns the collectors over hosts' inventory and runner, with a read-only view of
// its catalogue: whatever hosts was given, a Diagnose cannot build a mutating command.
func NewDiagnose(hosts *Hosts, clients func(ctx context.Context) (*openstack.Clients, error)) *Diagnose {
	h := &Hosts{Services: map[string][]ServiceFacts{}}
	if hosts != nil {
		h.Inventory, h.Services, h.Runner, h.Now = hosts.Inventory, hosts.Services, hosts.Runner, hosts.Now
		if hosts.Catalogue != nil {
			h.Catalogue = hosts.Catalogue.ReadOnlyView()
		}
	}
	return &Diagnose{hosts: h, clients: clients}
}

// readOnly reports whether every command this Diagnose can build is read-only (always true for
// one made by NewDiagnose; tests assert it).
func (d *Diagnose) readOnly() bool {
	return d.hosts.Catalogue == nil || d.hosts.Catalogue.IsReadOnlyView()
}

func (d *Diagnose) now() time.Time {
	if d.Now != nil {
		return d.Now()
	}
	return time.Now()
}

func (d *Diagnose) loc() *time.Location {
	if d.Location != nil {
		return d.Location
	}
	return time.UTC
}

func (d *Diagnose) cloud(ctx context.Context) (*openstack.Clients, error) {
	if d.clients == nil {
		return nil, temporal.NewNonRetryableApplicationError("OpenStack is "+errNotConfigured.Error(), ErrTypeRefused, nil)
	}
	return d.clients(ctx)
}

// DiagnoseRequest is what the workflow asks the plan for.
type DiagnoseRequest struct {
	Symptom string           `json:"symptom"`
	Subject diagnose.Subject `json:"subject"`
	Since   time.Time        `json:"since"`
	Until   time.Time        `json:"until"`
}

// Collector kinds.
const (
	CollectComponents = "components" // compute and volume services, network agents
	CollectRelated    = "related"    // other resources with the symptom (blast radius)
	CollectCapacity   = "capacity"   // Placement and the failed instance's flavor
	CollectProcesses  = "processes"  // service_status of the implicated services of one host
	CollectNode       = "node"       // load, CPUs, memory, vmstat -d, df of one host
	CollectLogs       = "logs"       // one service's log on one host, inside the window
	CollectNetwork    = "network"    // routes, ARP (duplicates), neighbours, ping from one host
	CollectConnects   = "connects"   // TCP and database pings from the worker
	CollectAPIs       = "apis"       // timed GETs to the APIs
)

// CollectorSpec is one collector to run.
type CollectorSpec struct {
	Kind      string         `json:"kind"`
	Host      string         `json:"host,omitempty"`
	Services  []ServiceFacts `json:"services,omitempty"`
	Addresses []string       `json:"addresses,omitempty"`
	APIs      []string       `json:"apis,omitempty"`
}

// ID names the collector in steps, the audit trail and failures: "node/compute1".
func (s CollectorSpec) ID() string {
	id := s.Kind
	if s.Host != "" {
		id += "/" + s.Host
	}
	if s.Kind == CollectLogs && len(s.Services) == 1 {
		id += "/" + s.Services[0].Name
	}
	return id
}

// CollectRequest is the input of every collector.
type CollectRequest struct {
	DiagnoseRequest
	Spec     CollectorSpec      `json:"spec"`
	Resource *diagnose.Resource `json:"resource,omitempty"`
}

// DiagnosePlan is the subject resolved and the collectors to run, in a fixed order.
type DiagnosePlan struct {
	Facts      diagnose.Facts  `json:"facts"` // symptom, window, inventory, the subject's own view, notes
	Collectors []CollectorSpec `json:"collectors"`
}

// Services each symptom implicates (by the names roles give them), besides the subject's host.
var (
	dbServiceNames  = []string{"mariadb", "mysql", "mysqld", "galera"}
	symptomServices = map[string][]string{
		diagnose.InstanceUnreachable: {"neutron-server", "neutron-openvswitch-agent", "neutron-linuxbridge-agent", "neutron-dhcp-agent", "neutron-l3-agent", "openvswitch-switch"},
		diagnose.InstanceWontBoot:    {"nova-api", "nova-scheduler", "nova-conductor", "placement-api", "rabbitmq-server", "mariadb"},
		diagnose.DBConnectionErrors:  append(slices.Clone(dbServiceNames), "haproxy"),
		diagnose.VolumeCreateTimeout: {"cinder-api", "cinder-scheduler", "cinder-volume", "rabbitmq-server", "mariadb"},
		diagnose.APISlow:             {"keystone", "memcached", "mariadb", "nova-api", "glance-api", "placement-api", "neutron-server", "cinder-api", "swift-proxy"},
	}
	// Logs read per symptom (db-connection-errors reads every OpenStack service's log).
	symptomLogs = map[string][]string{
		diagnose.InstanceUnreachable: {"neutron-server", "neutron-openvswitch-agent", "neutron-linuxbridge-agent", "neutron-dhcp-agent", "neutron-l3-agent"},
		diagnose.InstanceWontBoot:    {"nova-scheduler", "nova-conductor", "nova-api", "placement-api"},
		diagnose.VolumeCreateTimeout: {"cinder-api", "cinder-scheduler", "cinder-volume", "rabbitmq-server"},
		diagnose.APISlow:             {"keystone", "nova-api", "glance-api", "placement-api", "neutron-server", "cinder-api", "swift-proxy", "mariadb"},
	}
	reOpenStackService = regexp.MustCompile(`^(nova|keystone|glance|placement|neutron|cinder|heat|octavia)`)
)

// maxLogCollectors bounds the logs one diagnosis reads.
const maxLogCollectors = 24

// DiagnosePlan resolves the subject (an inventory host, an instance or volume by ID or name, an
// address) and lists the collectors the symptom needs: the implicated nodes, their services and
// logs, the network vantage points, the API and capacity views.
func (d *Diagnose) DiagnosePlan(ctx context.Context, req DiagnoseRequest) (DiagnosePlan, error) {
	if err := diagnose.ValidateSymptom(req.Symptom); err != nil {
		return DiagnosePlan{}, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeInvalidInput, nil)
	}
	f := diagnose.Facts{Symptom: req.Symptom, Subject: req.Subject, Since: req.Since, Until: req.Until}
	names := d.hostNames()
	for _, n := range names {
		inv := d.hosts.Inventory[n]
		f.Hosts = append(f.Hosts, diagnose.HostInfo{Name: n, Address: inv.Address, Rack: inv.Labels["rack"], Roles: slices.Clone(inv.Roles)})
	}
	subjHost := ""
	if req.Subject.Kind == diagnose.SubjectName && slices.Contains(names, req.Subject.Value) {
		subjHost = req.Subject.Value
	}
	if subjHost == "" && req.Subject.Kind != diagnose.SubjectAll && req.Subject.Kind != diagnose.SubjectAPI {
		res, note, err := d.resolve(ctx, req)
		if err != nil {
			f.Failures = append(f.Failures, diagnose.Failure{Collector: "resource", Error: err.Error(), Source: note})
		} else if res != nil {
			f.Resource = res
		} else if note != "" {
			f.Notes = append(f.Notes, diagnose.Note{Message: note})
		}
	}

	p := &planner{d: d, req: req}
	nodes := []string{}
	if subjHost != "" {
		nodes = append(nodes, subjHost)
	}
	if f.Resource != nil && f.Resource.Host != "" && slices.Contains(names, f.Resource.Host) {
		nodes = append(nodes, f.Resource.Host)
		if f.Resource.Kind == "instance" {
			p.service(f.Resource.Host, "nova-compute")
			p.log(f.Resource.Host, "nova-compute")
		}
	}
	if req.Subject.Kind == diagnose.SubjectName && subjHost == "" && f.Resource == nil {
		// A service name (db-connection-errors: "the service that reports the errors").
		for _, h := range d.hostsWith(req.Subject.Value) {
			p.log(h, req.Subject.Value)
			nodes = append(nodes, h)
		}
	}
	for _, s := range symptomServices[req.Symptom] {
		for _, h := range d.hostsWith(s) {
			p.service(h, s)
			if req.Symptom == diagnose.DBConnectionErrors || req.Symptom == diagnose.APISlow || req.Symptom == diagnose.InstanceWontBoot {
				nodes = append(nodes, h)
			}
		}
	}
	logs := symptomLogs[req.Symptom]
	if req.Symptom == diagnose.DBConnectionErrors {
		logs = slices.Clone(dbServiceNames)
		for _, n := range names {
			for _, s := range d.servicesOf(n) {
				if reOpenStackService.MatchString(s.Name) && !slices.Contains(logs, s.Name) {
					logs = append(logs, s.Name)
				}
			}
		}
	}
	for _, s := range logs {
		for _, h := range d.hostsWith(s) {
			p.log(h, s)
		}
	}

	var addrs []string
	if req.Symptom == diagnose.InstanceUnreachable {
		switch {
		case req.Subject.Kind == diagnose.SubjectIP:
			addrs = []string{req.Subject.Value}
		case subjHost != "":
			addrs = []string{d.hosts.Inventory[subjHost].Address}
		case f.Resource != nil:
			for _, a := range f.Resource.Addresses {
				if !slices.Contains(addrs, a.IP) {
					addrs = append(addrs, a.IP)
				}
			}
			if len(addrs) == 0 {
				f.Notes = append(f.Notes, diagnose.Note{Message: fmt.Sprintf("instance %s has no addresses: nothing to probe on the network", f.Resource.ID), Source: f.Resource.Source})
			}
		}
		addrs = addrs[:min(len(addrs), 4)]
		for _, v := range d.vantageHosts(subjHost) {
			if len(addrs) > 0 {
				p.add(CollectorSpec{Kind: CollectNetwork, Host: v, Addresses: addrs})
			}
			nodes = append(nodes, v)
		}
	}

	// API views first (they answer fast and say the most), then hosts.
	p.first(CollectorSpec{Kind: CollectComponents})
	switch req.Symptom {
	case diagnose.InstanceWontBoot:
		p.first(CollectorSpec{Kind: CollectRelated}, CollectorSpec{Kind: CollectCapacity})
	case diagnose.InstanceUnreachable:
		if f.Resource != nil && f.Resource.Host != "" {
			p.first(CollectorSpec{Kind: CollectRelated})
		}
	case diagnose.VolumeCreateTimeout:
		p.first(CollectorSpec{Kind: CollectRelated})
	case diagnose.DBConnectionErrors:
		p.first(CollectorSpec{Kind: CollectConnects})
	case diagnose.APISlow:
		apis := diagnose.APIs
		if req.Subject.Kind == diagnose.SubjectAPI {
			apis = []string{req.Subject.Value}
		}
		p.first(CollectorSpec{Kind: CollectAPIs, APIs: apis})
	}
	seen := map[string]bool{}
	for _, n := range nodes {
		if !seen[n] && slices.Contains(names, n) {
			seen[n] = true
			p.add(CollectorSpec{Kind: CollectNode, Host: n})
		}
	}
	plan := DiagnosePlan{Facts: f, Collectors: p.specs()}
	if p.droppedLogs > 0 {
		plan.Facts.Notes = append(plan.Facts.Notes, diagnose.Note{Message: fmt.Sprintf("%d more service log(s) not read (at most %d per diagnosis)", p.droppedLogs, maxLogCollectors)})
	}
	return plan, nil
}

// planner collects specs in a stable order: API views, then per host processes, then logs,
// network and nodes.
type planner struct {
	d           *Diagnose
	req         DiagnoseRequest
	api         []CollectorSpec
	procs       []CollectorSpec
	logs        []CollectorSpec
	rest        []CollectorSpec
	droppedLogs int
}

func (p *planner) first(s ...CollectorSpec) { p.api = append(p.api, s...) }
func (p *planner) add(s CollectorSpec)      { p.rest = append(p.rest, s) }

func (p *planner) service(host, name string) {
	sf, ok := p.d.serviceOn(host, name)
	if !ok {
		return
	}
	for i := range p.procs {
		if p.procs[i].Host == host {
			if !slices.ContainsFunc(p.procs[i].Services, func(s ServiceFacts) bool { return s.Name == name }) {
				p.procs[i].Services = append(p.procs[i].Services, sf)
			}
			return
		}
	}
	p.procs = append(p.procs, CollectorSpec{Kind: CollectProcesses, Host: host, Services: []ServiceFacts{sf}})
}

func (p *planner) log(host, name string) {
	sf, ok := p.d.serviceOn(host, name)
	if !ok {
		return
	}
	for _, l := range p.logs {
		if l.Host == host && l.Services[0].Name == name {
			return
		}
	}
	if len(p.logs) >= maxLogCollectors {
		p.droppedLogs++
		return
	}
	p.logs = append(p.logs, CollectorSpec{Kind: CollectLogs, Host: host, Services: []ServiceFacts{sf}})
}

func (p *planner) specs() []CollectorSpec {
	out := slices.Concat(p.api, p.procs, p.logs, p.rest)
	return out
}

func (d *Diagnose) hostNames() []string {
	names := make([]string, 0, len(d.hosts.Inventory))
	for n := range d.hosts.Inventory {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// servicesOf lists a host's services (its roles' services), each with its role.
func (d *Diagnose) servicesOf(host string) []ServiceFacts {
	var out []ServiceFacts
	for _, role := range d.hosts.Inventory[host].Roles {
		for _, s := range d.hosts.Services[role] {
			s.Role = role
			out = append(out, s)
		}
	}
	return out
}

func (d *Diagnose) serviceOn(host, name string) (ServiceFacts, bool) {
	for _, s := range d.servicesOf(host) {
		if s.Name == name {
			s.Log = strings.ReplaceAll(s.Log, "{host}", host)
			return s, true
		}
	}
	return ServiceFacts{}, false
}

// hostsWith lists the inventory hosts whose roles run the service, sorted.
func (d *Diagnose) hostsWith(service string) []string {
	var out []string
	for _, n := range d.hostNames() {
		if _, ok := d.serviceOn(n, service); ok {
			out = append(out, n)
		}
	}
	return out
}

// vantageHosts are where the network is looked at from: the network nodes (role network), else
// the controllers, else every host; never the unreachable host itself.
func (d *Diagnose) vantageHosts(except string) []string {
	for _, role := range []string{"network", "controller"} {
		var out []string
		for _, n := range d.hostNames() {
			if n != except && slices.Contains(d.hosts.Inventory[n].Roles, role) {
				out = append(out, n)
			}
		}
		if len(out) > 0 {
			return out
		}
	}
	return slices.DeleteFunc(d.hostNames(), func(n string) bool { return n == except })
}

// resolve finds the subject's own view: an instance or a volume by ID or name, or the instance
// that holds an address. A subject the cloud does not know is a note, not an error (the machine
// that answers for an address may be none of the cloud's).
func (d *Diagnose) resolve(ctx context.Context, req DiagnoseRequest) (*diagnose.Resource, string, error) {
	cl, err := d.cloud(ctx)
	if err != nil {
		return nil, "authenticate to OpenStack", err
	}
	subj := req.Subject
	if req.Symptom == diagnose.VolumeCreateTimeout {
		if cl.BlockStorage == nil {
			return nil, fmt.Sprintf("no Cinder in the catalog: volume %s cannot be looked up", subj.Value), nil
		}
		if subj.Kind == diagnose.SubjectUUID {
			src := "GET block-storage /volumes/" + subj.Value
			v, err := cl.GetVolume(ctx, subj.Value)
			if openstack.IsNotFound(err) {
				return nil, "Cinder has no volume " + subj.Value, nil
			}
			if err != nil {
				return nil, src, err
			}
			return volumeResource(v, src), "", nil
		}
		src := "GET block-storage /volumes/detail?all_tenants=1&name=" + subj.Value
		vs, err := cl.ListVolumes(ctx, subj.Value, "")
		if err != nil {
			return nil, src, err
		}
		if len(vs) == 0 {
			return nil, fmt.Sprintf("Cinder has no volume named %s (%s)", subj.Value, src), nil
		}
		return volumeResource(vs[0], src), "", nil
	}
	if subj.Kind == diagnose.SubjectUUID {
		src := "GET compute /servers/" + subj.Value
		s, err := cl.GetServerDetail(ctx, subj.Value)
		if openstack.IsNotFound(err) {
			return nil, fmt.Sprintf("Nova has no instance %s", subj.Value), nil
		}
		if err != nil {
			return nil, src, err
		}
		return instanceResource(s, src), "", nil
	}
	q := openstack.ServerQuery{AllTenants: true, Name: subj.Value}
	what := "named"
	if subj.Kind == diagnose.SubjectIP {
		q = openstack.ServerQuery{AllTenants: true, IP: subj.Value}
		what = "with address"
	}
	all, err := cl.FindServers(ctx, q)
	if err != nil {
		return nil, q.URL(), err
	}
	if len(all) == 0 {
		return nil, fmt.Sprintf("Nova knows no instance %s %s (%s)", what, subj.Value, q.URL()), nil
	}
	return instanceResource(all[0], q.URL()), "", nil
}

func instanceResource(s openstack.ServerDetail, src string) *diagnose.Resource {
	r := &diagnose.Resource{Kind: "instance", ID: s.ID, Name: s.Name, Status: s.Status, TaskState: s.TaskState, VMState: s.VMState,
		Host: s.Host, Project: s.ProjectID, Fault: s.Fault, FaultCode: s.FaultCode, FaultAt: s.FaultAt,
		Created: s.Created, Updated: s.Updated, Source: src}
	for _, a := range s.Addresses {
		r.Addresses = append(r.Addresses, diagnose.Address{IP: a.IP, MAC: a.MAC, Network: a.Network})
	}
	return r
}

func volumeResource(v openstack.Volume, src string) *diagnose.Resource {
	return &diagnose.Resource{Kind: "volume", ID: v.ID, Name: v.Name, Status: v.Status, Host: v.Host, Project: v.ProjectID,
		Created: v.Created, Updated: v.Updated, Source: src}
}
