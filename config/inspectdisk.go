package config

import (
	"path"
	"strings"
)

// InspectDisk configures the inspect-disk runbook (docs/disk-inspection.md): where Nova keeps
// instance disks, where the worker exposes and mounts them on the compute host, and how the
// instance is taken out of use meanwhile.
type InspectDisk struct {
	// InstancesPath is Nova's [DEFAULT] instances_path on the computes; "{host}" in it is replaced
	// by the compute's inventory name (the lab keeps one directory per host).
	InstancesPath string `mapstructure:"instances_path" yaml:"instances_path" json:"instances_path"`
	// WorkDir holds, per inspected instance, the FUSE export file and the read-only mount point.
	WorkDir string `mapstructure:"work_dir" yaml:"work_dir" json:"work_dir"`
	// Pause is suspend (default) or stop: how the instance is taken out of use.
	Pause string `mapstructure:"pause" yaml:"pause" json:"pause"`
	// Method is qemu-storage-daemon (default; qcow2 and raw, with QEMU's lock check) or loop
	// (raw images only, losetup --read-only on the image itself, no lock check).
	Method string `mapstructure:"method" yaml:"method" json:"method"`
	// DefaultFormat is the image format when an instance directory has no disk.info (qcow2, raw).
	DefaultFormat string `mapstructure:"default_format" yaml:"default_format" json:"default_format"`
}

// Defaults of inspect_disk.
const (
	DefaultInstancesPath  = "/var/lib/nova/instances"
	DefaultInspectWorkDir = "/run/stackrun/inspect"
)

func defaultInspectDisk() InspectDisk {
	return InspectDisk{InstancesPath: DefaultInstancesPath, WorkDir: DefaultInspectWorkDir, Pause: "suspend",
		Method: "qemu-storage-daemon", DefaultFormat: "qcow2"}
}

func (c *Config) validateInspectDisk(ps *Problems) {
	d := c.InspectDisk
	for key, p := range map[string]string{"inspect_disk.instances_path": strings.ReplaceAll(d.InstancesPath, "{host}", "h"), "inspect_disk.work_dir": d.WorkDir} {
		if !strings.HasPrefix(p, "/") || path.Clean(p) != p || p == "/" {
			ps.add(key, "%q: must be an absolute, clean directory other than /", p)
		}
	}
	if strings.Count(d.InstancesPath, "{") != strings.Count(d.InstancesPath, "{host}") {
		ps.add("inspect_disk.instances_path", "%q: {host} is the only placeholder", d.InstancesPath)
	}
	check := func(key, v string, allowed ...string) {
		for _, a := range allowed {
			if v == a {
				return
			}
		}
		ps.add(key, "%q: must be one of %s", v, strings.Join(allowed, ", "))
	}
	check("inspect_disk.pause", d.Pause, "suspend", "stop")
	check("inspect_disk.method", d.Method, "qemu-storage-daemon", "loop")
	check("inspect_disk.default_format", d.DefaultFormat, "qcow2", "raw")
	if d.Method == "loop" && d.DefaultFormat != "raw" {
		ps.add("inspect_disk.method", "loop exposes raw images only, default_format is %s: set it to raw or use qemu-storage-daemon", d.DefaultFormat)
	}
}
