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
