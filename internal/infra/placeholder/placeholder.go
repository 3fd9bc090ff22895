// Package placeholder names the {placeholders} that command templates (config commands.* and
// role_commands.*) may use, and the kind of argument each one takes. It is a leaf so that config
// can check templates without importing the SSH layer; internal/infra/remote validates every
// argument by its kind before a command runs.
package placeholder

// Argument kinds. Every placeholder has a kind; internal/infra/remote's ValidateArg checks a value
// against one.
const (
	KindService = "service" // systemd unit: ^[a-z0-9][a-z0-9@._-]{0,63}$
	KindPath    = "path"    // absolute, clean file path (see remote.ValidateArg)

	KindOwner = "owner" // user:group
)

// Kinds of the staged upgrade's commands.
const (
	KindPackage        = "package"         // Debian package name: python3-nova
	KindDebVersion     = "deb_version"     // Debian version: 2:26.2.2-1~deb12u4
	KindPackageVersion = "package_version" // package=version for apt-get install
	KindDatabase       = "database"        // database name: nova_api
	KindFileName       = "file_name"       // one path element: keystone
	KindPartialPath    = "partial_path"    // a KindPath ending in ".partial" (the only files rm may remove)
	KindDevice         = "device"          // kernel block device name, no slashes: ^[a-z][a-z0-9]{1,31}$
	KindDevicePath     = "device_path"     // a KindPath under /dev/
	KindBuilder        = "builder"         // a KindPath ending in ".builder"
	KindLabel          = "label"           // filesystem label (XFS: at most 12 bytes)
	KindNumber         = "number"          // decimal digits only, at most 18
	KindDecimal        = "decimal"         // digits with an optional fraction: 100, 12.5
	KindPort           = "port"            // 1..65535
	KindHostname       = "hostname"        // RFC 1123 host name or IPv4 address
	KindIP             = "ip"              // IPv4 or IPv6 address
	KindRingDevice     = "ring_device"     // swift-ring-builder add: r1z1-10.0.0.1:6200/d1 (IPv4 or host name; no [IPv6], '[' is refused)
	KindRingSearch     = "ring_search"     // swift-ring-builder search value: d12, r1z1-10.0.0.1:6200/d1, 10.0.0.1/d1
	KindInterface      = "interface"       // network interface name: ^[A-Za-z0-9][A-Za-z0-9._@-]{0,14}$ (IFNAMSIZ)
	KindNetns          = "netns"           // network namespace name (ip netns): ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$
)

// Kinds maps every placeholder name that templates may use to its argument kind. To add a
// placeholder, add a line here (and a kind above, with a validator in internal/infra/remote's
// kindValidators, if none fits).
var Kinds = map[string]string{
	"service":     KindService,
	"log":         KindPath,
	"lines":       KindNumber,
	"host":        KindHostname,
	"device":      KindDevice,
	"device_path": KindDevicePath,
	"path":        KindPath,
	"dest":        KindPath,
	"label":       KindLabel,
	"fstab":       KindPath,
	"builder":     KindBuilder,
	"weight":      KindDecimal,
	"count":       KindNumber,
	"seconds":     KindNumber,
	"port":        KindPort,
	"address":     KindIP,
	"ring_device": KindRingDevice,
	"ring_search": KindRingSearch,
	"interface":   KindInterface,
	"netns":       KindNetns,
	// staged upgrade
	"package":         KindPackage,
	"package_version": KindPackageVersion,
	"version":         KindDebVersion,
	"version_b":       KindDebVersion,
	"database":        KindDatabase,
	"defaults_file":   KindPath,
	"config_file":     KindPath,
	"dir":             KindPath,
	"entry":           KindFileName,
	"partial":         KindPartialPath,
	"owner":           KindOwner,
	// inspect-disk
	"image":      KindPath,
	"mountpoint": KindPath,
	"pidfile":    KindPath,
	"bytes":      KindNumber,
	"offset":     KindNumber,
	"size":       KindNumber,
	"pid":        KindNumber,
}
