package workflows

import (
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/stackrun/stackrun/activities"
)

// A stale plan is never acted on. A plan approved hours ago may no longer be true (an instance
// deleted, a host already down, a device remounted). When the plan is older than
// policy.plan_max_age at Act's first step that changes the world (after a gate, a lease or a
// stalled step that waited), the machinery runs the runbook's Plan again (its preconditions:
// read-only steps), shows what drifted since the plan, and, when a fact that matters drifted and
// the plan had a gate, opens that gate again with the new plan. Act then works on the new plan.
// Later waits inside Act are covered by each activity checking the world before it acts.

// DefaultPlanMaxAge is the plan age from which it is checked again (policy.plan_max_age unset).
const DefaultPlanMaxAge = time.Hour

// stalePlanChange names the workflow.GetVersion change that introduced the check: histories of
// runs that waited long before it replay without it.
const stalePlanChange = "stale-plan-check"

// Fact is one thing a plan rests on. Plan records its facts with SetFacts; without them the plan
// lines are the facts.
type Fact struct {
	Name  string `json:"name"`
	Value string `json:"value"`
	// Minor facts are shown when they drift but do not make the plan ask for approval again
	// (e.g. how long min_part_hours still has to run).
	Minor bool `json:"minor,omitempty"`
}

// SetFacts records what the plan rests on, for the stale-plan check (call it in Plan).
func (r *Run) SetFacts(facts ...Fact) { r.facts = facts }

// planFacts are the facts of the current plan: SetFacts's, or the plan lines.
func (r *Run) planFacts() []Fact {
	if r.facts != nil {
		return r.facts
	}
	out := make([]Fact, len(r.plan))
	for i, l := range r.plan {
		out[i] = Fact{Name: l}
	}
	return out
}

// Drift is how one fact changed between two plans.
type Drift struct {
	Fact   string `json:"fact"`
	Before string `json:"before,omitempty"`
	After  string `json:"after,omitempty"`
	// Kind: changed | gone | new.
	Kind  string `json:"kind"`
	Minor bool   `json:"minor,omitempty"`
}

func (d Drift) String() string {
	switch d.Kind {
	case "gone":
		if d.Before != "" {
			return fmt.Sprintf("no longer: %s = %s", d.Fact, d.Before)
		}
		return "no longer: " + d.Fact
	case "new":
		if d.After != "" {
			return fmt.Sprintf("now: %s = %s", d.Fact, d.After)
		}
		return "now: " + d.Fact
	}
	return fmt.Sprintf("%s: %s → %s", d.Fact, d.Before, d.After)
}

// diffFacts lists what changed from before to after, in before's order, then after's.
func diffFacts(before, after []Fact) []Drift {
	idx := func(fs []Fact) map[string]Fact {
		m := make(map[string]Fact, len(fs))
		for _, f := range fs {
			m[f.Name] = f
		}
		return m
	}
	b, a := idx(before), idx(after)
	var out []Drift
	for _, f := range before {
		g, ok := a[f.Name]
		switch {
		case !ok:
			out = append(out, Drift{Fact: f.Name, Before: f.Value, Kind: "gone", Minor: f.Minor})
		case g.Value != f.Value:
			out = append(out, Drift{Fact: f.Name, Before: f.Value, After: g.Value, Kind: "changed", Minor: f.Minor && g.Minor})
		}
	}
	for _, f := range after {
		if _, ok := b[f.Name]; !ok {
			out = append(out, Drift{Fact: f.Name, After: f.Value, Kind: "new", Minor: f.Minor})
		}
	}
	return out
}

func (r *Run) planMaxAge() time.Duration {
	if r.policy.PlanMaxAge != 0 {
		return r.policy.PlanMaxAge
	}
	return DefaultPlanMaxAge
}

// recheckPlan runs before Act's first step that changes the world. A plan younger than
// planMaxAge (or a negative plan_max_age) is acted on as is.
func (r *Run) recheckPlan() error {
	maxAge := r.planMaxAge()
	for maxAge > 0 && r.Now().Sub(r.plannedAt) > maxAge {
		if workflow.GetVersion(r.ctx, stalePlanChange, workflow.DefaultVersion, 1) == workflow.DefaultVersion {
			return nil
		}
		age := r.Now().Sub(r.plannedAt).Round(time.Second)
		before := r.planFacts()
		r.facts = nil
		appr, err := r.replan()
		if err != nil {
			return fmt.Errorf("the plan was checked again after %s and no longer holds: %w", age, err)
		}
		r.plannedAt = r.Now()
		drift := diffFacts(before, r.planFacts())
		r.SetDetail("plan_rechecked", map[string]any{"after": age.String(), "drift": drift})
		if len(drift) == 0 {
			workflow.GetLogger(r.ctx).Info("plan checked again: no drift", "age", age)
			return nil
		}
		matters := false
		lines := make([]string, len(drift))
		for i, d := range drift {
			lines[i] = d.String()
			matters = matters || !d.Minor
		}
		const name = "plan-drift"
		s := r.step(name)
		s.Attempts++
		r.setStepState(s, StepDone, fmt.Sprintf("%d fact(s) changed in %s: %s", len(drift), age, strings.Join(lines, "; ")))
		sev := activities.SeverityInfo
		if matters {
			sev = activities.SeverityWarning
		}
		r.AddFinding(sev, r.target, "the plan drifted in the %s since it was made: %s", age, strings.Join(lines, "; "))
		if !matters || appr.Gate == "" || appr.Skipped != "" {
			return nil // the new plan is adopted; nothing it rests on that a person approved changed
		}
		r.approval = appr
		delete(r.gates, appr.Gate)
		summary := fmt.Sprintf("ASKED AGAIN: the plan drifted in the %s since it was approved (%s). The new plan: %s", age, strings.Join(lines, "; "), appr.Summary)
		if err := r.Gate(appr.Gate, GateOptions{Summary: summary}); err != nil {
			return err
		}
		// Approved again: check once more if that wait was long too.
	}
	return nil
}
