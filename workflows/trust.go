package workflows

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/config/policy"
	"github.com/stackrun/stackrun/internal/infra/trust"
)

// Verified identity (docs/chatops.md, "Trust model"). Neither a signal nor an update tells a
// workflow who sent it, so every start and decision carries an ed25519 signature over what it
// decides, and the run checks it here, in deterministic code, against the key policy it loaded
// at its start and loads again (a local activity) before it accepts a decision: a revoked key
// stops working in a waiting run at once. The approver list and the two-person rule then apply
// to the verified name. Every refusal is recorded in the run (RefusedMessage) and changes nothing.

// trustChange is the workflow.GetVersion change of verified identities: runs begun before it
// (replayed histories) keep the unverified behaviour they were started with.
const trustChange = "verified-identity"

// errTypeUnverified is the application error type of a refused update.
const errTypeUnverified = "Refused"

// scheduledByAttr is the search attribute the Temporal server sets on a run a Schedule started.
var scheduledByAttr = temporal.NewSearchAttributeKeyKeyword("TemporalScheduledById")

// runTrust is a run's verification state.
type runTrust struct {
	on     bool
	keys   trust.Policy
	nonces trust.Nonces
	start  *StartRecord
	// decisions serializes the checks of decisions (each waits for the policy's refresh) in the
	// order they arrived, so that the first of two decisions on one gate is judged first.
	decisions workflow.Mutex
}

// lockDecisions takes the decisions' turn; the returned function gives it back.
func (r *Run) lockDecisions(ctx workflow.Context) func() {
	if r.trust.decisions == nil {
		r.trust.decisions = workflow.NewMutex(r.ctx)
	}
	if err := r.trust.decisions.Lock(ctx); err != nil {
		return func() {}
	}
	return r.trust.decisions.Unlock
}

// loadTrust decides whether this run verifies (GetVersion) and loads its key policy.
func (r *Run) loadTrust(lctx workflow.Context) error {
	r.trust.on = workflow.GetVersion(r.ctx, trustChange, workflow.DefaultVersion, 1) == 1
	if !r.trust.on {
		return nil
	}
	if err := workflow.ExecuteLocalActivity(lctx, machine.LoadKeys).Get(r.ctx, &r.trust.keys); err != nil {
		return fmt.Errorf("load keys: %w", err)
	}
	return nil
}

// refreshPolicy loads the worker's policy and keys again, so that a decision is judged by the
// policy of now, not of the run's start. A failure keeps the snapshot (and is logged).
func (r *Run) refreshPolicy(ctx workflow.Context) {
	lctx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		StartToCloseTimeout: 10 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 3},
	})
	var p policy.Policy
	var k trust.Policy
	if err := workflow.ExecuteLocalActivity(lctx, machine.LoadPolicy).Get(ctx, &p); err != nil {
		workflow.GetLogger(ctx).Warn("policy not refreshed; the run's snapshot applies", "error", err)
		return
	}
	if err := workflow.ExecuteLocalActivity(lctx, machine.LoadKeys).Get(ctx, &k); err != nil {
		workflow.GetLogger(ctx).Warn("keys not refreshed; the run's snapshot applies", "error", err)
		return
	}
	if p.ActivityMaxAttempts < 1 {
		p.ActivityMaxAttempts = r.policy.ActivityMaxAttempts
	}
	if p.GateTimeout <= 0 {
		p.GateTimeout = r.policy.GateTimeout
	}
	r.policy, r.trust.keys = p, k
}

// verified is who a decision's signature proves, as the decision records it.
type verified struct {
	trust.Verified
	unsigned bool
}

// verify checks a signature over st for this run: the key of st.Operator (or of a gateway that
// may vouch for them here), fresh, its nonce unused in this run. unsignedOK allows a message
// without signature (a gate the policy allows unsigned).
func (r *Run) verify(st trust.Statement, sig *trust.Signature, unsignedOK bool) (verified, error) {
	if !r.trust.on {
		return verified{Verified: trust.Verified{Operator: st.Operator}, unsigned: true}, nil
	}
	if sig == nil && unsignedOK {
		return verified{Verified: trust.Verified{Operator: st.Operator}, unsigned: true}, nil
	}
	v, err := r.trust.keys.Verify(trust.Check{Statement: st, Signature: sig, Runbook: r.runbook, Now: workflow.Now(r.ctx)})
	if err != nil {
		return verified{}, err
	}
	if err := r.trust.nonces.Check(sig.Nonce); err != nil {
		return verified{}, err
	}
	return verified{Verified: v}, nil
}

// use records the nonce of an accepted signature.
func (r *Run) use(sig *trust.Signature) {
	if sig != nil {
		r.trust.nonces.Use(sig.Nonce)
	}
}

// gateStatement is what a gate decision for this run signs (control.GateStatement builds the
// same on the client).
func (r *Run) gateStatement(req GateDecisionRequest, approve bool) trust.Statement {
	outcome := "reject"
	if approve {
		outcome = "approve"
	}
	return trust.Statement{Kind: trust.KindGate, WorkflowID: r.info.WorkflowExecution.ID, RunID: r.info.WorkflowExecution.RunID,
		Name: req.Gate, Outcome: outcome, Operator: req.By, Comment: req.Comment}
}

func (r *Run) resolveStatement(req ResolveRequest) trust.Statement {
	return trust.Statement{Kind: trust.KindResolve, WorkflowID: r.info.WorkflowExecution.ID, RunID: r.info.WorkflowExecution.RunID,
		Name: req.Step, Outcome: req.Action, Operator: req.By, Comment: req.Comment}
}

// unsignedAllowed: the policy lets this gate be decided unsigned, and it is no two-person gate.
func (r *Run) unsignedAllowed(gate string) bool {
	return r.trust.keys.AllowsUnsigned(gate) && !r.destructive(gate)
}

// checkGate is the whole check of a gate decision, in the handler: the policy of now, the
// signature, the gate still open, the verified name on the approver list, the two-person rule.
func (r *Run) checkGate(ctx workflow.Context, req GateDecisionRequest, approve bool) (verified, error) {
	if r.trust.on {
		r.refreshPolicy(ctx)
	}
	if err := r.gateOpen(req); err != nil {
		return verified{}, err
	}
	v, err := r.verify(r.gateStatement(req, approve), req.Signature, r.unsignedAllowed(req.Gate))
	if err != nil {
		return verified{}, unverified(err, req.Gate)
	}
	if err := r.mayDecideGate(req, approve); err != nil {
		return verified{}, err
	}
	return v, nil
}

func (r *Run) checkResolve(ctx workflow.Context, req ResolveRequest) (verified, error) {
	if r.trust.on {
		r.refreshPolicy(ctx)
	}
	if err := r.stepStalled(req); err != nil {
		return verified{}, err
	}
	v, err := r.verify(r.resolveStatement(req), req.Signature, false)
	if err != nil {
		return verified{}, unverified(err, "")
	}
	if err := r.mayResolve(req); err != nil {
		return verified{}, err
	}
	return v, nil
}

// unverified words a signature's refusal for the person who sent it.
func unverified(err error, gate string) error {
	var te *trust.Error
	if errors.As(err, &te) && te.Reason == trust.ReasonUnsigned && gate != "" {
		return fmt.Errorf("%w: sign the decision (stackrun approve <run> %s, or --print-signal for the web UI's \"Send a Signal\")", err, gate)
	}
	return err
}

// refusedError is what a refused update returns to its caller.
func refusedError(err error) error {
	return temporal.NewApplicationError(err.Error(), errTypeUnverified)
}

// record fills a decision with who signed it.
func (d *Decision) record(v verified) {
	d.Key, d.ChatUser, d.Gateway, d.Unsigned = v.Key, v.ChatUser, v.Gateway, v.unsigned && v.Key == ""
	switch {
	case v.ChatUser != "":
		d.Via = v.ChatUser // what the gateway signed, not what the request says
	case strings.HasPrefix(d.Via, "slack:") || strings.HasPrefix(d.Via, "mattermost:"):
		d.Via = "claimed " + d.Via // a chat identity no gateway vouched for
	}
}

// verifyStart checks who started the run: the signature in its memo over the workflow ID, the
// input's digest and the requester; or its parent run (Temporal's own record, which no client can
// set). A run that changes nothing (a read-only runbook, a dry run) may start unsigned, as a
// Temporal Schedule starts it: the TemporalScheduledById attribute is recorded, not trusted (a
// client can set it). A refused start is recorded and ends the run before anything is read.
func (r *Run) verifyStart(input any) error {
	if !r.trust.on {
		return nil
	}
	info := r.info
	if p := info.ParentWorkflowExecution; p != nil {
		r.trust.start = &StartRecord{By: r.meta.RequestedBy, Parent: p.ID}
		return nil
	}
	var sig *trust.Signature
	if f := info.Memo.GetFields()[trust.MemoStartSignature]; f != nil {
		var s trust.Signature
		if err := converter.GetDefaultDataConverter().FromPayload(f, &s); err == nil {
			sig = &s
		}
	}
	if sig == nil && (r.readOnly || r.meta.DryRun) {
		id, _ := workflow.GetTypedSearchAttributes(r.ctx).GetKeyword(scheduledByAttr)
		r.trust.start = &StartRecord{By: r.meta.RequestedBy, Schedule: id, Unsigned: true}
		return nil
	}
	b, err := json.Marshal(input)
	if err != nil {
		return err
	}
	st := trust.Statement{Kind: trust.KindStart, WorkflowID: info.WorkflowExecution.ID, InputDigest: trust.Digest(b), Operator: r.meta.RequestedBy}
	v, err := r.verify(st, sig, false)
	if err != nil {
		key := ""
		if sig != nil {
			key = sig.Key
		}
		var te *trust.Error
		if errors.As(err, &te) && te.Reason == trust.ReasonBadSignature {
			err = fmt.Errorf("%w (or the CLI and the worker disagree on the input: are they the same version?)", err)
		}
		r.refused = append(r.refused, RefusedMessage{Signal: "start", Target: r.runbook, By: r.meta.RequestedBy,
			Reason: err.Error(), At: workflow.Now(r.ctx), Via: "start", Key: key})
		return temporal.NewNonRetryableApplicationError("start refused: "+err.Error(), activities.ErrTypeRefused, nil)
	}
	// Single use across runs too: a start replayed after its run ended (same workflow ID, within
	// max_signature_age) finds its nonce claimed.
	if workflow.GetVersion(r.ctx, "start-nonce", workflow.DefaultVersion, 1) == 1 {
		var first bool
		actx := r.ActivityOptions(r.ctx, time.Minute, 0)
		claim := activities.StartNonceClaim{Nonce: sig.Nonce, WorkflowID: info.WorkflowExecution.ID, RunID: info.WorkflowExecution.RunID}
		if err := workflow.ExecuteActivity(actx, lease.ClaimStartNonce, claim).Get(r.ctx, &first); err != nil {
			return fmt.Errorf("claim the start's nonce: %w", err)
		}
		if !first {
			err := &trust.Error{Reason: trust.ReasonReplayed, Detail: "this start's signature already started another run"}
			r.refused = append(r.refused, RefusedMessage{Signal: "start", Target: r.runbook, By: r.meta.RequestedBy,
				Reason: err.Error(), At: workflow.Now(r.ctx), Via: "start", Key: sig.Key})
			return temporal.NewNonRetryableApplicationError("start refused: "+err.Error(), activities.ErrTypeRefused, nil)
		}
	}
	r.use(sig)
	r.trust.start = &StartRecord{By: v.Operator, Key: v.Key, ChatUser: v.ChatUser, Gateway: v.Gateway}
	return nil
}

// StartNonce is the marker workflow of a claimed start nonce (activities.ClaimStartNonce): its ID
// is what Temporal keeps; it does nothing.
func StartNonce(ctx workflow.Context) error { return nil }

// parentApproved reports whether claimed (SwiftRingInput.ParentApproved) is this run's real
// parent, as Temporal records it (workflow.GetInfo's ParentWorkflowExecution, which no client
// can set): only then does the parent's approval cover this run. A claim that is not the parent
// is recorded as refused and the run asks for its own approval.
func (r *Run) parentApproved(claimed string) bool {
	if claimed == "" {
		return false
	}
	if !r.trust.on {
		return true // a run begun before verified identities
	}
	p := r.info.ParentWorkflowExecution
	if p != nil && p.ID == claimed {
		return true
	}
	parent := "none"
	if p != nil {
		parent = p.ID
	}
	if slices.ContainsFunc(r.refused, func(m RefusedMessage) bool { return m.Signal == "parent_approved" }) {
		return false // recorded when the plan was first made
	}
	r.refused = append(r.refused, RefusedMessage{Signal: "parent_approved", Target: claimed, By: r.meta.RequestedBy,
		Reason: fmt.Sprintf("parent_approved names %s, but this run's parent is %s: its own gate applies", claimed, parent),
		At:     workflow.Now(r.ctx), Via: "start"})
	return false
}

// Verifies reports whether this run verifies identities (false only when replaying a run begun
// before they existed): runbooks gate their new approvals on it, so old histories replay.
func (r *Run) Verifies() bool { return r.trust.on }
