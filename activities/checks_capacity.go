package activities

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/stackrun/stackrun/internal/infra/checks"
	"github.com/stackrun/stackrun/internal/infra/openstack"
)

// capacity is the cloud's capacity (see capacity), for the probes.
func (c *Checks) capacity(ctx context.Context) (used, total map[string]float64, err error) {
	cl, err := c.clients(ctx)
	if err != nil {
		return nil, nil, err
	}
	return capacity(ctx, cl)
}

// capacity sums Placement's inventories and usages over every resource provider.
func capacity(ctx context.Context, cl *openstack.Clients) (used, total map[string]float64, err error) {
	if cl.Placement == nil {
		return nil, nil, fmt.Errorf("placement: %w", openstack.ErrServiceUnavailable)
	}
	rps, err := cl.ListResourceProviders(ctx)
	if err != nil {
		return nil, nil, err
	}
	used, total = map[string]float64{}, map[string]float64{}
	for _, rp := range rps {
		inv, err := cl.ProviderInventories(ctx, rp.UUID)
		if err != nil {
			return nil, nil, fmt.Errorf("inventories of %s: %w", rp.Name, err)
		}
		us, err := cl.ProviderUsages(ctx, rp.UUID)
		if err != nil {
			return nil, nil, fmt.Errorf("usages of %s: %w", rp.Name, err)
		}
		for rc, i := range inv {
			ratio := i.AllocationRatio
			if ratio == 0 {
				ratio = 1
			}
			total[rc] += float64(i.Total-i.Reserved) * ratio
		}
		for rc, u := range us {
			used[rc] += float64(u)
		}
	}
	return used, total, nil
}

var capacityClasses = []string{"VCPU", "MEMORY_MB", "DISK_GB"}

// CapacityProbe samples the cloud's capacity (Placement: used and allocatable vCPU, RAM, disk)
// for the projections; a class above 85% used is a warning.
func (c *Checks) CapacityProbe(ctx context.Context, req ProbeRequest) (ProbeResult, error) {
	used, total, err := c.capacity(ctx)
	if err != nil {
		return ProbeResult{}, err
	}
	var res ProbeResult
	var parts []string
	for _, rc := range capacityClasses {
		res.Metrics = append(res.Metrics,
			CheckMetric{Name: "capacity." + rc + ".used", Value: used[rc], Unit: rc},
			CheckMetric{Name: "capacity." + rc + ".total", Value: total[rc], Unit: rc})
		pct := 0.0
		if total[rc] > 0 {
			pct = used[rc] / total[rc] * 100
		}
		parts = append(parts, fmt.Sprintf("%s %.0f/%.0f (%.1f%%)", rc, used[rc], total[rc], pct))
		if pct >= 85 {
			res.Findings = append(res.Findings, finding(SeverityWarning, req.Probe, "capacity/"+rc, "%.1f%% of %s allocated (%.0f of %.0f)", pct, rc, used[rc], total[rc]))
		}
	}
	res.Summary = strings.Join(parts, ", ")
	return res, nil
}

// ProjectionProbe projects when vCPU, RAM and disk run out at the current trend, from the stored
// capacity history plus a sample taken now (quarterly).
func (c *Checks) ProjectionProbe(ctx context.Context, req ProbeRequest) (ProbeResult, error) {
	used, total, err := c.capacity(ctx)
	if err != nil {
		return ProbeResult{}, err
	}
	now := c.now()
	var res ProbeResult
	for _, rc := range capacityClasses {
		var hist []checks.Sample
		if c.Store != nil {
			hist, err = c.Store.Samples(ctx, "capacity."+rc+".used", "", now.AddDate(-1, 0, 0), req.RunID)
			if err != nil {
				return ProbeResult{}, err
			}
		}
		hist = append(hist, checks.Sample{At: now, Value: used[rc]})
		res.Metrics = append(res.Metrics, CheckMetric{Name: "capacity." + rc + ".used", Value: used[rc], Unit: rc},
			CheckMetric{Name: "capacity." + rc + ".total", Value: total[rc], Unit: rc})
		p, ok := checks.Project(rc, hist, total[rc], now)
		subj := "capacity/" + rc
		switch {
		case !ok:
			res.Findings = append(res.Findings, finding(SeverityInfo, req.Probe, subj,
				"%s: %.0f of %.0f allocated; not enough history for a projection (%d sample(s) over less than an hour; daily checks add one each)", rc, p.Used, total[rc], p.Samples))
		case p.RunsOut.IsZero():
			res.Findings = append(res.Findings, finding(SeverityInfo, req.Probe, subj,
				"%s: %.0f of %.0f allocated, trend %+.1f/day over %d samples: does not run out at this trend", rc, p.Used, total[rc], p.PerDay, p.Samples))
		default:
			sev := SeverityInfo
			if p.RunsOut.Before(now.AddDate(0, 6, 0)) {
				sev = SeverityWarning
			}
			if p.RunsOut.Before(now.AddDate(0, 3, 0)) {
				sev = SeverityCritical
			}
			res.Findings = append(res.Findings, finding(sev, req.Probe, subj,
				"%s: %.0f of %.0f allocated, trend %+.1f/day over %d samples: runs out around %s", rc, p.Used, total[rc], p.PerDay, p.Samples, p.RunsOut.Format("2006-01-02")))
		}
	}
	return res, nil
}

// periodOf is the usage period of a cadence ending at at: the month or the quarter before it.
func periodOf(cadence string, at time.Time) (time.Time, time.Time) {
	if cadence == "quarterly" {
		return at.AddDate(0, -3, 0), at
	}
	return at.AddDate(0, -1, 0), at
}

// UsageProbe reports each project's usage over the last month (monthly) or quarter (quarterly)
// from Nova's tenant usage API; the values are kept for trends.
func (c *Checks) UsageProbe(ctx context.Context, req ProbeRequest) (ProbeResult, error) {
	cl, err := c.clients(ctx)
	if err != nil {
		return ProbeResult{}, err
	}
	at := req.At
	if at.IsZero() {
		at = c.now()
	}
	start, end := periodOf(req.Cadence, at)
	start, end = start.UTC(), end.UTC()
	all, err := cl.ListTenantUsage(ctx, openstack.TenantUsageOpts{Start: start, End: end})
	if err != nil {
		return ProbeResult{}, err
	}
	names := projectNames(ctx, cl)
	period := start.Format("2006-01-02") + ".." + end.Format("2006-01-02")
	var res ProbeResult
	var vh float64
	sort.Slice(all, func(i, j int) bool { return all[i].ProjectID < all[j].ProjectID })
	for _, u := range all {
		p := u.ProjectID
		if n := names[p]; n != "" {
			p = n
		}
		vh += u.VCPUHours
		res.Metrics = append(res.Metrics,
			CheckMetric{Name: req.Cadence + ".usage.vcpu_hours", Subject: p, Value: u.VCPUHours, Unit: "vCPU-h", Period: period, Trend: true},
			CheckMetric{Name: req.Cadence + ".usage.ram_gb_hours", Subject: p, Value: u.RAMMBHours / 1024, Unit: "GiB-h", Period: period},
			CheckMetric{Name: req.Cadence + ".usage.instance_hours", Subject: p, Value: u.Hours, Unit: "h", Period: period})
		res.Findings = append(res.Findings, finding(SeverityInfo, req.Probe, "project/"+p,
			"%s: %.1f vCPU-hours, %.1f GiB-hours of RAM, %.1f disk GB-hours, %.1f instance-hours over %s (%d instance(s))",
			p, u.VCPUHours, u.RAMMBHours/1024, u.DiskGBHours, u.Hours, period, u.Instances))
	}
	res.Summary = fmt.Sprintf("%d project(s) used %.1f vCPU-hours over %s", len(all), vh, period)
	return res, nil
}

func projectNames(ctx context.Context, cl *openstack.Clients) map[string]string {
	out := map[string]string{}
	ps, err := cl.ListProjects(ctx)
	if err != nil {
		return out // the usage is still reported, by project ID
	}
	for _, p := range ps {
		out[p.ID] = p.Name
	}
	return out
}
