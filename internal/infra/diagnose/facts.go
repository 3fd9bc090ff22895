package diagnose

import "time"

// Facts is everything the collectors found. Each collector fills its part; the workflow appends
// them in a fixed order, so the analysis sees the same facts on replay. Every fact carries its
// Source: the command (with the host) or the API call that produced it.
type Facts struct {
	Symptom string    `json:"symptom"`
	Subject Subject   `json:"subject"`
	Since   time.Time `json:"since"`
	Until   time.Time `json:"until"`

	// Resource is the subject's own view (an instance or volume); nil when the subject is none.
	Resource *Resource `json:"resource,omitempty"`
	// Related are other resources that show the same symptom (instances in ERROR, volumes stuck),
	// or, for a host, the instances on it: the blast radius is counted from them.
	Related   []Resource   `json:"related,omitempty"`
	Services  []Service    `json:"services,omitempty"`
	Processes []Process    `json:"processes,omitempty"`
	Connects  []Connect    `json:"connects,omitempty"`
	APIs      []APITiming  `json:"apis,omitempty"`
	Nodes     []Node       `json:"nodes,omitempty"`
	Logs      []LogExcerpt `json:"logs,omitempty"`
	Network   []NetProbe   `json:"network,omitempty"`
	Capacity  *Capacity    `json:"capacity,omitempty"`
	// Hosts is the inventory (name, rack, roles), for "one rack" and for naming nodes.
	Hosts []HostInfo `json:"hosts,omitempty"`
	// Failures are collectors that could not answer: a blind spot, reported, never a stall.
	Failures []Failure `json:"failures,omitempty"`
	// Notes are facts of the collection itself ("no Cinder in the catalog").
	Notes []Note `json:"notes,omitempty"`
}

// Merge appends other's parts to f (scalars: f's win when set).
func (f *Facts) Merge(o Facts) {
	if f.Resource == nil {
		f.Resource = o.Resource
	}
	if f.Capacity == nil {
		f.Capacity = o.Capacity
	}
	f.Related = append(f.Related, o.Related...)
	f.Services = append(f.Services, o.Services...)
	f.Processes = append(f.Processes, o.Processes...)
	f.Connects = append(f.Connects, o.Connects...)
	f.APIs = append(f.APIs, o.APIs...)
	f.Nodes = append(f.Nodes, o.Nodes...)
	f.Logs = append(f.Logs, o.Logs...)
	f.Network = append(f.Network, o.Network...)
	f.Hosts = append(f.Hosts, o.Hosts...)
	f.Failures = append(f.Failures, o.Failures...)
	f.Notes = append(f.Notes, o.Notes...)
}

// Resource is an instance or a volume as its API shows it.
type Resource struct {
	Kind      string    `json:"kind"` // instance | volume
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Status    string    `json:"status"`
	TaskState string    `json:"task_state,omitempty"`
	VMState   string    `json:"vm_state,omitempty"`
	Host      string    `json:"host,omitempty"`
	Project   string    `json:"project,omitempty"`
	Fault     string    `json:"fault,omitempty"`
	FaultCode int       `json:"fault_code,omitempty"`
	FaultAt   time.Time `json:"fault_at,omitempty"`
	Addresses []Address `json:"addresses,omitempty"`
	Created   time.Time `json:"created,omitempty"`
	Updated   time.Time `json:"updated,omitempty"`
	Source    string    `json:"source"`
}

// Address is one address of an instance (or a Neutron port).
type Address struct {
	IP      string `json:"ip"`
	MAC     string `json:"mac,omitempty"`
	Network string `json:"network,omitempty"`
	Port    string `json:"port,omitempty"`
	Owner   string `json:"owner,omitempty"` // device (instance) the port belongs to
}

// Service is a component's own state: a Nova or Cinder service, a Neutron agent.
type Service struct {
	Component string    `json:"component"` // nova | cinder | neutron
	Binary    string    `json:"binary"`
	Host      string    `json:"host"`
	State     string    `json:"state"`  // up | down
	Status    string    `json:"status"` // enabled | disabled
	Reason    string    `json:"reason,omitempty"`
	Forced    bool      `json:"forced_down,omitempty"`
	Updated   time.Time `json:"updated,omitempty"`
	Source    string    `json:"source"`
}

// Process is whether a service's process runs on a host (service_status).
type Process struct {
	Host    string `json:"host"`
	Service string `json:"service"`
	Running bool   `json:"running"`
	Output  string `json:"output,omitempty"`
	Source  string `json:"source"`
}

// Connect is a TCP connection the worker tried (the database, the message queue).
type Connect struct {
	Component string        `json:"component"` // mariadb, rabbitmq...
	Target    string        `json:"target"`    // host:port
	OK        bool          `json:"ok"`
	Error     string        `json:"error,omitempty"` // "connection refused", "i/o timeout"...
	Took      time.Duration `json:"took"`
	Source    string        `json:"source"`
}

// APITiming is one timed read-only request to an API.
type APITiming struct {
	API    string        `json:"api"`
	URL    string        `json:"url"`
	Status int           `json:"status,omitempty"`
	Took   time.Duration `json:"took"`
	Error  string        `json:"error,omitempty"`
	Source string        `json:"source"`
}

// Node is one host's resources.
type Node struct {
	Host     string    `json:"host"`
	CPUs     int       `json:"cpus,omitempty"`
	Load1    float64   `json:"load1"`
	Load5    float64   `json:"load5"`
	Load15   float64   `json:"load15"`
	MemTotal int64     `json:"mem_total"` // bytes
	MemAvail int64     `json:"mem_available"`
	SwapTot  int64     `json:"swap_total"`
	SwapFree int64     `json:"swap_free"`
	Disks    []DiskIO  `json:"disks,omitempty"`
	FS       []FSUsage `json:"fs,omitempty"`
	// FSErrors are df's complaints about file systems it could not read (Input/output error).
	FSErrors []string `json:"fs_errors,omitempty"`
	Sources  []string `json:"sources"`
}

// DiskIO is one line of vmstat -d.
type DiskIO struct {
	Name      string `json:"name"`
	Reads     int64  `json:"reads"`
	Writes    int64  `json:"writes"`
	InFlight  int64  `json:"in_flight"`  // IO: cur
	IOSeconds int64  `json:"io_seconds"` // IO: sec (since boot)
}

// FSUsage is one file system of df.
type FSUsage struct {
	Source string `json:"source"`
	Mount  string `json:"mount"`
	Size   int64  `json:"size"`
	Used   int64  `json:"used"`
}

// LogExcerpt is the lines of one service's log inside the window that matter.
type LogExcerpt struct {
	Host    string    `json:"host"`
	Service string    `json:"service"`
	Lines   []LogLine `json:"lines,omitempty"` // at most MaxLogLines, newest kept
	Matched int       `json:"matched"`         // lines in the window that matched, before the cap
	// Kinds counts the matched lines by kind (in order of first appearance), with the first and
	// last time each kind was seen.
	Kinds   []KindCount `json:"kinds,omitempty"`
	Scanned int         `json:"scanned"` // lines read
	// Oldest is the time of the oldest line read: when it is after Since, the tail read did
	// not reach back to the start of the window.
	Oldest time.Time `json:"oldest,omitempty"`
	Source string    `json:"source"`
}

// KindCount counts the log lines of one kind.
type KindCount struct {
	Kind   string    `json:"kind"`
	Count  int       `json:"count"`
	First  time.Time `json:"first"`
	Last   time.Time `json:"last"`
	Sample string    `json:"sample"` // the newest line of the kind
}

// Count returns the excerpt's count of one kind.
func (e LogExcerpt) Count(kind string) (KindCount, bool) {
	for _, k := range e.Kinds {
		if k.Kind == kind {
			return k, true
		}
	}
	return KindCount{}, false
}

// LogLine is one log line with its time and what it is about.
type LogLine struct {
	At   time.Time `json:"at"`
	Kind string    `json:"kind"` // see the Log* constants
	Text string    `json:"text"`
}

// NetProbe is what one vantage point (a host, or a network namespace on it, where the address is
// on-link) saw of an address.
type NetProbe struct {
	Host      string `json:"host"`
	Netns     string `json:"netns,omitempty"` // "" = the host's own namespace
	Interface string `json:"interface,omitempty"`
	Address   string `json:"address"`
	// OnLink: the vantage has a direct route to the address (same L2 segment), so ARP sees
	// every machine that holds it. Without it only reachability was tried.
	OnLink bool `json:"on_link"`
	// MACs are the distinct hardware addresses that answered ARP for Address, in order of first
	// answer; two or more is a duplicate address.
	MACs       []string `json:"macs,omitempty"`
	ARPSent    int      `json:"arp_sent"`
	ARPReplies int      `json:"arp_replies"`
	// Neigh is the neighbour table's entry for Address (MAC and state), if any.
	NeighMAC   string `json:"neigh_mac,omitempty"`
	NeighState string `json:"neigh_state,omitempty"`
	PingSent   int    `json:"ping_sent"`
	PingRecv   int    `json:"ping_received"`
	// Holders are the namespaces of this host that hold Address themselves (local routes).
	Holders []string `json:"holders,omitempty"`
	// Known maps a MAC to what Neutron says owns it (port, device), for the MACs Neutron knows.
	Known map[string]string `json:"known,omitempty"`
	// NeutronAsked: Neutron's ports were looked up (so a MAC missing from Known is unknown to it).
	NeutronAsked bool `json:"neutron_asked,omitempty"`
	// Sources are the route lookups that chose this vantage; ARPSource, NeighSource and
	// PingSource the commands behind MACs, Neigh* and Ping*.
	Sources     []string `json:"sources"`
	ARPSource   string   `json:"arp_source,omitempty"`
	NeighSource string   `json:"neigh_source,omitempty"`
	PingSource  string   `json:"ping_source,omitempty"`
	Error       string   `json:"error,omitempty"`
}

// Capacity is the scheduling picture: Placement's allocatable and used resources and the
// compute services that could take an instance.
type Capacity struct {
	Classes       []ClassUsage `json:"classes"`
	Computes      int          `json:"computes"`
	ComputesUp    int          `json:"computes_up"`    // up and enabled
	LargestFree   string       `json:"largest_free"`   // e.g. "compute2: 2 VCPU, 4096 MB"
	FlavorNeeds   string       `json:"flavor_needs"`   // the failed instance's flavor
	FitsSomewhere bool         `json:"fits_somewhere"` // the flavor fits the free resources of one provider
	Source        string       `json:"source"`
}

// ClassUsage is one resource class summed over the providers.
type ClassUsage struct {
	Class string  `json:"class"`
	Used  float64 `json:"used"`
	Total float64 `json:"total"`
}

// HostInfo is an inventory host.
type HostInfo struct {
	Name    string   `json:"name"`
	Address string   `json:"address"`
	Rack    string   `json:"rack,omitempty"`
	Roles   []string `json:"roles"`
}

// Failure is a collector that could not answer.
type Failure struct {
	Collector string `json:"collector"`
	Error     string `json:"error"`
	Source    string `json:"source,omitempty"`
}

// Note is a fact about the collection.
type Note struct {
	Message string `json:"message"`
	Source  string `json:"source,omitempty"`
}
