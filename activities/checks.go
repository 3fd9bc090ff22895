package activities

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/quotasets"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/services"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/usage"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/projects"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/users"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/networkipavailabilities"
	"github.com/gophercloud/gophercloud/v2/openstack/placement/v1/resourceproviders"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/stackrun/stackrun/internal/infra/checks"
	"github.com/stackrun/stackrun/internal/infra/checks/store"
	"github.com/stackrun/stackrun/internal/infra/openstack"
)

// CheckSettings are the checks' configuration (config.Checks), resolved by the worker.
type CheckSettings struct {
	AlertmanagerURL    string
	ReceiverAddress    string
	DeliveryTimeout    time.Duration
	TicketsURL         string
	FailureDomains     []string
	OSFamilyLabel      string
	DefaultOSFamily    string
	QuotaPercent       int
	DiskPercent        int
	IPFreePercent      int
	LargeVCPUs         int
	LargeRAMMB         int
	AccountMaxInactive time.Duration
	NextRelease        string
	Parallelism        int
	ProbeTimeout       time.Duration
	// Operators are Stackrun's operators (policy approvers, chat users), checked for inactivity.
	Operators []string
}

// CheckStore is the reports database (*store.Store); nil means reports are not stored.
type CheckStore interface {
	Previous(ctx context.Context, cadence, runID string) (*store.Previous, error)
	Samples(ctx context.Context, name, subject string, since time.Time, runID string) ([]checks.Sample, error)
	Save(ctx context.Context, rep *checks.Report) error
}

// Checks runs the probes of the recurring checks and records their reports.
type Checks struct {
	Clients  func(ctx context.Context) (*openstack.Clients, error)
	Hosts    *Hosts
	Swift    SwiftCluster
	Store    CheckStore
	Settings CheckSettings
	HTTP     *http.Client
	// Temporal lists operators' runs (accounts probe); nil skips operators.
	Temporal client.Client
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
}

func (c *Checks) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *Checks) httpClient() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return &http.Client{Timeout: 30 * time.Second}
}

func (c *Checks) clients(ctx context.Context) (*openstack.Clients, error) {
	if c.Clients == nil {
		return nil, temporal.NewNonRetryableApplicationError("OpenStack is "+errNotConfigured.Error(), ErrTypeRefused, nil)
	}
	return c.Clients(ctx)
}

// Cadences and their probes (per-host probes are expanded over the inventory).
var cadenceProbes = map[string][]string{
	"hourly":      {ProbeAlerts, ProbeTickets},
	"daily":       {ProbeErrorInstances, ProbeComputeServices, ProbeCapacity, ProbeSecurityUpdates},
	"weekly":      {ProbeQuotas, ProbeImages, ProbeLargeInstances, ProbeNetwork, ProbeAlertingTest, ProbeDisks},
	"monthly":     {ProbeUsage, ProbeAccounts, ProbeCapacity},
	"quarterly":   {ProbeUsage, ProbeProjection, ProbeRelease},
	"half-yearly": {},
}

var perHostProbes = []string{ProbeSecurityUpdates, ProbeDisks}

// CheckPlan lists the probes of a cadence (per-host probes once per inventory host, sorted)
// and what the store knows of the previous run.
func (c *Checks) CheckPlan(ctx context.Context, req CheckPlanRequest) (CheckPlan, error) {
	names, ok := cadenceProbes[req.Cadence]
	if !ok {
		return CheckPlan{}, temporal.NewNonRetryableApplicationError(fmt.Sprintf("unknown cadence %q", req.Cadence), ErrTypeInvalidInput, nil)
	}
	plan := CheckPlan{Parallelism: c.Settings.Parallelism, ProbeTimeout: c.Settings.ProbeTimeout, AlertTimeout: c.Settings.DeliveryTimeout}
	var hosts []string
	if c.Hosts != nil {
		for h := range c.Hosts.Inventory {
			hosts = append(hosts, h)
		}
		sort.Strings(hosts)
	}
	for _, n := range names {
		if slices.Contains(perHostProbes, n) {
			for _, h := range hosts {
				plan.Probes = append(plan.Probes, ProbeSpec{Name: n, Target: h})
			}
			if len(hosts) == 0 {
				plan.Notes = append(plan.Notes, fmt.Sprintf("%s: the inventory has no hosts", n))
			}
			continue
		}
		plan.Probes = append(plan.Probes, ProbeSpec{Name: n})
	}
	if c.Store == nil {
		plan.Notes = append(plan.Notes, "reports are not stored (checks.reports_dsn is empty): no trends, no \"new since last time\"")
		return plan, nil
	}
	prev, err := c.Store.Previous(ctx, req.Cadence, req.RunID)
	if err != nil {
		// The probes still run; recording will retry the database and fail the run if it stays down.
		plan.Notes = append(plan.Notes, fmt.Sprintf("reports database: %v", err))
		return plan, nil
	}
	if prev != nil {
		t := prev.Ended
		plan.Previous = &t
	}
	return plan, nil
}

// Record marks the findings that are new since the previous run of the cadence, adds trend
// findings for the metrics that ask for them, and stores the report. Without a store it only
// renders the report. Idempotent per run ID.
func (c *Checks) Record(ctx context.Context, rep CheckReport) (RecordResult, error) {
	for i := range rep.Findings {
		f := &rep.Findings[i]
		f.Key = checks.FindingKey(f.Probe, f.Subject, f.Message)
	}
	if c.Store != nil {
		prev, err := c.Store.Previous(ctx, rep.Cadence, rep.RunID)
		if err != nil {
			return RecordResult{}, err
		}
		if prev != nil {
			t := prev.Ended
			rep.Previous = &t
			for i := range rep.Findings {
				rep.Findings[i].New = !prev.Keys[rep.Findings[i].Key]
			}
		}
		for _, m := range rep.Metrics {
			if !m.Trend {
				continue
			}
			past, err := c.Store.Samples(ctx, m.Name, m.Subject, rep.Ended.AddDate(-2, 0, 0), rep.RunID)
			if err != nil {
				return RecordResult{}, err
			}
			f := trendFinding(m, past)
			f.Key = checks.FindingKey(f.Probe, f.Subject, f.Message)
			f.New = rep.Previous != nil && !prevHas(prev, f.Key)
			rep.Findings = append(rep.Findings, f)
		}
	}
	checks.SortFindings(rep.Findings)
	rep.Stored = c.Store != nil
	if c.Store != nil {
		if err := c.Store.Save(ctx, &rep); err != nil {
			return RecordResult{}, err
		}
	}
	return RecordResult{Findings: rep.Findings, Stored: rep.Stored, Previous: rep.Previous, Markdown: rep.Markdown()}, nil
}

func prevHas(p *store.Previous, key string) bool { return p != nil && p.Keys[key] }

func trendFinding(m CheckMetric, past []checks.Sample) CheckFinding {
	subj := m.Name
	if m.Subject != "" {
		subj = m.Name + "/" + m.Subject
	}
	f := CheckFinding{Severity: SeverityInfo, Probe: "trend", Subject: subj}
	if len(past) == 0 {
		f.Message = fmt.Sprintf("%.1f %s (%s); no earlier value stored, the trend starts here", m.Value, m.Unit, m.Period)
		return f
	}
	last := past[len(past)-1]
	pct := checks.Trend(last.Value, m.Value)
	switch {
	case math.IsNaN(pct):
		f.Message = fmt.Sprintf("%.1f %s (%s), up from %.1f (%s)", m.Value, m.Unit, m.Period, last.Value, last.Period)
	default:
		f.Message = fmt.Sprintf("%.1f %s (%s) vs %.1f (%s): %+.0f%%", m.Value, m.Unit, m.Period, last.Value, last.Period, pct)
		if pct >= 50 {
			f.Severity = SeverityWarning
		}
	}
	return f
}

// finding is a shorthand for a check finding.
func finding(sev, probe, subject, format string, args ...any) CheckFinding {
	return CheckFinding{Severity: sev, Probe: probe, Subject: subject, Message: fmt.Sprintf(format, args...)}
}

// allServers lists every server of every project (embedded flavors at 2.47+).
func allServers(ctx context.Context, sc *gophercloud.ServiceClient) ([]servers.Server, error) {
	pages, err := servers.List(sc, servers.ListOpts{AllTenants: true, Limit: 1000}).AllPages(ctx)
	if err != nil {
		return nil, fmt.Errorf("list servers: %w", err)
	}
	return servers.ExtractServers(pages)
}

// ErrorInstancesProbe reports every instance in ERROR with its fault (daily).
func (c *Checks) ErrorInstancesProbe(ctx context.Context, req ProbeRequest) (ProbeResult, error) {
	cl, err := c.clients(ctx)
	if err != nil {
		return ProbeResult{}, err
	}
	all, err := allServers(ctx, cl.Compute)
	if err != nil {
		return ProbeResult{}, err
	}
	var res ProbeResult
	n := 0
	for _, s := range all {
		if s.Status != "ERROR" {
			continue
		}
		n++
		fault := s.Fault.Message
		if fault == "" {
			// The list may leave out the fault (instances that never left cell0): ask for the one.
			if full, err := servers.Get(ctx, cl.Compute, s.ID).Extract(); err == nil {
				s.Fault = full.Fault
				fault = full.Fault.Message
			}
		}
		if fault == "" {
			fault = "no fault recorded"
		}
		res.Findings = append(res.Findings, finding(SeverityCritical, req.Probe, "instance/"+s.ID,
			"%s (project %s, host %s) is in ERROR: %s (code %d)", s.Name, s.TenantID, orDash(s.Host), fault, s.Fault.Code))
	}
	res.Summary = fmt.Sprintf("%d instance(s), %d in ERROR", len(all), n)
	return res, nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// ComputeServicesProbe reports compute services that are down, and services disabled without a
// reason (daily).
func (c *Checks) ComputeServicesProbe(ctx context.Context, req ProbeRequest) (ProbeResult, error) {
	cl, err := c.clients(ctx)
	if err != nil {
		return ProbeResult{}, err
	}
	pages, err := services.List(cl.Compute, services.ListOpts{}).AllPages(ctx)
	if err != nil {
		return ProbeResult{}, fmt.Errorf("list compute services: %w", err)
	}
	all, err := services.ExtractServices(pages)
	if err != nil {
		return ProbeResult{}, err
	}
	var res ProbeResult
	down := 0
	for _, s := range all {
		subj := "service/" + s.Host + "/" + s.Binary
		if s.State == "down" {
			down++
			sev, why := SeverityCritical, ""
			if s.ForcedDown {
				why = " (forced down)"
			}
			if s.Status == "disabled" {
				sev = SeverityWarning
				why += fmt.Sprintf(", disabled: %q", s.DisabledReason)
			}
			res.Findings = append(res.Findings, finding(sev, req.Probe, subj, "%s on %s is down%s", s.Binary, s.Host, why))
		}
		if s.Status == "disabled" && strings.TrimSpace(s.DisabledReason) == "" {
			res.Findings = append(res.Findings, finding(SeverityWarning, req.Probe, subj+"/disabled",
				"%s on %s is disabled without a reason: say why (openstack compute service set --disable-reason) or enable it", s.Binary, s.Host))
		}
	}
	res.Summary = fmt.Sprintf("%d service(s), %d down", len(all), down)
	return res, nil
}

// capacity sums Placement's inventories and usages over every resource provider.
func capacity(ctx context.Context, cl *openstack.Clients) (used, total map[string]float64, err error) {
	if cl.Placement == nil {
		return nil, nil, fmt.Errorf("placement: %w", openstack.ErrServiceUnavailable)
	}
	pages, err := resourceproviders.List(cl.Placement, resourceproviders.ListOpts{}).AllPages(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("list resource providers: %w", err)
	}
	rps, err := resourceproviders.ExtractResourceProviders(pages)
	if err != nil {
		return nil, nil, err
	}
	used, total = map[string]float64{}, map[string]float64{}
	for _, rp := range rps {
		inv, err := resourceproviders.GetInventories(ctx, cl.Placement, rp.UUID).Extract()
		if err != nil {
			return nil, nil, fmt.Errorf("inventories of %s: %w", rp.Name, err)
		}
		us, err := resourceproviders.GetUsages(ctx, cl.Placement, rp.UUID).Extract()
		if err != nil {
			return nil, nil, fmt.Errorf("usages of %s: %w", rp.Name, err)
		}
		for rc, i := range inv.Inventories {
			ratio := float64(i.AllocationRatio)
			if ratio == 0 {
				ratio = 1
			}
			total[rc] += float64(i.Total-i.Reserved) * ratio
		}
		for rc, u := range us.Usages {
			used[rc] += float64(u)
		}
	}
	return used, total, nil
}

var capacityClasses = []string{"VCPU", "MEMORY_MB", "DISK_GB"}

// CapacityProbe samples the cloud's capacity (Placement: used and allocatable vCPU, RAM, disk)
// for the projections; a class above 85% used is a warning.
func (c *Checks) CapacityProbe(ctx context.Context, req ProbeRequest) (ProbeResult, error) {
	cl, err := c.clients(ctx)
	if err != nil {
		return ProbeResult{}, err
	}
	used, total, err := capacity(ctx, cl)
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
	cl, err := c.clients(ctx)
	if err != nil {
		return ProbeResult{}, err
	}
	used, total, err := capacity(ctx, cl)
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

// ReleaseProbe names the next release to plan for (quarterly).
func (c *Checks) ReleaseProbe(ctx context.Context, req ProbeRequest) (ProbeResult, error) {
	if c.Settings.NextRelease == "" {
		return ProbeResult{Findings: []CheckFinding{finding(SeverityWarning, req.Probe, "upgrade/next-release",
			"no next release to plan for: set checks.next_release (review the next major upgrade this quarter)")}}, nil
	}
	return ProbeResult{Findings: []CheckFinding{finding(SeverityInfo, req.Probe, "upgrade/next-release",
		"plan the upgrade to %s: read its release notes and upgrade notes, test it in staging, book the half-yearly window", c.Settings.NextRelease)}}, nil
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
	pages, err := usage.AllTenants(cl.Compute, usage.AllTenantsOpts{Detailed: true, Start: &start, End: &end}).AllPages(ctx)
	if err != nil {
		return ProbeResult{}, fmt.Errorf("tenant usage: %w", err)
	}
	all, err := usage.ExtractAllTenants(pages)
	if err != nil {
		return ProbeResult{}, err
	}
	names := projectNames(ctx, cl)
	period := start.Format("2006-01-02") + ".." + end.Format("2006-01-02")
	var res ProbeResult
	var vh float64
	sort.Slice(all, func(i, j int) bool { return all[i].TenantID < all[j].TenantID })
	for _, u := range all {
		p := u.TenantID
		if n := names[p]; n != "" {
			p = n
		}
		vh += u.TotalVCPUsUsage
		res.Metrics = append(res.Metrics,
			CheckMetric{Name: req.Cadence + ".usage.vcpu_hours", Subject: p, Value: u.TotalVCPUsUsage, Unit: "vCPU-h", Period: period, Trend: true},
			CheckMetric{Name: req.Cadence + ".usage.ram_gb_hours", Subject: p, Value: u.TotalMemoryMBUsage / 1024, Unit: "GiB-h", Period: period},
			CheckMetric{Name: req.Cadence + ".usage.instance_hours", Subject: p, Value: u.TotalHours, Unit: "h", Period: period})
		res.Findings = append(res.Findings, finding(SeverityInfo, req.Probe, "project/"+p,
			"%s: %.1f vCPU-hours, %.1f GiB-hours of RAM, %.1f disk GB-hours, %.1f instance-hours over %s (%d instance(s))",
			p, u.TotalVCPUsUsage, u.TotalMemoryMBUsage/1024, u.TotalLocalGBUsage, u.TotalHours, period, len(u.ServerUsages)))
	}
	res.Summary = fmt.Sprintf("%d project(s) used %.1f vCPU-hours over %s", len(all), vh, period)
	return res, nil
}

func projectNames(ctx context.Context, cl *openstack.Clients) map[string]string {
	out := map[string]string{}
	pages, err := projects.List(cl.Identity, projects.ListOpts{}).AllPages(ctx)
	if err != nil {
		return out
	}
	ps, _ := projects.ExtractProjects(pages)
	for _, p := range ps {
		out[p.ID] = p.Name
	}
	return out
}

// QuotasProbe reports projects near their Nova quotas (and Cinder's, when present) (weekly).
func (c *Checks) QuotasProbe(ctx context.Context, req ProbeRequest) (ProbeResult, error) {
	cl, err := c.clients(ctx)
	if err != nil {
		return ProbeResult{}, err
	}
	pages, err := projects.List(cl.Identity, projects.ListOpts{}).AllPages(ctx)
	if err != nil {
		return ProbeResult{}, fmt.Errorf("list projects: %w", err)
	}
	ps, err := projects.ExtractProjects(pages)
	if err != nil {
		return ProbeResult{}, err
	}
	limit := float64(c.Settings.QuotaPercent)
	var res ProbeResult
	for _, p := range ps {
		q, err := quotasets.GetDetail(ctx, cl.Compute, p.ID).Extract()
		if err != nil {
			return ProbeResult{}, fmt.Errorf("nova quotas of %s: %w", p.Name, err)
		}
		for _, d := range []struct {
			name string
			q    quotasets.QuotaDetail
		}{{"instances", q.Instances}, {"cores", q.Cores}, {"ram", q.RAM}, {"server_groups", q.ServerGroups}, {"key_pairs", q.KeyPairs}} {
			if d.q.Limit <= 0 {
				continue // unlimited (-1) or nothing allowed
			}
			pct := float64(d.q.InUse+d.q.Reserved) / float64(d.q.Limit) * 100
			if pct >= limit {
				sev := SeverityWarning
				if pct >= 100 {
					sev = SeverityCritical
				}
				res.Findings = append(res.Findings, finding(sev, req.Probe, "project/"+p.Name+"/nova/"+d.name,
					"project %s uses %d of %d %s (%.0f%%)", p.Name, d.q.InUse+d.q.Reserved, d.q.Limit, d.name, pct))
			}
		}
		if cl.BlockStorage != nil {
			if err := cinderQuotas(ctx, cl.BlockStorage, p.ID, p.Name, limit, req.Probe, &res); err != nil {
				return ProbeResult{}, err
			}
		}
	}
	res.Summary = fmt.Sprintf("%d project(s) checked against %d%% (Nova", len(ps), c.Settings.QuotaPercent)
	if cl.BlockStorage != nil {
		res.Summary += " and Cinder)"
	} else {
		res.Summary += "; no Cinder in the catalog)"
	}
	return res, nil
}

func cinderQuotas(ctx context.Context, sc *gophercloud.ServiceClient, id, name string, limit float64, probe string, res *ProbeResult) error {
	var body struct {
		QuotaSet map[string]any `json:"quota_set"`
	}
	_, err := sc.Get(ctx, sc.ServiceURL("os-quota-sets", id)+"?usage=true", &body, nil)
	if err != nil {
		return fmt.Errorf("cinder quotas of %s: %w", name, err)
	}
	for k, v := range body.QuotaSet {
		m, ok := v.(map[string]any)
		if !ok {
			continue
		}
		lim, _ := m["limit"].(float64)
		inUse, _ := m["in_use"].(float64)
		if lim <= 0 {
			continue
		}
		if pct := inUse / lim * 100; pct >= limit {
			res.Findings = append(res.Findings, finding(SeverityWarning, probe, "project/"+name+"/cinder/"+k,
				"project %s uses %.0f of %.0f %s (%.0f%%)", name, inUse, lim, k, pct))
		}
	}
	return nil
}

// ImagesProbe reports image usage: images in Glance, their size, and images no instance uses
// (weekly).
func (c *Checks) ImagesProbe(ctx context.Context, req ProbeRequest) (ProbeResult, error) {
	cl, err := c.clients(ctx)
	if err != nil {
		return ProbeResult{}, err
	}
	if cl.Image == nil {
		return ProbeResult{}, fmt.Errorf("image service: %w", openstack.ErrServiceUnavailable)
	}
	pages, err := images.List(cl.Image, images.ListOpts{Limit: 1000}).AllPages(ctx)
	if err != nil {
		return ProbeResult{}, fmt.Errorf("list images: %w", err)
	}
	imgs, err := images.ExtractImages(pages)
	if err != nil {
		return ProbeResult{}, err
	}
	srvs, err := allServers(ctx, cl.Compute)
	if err != nil {
		return ProbeResult{}, err
	}
	inUse := map[string]int{}
	for _, s := range srvs {
		if id, ok := s.Image["id"].(string); ok {
			inUse[id]++
		}
	}
	var size int64
	var unused []string
	var res ProbeResult
	for _, im := range imgs {
		size += im.SizeBytes
		if inUse[im.ID] == 0 {
			unused = append(unused, im.Name)
		}
		if im.Status != images.ImageStatusActive {
			res.Findings = append(res.Findings, finding(SeverityWarning, req.Probe, "image/"+im.ID, "image %s is %s", im.Name, im.Status))
		}
	}
	sort.Strings(unused)
	res.Metrics = append(res.Metrics, CheckMetric{Name: "images.count", Value: float64(len(imgs))}, CheckMetric{Name: "images.bytes", Value: float64(size), Unit: "B"})
	msg := fmt.Sprintf("%d image(s), %.1f MiB in Glance; %d used by instances", len(imgs), float64(size)/(1<<20), len(imgs)-len(unused))
	if len(unused) > 0 {
		msg += fmt.Sprintf("; not used by any instance: %s", limitList(unused, 10))
	}
	res.Findings = append(res.Findings, finding(SeverityInfo, req.Probe, "images", "%s", msg))
	res.Summary = msg
	return res, nil
}

func limitList(s []string, n int) string {
	if len(s) <= n {
		return strings.Join(s, ", ")
	}
	return strings.Join(s[:n], ", ") + fmt.Sprintf(" and %d more", len(s)-n)
}

// LargeInstancesProbe lists instances whose flavor is at least the thresholds (weekly).
func (c *Checks) LargeInstancesProbe(ctx context.Context, req ProbeRequest) (ProbeResult, error) {
	cl, err := c.clients(ctx)
	if err != nil {
		return ProbeResult{}, err
	}
	srvs, err := allServers(ctx, cl.Compute)
	if err != nil {
		return ProbeResult{}, err
	}
	var res ProbeResult
	for _, s := range srvs {
		vcpus, _ := s.Flavor["vcpus"].(float64)
		ram, _ := s.Flavor["ram"].(float64)
		name, _ := s.Flavor["original_name"].(string)
		if int(vcpus) >= c.Settings.LargeVCPUs || int(ram) >= c.Settings.LargeRAMMB {
			res.Findings = append(res.Findings, finding(SeverityInfo, req.Probe, "instance/"+s.ID,
				"%s (project %s, host %s): flavor %s with %d vCPU, %d MiB RAM", s.Name, s.TenantID, orDash(s.Host), name, int(vcpus), int(ram)))
		}
	}
	res.Summary = fmt.Sprintf("%d of %d instance(s) at or above %d vCPU or %d MiB", len(res.Findings), len(srvs), c.Settings.LargeVCPUs, c.Settings.LargeRAMMB)
	return res, nil
}

// NetworkProbe reports subnets and external networks (floating IP pools) with few free
// addresses, from Neutron's network IP availability (weekly).
func (c *Checks) NetworkProbe(ctx context.Context, req ProbeRequest) (ProbeResult, error) {
	cl, err := c.clients(ctx)
	if err != nil {
		return ProbeResult{}, err
	}
	if cl.Network == nil {
		return ProbeResult{}, fmt.Errorf("network service: %w", openstack.ErrServiceUnavailable)
	}
	pages, err := networkipavailabilities.List(cl.Network, networkipavailabilities.ListOpts{}).AllPages(ctx)
	if err != nil {
		return ProbeResult{}, fmt.Errorf("network IP availabilities: %w", err)
	}
	nets, err := networkipavailabilities.ExtractNetworkIPAvailabilities(pages)
	if err != nil {
		return ProbeResult{}, err
	}
	var res ProbeResult
	subnets := 0
	for _, n := range nets {
		for _, s := range n.SubnetIPAvailabilities {
			subnets++
			var total, used float64
			fmt.Sscan(s.TotalIPs, &total)
			fmt.Sscan(s.UsedIPs, &used)
			if total <= 0 {
				continue
			}
			free := (total - used) / total * 100
			res.Metrics = append(res.Metrics, CheckMetric{Name: "network.subnet.used_ips", Subject: n.NetworkName + "/" + s.SubnetName, Value: used})
			if free < float64(c.Settings.IPFreePercent) {
				sev := SeverityWarning
				if total-used < 1 {
					sev = SeverityCritical
				}
				res.Findings = append(res.Findings, finding(sev, req.Probe, "subnet/"+s.SubnetID,
					"subnet %s (%s) of network %s: %.0f of %.0f addresses used, %.1f%% free", s.SubnetName, s.CIDR, n.NetworkName, used, total, free))
			}
		}
	}
	res.Summary = fmt.Sprintf("%d network(s), %d subnet(s); floating IP pools are the external networks' subnets", len(nets), subnets)
	return res, nil
}

// AccountsProbe proposes accounts to remove (monthly): Keystone users that are disabled, or
// whose last activity (when Keystone reports it) is older than the configured age, and
// Stackrun operators who requested no run within that age.
func (c *Checks) AccountsProbe(ctx context.Context, req ProbeRequest) (ProbeResult, error) {
	cl, err := c.clients(ctx)
	if err != nil {
		return ProbeResult{}, err
	}
	pages, err := users.List(cl.Identity, users.ListOpts{}).AllPages(ctx)
	if err != nil {
		return ProbeResult{}, fmt.Errorf("list users: %w", err)
	}
	all, err := users.ExtractUsers(pages)
	if err != nil {
		return ProbeResult{}, err
	}
	now := c.now()
	age := c.Settings.AccountMaxInactive
	var res ProbeResult
	reported := 0
	for _, u := range all {
		if !u.Enabled {
			res.Findings = append(res.Findings, finding(SeverityWarning, req.Probe, "user/"+u.Name, "user %s (%s) is disabled: remove it, or say why it stays", u.Name, u.ID))
			continue
		}
		if v, ok := u.Extra["last_active_at"].(string); ok && v != "" {
			reported++
			if t, err := time.Parse("2006-01-02", v[:min(len(v), 10)]); err == nil && now.Sub(t) > age {
				res.Findings = append(res.Findings, finding(SeverityWarning, req.Probe, "user/"+u.Name, "user %s last active %s, more than %s ago: remove it?", u.Name, v, age))
			}
		}
	}
	if reported == 0 {
		res.Findings = append(res.Findings, finding(SeverityInfo, req.Probe, "users/inactivity",
			"Keystone reports no last activity for users (it does only with [security_compliance] disable_user_account_days_inactive set): only disabled users are listed"))
	}
	if c.Temporal != nil {
		for _, op := range c.Settings.Operators {
			last, err := lastRunBy(ctx, c.Temporal, op)
			if err != nil {
				return ProbeResult{}, fmt.Errorf("runs of operator %s: %w", op, err)
			}
			switch {
			case last.IsZero():
				res.Findings = append(res.Findings, finding(SeverityInfo, req.Probe, "operator/"+op, "operator %s has requested no run that Temporal still keeps: still needed?", op))
			case now.Sub(last) > age:
				res.Findings = append(res.Findings, finding(SeverityWarning, req.Probe, "operator/"+op, "operator %s last requested a run on %s, more than %s ago: remove from policy and chat?", op, last.Format("2006-01-02"), age))
			}
		}
	}
	res.Summary = fmt.Sprintf("%d user(s), %d operator(s) checked", len(all), len(c.Settings.Operators))
	return res, nil
}

func lastRunBy(ctx context.Context, c client.Client, op string) (time.Time, error) {
	resp, err := c.ListWorkflow(ctx, listRequest(fmt.Sprintf("RequestedBy = '%s'", strings.ReplaceAll(op, "'", ""))))
	if err != nil {
		return time.Time{}, err
	}
	var last time.Time
	for _, e := range resp.Executions {
		if t := e.GetStartTime().AsTime(); t.After(last) {
			last = t
		}
	}
	return last, nil
}

func heartbeat(ctx context.Context, details ...any) {
	if activity.IsActivity(ctx) {
		activity.RecordHeartbeat(ctx, details...)
	}
}

func listRequest(query string) *workflowservice.ListWorkflowExecutionsRequest {
	return &workflowservice.ListWorkflowExecutionsRequest{Query: query, PageSize: 20}
}
