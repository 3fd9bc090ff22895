package workflows

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/internal/infra/checks"
)

// Cadences of the recurring checks (RUNBOOKS.md §7), in order.
var Cadences = []string{"hourly", "daily", "weekly", "monthly", "quarterly", "half-yearly"}

// Check runs one cadence of the recurring checks (RUNBOOKS.md §7): the cadence's probes as
// activities in parallel (bounded), each probe that fails becoming a finding instead of failing
// the run; then the report (findings with severities, new since the previous run, trends) is
// recorded in the reports database and posted to chat. It is read-only, with no gates. A run
// fails only when its report cannot be recorded after the activity's retries, so that the
// schedule pauses on repeated failure.
var Check = Define(Def[CheckInput, checkPlan]{
	Name:     "check",
	Short:    "Run one recurring check now (--cadence hourly|daily|weekly|monthly|quarterly|half-yearly): probes, findings, report",
	ReadOnly: true,
	Steps:    []string{"plan"},
	Key:      func(in *CheckInput) string { return in.Cadence },
	Plan:     planCheck,
	Act:      check,
})

// CheckInput is the input of Check: which cadence to run now.
type CheckInput struct {
	Meta
	// Cadence is hourly, daily, weekly, monthly, quarterly or half-yearly.
	Cadence string `json:"cadence" flag:"cadence" usage:"hourly, daily, weekly, monthly, quarterly or half-yearly (required)"`
	// Parallelism overrides checks.parallelism (probes running at once); 0 keeps it.
	Parallelism int `json:"parallelism,omitempty" flag:"parallelism" usage:"probes running at once (default: the worker's checks.parallelism)"`
}

func (in *CheckInput) Validate() error {
	if err := validateMeta(&in.Meta); err != nil {
		return err
	}
	if err := ValidateCadence(in.Cadence); err != nil {
		return err
	}
	if in.Parallelism < 0 || in.Parallelism > 500 {
		return &FieldError{Field: "parallelism", Value: fmt.Sprint(in.Parallelism), Problem: "must be 0 (the worker's default) to 500"}
	}
	return nil
}

// ValidateCadence checks a cadence name.
func ValidateCadence(c string) error {
	if c == "" {
		return &FieldError{Field: "cadence", Problem: "required (" + strings.Join(Cadences, ", ") + ")"}
	}
	if !slices.Contains(Cadences, c) {
		return &FieldError{Field: "cadence", Value: c, Problem: "unknown cadence: want one of " + strings.Join(Cadences, ", ")}
	}
	return nil
}

// CheckWorkflowID is the workflow ID of a cadence's run ("check/daily"); runs started by a
// schedule get the schedule's timestamp appended by Temporal.
func CheckWorkflowID(cadence string) string { return Check.WorkflowID(&CheckInput{Cadence: cadence}) }

// probeFailSeverity is the severity of a probe that could not answer: being blind to alerts is
// critical, to the rest a warning.
func probeFailSeverity(name string) string {
	switch name {
	case activities.ProbeAlerts, activities.ProbeAlertingTest:
		return activities.SeverityCritical
	}
	return activities.SeverityWarning
}

// probeActivity maps a probe name to its activity (per-host probes go through HostProbes).
func probeActivity(name string) any {
	switch name {
	case activities.ProbeAlerts:
		return checksAct.AlertsProbe
	case activities.ProbeTickets:
		return checksAct.TicketsProbe
	case activities.ProbeErrorInstances:
		return checksAct.ErrorInstancesProbe
	case activities.ProbeComputeServices:
		return checksAct.ComputeServicesProbe
	case activities.ProbeSecurityUpdates: // one host per activity: runs begun before host batches
		return checksAct.SecurityUpdatesProbe
	case activities.ProbeCapacity:
		return checksAct.CapacityProbe
	case activities.ProbeQuotas:
		return checksAct.QuotasProbe
	case activities.ProbeDisks: // as security-updates
		return checksAct.DisksProbe
	case activities.ProbeImages:
		return checksAct.ImagesProbe
	case activities.ProbeLargeInstances:
		return checksAct.LargeInstancesProbe
	case activities.ProbeNetwork:
		return checksAct.NetworkProbe
	case activities.ProbeAlertingTest:
		return checksAct.AlertingTestProbe
	case activities.ProbeUsage:
		return checksAct.UsageProbe
	case activities.ProbeAccounts:
		return checksAct.AccountsProbe
	case activities.ProbeProjection:
		return checksAct.ProjectionProbe
	case activities.ProbeRelease:
		return checksAct.ReleaseProbe
	}
	return nil
}

// checkPlan is what the check runs: the cadence's probes, as the worker's configuration and the
// previous run say, from the time the run began.
type checkPlan struct {
	activities.CheckPlan
	at time.Time
}

// probeStep is the step of one probe: "probe/<name>", "/<target>" for per-host probes.
func probeStep(p activities.ProbeSpec) string {
	if p.Target != "" {
		return "probe/" + p.Name + "/" + p.Target
	}
	return "probe/" + p.Name
}

func planCheck(r *Run, in *CheckInput, p *checkPlan) (Approval, error) {
	info := workflow.GetInfo(r.ctx)
	p.at = r.Now()
	err := r.Do("plan", StepOptions{Target: in.Cadence}, func(ctx workflow.Context) error {
		return r.Exec(ctx, "plan", in.Cadence, checksAct.CheckPlan, &p.CheckPlan,
			activities.CheckPlanRequest{Cadence: in.Cadence, RunID: info.WorkflowExecution.RunID, At: p.at})
	})
	if err != nil {
		return Approval{}, err
	}
	if in.Parallelism > 0 {
		p.Parallelism = in.Parallelism
	}
	p.Parallelism = max(p.Parallelism, 1)
	if p.ProbeTimeout <= 0 {
		p.ProbeTimeout = 2 * time.Minute
	}

	// Steps: one per probe, then the cadence's own, then record.
	var names []string
	targets := map[string]int{}
	for _, pr := range p.Probes {
		if targets[pr.Name] == 0 {
			names = append(names, pr.Name)
		}
		targets[pr.Name]++
		r.AddSteps(probeStep(pr))
	}
	if in.Cadence == "half-yearly" {
		r.AddSteps("staged-upgrade")
	}
	r.AddSteps("record")
	lines := []string{fmt.Sprintf("%s check: %d probe(s), at most %d at once; a probe that fails is a finding", in.Cadence, len(p.Probes), p.Parallelism)}
	for _, n := range names {
		if targets[n] > 1 || slices.Contains([]string{activities.ProbeSecurityUpdates, activities.ProbeDisks}, n) {
			lines = append(lines, fmt.Sprintf("probe %s on %d host(s)", n, targets[n]))
		} else {
			lines = append(lines, "probe "+n)
		}
	}
	if in.Cadence == "half-yearly" {
		lines = append(lines, "staged upgrade: start staged-upgrade --to-candidate; it waits at its first gate with its plan, so nothing changes until people approve")
	}
	lines = append(lines, "record the report (new since last time, trends) and post it to chat")
	lines = append(lines, p.Notes...)
	r.SetPlan(lines)
	return Approval{}, nil
}

func check(r *Run, in *CheckInput, p *checkPlan) (string, error) {
	info := workflow.GetInfo(r.ctx)
	var since time.Time
	if p.Previous != nil {
		since = *p.Previous
	}
	findings, runs, metrics := r.runProbes(p.CheckPlan, in.Cadence, since, p.at)

	if in.Cadence == "half-yearly" {
		findings = append(findings, r.startStagedUpgrade(in))
	}

	rep := checks.Report{Cadence: in.Cadence, WorkflowID: info.WorkflowExecution.ID, RunID: info.WorkflowExecution.RunID,
		RequestedBy: in.RequestedBy, Started: p.at, Ended: r.Now(), Findings: findings, Metrics: metrics, Probes: runs}
	failed := 0
	for _, pr := range runs {
		if !pr.OK {
			failed++
		}
	}
	var rec activities.RecordResult
	s := r.step("record")
	r.setStepState(s, StepRunning, "")
	rctx := r.WithActivity(r.ctx, ActOpts{Timeout: time.Minute, MaxInterval: 30 * time.Second,
		NonRetryable: []string{activities.ErrTypeInvalidInput, activities.ErrTypeRefused}})
	if err := r.Exec(rctx, "record", in.Cadence, checksAct.Record, &rec, rep); err != nil {
		s.Error = errText(err)
		r.setStepState(s, StepFailed, "")
		for _, f := range findings {
			r.AddFinding(f.Severity, f.Probe+": "+f.Subject, "%s", f.Message)
		}
		// Fail the workflow itself, so that the schedule pauses (PauseOnFailure).
		return fmt.Sprintf("%s check: report not recorded", in.Cadence), &WorkflowError{Cause: err,
			Err: temporal.NewApplicationError(fmt.Sprintf("%s check: report not recorded: %s", in.Cadence, errText(err)), "CheckNotRecorded")}
	}
	detail := "not stored (no reports database)"
	if rec.Stored {
		detail = "stored"
	}
	r.setStepState(s, StepDone, detail)
	newCount := 0
	for _, f := range rec.Findings {
		msg := f.Message
		if f.New {
			newCount++
			msg = "NEW: " + msg
		}
		r.AddFinding(f.Severity, f.Probe+": "+f.Subject, "%s", msg)
	}
	rep.Findings, rep.Stored, rep.Previous = rec.Findings, rec.Stored, rec.Previous
	r.SetDetail("cadence", in.Cadence)
	r.SetDetail("probes", runs)
	r.SetDetail("metrics", metrics)
	r.SetDetail("check_findings", rec.Findings)
	r.SetDetail("markdown", rec.Markdown)
	crit, warn, inf := rep.Counts()
	summary := fmt.Sprintf("%s check: %d critical, %d warning, %d info finding(s)", in.Cadence, crit, warn, inf)
	if rec.Previous != nil {
		summary += fmt.Sprintf(", %d new since %s", newCount, rec.Previous.UTC().Format(time.RFC3339))
	}
	summary += fmt.Sprintf("; %d probe(s), %d failed", len(runs), failed)
	return summary, nil
}

// runProbes runs the plan's probes, at most plan.Parallelism at once, each its own step. A probe
// that fails (out of its attempts, timed out) becomes a finding of the check; the run goes on.
// Per-host probes run in batches (hostBatches): one activity per batch, a step per host.
func (r *Run) runProbes(plan activities.CheckPlan, cadence string, since, at time.Time) ([]checks.Finding, []checks.ProbeRun, []checks.Metric) {
	n := len(plan.Probes)
	results := make([]activities.ProbeResult, n)
	runs := make([]checks.ProbeRun, n)
	// Runs begun before host batches replay with one activity per host.
	batched := workflow.GetVersion(r.ctx, "check-host-batches", workflow.DefaultVersion, 1) == 1
	units, size := hostBatches(plan.Probes, plan.Parallelism, batched)
	_ = r.Each(r.ctx, len(units), max(plan.Parallelism/size, 1), func(ctx workflow.Context, u int) error {
		if batched && activities.IsHostProbe(plan.Probes[units[u][0]].Name) {
			r.runHostBatch(ctx, plan, units[u], cadence, since, at, results, runs)
			return nil
		}
		i := units[u][0]
		p := plan.Probes[i]
		name := probeStep(p)
		target := cmp.Or(p.Target, cadence)
		act := probeActivity(p.Name)
		if act == nil {
			runs[i] = checks.ProbeRun{Name: p.Name, Target: p.Target, Error: "unknown probe"}
			return nil
		}
		req := activities.ProbeRequest{Cadence: cadence, Probe: p.Name, Target: p.Target, RunID: r.info.WorkflowExecution.RunID, At: at, Since: since}
		timeout, hb := plan.ProbeTimeout, time.Duration(0)
		if p.Name == activities.ProbeAlertingTest {
			timeout += plan.AlertTimeout
			hb = 30 * time.Second
		}
		// A probe is retried twice: a check must finish on time, and a probe that fails is
		// itself a finding; but a worker killed mid-probe spends one attempt and its retry's
		// first dispatch can be lost to the dead worker's poll: two would report a false blind spot.
		opts := ActOpts{Timeout: timeout, Heartbeat: hb, Attempts: 3, NonRetryable: probeNonRetryable}
		started := workflow.Now(ctx)
		var res activities.ProbeResult
		failed := func(err error) {
			runs[i].Error = errText(err)
			res = probeFailed(p, cadence, runs[i].Error)
		}
		err := r.DoIn(ctx, name, StepOptions{Target: target, ReadOnly: true, OnFailure: failed}, func(ctx workflow.Context) error {
			return r.Exec(r.WithActivity(ctx, opts), name, target, act, &res, req)
		})
		runs[i].Name, runs[i].Target, runs[i].OK = p.Name, p.Target, runs[i].Error == "" && err == nil
		runs[i].Summary, runs[i].Duration = res.Summary, workflow.Now(ctx).Sub(started)
		results[i] = probeOwned(res, p.Name)
		return err
	})
	var findings []checks.Finding
	var metrics []checks.Metric
	for _, res := range results {
		findings = append(findings, res.Findings...)
		metrics = append(metrics, res.Metrics...)
	}
	return findings, runs, metrics
}
