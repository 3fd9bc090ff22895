package workflows

import (
	"fmt"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/stackrun/stackrun/activities"
)

// step is the workflow's private record of one named step.
type step struct {
	StepStatus
	noSkip bool
}

// stepGroup is what the RunbookStep search attribute shows for a step: per-item steps such as
// "migrate/<uuid>" show as "migrate", so that parallel items do not each write history events.
func stepGroup(name string) string {
	if i := strings.IndexByte(name, '/'); i > 0 {
		return name[:i]
	}
	return name
}

// step returns the named step, adding it (pending) when it is new.
func (r *Run) step(name string) *step {
	if s, ok := r.byName[name]; ok {
		return s
	}
	s := &step{StepStatus: StepStatus{Name: name, State: StepPending}}
	r.byName[name] = s
	r.steps = append(r.steps, s)
	return s
}

// AddSteps declares steps up front so that the status query shows the whole runbook at once.
func (r *Run) AddSteps(names ...string) {
	for _, n := range names {
		r.step(n)
	}
}

func (r *Run) setStepState(s *step, st StepState, detail string) {
	now := workflow.Now(r.ctx)
	s.State = st
	if detail != "" {
		s.Detail = detail
	}
	switch st {
	case StepRunning, StepWaitingApproval:
		if s.Started == nil {
			s.Started = &now
		}
		s.Ended = nil
	case StepDone, StepSkipped, StepFailed:
		s.Ended = &now
	}
	if st == StepRunning || st == StepWaitingApproval || st == StepStalled {
		r.current = s.Name
		r.upsert(AttrStep, stepGroup(s.Name))
	}
	r.refreshStatus()
}

// refreshStatus derives the run status from the steps: a stalled step wins over an open gate,
// which wins over running work.
func (r *Run) refreshStatus() {
	if r.final != "" {
		r.setStatus(r.final)
		return
	}
	st := StatusRunning
	if !r.planned {
		st = StatusPlanning
	}
	if r.openGateCount() > 0 {
		st = StatusWaitingApproval
	}
	if len(r.stalled) > 0 {
		st = StatusStalled
	}
	r.setStatus(st)
}

func (r *Run) setStatus(st RunStatus) {
	if r.status == st {
		return
	}
	r.status = st
	r.upsert(AttrStatus, string(st))
	r.updateDetails()
}

// upsert writes a search attribute only when its value changes: every upsert is a history event.
func (r *Run) upsert(key temporal.SearchAttributeKeyKeyword, value string) {
	// Attributes are written before the input is validated (the run must be findable): a value
	// over the server's keyword limit would get the run terminated without its report.
	value = capKeyword(value)
	if r.attrs[key.GetName()] == value {
		return
	}
	r.attrs[key.GetName()] = value
	if err := workflow.UpsertTypedSearchAttributes(r.ctx, key.ValueSet(value)); err != nil {
		workflow.GetLogger(r.ctx).Warn("upsert search attribute failed", "key", key.GetName(), "error", err)
	}
}

// capKeyword cuts a search attribute value to 255 bytes of valid UTF-8.
func capKeyword(v string) string {
	v = strings.ToValidUTF8(v, "?")
	for len(v) > 255 {
		_, n := utf8.DecodeLastRuneInString(v)
		v = v[:len(v)-n]
	}
	return v
}

// updateDetails keeps the Temporal web UI's "current details" in step with what the run waits for,
// including the exact signal an operator can send from the UI.
func (r *Run) updateDetails() {
	var b strings.Builder
	b.WriteString(fmt.Sprintf("**%s** on `%s` — %s\n\n", r.runbook, r.target, r.status))
	for _, g := range r.openGates() {
		b.WriteString(fmt.Sprintf("Waiting for approval at gate **%s**", g.Name))
		if g.Destructive {
			b.WriteString(" (two-person rule: the requester may not approve)")
		}
		b.WriteString(".\n\n")
		if g.Summary != "" {
			b.WriteString(fmt.Sprintf("%s\n\n", g.Summary))
		}
		b.WriteString(fmt.Sprintf("Approve: send signal `%s` with input `{\"gate\":%q,\"by\":\"<your name>\",\"comment\":\"...\"}` (or `%s` to reject), or run `stackrun approve %s %s`.\n\n",
			SignalApprove, g.Name, SignalReject, r.info.WorkflowExecution.ID, g.Name))
	}
	for _, s := range r.stalledList() {
		b.WriteString(fmt.Sprintf("Step **%s** is stalled: %s\n\nResolve: send signal `%s` with input `{\"step\":%q,\"action\":\"retry|skip|abort\",\"by\":\"<your name>\"}`, or run `stackrun resolve %s %s retry`.\n\n",
			s.Step, s.Error, SignalResolve, s.Step, r.info.WorkflowExecution.ID, s.Step))
	}
	if len(r.plan) > 0 && r.status != StatusCompleted {
		b.WriteString("Plan:\n\n") // a blank line, or Markdown renders the list inline
		for i, p := range r.plan {
			if i == 20 {
				b.WriteString(fmt.Sprintf("- ... and %d more\n", len(r.plan)-20))
				break
			}
			b.WriteString(fmt.Sprintf("- %s\n", p))
		}
	}
	workflow.SetCurrentDetails(r.ctx, b.String())
}

func (r *Run) openGateCount() int {
	n := 0
	//workflowcheck:ignore the count does not depend on the order
	for _, g := range r.gates {
		if !g.decided {
			n++
		}
	}
	return n
}

func (r *Run) openGates() []GateStatus {
	var out []GateStatus
	//workflowcheck:ignore sorted below
	for _, g := range r.gates {
		if !g.decided {
			out = append(out, g.GateStatus)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (r *Run) stalledList() []StalledStatus {
	var out []StalledStatus
	//workflowcheck:ignore sorted below
	for _, s := range r.stalled {
		out = append(out, s.StalledStatus)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Step < out[j].Step })
	return out
}

func (r *Run) stepList() []StepStatus {
	out := make([]StepStatus, len(r.steps))
	for i, s := range r.steps {
		out[i] = s.StepStatus
	}
	return out
}

// Status is what the status query answers.
func (r *Run) Status() Status {
	return Status{
		Runbook:     r.runbook,
		Target:      r.target,
		RequestedBy: r.meta.RequestedBy,
		Status:      r.status,
		CurrentStep: r.current,
		DryRun:      r.meta.DryRun,
		Steps:       r.stepList(),
		OpenGates:   r.openGates(),
		Stalled:     r.stalledList(),
		Decisions:   r.decisions,
		Refused:     r.refused,
		Plan:        r.plan,
		Findings:    r.findings,
	}
}

// SetPlan records the plan; the status query, the UI details and the report show it.
func (r *Run) SetPlan(lines []string) {
	r.plan = lines
	r.planned = true
	r.updateDetails()
}

// AddFinding records a finding for the report.
func (r *Run) AddFinding(severity, subject, format string, args ...any) {
	r.findings = append(r.findings, activities.Finding{Severity: severity, Subject: subject, Message: fmt.Sprintf(format, args...)})
}

// SetDetail stores a runbook-specific value in the report's details.
func (r *Run) SetDetail(key string, value any) { r.details[key] = value }

// SetLeftState says what state the run leaves its target in, should it end early; the report
// carries it so that nothing is left disabled silently.
func (r *Run) SetLeftState(s string) { r.leftState = s }

// Now is the workflow's deterministic clock.
func (r *Run) Now() time.Time { return workflow.Now(r.ctx) }

// foldSteps makes the ended steps named prefix+"/..." one step named prefix, where the first of
// them was, before a run continues as new (continue.go): a wave carries each host it finished
// as one step, so that the chain's state stays far under Temporal's payload limit however many
// hosts it has done (each host's own steps are in the history of the run that did it).
func (r *Run) foldSteps(prefix, detail string) {
	var kept []*step
	var fold *step
	n := map[StepState]int{}
	total := 0
	for _, s := range r.steps {
		ended := s.State == StepDone || s.State == StepSkipped || s.State == StepFailed
		if !strings.HasPrefix(s.Name, prefix+"/") || !ended {
			kept = append(kept, s)
			continue
		}
		if fold == nil {
			fold = &step{StepStatus: StepStatus{Name: prefix, State: StepDone, Target: prefix}}
			kept = append(kept, fold)
		}
		total++
		n[s.State]++
		if s.Started != nil && (fold.Started == nil || s.Started.Before(*fold.Started)) {
			fold.Started = s.Started
		}
		if s.Ended != nil && (fold.Ended == nil || s.Ended.After(*fold.Ended)) {
			fold.Ended = s.Ended
		}
		delete(r.byName, s.Name)
	}
	if fold == nil {
		return
	}
	fold.Detail = fmt.Sprintf("%s (%d step(s): %d done, %d skipped, %d failed; each one in the history of run %d of the chain)",
		detail, total, n[StepDone], n[StepSkipped], n[StepFailed], r.runs+1)
	r.byName[prefix] = fold
	r.steps = kept
}
