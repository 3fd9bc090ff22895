package activities

import (
	"context"
	"fmt"
	"path"
	"strconv"
	"strings"
)

// SecurityUpdatesCommand is the catalogue entry run for a host of OS family f.
func SecurityUpdatesCommand(family string) string { return "security_updates_" + family }

// SecurityUpdatesProbe counts a host's pending security updates over SSH (daily): it runs the
// catalogue command security_updates_<os family> (the family from the host's inventory label).
// Debian-style output (apt-get -s upgrade) counts the "Inst" lines from a security suite; any
// other family's output counts one update per non-empty line.
func (c *Checks) SecurityUpdatesProbe(ctx context.Context, req ProbeRequest) (ProbeResult, error) {
	if c.Hosts == nil {
		return ProbeResult{}, errNotConfigured
	}
	inv, _, err := c.Hosts.lookup(req.Target)
	if err != nil {
		return ProbeResult{}, err
	}
	family := inv.Labels[c.Settings.OSFamilyLabel]
	if family == "" {
		family = c.Settings.DefaultOSFamily
	}
	role := ""
	if len(inv.Roles) > 0 {
		role = inv.Roles[0]
	}
	out, err := c.Hosts.run(ctx, req.Target, role, SecurityUpdatesCommand(family), nil)
	if err != nil {
		return ProbeResult{}, err
	}
	if out.ExitCode != 0 {
		return ProbeResult{}, fmt.Errorf("%s on %s: exit %d: %s", SecurityUpdatesCommand(family), req.Target, out.ExitCode, lastLine(out.Stderr+out.Stdout))
	}
	pkgs := parseSecurityUpdates(family, out.Stdout)
	res := ProbeResult{Summary: fmt.Sprintf("%d pending security update(s) (%s)", len(pkgs), family),
		Metrics: []CheckMetric{{Name: "host.security_updates", Subject: req.Target, Value: float64(len(pkgs))}}}
	if len(pkgs) > 0 {
		res.Findings = append(res.Findings, finding(SeverityWarning, req.Probe, "host/"+req.Target,
			"%s has %d pending security update(s): %s", req.Target, len(pkgs), limitList(pkgs, 8)))
	}
	return res, nil
}

func parseSecurityUpdates(family, out string) []string {
	var pkgs []string
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if family == "debian" || family == "ubuntu" {
			if !strings.HasPrefix(line, "Inst ") || !strings.Contains(strings.ToLower(line), "security") {
				continue
			}
			pkgs = append(pkgs, strings.Fields(line)[1])
			continue
		}
		pkgs = append(pkgs, strings.Fields(line)[0])
	}
	return pkgs
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// DiskFS is one line of df -P -B1.
type DiskFS struct {
	Source     string
	Size, Used int64
	Mount      string
}

func parseDF(out string) []DiskFS {
	var fss []DiskFS
	for i, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if i == 0 || len(f) < 6 {
			continue
		}
		size, err1 := strconv.ParseInt(f[1], 10, 64)
		used, err2 := strconv.ParseInt(f[2], 10, 64)
		avail, err3 := strconv.ParseInt(f[3], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil || size == 0 {
			continue
		}
		// Capacity as df computes it: used / (used + available), reserved blocks excluded.
		fss = append(fss, DiskFS{Source: f[0], Size: used + avail, Used: used, Mount: strings.Join(f[5:], " ")})
	}
	return fss
}

var pseudoFS = []string{"tmpfs", "devtmpfs", "udev", "overlay", "squashfs", "none", "shm", "cgroup"}

// DisksProbe checks a host's file systems and, on Swift storage nodes, every Swift device
// (weekly): one `df` over SSH (catalogue disk_free_all). File systems at or above
// checks.thresholds.disk_percent are findings; Swift devices (mounts under a node's devices
// directory) count as Swift devices of that node only.
func (c *Checks) DisksProbe(ctx context.Context, req ProbeRequest) (ProbeResult, error) {
	if c.Hosts == nil {
		return ProbeResult{}, errNotConfigured
	}
	inv, _, err := c.Hosts.lookup(req.Target)
	if err != nil {
		return ProbeResult{}, err
	}
	role := ""
	if len(inv.Roles) > 0 {
		role = inv.Roles[0]
	}
	out, err := c.Hosts.run(ctx, req.Target, role, "disk_free_all", nil)
	if err != nil {
		return ProbeResult{}, err
	}
	// Devices directories of every Swift node: a node's own are its Swift devices, the others'
	// are not this host's business (on the lab all hosts share one kernel).
	own, others := c.swiftDeviceDirs(req.Target, inv)
	limit := float64(c.Settings.DiskPercent)
	var res ProbeResult
	nfs, ndev := 0, 0
	for _, fs := range parseDF(out.Stdout) {
		if contains(pseudoFS, fs.Source) || strings.HasPrefix(fs.Mount, "/proc") || strings.HasPrefix(fs.Mount, "/sys") || strings.HasPrefix(fs.Mount, "/dev") || strings.HasPrefix(fs.Mount, "/run") {
			continue
		}
		pct := float64(fs.Used) / float64(fs.Size) * 100
		dev, isDev := under(fs.Mount, own)
		if !isDev {
			if _, other := under(fs.Mount, others); other {
				continue
			}
		}
		if isDev {
			ndev++
			res.Metrics = append(res.Metrics, CheckMetric{Name: "swift.device.used_percent", Subject: req.Target + "/" + dev, Value: pct, Unit: "%"})
		} else {
			nfs++
		}
		if pct < limit {
			continue
		}
		sev := SeverityWarning
		if pct >= 95 {
			sev = SeverityCritical
		}
		if isDev {
			res.Findings = append(res.Findings, finding(sev, "swift-devices", "swift/"+req.Target+"/"+dev,
				"Swift device %s on %s is %.0f%% full (%s of %s used, %s): add capacity or rebalance", dev, req.Target, pct, human(fs.Used), human(fs.Size), fs.Mount))
		} else {
			res.Findings = append(res.Findings, finding(sev, req.Probe, "host/"+req.Target+":"+fs.Mount,
				"%s on %s is %.0f%% full (%s of %s used)", fs.Mount, req.Target, pct, human(fs.Used), human(fs.Size)))
		}
	}
	res.Summary = fmt.Sprintf("%d file system(s), %d Swift device(s)", nfs, ndev)
	return res, nil
}

func (c *Checks) swiftDeviceDirs(host string, inv InventoryHost) (own []string, others []string) {
	for name, n := range c.Swift.Nodes {
		if n.DevicesDir == "" || len(n.Devices) == 0 {
			continue
		}
		if name == host {
			own = append(own, n.DevicesDir)
		} else {
			others = append(others, n.DevicesDir)
		}
	}
	if c.Hosts != nil {
		for name, h := range c.Hosts.Inventory {
			d := h.Labels["swift_devices"]
			if d == "" {
				continue
			}
			if name == host {
				own = append(own, d)
			} else {
				others = append(others, d)
			}
		}
	}
	return own, others
}

// under reports whether mount is a directory directly under one of dirs, and its name there.
func under(mount string, dirs []string) (string, bool) {
	for _, d := range dirs {
		d = path.Clean(d)
		if path.Dir(mount) == d {
			return path.Base(mount), true
		}
	}
	return "", false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func human(b int64) string {
	const unit = 1024
	if b < unit {
		return fmt.Sprintf("%d B", b)
	}
	div, exp := int64(unit), 0
	for n := b / unit; n >= unit; n /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(b)/float64(div), "KMGTPE"[exp])
}
