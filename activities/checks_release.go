package activities

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/stackrun/stackrun/config"
	"github.com/stackrun/stackrun/internal/infra/redact"
)

// Release is one row of the OpenStack release table (checks.release_table).
type Release struct {
	Name            string `json:"name"`
	Nova            int    `json:"nova"` // Nova's major version in the release
	Released        string `json:"released"`
	MaintainedUntil string `json:"maintained_until"`
}

// ReleaseTable is the table's file.
type ReleaseTable struct {
	Source   string    `json:"source"`
	Releases []Release `json:"releases"`
}

// loadReleases reads the release table from a file, an http(s) URL or the built-in copy.
func (c *Checks) loadReleases(ctx context.Context) (ReleaseTable, string, error) {
	src := c.Settings.ReleaseTable
	var b []byte
	var err error
	switch {
	case src == "":
		src, b = "built-in table (config/openstack_releases.json)", config.OpenStackReleases
	case strings.HasPrefix(src, "http://") || strings.HasPrefix(src, "https://"):
		hreq, _ := http.NewRequestWithContext(ctx, http.MethodGet, src, nil)
		resp, herr := c.httpClient().Do(hreq)
		if herr != nil {
			return ReleaseTable{}, redact.URL(src), unreachable("release table", src, herr)
		}
		defer resp.Body.Close()
		b, err = io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		src = redact.URL(src)
	default:
		b, err = os.ReadFile(src)
	}
	if err != nil {
		return ReleaseTable{}, src, fmt.Errorf("release table %s: %w", src, err)
	}
	var t ReleaseTable
	if err := json.Unmarshal(b, &t); err != nil {
		return ReleaseTable{}, src, fmt.Errorf("release table %s: %w", src, err)
	}
	for i, r := range t.Releases {
		for _, d := range []string{r.Released, r.MaintainedUntil} {
			if _, err := time.Parse(time.DateOnly, d); err != nil || r.Name == "" || r.Nova <= 0 {
				return ReleaseTable{}, src, fmt.Errorf("release table %s: row %d (%q): want name, nova > 0 and YYYY-MM-DD dates", src, i, r.Name)
			}
		}
	}
	sort.Slice(t.Releases, func(i, j int) bool { return t.Releases[i].Nova < t.Releases[j].Nova })
	return t, src, nil
}

// debUpstreamMajor is the upstream major version of a Debian version: 2:26.2.2-1~deb12u5 -> 26.
var debUpstreamMajor = regexp.MustCompile(`^(?:[0-9]+:)?([0-9]+)\.`)

// installedRelease reads the release package's version on the first controller (else the first
// host) of the inventory.
func (c *Checks) installedRelease(ctx context.Context) (host, pkg, version string, major int, err error) {
	pkg = c.Settings.ReleasePackage
	if pkg == "" {
		pkg = "python3-nova"
	}
	if c.Hosts == nil || len(c.Hosts.Inventory) == 0 {
		return "", pkg, "", 0, fmt.Errorf("no inventory host to read %s on", pkg)
	}
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range c.Hosts.Inventory {
			if !yield(n) {
				return
			}
		}
	})
	host = names[0]
	for _, n := range names {
		if slices.Contains(c.Hosts.Inventory[n].Roles, "controller") {
			host = n
			break
		}
	}
	res, err := c.Hosts.run(ctx, host, "", "package_status", nil, pkg)
	if err != nil {
		return host, pkg, "", 0, err
	}
	f, ok := ParseDpkgStatus(res.Stdout)[pkg]
	if !res.OK() || !ok || f.Installed == "" || !strings.HasSuffix(f.Status, " installed") {
		return host, pkg, "", 0, fmt.Errorf("%s is not installed on %s (dpkg-query exit %d)", pkg, host, res.ExitCode)
	}
	m := debUpstreamMajor.FindStringSubmatch(f.Installed)
	if m == nil {
		return host, pkg, f.Installed, 0, fmt.Errorf("%s %s on %s: no upstream major version", pkg, f.Installed, host)
	}
	major, _ = strconv.Atoi(m[1])
	return host, pkg, f.Installed, major, nil
}

// ReleaseProbe reviews the next major upgrade from facts (quarterly): the installed release (the
// release package's version on a controller) and its end of maintenance (the release table),
// and the release to plan for: checks.next_release when it is newer, else the oldest release
// still maintained that is newer than the installed one.
func (c *Checks) ReleaseProbe(ctx context.Context, req ProbeRequest) (ProbeResult, error) {
	table, src, err := c.loadReleases(ctx)
	if err != nil {
		return ProbeResult{}, err
	}
	host, pkg, version, major, err := c.installedRelease(ctx)
	if err != nil {
		return ProbeResult{}, err
	}
	now := c.now()
	var cur *Release
	for i := range table.Releases {
		if table.Releases[i].Nova == major {
			cur = &table.Releases[i]
		}
	}
	subj := "upgrade/next-release"
	if cur == nil {
		return ProbeResult{Findings: []CheckFinding{finding(SeverityWarning, req.Probe, subj,
			"%s %s on %s is Nova %d, which the release table (%s) does not list: update checks.release_table", pkg, version, host, major, src)}}, nil
	}
	until, _ := time.Parse(time.DateOnly, cur.MaintainedUntil)
	var next *Release
	for i := range table.Releases {
		r := &table.Releases[i]
		if r.Nova <= major {
			continue
		}
		if c.Settings.NextRelease != "" && strings.EqualFold(r.Name, c.Settings.NextRelease) {
			next = r
			break
		}
		if u, _ := time.Parse(time.DateOnly, r.MaintainedUntil); next == nil && u.After(now) {
			next = r
		}
	}
	installed := fmt.Sprintf("installed: %s (%s %s on %s)", cur.Name, pkg, version, host)
	plan := "no newer release in the table: update checks.release_table"
	if next != nil {
		plan = fmt.Sprintf("plan the upgrade to %s (released %s, maintained until %s): read its release notes and upgrade notes, test it in staging, book the half-yearly window",
			next.Name, next.Released, next.MaintainedUntil)
	}
	left := until.Sub(now)
	var f CheckFinding
	switch {
	case left < 0:
		f = finding(SeverityCritical, req.Probe, subj, "%s; out of upstream maintenance since %s (%d days): %s", installed, cur.MaintainedUntil, int(-left.Hours()/24), plan)
	case left < 183*24*time.Hour:
		f = finding(SeverityWarning, req.Probe, subj, "%s; upstream maintenance ends %s (in %d days): %s", installed, cur.MaintainedUntil, int(left.Hours()/24), plan)
	default:
		f = finding(SeverityInfo, req.Probe, subj, "%s; maintained until %s: %s", installed, cur.MaintainedUntil, plan)
	}
	if c.Settings.NextRelease != "" && (next == nil || !strings.EqualFold(next.Name, c.Settings.NextRelease)) {
		f.Message += fmt.Sprintf(" (checks.next_release %q is not a newer release in the table)", c.Settings.NextRelease)
	}
	return ProbeResult{Findings: []CheckFinding{f}, Summary: fmt.Sprintf("%s; release table: %s", installed, src),
		Metrics: []CheckMetric{{Name: "release.days_of_maintenance_left", Value: float64(int(left.Hours() / 24)), Unit: "d"}}}, nil
}
