package activities

import (
	"time"

	"github.com/stackrun/stackrun/internal/infra/checks"
)

// Types of the recurring checks (workflows.Check). The pure logic (grouping, trends, report
// rendering) is internal/infra/checks; the report store is internal/infra/checks/store.
type (
	CheckFinding = checks.Finding
	CheckMetric  = checks.Metric
	CheckReport  = checks.Report
	ProbeRun     = checks.ProbeRun
)

// Probe names. Per-host probes run once per inventory host (their Target).
const (
	ProbeAlerts          = "alerts"
	ProbeTickets         = "tickets"
	ProbeErrorInstances  = "error-instances"
	ProbeComputeServices = "compute-services"
	ProbeSecurityUpdates = "security-updates"
	ProbeCapacity        = "capacity"
	ProbeQuotas          = "quotas"
	ProbeDisks           = "disks"
	ProbeImages          = "images"
	ProbeLargeInstances  = "large-instances"
	ProbeNetwork         = "network-ips"
	ProbeAlertingTest    = "alerting-test"
	ProbeUsage           = "usage"
	ProbeAccounts        = "accounts"
	ProbeProjection      = "capacity-projection"
	ProbeRelease         = "next-release"
)

// CheckPlanRequest asks which probes a cadence runs.
type CheckPlanRequest struct {
	Cadence string    `json:"cadence"`
	RunID   string    `json:"run_id"`
	At      time.Time `json:"at"`
}

// ProbeSpec is one probe to run: its name and, for per-host probes, the host.
type ProbeSpec struct {
	Name   string `json:"name"`
	Target string `json:"target,omitempty"`
}

// CheckPlan is the probes of one run and what the store knows of the previous run.
type CheckPlan struct {
	Probes []ProbeSpec `json:"probes"`
	// Previous is when the previous stored run of this cadence ended (nil: none or no store).
	Previous *time.Time `json:"previous,omitempty"`
	// Parallelism bounds the probes running at once; ProbeTimeout bounds each (the alerting test
	// gets its delivery timeout on top).
	Parallelism  int           `json:"parallelism"`
	ProbeTimeout time.Duration `json:"probe_timeout"`
	AlertTimeout time.Duration `json:"alert_timeout"`
	// Notes are facts for the report (e.g. "reports are not stored: checks.reports_dsn is empty").
	Notes []string `json:"notes,omitempty"`
}

// ProbeRequest is the input of every probe activity.
type ProbeRequest struct {
	Cadence string    `json:"cadence"`
	Probe   string    `json:"probe"`
	Target  string    `json:"target,omitempty"`
	RunID   string    `json:"run_id"`
	At      time.Time `json:"at"`
	// Since is the previous run's end (zero: none); the tickets probe reports tickets after it.
	Since time.Time `json:"since,omitempty"`
}

// ProbeResult is what a probe found.
type ProbeResult struct {
	Findings []CheckFinding `json:"findings,omitempty"`
	Metrics  []CheckMetric  `json:"metrics,omitempty"`
	Summary  string         `json:"summary,omitempty"`
}

// RecordResult is what Record stored and derived: the final findings (with new flags, trend
// and projection findings added) and whether the report was stored.
type RecordResult struct {
	Findings []CheckFinding `json:"findings"`
	Stored   bool           `json:"stored"`
	Previous *time.Time     `json:"previous,omitempty"`
	Markdown string         `json:"markdown"`
}
