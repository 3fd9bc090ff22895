package config

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Outage configures outage-recovery (RUNBOOKS.md §8, docs/outage-recovery.md): the priority
// table of what comes back in which order, and how each part is verified. An empty table means
// the guide's (DefaultOutageTiers); a table given replaces it whole.
type Outage struct {
	Tiers []OutageTier `mapstructure:"tiers" yaml:"tiers" json:"tiers"`
	// Instances is the start policy of the user-instance tier: ran-before (start again what ran
	// before the outage, by evidence) or none (start nothing, report what ran before).
	Instances string `mapstructure:"instances" yaml:"instances" json:"instances"`
	// InstancesGate opens the signed gate approve-instance-start before instances are started.
	InstancesGate bool `mapstructure:"instances_gate" yaml:"instances_gate" json:"instances_gate"`
	// DatabaseHost runs the integrity check (default: upgrade.database_host), with the client
	// defaults file DatabaseDefaultsFile (default: upgrade.database_defaults_file).
	DatabaseHost         string `mapstructure:"database_host" yaml:"database_host" json:"database_host"`
	DatabaseDefaultsFile string `mapstructure:"database_defaults_file" yaml:"database_defaults_file" json:"database_defaults_file"`
	// Databases are the schemas the integrity check reads (default: the OpenStack ones).
	Databases []string `mapstructure:"databases" yaml:"databases" json:"databases"`
}

// OutageTier is one row of the priority table: which hosts (by role or name) and which of their
// services come back at this priority, and what is checked once they are.
type OutageTier struct {
	Priority int    `mapstructure:"priority" yaml:"priority" json:"priority"`
	Name     string `mapstructure:"name" yaml:"name" json:"name"`
	// Roles and Hosts choose the hosts ("*": every inventory host); Services are role services
	// started and verified on those hosts that run them.
	Roles    []string        `mapstructure:"roles" yaml:"roles,omitempty" json:"roles,omitempty"`
	Hosts    []string        `mapstructure:"hosts" yaml:"hosts,omitempty" json:"hosts,omitempty"`
	Services []OutageService `mapstructure:"services" yaml:"services,omitempty" json:"services,omitempty"`
	// HostVerify is checked on every chosen host: reachable (SSH answers), swift-devices (every
	// Swift device of the node mounted and readable; unmounted ones are mounted by label).
	HostVerify []string `mapstructure:"host_verify" yaml:"host_verify,omitempty" json:"host_verify,omitempty"`
	// Checks run once the tier is verified: db-integrity, hypervisors.
	Checks []string `mapstructure:"checks" yaml:"checks,omitempty" json:"checks,omitempty"`
	// Instances makes this the user-instance tier (outage.instances is its policy).
	Instances bool `mapstructure:"instances" yaml:"instances,omitempty" json:"instances,omitempty"`
	// Parallel bounds the hosts and services of this tier brought back at once: a tier of many
	// small services (a storage tier) can take more than the run's default. 0: the run's
	// --parallel (policy.default_parallelism); a --parallel given to the run wins.
	Parallel int `mapstructure:"parallel" yaml:"parallel,omitempty" json:"parallel,omitempty"`
}

// MaxOutageTierParallel bounds a tier's parallel (workflows.MaxParallel, the bound of --parallel).
const MaxOutageTierParallel = 32

// OutageService is one service of a tier and how it is verified: process, port:<n>, amqp,
// api:<identity|compute|placement|image|network|block-storage|object-store>.
type OutageService struct {
	Name   string   `mapstructure:"name" yaml:"name" json:"name"`
	Verify []string `mapstructure:"verify" yaml:"verify" json:"verify"`
}

// Outage verification and check words.
const (
	OutageVerifyProcess      = "process"
	OutageVerifyAMQP         = "amqp"
	OutageVerifyReachable    = "reachable"
	OutageVerifySwiftDevice  = "swift-devices"
	OutageCheckDBIntegrity   = "db-integrity"
	OutageCheckHypervisors   = "hypervisors"
	OutageInstancesRanBefore = "ran-before"
	OutageInstancesNone      = "none"
)

// OutageAPIs are the APIs an api:<name> verification can ask.
var OutageAPIs = []string{"identity", "compute", "placement", "image", "network", "block-storage", "object-store"}

// DefaultOutageDatabases are the schemas the integrity check reads by default.
var DefaultOutageDatabases = []string{"keystone", "glance", "placement", "nova_api", "nova", "nova_cell0", "cinder", "neutron"}

// DefaultOutageTiers is the guide's table (OpenStack Operations Guide, "complete failure"):
// packaged service names, roles controller/storage/compute/network.
func DefaultOutageTiers() []OutageTier {
	proc := func(name string, more ...string) OutageService {
		return OutageService{Name: name, Verify: append([]string{OutageVerifyProcess}, more...)}
	}
	return []OutageTier{
		{Priority: 1, Name: "internal network", Roles: []string{"*"}, HostVerify: []string{OutageVerifyReachable}},
		{Priority: 2, Name: "backend storage", Roles: []string{"storage"}, HostVerify: []string{OutageVerifySwiftDevice},
			Services: []OutageService{proc("swift-account"), proc("swift-container"), proc("swift-object")}},
		{Priority: 3, Name: "public network", Roles: []string{"network"}, Services: []OutageService{proc("neutron-l3-agent"), proc("neutron-dhcp-agent")}},
		{Priority: 4, Name: "nova-compute, network and cinder hosts", Roles: []string{"compute", "volume"},
			Services: []OutageService{proc("nova-compute"), proc("cinder-volume")}},
		{Priority: 5, Name: "user instances", Instances: true},
		{Priority: 10, Name: "message queue and database", Roles: []string{"controller"}, Checks: []string{OutageCheckDBIntegrity},
			Services: []OutageService{proc("mariadb", "port:3306"), proc("rabbitmq-server", "port:5672")}},
		{Priority: 15, Name: "keystone", Roles: []string{"controller"}, Services: []OutageService{proc("keystone", "api:identity")}},
		{Priority: 20, Name: "cinder-scheduler", Roles: []string{"controller"}, Services: []OutageService{proc("cinder-scheduler", "amqp")}},
		{Priority: 21, Name: "image catalogue and delivery", Roles: []string{"controller"}, Services: []OutageService{proc("glance-api", "api:image")}},
		{Priority: 22, Name: "nova-scheduler", Roles: []string{"controller"}, Services: []OutageService{proc("nova-conductor", "amqp"), proc("nova-scheduler", "amqp")}},
		{Priority: 98, Name: "cinder-api", Roles: []string{"controller"}, Services: []OutageService{proc("cinder-api", "api:block-storage")}},
		{Priority: 99, Name: "nova-api", Roles: []string{"controller"}, Checks: []string{OutageCheckHypervisors},
			Services: []OutageService{proc("nova-api", "api:compute")}},
		{Priority: 100, Name: "dashboard", Roles: []string{"dashboard"}, Services: []OutageService{proc("apache2")}},
	}
}

var reOutageName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9 ,._/-]{0,63}$`)

// ValidOutageVerify reports whether v is a known service verification.
func ValidOutageVerify(v string) bool {
	switch {
	case v == OutageVerifyProcess || v == OutageVerifyAMQP:
		return true
	case strings.HasPrefix(v, "port:"):
		n, err := strconv.Atoi(strings.TrimPrefix(v, "port:"))
		return err == nil && n > 0 && n < 65536
	case strings.HasPrefix(v, "api:"):
		return slices.Contains(OutageAPIs, strings.TrimPrefix(v, "api:"))
	}
	return false
}

func (c *Config) validateOutage(ps *Problems) {
	o := c.Outage
	switch o.Instances {
	case "", OutageInstancesRanBefore, OutageInstancesNone:
	default:
		ps.add("outage.instances", "%q: want %s or %s", o.Instances, OutageInstancesRanBefore, OutageInstancesNone)
	}
	if o.DatabaseHost != "" {
		if _, ok := c.Inventory[o.DatabaseHost]; !ok {
			ps.add("outage.database_host", "%q is not in the inventory", o.DatabaseHost)
		}
	}
	if o.DatabaseDefaultsFile != "" {
		if err := checkHostPath(o.DatabaseDefaultsFile); err != nil || strings.Contains(o.DatabaseDefaultsFile, "{host}") {
			ps.add("outage.database_defaults_file", "%q: want an absolute, clean path on the database host", o.DatabaseDefaultsFile)
		}
	}
	for i, d := range o.Databases {
		if !reUpgradeDatabase.MatchString(d) {
			ps.add(fmt.Sprintf("outage.databases[%d]", i), "%q: invalid database name (%s)", d, upgradeDatabaseNamePattern)
		}
	}
	seen := map[int]bool{}
	for i, t := range o.Tiers {
		key := fmt.Sprintf("outage.tiers[%d]", i)
		if t.Priority < 1 || t.Priority > 1000 {
			ps.add(key+".priority", "%d: want 1 to 1000", t.Priority)
		} else if seen[t.Priority] {
			ps.add(key+".priority", "%d listed twice", t.Priority)
		}
		seen[t.Priority] = true
		if !reOutageName.MatchString(t.Name) {
			ps.add(key+".name", "%q: want a short name (letters, digits, spaces, ',._/-')", t.Name)
		}
		for j, h := range t.Hosts {
			if _, ok := c.Inventory[h]; !ok {
				ps.add(fmt.Sprintf("%s.hosts[%d]", key, j), "%q is not in the inventory", h)
			}
		}
		for j, r := range t.Roles {
			if r != "*" && !reUpgradeService.MatchString(r) {
				ps.add(fmt.Sprintf("%s.roles[%d]", key, j), "%q: invalid role name", r)
			}
		}
		for j, v := range t.HostVerify {
			if v != OutageVerifyReachable && v != OutageVerifySwiftDevice {
				ps.add(fmt.Sprintf("%s.host_verify[%d]", key, j), "%q: want %s or %s", v, OutageVerifyReachable, OutageVerifySwiftDevice)
			}
		}
		for j, v := range t.Checks {
			if v != OutageCheckDBIntegrity && v != OutageCheckHypervisors {
				ps.add(fmt.Sprintf("%s.checks[%d]", key, j), "%q: want %s or %s", v, OutageCheckDBIntegrity, OutageCheckHypervisors)
			}
		}
		for j, s := range t.Services {
			sk := fmt.Sprintf("%s.services[%d]", key, j)
			if !reUpgradeProcess.MatchString(s.Name) {
				ps.add(sk+".name", "%q: invalid service name (%s)", s.Name, upgradeProcessNamePatternDesc)
			}
			for k, v := range s.Verify {
				if !ValidOutageVerify(v) {
					ps.add(fmt.Sprintf("%s.verify[%d]", sk, k), "%q: want process, amqp, port:<1-65535> or api:<%s>", v, strings.Join(OutageAPIs, "|"))
				}
			}
		}
		if t.Parallel < 0 || t.Parallel > MaxOutageTierParallel {
			ps.add(key+".parallel", "%d: want 0 (the run's --parallel) to %d", t.Parallel, MaxOutageTierParallel)
		}
		if t.Instances && (len(t.Services) > 0 || len(t.Roles) > 0 || len(t.Hosts) > 0) {
			ps.add(key, "the user-instance tier (instances: true) names no hosts, roles or services")
		}
	}
}
