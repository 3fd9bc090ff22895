package workflows

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/internal/infra/checks"
)

var checksAct *activities.Checks

// Cadences of the recurring checks (RUNBOOKS.md §7), in order.
var Cadences = []string{"hourly", "daily", "weekly", "monthly", "quarterly", "half-yearly"}

// CheckInput is the input of Check: which cadence to run now.
type CheckInput struct {
	Meta
	// Cadence is hourly, daily, weekly, monthly, quarterly or half-yearly.
	Cadence string `json:"cadence" flag:"cadence" usage:"hourly, daily, weekly, monthly, quarterly or half-yearly (required)"`
	// Parallelism overrides checks.parallelism (probes running at once); 0 keeps it.
	Parallelism int `json:"parallelism,omitempty" flag:"parallelism" usage:"probes running at once (default: the worker's checks.parallelism)"`
}

func (in *CheckInput) GetMeta() *Meta     { return &in.Meta }
func (in *CheckInput) Target() string     { return in.Cadence }
func (in *CheckInput) WorkflowID() string { return CheckWorkflowID(in.Cadence) }
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
func CheckWorkflowID(cadence string) string { return "check/" + cadence }

// probeFailSeverity is the severity of a probe that could not answer: being blind to alerts is
// critical, to the rest a warning.
func probeFailSeverity(name string) string {
	switch name {
	case activities.ProbeAlerts, activities.ProbeAlertingTest:
		return SeverityCritical
	}
	return SeverityWarning
}

// probeActivity maps a probe name to its activity.
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
	case activities.ProbeSecurityUpdates:
		return checksAct.SecurityUpdatesProbe
	case activities.ProbeCapacity:
		return checksAct.CapacityProbe
	case activities.ProbeQuotas:
		return checksAct.QuotasProbe
	case activities.ProbeDisks:
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

// Check runs one cadence of the recurring checks (RUNBOOKS.md §7): the cadence's probes as
// activities in parallel (bounded), each probe that fails becoming a finding instead of failing
// the run; then the report (findings with severities, new since the previous run, trends) is
// recorded in the reports database and posted to chat. It is read-only, with no gates. A run
// fails only when its report cannot be recorded after the activity's retries, so that the
// schedule pauses on repeated failure.
func Check(ctx workflow.Context, in CheckInput) (*Report, error) {
	r, err := Begin(ctx, "check", in.Cadence, in.Meta, "plan")
	if err != nil {
		return nil, err
	}
	if err := in.Validate(); err != nil {
		return r.Finish(err, "invalid input")
	}
	info := workflow.GetInfo(ctx)
	at := r.Now()
	var plan activities.CheckPlan
	err = r.Do("plan", StepOptions{Target: in.Cadence}, func(ctx workflow.Context) error {
		return r.Exec(ctx, "plan", in.Cadence, checksAct.CheckPlan, &plan,
			activities.CheckPlanRequest{Cadence: in.Cadence, RunID: info.WorkflowExecution.RunID, At: at})
	})
	if err != nil {
		return r.Finish(err, "")
	}
	if in.Parallelism > 0 {
		plan.Parallelism = in.Parallelism
	}
	plan.Parallelism = max(plan.Parallelism, 1)
	if plan.ProbeTimeout <= 0 {
		plan.ProbeTimeout = 2 * time.Minute
	}

	// Steps: one per probe (per-host probes grouped), then the cadence's own, then record.
	var names []string
	targets := map[string]int{}
	for _, p := range plan.Probes {
		if targets[p.Name] == 0 {
			names = append(names, p.Name)
		}
		targets[p.Name]++
	}
	for _, n := range names {
		r.AddSteps("probe/" + n)
	}
	if in.Cadence == "half-yearly" {
		r.AddSteps("staged-upgrade")
	}
	r.AddSteps("record")
	lines := []string{fmt.Sprintf("%s check: %d probe(s), at most %d at once; a probe that fails is a finding", in.Cadence, len(plan.Probes), plan.Parallelism)}
	for _, n := range names {
		if targets[n] > 1 || slices.Contains([]string{activities.ProbeSecurityUpdates, activities.ProbeDisks}, n) {
			lines = append(lines, fmt.Sprintf("probe %s on %d host(s)", n, targets[n]))
		} else {
			lines = append(lines, "probe "+n)
		}
	}
	if in.Cadence == "half-yearly" {
		lines = append(lines, "staged upgrade: start it if the runbook exists, else a reminder")
	}
	lines = append(lines, "record the report (new since last time, trends) and post it to chat")
	lines = append(lines, plan.Notes...)
	r.SetPlan(lines)
	if r.DryRun() {
		return r.Finish(nil, "")
	}

	var since time.Time
	if plan.Previous != nil {
		since = *plan.Previous
	}
	findings, runs, metrics := r.runProbes(plan, in.Cadence, since, at)

	if in.Cadence == "half-yearly" {
		s := r.step("staged-upgrade")
		r.setStepState(s, StepRunning, "")
		// There is no staged-upgrade runbook yet (RUNBOOKS.md §6 is not built): remind, honestly.
		findings = append(findings, checks.Finding{Severity: SeverityWarning, Probe: "staged-upgrade", Subject: "upgrade/staged",
			Message: "reminder: plan and start the half-yearly staged upgrade (RUNBOOKS.md §6: one service at a time, all gates apply) and clean up after it; this Stackrun has no staged-upgrade runbook yet, so nothing was started"})
		r.setStepState(s, StepDone, "reminder (no staged-upgrade runbook)")
	}

	rep := checks.Report{Cadence: in.Cadence, WorkflowID: info.WorkflowExecution.ID, RunID: info.WorkflowExecution.RunID,
		RequestedBy: in.RequestedBy, Started: at, Ended: r.Now(), Findings: findings, Metrics: metrics, Probes: runs}
	failed := 0
	for _, p := range runs {
		if !p.OK {
			failed++
		}
	}
	var rec activities.RecordResult
	s := r.step("record")
	r.setStepState(s, StepRunning, "")
	rctx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Minute,
		RetryPolicy: &temporal.RetryPolicy{InitialInterval: 2 * time.Second, BackoffCoefficient: 2, MaximumInterval: 30 * time.Second,
			MaximumAttempts: int32(r.policy.ActivityMaxAttempts), NonRetryableErrorTypes: []string{ErrTypeInvalidInput, ErrTypeRefused}},
	})
	if err := r.Exec(rctx, "record", in.Cadence, checksAct.Record, &rec, rep); err != nil {
		s.Error = errText(err)
		r.setStepState(s, StepFailed, "")
		for _, f := range findings {
			r.AddFinding(f.Severity, f.Probe+": "+f.Subject, "%s", f.Message)
		}
		rep2, _ := r.Finish(err, fmt.Sprintf("%s check: report not recorded", in.Cadence))
		_ = rep2
		// Fail the workflow itself, so that the schedule pauses (PauseOnFailure).
		return nil, temporal.NewApplicationError(fmt.Sprintf("%s check: report not recorded: %s", in.Cadence, errText(err)), "CheckNotRecorded")
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
	return r.Finish(nil, summary)
}

// runProbes runs the plan's probes, at most plan.Parallelism at once. A probe that fails (out
// of its attempts, timed out) becomes a finding; the run goes on.
func (r *Run) runProbes(plan activities.CheckPlan, cadence string, since, at time.Time) ([]checks.Finding, []checks.ProbeRun, []checks.Metric) {
	ctx := r.ctx
	opts := func(name string) workflow.Context {
		timeout := plan.ProbeTimeout
		var hb time.Duration
		if name == activities.ProbeAlertingTest {
			timeout += plan.AlertTimeout
			hb = 30 * time.Second
		}
		return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
			StartToCloseTimeout: timeout,
			HeartbeatTimeout:    hb,
			// A probe is retried once: a check must finish on time, and a probe that fails is
			// itself a finding.
			RetryPolicy: &temporal.RetryPolicy{InitialInterval: 2 * time.Second, BackoffCoefficient: 2, MaximumAttempts: 2,
				NonRetryableErrorTypes: []string{ErrTypeInvalidInput, ErrTypeNotFound, ErrTypeRefused, ErrTypeHostKey}},
		})
	}
	type running struct {
		i     int
		call  *Call
		start time.Time
	}
	n := len(plan.Probes)
	results := make([]activities.ProbeResult, n)
	runs := make([]checks.ProbeRun, n)
	remaining := map[string]int{}
	failedBy := map[string]int{}
	for _, p := range plan.Probes {
		remaining[p.Name]++
	}
	started := map[string]bool{}
	next, inflight := 0, 0
	sel := workflow.NewSelector(ctx)
	var start func()
	start = func() {
		i := next
		next++
		p := plan.Probes[i]
		if !started[p.Name] {
			started[p.Name] = true
			r.setStepState(r.step("probe/"+p.Name), StepRunning, "")
		}
		target := p.Target
		if target == "" {
			target = cadence
		}
		req := activities.ProbeRequest{Cadence: cadence, Probe: p.Name, Target: p.Target, RunID: r.info.WorkflowExecution.RunID, At: at, Since: since}
		act := probeActivity(p.Name)
		c := running{i: i, start: workflow.Now(ctx)}
		if act == nil {
			runs[i] = checks.ProbeRun{Name: p.Name, Target: p.Target, Error: "unknown probe"}
			remaining[p.Name]--
			return
		}
		inflight++
		c.call = r.Start(opts(p.Name), "probe/"+p.Name, target, act, req)
		sel.AddFuture(c.call.Future(), func(f workflow.Future) {
			inflight--
			var res activities.ProbeResult
			err := c.call.Get(ctx, &res)
			run := checks.ProbeRun{Name: p.Name, Target: p.Target, OK: err == nil, Summary: res.Summary, Duration: workflow.Now(ctx).Sub(c.start)}
			if err != nil {
				run.Error = errText(err)
				failedBy[p.Name]++
				subj := "probe/" + p.Name
				if p.Target != "" {
					subj += "/" + p.Target
				}
				res = activities.ProbeResult{Findings: []checks.Finding{{Severity: probeFailSeverity(p.Name), Probe: p.Name, Subject: subj,
					Message: fmt.Sprintf("probe %s could not answer, so this part of the %s check is blind: %s", p.Name, cadence, run.Error)}}}
			}
			for k := range res.Findings {
				if res.Findings[k].Probe == "" {
					res.Findings[k].Probe = p.Name
				}
			}
			results[c.i], runs[c.i] = res, run
			remaining[p.Name]--
			if remaining[p.Name] == 0 {
				st := r.step("probe/" + p.Name)
				if failedBy[p.Name] > 0 {
					st.Error = fmt.Sprintf("%d of %d failed (reported as findings)", failedBy[p.Name], countProbes(plan, p.Name))
				}
				r.setStepState(st, StepDone, fmt.Sprintf("%d target(s)", countProbes(plan, p.Name)))
			}
		})
	}
	for next < n && inflight < plan.Parallelism {
		start()
	}
	for inflight > 0 {
		sel.Select(ctx)
		for next < n && inflight < plan.Parallelism {
			start()
		}
	}
	var findings []checks.Finding
	var metrics []checks.Metric
	for _, res := range results {
		findings = append(findings, res.Findings...)
		metrics = append(metrics, res.Metrics...)
	}
	return findings, runs, metrics
}

func countProbes(plan activities.CheckPlan, name string) int {
	n := 0
	for _, p := range plan.Probes {
		if p.Name == name {
			n++
		}
	}
	return n
}
