package diagnose

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var (
	t0    = time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	hosts = []HostInfo{
		{Name: "controller", Address: "127.0.0.10", Rack: "r0", Roles: []string{"controller"}},
		{Name: "compute1", Address: "127.0.0.11", Rack: "r1", Roles: []string{"compute"}},
		{Name: "compute2", Address: "127.0.0.12", Rack: "r2", Roles: []string{"compute"}},
		{Name: "compute4", Address: "127.0.0.14", Rack: "r1", Roles: []string{"compute"}},
	}
)

func busyNode(host string) Node {
	return Node{Host: host, CPUs: 2, Load1: 9.5, Load5: 8, Load15: 6, MemTotal: 8 << 30, MemAvail: 200 << 20,
		Disks:   []DiskIO{{Name: "vda", InFlight: 30}},
		FS:      []FSUsage{{Mount: "/", Size: 100, Used: 97}},
		Sources: []string{"ssh " + host + ": cat /proc/loadavg", "ssh " + host + ": cat /proc/meminfo", "ssh " + host + ": vmstat -d", "ssh " + host + ": df -P -B1 -l"}}
}

// The field report behind issue 13: a server that "sometimes" refused SSH was blamed on load,
// sshd, the OS and the disk, while its address answered from two machines. The duplicate comes
// first, before the (real) load and the (real) full disk.
func TestDuplicateAddressOutranksLoadAndDisk(t *testing.T) {
	f := Facts{Symptom: InstanceUnreachable, Subject: Subject{Kind: SubjectIP, Value: "10.0.0.5"}, Since: t0.Add(-30 * time.Minute), Until: t0, Hosts: hosts,
		Nodes:     []Node{busyNode("compute1")},
		Processes: []Process{{Host: "compute1", Service: "nova-compute", Running: true, Source: "ssh compute1: systemctl is-active nova-compute"}},
		Network: []NetProbe{{Host: "controller", Netns: "qdhcp-1", Interface: "tap1", Address: "10.0.0.5", OnLink: true,
			MACs: []string{"fa:16:3e:00:00:05", "dc:9b:9c:12:34:56"}, ARPSent: 3, ARPReplies: 6, PingSent: 5, PingRecv: 3,
			Known: map[string]string{"fa:16:3e:00:00:05": "port p1 of instance web-1"}, NeutronAsked: true,
			Sources: []string{"ssh controller: ip netns exec qdhcp-1 arping -b -c 3 -I tap1 10.0.0.5"}}},
	}
	rep := Analyze(f)
	require.NotEmpty(t, rep.Suspects)
	assert.Equal(t, "duplicate address 10.0.0.5", rep.Suspects[0].Component)
	assert.Equal(t, 100, rep.Suspects[0].Score)
	assert.Equal(t, ScopeInstance, rep.Blast.Scope)

	fs := rep.Findings()
	assert.Equal(t, "blast-radius", fs[0].Subject)
	assert.Contains(t, fs[1].Message, "fa:16:3e:00:00:05 (port p1 of instance web-1)")
	assert.Contains(t, fs[1].Message, "dc:9b:9c:12:34:56 (unknown to Neutron)")
	assert.Equal(t, "critical", fs[1].Severity)
	assert.Contains(t, fs[1].Source, "arping -b -c 3")
	// Load, memory, disk are there, but after the duplicate and the intermittent ping.
	idx := func(sub string) int {
		for i, x := range fs {
			if strings.Contains(x.Message, sub) {
				return i
			}
		}
		t.Fatalf("no finding with %q in %+v", sub, fs)
		return -1
	}
	assert.Less(t, idx("answers ARP from 2 MAC"), idx("more runnable work than CPUs"))
	assert.Less(t, idx("answers ARP from 2 MAC"), idx("97% full"))
	assert.Less(t, idx("only sometimes"), idx("more runnable work"))
	for _, x := range fs {
		assert.NotEmpty(t, x.Source, "every finding names its command or API: %+v", x)
	}
}

func TestDatabaseDown(t *testing.T) {
	dbErr := KindCount{Kind: LogDB, Count: 12, First: t0.Add(-10 * time.Minute), Last: t0.Add(-time.Minute),
		Sample: "2026-12-01 08:59:00.000 1 ERROR oslo_db [-] DBConnectionError: (2003, \"Can't connect to MySQL server on '127.0.0.10' ([Errno 111] Connection refused)\")"}
	f := Facts{Symptom: DBConnectionErrors, Subject: Subject{Kind: SubjectAll, Value: "all"}, Since: t0.Add(-30 * time.Minute), Until: t0, Hosts: hosts,
		Processes: []Process{
			{Host: "controller", Service: "mariadb", Running: false, Output: "controller/mariadb: stopped", Source: "ssh controller: labctl status controller mariadb"},
			{Host: "controller", Service: "rabbitmq-server", Running: true, Source: "ssh controller: labctl status controller rabbitmq-server"},
		},
		Connects: []Connect{{Component: "mariadb", Target: "127.0.0.10:3306", Error: "dial tcp 127.0.0.10:3306: connect: connection refused", Source: "tcp connect from the worker to 127.0.0.10:3306 (databases.nova_dsn)"}},
		Logs: []LogExcerpt{
			{Host: "controller", Service: "nova-conductor", Kinds: []KindCount{dbErr}, Source: "ssh controller: labctl tail controller nova-conductor 3000"},
			{Host: "controller", Service: "keystone", Kinds: []KindCount{dbErr}, Source: "ssh controller: labctl tail controller keystone 3000"},
			{Host: "compute1", Service: "nova-compute", Scanned: 300, Source: "ssh compute1: labctl tail compute1 nova-compute 3000"},
		},
		Nodes: []Node{{Host: "controller", CPUs: 2, Load1: 0.5, MemTotal: 8 << 30, MemAvail: 4 << 30, FS: []FSUsage{{Mount: "/", Size: 100, Used: 40}}, Sources: []string{"ssh controller: cat /proc/loadavg"}}},
	}
	rep := Analyze(f)
	require.NotEmpty(t, rep.Suspects)
	s := rep.Suspects[0]
	assert.Equal(t, "mariadb", s.Component)
	assert.Equal(t, "controller", s.Node)
	var msgs []string
	for _, e := range s.Evidence {
		msgs = append(msgs, e.Message)
	}
	all := strings.Join(msgs, "\n")
	assert.Contains(t, all, "not running")
	assert.Contains(t, all, "connection refused")
	assert.Contains(t, all, "nova-conductor on controller logged database connection errors")
	assert.Contains(t, all, "keystone on controller logged database connection errors")
	assert.Equal(t, ScopeEverything, rep.Blast.Scope)
	assert.Equal(t, 2, rep.Blast.Services)
	assert.Contains(t, rep.Blast.Detail, "mariadb is not running on controller")
	// Normal resources are context, not suspects.
	for _, x := range rep.Suspects {
		assert.NotEqual(t, "node", x.Component)
	}
}

func TestNoValidHost(t *testing.T) {
	fault := "No valid host was found. There are not enough hosts available."
	mk := func(id, project string) Resource {
		return Resource{Kind: "instance", ID: id, Name: "vm-" + id, Status: "ERROR", Project: project, Fault: fault, FaultCode: 500, Source: "GET compute /servers/detail?all_tenants=1&status=ERROR"}
	}
	subj := mk("i1", "p1")
	subj.Source = "GET compute /servers/i1"
	f := Facts{Symptom: InstanceWontBoot, Subject: Subject{Kind: SubjectUUID, Value: "i1"}, Since: t0.Add(-30 * time.Minute), Until: t0, Hosts: hosts,
		Resource: &subj,
		Related: []Resource{mk("i1", "p1"), mk("i2", "p1"), mk("i3", "p2"),
			{Kind: "instance", ID: "i4", Status: "ERROR", Host: "compute1", Fault: "Build of instance i4 aborted: disk", Project: "p3"}},
		Logs: []LogExcerpt{{Host: "controller", Service: "nova-scheduler", Source: "ssh controller: tail nova-scheduler",
			Kinds: []KindCount{{Kind: LogNoValidHost, Count: 3, First: t0.Add(-5 * time.Minute), Last: t0.Add(-time.Minute), Sample: "Filtering removed all hosts for the request"}}}},
		Capacity: &Capacity{Classes: []ClassUsage{{Class: "VCPU", Used: 6, Total: 6}, {Class: "MEMORY_MB", Used: 2048, Total: 24576}},
			Computes: 3, ComputesUp: 3, LargestFree: "compute1: 0 VCPU", FlavorNeeds: "m1.small (1 VCPU, 2048 MB, 20 GB)", Source: "GET placement /resource_providers/{uuid}/inventories|usages"},
	}
	rep := Analyze(f)
	assert.Equal(t, "nova-scheduler", rep.Suspects[0].Component)
	assert.Contains(t, rep.Suspects[0].Evidence[0].Message, "No valid host")
	assert.Contains(t, rep.Suspects[0].Evidence[1].Message, "Filtering removed all hosts")
	assert.Equal(t, "capacity", rep.Suspects[1].Component)
	assert.Contains(t, rep.Suspects[1].Evidence[0].Message, "no compute has room for m1.small")
	// Three instances share the fault (i4's is another), in two projects, none placed: everything.
	assert.Equal(t, ScopeEverything, rep.Blast.Scope)
	assert.Equal(t, 3, rep.Blast.Instances)
	assert.Equal(t, 2, rep.Blast.Projects)
	assert.Equal(t, 0, rep.Blast.Hosts)

	// The same instance alone is one instance.
	f.Related = nil
	assert.Equal(t, ScopeInstance, Analyze(f).Blast.Scope)
}

func TestBlastRadiusHostAndRack(t *testing.T) {
	mk := func(id, host string) Resource {
		return Resource{Kind: "instance", ID: id, Status: "ERROR", Host: host, Project: "p", Fault: "Build of instance aborted: libvirt error", Source: "api"}
	}
	subj := mk("a", "compute1")
	f := Facts{Symptom: InstanceWontBoot, Hosts: hosts, Resource: &subj, Related: []Resource{mk("b", "compute1"), mk("c", "compute1")}}
	rep := Analyze(f)
	assert.Equal(t, ScopeHost, rep.Blast.Scope)
	assert.Equal(t, "nova-compute", rep.Suspects[0].Component)
	assert.Equal(t, "compute1", rep.Suspects[0].Node)
	f.Related = append(f.Related, mk("d", "compute4")) // compute4 is in rack r1 too
	rep = Analyze(f)
	assert.Equal(t, ScopeRack, rep.Blast.Scope)
	assert.Equal(t, []string{"r1"}, rep.Blast.Racks)
	f.Related = append(f.Related, mk("e", "compute2"))
	assert.Equal(t, ScopeEverything, Analyze(f).Blast.Scope)
}

func TestAPISlowEverywhere(t *testing.T) {
	f := Facts{Symptom: APISlow, Subject: Subject{Kind: SubjectAll, Value: "all"}, APIs: []APITiming{
		{API: "identity", Status: 200, Took: 4 * time.Second, Source: "GET identity /v3/projects"},
		{API: "compute", Status: 200, Took: 6 * time.Second, Source: "GET compute /servers?limit=1"},
	}, Nodes: []Node{busyNode("controller")}}
	rep := Analyze(f)
	assert.Equal(t, ScopeEverything, rep.Blast.Scope)
	assert.Equal(t, "keystone", rep.Suspects[0].Component)
	// The overloaded controller is the runner-up: every API on it shares its CPUs, memory, disk.
	assert.Equal(t, "node", rep.Suspects[1].Component)
	assert.Equal(t, "controller", rep.Suspects[1].Node)
	f.APIs[0].Took = 50 * time.Millisecond
	f.Nodes = []Node{{Host: "controller", CPUs: 2, Load1: 0.3, MemTotal: 8 << 30, MemAvail: 6 << 30, Sources: []string{"ssh controller: cat /proc/loadavg"}}}
	rep = Analyze(f)
	assert.Equal(t, ScopeService, rep.Blast.Scope)
	assert.Equal(t, "nova-api", rep.Suspects[0].Component)
	assert.Len(t, rep.Suspects, 1)
}

// Collectors that failed are reported as blind spots, last; the analysis does not depend on the
// order maps would give, so the report is the same every time (the workflow runs it).
func TestFailuresAndDeterminism(t *testing.T) {
	f := Facts{Symptom: InstanceUnreachable, Subject: Subject{Kind: SubjectName, Value: "compute9"},
		Failures: []Failure{{Collector: "node/compute9", Error: "remote: connection failed", Source: "ssh compute9"}},
		Network: []NetProbe{{Host: "controller", Address: "10.0.0.9", OnLink: true, ARPSent: 3, PingSent: 3,
			Known: map[string]string{"a": "x", "b": "y", "c": "z"}, Sources: []string{"ssh controller: arping"}}}}
	rep := Analyze(f)
	fs := rep.Findings()
	assert.Contains(t, fs[len(fs)-1].Message, "could not collect node/compute9")
	assert.Equal(t, "address 10.0.0.9", rep.Suspects[0].Component)
	b1, _ := json.Marshal(rep)
	for i := 0; i < 20; i++ {
		b2, _ := json.Marshal(Analyze(f))
		require.Equal(t, string(b1), string(b2))
	}
}

// Many medium hints (database errors logged by four services earlier in the window) do not
// outrank one decisive fact (no compute can hold the flavor), as seen on the lab.
func TestManyWeakHintsDoNotOutrankOneStrongFact(t *testing.T) {
	subj := Resource{Kind: "instance", ID: "i1", Status: "ERROR", Fault: "No valid host was found.", Source: "GET compute /servers/i1"}
	f := Facts{Symptom: InstanceWontBoot, Resource: &subj,
		Capacity: &Capacity{Classes: []ClassUsage{{Class: "VCPU", Used: 0, Total: 48000}}, Computes: 3, ComputesUp: 3,
			FlavorNeeds: "flavor huge (4096 VCPU)", LargestFree: "compute2: 16000 VCPU free (at most 1000 per instance)", Source: "GET placement"}}
	for _, svc := range []string{"nova-api", "nova-conductor", "nova-scheduler", "placement-api"} {
		f.Logs = append(f.Logs, LogExcerpt{Host: "controller", Service: svc, Source: "ssh controller: tail " + svc,
			Kinds: []KindCount{{Kind: LogDB, Count: 40, First: t0, Last: t0, Sample: "DBConnectionError"}}})
	}
	rep := Analyze(f)
	var order []string
	for _, s := range rep.Suspects {
		order = append(order, s.Component)
	}
	assert.Equal(t, []string{"nova-scheduler", "capacity", "database"}, order[:3])
}
