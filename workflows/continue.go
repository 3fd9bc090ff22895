package workflows

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/internal/infra/trust"
)

// A long Act continues as new between two of its units of work (swift-ring: between two steps)
// when the next one might take the run's history past the policy's history budget: Temporal
// warns at 10,240 events and fails at 51,200. The next run of the chain has the same workflow
// ID (stackrun status, resolve and report find it as before), the memo and search attributes
// (Temporal carries them), and the run's state in its input (Meta.Continued): the steps, the
// plan, the audit trail, findings, decisions, details, the start's record and the leases it
// holds. It does not plan, ask or take anything again: it goes on with Act where the last run
// stopped, and its report is the whole chain's.

// continueChange is the workflow.GetVersion change that lets a run continue as new: runs begun
// before it (replayed histories) stay one run.
const continueChange = "continue-as-new"

// DefaultHistoryBudget is policy.history_budget when it is unset: a run continues as new when its
// history and one more unit of work like the last would pass it (below Temporal's 10,240-event
// warning, with room for the finish and a stalled step's resolve).
const DefaultHistoryBudget = 8000

// ErrContinueAsNew is what Act returns, once ContinueAsNew said yes, to continue as new
// (define.go): the next run's state is the plan P Act was given, updated with where it got to.
var ErrContinueAsNew = errors.New("continue as new")

// Continued is the state a run hands to the next run of its chain, in Meta.Continued. Only the
// run itself sets it (a run whose input has it and that Temporal does not record as continued
// is refused).
type Continued struct {
	// Runs is how many runs the chain had before this one.
	Runs      int                  `json:"runs"`
	Started   time.Time            `json:"started"`
	Steps     []StepStatus         `json:"steps"`
	Plan      []string             `json:"plan,omitempty"`
	Facts     []Fact               `json:"facts,omitempty"`
	Findings  []activities.Finding `json:"findings,omitempty"`
	Decisions []Decision           `json:"decisions,omitempty"`
	Refused   []RefusedMessage     `json:"refused,omitempty"`
	Start     *StartRecord         `json:"start,omitempty"`
	Nonces    trust.Nonces         `json:"nonces"`
	Audit     []AuditEntry         `json:"audit,omitempty"`
	Details   map[string]any       `json:"details,omitempty"`
	LeftState string               `json:"left_state,omitempty"`
	// Leases are the lease keys the chain holds, each with the run ID it was granted to (the
	// lease workflow lists that run; activities.Lease.Wants follows the chain to this one).
	Leases    map[string]string `json:"leases,omitempty"`
	Approval  Approval          `json:"approval"`
	PlannedAt time.Time         `json:"planned_at"`
	// State is the runbook's plan and how far Act got (its P, as JSON).
	State json.RawMessage `json:"state"`
	// Planning: the run continued as new in its Plan (outage-recovery's snapshot, in slices):
	// the next run goes on with Plan, then approves and acts as a first run does. PlanBase is
	// how many findings the run had before its Plan (the stale-plan check's replan keeps them).
	Planning bool `json:"planning,omitempty"`
	PlanBase int  `json:"plan_base,omitempty"`
}

// ContinueAsNew reports whether Act should continue as new before its next unit of work, given
// how many history events the last one took. When it says yes, Act records where it got to in
// its plan and returns ErrContinueAsNew (its P is the next run's); so may Plan (Continued.Planning).
// Deterministic: the history length is Temporal's record of the workflow task, in a replay too.
func (r *Run) ContinueAsNew(lastEvents int) bool {
	info := workflow.GetInfo(r.ctx)
	budget := r.policy.HistoryBudget
	if budget <= 0 {
		budget = DefaultHistoryBudget
	}
	if info.GetCurrentHistoryLength()+lastEvents <= budget && !info.GetContinueAsNewSuggested() {
		return false
	}
	// Exit hooks are functions: only the leases' can be carried (registered again from their
	// keys), and Act's OnExitEveryRun ones; a run with others stays one run.
	if len(r.exits) != r.leaseExits+r.everyRun || len(r.stalled) > 0 || r.openGateCount() > 0 {
		return false
	}
	return workflow.GetVersion(r.ctx, continueChange, workflow.DefaultVersion, 1) == 1
}

// HistoryLength is the run's history length now (Act measures its units of work with it).
func (r *Run) HistoryLength() int { return workflow.GetInfo(r.ctx).GetCurrentHistoryLength() }

// continueAsNew ends this run of the chain: it waits for update handlers and notifications under
// way, puts the run's state (and p) into the input and returns the continue-as-new error.
func continueAsNew[In any](r *Run, in *In, p any) error {
	_ = workflow.Await(r.ctx, func() bool { return workflow.AllHandlersFinished(r.ctx) })
	for _, f := range r.notes {
		_ = f.Get(r.ctx, nil)
	}
	//workflowcheck:ignore encoding/json writes map keys sorted: the same bytes in a replay
	state, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("continue as new: %w", err)
	}
	c := &Continued{Runs: r.runs + 1, Started: r.started, Steps: r.stepList(), Plan: r.plan, Facts: r.facts,
		Findings: r.findings, Decisions: r.decisions, Refused: r.refused, Start: r.trust.start, Nonces: r.trust.nonces,
		Audit: carryAudit(r.audit), Details: r.details, LeftState: r.leftState, Leases: map[string]string{},
		Approval: r.approval, PlannedAt: r.plannedAt, State: state, Planning: r.planning, PlanBase: r.planBase}
	for _, k := range r.leased {
		c.Leases[k] = r.leaseRun(k)
	}
	next := *in
	any(&next).(Input).GetMeta().Continued = c
	return workflow.NewContinueAsNewError(r.ctx, r.info.WorkflowType.Name, next)
}

// resume takes the state of the chain's last run (begin, before the status is first written).
func (r *Run) resume(c *Continued) {
	r.runs = c.Runs
	r.started = c.Started
	for _, s := range c.Steps {
		st := &step{StepStatus: s}
		r.steps = append(r.steps, st)
		r.byName[s.Name] = st
	}
	r.plan, r.facts, r.planned = c.Plan, c.Facts, !c.Planning
	r.findings, r.decisions, r.refused, r.audit = c.Findings, c.Decisions, c.Refused, c.Audit
	r.trust.start, r.trust.nonces = c.Start, c.Nonces
	if c.Details != nil {
		r.details = c.Details
	}
	r.leftState = c.LeftState
	// A run that continued as new in its Plan has not acted yet: the stale-plan check stays.
	r.approval, r.plannedAt, r.acting = c.Approval, c.PlannedAt, !c.Planning
	r.planning, r.planBase = c.Planning, c.PlanBase
	keys := make([]string, 0, len(c.Leases))
	//workflowcheck:ignore sorted below
	for k := range c.Leases {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		r.leased = append(r.leased, k)
		if r.leaseRuns == nil {
			r.leaseRuns = map[string]string{}
		}
		r.leaseRuns[k] = c.Leases[k]
		if name, ok := strings.CutPrefix(k, "lock:"); ok {
			r.OnExit(func() { r.ReleaseLock(name) })
		} else {
			r.OnExit(func() { r.ReleaseHostLease(k) })
		}
		r.leaseExits++
	}
	r.resumed = c.State
	r.SetDetail("runs", c.Runs+1) // the report shows the chain was more than one run
}

// carryAuditItems: from this many successful calls of one activity in one step, the audit
// entries a run carries to the next are one entry with their count (as compactReport does for
// large runs), so that the input stays well under Temporal's payload limits (a ring pushed to
// 500 nodes in each of many steps).
const carryAuditItems = 20

func carryAudit(audit []AuditEntry) []AuditEntry {
	type key struct{ step, activity string }
	n := map[key]int{}
	for _, e := range audit {
		if e.Result == "ok" && e.Count == 0 {
			n[key{e.Step, e.Activity}]++
		}
	}
	out := make([]AuditEntry, 0, len(audit))
	at := map[key]int{}
	for _, e := range audit {
		k := key{e.Step, e.Activity}
		if e.Result != "ok" || e.Count != 0 || n[k] < carryAuditItems {
			out = append(out, e)
			continue
		}
		i, ok := at[k]
		if !ok {
			at[k] = len(out)
			out = append(out, AuditEntry{At: e.At, Step: e.Step, Activity: e.Activity, RequestedBy: e.RequestedBy, Result: "ok"})
			i = len(out) - 1
		}
		c := &out[i]
		c.Count++
		c.Duration += e.Duration
		c.Target = fmt.Sprintf("%d item(s), every call ok (each one is in the worker's audit log)", c.Count)
	}
	if len(out) <= carryAuditMax {
		return out
	}
	return carryAuditByActivity(out)
}

// carryAuditMax: past this many entries carried, the successful calls are one entry per activity
// over all steps (a rolling wave has a dozen steps of its own per host: 500 hosts' entries one by
// one would take the input of a late run of the chain past Temporal's 2 MB payload limit).
// Failures stay one entry each.
const carryAuditMax = 400

func carryAuditByActivity(audit []AuditEntry) []AuditEntry {
	out := make([]AuditEntry, 0, carryAuditMax)
	at := map[string]int{}
	steps := map[string]map[string]bool{}
	for _, e := range audit {
		if e.Result != "ok" {
			out = append(out, e)
			continue
		}
		i, ok := at[e.Activity]
		if !ok {
			at[e.Activity] = len(out)
			steps[e.Activity] = map[string]bool{}
			out = append(out, AuditEntry{At: e.At, Step: e.Step, Activity: e.Activity, RequestedBy: e.RequestedBy, Result: "ok"})
			i = len(out) - 1
		}
		c := &out[i]
		c.Count += max(e.Count, 1)
		c.Duration += e.Duration
		steps[e.Activity][e.Step] = true
		c.Target = fmt.Sprintf("%d item(s) in %d step(s), every call ok (each one is in the worker's audit log)", c.Count, len(steps[e.Activity]))
	}
	return out
}

// refusedContinuation is the error of a run whose input carries a chain's state that Temporal
// does not record as continued: a client cannot start a run "already approved".
func (r *Run) refusedContinuation() error {
	msg := "the input carries a continued run's state (continued), but this run was started, not continued as new"
	r.refused = append(r.refused, RefusedMessage{Signal: "start", Target: r.runbook, By: r.meta.RequestedBy, Reason: msg,
		At: workflow.Now(r.ctx), Via: "start"})
	return temporal.NewNonRetryableApplicationError("start refused: "+msg, activities.ErrTypeRefused, nil)
}

// leaseRun is the run ID the lease workflow lists for key: the run of the chain it was granted to.
func (r *Run) leaseRun(key string) string {
	if id, ok := r.leaseRuns[key]; ok {
		return id
	}
	return r.info.WorkflowExecution.RunID
}
