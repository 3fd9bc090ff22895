package workflows

import (
	"cmp"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"runtime"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/config/policy"
)

// Run is the machinery every runbook uses: steps and their states, the status query, search
// attributes, gates, stalled steps, the audit record and the report. The runbook's workflow
// (define.go) begins it, the runbook runs its steps through Do and Exec and asks people through
// Gate, and the workflow finishes it once, after the exit hooks (OnExit).
type Run struct {
	ctx     workflow.Context
	info    *workflow.Info
	runbook string
	target  string
	meta    Meta
	policy  policy.Policy
	started time.Time

	status  RunStatus
	final   RunStatus
	planned bool
	current string
	attrs   map[string]string

	steps   []*step
	byName  map[string]*step
	gates   map[string]*gate
	stalled map[string]*stall

	plan      []string
	findings  []activities.Finding
	decisions []Decision
	refused   []RefusedMessage
	audit     []AuditEntry
	details   map[string]any
	leftState string
	leased    []string
	// notes are notifications under way; Finish waits for them before the run closes.
	notes []workflow.Future
	// summary is the run's summary once Finish computed it (for the run-finished notification).
	summary string
	// exits are the OnExit hooks, run last-registered first before the report is written.
	exits []func()
	// record, when set, makes the run's result record(report) (ReturnRecord).
	record func(*Report) *Report
	// Of the exits, leaseExits give back a lease (the next run of a chain registers them again
	// from its leases' keys; a released lease's is a no-op) and everyRun are Act's own, which Act
	// registers again in every run of a chain (continue.go).
	leaseExits, everyRun int

	// The stale-plan check (stale.go): replan runs the runbook's Plan again; approval is what the
	// plan asked for; plannedAt is when the plan was (re)made; acting is set at Act's first step
	// that changes the world.
	replan    func() (Approval, error)
	approval  Approval
	plannedAt time.Time
	acting    bool
	facts     []Fact
	// planning is set while the runbook's Plan runs (a continue-as-new then goes on with Plan);
	// planBase is how many findings the run had before it.
	planning bool
	planBase int

	// trust is the run's verification of signatures (trust.go); readOnly is the runbook's
	// Def.ReadOnly.
	trust    runTrust
	readOnly bool
	// wanted are the lease keys this run waits for (lease.go).
	wanted []string

	// A chain of runs (continue.go): runs before this one; the run ID each lease was granted
	// to; the runbook's state from the last run (nil: this run plans); forged: the input
	// carried a chain's state but Temporal did not continue this run.
	runs      int
	leaseRuns map[string]string
	resumed   []byte
	forged    bool
}

// AbortError ends a run as Aborted: a gate was rejected or timed out under an abort policy, or an
// operator chose abort on a stalled step.
type AbortError struct{ Reason string }

func (e *AbortError) Error() string { return "aborted: " + e.Reason }

// IsAbort reports whether err ends the run as Aborted.
func IsAbort(err error) bool {
	var a *AbortError
	return errors.As(err, &a)
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)

// ValidOperator reports whether s is acceptable as an operator's name.
func ValidOperator(s string) bool { return nameRE.MatchString(s) }

// begin starts the machinery: it registers the query, updates and signals, loads the worker's
// policy and marks the run Planning. The runbook's workflow calls it first.
func begin(ctx workflow.Context, runbook, target string, meta Meta, steps ...string) (*Run, error) {
	r := &Run{
		ctx:     ctx,
		info:    workflow.GetInfo(ctx),
		runbook: runbook,
		target:  target,
		meta:    meta,
		started: workflow.Now(ctx),
		attrs:   map[string]string{},
		byName:  map[string]*step{},
		gates:   map[string]*gate{},
		stalled: map[string]*stall{},
		details: map[string]any{},
	}
	// Attributes given at start count as already written.
	sa := workflow.GetTypedSearchAttributes(ctx)
	for _, k := range []temporal.SearchAttributeKeyKeyword{AttrStatus, AttrStep, AttrTarget, AttrRequestedBy} {
		if v, ok := sa.GetKeyword(k); ok {
			r.attrs[k.GetName()] = v
		}
	}
	if err := r.registerHandlers(); err != nil {
		return nil, err
	}
	if err := r.registerLeaseQuery(); err != nil {
		return nil, err
	}
	if c := meta.Continued; c != nil {
		r.meta.Continued = nil
		if r.info.ContinuedExecutionRunID == "" {
			r.forged = true
		} else {
			r.resume(c)
		}
	}
	r.AddSteps(steps...)
	r.upsert(AttrTarget, target)
	r.upsert(AttrRequestedBy, meta.RequestedBy)
	r.refreshStatus() // Planning; a continued run: what it was

	lctx := withLocalActivity(ctx, ActOpts{Timeout: 10 * time.Second, Attempts: 5})
	if err := workflow.ExecuteLocalActivity(lctx, machine.LoadPolicy).Get(ctx, &r.policy); err != nil {
		return nil, fmt.Errorf("load policy: %w", err)
	}
	if r.policy.ActivityMaxAttempts < 1 {
		r.policy.ActivityMaxAttempts = 5
	}
	if r.policy.GateTimeout <= 0 {
		r.policy.GateTimeout = 4 * time.Hour
	}
	if err := r.loadTrust(lctx); err != nil {
		return nil, err
	}
	return r, nil
}

// MaxParallel bounds every runbook's --parallel.
const MaxParallel = 32

// parallelism is a run's --parallel: the input's, or policy.default_parallelism when it is 0.
func (r *Run) parallelism(in int) int {
	if in > 0 {
		return in
	}
	return min(max(r.policy.DefaultParallelism, 1), MaxParallel)
}

// Policy returns the worker's policy as loaded at the start of the run.
func (r *Run) Policy() policy.Policy { return r.policy }

// Meta returns the run's requester, reason and dry-run flag.
func (r *Run) Meta() Meta { return r.meta }

// DryRun reports whether the run stops after its plan.
func (r *Run) DryRun() bool { return r.meta.DryRun }

// Context is the workflow context the run was begun with.
func (r *Run) Context() workflow.Context { return r.ctx }

// StepOptions shape one step.
type StepOptions struct {
	// Target is the host, instance or device the step acts on (audit and status).
	Target string
	// NoSkip refuses "skip" when the step stalls, because later steps depend on it.
	NoSkip bool
	// ReadOnly marks a step of Act that changes nothing in the world (a wait, a verification, a
	// lease): it may run before the stale-plan check, which comes before Act's first other step.
	ReadOnly bool
	// Finding makes a failure of the step (out of attempts, or any error fn returns but an abort)
	// a finding of this severity instead of a stall: the step ends done with its error and the
	// run goes on. For read-only probing, where being blind to one part must not stop the rest.
	Finding string
	// OnFailure, in the same mode, records the failure itself instead of the default finding
	// (e.g. as a finding of a check's own report).
	OnFailure func(err error)
}

// Do runs one named step. fn does the step's work through Exec. When fn fails because an
// activity is out of retries, the step stalls and waits for an operator's resolve: retry runs
// fn again, skip marks the step skipped and returns nil, abort returns an *AbortError. Errors of
// the types InvalidInput, Refused and NotFound do not stall: the world said no, and the run ends.
func (r *Run) Do(name string, opts StepOptions, fn func(ctx workflow.Context) error) error {
	return r.DoIn(r.ctx, name, opts, fn)
}

// DoIn is Do for a step run inside a coroutine (workflow.Go) of the run, e.g. one of several
// items moved in parallel: ctx is the coroutine's context, which fn gets and the stall waits on.
func (r *Run) DoIn(ctx workflow.Context, name string, opts StepOptions, fn func(ctx workflow.Context) error) error {
	if !opts.ReadOnly && r.replan != nil && !r.acting {
		// Act's first side effect: never on a plan that may be stale.
		r.acting = true
		if err := r.recheckPlan(); err != nil {
			return err
		}
	}
	s := r.step(name)
	s.noSkip = opts.NoSkip
	if opts.Target != "" {
		s.Target = opts.Target
	}
	for {
		s.Attempts++
		s.Error = ""
		r.setStepState(s, StepRunning, "")
		err := fn(ctx)
		if err == nil {
			r.setStepState(s, StepDone, "")
			return nil
		}
		if errors.Is(err, ErrContinueAsNew) {
			// Between two slices of the step (outage-recovery's tiers): the step goes on, running,
			// in the chain's next run (continue.go), which counts this attempt again.
			s.Attempts--
			return err
		}
		if (opts.Finding != "" || opts.OnFailure != nil) && !IsAbort(err) && !temporal.IsCanceledError(err) {
			s.Error = errText(err)
			if opts.OnFailure != nil {
				opts.OnFailure(err)
			} else {
				r.AddFinding(opts.Finding, cmp.Or(s.Target, name), "step %s could not complete, so this part is not checked: %s", name, s.Error)
			}
			r.setStepState(s, StepDone, "")
			return nil
		}
		if IsAbort(err) || temporal.IsCanceledError(err) || isFinal(err) {
			s.Error = errText(err)
			r.setStepState(s, StepFailed, "")
			return err
		}
		s.Error = errText(err)
		st := &stall{StalledStatus: StalledStatus{Step: name, Error: s.Error, Since: workflow.Now(r.ctx)}}
		r.stalled[name] = st
		r.setStepState(s, StepStalled, "")
		nctx := r.ctx
		if r.ctx.Err() != nil && ctx.Err() == nil && workflow.GetVersion(r.ctx, stallNotifyOnCancelChange, workflow.DefaultVersion, 1) == 1 {
			nctx = ctx // a clean-up step of a cancelled run (a disconnected context): its stall is told too
		}
		r.notifyIn(nctx, "step-stalled", name, fmt.Sprintf("Step %q of run %s is stalled: %s", name, r.info.WorkflowExecution.ID, s.Error),
			fmt.Sprintf("stackrun resolve %s %s retry|skip|abort", r.info.WorkflowExecution.ID, name))
		if err := workflow.Await(ctx, func() bool { return st.action != "" }); err != nil {
			// Cancelled while stalled: the step is over, and the report must not show it stalled.
			if workflow.GetVersion(r.ctx, stallCancelledChange, workflow.DefaultVersion, 1) == 1 {
				delete(r.stalled, name)
				r.setStepState(s, StepFailed, "cancelled while stalled")
			}
			return err
		}
		delete(r.stalled, name)
		switch st.action {
		case ResolveSkip:
			r.setStepState(s, StepSkipped, "skipped by operator")
			return nil
		case ResolveAbort:
			r.setStepState(s, StepFailed, "aborted by operator")
			return &AbortError{Reason: fmt.Sprintf("step %q aborted by operator after: %s", name, s.Error)}
		}
		// retry: loop
	}
}

// stallCancelledChange is the workflow.GetVersion change after which a step whose run is
// cancelled while it is stalled ends failed ("cancelled while stalled") and leaves the stalled
// list; before it, the finished run's report still showed the step stalled.
const stallCancelledChange = "stall-cancelled-step-failed"

// stallNotifyOnCancelChange is the workflow.GetVersion change after which a step that stalls on
// a cancelled run's way out (a compensation on a disconnected context) notifies on that context:
// on the cancelled run's own, the step-stalled notification failed "canceled" and nobody was
// told that the clean-up waits for them.
const stallNotifyOnCancelChange = "stall-notify-on-cancel"

// StepState returns the state of a step (pending when unknown).
func (r *Run) StepState(name string) StepState {
	if s, ok := r.byName[name]; ok {
		return s.State
	}
	return StepPending
}

// isFinal reports errors that no operator decision can fix within this run.
func isFinal(err error) bool {
	var app *temporal.ApplicationError
	if errors.As(err, &app) {
		switch app.Type() {
		case activities.ErrTypeInvalidInput, activities.ErrTypeRefused, activities.ErrTypeNotFound:
			return true
		}
	}
	return false
}

// errText gives the innermost useful message of an activity error.
func errText(err error) string {
	var app *temporal.ApplicationError
	if errors.As(err, &app) {
		if app.Type() != "" && app.Type() != "errorString" && !strings.HasPrefix(app.Type(), "*") {
			return app.Type() + ": " + app.Error()
		}
		return app.Error()
	}
	var to *temporal.TimeoutError
	if errors.As(err, &to) {
		return "timeout (" + to.TimeoutType().String() + "): " + err.Error()
	}
	return err.Error()
}

// Exec runs one activity with the machinery's options (unless ctx already carries others) and
// records it in the audit trail: which activity, on which target, for whom, with what result.
func (r *Run) Exec(ctx workflow.Context, stepName, target string, activity any, result any, args ...any) error {
	return r.Start(ctx, stepName, target, activity, args...).Get(ctx, result)
}

// Call is an activity started with Start; Get waits for it and records it in the audit trail.
type Call struct {
	r     *Run
	f     workflow.Future
	entry AuditEntry
}

// Start starts one activity without waiting, for bounded fan-out inside a step.
func (r *Run) Start(ctx workflow.Context, stepName, target string, activity any, args ...any) *Call {
	if workflow.GetActivityOptions(ctx).StartToCloseTimeout == 0 {
		ctx = r.ActivityOptions(ctx, 0, 0)
	}
	return &Call{r: r, f: workflow.ExecuteActivity(ctx, activity, args...), entry: AuditEntry{
		At: workflow.Now(ctx), Step: stepName, Activity: activityName(activity), Target: target, RequestedBy: r.meta.RequestedBy,
	}}
}

// Future is the underlying future, for selectors.
func (c *Call) Future() workflow.Future { return c.f }

// Get waits for the activity's result and records the audit entry.
func (c *Call) Get(ctx workflow.Context, result any) error {
	err := c.f.Get(ctx, result)
	e := c.entry
	e.Duration = workflow.Now(ctx).Sub(e.At)
	e.Result = "ok"
	if err != nil {
		e.Result, e.Error = "error", errText(err)
	}
	c.r.audit = append(c.r.audit, e)
	return err
}

func activityName(fn any) string {
	if s, ok := fn.(string); ok {
		return s
	}
	name := runtime.FuncForPC(reflect.ValueOf(fn).Pointer()).Name()
	name = strings.TrimSuffix(name, "-fm")
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		name = name[i+1:]
	}
	return name
}

// notify delivers a notification beside the run; delivery failures are logged and never fail it.
// The returned future lets Finish wait for the last one before the workflow closes.
func (r *Run) notify(kind, name, text, hint string) workflow.Future {
	return r.notifyIn(r.ctx, kind, name, text, hint)
}

// notifyIn is notify with the notification's activity started on ctx (the end of a cancelled
// run: a context the cancel does not reach).
func (r *Run) notifyIn(ctx workflow.Context, kind, name, text, hint string) workflow.Future {
	ctx = r.WithActivity(ctx, ActOpts{Timeout: 30 * time.Second, Attempts: 3, Initial: time.Second})
	n := activities.Notification{Kind: kind, WorkflowID: r.info.WorkflowExecution.ID, RunID: r.info.WorkflowExecution.RunID,
		Runbook: r.runbook, Target: r.target, Name: name, Text: text, Hint: hint,
		RequestedBy: r.meta.RequestedBy, Status: string(r.status)}
	r.describeNotification(&n)
	// Fire and forget: the notification runs beside the workflow; its failure is logged only.
	f := workflow.ExecuteActivity(ctx, machine.Notify, n)
	r.notes = append(r.notes, f)
	workflow.Go(r.ctx, func(gctx workflow.Context) {
		if err := f.Get(gctx, nil); err != nil {
			workflow.GetLogger(gctx).Warn("notification not delivered", "kind", kind, "error", err)
		}
	})
	return f
}

// Most plan lines and findings a notification carries (chat messages stay small).
const (
	notifyMaxPlan     = 20
	notifyMaxFindings = 30
)

// describeNotification adds what chat messages show: the gate's summary, plan and approvers, the
// stalled step's error, the run's summary and findings.
func (r *Run) describeNotification(n *activities.Notification) {
	if r.final != "" {
		n.Status = string(r.final)
	}
	switch n.Kind {
	case "gate-opened", "gate-escalated":
		if g, ok := r.gates[n.Name]; ok {
			n.Summary, n.Destructive, n.Approvers = g.Summary, g.Destructive, g.Approvers
		}
		n.Plan = r.plan[:min(len(r.plan), notifyMaxPlan)]
	case "step-stalled":
		if s, ok := r.stalled[n.Name]; ok {
			n.Error = s.Error
		}
	case "run-finished":
		n.Summary = r.summary
		n.Findings = r.findings[:min(len(r.findings), notifyMaxFindings)]
	}
}

// OnExit registers what the run must undo or report on its way out, whatever way it ends (a lease
// to give back, the state it leaves its target in). Hooks run last-registered first, before the
// report is written.
func (r *Run) OnExit(fn func()) { r.exits = append(r.exits, fn) }

// ReturnRecord makes the run's result record(report), marked Record, in place of its report: a
// child run's result is in its parent's history, and a parent that needs a little of each
// child's report (a staged upgrade's batches) would otherwise carry them all. The whole report
// answers the query report (QueryReport) once the run ended.
func (r *Run) ReturnRecord(record func(*Report) *Report) { r.record = record }

// result is what the run returns: its report, or the record of it (ReturnRecord).
func (r *Run) result(rep *Report) *Report {
	if r.record == nil {
		return rep
	}
	if err := workflow.SetQueryHandler(r.ctx, QueryReport, func() (*Report, error) { return rep, nil }); err != nil {
		return rep
	}
	rec := r.record(rep)
	rec.Record = true
	return rec
}

// OnExitEveryRun is OnExit for a hook that needs nothing carried to the next run of a chain: Act
// registers it again at its start in every run (a run with other hooks stays one run).
func (r *Run) OnExitEveryRun(fn func()) {
	r.OnExit(fn)
	r.everyRun++
}

func (r *Run) runExitHooks() {
	for i := len(r.exits) - 1; i >= 0; i-- {
		r.exits[i]()
	}
	r.exits = nil
}

// finish ends the run: it derives the final status from err, waits for update handlers, notifies,
// and returns the report. Aborted and failed runs also return their report (not an error), so
// that `stackrun report` always has one; RunbookStatus tells them apart. The runbook's workflow
// calls it once (define.go).
func (r *Run) finish(err error, summary string) (*Report, error) {
	switch {
	case err == nil:
		r.final = StatusCompleted
	case IsAbort(err):
		r.final = StatusAborted
		if summary == "" {
			summary = err.Error()
		}
	default:
		r.final = StatusFailed
		if summary == "" {
			summary = "failed: " + errText(err)
		} else {
			summary += ": " + errText(err)
		}
	}
	if summary == "" {
		summary = "completed"
		if r.meta.DryRun {
			summary = "dry run: plan computed, nothing changed"
		}
	}
	for _, s := range r.steps {
		if s.State == StepPending && r.final != StatusCompleted {
			s.Detail = "not reached"
		}
	}
	r.refreshStatus()
	ctx := r.ctx
	if r.ctx.Err() != nil && workflow.GetVersion(r.ctx, finishNotifyOnCancelChange, workflow.DefaultVersion, 1) == 1 {
		ctx, _ = workflow.NewDisconnectedContext(r.ctx)
	}
	_ = workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(r.ctx) })
	rep := r.Report(summary)
	r.summary = summary
	if !r.meta.DryRun {
		r.notifyIn(ctx, "run-finished", "", fmt.Sprintf("Run %s (%s on %s) ended %s: %s", r.info.WorkflowExecution.ID, r.runbook, r.target, r.final, summary),
			fmt.Sprintf("stackrun report %s", r.info.WorkflowExecution.ID))
	}
	// Deliver every notification under way (escalations included) before the run closes.
	for _, f := range r.notes {
		_ = f.Get(r.ctx, nil)
	}
	workflow.SetCurrentDetails(r.ctx, fmt.Sprintf("**%s** on `%s` — %s: %s", r.runbook, r.target, r.final, summary))
	return rep, nil
}

// finishNotifyOnCancelChange is the workflow.GetVersion change after which a cancelled run's end
// (the wait for update handlers, the run-finished notification) runs on a disconnected context:
// on the cancelled one, the wait returned at once and the notification's activity was cancelled
// in the task that scheduled it, before any worker took it ("canceled"), so nobody was told the
// run had ended. Asked only when the run is cancelled: other runs' histories do not change.
const finishNotifyOnCancelChange = "finish-notify-on-cancel"

// Report builds the report as it stands.
func (r *Run) Report(summary string) *Report {
	st := r.final
	if st == "" {
		st = r.status
	}
	rep := &Report{
		WorkflowID: r.info.WorkflowExecution.ID, RunID: r.info.WorkflowExecution.RunID,
		Runbook: r.runbook, Target: r.target, RequestedBy: r.meta.RequestedBy, Reason: r.meta.Reason,
		Status: st, DryRun: r.meta.DryRun, Started: r.started, Ended: workflow.Now(r.ctx),
		Summary: summary, LeftState: r.leftState, Plan: r.plan, Steps: r.stepList(),
		Findings: r.findings, Decisions: r.decisions, Refused: r.refused, Start: r.trust.start, Audit: r.audit, Details: r.details,
	}
	compactReport(rep)
	fitReport(rep, ReportBudget)
	return rep
}
