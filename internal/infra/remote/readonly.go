package remote

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ErrNotReadOnly is wrapped (with ErrInvalidArgument, so it is never retried) by Build on a
// read-only catalogue (ReadOnlyView) when asked for a command that is not marked read-only.
var ErrNotReadOnly = errors.New("not a read-only command")

// readOnlyCommands are the default commands known not to change the host: they only read files,
// kernel state or service state, or simulate (apt-get -s). Every other command is mutating.
// diagnoseCommands adds the ones the Diagnose runbook needs.
//
// The mark belongs to the name: a config override (commands, role_commands) of a read-only name
// stays read-only — the operator who maps log_tail to a lab's controller vouches for it — and a
// name that only config adds is mutating, so a read-only run can never reach it.
var readOnlyCommands = []string{
	"service_status", "service_pid", "journal_tail", "log_tail", "tcp_established", "process_children",
	"uptime", "hostname",
	"mount_list", "block_devices", "block_device", "blkid", "block_device_path", "device_realpath",
	"stat_owner", "list_dir", "disk_free", "disk_free_all", "kernel_log",
	"security_updates_debian", "security_updates_ubuntu", "security_updates_rhel",
	"md5sum", "sha256sum",
	"ring_show", "ring_search",
	// staged upgrade: package, file and schema facts
	"package_status", "package_policy", "version_lt", "db_schema_version", "nova_upgrade_check",
	"file_size", "file_tail", "file_mode_owner", "dump_count_databases", "dump_count_tables",
	// inspect-disk: facts about the image, the exports and the guest's files
	"daemon_list", "file_heads", "image_info_raw", "image_info_qcow2", "loop_list", "partition_table",
	"fs_probe", "fs_probe_at", "guest_stat", "guest_resolve", "file_head",
}

// mutatingCommands are the default commands that change the host. Each default command is in
// exactly one of the two lists (a test checks it), so a new command must be classified.
var mutatingCommands = []string{
	"service_start", "service_stop", "service_restart", "service_enable", "service_disable",
	"host_reboot", "systemd_mask", "systemd_unmask", "puppet_disable", "puppet_enable",
	"umount", "umount_lazy", "mkfs_xfs_force", "mkfs_xfs", "mount_label", "mount_fstab", "mkdir", "chown_swift", "file_copy",
	"ring_add", "ring_set_weight", "ring_remove", "ring_rebalance", "ring_write",
	// validate and dispersion read the builder only, as far as Swift 2.30 goes; nothing
	// read-only needs them, so they are not vouched for.
	"ring_validate", "ring_dispersion",
	// staged upgrade (a dump writes a file; the schema syncs and migrations change databases)
	"package_install", "package_downgrade", "archive_create", "archive_extract", "file_publish",
	"partial_remove", "chown", "dir_move_aside", "db_dump", "db_restore",
	"schema_sync_keystone", "schema_sync_placement", "schema_sync_glance", "schema_sync_nova_api",
	"schema_sync_nova", "schema_sync_cinder", "nova_online_data_migrations",
	// inspect-disk: read-only exports and mounts still change the host's state
	"inspect_export_raw", "inspect_export_qcow2", "loop_attach_ro", "loop_attach_ro_at", "loop_detach",
	"mount_ro_ext4", "mount_ro_xfs", "process_term", "process_kill", "rmdir", "file_touch", "remove_small_file",
}

// diagnoseCommands are read-only commands for the Diagnose runbook (RUNBOOKS.md §9): node
// resources and network facts. ip -all netns exec runs the same read-only ip command in every
// network namespace (Neutron's qdhcp-/qrouter- namespaces are where tenant addresses live).
var diagnoseCommands = map[string][]string{
	"loadavg":          {"cat", "/proc/loadavg"},
	"cpu_count":        {"nproc"},
	"meminfo":          {"cat", "/proc/meminfo"},
	"vmstat_disk":      {"vmstat", "-d"},
	"neigh_show":       {"ip", "-j", "neigh", "show"},
	"netns_neigh_show": {"ip", "-n", "{netns}", "-j", "neigh", "show"},
	"route_get":        {"ip", "-j", "route", "get", "{address}"},
	"netns_route_get":  {"ip", "-all", "netns", "exec", "ip", "-j", "route", "get", "{address}"},
	// -b: broadcast every request, so that every machine holding the address answers each
	// time (by default arping turns to unicast after the first reply and sees one of them).
	"arp_probe":       {"arping", "-b", "-c", "{count}", "-I", "{interface}", "{address}"},
	"netns_arp_probe": {"ip", "netns", "exec", "{netns}", "arping", "-b", "-c", "{count}", "-I", "{interface}", "{address}"},
	"ping":            {"ping", "-n", "-c", "{count}", "-W", "{seconds}", "{address}"},
	"netns_ping":      {"ip", "netns", "exec", "{netns}", "ping", "-n", "-c", "{count}", "-W", "{seconds}", "{address}"},
}

// outageCommands are read-only commands of outage-recovery (RUNBOOKS.md §8): the databases the
// server has, and the integrity check of the OpenStack schemas after the database came back
// (mariadb-check --check runs CHECK TABLE, which reads; it repairs nothing).
var outageCommands = map[string][]string{
	"db_list":  {"mariadb", "--defaults-file={defaults_file}", "-N", "-B", "--execute=SHOW DATABASES"},
	"db_check": {"mariadb-check", "--defaults-file={defaults_file}", "--check", "--databases", "{database...}"},
}

func init() {
	for name, argv := range diagnoseCommands {
		defaultCommands[name] = argv
		readOnlyCommands = append(readOnlyCommands, name)
	}
	for name, argv := range outageCommands {
		defaultCommands[name] = argv
		readOnlyCommands = append(readOnlyCommands, name)
	}
	slices.Sort(readOnlyCommands)
}

// IsReadOnly reports whether the command name is marked read-only (see readOnlyCommands).
func IsReadOnly(name string) bool {
	_, found := slices.BinarySearch(readOnlyCommands, name)
	return found
}

// ReadOnlyNames lists the read-only command names, sorted.
func ReadOnlyNames() []string { return slices.Clone(readOnlyCommands) }

// MutatingNames lists the default commands marked mutating, sorted.
func MutatingNames() []string {
	out := slices.Clone(mutatingCommands)
	slices.Sort(out)
	return out
}

// ReadOnlyView returns a catalogue with the same templates that builds read-only commands only:
// Build of any other name fails with ErrNotReadOnly before anything connects. A runbook that
// must change nothing holds only this view.
func (c *Catalogue) ReadOnlyView() *Catalogue {
	return &Catalogue{cmds: c.cmds, roles: c.roles, readOnly: true}
}

// IsReadOnlyView reports whether c builds read-only commands only.
func (c *Catalogue) IsReadOnlyView() bool { return c.readOnly }

func (c *Catalogue) refuseMutating(name string) error {
	if !c.readOnly || IsReadOnly(name) {
		return nil
	}
	return &NotReadOnlyError{Command: name}
}

// NotReadOnlyError is Build's refusal on a read-only view. It wraps ErrNotReadOnly and
// ErrInvalidArgument (non-retryable: asking again does not make the command read-only).
type NotReadOnlyError struct{ Command string }

func (e *NotReadOnlyError) Error() string {
	return fmt.Sprintf("remote: command %q refused: %v, and this run may only read (read-only commands: %s)",
		e.Command, ErrNotReadOnly, strings.Join(readOnlyCommands, ", "))
}

func (e *NotReadOnlyError) Unwrap() []error { return []error{ErrNotReadOnly, ErrInvalidArgument} }
