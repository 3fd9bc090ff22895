package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/stackrun/stackrun/internal/infra/trust"
	"github.com/stackrun/stackrun/internal/infra/trust/sshsign"
	"github.com/stackrun/stackrun/workflows"
)

// Signer signs what an operator starts or decides. The CLI signs with the operator's key (ssh-agent
// or a key file); the chat gateway signs with its own key, naming the chat user it verified. A nil
// Signer sends the request unsigned: the workflow then accepts it only where the policy allows.
type Signer interface {
	Sign(st trust.Statement) (trust.Signature, error)
}

// KeySigner signs with an sshsign.Signer at the current time. ChatUser, when set, is the verified
// chat user the key (the chat gateway's) vouches for.
type KeySigner struct {
	Key      sshsign.Signer
	ChatUser string
	// Now is the clock (nil: time.Now); tests sign in the past.
	Now func() time.Time
}

// Sign implements Signer.
func (k KeySigner) Sign(st trust.Statement) (trust.Signature, error) {
	if k.Key == nil {
		return trust.Signature{}, errors.New("sign: no key")
	}
	now := time.Now
	if k.Now != nil {
		now = k.Now
	}
	st.ChatUser = k.ChatUser
	return sshsign.Sign(k.Key, st, now())
}

// GateStatement is what a gate decision signs: this run (workflow ID and run ID), the gate, the
// outcome, the operator and the comment.
func GateStatement(workflowID, runID string, req workflows.GateDecisionRequest, approve bool) trust.Statement {
	outcome := "reject"
	if approve {
		outcome = "approve"
	}
	return trust.Statement{Kind: trust.KindGate, WorkflowID: workflowID, RunID: runID, Name: req.Gate,
		Outcome: outcome, Operator: req.By, Comment: req.Comment}
}

// ResolveStatement is what a resolve signs.
func ResolveStatement(workflowID, runID string, req workflows.ResolveRequest) trust.Statement {
	return trust.Statement{Kind: trust.KindResolve, WorkflowID: workflowID, RunID: runID, Name: req.Step,
		Outcome: req.Action, Operator: req.By, Comment: req.Comment}
}

// InputDigest is the digest a start signs: the input's JSON as the workflow receives it (the
// value, not the pointer the flags fill).
func InputDigest(in workflows.Input) (string, error) {
	arg := any(in)
	if v := reflect.ValueOf(in); v.Kind() == reflect.Pointer {
		arg = v.Elem().Interface()
	}
	b, err := json.Marshal(arg)
	if err != nil {
		return "", fmt.Errorf("input digest: %w", err)
	}
	return trust.Digest(b), nil
}

// StartStatement is what a start signs: the workflow ID, the input's digest, the requester.
func StartStatement(workflowID string, in workflows.Input) (trust.Statement, error) {
	d, err := InputDigest(in)
	if err != nil {
		return trust.Statement{}, err
	}
	return trust.Statement{Kind: trust.KindStart, WorkflowID: workflowID, InputDigest: d, Operator: in.GetMeta().RequestedBy}, nil
}

// MemoStartSignature is the memo field that carries a start's signature (the input is what is
// signed, so the signature travels beside it, not in it).
const MemoStartSignature = trust.MemoStartSignature

// CurrentRunID is the run ID of the open run of a workflow ID: a decision signs it, so that it
// cannot decide the next run on the same target.
func CurrentRunID(ctx context.Context, c client.Client, id string) (string, error) {
	d, err := c.DescribeWorkflowExecution(ctx, id, "")
	if err != nil {
		if e := notFound(id, err); e != nil {
			return "", e
		}
		return "", fmt.Errorf("describe %s: %w", id, err)
	}
	return d.GetWorkflowExecutionInfo().GetExecution().GetRunId(), nil
}

// PrintSignal builds the signed JSON of a gate decision for the web UI's "Send a Signal" (signal
// name approve or reject) or `temporal workflow signal`: signed for the run open now.
func PrintSignal(ctx context.Context, c client.Client, id string, req workflows.GateDecisionRequest, approve bool, s Signer) (runID string, signal workflows.GateDecisionRequest, err error) {
	if s == nil {
		return "", req, errors.New("print-signal: nothing to sign with")
	}
	runID, err = CurrentRunID(ctx, c, id)
	if err != nil {
		return "", req, err
	}
	if req.Via == "" {
		req.Via = "web-ui"
	}
	sig, err := s.Sign(GateStatement(id, runID, req, approve))
	if err != nil {
		return "", req, err
	}
	req.Signature = &sig
	return runID, req, nil
}
