package diagnose

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Evidence is one fact that points at a component (and a node), with how strongly it points
// (0-100) and the command or API call that produced it.
type Evidence struct {
	Component string `json:"component"`
	Node      string `json:"node,omitempty"`
	Weight    int    `json:"weight"`
	Message   string `json:"message"`
	Source    string `json:"source"`
}

// Suspect is a component on a node and the evidence against it, strongest first.
type Suspect struct {
	Component string     `json:"component"`
	Node      string     `json:"node,omitempty"`
	Score     int        `json:"score"`
	Evidence  []Evidence `json:"evidence"`
}

// Blast-radius scopes, narrowest first.
const (
	ScopeInstance   = "one instance"
	ScopeVolume     = "one volume"
	ScopeService    = "one service"
	ScopeHost       = "one host"
	ScopeRack       = "one rack"
	ScopeEverything = "everything"
	ScopeUnknown    = "unknown"
)

// BlastRadius is how far the symptom reaches: how many instances (or volumes), services, hosts
// and projects share it.
type BlastRadius struct {
	Scope     string   `json:"scope"`
	Instances int      `json:"instances"`
	Volumes   int      `json:"volumes,omitempty"`
	Services  int      `json:"services,omitempty"`
	Hosts     int      `json:"hosts"`
	Projects  int      `json:"projects"`
	Racks     []string `json:"racks,omitempty"`
	Detail    string   `json:"detail"`
	Source    string   `json:"source"`
}

// Report is the diagnosis: blast radius, suspects (strongest first), and the context that points
// nowhere in particular (resources that look normal, collectors that could not answer).
type Report struct {
	Symptom  string      `json:"symptom"`
	Subject  Subject     `json:"subject"`
	Since    time.Time   `json:"since"`
	Until    time.Time   `json:"until"`
	Blast    BlastRadius `json:"blast_radius"`
	Suspects []Suspect   `json:"suspects"`
	Context  []Evidence  `json:"context,omitempty"`
}

// Finding is one line of the report, in order.
type Finding struct {
	Severity string `json:"severity"` // critical | warning | info
	Subject  string `json:"subject"`
	Message  string `json:"message"`
	Source   string `json:"source"`
}

// Severity of a piece of evidence by its weight.
func Severity(weight int) string {
	switch {
	case weight >= 70:
		return "critical"
	case weight >= 40:
		return "warning"
	}
	return "info"
}

// Findings flattens the report macro first: the blast radius, then each suspect's evidence
// (strongest suspect first, strongest evidence first), then the context.
func (r Report) Findings() []Finding {
	sev := "info"
	if r.Blast.Scope == ScopeEverything {
		sev = "warning"
	}
	out := []Finding{{Severity: sev, Subject: "blast-radius", Source: r.Blast.Source,
		Message: fmt.Sprintf("blast radius: %s — %s", r.Blast.Scope, r.Blast.Detail)}}
	for i, s := range r.Suspects {
		subj := fmt.Sprintf("suspect %d: %s", i+1, s.Component)
		if s.Node != "" {
			subj += " on " + s.Node
		}
		for _, e := range s.Evidence {
			out = append(out, Finding{Severity: Severity(e.Weight), Subject: subj, Message: e.Message, Source: e.Source})
		}
	}
	for _, e := range r.Context {
		subj := "context: " + e.Component
		if e.Node != "" {
			subj += " on " + e.Node
		}
		out = append(out, Finding{Severity: Severity(min(e.Weight, 39)), Subject: subj, Message: e.Message, Source: e.Source})
	}
	return out
}

// Evidence weights: how strongly each kind of fact points. Direct observations of the fault
// (an address answering from two machines, the database process down, the instance's own fault)
// outrank the circumstances (load, memory, disk) that are so often blamed first.
const (
	wDuplicate     = 100
	wCoreDown      = 90
	wRefused       = 85
	wNotRunning    = 85
	wFault         = 80
	wComputesGone  = 85
	wServiceDown   = 70
	wNoRoom        = 70
	wNeighMismatch = 70
	wNoValidHost   = 65
	wIntermittent  = 55
	wClassFull     = 55
	wLogDB         = 50
	wNoARP         = 50
	wAPISlow       = 50
	wOtherDown     = 45
	wNoPing        = 45
	wLogAMQP       = 45
	wFSFull        = 45
	wMemLow        = 40
	wLoad          = 35
	wLogTimeout    = 30
	wDiskBusy      = 25
	wLogError      = 20
	wContext       = 10
	wBlind         = 5
)

// coreServices are the services a symptom depends on first: one of them down is the strongest
// evidence short of the fault itself.
var coreServices = map[string][]string{
	DBConnectionErrors:  {"mariadb", "mysql", "mysqld", "galera", "haproxy"},
	InstanceWontBoot:    {"nova-scheduler", "nova-conductor", "placement-api", "nova-api", "rabbitmq-server", "mariadb"},
	InstanceUnreachable: {"nova-compute", "neutron-server", "neutron-openvswitch-agent", "neutron-linuxbridge-agent", "neutron-dhcp-agent", "neutron-l3-agent", "openvswitch-switch"},
	VolumeCreateTimeout: {"cinder-api", "cinder-scheduler", "cinder-volume", "rabbitmq-server", "mariadb"},
	APISlow:             {"keystone", "memcached", "mariadb", "nova-api", "glance-api", "placement-api", "neutron-server", "cinder-api", "swift-proxy"},
}

var dbServices = coreServices[DBConnectionErrors][:4]

type analysis struct {
	f        Facts
	evidence []Evidence
	context  []Evidence
}

func (a *analysis) add(e Evidence)  { a.evidence = append(a.evidence, e) }
func (a *analysis) note(e Evidence) { a.context = append(a.context, e) }

// Analyze turns facts into the report. It is deterministic (no map is ranged over), so the
// workflow may run it.
func Analyze(f Facts) Report {
	a := &analysis{f: f}
	a.resource()
	a.processes()
	a.services()
	a.connects()
	a.network()
	a.capacity()
	a.apis()
	a.logs()
	a.nodes()
	for _, x := range f.Failures {
		a.note(Evidence{Component: "collector " + x.Collector, Weight: wBlind, Source: x.Source,
			Message: fmt.Sprintf("could not collect %s, so this part is blind: %s", x.Collector, x.Error)})
	}
	for _, n := range f.Notes {
		a.note(Evidence{Component: "collection", Weight: wContext, Message: n.Message, Source: n.Source})
	}
	return Report{Symptom: f.Symptom, Subject: f.Subject, Since: f.Since, Until: f.Until,
		Blast: a.blastRadius(), Suspects: group(a.evidence), Context: a.context}
}

// group gathers evidence by component and node; a suspect's score is its strongest evidence plus
// a little for each further piece (at most 6: many weak hints never outrank one strong fact).
func group(ev []Evidence) []Suspect {
	var out []Suspect
	for _, e := range ev {
		i := slices.IndexFunc(out, func(s Suspect) bool { return s.Component == e.Component && s.Node == e.Node })
		if i < 0 {
			out = append(out, Suspect{Component: e.Component, Node: e.Node})
			i = len(out) - 1
		}
		out[i].Evidence = append(out[i].Evidence, e)
	}
	for i := range out {
		s := &out[i]
		slices.SortStableFunc(s.Evidence, func(a, b Evidence) int {
			return cmp.Or(cmp.Compare(b.Weight, a.Weight), cmp.Compare(a.Message, b.Message))
		})
		s.Score = min(100, s.Evidence[0].Weight+min(6, 2*(len(s.Evidence)-1)))
	}
	slices.SortStableFunc(out, func(a, b Suspect) int {
		return cmp.Or(cmp.Compare(b.Score, a.Score), cmp.Compare(b.Evidence[0].Weight, a.Evidence[0].Weight),
			cmp.Compare(a.Component, b.Component), cmp.Compare(a.Node, b.Node))
	})
	return out
}

func (a *analysis) core(service string) bool {
	return slices.Contains(coreServices[a.f.Symptom], service)
}

// dbNode is the host of the database process, if a collector saw one.
func (a *analysis) dbComponent() (string, string) {
	for _, p := range a.f.Processes {
		if slices.Contains(dbServices, p.Service) {
			return p.Service, p.Host
		}
	}
	for _, c := range a.f.Connects {
		if slices.Contains(dbServices, c.Component) {
			return c.Component, a.hostOfTarget(c.Target)
		}
	}
	return "database", ""
}

func (a *analysis) hostOfTarget(target string) string {
	addr := target
	if i := strings.LastIndexByte(target, ':'); i >= 0 {
		addr = strings.Trim(target[:i], "[]")
	}
	for _, h := range a.f.Hosts {
		if h.Address == addr || h.Name == addr {
			return h.Name
		}
	}
	return ""
}

func (a *analysis) rackOf(host string) string {
	for _, h := range a.f.Hosts {
		if h.Name == host {
			return h.Rack
		}
	}
	return ""
}

func (a *analysis) resource() {
	r := a.f.Resource
	if r == nil {
		return
	}
	name := r.Kind + " " + label(r.Name, r.ID)
	switch {
	case r.Kind == "instance" && r.Status == "ERROR":
		comp, node := "nova-conductor", ""
		switch {
		case strings.Contains(strings.ToLower(r.Fault), "no valid host"):
			comp = "nova-scheduler"
		case r.Host != "":
			comp, node = "nova-compute", r.Host
		}
		fault := r.Fault
		if fault == "" {
			fault = "no fault recorded"
		}
		a.add(Evidence{Component: comp, Node: node, Weight: wFault, Source: r.Source,
			Message: fmt.Sprintf("%s is ERROR (task %s, host %s): fault %q (code %d) at %s", name, dash(r.TaskState), dash(r.Host), fault, r.FaultCode, stamp(r.FaultAt))})
	case r.Kind == "instance" && a.f.Symptom == InstanceUnreachable && r.Status != "ACTIVE":
		a.add(Evidence{Component: "instance", Node: r.Host, Weight: wNotRunning, Source: r.Source,
			Message: fmt.Sprintf("%s is %s (vm state %s, task %s): a guest that does not run answers nothing", name, r.Status, dash(r.VMState), dash(r.TaskState))})
	case r.Kind == "instance" && r.Status == "BUILD":
		a.add(Evidence{Component: "nova-conductor", Weight: wLogTimeout, Source: r.Source,
			Message: fmt.Sprintf("%s is still BUILD (task %s) since %s", name, dash(r.TaskState), stamp(r.Created))})
	case r.Kind == "volume" && r.Status != "available" && r.Status != "in-use":
		a.add(Evidence{Component: "cinder-volume", Node: r.Host, Weight: wFault, Source: r.Source,
			Message: fmt.Sprintf("%s is %s (host %s) since %s", name, r.Status, dash(r.Host), stamp(r.Updated))})
	default:
		a.note(Evidence{Component: r.Kind, Node: r.Host, Weight: wContext, Source: r.Source,
			Message: fmt.Sprintf("%s is %s (vm state %s, task %s, host %s)", name, r.Status, dash(r.VMState), dash(r.TaskState), dash(r.Host))})
	}
	if r.TaskState != "" && r.Status != "BUILD" && r.Status != "ERROR" {
		a.add(Evidence{Component: "instance", Node: r.Host, Weight: wLogTimeout, Source: r.Source,
			Message: fmt.Sprintf("%s has task state %s: an operation is under way or stuck", name, r.TaskState)})
	}
}

func (a *analysis) processes() {
	for _, p := range a.f.Processes {
		if p.Running {
			if a.core(p.Service) {
				a.note(Evidence{Component: p.Service, Node: p.Host, Weight: wContext, Source: p.Source, Message: fmt.Sprintf("%s runs on %s", p.Service, p.Host)})
			}
			continue
		}
		w := wOtherDown
		if a.core(p.Service) {
			w = wCoreDown
		}
		a.add(Evidence{Component: p.Service, Node: p.Host, Weight: w, Source: p.Source,
			Message: fmt.Sprintf("%s is not running on %s: %s", p.Service, p.Host, dash(p.Output))})
	}
}

func (a *analysis) services() {
	var computes, computesUp int
	src := ""
	for _, s := range a.f.Services {
		if s.Binary == "nova-compute" {
			computes++
			src = s.Source
			if s.State == "up" && s.Status == "enabled" {
				computesUp++
			}
		}
		if s.State != "down" {
			if s.Status == "disabled" {
				a.note(Evidence{Component: s.Binary, Node: s.Host, Weight: wContext, Source: s.Source,
					Message: fmt.Sprintf("%s on %s is disabled: %s", s.Binary, s.Host, dash(s.Reason))})
			}
			continue
		}
		w := wOtherDown
		if a.core(s.Binary) {
			w = wServiceDown
		}
		if r := a.f.Resource; r != nil && r.Host == s.Host && s.Binary == "nova-compute" {
			w = wServiceDown
		}
		why := ""
		if s.Forced {
			why = " (forced down)"
		}
		a.add(Evidence{Component: s.Binary, Node: s.Host, Weight: w, Source: s.Source,
			Message: fmt.Sprintf("%s %s on %s is down%s, last report %s", s.Component, s.Binary, s.Host, why, stamp(s.Updated))})
	}
	if computes > 0 && computesUp == 0 && (a.f.Symptom == InstanceWontBoot) {
		a.add(Evidence{Component: "nova-compute", Weight: wComputesGone, Source: src,
			Message: fmt.Sprintf("none of %d nova-compute services is up and enabled: nothing can take an instance", computes)})
	}
}

func (a *analysis) connects() {
	for _, c := range a.f.Connects {
		node := a.hostOfTarget(c.Target)
		if c.OK {
			a.note(Evidence{Component: c.Component, Node: node, Weight: wContext, Source: c.Source,
				Message: fmt.Sprintf("%s at %s accepts connections (%s)", c.Component, c.Target, c.Took.Round(time.Millisecond))})
			continue
		}
		w := wIntermittent
		if strings.Contains(c.Error, "refused") {
			w = wRefused
		}
		a.add(Evidence{Component: c.Component, Node: node, Weight: w, Source: c.Source,
			Message: fmt.Sprintf("connecting to %s at %s failed: %s", c.Component, c.Target, c.Error)})
	}
}

func (a *analysis) network() {
	for _, p := range a.f.Network {
		where := p.Host
		if p.Netns != "" {
			where += " netns " + p.Netns
		}
		if p.Interface != "" {
			where += " dev " + p.Interface
		}
		src := strings.Join(p.Sources, "; ")
		arp, ping, neigh := or(p.ARPSource, src), or(p.PingSource, src), or(p.NeighSource, src)
		if p.Error != "" {
			a.note(Evidence{Component: "network", Node: p.Host, Weight: wBlind, Source: src, Message: fmt.Sprintf("probing %s from %s: %s", p.Address, where, p.Error)})
		}
		if len(p.MACs) >= 2 {
			var who []string
			for _, m := range p.MACs {
				switch k := p.Known[m]; {
				case k != "":
					who = append(who, m+" ("+k+")")
				case p.NeutronAsked:
					who = append(who, m+" (unknown to Neutron)")
				default:
					who = append(who, m)
				}
			}
			a.add(Evidence{Component: "duplicate address " + p.Address, Node: p.Host, Weight: wDuplicate, Source: arp,
				Message: fmt.Sprintf("%s answers ARP from %d MAC addresses on %s: %s — two machines hold the address, and each peer talks to whichever answered last, so it works only sometimes (%d replies to %d requests)",
					p.Address, len(p.MACs), where, strings.Join(who, " and "), p.ARPReplies, p.ARPSent)})
		}
		if p.OnLink && len(p.MACs) == 0 && p.ARPSent > 0 {
			a.add(Evidence{Component: "address " + p.Address, Node: p.Host, Weight: wNoARP, Source: arp,
				Message: fmt.Sprintf("nothing answers ARP for %s on %s (%d requests): the machine is down or not on this segment", p.Address, where, p.ARPSent)})
		}
		if len(p.MACs) == 1 && p.NeutronAsked && len(p.Known) > 0 && p.Known[p.MACs[0]] == "" {
			a.add(Evidence{Component: "duplicate address " + p.Address, Node: p.Host, Weight: wNeighMismatch, Source: arp,
				Message: fmt.Sprintf("%s answers ARP on %s from %s, which is not the MAC Neutron gave it: another machine took the address", p.Address, where, p.MACs[0])})
		}
		if p.NeighMAC != "" && len(p.MACs) == 1 && p.NeighMAC != p.MACs[0] {
			a.add(Evidence{Component: "duplicate address " + p.Address, Node: p.Host, Weight: wNeighMismatch, Source: neigh + "; " + arp,
				Message: fmt.Sprintf("the neighbour table on %s has %s for %s but ARP answered from %s: the address moved between machines", where, p.NeighMAC, p.Address, p.MACs[0])})
		}
		switch {
		case p.PingSent > 0 && p.PingRecv == 0:
			a.add(Evidence{Component: "address " + p.Address, Node: p.Host, Weight: wNoPing, Source: ping,
				Message: fmt.Sprintf("no ping reply from %s on %s (%d sent)", p.Address, where, p.PingSent)})
		case p.PingSent > 0 && p.PingRecv < p.PingSent:
			a.add(Evidence{Component: "address " + p.Address, Node: p.Host, Weight: wIntermittent, Source: ping,
				Message: fmt.Sprintf("%s answers ping only sometimes from %s: %d of %d", p.Address, where, p.PingRecv, p.PingSent)})
		case p.PingSent > 0:
			a.note(Evidence{Component: "address " + p.Address, Node: p.Host, Weight: wContext, Source: ping,
				Message: fmt.Sprintf("%s answers ping from %s: %d of %d", p.Address, where, p.PingRecv, p.PingSent)})
		}
		if !p.OnLink && p.Error == "" {
			a.note(Evidence{Component: "network", Node: p.Host, Weight: wContext, Source: src,
				Message: fmt.Sprintf("%s is not on a segment of %s: ARP cannot be seen from there, only reachability", p.Address, where)})
		}
		if len(p.Holders) > 0 {
			a.note(Evidence{Component: "network", Node: p.Host, Weight: wContext, Source: src,
				Message: fmt.Sprintf("on %s, namespace(s) %s hold %s themselves", p.Host, strings.Join(p.Holders, ", "), p.Address)})
		}
	}
}

func (a *analysis) capacity() {
	c := a.f.Capacity
	if c == nil {
		return
	}
	var parts []string
	full := false
	for _, u := range c.Classes {
		pct := 0.0
		if u.Total > 0 {
			pct = u.Used / u.Total * 100
		}
		parts = append(parts, fmt.Sprintf("%s %.0f/%.0f (%.0f%%)", u.Class, u.Used, u.Total, pct))
		if pct >= 90 {
			full = true
			a.add(Evidence{Component: "capacity", Weight: wClassFull, Source: c.Source,
				Message: fmt.Sprintf("%s is %.0f%% allocated (%.0f of %.0f)", u.Class, pct, u.Used, u.Total)})
		}
	}
	pic := fmt.Sprintf("capacity: %s; %d of %d compute services up and enabled; largest free: %s", strings.Join(parts, ", "), c.ComputesUp, c.Computes, dash(c.LargestFree))
	if c.FlavorNeeds != "" && !c.FitsSomewhere {
		a.add(Evidence{Component: "capacity", Weight: wNoRoom, Source: c.Source,
			Message: fmt.Sprintf("no compute has room for %s — %s", c.FlavorNeeds, pic)})
		return
	}
	if !full {
		if c.FlavorNeeds != "" {
			pic = fmt.Sprintf("%s fits (%s)", c.FlavorNeeds, pic)
		}
		a.note(Evidence{Component: "capacity", Weight: wContext, Source: c.Source, Message: pic})
	}
}

func (a *analysis) apis() {
	if len(a.f.APIs) == 0 {
		return
	}
	const slow = 2 * time.Second
	nslow := 0
	for _, t := range a.f.APIs {
		bad := t.Error != "" || t.Status >= 500 || t.Took >= slow
		if !bad {
			a.note(Evidence{Component: apiService(t.API), Weight: wContext, Source: t.Source,
				Message: fmt.Sprintf("%s answered HTTP %d in %s", t.API, t.Status, t.Took.Round(time.Millisecond))})
			continue
		}
		nslow++
		msg := fmt.Sprintf("%s took %s (HTTP %d)", t.API, t.Took.Round(time.Millisecond), t.Status)
		if t.Error != "" {
			msg = fmt.Sprintf("%s failed after %s: %s", t.API, t.Took.Round(time.Millisecond), t.Error)
		}
		a.add(Evidence{Component: apiService(t.API), Weight: wAPISlow, Source: t.Source, Message: msg})
	}
	if nslow >= 2 && nslow == len(a.f.APIs) {
		a.add(Evidence{Component: "keystone", Weight: wAPISlow + 5, Source: "the API timings above",
			Message: fmt.Sprintf("all %d APIs are slow: look at what they share — Keystone's token validation, memcached, the database, the controller's load", nslow)})
	}
}

func apiService(api string) string {
	switch api {
	case "identity":
		return "keystone"
	case "compute":
		return "nova-api"
	case "image":
		return "glance-api"
	case "placement":
		return "placement-api"
	case "network":
		return "neutron-server"
	case "block-storage":
		return "cinder-api"
	case "object-store":
		return "swift-proxy"
	}
	return api
}

func (a *analysis) logs() {
	dbComp, dbNode := a.dbComponent()
	for _, ex := range a.f.Logs {
		who := ex.Service + " on " + ex.Host
		for _, k := range ex.Kinds {
			span := fmt.Sprintf("%d line(s) between %s and %s", k.Count, stamp(k.First), stamp(k.Last))
			bonus := min(10, k.Count/2) // more lines corroborate, a little
			switch k.Kind {
			case LogDB:
				if slices.Contains(dbServices, ex.Service) {
					a.add(Evidence{Component: ex.Service, Node: ex.Host, Weight: wLogDB, Source: ex.Source,
						Message: fmt.Sprintf("%s logged connection errors itself, %s, newest: %s", who, span, k.Sample)})
					continue
				}
				a.add(Evidence{Component: dbComp, Node: dbNode, Weight: wLogDB + bonus, Source: ex.Source,
					Message: fmt.Sprintf("%s logged database connection errors, %s, newest: %s", who, span, k.Sample)})
			case LogNoValidHost:
				a.add(Evidence{Component: "nova-scheduler", Weight: wNoValidHost, Source: ex.Source,
					Message: fmt.Sprintf("%s: the scheduler found no valid host, %s, newest: %s", who, span, k.Sample)})
			case LogAMQP:
				a.add(Evidence{Component: "rabbitmq-server", Weight: wLogAMQP + bonus/3, Source: ex.Source,
					Message: fmt.Sprintf("%s logged message-queue errors or RPC timeouts, %s, newest: %s", who, span, k.Sample)})
			case LogTimeout:
				a.add(Evidence{Component: ex.Service, Node: ex.Host, Weight: wLogTimeout, Source: ex.Source,
					Message: fmt.Sprintf("%s logged timeouts, %s, newest: %s", who, span, k.Sample)})
			case LogError:
				a.add(Evidence{Component: ex.Service, Node: ex.Host, Weight: wLogError + bonus/2, Source: ex.Source,
					Message: fmt.Sprintf("%s logged errors, %s, newest: %s", who, span, k.Sample)})
			}
		}
		if len(ex.Kinds) == 0 {
			a.note(Evidence{Component: ex.Service, Node: ex.Host, Weight: wContext, Source: ex.Source,
				Message: fmt.Sprintf("%s: nothing relevant in %d line(s) read%s", who, ex.Scanned, reach(ex, a.f.Since))})
		}
	}
}

func reach(ex LogExcerpt, since time.Time) string {
	if !ex.Oldest.IsZero() && ex.Oldest.After(since) {
		return fmt.Sprintf(" (they reach back to %s only)", stamp(ex.Oldest))
	}
	return ""
}

func (a *analysis) nodes() {
	dbSvc, dbNode := a.dbComponent()
	_ = dbSvc
	for _, n := range a.f.Nodes {
		src := strings.Join(n.Sources, "; ")
		srcLoad, srcMem, srcIO, srcDF := pick(n.Sources, src, "loadavg", "nproc"), pick(n.Sources, src, "meminfo"), pick(n.Sources, src, "vmstat"), pick(n.Sources, src, "df ")
		var normal []string
		if n.CPUs > 0 {
			per := n.Load1 / float64(n.CPUs)
			desc := fmt.Sprintf("load %.2f %.2f %.2f on %d CPU(s)", n.Load1, n.Load5, n.Load15, n.CPUs)
			if per >= 2 {
				a.add(Evidence{Component: "node", Node: n.Host, Weight: wLoad, Source: srcLoad, Message: n.Host + ": " + desc + ": more runnable work than CPUs"})
			} else {
				normal = append(normal, desc)
			}
		}
		if n.MemTotal > 0 {
			pct := float64(n.MemAvail) / float64(n.MemTotal) * 100
			desc := fmt.Sprintf("%.0f%% of %s memory available", pct, human(n.MemTotal))
			switch {
			case pct < 5:
				a.add(Evidence{Component: "node", Node: n.Host, Weight: wMemLow, Source: srcMem, Message: n.Host + ": only " + desc})
			case pct < 10:
				a.add(Evidence{Component: "node", Node: n.Host, Weight: wMemLow - 15, Source: srcMem, Message: n.Host + ": only " + desc})
			default:
				normal = append(normal, desc)
			}
			if n.SwapTot > 0 && float64(n.SwapTot-n.SwapFree)/float64(n.SwapTot) > 0.5 {
				a.add(Evidence{Component: "node", Node: n.Host, Weight: wDiskBusy - 5, Source: srcMem,
					Message: fmt.Sprintf("%s: %s of %s swap in use", n.Host, human(n.SwapTot-n.SwapFree), human(n.SwapTot))})
			}
		}
		busy := []string{}
		for _, d := range n.Disks {
			if d.InFlight >= 8 {
				busy = append(busy, fmt.Sprintf("%s (%d IOs in flight)", d.Name, d.InFlight))
			}
		}
		if len(busy) > 0 {
			a.add(Evidence{Component: "node", Node: n.Host, Weight: wDiskBusy, Source: srcIO, Message: n.Host + ": disks busy: " + strings.Join(busy, ", ")})
		} else if len(n.Disks) > 0 {
			normal = append(normal, fmt.Sprintf("%d disk(s) with no IO queue", len(n.Disks)))
		}
		fullest := ""
		maxPct := 0.0
		for _, fs := range n.FS {
			pct := float64(fs.Used) / float64(fs.Size) * 100
			if pct > maxPct {
				maxPct, fullest = pct, fs.Mount
			}
			if pct >= 90 {
				w := wFSFull - 20
				if pct >= 95 {
					w = wFSFull
				}
				if n.Host == dbNode && a.f.Symptom == DBConnectionErrors {
					w += 15
				}
				a.add(Evidence{Component: "node", Node: n.Host, Weight: w, Source: srcDF,
					Message: fmt.Sprintf("%s: %s is %.0f%% full (%s of %s)", n.Host, fs.Mount, pct, human(fs.Used), human(fs.Size))})
			}
		}
		for _, e := range n.FSErrors {
			a.add(Evidence{Component: "node", Node: n.Host, Weight: wFSFull, Source: srcDF, Message: n.Host + ": df could not read a file system: " + e})
		}
		if fullest != "" && maxPct < 90 {
			normal = append(normal, fmt.Sprintf("fullest file system %s at %.0f%%", fullest, maxPct))
		}
		if len(normal) > 0 {
			a.note(Evidence{Component: "node", Node: n.Host, Weight: wContext, Source: src, Message: n.Host + ": " + strings.Join(normal, ", ")})
		}
	}
}

func (a *analysis) blastRadius() BlastRadius {
	f := a.f
	switch f.Symptom {
	case InstanceWontBoot:
		return a.instancesRadius(true)
	case InstanceUnreachable:
		for _, p := range f.Network {
			if len(p.MACs) >= 2 {
				return BlastRadius{Scope: ScopeInstance, Instances: 1, Hosts: 1, Source: or(p.ARPSource, strings.Join(p.Sources, "; ")),
					Detail: fmt.Sprintf("one address, %s, held by %d machines; nothing else shares the symptom from what was probed", p.Address, len(p.MACs))}
			}
		}
		if r := f.Resource; r != nil && r.Host != "" {
			for _, s := range f.Services {
				if s.Binary == "nova-compute" && s.Host == r.Host && s.State == "down" {
					br := a.instancesRadius(false)
					br.Scope = ScopeHost
					br.Detail = fmt.Sprintf("the instance's host %s is down: every instance on it (%d) is likely unreachable; %s", r.Host, br.Instances, br.Detail)
					return br
				}
			}
		}
		return a.instancesRadius(false)
	case DBConnectionErrors:
		return a.servicesRadius(LogDB, "database connection errors", dbServices)
	case VolumeCreateTimeout:
		br := a.instancesRadius(true)
		br.Volumes, br.Instances = br.Instances, 0
		if br.Scope == ScopeInstance {
			br.Scope = ScopeVolume
		}
		return br
	case APISlow:
		var slow []string
		for _, t := range f.APIs {
			if t.Error != "" || t.Status >= 500 || t.Took >= 2*time.Second {
				slow = append(slow, t.API)
			}
		}
		br := BlastRadius{Services: len(slow), Source: "timed GETs to each API", Hosts: 1}
		switch {
		case len(f.APIs) == 0:
			br.Scope, br.Detail = ScopeUnknown, "no API could be timed"
		case len(slow) == 0:
			br.Scope, br.Detail = ScopeService, fmt.Sprintf("none of %d APIs is slow now", len(f.APIs))
		case len(slow) == len(f.APIs) && len(slow) > 1:
			br.Scope, br.Detail = ScopeEverything, fmt.Sprintf("all %d APIs timed are slow: %s", len(slow), strings.Join(slow, ", "))
		default:
			br.Scope, br.Detail = ScopeService, fmt.Sprintf("%d of %d APIs slow: %s", len(slow), len(f.APIs), strings.Join(slow, ", "))
		}
		return br
	}
	return BlastRadius{Scope: ScopeUnknown, Detail: "unknown symptom"}
}

// instancesRadius counts the subject and the related resources: with sameFault, only those whose
// fault (or status) matches the subject's.
func (a *analysis) instancesRadius(sameFault bool) BlastRadius {
	f := a.f
	var set []Resource
	src := ""
	if f.Resource != nil {
		set = append(set, *f.Resource)
		src = f.Resource.Source
	}
	key := ""
	if f.Resource != nil {
		key = faultKey(*f.Resource)
	}
	for _, r := range f.Related {
		if f.Resource != nil && r.ID == f.Resource.ID {
			continue
		}
		if sameFault && key != "" && faultKey(r) != key {
			continue
		}
		set = append(set, r)
		if src == "" {
			src = r.Source
		}
	}
	var hosts, projects, racks []string
	noHost := 0
	for _, r := range set {
		if r.Host == "" {
			noHost++
		} else if !slices.Contains(hosts, r.Host) {
			hosts = append(hosts, r.Host)
			if rk := a.rackOf(r.Host); rk != "" && !slices.Contains(racks, rk) {
				racks = append(racks, rk)
			}
		}
		if r.Project != "" && !slices.Contains(projects, r.Project) {
			projects = append(projects, r.Project)
		}
	}
	slices.Sort(hosts)
	slices.Sort(racks)
	br := BlastRadius{Instances: len(set), Hosts: len(hosts), Projects: len(projects), Racks: racks, Source: src}
	what := "instance(s)"
	if f.Symptom == VolumeCreateTimeout {
		what = "volume(s)"
	}
	like := ""
	if sameFault && key != "" {
		like = fmt.Sprintf(" with the same fault (%s)", key)
	}
	var where string
	switch {
	case len(hosts) == 0 && noHost > 0:
		where = "none placed on a host"
	default:
		where = fmt.Sprintf("on %d host(s) (%s)", len(hosts), strings.Join(hosts, ", "))
		if noHost > 0 {
			where += fmt.Sprintf(", %d never placed on a host", noHost)
		}
	}
	br.Detail = fmt.Sprintf("%d %s%s since %s, %s, in %d project(s)", len(set), what, like, stamp(f.Since), where, len(projects))
	switch {
	case len(set) == 0:
		br.Scope, br.Detail = ScopeUnknown, "the subject was not found and nothing else shows the symptom"
	case len(set) == 1:
		br.Scope = ScopeInstance
	case len(hosts) == 1 && noHost == 0:
		br.Scope = ScopeHost
	case len(racks) == 1 && len(hosts) > 1 && noHost == 0 && len(racks) > 0 && a.allRacked(hosts):
		br.Scope = ScopeRack
	default:
		br.Scope = ScopeEverything
	}
	return br
}

func (a *analysis) allRacked(hosts []string) bool {
	for _, h := range hosts {
		if a.rackOf(h) == "" {
			return false
		}
	}
	return true
}

// faultKey groups faults: "no valid host" however worded, else the fault's first words, else the
// status.
func faultKey(r Resource) string {
	l := strings.ToLower(r.Fault)
	switch {
	case strings.Contains(l, "no valid host"):
		return "no valid host"
	case l != "":
		w := strings.Fields(l)
		return strings.Join(w[:min(6, len(w))], " ")
	}
	return strings.ToLower(r.Status)
}

// servicesRadius counts the services whose logs show kind; a core service down or refusing
// connections makes it everything that depends on it.
func (a *analysis) servicesRadius(kind, what string, core []string) BlastRadius {
	f := a.f
	var svcs, hosts []string
	src := ""
	for _, ex := range f.Logs {
		if _, ok := ex.Count(kind); !ok {
			continue
		}
		id := ex.Service + "@" + ex.Host
		if !slices.Contains(svcs, id) {
			svcs = append(svcs, id)
		}
		if !slices.Contains(hosts, ex.Host) {
			hosts = append(hosts, ex.Host)
		}
		if src == "" {
			src = "log lines: " + ex.Source
		}
	}
	slices.Sort(svcs)
	br := BlastRadius{Services: len(svcs), Hosts: len(hosts), Source: src,
		Detail: fmt.Sprintf("%d service(s) on %d host(s) logged %s since %s: %s", len(svcs), len(hosts), what, stamp(f.Since), dashList(svcs))}
	down := ""
	for _, p := range f.Processes {
		if !p.Running && slices.Contains(core, p.Service) {
			down, br.Source = fmt.Sprintf("%s is not running on %s", p.Service, p.Host), p.Source
		}
	}
	for _, c := range f.Connects {
		if !c.OK && slices.Contains(core, c.Component) && down == "" {
			down, br.Source = fmt.Sprintf("%s at %s refuses or drops connections", c.Component, c.Target), c.Source
		}
	}
	switch {
	case down != "":
		br.Scope = ScopeEverything
		br.Detail = down + ": every service that uses it is affected; " + br.Detail
	case len(svcs) == 0:
		br.Scope = ScopeUnknown
	case len(svcs) == 1:
		br.Scope = ScopeService
	case len(hosts) == 1:
		br.Scope = ScopeHost
	default:
		br.Scope = ScopeEverything
	}
	return br
}

func label(name, id string) string {
	switch {
	case name != "" && id != "":
		return name + " (" + id + ")"
	case name != "":
		return name
	}
	return id
}

// pick joins the sources that contain one of the words (all of them when none does).
func pick(sources []string, all string, words ...string) string {
	var out []string
	for _, s := range sources {
		for _, w := range words {
			if strings.Contains(s, w) {
				out = append(out, s)
				break
			}
		}
	}
	if len(out) == 0 {
		return all
	}
	return strings.Join(out, "; ")
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func dashList(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func human(b int64) string {
	const unit = 1024
	if b < unit {
		return fmt.Sprintf("%d B", b)
	}
	div, exp := int64(unit), 0
	for n := b / unit; n >= unit; n /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(b)/float64(div), "KMGTPE"[exp])
}
