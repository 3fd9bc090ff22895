package config

import (
	"fmt"
	"path"
	"regexp"
	"slices"
	"strings"
)

// Upgrade configures the staged upgrade (RUNBOOKS.md §6): where backups go, where the databases
// are dumped, the order of the services, and per service its packages, configuration, databases,
// processes and schema commands. Services not listed keep the packaged defaults (Debian package
// names, /etc/<service>, systemd units); a listed service overrides the fields it sets.
type Upgrade struct {
	// BackupDir is the backup directory on every host; {host} stands for the inventory name.
	BackupDir string `mapstructure:"backup_dir" yaml:"backup_dir" json:"backup_dir"`
	// DatabaseHost is the inventory host where mariadb-dump and restores run.
	DatabaseHost string `mapstructure:"database_host" yaml:"database_host" json:"database_host"`
	// DatabaseDefaultsFile is the MariaDB/MySQL client defaults file on DatabaseHost with the
	// credentials of the dumps (never on a command line).
	DatabaseDefaultsFile string `mapstructure:"database_defaults_file" yaml:"database_defaults_file" json:"database_defaults_file"`
	// Order is the default order of the services.
	Order []string `mapstructure:"order" yaml:"order" json:"order"`
	// Services override the packaged defaults per service name.
	Services map[string]UpgradeService `mapstructure:"services" yaml:"services" json:"services"`
}

// UpgradeService is one service's upgrade facts; empty fields keep the default.
type UpgradeService struct {
	Packages []string `mapstructure:"packages" yaml:"packages,omitempty" json:"packages,omitempty"`
	// ConfigDir is backed up and restored; {host} stands for the inventory name.
	ConfigDir string `mapstructure:"config_dir" yaml:"config_dir,omitempty" json:"config_dir,omitempty"`
	// ConfigFile is passed to the schema commands; {host} stands for the inventory name.
	ConfigFile string   `mapstructure:"config_file" yaml:"config_file,omitempty" json:"config_file,omitempty"`
	Databases  []string `mapstructure:"databases" yaml:"databases,omitempty" json:"databases,omitempty"`
	// Processes are role services (roles.<role>.services[].name), in restart order.
	Processes []string `mapstructure:"processes" yaml:"processes,omitempty" json:"processes,omitempty"`
	// Schema are catalogue command names, run in order (e.g. schema_sync_nova_api, schema_sync_nova).
	Schema []string `mapstructure:"schema" yaml:"schema,omitempty" json:"schema,omitempty"`
}

// Defaults of the upgrade section.
const (
	DefaultUpgradeBackupDir       = "/var/backups/stackrun"
	DefaultUpgradeDefaultsFile    = "/etc/mysql/debian.cnf"
	upgradeServiceNamePattern     = `^[a-z][a-z0-9_-]{0,31}$`
	upgradePackageNamePattern     = `^[a-z0-9][a-z0-9+.-]{1,99}$`
	upgradeDatabaseNamePattern    = `^[a-z][a-z0-9_]{0,63}$`
	upgradeCommandNamePattern     = `^[a-z][a-z0-9_]{0,63}$`
	upgradeProcessNamePatternDesc = "lower-case letters, digits, '@._-'"
)

// DefaultUpgradeOrder is keystone, placement (right after Keystone, as openstack-ansible does),
// glance, nova, cinder.
func DefaultUpgradeOrder() []string {
	return []string{"keystone", "placement", "glance", "nova", "cinder"}
}

func defaultUpgrade() Upgrade {
	return Upgrade{BackupDir: DefaultUpgradeBackupDir, DatabaseDefaultsFile: DefaultUpgradeDefaultsFile,
		Order: DefaultUpgradeOrder()}
}

var (
	reUpgradeService  = regexp.MustCompile(upgradeServiceNamePattern)
	reUpgradePackage  = regexp.MustCompile(upgradePackageNamePattern)
	reUpgradeDatabase = regexp.MustCompile(upgradeDatabaseNamePattern)
	reUpgradeCommand  = regexp.MustCompile(upgradeCommandNamePattern)
	reUpgradeProcess  = regexp.MustCompile(`^[a-z0-9][a-z0-9@._-]{0,63}$`)
)

// checkHostPath checks an absolute clean path in which {host} may appear.
func checkHostPath(p string) error {
	x := strings.ReplaceAll(p, "{host}", "h")
	if !path.IsAbs(x) || path.Clean(x) != x || x == "/" {
		return fmt.Errorf("%q: want an absolute, clean path ({host} stands for the inventory name)", p)
	}
	if strings.ContainsAny(x, "{} \t\n;|&$`'\"\\*?[]~!#<>()") {
		return fmt.Errorf("%q: only {host} may be a placeholder, and no whitespace or shell characters", p)
	}
	return nil
}

func (c *Config) validateUpgrade(ps *Problems) {
	u := c.Upgrade
	if err := checkHostPath(u.BackupDir); err != nil {
		ps.add("upgrade.backup_dir", "%v", err)
	}
	if u.DatabaseHost != "" {
		if _, ok := c.Inventory[u.DatabaseHost]; !ok {
			ps.add("upgrade.database_host", "%q is not in the inventory", u.DatabaseHost)
		}
	}
	if err := checkHostPath(u.DatabaseDefaultsFile); err != nil || strings.Contains(u.DatabaseDefaultsFile, "{host}") {
		ps.add("upgrade.database_defaults_file", "%q: want an absolute, clean path on the database host", u.DatabaseDefaultsFile)
	}
	known := DefaultUpgradeOrder()
	for _, name := range sortedMapKeys(u.Services) {
		if !slices.Contains(known, name) {
			known = append(known, name)
		}
	}
	seen := map[string]bool{}
	for i, name := range u.Order {
		key := fmt.Sprintf("upgrade.order[%d]", i)
		switch {
		case !slices.Contains(known, name):
			ps.add(key, "unknown service %q (known: %s)", name, strings.Join(known, ", "))
		case seen[name]:
			ps.add(key, "%q listed twice", name)
		}
		seen[name] = true
	}
	for _, name := range sortedMapKeys(u.Services) {
		s, key := u.Services[name], "upgrade.services."+name
		if !reUpgradeService.MatchString(name) {
			ps.add(key, "invalid service name (%s)", upgradeServiceNamePattern)
		}
		for i, p := range s.Packages {
			if !reUpgradePackage.MatchString(p) {
				ps.add(fmt.Sprintf("%s.packages[%d]", key, i), "%q is not a Debian package name", p)
			}
		}
		for _, f := range []struct{ k, v string }{{"config_dir", s.ConfigDir}, {"config_file", s.ConfigFile}} {
			if f.v == "" {
				continue
			}
			if err := checkHostPath(f.v); err != nil {
				ps.add(key+"."+f.k, "%v", err)
			}
		}
		for i, d := range s.Databases {
			if !reUpgradeDatabase.MatchString(d) {
				ps.add(fmt.Sprintf("%s.databases[%d]", key, i), "%q is not a database name (%s)", d, upgradeDatabaseNamePattern)
			}
		}
		for i, p := range s.Processes {
			if !reUpgradeProcess.MatchString(p) {
				ps.add(fmt.Sprintf("%s.processes[%d]", key, i), "%q is not a service name (%s)", p, upgradeProcessNamePatternDesc)
			}
		}
		for i, cmd := range s.Schema {
			if !reUpgradeCommand.MatchString(cmd) {
				ps.add(fmt.Sprintf("%s.schema[%d]", key, i), "%q is not a command name", cmd)
			}
		}
	}
}
