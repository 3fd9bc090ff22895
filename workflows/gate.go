package workflows

// Gates and stalled steps: the approve, reject and resolve updates (with their validators) and
// signals of the same names, and the waits on them.

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/stackrun/stackrun/internal/infra/trust"
)

type gate struct {
	GateStatus
	decided  bool
	approved bool
}

type stall struct {
	StalledStatus
	action string
}

func (r *Run) registerHandlers() error {
	if err := workflow.SetQueryHandler(r.ctx, QueryStatus, func() (Status, error) { return r.Status(), nil }); err != nil {
		return err
	}
	// Updates (the CLI, the chat gateway) and signals (the web UI, temporal workflow signal) of
	// the same names go through one check, in the handler (trust.go): what the validator cannot
	// record, the handler does. The validator only answers at once when there is nothing to
	// decide (the gate is not open, the step not stalled).
	for _, approve := range []bool{true, false} {
		approve := approve
		name := UpdateReject
		if approve {
			name = UpdateApprove
		}
		err := workflow.SetUpdateHandlerWithOptions(r.ctx, name,
			func(ctx workflow.Context, req GateDecisionRequest) (Decision, error) {
				unlock := r.lockDecisions(ctx)
				defer unlock()
				v, err := r.checkGate(ctx, req, approve)
				if err != nil {
					r.refuse(name, req.Gate, req.By, "update", req.Signature, err)
					return Decision{}, refusedError(err)
				}
				return r.decideGate(req, approve, "update", v), nil
			},
			workflow.UpdateHandlerOptions{Validator: func(ctx workflow.Context, req GateDecisionRequest) error {
				if !ValidOperator(req.By) {
					return fmt.Errorf("approver %q is not a valid operator name", req.By)
				}
				return r.gateOpen(req)
			}})
		if err != nil {
			return err
		}
	}
	err := workflow.SetUpdateHandlerWithOptions(r.ctx, UpdateResolve,
		func(ctx workflow.Context, req ResolveRequest) (Decision, error) {
			unlock := r.lockDecisions(ctx)
			defer unlock()
			v, err := r.checkResolve(ctx, req)
			if err != nil {
				r.refuse(UpdateResolve, req.Step, req.By, "update", req.Signature, err)
				return Decision{}, refusedError(err)
			}
			return r.decideStall(req, "update", v), nil
		},
		workflow.UpdateHandlerOptions{Validator: func(ctx workflow.Context, req ResolveRequest) error {
			if !ValidOperator(req.By) {
				return fmt.Errorf("operator %q is not a valid operator name", req.By)
			}
			return r.stepStalled(req)
		}})
	if err != nil {
		return err
	}

	// Signals of the same names, for the Temporal web UI and `temporal workflow signal`. A
	// refused signal is recorded and ignored.
	approveCh := workflow.GetSignalChannel(r.ctx, SignalApprove)
	rejectCh := workflow.GetSignalChannel(r.ctx, SignalReject)
	resolveCh := workflow.GetSignalChannel(r.ctx, SignalResolve)
	workflow.Go(r.ctx, func(ctx workflow.Context) {
		for {
			sel := workflow.NewSelector(ctx)
			for _, c := range []struct {
				ch      workflow.ReceiveChannel
				approve bool
				name    string
			}{{approveCh, true, SignalApprove}, {rejectCh, false, SignalReject}} {
				c := c
				sel.AddReceive(c.ch, func(ch workflow.ReceiveChannel, more bool) {
					var req GateDecisionRequest
					ch.Receive(ctx, &req)
					if !ValidOperator(req.By) {
						r.refuse(c.name, req.Gate, req.By, "signal", req.Signature, fmt.Errorf("approver %q is not a valid operator name", req.By))
						return
					}
					unlock := r.lockDecisions(ctx)
					defer unlock()
					v, err := r.checkGate(ctx, req, c.approve)
					if err != nil {
						r.refuse(c.name, req.Gate, req.By, "signal", req.Signature, err)
						return
					}
					if req.Via == "" {
						req.Via = "signal"
					}
					r.decideGate(req, c.approve, "signal", v)
				})
			}
			sel.AddReceive(resolveCh, func(ch workflow.ReceiveChannel, more bool) {
				var req ResolveRequest
				ch.Receive(ctx, &req)
				if !ValidOperator(req.By) {
					r.refuse(SignalResolve, req.Step, req.By, "signal", req.Signature, fmt.Errorf("operator %q is not a valid operator name", req.By))
					return
				}
				unlock := r.lockDecisions(ctx)
				defer unlock()
				v, err := r.checkResolve(ctx, req)
				if err != nil {
					r.refuse(SignalResolve, req.Step, req.By, "signal", req.Signature, err)
					return
				}
				r.decideStall(req, "signal", v)
			})
			sel.Select(ctx)
		}
	})
	return nil
}

func (r *Run) refuse(signal, target, by, via string, sig *trust.Signature, err error) {
	key := ""
	if sig != nil {
		key = sig.Key
	}
	r.refused = append(r.refused, RefusedMessage{Signal: signal, Target: target, By: by, Reason: err.Error(), At: workflow.Now(r.ctx), Via: via, Key: key})
	workflow.GetLogger(r.ctx).Warn("decision refused", "signal", signal, "via", via, "target", target, "by", by, "key", key, "reason", err.Error())
}

// approversFor lists who may approve the gate; empty means nobody (an empty policy.approvers
// refuses every approval).
func (r *Run) approversFor(gateName string) []string {
	if a, ok := r.policy.GateApprovers[gateName]; ok && len(a) > 0 {
		return a
	}
	if a, ok := r.policy.GateApprovers[gateFamily(gateName)]; ok && len(a) > 0 {
		return a
	}
	return r.policy.Approvers
}

func (r *Run) destructive(gateName string) bool {
	return slices.Contains(r.policy.TwoPersonGates, gateName) || slices.Contains(r.policy.TwoPersonGates, gateFamily(gateName))
}

// gateFamily is the name the policy knows a gate by: a gate opened once per service or host is
// named <gate>:<instance> (canary-ok:glance, config-updated:nova/compute1).
func gateFamily(name string) string {
	f, _, _ := strings.Cut(name, ":")
	return f
}

// gateOpen refuses a decision for a gate this run does not wait at.
func (r *Run) gateOpen(req GateDecisionRequest) error {
	g, ok := r.gates[req.Gate]
	if ok && !g.decided {
		return nil
	}
	open := r.openGates()
	names := make([]string, len(open))
	for i, o := range open {
		names[i] = o.Name
	}
	if len(names) == 0 {
		return fmt.Errorf("gate %q is not open: this run waits at no gate", req.Gate)
	}
	return fmt.Errorf("gate %q is not open: open gates are %s", req.Gate, strings.Join(names, ", "))
}

// mayDecideGate applies the approver list and the two-person rule to the (verified) name.
func (r *Run) mayDecideGate(req GateDecisionRequest, approve bool) error {
	allowed := r.approversFor(req.Gate)
	if approve {
		if len(allowed) == 0 {
			return fmt.Errorf("nobody may approve gate %q: policy.approvers is empty", req.Gate)
		}
		if !slices.Contains(allowed, req.By) {
			return fmt.Errorf("%s may not approve gate %q (allowed: %s)", req.By, req.Gate, strings.Join(allowed, ", "))
		}
		if r.destructive(req.Gate) && req.By == r.meta.RequestedBy {
			return fmt.Errorf("%s requested this run and may not approve the destructive gate %q: a second person must", req.By, req.Gate)
		}
		return nil
	}
	// Rejecting is always safe: the requester or any approver may stop the run.
	if req.By != r.meta.RequestedBy && !slices.Contains(allowed, req.By) {
		return fmt.Errorf("%s may not reject gate %q (allowed: the requester and %s)", req.By, req.Gate, strings.Join(allowed, ", "))
	}
	return nil
}

func (r *Run) decideGate(req GateDecisionRequest, approve bool, channel string, v verified) Decision {
	r.use(req.Signature)
	g := r.gates[req.Gate]
	g.decided, g.approved = true, approve
	outcome := "rejected"
	if approve {
		outcome = "approved"
	}
	via := req.Via
	if via == "" {
		via = channel
	}
	d := Decision{Kind: "gate", Name: req.Gate, Outcome: outcome, By: req.By, Comment: req.Comment, Via: via, At: workflow.Now(r.ctx)}
	d.record(v)
	r.decisions = append(r.decisions, d)
	return d
}

// stepStalled refuses a resolve for a step that does not wait for one.
func (r *Run) stepStalled(req ResolveRequest) error {
	if !slices.Contains([]string{ResolveRetry, ResolveSkip, ResolveAbort}, req.Action) {
		return fmt.Errorf("action %q: must be retry, skip or abort", req.Action)
	}
	s, ok := r.stalled[req.Step]
	if !ok || s.action != "" {
		names := make([]string, 0, len(r.stalled))
		for _, st := range r.stalledList() {
			names = append(names, st.Step)
		}
		if len(names) == 0 {
			return fmt.Errorf("step %q is not stalled: no step of this run is stalled", req.Step)
		}
		return fmt.Errorf("step %q is not stalled: stalled steps are %s", req.Step, strings.Join(names, ", "))
	}
	if req.Action == ResolveSkip && r.byName[req.Step].noSkip {
		return fmt.Errorf("step %q cannot be skipped: later steps depend on it (retry or abort)", req.Step)
	}
	return nil
}

// mayResolve: the requester or an approver (verified).
func (r *Run) mayResolve(req ResolveRequest) error {
	if req.By != r.meta.RequestedBy && !slices.Contains(r.policy.Approvers, req.By) {
		return fmt.Errorf("%s may not resolve steps of this run (allowed: the requester and %s)", req.By, strings.Join(r.policy.Approvers, ", "))
	}
	return nil
}

func (r *Run) decideStall(req ResolveRequest, channel string, v verified) Decision {
	r.use(req.Signature)
	r.stalled[req.Step].action = req.Action
	via := req.Via
	if via == "" {
		via = channel
	}
	d := Decision{Kind: "resolve", Name: req.Step, Outcome: req.Action, By: req.By, Comment: req.Comment, Via: via, At: workflow.Now(r.ctx)}
	d.record(v)
	r.decisions = append(r.decisions, d)
	return d
}

// GateOptions shape one gate.
type GateOptions struct {
	// Summary is shown in the UI, in notifications and in the status query.
	Summary string
	// Timeout overrides the policy's gate timeout.
	Timeout time.Duration
}

// Gate waits for a person to approve or reject. It returns nil when approved and an *AbortError
// when rejected or when it timed out under the notify-then-abort policy. Gates named in the
// policy's two_person_gates are destructive: the requester may not approve them.
func (r *Run) Gate(name string, opts GateOptions) error { return r.GateIn(r.ctx, name, opts) }

// maxEscalationInterval bounds the wait between escalations of a gate that keeps escalating
// (policy.escalation_repeats 0).
const maxEscalationInterval = 7 * 24 * time.Hour

// maxEndlessEscalations bounds the escalations of such a gate: after about a year of reminders
// (a week apart once the doubling reached a week) it waits without timers, so that its history
// stays under about 800 events however long nobody answers (12 events an escalation).
const maxEndlessEscalations = 64

// gateEscalationCapChange is the workflow.GetVersion change that brought maxEndlessEscalations:
// a run that escalated that often before it keeps escalating as it did.
const gateEscalationCapChange = "gate-escalation-cap"

// GateIn is Gate for a gate opened inside a coroutine of the run (workflow.Go), e.g. one of
// several moves in flight: ctx is the coroutine's context, which the wait uses.
func (r *Run) GateIn(ctx workflow.Context, name string, opts GateOptions) error {
	if g, ok := r.gates[name]; ok && g.decided {
		return fmt.Errorf("gate %q was already decided in this run", name)
	}
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = r.policy.GateTimeout
	}
	now := workflow.Now(ctx)
	g := &gate{GateStatus: GateStatus{
		Name: name, Destructive: r.destructive(name), Approvers: r.approversFor(name),
		OpenedAt: now, Deadline: now.Add(timeout), Summary: opts.Summary,
	}}
	r.gates[name] = g
	s := r.step(name)
	r.setStepState(s, StepWaitingApproval, "waiting for approval")
	r.notify("gate-opened", name, fmt.Sprintf("Run %s waits for approval at gate %q. %s", r.info.WorkflowExecution.ID, name, opts.Summary),
		fmt.Sprintf("stackrun approve %s %s   (web UI: paste the JSON of `stackrun approve %s %s --print-signal` into \"Send a Signal\" %q)", r.info.WorkflowExecution.ID, name, r.info.WorkflowExecution.ID, name, SignalApprove))

	decided := func() bool { return g.decided }
	wait := timeout
	capped := false // escalated maxEndlessEscalations times (escalation_repeats 0)
	for !g.decided {
		if capped || (g.Escalations >= r.policy.EscalationRepeats && r.policy.EscalationRepeats > 0 && r.policy.Escalation != EscalateThenAbort) {
			// Escalated as often as policy says: keep waiting without further timers.
			if err := workflow.Await(ctx, decided); err != nil {
				return err
			}
			break
		}
		ok, err := workflow.AwaitWithTimeout(ctx, wait, decided)
		if err != nil {
			return err
		}
		if ok {
			break
		}
		g.Escalations++
		if r.policy.EscalationRepeats == 0 {
			// Escalating until maxEndlessEscalations: each wait twice the last, up to a week, so
			// that a gate nobody answers for months keeps its history small (12 events each).
			wait = min(2*wait, max(timeout, maxEscalationInterval))
		}
		g.Deadline = workflow.Now(ctx).Add(wait)
		tail := ""
		if r.policy.EscalationRepeats == 0 && r.policy.Escalation != EscalateThenAbort && g.Escalations >= maxEndlessEscalations &&
			workflow.GetVersion(ctx, gateEscalationCapChange, workflow.DefaultVersion, 1) == 1 {
			capped, tail = true, " This is the last reminder: the gate keeps waiting for a decision."
		}
		r.notify("gate-escalated", name, fmt.Sprintf("ESCALATION %d: run %s has waited %s at gate %q.%s", g.Escalations, r.info.WorkflowExecution.ID, workflow.Now(ctx).Sub(g.OpenedAt), name, tail),
			fmt.Sprintf("stackrun approve %s %s", r.info.WorkflowExecution.ID, name))
		if r.policy.Escalation == EscalateThenAbort && g.Escalations >= max(1, r.policy.EscalationRepeats) {
			g.decided = true
			r.decisions = append(r.decisions, Decision{Kind: "gate", Name: name, Outcome: "timed-out", By: "policy", Comment: "escalation policy notify-then-abort", At: workflow.Now(ctx)})
			r.setStepState(s, StepFailed, "timed out")
			return &AbortError{Reason: fmt.Sprintf("gate %q timed out after %d escalation(s)", name, g.Escalations)}
		}
	}
	last := r.decisions[len(r.decisions)-1]
	if !g.approved {
		r.setStepState(s, StepFailed, fmt.Sprintf("rejected by %s", last.By))
		return &AbortError{Reason: fmt.Sprintf("gate %q rejected by %s: %s", name, last.By, last.Comment)}
	}
	r.setStepState(s, StepDone, fmt.Sprintf("approved by %s", last.By))
	return nil
}
