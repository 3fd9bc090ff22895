// Package config holds Stackrun's one typed configuration, loaded by viper
// from a YAML file, STACKRUN_* environment variables and command-line flags
// (in rising order of precedence), and validated with errors that name the key.
//
// The schema is the contract in docs/config-schema.md; stackrun.example.yaml at
// the repository root documents every key.
//
//	cfg, err := config.Load(config.LoadOptions{Flags: cmd.Flags()})
//	if err != nil {
//		return err
//	}
//	if err := cfg.ValidateFor(config.ForWorker); err != nil {
//		return err
//	}
package config

import (
	"maps"
	"net"
	"slices"
	"strconv"
	"time"

	"github.com/stackrun/stackrun/config/policy"
	"github.com/stackrun/stackrun/internal/infra/placeholder"
)

// Config is the whole Stackrun configuration. Keys are the snake_case names in
// the mapstructure/yaml tags; docs/config-schema.md is the contract.
type Config struct {
	Temporal     Temporal                       `mapstructure:"temporal" yaml:"temporal" json:"temporal"`
	OpenStack    OpenStack                      `mapstructure:"openstack" yaml:"openstack" json:"openstack"`
	Databases    Databases                      `mapstructure:"databases" yaml:"databases" json:"databases"`
	SSH          SSH                            `mapstructure:"ssh" yaml:"ssh" json:"ssh"`
	Inventory    map[string]Host                `mapstructure:"inventory" yaml:"inventory" json:"inventory"`
	Roles        map[string]Role                `mapstructure:"roles" yaml:"roles" json:"roles"`
	Commands     map[string][]string            `mapstructure:"commands" yaml:"commands" json:"commands"`
	RoleCommands map[string]map[string][]string `mapstructure:"role_commands" yaml:"role_commands" json:"role_commands"`
	Policy       policy.Policy                  `mapstructure:"policy" yaml:"policy" json:"policy"`
	Swift        Swift                          `mapstructure:"swift" yaml:"swift" json:"swift"`
	Worker       Worker                         `mapstructure:"worker" yaml:"worker" json:"worker"`
	Chat         Chat                           `mapstructure:"chat" yaml:"chat" json:"chat"`
	Checks       Checks                         `mapstructure:"checks" yaml:"checks" json:"checks"`
	InspectDisk  InspectDisk                    `mapstructure:"inspect_disk" yaml:"inspect_disk" json:"inspect_disk"`
	Upgrade      Upgrade                        `mapstructure:"upgrade" yaml:"upgrade" json:"upgrade"`
	Outage       Outage                         `mapstructure:"outage" yaml:"outage" json:"outage"`
	Trust        Trust                          `mapstructure:"trust" yaml:"trust" json:"trust"`

	// File is the configuration file that was read ("" when none was found
	// and only defaults, environment and flags apply). Not a key.
	File string `mapstructure:"-" yaml:"-" json:"-"`
}

// Temporal is how to reach the Temporal server.
type Temporal struct {
	Address   string      `mapstructure:"address" yaml:"address" json:"address"`
	Namespace string      `mapstructure:"namespace" yaml:"namespace" json:"namespace"`
	TaskQueue string      `mapstructure:"task_queue" yaml:"task_queue" json:"task_queue"`
	TLS       TemporalTLS `mapstructure:"tls" yaml:"tls" json:"tls"`
}

// TemporalTLS configures TLS (and mTLS when CertFile/KeyFile are set) to Temporal.
type TemporalTLS struct {
	Enabled    bool   `mapstructure:"enabled" yaml:"enabled" json:"enabled"`
	CAFile     string `mapstructure:"ca_file" yaml:"ca_file" json:"ca_file"`
	CertFile   string `mapstructure:"cert_file" yaml:"cert_file" json:"cert_file"`
	KeyFile    string `mapstructure:"key_file" yaml:"key_file" json:"key_file"`
	ServerName string `mapstructure:"server_name" yaml:"server_name" json:"server_name"`
}

// OpenStack selects the cloud credentials. An empty Cloud means the OS_*
// environment variables, as the openstack CLI does.
type OpenStack struct {
	Cloud               string `mapstructure:"cloud" yaml:"cloud" json:"cloud"`
	CloudsFile          string `mapstructure:"clouds_file" yaml:"clouds_file" json:"clouds_file"`
	Region              string `mapstructure:"region" yaml:"region" json:"region"`
	ComputeMicroversion string `mapstructure:"compute_microversion" yaml:"compute_microversion" json:"compute_microversion"`
	// RequestTimeout bounds one API request; reads that fail are retried in place, writes are not.
	RequestTimeout time.Duration `mapstructure:"request_timeout" yaml:"request_timeout" json:"request_timeout"`
}

// Databases are go-sql-driver/mysql DSNs. A DSN may instead be read from the
// file named by the matching *_file key; after Load the DSN field holds the
// secret and the *File field still names where it came from.
type Databases struct {
	NovaDSN        string `mapstructure:"nova_dsn" yaml:"nova_dsn" json:"nova_dsn"`
	NovaDSNFile    string `mapstructure:"nova_dsn_file" yaml:"nova_dsn_file,omitempty" json:"nova_dsn_file,omitempty"`
	NovaAPIDSN     string `mapstructure:"nova_api_dsn" yaml:"nova_api_dsn" json:"nova_api_dsn"`
	NovaAPIDSNFile string `mapstructure:"nova_api_dsn_file" yaml:"nova_api_dsn_file,omitempty" json:"nova_api_dsn_file,omitempty"`
	CinderDSN      string `mapstructure:"cinder_dsn" yaml:"cinder_dsn" json:"cinder_dsn"`
	CinderDSNFile  string `mapstructure:"cinder_dsn_file" yaml:"cinder_dsn_file,omitempty" json:"cinder_dsn_file,omitempty"`
	// NovaRWDSN is the only writable account: used by nothing but recover-host's gated
	// database-rewrite fallback (--db-rewrite-fallback). Empty: that fallback is unavailable.
	NovaRWDSN     string `mapstructure:"nova_rw_dsn" yaml:"nova_rw_dsn,omitempty" json:"nova_rw_dsn,omitempty"`
	NovaRWDSNFile string `mapstructure:"nova_rw_dsn_file" yaml:"nova_rw_dsn_file,omitempty" json:"nova_rw_dsn_file,omitempty"`
}

// SSH is how the worker reaches the hosts of the inventory.
type SSH struct {
	User           string        `mapstructure:"user" yaml:"user" json:"user"`
	Port           int           `mapstructure:"port" yaml:"port" json:"port"`
	KeyFile        string        `mapstructure:"key_file" yaml:"key_file" json:"key_file"`
	UseAgent       bool          `mapstructure:"use_agent" yaml:"use_agent" json:"use_agent"`
	KnownHostsFile string        `mapstructure:"known_hosts_file" yaml:"known_hosts_file" json:"known_hosts_file"`
	JumpHost       string        `mapstructure:"jump_host" yaml:"jump_host" json:"jump_host"`
	ConnectTimeout time.Duration `mapstructure:"connect_timeout" yaml:"connect_timeout" json:"connect_timeout"`
	CommandTimeout time.Duration `mapstructure:"command_timeout" yaml:"command_timeout" json:"command_timeout"`
	MaxOutputBytes int           `mapstructure:"max_output_bytes" yaml:"max_output_bytes" json:"max_output_bytes"`
}

// Host is one machine of the inventory.
type Host struct {
	Address string            `mapstructure:"address" yaml:"address" json:"address"`
	Port    int               `mapstructure:"port" yaml:"port,omitempty" json:"port,omitempty"`
	Roles   []string          `mapstructure:"roles" yaml:"roles" json:"roles"`
	Labels  map[string]string `mapstructure:"labels" yaml:"labels,omitempty" json:"labels,omitempty"`
}

// Role is a kind of host and the services that run on it.
type Role struct {
	Services []Service `mapstructure:"services" yaml:"services" json:"services"`
}

// Service is one service (systemd unit or equivalent) of a role.
type Service struct {
	Name string `mapstructure:"name" yaml:"name" json:"name"`
	Log  string `mapstructure:"log" yaml:"log,omitempty" json:"log,omitempty"`
	AMQP bool   `mapstructure:"amqp" yaml:"amqp,omitempty" json:"amqp,omitempty"`
}

// Swift describes the Swift cluster for the disk and ring runbooks: where the ring builder files
// live, which nodes hold which devices, and where each node keeps its rings.
type Swift struct {
	// RingBuilderHost is the inventory host holding the *.builder files.
	RingBuilderHost string `mapstructure:"ring_builder_host" yaml:"ring_builder_host" json:"ring_builder_host"`
	// BuilderDir is the directory of account/container/object.builder on RingBuilderHost.
	BuilderDir string `mapstructure:"builder_dir" yaml:"builder_dir" json:"builder_dir"`
	// SwiftDir, DevicesDir and ReconCachePath are the defaults for every node (swift_dir,
	// devices and recon_cache_path of the Swift servers).
	SwiftDir       string `mapstructure:"swift_dir" yaml:"swift_dir" json:"swift_dir"`
	DevicesDir     string `mapstructure:"devices_dir" yaml:"devices_dir" json:"devices_dir"`
	ReconCachePath string `mapstructure:"recon_cache_path" yaml:"recon_cache_path" json:"recon_cache_path"`
	// Fstab is the file system table of the storage nodes: swift-disk mounts a new disk
	// through its entry there (by UUID).
	Fstab string `mapstructure:"fstab" yaml:"fstab" json:"fstab"`
	// Ports of the servers as the rings name them.
	AccountPort   int `mapstructure:"account_port" yaml:"account_port" json:"account_port"`
	ContainerPort int `mapstructure:"container_port" yaml:"container_port" json:"container_port"`
	ObjectPort    int `mapstructure:"object_port" yaml:"object_port" json:"object_port"`
	// Parallelism is how many nodes receive rings at once.
	Parallelism int `mapstructure:"parallelism" yaml:"parallelism" json:"parallelism"`
	// MaxStepPercent is the largest ring change one rebalance makes: the devices' weight
	// changes summed, as a percent of the object ring's total weight. swift-ring splits a
	// larger change into steps by itself (0 = no limit).
	MaxStepPercent float64 `mapstructure:"max_step_percent" yaml:"max_step_percent" json:"max_step_percent"`
	// Nodes are the storage nodes (with devices) and the proxies (without) by inventory name.
	Nodes map[string]SwiftNode `mapstructure:"nodes" yaml:"nodes" json:"nodes"`
}

// SwiftNode is one Swift node. Empty fields take the swift.* defaults.
type SwiftNode struct {
	SwiftDir       string `mapstructure:"swift_dir" yaml:"swift_dir,omitempty" json:"swift_dir,omitempty"`
	DevicesDir     string `mapstructure:"devices_dir" yaml:"devices_dir,omitempty" json:"devices_dir,omitempty"`
	ReconCachePath string `mapstructure:"recon_cache_path" yaml:"recon_cache_path,omitempty" json:"recon_cache_path,omitempty"`
	// RingIP is the node's address in the rings (default: its inventory address).
	RingIP string `mapstructure:"ring_ip" yaml:"ring_ip,omitempty" json:"ring_ip,omitempty"`
	// Region and Zone place the node's devices when they are added to the rings.
	Region int `mapstructure:"region" yaml:"region,omitempty" json:"region,omitempty"`
	Zone   int `mapstructure:"zone" yaml:"zone,omitempty" json:"zone,omitempty"`
	// Weight of the node's devices when added (default 100).
	Weight float64 `mapstructure:"weight" yaml:"weight,omitempty" json:"weight,omitempty"`
	// Devices maps each Swift device name (sdb, the name in the rings and under devices_dir)
	// to the block device that holds it ("" = /dev/<name>).
	Devices map[string]string `mapstructure:"devices" yaml:"devices,omitempty" json:"devices,omitempty"`
}

// Worker holds settings only the worker process uses.
type Worker struct {
	AuditLog       string `mapstructure:"audit_log" yaml:"audit_log" json:"audit_log"`
	MetricsAddress string `mapstructure:"metrics_address" yaml:"metrics_address" json:"metrics_address"`
	// WorkflowCacheSize caps the runs the worker keeps in memory (Temporal's sticky workflow
	// cache); 0 keeps the SDK's default, 10,000. An evicted run is replayed from its history
	// when it next has work (docs/production.md, "Scale, measured").
	WorkflowCacheSize int `mapstructure:"workflow_cache_size" yaml:"workflow_cache_size" json:"workflow_cache_size"`
}

// Escalation policies (policy.escalation).
const (
	EscalationNotifyThenWait  = "notify-then-wait"
	EscalationNotifyThenAbort = "notify-then-abort"
)

// Names of the built-in command templates (commands.*).
const (
	CommandServiceStart  = "service_start"
	CommandServiceStop   = "service_stop"
	CommandServiceStatus = "service_status"
	CommandLogTail       = "log_tail"
	CommandUptime        = "uptime"
)

// Placeholders lists every placeholder a command template may use: the ones
// internal/infra/placeholder names, each validated by its kind before use and never passed
// through a shell. "{name...}" (a list) is accepted for each of them too.
var Placeholders = func() []string {
	out := make([]string, 0, len(placeholder.Kinds))
	for name := range placeholder.Kinds {
		out = append(out, "{"+name+"}")
	}
	slices.Sort(out)
	return out
}()

// Defaults. Everything not listed is the zero value.
const (
	DefaultTemporalAddress      = "127.0.0.1:7233"
	DefaultNamespace            = "default"
	DefaultTaskQueue            = "stackrun"
	DefaultComputeMicroversion  = "2.90"
	MinComputeMicroversionMinor = 60 // compute_microversion must be 2.N with N >= this
	DefaultSSHUser              = "root"
	DefaultSSHPort              = 22
	DefaultKnownHostsFile       = "~/.ssh/known_hosts"
	DefaultConnectTimeout       = 10 * time.Second
	DefaultCommandTimeout       = 2 * time.Minute
	DefaultRequestTimeout       = 2 * time.Minute // openstack.request_timeout: above Nova's rpc_response_timeout (60 s)
	DefaultMaxOutputBytes       = 1 << 20
	DefaultGateTimeout          = 4 * time.Hour
	DefaultPlanMaxAge           = time.Hour
	DefaultLiveMigrationStall   = 3 * time.Minute
	DefaultEscalation           = EscalationNotifyThenWait
	DefaultEscalationRepeats    = 1
	DefaultMaxHostsOutOfService = 1
	DefaultParallelism          = 4
	DefaultActivityMaxAttempts  = 5
	DefaultSwiftDir             = "/etc/swift"
	DefaultSwiftDevicesDir      = "/srv/node"
	DefaultSwiftReconCachePath  = "/var/cache/swift"
	DefaultSwiftFstab           = "/etc/fstab"
	DefaultSwiftAccountPort     = 6202
	DefaultSwiftContainerPort   = 6201
	DefaultSwiftObjectPort      = 6200
	DefaultSwiftParallelism     = 8
	DefaultSwiftWeight          = 100
	DefaultSwiftMaxStepPercent  = 25
)

// DefaultTwoPersonGates are the gates the requester may not approve alone: every gate that
// destroys data, fences a host, rewrites a database, exposes a tenant's data or hard-reboots
// tenants' instances, including those of the runbooks still being written (issues 12-14).
func DefaultTwoPersonGates() []string {
	return []string{
		"approve-plan", "approve-ring-change", "overwrite-disk", "disk-replaced",
		"confirm-host-dead", "confirm-host-dead-override", "db-rewrite", "start-instances", "force-complete",
		"data-access", "canary-ok", "release-notes-read", "tested-on-staging", "rollback",
	}
}

// DefaultCommands are the command templates used when commands.* does not
// override them.
func DefaultCommands() map[string][]string {
	return map[string][]string{
		CommandServiceStart:  {"systemctl", "start", "{service}"},
		CommandServiceStop:   {"systemctl", "stop", "{service}"},
		CommandServiceStatus: {"systemctl", "is-active", "{service}"},
		CommandLogTail:       {"tail", "-n", "{lines}", "{log}"},
		CommandUptime:        {"cat", "/proc/uptime"},
	}
}

// Default returns the configuration used when no file, environment variable
// or flag sets anything.
func Default() *Config {
	return &Config{
		Temporal: Temporal{
			Address:   DefaultTemporalAddress,
			Namespace: DefaultNamespace,
			TaskQueue: DefaultTaskQueue,
		},
		OpenStack: OpenStack{ComputeMicroversion: DefaultComputeMicroversion, RequestTimeout: DefaultRequestTimeout},
		SSH: SSH{
			User:           DefaultSSHUser,
			Port:           DefaultSSHPort,
			KnownHostsFile: DefaultKnownHostsFile,
			ConnectTimeout: DefaultConnectTimeout,
			CommandTimeout: DefaultCommandTimeout,
			MaxOutputBytes: DefaultMaxOutputBytes,
		},
		Inventory:    map[string]Host{},
		Roles:        map[string]Role{},
		Commands:     DefaultCommands(),
		RoleCommands: map[string]map[string][]string{},
		Policy: policy.Policy{
			GateApprovers:              map[string][]string{},
			TwoPersonGates:             DefaultTwoPersonGates(),
			GateTimeout:                DefaultGateTimeout,
			Escalation:                 DefaultEscalation,
			EscalationRepeats:          DefaultEscalationRepeats,
			MaxHostsOutOfService:       DefaultMaxHostsOutOfService,
			DefaultParallelism:         DefaultParallelism,
			ActivityMaxAttempts:        DefaultActivityMaxAttempts,
			PlanMaxAge:                 DefaultPlanMaxAge,
			ConfigHold:                 []string{"systemd_mask"},
			ConfigRelease:              []string{"systemd_unmask"},
			LiveMigrationStall:         DefaultLiveMigrationStall,
			LiveMigrationNotConverging: policy.NotConvergingAbort,
		},
		Chat:        defaultChat(),
		Checks:      defaultChecks(),
		InspectDisk: defaultInspectDisk(),
		Upgrade:     defaultUpgrade(),
		Trust:       defaultTrust(),
		Swift: Swift{
			BuilderDir: DefaultSwiftDir, SwiftDir: DefaultSwiftDir, DevicesDir: DefaultSwiftDevicesDir,
			ReconCachePath: DefaultSwiftReconCachePath, Fstab: DefaultSwiftFstab, AccountPort: DefaultSwiftAccountPort,
			ContainerPort: DefaultSwiftContainerPort, ObjectPort: DefaultSwiftObjectPort,
			Parallelism: DefaultSwiftParallelism, MaxStepPercent: DefaultSwiftMaxStepPercent, Nodes: map[string]SwiftNode{},
		},
	}
}

// Host returns the inventory entry of name.
func (c *Config) Host(name string) (Host, bool) {
	h, ok := c.Inventory[name]
	return h, ok
}

// HostsWithRole returns the sorted names of the inventory hosts that have role.
func (c *Config) HostsWithRole(role string) []string {
	var names []string
	for name, h := range c.Inventory {
		if slices.Contains(h.Roles, role) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// HostNames returns the sorted names of every inventory host.
func (c *Config) HostNames() []string {
	return slices.Sorted(maps.Keys(c.Inventory))
}

// SSHAddress returns "address:port" for an inventory host, using ssh.port
// when the host sets no port of its own.
func (c *Config) SSHAddress(name string) (string, bool) {
	h, ok := c.Inventory[name]
	if !ok {
		return "", false
	}
	port := h.Port
	if port == 0 {
		port = c.SSH.Port
	}
	return net.JoinHostPort(h.Address, strconv.Itoa(port)), true
}

// Command returns the argv template for a command on a host of role: the
// role_commands override if there is one, else commands.<name>. The returned
// slice is a copy.
func (c *Config) Command(role, name string) ([]string, bool) {
	if argv, ok := c.RoleCommands[role][name]; ok {
		return slices.Clone(argv), true
	}
	argv, ok := c.Commands[name]
	return slices.Clone(argv), ok
}

// HostCommand returns the argv template for a command on an inventory host:
// the override of the first of the host's roles that has one, else
// commands.<name>.
func (c *Config) HostCommand(host, name string) ([]string, bool) {
	h, ok := c.Inventory[host]
	if !ok {
		return nil, false
	}
	for _, role := range h.Roles {
		if argv, ok := c.RoleCommands[role][name]; ok {
			return slices.Clone(argv), true
		}
	}
	argv, ok := c.Commands[name]
	return slices.Clone(argv), ok
}
