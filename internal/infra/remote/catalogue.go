package remote

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/stackrun/stackrun/internal/infra/placeholder"
)

// Command is a program and its arguments, built by Catalogue.Build. It is never
// a shell string: Run quotes every element (ShellJoin).
type Command struct {
	Name string   // catalogue name, for logs and errors
	Argv []string // program and arguments
	// Lock is the resource a mutating command changes ("builder=/etc/swift/object.builder",
	// "device_path=/dev/sdb"...): Run takes a lock on the host for it and refuses to start while a
	// previous command holds it. Build sets it for every command not marked read-only.
	Lock string
}

// String is the quoted command line sent to the host.
func (c Command) String() string { return ShellJoin(c.Argv) }

// defaultCommands is the built-in catalogue: name -> argv template. Elements
// are literal, or contain {placeholder}s (see placeholder.Kinds), or are a single
// variadic {placeholder...} that takes the list passed to Build. Config
// (`commands`, `role_commands`) overrides entries or adds new ones.
var defaultCommands = map[string][]string{
	// services
	"service_start":    {"systemctl", "start", "{service}"},
	"service_stop":     {"systemctl", "stop", "{service}"},
	"service_restart":  {"systemctl", "restart", "{service}"},
	"service_status":   {"systemctl", "is-active", "{service}"}, // exit 0 = active
	"service_enable":   {"systemctl", "enable", "{service}"},
	"service_disable":  {"systemctl", "disable", "{service}"},
	"journal_tail":     {"journalctl", "--no-pager", "-o", "short-iso", "-n", "{lines}", "-u", "{service}"},
	"log_tail":         {"tail", "-n", "{lines}", "{log}"},
	"service_pid":      {"systemctl", "show", "-p", "MainPID", "--value", "{service}"}, // 0 = not running
	"tcp_established":  {"ss", "-H", "-t", "-n", "-p", "state", "established"},
	"process_children": {"pgrep", "-P", "{pid}"}, // exit 1 = none
	// configuration management hold and release (evacuate's maintenance, policy.config_hold and
	// policy.config_release): each is idempotent, so a retried step does no harm
	"systemd_mask":   {"systemctl", "mask", "{service}"}, // `systemctl start` refuses a masked unit
	"systemd_unmask": {"systemctl", "unmask", "{service}"},
	"puppet_disable": {"puppet", "agent", "--disable", "stackrun maintenance (evacuate)"},
	"puppet_enable":  {"puppet", "agent", "--enable"},
	// host facts
	"uptime":   {"cat", "/proc/uptime"},
	"hostname": {"cat", "/proc/sys/kernel/hostname"},
	// rolling-maintenance --action reboot: the session may end as the host goes down
	"host_reboot": {"systemctl", "reboot"},
	// disks and file systems (Swift disk replacement)
	"mount_list":        {"cat", "/proc/self/mounts"},
	"block_devices":     {"lsblk", "-J", "-b", "-o", "NAME,SIZE,TYPE,FSTYPE,MOUNTPOINT,LABEL"},
	"block_device":      {"lsblk", "-J", "-b", "-o", "NAME,SIZE,TYPE,FSTYPE,MOUNTPOINT,LABEL", "/dev/{device}"},
	"blkid":             {"blkid", "-o", "export", "{device_path}"},
	"block_device_path": {"lsblk", "-J", "-b", "-o", "NAME,SIZE,TYPE,FSTYPE,MOUNTPOINT,LABEL", "{device_path}"},
	"device_realpath":   {"readlink", "-e", "{device_path}"}, // the block device a by-id path or symlink names
	"umount":            {"umount", "{path}"},
	"umount_lazy":       {"umount", "-l", "{path}"},
	// mkfs_xfs_force overwrites an existing file system: only after a gate named the disk.
	"mkfs_xfs_force": {"mkfs.xfs", "-f", "-L", "{label}", "{device_path}"},
	"stat_owner":     {"stat", "-c", "%U:%G", "{path}"},
	"file_copy":      {"cp", "-p", "{path}", "{dest}"},
	"mkfs_xfs":       {"mkfs.xfs", "-L", "{label}", "{device_path}"}, // no -f: refuses to overwrite a file system
	"mount_label":    {"mount", "LABEL={label}", "{path}"},
	// mount_fstab mounts a mount point as its fstab entry says (swift-disk: by UUID).
	"mount_fstab": {"mount", "--fstab", "{fstab}", "{path}"},
	// kernel_log is the kernel's ring buffer (swift-disk reads what it says about a new disk).
	"kernel_log":    {"dmesg"},
	"mkdir":         {"mkdir", "-p", "{path}"},
	"chown_swift":   {"chown", "swift:swift", "{path}"},
	"list_dir":      {"ls", "-1A", "{path}"},
	"disk_free":     {"df", "-P", "-B1", "{path}"},
	"disk_free_all": {"df", "-P", "-B1", "-l"}, // every local file system (weekly disk check)
	// pending security updates, per OS family (checks.os_family_label): the daily check
	"security_updates_debian": {"apt-get", "-s", "-o", "Debug::NoLocking=true", "upgrade"},
	"security_updates_ubuntu": {"apt-get", "-s", "-o", "Debug::NoLocking=true", "upgrade"},
	"security_updates_rhel":   {"dnf", "-q", "updateinfo", "list", "--security"},
	"md5sum":                  {"md5sum", "{path...}"},
	"sha256sum":               {"sha256sum", "{path...}"},
	// inspect-disk (docs/disk-inspection.md): expose an instance's disk read-only, mount it
	// read-only, read capped files, and take it all down again. Nothing here writes the disk.
	"file_head":  {"head", "--bytes", "{bytes}", "{path}"},
	"file_touch": {"touch", "{path}"},
	"rmdir":      {"rmdir", "{path}"},
	// remove_small_file deletes a regular file under 64 bytes (an empty FUSE mount point, a PID
	// file) and nothing else: never a disk image.
	"remove_small_file": {"find", "{path}", "-maxdepth", "0", "-type", "f", "-size", "-64c", "-delete"},
	"image_info_qcow2":  {"qemu-img", "info", "--output=json", "--force-share", "--backing-chain", "-f", "qcow2", "{image}"},
	"image_info_raw":    {"qemu-img", "info", "--output=json", "--force-share", "-f", "raw", "{image}"},
	"inspect_export_qcow2": {"qemu-storage-daemon",
		"--blockdev", "driver=file,node-name=img,filename={image},read-only=on,locking=on",
		"--blockdev", "driver=qcow2,node-name=disk,file=img,read-only=on",
		"--export", "type=fuse,id=exp,node-name=disk,mountpoint={mountpoint},writable=off",
		"--pidfile", "{pidfile}", "--daemonize"},
	"inspect_export_raw": {"qemu-storage-daemon",
		"--blockdev", "driver=file,node-name=img,filename={image},read-only=on,locking=on",
		"--blockdev", "driver=raw,node-name=disk,file=img,read-only=on",
		"--export", "type=fuse,id=exp,node-name=disk,mountpoint={mountpoint},writable=off",
		"--pidfile", "{pidfile}", "--daemonize"},
	"fs_probe":          {"blkid", "--probe", "--output", "export", "{path}"},
	"fs_probe_at":       {"blkid", "--probe", "--output", "export", "--offset", "{offset}", "--size", "{size}", "{path}"},
	"partition_table":   {"sfdisk", "--json", "{path}"},
	"loop_list":         {"losetup", "--list", "--json", "--output", "NAME,BACK-FILE,RO,OFFSET,SIZELIMIT"},
	"loop_attach_ro":    {"losetup", "--read-only", "--find", "--show", "{path}"},
	"loop_attach_ro_at": {"losetup", "--read-only", "--find", "--show", "--offset", "{offset}", "--sizelimit", "{size}", "{path}"},
	"loop_detach":       {"losetup", "--detach", "{device_path}"},
	"mount_ro_ext4":     {"mount", "-t", "ext4", "-o", "ro,noload,nosuid,nodev,noexec", "{device_path}", "{mountpoint}"},
	"mount_ro_xfs":      {"mount", "-t", "xfs", "-o", "ro,norecovery,nouuid,nosuid,nodev,noexec", "{device_path}", "{mountpoint}"},
	"guest_resolve":     {"realpath", "--canonicalize-missing", "{path...}"},
	"guest_stat":        {"stat", "--dereference", "--format", "%d|%s|%F|%n", "{path...}"},
	"file_heads":        {"head", "--quiet", "--bytes", "{bytes}", "{path...}"},
	"daemon_list":       {"pgrep", "--list-full", "qemu-storage"}, // exit 1 = none
	"process_term":      {"kill", "-TERM", "{pid}"},
	"process_kill":      {"kill", "-KILL", "{pid}"},
	// swift rings
	"ring_show":       {"swift-ring-builder", "{builder}"},
	"ring_search":     {"swift-ring-builder", "{builder}", "search", "{ring_search}"},
	"ring_add":        {"swift-ring-builder", "{builder}", "add", "{ring_device}", "{weight}"},
	"ring_set_weight": {"swift-ring-builder", "{builder}", "set_weight", "{ring_search}", "{weight}"},
	"ring_remove":     {"swift-ring-builder", "{builder}", "remove", "{ring_search}"},
	"ring_rebalance":  {"swift-ring-builder", "{builder}", "rebalance"},
	"ring_write":      {"swift-ring-builder", "{builder}", "write_ring"},
	"ring_validate":   {"swift-ring-builder", "{builder}", "validate"},
	"ring_dispersion": {"swift-ring-builder", "{builder}", "dispersion"},
}

// DefaultCommands returns a copy of the built-in catalogue.
func DefaultCommands() map[string][]string {
	out := make(map[string][]string, len(defaultCommands))
	for k, v := range defaultCommands {
		out[k] = slices.Clone(v)
	}
	return out
}

// Catalogue holds validated command templates.
type Catalogue struct {
	cmds  map[string]template
	roles map[string]map[string]template
	// readOnly: Build refuses commands not marked read-only (ReadOnlyView).
	readOnly bool
}

type template struct {
	argv     []string
	variadic int // index of the {x...} element, -1 if none
}

var (
	reName        = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)
	rePlaceholder = regexp.MustCompile(`\{([a-z][a-z0-9_]*)(\.\.\.)?\}`)
)

// NewCatalogue validates and merges templates: defaults (nil means
// DefaultCommands()), then overrides (config `commands`), then per-role
// overrides (config `role_commands`), each of which may replace an entry or
// add a new name. A template must be non-empty, start with a literal program,
// use known placeholders only, and have at most one variadic {x...} element,
// which must stand alone. Errors wrap ErrInvalidArgument and name the entry.
func NewCatalogue(defaults, overrides map[string][]string, roleOverrides map[string]map[string][]string) (*Catalogue, error) {
	if defaults == nil {
		defaults = defaultCommands
	}
	c := &Catalogue{cmds: map[string]template{}, roles: map[string]map[string]template{}}
	for _, src := range []struct {
		where string
		m     map[string][]string
	}{{"defaults", defaults}, {"commands", overrides}} {
		for name, argv := range src.m {
			t, err := compile(name, argv)
			if err != nil {
				return nil, fmt.Errorf("%s.%s: %w", src.where, name, err)
			}
			c.cmds[name] = t
		}
	}
	for role, m := range roleOverrides {
		if !reName.MatchString(strings.ReplaceAll(role, "-", "_")) {
			return nil, fmt.Errorf("role_commands.%s: %w", role, &ArgError{Arg: "role", Value: displayValue(role), Reason: "invalid role name"})
		}
		c.roles[role] = map[string]template{}
		for name, argv := range m {
			t, err := compile(name, argv)
			if err != nil {
				return nil, fmt.Errorf("role_commands.%s.%s: %w", role, name, err)
			}
			c.roles[role][name] = t
		}
	}
	return c, nil
}

func compile(name string, argv []string) (template, error) {
	bad := func(reason string) (template, error) {
		return template{}, &ArgError{Command: name, Reason: reason}
	}
	if !reName.MatchString(name) {
		return bad("invalid command name (want ^[a-z][a-z0-9_]{0,63}$)")
	}
	if len(argv) == 0 {
		return bad("empty template")
	}
	t := template{argv: slices.Clone(argv), variadic: -1}
	for i, el := range argv {
		if el == "" {
			return bad(fmt.Sprintf("element %d is empty", i))
		}
		if strings.ContainsAny(el, "\x00\n\r") {
			return bad(fmt.Sprintf("element %d contains NUL or a newline", i))
		}
		rest := rePlaceholder.ReplaceAllStringFunc(el, func(m string) string {
			sub := rePlaceholder.FindStringSubmatch(m)
			if _, ok := placeholder.Kinds[sub[1]]; !ok {
				return "\x00unknown:" + sub[1] + "\x00"
			}
			if sub[2] != "" {
				return "\x00variadic\x00"
			}
			return ""
		})
		if j := strings.Index(rest, "\x00unknown:"); j >= 0 {
			ph := strings.SplitN(rest[j+len("\x00unknown:"):], "\x00", 2)[0]
			return bad(fmt.Sprintf("element %d: unknown placeholder {%s} (known: %s)", i, ph, strings.Join(sortedKeys(placeholder.Kinds), ", ")))
		}
		if strings.Contains(rest, "\x00variadic\x00") {
			if !rePlaceholder.MatchString(el) || rePlaceholder.FindString(el) != el {
				return bad(fmt.Sprintf("element %d: a variadic placeholder must be the whole element", i))
			}
			if t.variadic >= 0 {
				return bad("at most one variadic placeholder per template")
			}
			t.variadic = i
			rest = strings.ReplaceAll(rest, "\x00variadic\x00", "")
		}
		if strings.ContainsAny(rest, "{}") {
			return bad(fmt.Sprintf("element %d (%q): stray '{' or '}' (placeholders look like {name})", i, el))
		}
		if i == 0 && rest != el {
			return bad("the program (element 0) must be literal, not a placeholder")
		}
	}
	return t, nil
}

func sortedKeys[V any](m map[string]V) []string {
	ks := slices.Collect(maps.Keys(m))
	sort.Strings(ks)
	return ks
}

func (c *Catalogue) lookup(name, role string) (template, bool) {
	if t, ok := c.roles[role][name]; ok {
		return t, true
	}
	t, ok := c.cmds[name]
	return t, ok
}

// Names lists the command names available for role (base names plus the
// role's additions), sorted.
func (c *Catalogue) Names(role string) []string {
	set := map[string]bool{}
	for n := range c.cmds {
		set[n] = true
	}
	for n := range c.roles[role] {
		set[n] = true
	}
	return sortedKeys(set)
}

// Template returns the argv template used for name on role (the role override
// if any), for display in plans and dry runs.
func (c *Catalogue) Template(name, role string) ([]string, bool) {
	t, ok := c.lookup(name, role)
	return slices.Clone(t.argv), ok
}

// Build fills the template name (the role's override if it has one) with args
// and validates every value by its placeholder's kind (see ValidateArg). list
// fills the template's variadic {x...} element, one argv element per value,
// each validated; it is an error to pass list to a template without one, or
// none to a template with one. Args the template does not use are ignored, so
// callers may pass a superset (e.g. always "host"). Errors wrap
// ErrInvalidArgument and name the command and the argument. Build makes no
// connection.
func (c *Catalogue) Build(name, role string, args map[string]string, list ...string) (Command, error) {
	if err := c.refuseMutating(name); err != nil {
		return Command{}, err
	}
	t, ok := c.lookup(name, role)
	if !ok {
		return Command{}, &ArgError{Command: name, Reason: fmt.Sprintf("unknown command (known: %s)", strings.Join(c.Names(role), ", "))}
	}
	if t.variadic < 0 && len(list) > 0 {
		return Command{}, &ArgError{Command: name, Reason: "takes no list of values"}
	}
	argv := make([]string, 0, len(t.argv)+len(list))
	for i, el := range t.argv {
		if i == t.variadic {
			ph := rePlaceholder.FindStringSubmatch(el)[1]
			if len(list) == 0 {
				return Command{}, &ArgError{Command: name, Arg: ph + "...", Reason: "needs at least one value"}
			}
			for j, v := range list {
				if err := validateArg(ph, v); err != nil {
					err.Command, err.Arg, err.Kind = name, fmt.Sprintf("%s[%d]", ph, j), placeholder.Kinds[ph]
					return Command{}, err
				}
			}
			argv = append(argv, list...)
			continue
		}
		var firstErr *ArgError
		out := rePlaceholder.ReplaceAllStringFunc(el, func(m string) string {
			ph := rePlaceholder.FindStringSubmatch(m)[1]
			v, ok := args[ph]
			if firstErr != nil {
				return ""
			}
			if !ok {
				firstErr = &ArgError{Command: name, Arg: ph, Kind: placeholder.Kinds[ph], Reason: "missing argument"}
				return ""
			}
			if err := validateArg(ph, v); err != nil {
				err.Command, err.Arg, err.Kind = name, ph, placeholder.Kinds[ph]
				firstErr = err
				return ""
			}
			return v
		})
		if firstErr != nil {
			return Command{}, firstErr
		}
		argv = append(argv, out)
	}
	cmd := Command{Name: name, Argv: argv}
	if !IsReadOnly(name) {
		cmd.Lock = lockKey(name, args)
	}
	return cmd, nil
}
