package remote

import (
	"fmt"
	"github.com/stackrun/stackrun/internal/infra/placeholder"
	"maps"
	"regexp"
	"strings"
)

// Commands of the staged upgrade (RUNBOOKS.md §6): package facts and transactions with apt,
// configuration archives, database dumps and restores, the services' schema commands, Nova's
// upgrade check and online data migrations. Like every template they are argument lists, never
// shell strings; the programs the lab does not have under their packaged names (nova-manage,
// glance-manage...) are overridden by config `commands`.
var upgradeCommands = map[string][]string{
	// package facts: dpkg's status of each package, and apt's candidate and version table
	"package_status": {"dpkg-query", "-s", "{package...}"},
	"package_policy": {"apt-cache", "policy", "{package...}"},
	// exit 0 when version < version_b (Debian ordering: 1~deb12u4 < 1~deb12u5 < 1)
	"version_lt": {"dpkg", "--compare-versions", "{version}", "lt", "{version_b}"},
	// one apt transaction for every package of a service: non-interactive, keeps the local
	// configuration files (confdef/confold), waits for the dpkg lock instead of failing
	// setsid: apt runs in a session of its own, so a dropped SSH connection (a worker killed
	// mid-step) does not hang it up halfway through dpkg; the retried step waits for its lock.
	"package_install": {"setsid", "--wait", "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-q",
		"--no-install-recommends", "-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold",
		"-o", "DPkg::Lock::Timeout=300", "{package_version...}"},
	// the same, allowed to install older versions (rollback to the recorded ones)
	"package_downgrade": {"setsid", "--wait", "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-q",
		"--no-install-recommends", "--allow-downgrades", "-o", "Dpkg::Options::=--force-confdef",
		"-o", "Dpkg::Options::=--force-confold", "-o", "DPkg::Lock::Timeout=300", "{package_version...}"},
	// files of the backups: a sorted tar (same files, same bytes), published by a hard link
	// (ln never replaces an existing name), temporary files removed by a name ending in .partial
	"archive_create":  {"tar", "--sort=name", "-cf", "{partial}", "-C", "{dir}", "{entry}"},
	"archive_extract": {"tar", "-xpf", "{path}", "-C", "{dir}"},
	"file_size":       {"stat", "-c", "%s", "{path}"},
	"file_tail":       {"tail", "-c", "{count}", "{path}"},
	"file_publish":    {"ln", "-T", "{partial}", "{dest}"},
	"partial_remove":  {"rm", "-f", "{partial}"},
	"file_mode_owner": {"stat", "-c", "%a %U:%G", "{path}"},
	"chown":           {"chown", "{owner}", "{path}"},
	"dir_move_aside":  {"mv", "-T", "-n", "{path}", "{dest}"},
	// databases (on the database host, with a client defaults file holding the credentials)
	"db_dump": {"mariadb-dump", "--defaults-file={defaults_file}", "--single-transaction", "--routines", "--triggers",
		"--skip-dump-date", "--add-drop-database", "--result-file={partial}", "--databases", "{database...}"},
	"db_restore": {"mariadb", "--defaults-file={defaults_file}", "--batch", "--execute=source {path}"},
	// checks of a dump: one CREATE DATABASE per database, some tables (grep -c: exit 1 = none)
	"dump_count_databases": {"grep", "-c", "-F", "CREATE DATABASE", "{path}"},
	"dump_count_tables":    {"grep", "-c", "-F", "CREATE TABLE", "{path}"},
	"db_schema_version":    {"mariadb", "--defaults-file={defaults_file}", "-N", "-B", "--execute=SELECT version_num FROM alembic_version", "{database}"},
	// schema commands, in Nova's order for nova (api_db sync, then db sync)
	"schema_sync_keystone":  {"keystone-manage", "--config-file", "{config_file}", "db_sync"},
	"schema_sync_placement": {"placement-manage", "--config-file", "{config_file}", "db", "sync"},
	"schema_sync_glance":    {"glance-manage", "--config-file", "{config_file}", "db_sync"},
	"schema_sync_nova_api":  {"nova-manage", "--config-file", "{config_file}", "api_db", "sync"},
	"schema_sync_nova":      {"nova-manage", "--config-file", "{config_file}", "db", "sync"},
	"schema_sync_cinder":    {"cinder-manage", "--config-file", "{config_file}", "db", "sync"},
	// exit 0 ok, 1 warning, 2 failure
	"nova_upgrade_check": {"nova-status", "--config-file", "{config_file}", "upgrade", "check"},
	// exit 0 done, 1 more to do, 2 error
	"nova_online_data_migrations": {"nova-manage", "--config-file", "{config_file}", "db", "online_data_migrations", "--max-count", "{count}"},
}

// Argument kinds of the upgrade commands.

var (
	rePackage    = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]{1,99}$`)
	reDebVersion = regexp.MustCompile(`^([0-9]{1,9}:)?[0-9][A-Za-z0-9.+~-]{0,99}$`)
	reDatabase   = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)
	reFileName   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
	reOwner      = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}:[a-z_][a-z0-9_-]{0,31}$`)
)

// tildeKinds may contain '~' (Debian sorts 1~rc before 1). ShellJoin single-quotes every
// element, so the remote shell never expands it.
var tildeKinds = map[string]bool{placeholder.KindDebVersion: true, placeholder.KindPackageVersion: true}

func validDebVersion(v string) error {
	if !reDebVersion.MatchString(v) {
		return fmt.Errorf("must be a Debian version like 2:26.2.2-1~deb12u5 ([epoch:]upstream[-revision])")
	}
	return nil
}

func init() {
	maps.Copy(defaultCommands, upgradeCommands)
	maps.Copy(kindValidators, map[string]func(string) error{
		placeholder.KindPackage:    matchRe(rePackage, "a Debian package name (lower-case letters, digits, + . -)"),
		placeholder.KindDebVersion: validDebVersion,
		placeholder.KindPackageVersion: func(v string) error {
			pkg, ver, ok := strings.Cut(v, "=")
			if !ok || !rePackage.MatchString(pkg) {
				return fmt.Errorf("must be package=version, e.g. python3-nova=2:26.2.2-1~deb12u5")
			}
			return validDebVersion(ver)
		},
		placeholder.KindDatabase: matchRe(reDatabase, "a database name (lower-case letters, digits, _)"),
		placeholder.KindOwner:    matchRe(reOwner, "user:group"),
		placeholder.KindFileName: matchRe(reFileName, "one file name (letters, digits, . _ -), no slashes"),
		placeholder.KindPartialPath: func(v string) error {
			if err := validPath(v); err != nil {
				return err
			}
			if !strings.HasSuffix(v, ".partial") {
				return fmt.Errorf("must end in .partial (only temporary files may be removed or written here)")
			}
			return nil
		},
	})
}
