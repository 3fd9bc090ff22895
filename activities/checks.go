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
	ReleaseTable       string // file or URL of the release table ("": config.OpenStackReleases)
	ReleasePackage     string
	StuckAfter         time.Duration
	DesiredStateKey    string
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

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func limitList(s []string, n int) string {
	if len(s) <= n {
		return strings.Join(s, ", ")
	}
	return strings.Join(s[:n], ", ") + fmt.Sprintf(" and %d more", len(s)-n)
}

func heartbeat(ctx context.Context, details ...any) {
	if activity.IsActivity(ctx) {
		activity.RecordHeartbeat(ctx, details...)
	}
}

// beatEvery calls beat every 5 s until stop is called: a long call (an RPC that may take Nova's
// whole 60 s timeout, apt, a dump) keeps its activity heartbeating while it runs.
func beatEvery(beat func()) (stop func()) {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				beat()
			}
		}
	}()
	return func() { close(done) }
}

func listRequest(query string) *workflowservice.ListWorkflowExecutionsRequest {
	return &workflowservice.ListWorkflowExecutionsRequest{Query: query, PageSize: 20}
}
