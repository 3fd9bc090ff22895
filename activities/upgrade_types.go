package activities

import "time"

// UpgradeService is how one OpenStack service is upgraded (RUNBOOKS.md §6): its packages, where
// its configuration and databases are, which role services run its code, and which catalogue
// commands upgrade its schema. In ConfigDir and ConfigFile, {host} stands for the inventory name
// (the lab keeps each host's /etc under its own directory).
type UpgradeService struct {
	Name       string   `json:"name"`
	Packages   []string `json:"packages"`
	ConfigDir  string   `json:"config_dir"`
	ConfigFile string   `json:"config_file"`
	Databases  []string `json:"databases,omitempty"`
	// Processes are the role services (roles.<role>.services[].name) that run the service's code,
	// in restart order: for nova conductors first, the API last, computes after.
	Processes []string `json:"processes"`
	// Schema are the catalogue commands that upgrade the schema, in order.
	Schema []string `json:"schema,omitempty"`
}

// DefaultUpgradeOrder is the order of a staged upgrade: Placement right after Keystone (as
// openstack-ansible does), Nova before Cinder.
var DefaultUpgradeOrder = []string{"keystone", "placement", "glance", "nova", "cinder"}

// DefaultUpgradeServices are the packaged defaults (Debian/Ubuntu package names, /etc paths,
// systemd unit names); configuration (upgrade.services) overrides them field by field.
func DefaultUpgradeServices() map[string]UpgradeService {
	return map[string]UpgradeService{
		"keystone": {Name: "keystone", Packages: []string{"python3-keystone"}, ConfigDir: "/etc/keystone",
			ConfigFile: "/etc/keystone/keystone.conf", Databases: []string{"keystone"},
			Processes: []string{"keystone"}, Schema: []string{"schema_sync_keystone"}},
		"placement": {Name: "placement", Packages: []string{"python3-placement"}, ConfigDir: "/etc/placement",
			ConfigFile: "/etc/placement/placement.conf", Databases: []string{"placement"},
			Processes: []string{"placement-api"}, Schema: []string{"schema_sync_placement"}},
		"glance": {Name: "glance", Packages: []string{"python3-glance"}, ConfigDir: "/etc/glance",
			ConfigFile: "/etc/glance/glance-api.conf", Databases: []string{"glance"},
			Processes: []string{"glance-api"}, Schema: []string{"schema_sync_glance"}},
		"nova": {Name: "nova", Packages: []string{"python3-nova"}, ConfigDir: "/etc/nova",
			ConfigFile: "/etc/nova/nova.conf", Databases: []string{"nova_api", "nova", "nova_cell0"},
			Processes: []string{"nova-conductor", "nova-scheduler", "nova-api", "nova-compute"},
			Schema:    []string{"schema_sync_nova_api", "schema_sync_nova"}},
		"cinder": {Name: "cinder", Packages: []string{"python3-cinder"}, ConfigDir: "/etc/cinder",
			ConfigFile: "/etc/cinder/cinder.conf", Databases: []string{"cinder"},
			Processes: []string{"cinder-scheduler", "cinder-volume", "cinder-api"}, Schema: []string{"schema_sync_cinder"}},
	}
}

// UpgradeFacts is what the worker knows for a staged upgrade: every configured service and the
// hosts whose roles run one of its processes.
type UpgradeFacts struct {
	Services map[string]UpgradeServiceFacts `json:"services"`
	// DatabaseHost is where dumps and restores run.
	DatabaseHost string `json:"database_host"`
	// Order is the configured order of the services (upgrade.order).
	Order []string `json:"order"`
}

// UpgradeServiceFacts is one service and its hosts (sorted by name).
type UpgradeServiceFacts struct {
	UpgradeService
	Hosts []UpgradeHost `json:"hosts"`
}

// UpgradeHost is one host of a service and the service's processes on it, in restart order.
type UpgradeHost struct {
	Host      string         `json:"host"`
	Processes []ServiceFacts `json:"processes"`
}

// PackageFactsRequest asks for the state of packages on a host: the service's packages, or the
// ones named.
type PackageFactsRequest struct {
	Host     string   `json:"host"`
	Service  string   `json:"service,omitempty"`
	Packages []string `json:"packages,omitempty"`
}

// PackageFact is one package on one host.
type PackageFact struct {
	Package   string   `json:"package"`
	Installed string   `json:"installed,omitempty"` // "" when not installed
	Status    string   `json:"status,omitempty"`    // dpkg's Status line: "install ok installed"
	Candidate string   `json:"candidate,omitempty"` // apt's candidate ("" when apt knows none)
	Available []string `json:"available,omitempty"` // versions apt can install, newest first
}

// Has reports whether apt can install version v of the package.
func (f PackageFact) Has(v string) bool {
	for _, a := range f.Available {
		if a == v {
			return true
		}
	}
	return false
}

// PackageTarget is one package and the version to install.
type PackageTarget struct {
	Package string `json:"package"`
	Version string `json:"version"`
}

// PackageInstallRequest installs the target versions in one apt transaction. Without Downgrade a
// target older than the installed version is refused before anything changes.
type PackageInstallRequest struct {
	Host      string          `json:"host"`
	Service   string          `json:"service"`
	Targets   []PackageTarget `json:"targets"`
	Downgrade bool            `json:"downgrade,omitempty"`
}

// PackageChange is one package that a transaction moved (From "" = newly installed).
type PackageChange struct {
	Package string `json:"package"`
	From    string `json:"from,omitempty"`
	To      string `json:"to"`
}

// PackageTransaction records what one apt transaction did on a host.
type PackageTransaction struct {
	Host    string          `json:"host"`
	Service string          `json:"service"`
	Command string          `json:"command,omitempty"` // the apt-get command line
	Changes []PackageChange `json:"changes,omitempty"` // every package dpkg unpacked, dependencies included
	// Skipped is true when every target was installed already (another host of a shared package
	// set, or an earlier attempt of this step): nothing ran.
	Skipped bool      `json:"skipped,omitempty"`
	Note    string    `json:"note,omitempty"`
	At      time.Time `json:"at"`
}

// UpgradeBackupRequest asks for a backup of one service's configuration on Host, or of its databases
// (Tag names the dump: one dump per tag, never overwritten).
type UpgradeBackupRequest struct {
	Host    string `json:"host"`
	Service string `json:"service"`
	Tag     string `json:"tag,omitempty"`
}

// ConfigBackup is an archive of a service's configuration directory on a host. Archives are named
// by their content, so the same content is archived once.
type ConfigBackup struct {
	Host    string `json:"host"`
	Service string `json:"service"`
	Dir     string `json:"dir"`
	Archive string `json:"archive"`
	SHA256  string `json:"sha256"`
	Size    int64  `json:"size"`
	Reused  bool   `json:"reused,omitempty"` // an archive with this content existed: nothing was written
}

// DatabaseBackup is a dump of a service's databases on the database host.
type DatabaseBackup struct {
	Host      string   `json:"host"` // the database host, where the file is
	Service   string   `json:"service"`
	Databases []string `json:"databases"`
	File      string   `json:"file"`
	SHA256    string   `json:"sha256"`
	Size      int64    `json:"size"`
	Tables    int      `json:"tables"`
	Reused    bool     `json:"reused,omitempty"` // the dump of this tag existed: it was not taken again
}

// RestoreResult says what a restore did.
type RestoreResult struct {
	Host    string `json:"host"`
	Service string `json:"service"`
	What    string `json:"what"` // "configuration" | "database"
	From    string `json:"from"` // the archive or dump
	SHA256  string `json:"sha256"`
	// Already is true when the current state equalled the backup: nothing was changed.
	Already bool `json:"already,omitempty"`
	// SetAside is where the configuration found before the restore was moved (kept, never deleted).
	SetAside string `json:"set_aside,omitempty"`
	Verified bool   `json:"verified"` // the state after the restore equals the backup
	Note     string `json:"note,omitempty"`
}

// ServiceHostRequest names one upgrade service on one host.
type ServiceHostRequest struct {
	Host    string `json:"host"`
	Service string `json:"service"`
}

// SchemaStep is one schema command that ran.
type SchemaStep struct {
	Command  string        `json:"command"`
	Argv     []string      `json:"argv"`
	Duration time.Duration `json:"duration"`
	Output   string        `json:"output,omitempty"` // the last lines
}

// SchemaSyncResult records the schema commands of a service and the schema versions (alembic
// heads per database) before and after.
type SchemaSyncResult struct {
	Host    string              `json:"host"`
	Service string              `json:"service"`
	Steps   []SchemaStep        `json:"steps"`
	Before  map[string][]string `json:"before"`
	After   map[string][]string `json:"after"`
	Changed bool                `json:"changed"`
	Note    string              `json:"note"`
}

// Levels of nova-status upgrade check (its exit status 0, 1, 2).
const (
	CheckOK      = "ok"
	CheckWarning = "warning"
	CheckFailure = "failure"
)

// NovaCheckResult is the outcome of `nova-status upgrade check`.
type NovaCheckResult struct {
	Host   string `json:"host"`
	Code   int    `json:"code"`
	Level  string `json:"level"` // ok | warning | failure
	Output string `json:"output"`
}

// States of one `nova-manage db online_data_migrations` batch (its exit status 0, 1, 2).
const (
	MigrationsDone  = "done"
	MigrationsMore  = "more"
	MigrationsError = "error"
)

// OnlineMigrationsRequest runs one batch of online data migrations on a host.
type OnlineMigrationsRequest struct {
	Host     string `json:"host"`
	MaxCount int    `json:"max_count,omitempty"` // rows per batch (default 1000)
}

// OnlineMigrationsResult is one batch's outcome.
type OnlineMigrationsResult struct {
	Host   string `json:"host"`
	Code   int    `json:"code"`
	State  string `json:"state"` // done | more | error
	Output string `json:"output"`
}

// UpgradeLevelsRequest sets `[upgrade_levels] compute` in Nova's configuration file on a host
// ("auto" during the roll) or removes it (Compute "").
type UpgradeLevelsRequest struct {
	Host    string `json:"host"`
	Compute string `json:"compute,omitempty"`
}

// UpgradeLevelsResult says whether the file changed.
type UpgradeLevelsResult struct {
	Host    string `json:"host"`
	File    string `json:"file"`
	Before  string `json:"before,omitempty"` // the value found ("" = not set)
	Changed bool   `json:"changed"`
}
