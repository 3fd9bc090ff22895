// Package trust tries every impersonation issue 11 lists against the real thing: a Temporal dev
// server, the real worker binary (its keys from the configuration), the real CLI binary, the
// chat gateway, `temporal workflow signal` as the web UI sends it, and the real restart-service
// runbook on a host over SSH (chattest rig). Each attempt is refused, recorded in the run, and
// changes nothing on the host; the genuine decisions then go through.
package trust

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/config"
	"github.com/stackrun/stackrun/internal/app/chat"
	"github.com/stackrun/stackrun/internal/app/chat/chattest"
	"github.com/stackrun/stackrun/internal/app/control"
	"github.com/stackrun/stackrun/internal/infra/trust"
	"github.com/stackrun/stackrun/internal/testenv/devserver"
	"github.com/stackrun/stackrun/internal/testenv/operators"
	"github.com/stackrun/stackrun/workflows"
)

type env struct {
	t   *testing.T
	tq  string
	rig *chattest.Rig
	gw  string // the chat gateway's URL
	mm  *ecdsa.PrivateKey
	n   int
}

func (e *env) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	e.t.Cleanup(cancel)
	return ctx
}

func (e *env) status(id string) workflows.Status {
	st, err := control.Status(e.ctx(), e.rig.Server.Client, id)
	require.NoError(e.t, err)
	return st
}

// waitFor polls the run until cond holds.
func (e *env) waitFor(id, what string, cond func(workflows.Status) bool) workflows.Status {
	e.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		st, err := control.Status(e.ctx(), e.rig.Server.Client, id)
		if err == nil && cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s: %s not reached: %+v %v\nworker log:\n%s", id, what, st, err, e.rig.WorkerLog())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// refused waits for the run's n-th refusal and checks its reason.
func (e *env) refused(id string, n int, want string) workflows.RefusedMessage {
	e.t.Helper()
	st := e.waitFor(id, fmt.Sprintf("refusal %d (%s)", n, want), func(s workflows.Status) bool { return len(s.Refused) >= n })
	m := st.Refused[n-1]
	require.Contains(e.t, m.Reason, want, "refusal %d", n)
	return m
}

// unchanged: still at the gate, no decision, the host untouched since before.
func (e *env) unchanged(id, svc, before string) {
	e.t.Helper()
	st := e.status(id)
	require.Equal(e.t, workflows.StatusWaitingApproval, st.Status)
	require.Empty(e.t, st.Decisions)
	require.Equal(e.t, before, e.rig.Actions(svc), "the service was touched")
}

func (e *env) signal(id, name string, input any) {
	e.t.Helper()
	b, err := json.Marshal(input)
	require.NoError(e.t, err)
	temporal := filepath.Join(devserver.RepoRoot(e.t), "bin", "temporal")
	out, err := exec.Command(temporal, "workflow", "signal", "--workflow-id", id, "--name", name, "--input", string(b),
		"--address", e.rig.Server.HostPort, "--namespace", "default").CombinedOutput()
	require.NoError(e.t, err, string(out))
}

func (e *env) cli(args ...string) (string, string, int) {
	cmd := exec.Command(filepath.Join(e.rig.Bin, "stackrun"), append([]string{"--config", e.rig.Config}, args...)...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

func (e *env) start(svc, reason string) (string, string) {
	rb, err := workflows.FindRunbook("restart-service")
	require.NoError(e.t, err)
	in := &workflows.RestartServiceInput{Meta: workflows.Meta{RequestedBy: "alice", Reason: reason}, Host: "node1", Service: svc}
	s, err := control.Start(e.ctx(), e.rig.Server.Client, e.tq, rb, in, control.KeySigner{Key: chattest.Alice.Signer})
	require.NoError(e.t, err)
	e.waitFor(s.WorkflowID, "the gate", func(st workflows.Status) bool { return len(st.OpenGates) == 1 })
	return s.WorkflowID, s.RunID
}

func signed(t *testing.T, o operators.Operator, st trust.Statement, at time.Time, req workflows.GateDecisionRequest) workflows.GateDecisionRequest {
	req.Signature = o.SignAt(t, st, at)
	return req
}

func TestEveryImpersonationIsRefused(t *testing.T) {
	e := &env{t: t}
	var h http.Handler = http.NotFoundHandler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r) }))
	t.Cleanup(srv.Close)
	e.gw = srv.URL
	e.rig = chattest.New(t, chattest.Options{PublicURL: srv.URL})
	cfg, err := config.Load(config.LoadOptions{Path: e.rig.Config, LookupEnv: config.MapEnv(nil)})
	require.NoError(t, err)
	e.tq = cfg.Temporal.TaskQueue
	e.mm, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	handler := &chat.Handler{
		Service: &chat.Service{Client: e.rig.Server.Client, TaskQueue: cfg.Temporal.TaskQueue, Namespace: cfg.Temporal.Namespace, Key: chattest.Gateway.Signer},
		Dir:     chat.NewDirectory(cfg.Chat), Slack: &chat.SlackVerifier{Secret: chattest.SlackSecret},
		MattermostToken: chattest.MattermostToken, Triggers: &chat.TriggerVerifier{PublicKey: &e.mm.PublicKey},
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		handler.Close(ctx)
	})
	h = handler
	dir := t.TempDir()
	aliceKey := chattest.Alice.WriteKeyFile(t, dir)
	strangerKey := operators.New(t, "stranger").WriteKeyFile(t, dir)

	id, runA := e.start("svc-a", "first")
	gate := workflows.GateApproveRestart
	bobApproves := workflows.GateDecisionRequest{Gate: gate, By: "bob", Via: "web-ui"}
	stmt := control.GateStatement(id, runA, bobApproves, true)
	n := 0
	next := func(want string) workflows.RefusedMessage { n++; return e.refused(id, n, want) }

	// 1. --as bob, signed with alice's key (the only one she has), then with a key nobody knows.
	_, errs, code := e.cli("approve", id, gate, "--as", "bob", "--key", aliceKey)
	require.NotEqual(t, 0, code)
	require.Contains(t, errs, "(wrong-operator)")
	require.Equal(t, chattest.Alice.Fingerprint(), next("(wrong-operator)").Key)
	_, errs, code = e.cli("approve", id, gate, "--as", "bob", "--key", strangerKey)
	require.NotEqual(t, 0, code)
	require.Contains(t, errs, "(unknown-key)")
	next("(unknown-key)")
	// 2. The web UI's "Send a Signal" with a typed name and no signature.
	e.signal(id, workflows.SignalApprove, map[string]string{"gate": gate, "by": "bob"})
	require.Equal(t, "signal", next("(unsigned)").Via)
	// 3. bob's genuine signature, but for the run before this one on the same target.
	other := stmt
	other.RunID = "the-run-before"
	e.signal(id, workflows.SignalApprove, signed(t, chattest.Bob, other, time.Now(), bobApproves))
	next("(bad-signature)")
	// 4. bob's signature over this run, made eleven minutes ago (the policy allows ten).
	_, err = control.DecideGate(e.ctx(), e.rig.Server.Client, id, runA, signed(t, chattest.Bob, stmt, time.Now().Add(-11*time.Minute), bobApproves), true, nil)
	require.ErrorContains(t, err, "(expired)")
	next("(expired)")
	// 5. A forged lease grant, sent while the run waits at its gate: the run reads it when it
	// reaches its lease, finds that the lease never granted it, and keeps waiting for the real one.
	e.signal(id, workflows.SignalLeaseGranted, activities.LeaseHolder{WorkflowID: id, RunID: runA, Host: "node1"})
	e.unchanged(id, "svc-a", "")

	// The genuine approval: bob's, through the web UI's path.
	e.signal(id, workflows.SignalApprove, signed(t, chattest.Bob, stmt, time.Now(), bobApproves))
	rep, err := control.Report(e.ctx(), e.rig.Server.Client, id, true)
	require.NoError(t, err)
	require.Equal(t, workflows.StatusCompleted, rep.Status, rep.Summary)
	require.Len(t, rep.Decisions, 1)
	require.Equal(t, chattest.Bob.Fingerprint(), rep.Decisions[0].Key)
	require.Equal(t, "stop\nstart", e.rig.Actions("svc-a"))
	var leaseRefused bool
	for _, m := range rep.Refused {
		leaseRefused = leaseRefused || (m.Signal == workflows.SignalLeaseGranted && strings.Contains(m.Reason, "does not list this run"))
	}
	require.True(t, leaseRefused, "the forged lease grant is recorded: %+v", rep.Refused)
	require.Len(t, rep.Refused, n+1)

	// 6. The next run on the same target: the old Slack button, the old Mattermost button, and
	// the old gateway-signed approval sent straight to Temporal.
	mm := e.rig.Received.WaitFor(t, "/mattermost", 30*time.Second, "run A's Mattermost message", func(b []byte) bool {
		return strings.Contains(string(b), "Approval needed") && strings.Contains(string(b), runA)
	})
	oldButton := mattermostContext(t, mm)
	require.Equal(t, runA, oldButton.RunID)
	slackMsg := e.rig.Received.WaitFor(t, "/slack", 30*time.Second, "run A's Slack message", func(b []byte) bool {
		return strings.Contains(string(b), "Approval needed") && strings.Contains(string(b), runA)
	})
	id2, runB := e.start("svc-a", "second")
	require.Equal(t, id, id2)
	require.NotEqual(t, runA, runB)
	code, ans := e.mattermostPress("bobmm", oldButton, e.trigger("bobmm"))
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, ans.EphemeralText, "this button is for an earlier run")
	rp := e.slackPress(t, "UBOB", slackMsg)
	require.Contains(t, e.answer(t, rp), "this button is for an earlier run")
	oldVouched := control.GateStatement(id, runA, workflows.GateDecisionRequest{Gate: gate, By: "bob"}, true)
	oldVouched.ChatUser = "slack:UBOB"
	e.signal(id, workflows.SignalApprove, signed(t, chattest.Gateway, oldVouched, time.Now(), workflows.GateDecisionRequest{Gate: gate, By: "bob"}))
	e.refused(id, 1, "(bad-signature)")
	// 7. A Mattermost press by alice on the new run (refused: her own run, two-person gate),
	// then the very same request again: a replay, refused before anything.
	mm2 := e.rig.Received.WaitFor(t, "/mattermost", 30*time.Second, "run B's Mattermost message", func(b []byte) bool {
		return strings.Contains(string(b), "Approval needed") && strings.Contains(string(b), runB)
	})
	newButton := mattermostContext(t, mm2)
	tr := e.trigger("alicemm")
	code, ans = e.mattermostPress("alicemm", newButton, tr)
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, ans.EphemeralText, "may not approve the destructive gate")
	e.refused(id, 2, "may not approve the destructive gate")
	code, _ = e.mattermostPress("alicemm", newButton, tr)
	require.Equal(t, http.StatusUnauthorized, code, "a replayed Mattermost button")
	e.unchanged(id, "svc-a", "stop\nstart")
	st := e.status(id)
	require.Len(t, st.Refused, 2, "the replay never reached the run")
	_, err = control.Reject(e.ctx(), e.rig.Server.Client, id, workflows.GateDecisionRequest{Gate: gate, By: "bob", Comment: "enough"}, control.KeySigner{Key: chattest.Bob.Signer})
	require.NoError(t, err)

	// 8. A replayed resolve: svc-b fails to start; bob's signed retry is accepted, it fails
	// again, and the same signed retry sent once more is refused as a replay.
	fail := filepath.Join(e.rig.State, "svc-b.fail-start")
	require.NoError(t, os.WriteFile(fail, nil, 0o644))
	idB, runC := e.start("svc-b", "third")
	_, err = control.Approve(e.ctx(), e.rig.Server.Client, idB, workflows.GateDecisionRequest{Gate: gate, By: "bob"}, control.KeySigner{Key: chattest.Bob.Signer})
	require.NoError(t, err)
	e.waitFor(idB, "stalled", func(s workflows.Status) bool { return len(s.Stalled) == 1 })
	retry := workflows.ResolveRequest{Step: "start", Action: workflows.ResolveRetry, By: "bob"}
	retry.Signature = chattest.Bob.Sign(t, control.ResolveStatement(idB, runC, retry))
	_, err = control.ResolveRun(e.ctx(), e.rig.Server.Client, idB, runC, retry, nil)
	require.NoError(t, err)
	e.waitFor(idB, "stalled again", func(s workflows.Status) bool { return len(s.Stalled) == 1 && len(s.Decisions) == 2 })
	_, err = control.ResolveRun(e.ctx(), e.rig.Server.Client, idB, runC, retry, nil)
	require.ErrorContains(t, err, "(replayed)")
	e.refused(idB, 1, "(replayed)")
	require.NoError(t, os.Remove(fail))
	_, err = control.Resolve(e.ctx(), e.rig.Server.Client, idB, workflows.ResolveRequest{Step: "start", Action: workflows.ResolveRetry, By: "bob"}, control.KeySigner{Key: chattest.Bob.Signer})
	require.NoError(t, err)
	rep, err = control.Report(e.ctx(), e.rig.Server.Client, idB, true)
	require.NoError(t, err)
	require.Equal(t, workflows.StatusCompleted, rep.Status, rep.Summary)

	// 9. A ring change whose input claims a swift-disk run approved it: that run is not its
	// parent, so the claim is refused and recorded before anything is read (this rig has no Swift
	// cluster, so the run then ends at its plan, having changed nothing).
	ring, err := workflows.FindRunbook("swift-ring")
	require.NoError(t, err)
	forged := &workflows.SwiftRingInput{Meta: workflows.Meta{RequestedBy: "alice", Reason: "forged"}, SetWeight: []string{"node1/sdb=0"}, ParentApproved: "swift-disk/node1/sdb"}
	s, err := control.Start(e.ctx(), e.rig.Server.Client, e.tq, ring, forged, control.KeySigner{Key: chattest.Alice.Signer})
	require.NoError(t, err)
	rep, err = control.Report(e.ctx(), e.rig.Server.Client, s.WorkflowID, true)
	require.NoError(t, err)
	require.NotEqual(t, workflows.StatusCompleted, rep.Status)
	require.NotEmpty(t, rep.Refused)
	require.Equal(t, "parent_approved", rep.Refused[0].Signal)
	require.Contains(t, rep.Refused[0].Reason, "this run's parent is none")
	for _, d := range rep.Decisions {
		t.Errorf("a decision on the forged run: %+v", d)
	}

	// 10. A start replayed after its run ended: alice's signed start of svc-a, sent again with
	// the same input and memo (as anyone who read the first run's history could).
	rb, err := workflows.FindRunbook("restart-service")
	require.NoError(t, err)
	in := workflows.RestartServiceInput{Meta: workflows.Meta{RequestedBy: "alice", Reason: "replay me"}, Host: "node1", Service: "svc-a"}
	st0, err := control.StartStatement(rb.WorkflowID(&in), &in)
	require.NoError(t, err)
	sig, err := control.KeySigner{Key: chattest.Alice.Signer}.Sign(st0)
	require.NoError(t, err)
	raw := func() string {
		run, err := e.rig.Server.Client.ExecuteWorkflow(e.ctx(), client.StartWorkflowOptions{ID: rb.WorkflowID(&in), TaskQueue: e.tq,
			Memo: map[string]any{trust.MemoStartSignature: sig}}, rb.Type, in)
		require.NoError(t, err)
		return run.GetRunID()
	}
	first := raw()
	e.waitFor(rb.WorkflowID(&in), "the first run's gate", func(s workflows.Status) bool { return len(s.OpenGates) == 1 })
	_, err = control.Reject(e.ctx(), e.rig.Server.Client, rb.WorkflowID(&in), workflows.GateDecisionRequest{Gate: gate, By: "bob"}, control.KeySigner{Key: chattest.Bob.Signer})
	require.NoError(t, err)
	rep, err = control.Report(e.ctx(), e.rig.Server.Client, rb.WorkflowID(&in), true)
	require.NoError(t, err)
	require.Equal(t, first, rep.RunID)
	second := raw()
	require.NotEqual(t, first, second)
	rep, err = control.Report(e.ctx(), e.rig.Server.Client, rb.WorkflowID(&in), true)
	require.NoError(t, err)
	require.Equal(t, second, rep.RunID)
	require.Equal(t, workflows.StatusFailed, rep.Status)
	require.Contains(t, rep.Summary, "(replayed)")
	require.Equal(t, "stop\nstart", e.rig.Actions("svc-a"), "the replayed start touched the service")
}

func (e *env) trigger(user string) string {
	tr, err := chat.MattermostTrigger(user, time.Now(), e.mm)
	require.NoError(e.t, err)
	return tr
}

func (e *env) mattermostPress(user string, c chat.MattermostContext, trigger string) (int, chat.MattermostActionResponse) {
	b, _ := json.Marshal(map[string]any{"user_id": user, "user_name": user, "channel_id": "c1", "post_id": "p1", "trigger_id": trigger, "context": c.ContextMap()})
	resp, err := http.Post(e.gw+"/mattermost/actions", "application/json", strings.NewReader(string(b)))
	require.NoError(e.t, err)
	defer resp.Body.Close()
	var out chat.MattermostActionResponse
	body, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(body, &out)
	return resp.StatusCode, out
}

// slackPress presses the Approve button of a Slack message, signed as Slack signs; it returns the
// response URL path the answer goes to.
func (e *env) slackPress(t *testing.T, user string, msg []byte) string {
	var m struct {
		Blocks json.RawMessage `json:"blocks"`
	}
	require.NoError(t, json.Unmarshal(msg, &m))
	var blocks []struct {
		Type     string `json:"type"`
		Elements []struct {
			ActionID string `json:"action_id"`
			Value    string `json:"value"`
		} `json:"elements"`
	}
	require.NoError(t, json.Unmarshal(m.Blocks, &blocks))
	value := ""
	for _, b := range blocks {
		for _, el := range b.Elements {
			if b.Type == "actions" && el.ActionID == chat.ActionApprove {
				value = el.Value
			}
		}
	}
	require.NotEmpty(t, value)
	e.n++
	rp := fmt.Sprintf("/resp/%d", e.n)
	payload, _ := json.Marshal(map[string]any{
		"type": "block_actions", "user": map[string]any{"id": user, "username": user, "name": user},
		"response_url": e.rig.Received.URL + rp, "message": map[string]any{"type": "message", "ts": "1.1", "blocks": m.Blocks},
		"actions": []map[string]any{{"type": "button", "action_id": chat.ActionApprove, "block_id": "stackrun-actions", "value": value, "action_ts": "1.2"}},
	})
	body := url.Values{"payload": {string(payload)}}.Encode()
	ts := time.Now().Unix()
	req, _ := http.NewRequest(http.MethodPost, e.gw+"/slack/actions", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Slack-Request-Timestamp", strconv.FormatInt(ts, 10))
	req.Header.Set("X-Slack-Signature", chat.SignSlack(chattest.SlackSecret, ts, []byte(body)))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	return rp
}

func (e *env) answer(t *testing.T, path string) string {
	b := e.rig.Received.WaitFor(t, path, 30*time.Second, "the gateway's answer", func([]byte) bool { return true })
	return chattest.JSONField(b, "text")
}

func mattermostContext(t *testing.T, msg []byte) chat.MattermostContext {
	var m chat.MattermostMessage
	require.NoError(t, json.Unmarshal(msg, &m))
	for _, a := range m.Attachments {
		for _, act := range a.Actions {
			if act.ID == "approve" {
				b, _ := json.Marshal(act.Integration.Context)
				var c chat.MattermostContext
				require.NoError(t, json.Unmarshal(b, &c))
				return c
			}
		}
	}
	t.Fatalf("no approve button in %s", msg)
	return chat.MattermostContext{}
}
