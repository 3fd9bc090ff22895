package chat_test

// HTTP tests of the gateway with requests signed exactly as Slack and Mattermost sign them,
// against a real Temporal dev server and the real worker binary running the real restart-service
// runbook (chattest rig). Valid requests act; forged, expired, replayed, unknown-user,
// non-approver and self-approval requests are refused with a clear message and change nothing.

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
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stackrun/stackrun/config"
	"github.com/stackrun/stackrun/internal/app/chat"
	"github.com/stackrun/stackrun/internal/app/chat/chattest"
	"github.com/stackrun/stackrun/internal/app/control"
	"github.com/stackrun/stackrun/workflows"
)

const runID = "restart-service/node1/svc-a"

type gw struct {
	t     *testing.T
	rig   *chattest.Rig
	url   string
	resp  *chattest.Receiver // response_url receiver
	n     atomic.Int64
	slack *chat.SlackVerifier
	// mm stands for Mattermost's asymmetric signing key: it signs the trigger IDs.
	mm *ecdsa.PrivateKey
}

func newGateway(t *testing.T) *gw {
	g := &gw{t: t, resp: chattest.NewReceiver(t)}
	// The gateway's URL must be in the worker's config (Mattermost buttons): start its listener first.
	var h http.Handler = http.NotFoundHandler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r) }))
	t.Cleanup(srv.Close)
	g.url = srv.URL
	g.rig = chattest.New(t, chattest.Options{PublicURL: srv.URL})
	cfg, err := config.Load(config.LoadOptions{Path: g.rig.Config, LookupEnv: config.MapEnv(nil)})
	require.NoError(t, err)
	require.NoError(t, cfg.ValidateFor(config.ForChat))
	g.slack = &chat.SlackVerifier{Secret: cfg.Chat.Slack.SigningSecret}
	g.mm, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	handler := &chat.Handler{
		Service: &chat.Service{Client: g.rig.Server.Client, TaskQueue: cfg.Temporal.TaskQueue,
			Namespace: cfg.Temporal.Namespace, WebUIURL: "http://ui.example", Key: chattest.Gateway.Signer},
		Dir:             chat.NewDirectory(cfg.Chat),
		Slack:           g.slack,
		MattermostToken: cfg.Chat.Mattermost.Token,
		Triggers:        &chat.TriggerVerifier{PublicKey: &g.mm.PublicKey},
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		handler.Close(ctx)
	})
	h = handler
	return g
}

// responseURL returns a fresh response URL path on the receiver.
func (g *gw) responseURL() (string, string) {
	p := fmt.Sprintf("/resp/%d", g.n.Add(1))
	return g.resp.URL + p, p
}

// slackPost sends a form signed as Slack signs it (v0, timestamp ts) with secret.
func (g *gw) slackPost(path string, form url.Values, ts int64, secret string) (*http.Response, string, http.Header) {
	body := form.Encode()
	req, err := http.NewRequest(http.MethodPost, g.url+path, strings.NewReader(body))
	require.NoError(g.t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Slack-Request-Timestamp", strconv.FormatInt(ts, 10))
	req.Header.Set("X-Slack-Signature", chat.SignSlack(secret, ts, []byte(body)))
	return g.do(req, body)
}

func (g *gw) do(req *http.Request, body string) (*http.Response, string, http.Header) {
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	require.NoError(g.t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	// Slack's limit: every answer within 3 seconds.
	assert.Less(g.t, time.Since(start), 3*time.Second, "answer to %s took too long", req.URL.Path)
	return resp, string(b), req.Header.Clone()
}

func (g *gw) command(user, text string, ts int64, secret string) (*http.Response, string, string) {
	ru, rp := g.responseURL()
	form := url.Values{"command": {"/stackrun"}, "text": {text}, "user_id": {user}, "user_name": {strings.ToLower(user)},
		"team_id": {"T1"}, "channel_id": {"C1"}, "response_url": {ru}, "trigger_id": {"1.2.3"}}
	resp, body, _ := g.slackPost("/slack/commands", form, ts, secret)
	return resp, body, rp
}

// press sends a signed block_actions payload for a button of a message the worker posted.
func (g *gw) press(user string, msgBlocks json.RawMessage, actionID, value string) string {
	ru, rp := g.responseURL()
	code := g.pressTo(ru, user, msgBlocks, actionID, value)
	require.Equal(g.t, http.StatusOK, code)
	return rp
}

// pressRaw presses and returns the HTTP status only.
func (g *gw) pressRaw(user string, msgBlocks json.RawMessage, actionID, value string) int {
	ru, _ := g.responseURL()
	return g.pressTo(ru, user, msgBlocks, actionID, value)
}

func (g *gw) pressTo(ru, user string, msgBlocks json.RawMessage, actionID, value string) int {
	payload := map[string]any{
		"type": "block_actions", "user": map[string]any{"id": user, "username": strings.ToLower(user), "name": strings.ToLower(user)},
		"api_app_id": "A1", "team": map[string]any{"id": "T1"}, "response_url": ru, "trigger_id": "1.2.3",
		"container": map[string]any{"type": "message", "message_ts": "1.1"},
		"message":   map[string]any{"type": "message", "ts": "1.1", "blocks": msgBlocks},
		"actions":   []map[string]any{{"type": "button", "action_id": actionID, "block_id": "stackrun-actions", "value": value, "action_ts": "1.2"}},
	}
	b, err := json.Marshal(payload)
	require.NoError(g.t, err)
	resp, _, _ := g.slackPost("/slack/actions", url.Values{"payload": {string(b)}}, time.Now().Unix(), chattest.SlackSecret)
	return resp.StatusCode
}

func (g *gw) reply(path, what string) string {
	b := g.resp.WaitFor(g.t, path, 30*time.Second, what, func([]byte) bool { return true })
	return chattest.JSONField(b, "text")
}

func (g *gw) status() workflows.Status {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := control.Status(ctx, g.rig.Server.Client, runID)
	require.NoError(g.t, err)
	return st
}

func (g *gw) noRun() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := g.rig.Server.Client.DescribeWorkflowExecution(ctx, runID, "")
	require.Error(g.t, err, "a refused request started a run")
}

// unchanged checks that the run still waits at its gate with no decision and nothing restarted.
func (g *gw) unchanged() {
	st := g.status()
	require.Equal(g.t, workflows.StatusWaitingApproval, st.Status)
	require.Empty(g.t, st.Decisions)
	require.Empty(g.t, g.rig.Actions("svc-a"), "the service was touched")
}

func TestSlackAndMattermostRequests(t *testing.T) {
	g := newGateway(t)
	now := time.Now().Unix()
	start := "restart-service node1 svc-a config change"

	// Forged signature: 401, no run.
	resp, body, _ := g.command("UALICE", start, now, "not-the-secret")
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	require.Contains(t, body, "signature does not verify")
	// Expired timestamp (signed correctly, 10 minutes old): 401, no run.
	resp, body, _ = g.command("UALICE", start, now-600, chattest.SlackSecret)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	require.Contains(t, body, "more than 5 minutes")
	// No signature at all.
	req, _ := http.NewRequest(http.MethodPost, g.url+"/slack/commands", strings.NewReader("text=list"))
	resp, body, _ = g.do(req, "")
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode, body)
	// Unknown user: answered at once with a refusal, no run.
	resp, body, _ = g.command("UMALLORY", start, now, chattest.SlackSecret)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, body, "Refused")
	require.Contains(t, body, "not a Stackrun operator")
	// A user whose roles do not allow the runbook.
	_, _, rp := g.command("UERIN", start, now, chattest.SlackSecret)
	require.Contains(t, g.reply(rp, "erin's start"), "erin may not start restart-service")
	// erin may run post-reboot-check, but not have it start tenants' instances.
	_, _, rp = g.command("UERIN", "post-reboot-check node1 --start-instances", now, chattest.SlackSecret)
	require.Contains(t, g.reply(rp, "erin's --start-instances"), "may not use --start-instances from chat")
	g.noRun()

	// Valid: alice starts the run; the answer comes through the response URL.
	body = ""
	ru, rp := g.responseURL()
	form := url.Values{"command": {"/stackrun"}, "text": {start}, "user_id": {"UALICE"}, "user_name": {"alice"}, "response_url": {ru}}
	resp, body, hdr := g.slackPost("/slack/commands", form, time.Now().Unix(), chattest.SlackSecret)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	require.Contains(t, g.reply(rp, "alice's start"), "alice started `"+runID+"`")

	// The exact same request again (same timestamp and signature): a replay, refused.
	req, _ = http.NewRequest(http.MethodPost, g.url+"/slack/commands", strings.NewReader(form.Encode()))
	req.Header = hdr
	resp, body, _ = g.do(req, "")
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	require.Contains(t, body, "replayed")

	// The worker posts the gate message (plan and buttons) to the Slack webhook.
	gateMsg := g.rig.Received.WaitFor(t, "/slack", 60*time.Second, "gate message", func(b []byte) bool {
		return strings.Contains(string(b), "Approval needed") && strings.Contains(string(b), runID)
	})
	var msg struct {
		Text   string          `json:"text"`
		Blocks json.RawMessage `json:"blocks"`
	}
	require.NoError(t, json.Unmarshal(gateMsg, &msg))
	require.Contains(t, string(msg.Blocks), "stop svc-a on node1", "the plan is in the message")
	require.Contains(t, string(msg.Blocks), "two-person rule")
	value := buttonValue(t, msg.Blocks, chat.ActionApprove)
	g.unchanged()

	// alice approving her own run at a destructive gate: the workflow's validator refuses.
	rp = g.press("UALICE", msg.Blocks, chat.ActionApprove, value)
	require.Contains(t, g.reply(rp, "self-approval"), "alice requested this run and may not approve the destructive gate")
	g.unchanged()
	// erin's chat roles have no gates: the gateway refuses.
	rp = g.press("UERIN", msg.Blocks, chat.ActionApprove, value)
	require.Contains(t, g.reply(rp, "erin's approval"), "erin may not approve gate `approve-restart` from chat")
	g.unchanged()
	// dave may approve every gate as far as chat is concerned, but is not in policy.approvers:
	// the workflow is the second guard.
	rp = g.press("UDAVE", msg.Blocks, chat.ActionApprove, value)
	require.Contains(t, g.reply(rp, "dave's approval"), "dave may not approve gate \"approve-restart\" (allowed: alice, bob)")
	g.unchanged()
	// An unknown user pressing the button.
	rp = g.press("UMALLORY", msg.Blocks, chat.ActionApprove, value)
	require.Contains(t, g.reply(rp, "mallory's approval"), "not a Stackrun operator")
	g.unchanged()

	// Mattermost: a forged token, a forged button signature, an unknown user: refused.
	mmResp := g.mattermostCommand("wrong-token", "bobmm", "status "+runID, g.trigger("bobmm", time.Now()))
	require.Equal(t, http.StatusUnauthorized, mmResp.StatusCode)
	mmMsg := g.rig.Received.WaitFor(t, "/mattermost", 30*time.Second, "mattermost gate message", func(b []byte) bool {
		return strings.Contains(string(b), "Approval needed")
	})
	mctx := mattermostContext(t, mmMsg, "approve")
	require.NotEmpty(t, mctx.RunID, "buttons name their run")
	forged := mctx
	forged.Run = "restart-service/node1/svc-b"
	code, _ := g.mattermostAction("bobmm", forged, g.trigger("bobmm", time.Now()))
	require.Equal(t, http.StatusUnauthorized, code)
	forged = mctx
	forged.Exp = time.Now().Add(240 * time.Hour).Unix() // stretched expiry: the signature breaks
	code, _ = g.mattermostAction("bobmm", forged, g.trigger("bobmm", time.Now()))
	require.Equal(t, http.StatusUnauthorized, code)
	expired := (chat.ActionSigner{Key: chattest.MattermostToken}).SignContext(chat.MattermostContext{
		Action: mctx.Action, Run: mctx.Run, RunID: mctx.RunID, Name: mctx.Name, Exp: time.Now().Add(-time.Minute).Unix()})
	code, _ = g.mattermostAction("bobmm", expired, g.trigger("bobmm", time.Now()))
	require.Equal(t, http.StatusUnauthorized, code, "an expired button")
	// A press whose trigger names another user, an old one, an unsigned one: refused.
	for what, tr := range map[string]string{
		"trigger of another user": g.trigger("alicemm", time.Now()),
		"old trigger":             g.trigger("bobmm", time.Now().Add(-10*time.Minute)),
		"no trigger":              "",
		"unsigned trigger":        unsignedTrigger(t, "bobmm"),
	} {
		code, _ = g.mattermostAction("bobmm", mctx, tr)
		require.Equal(t, http.StatusUnauthorized, code, what)
	}
	tr := g.trigger("mallorymm", time.Now())
	code, ans := g.mattermostAction("mallorymm", mctx, tr)
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, ans.EphemeralText, "not a Stackrun operator")
	// The same press again (a replayed request): refused before anything.
	code, _ = g.mattermostAction("mallorymm", mctx, tr)
	require.Equal(t, http.StatusUnauthorized, code, "a replayed Mattermost button")
	g.unchanged()
	// A valid Mattermost command: status through the response URL; the same request again is a
	// replay, and one without a trigger ID cannot be bounded: both refused.
	tr = g.trigger("bobmm", time.Now())
	mmResp = g.mattermostCommand(chattest.MattermostToken, "bobmm", "status "+runID, tr)
	require.Equal(t, http.StatusOK, mmResp.StatusCode)
	mmResp = g.mattermostCommand(chattest.MattermostToken, "bobmm", "status "+runID, tr)
	require.Equal(t, http.StatusUnauthorized, mmResp.StatusCode, "a replayed slash command")
	mmResp = g.mattermostCommand(chattest.MattermostToken, "bobmm", "status "+runID, "")
	require.Equal(t, http.StatusUnauthorized, mmResp.StatusCode, "a slash command without trigger ID")

	// bob approves with the Slack button: the run proceeds and completes.
	rp = g.press("UBOB", msg.Blocks, chat.ActionApprove, value)
	done := g.resp.WaitFor(t, rp, 30*time.Second, "bob's approval", func([]byte) bool { return true })
	require.Contains(t, chattest.JSONField(done, "text"), "approved by bob")
	require.Contains(t, string(done), `"replace_original":true`)
	require.NotContains(t, string(done), `"type":"actions"`, "the buttons are gone from the replaced message")

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	rep, err := control.Report(ctx, g.rig.Server.Client, runID, true)
	require.NoError(t, err)
	require.Equal(t, workflows.StatusCompleted, rep.Status, rep.Summary)
	require.Equal(t, "stop\nstart", g.rig.Actions("svc-a"))
	require.Len(t, rep.Decisions, 1)
	d := rep.Decisions[0]
	require.Equal(t, "bob", d.By)
	require.Equal(t, "slack:UBOB", d.Via, "the decision records the chat identity")
	require.Equal(t, "approved", d.Outcome)

	// run-finished reaches every sink; the generic webhook gets JSON with the link.
	g.rig.Received.WaitFor(t, "/slack", 30*time.Second, "run-finished on slack", func(b []byte) bool {
		return strings.Contains(string(b), "ended Completed")
	})
	hook := g.rig.Received.WaitFor(t, "/webhook", 30*time.Second, "run-finished on the webhook", func(b []byte) bool {
		return chattest.JSONField(b, "kind") == chat.KindRunFinished
	})
	require.Equal(t, "Completed", chattest.JSONField(hook, "status"))

	// A later press of the same (now decided) button changes nothing.
	rp = g.press("UBOB", msg.Blocks, chat.ActionApprove, value)
	require.Contains(t, g.reply(rp, "late press"), "Refused")

	// The next run on the same target has the same workflow ID and the same gate. The old
	// messages' buttons (Slack and Mattermost) must not decide it.
	ru, rp = g.responseURL()
	form = url.Values{"command": {"/stackrun"}, "text": {start + " again"}, "user_id": {"UALICE"}, "user_name": {"alice"}, "response_url": {ru}}
	resp, body, _ = g.slackPost("/slack/commands", form, time.Now().Unix(), chattest.SlackSecret)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	require.Contains(t, g.reply(rp, "second run"), "alice started `"+runID+"`")
	g.rig.Received.WaitFor(t, "/slack", 60*time.Second, "second gate message", func(b []byte) bool {
		return strings.Contains(string(b), "Approval needed") && strings.Contains(string(b), "again")
	})
	rp = g.press("UBOB", msg.Blocks, chat.ActionApprove, value)
	require.Contains(t, g.reply(rp, "old Slack button on the new run"), "this button is for an earlier run")
	code, ans = g.mattermostAction("bobmm", mctx, g.trigger("bobmm", time.Now()))
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, ans.EphemeralText, "this button is for an earlier run")
	// A button value without a run ID (an older message) is refused outright.
	var old chat.ButtonValue
	require.NoError(t, json.Unmarshal([]byte(value), &old))
	old.RunID = ""
	ob, _ := json.Marshal(old)
	resp2 := g.pressRaw("UBOB", msg.Blocks, chat.ActionApprove, string(ob))
	require.Equal(t, http.StatusBadRequest, resp2)
	st2 := g.status()
	require.Equal(t, workflows.StatusWaitingApproval, st2.Status)
	require.Empty(t, st2.Decisions, "the new run was decided by an old button")
	ctx2, cancel2 := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel2()
	_, err = control.Reject(ctx2, g.rig.Server.Client, runID, workflows.GateDecisionRequest{Gate: workflows.GateApproveRestart, By: "bob"}, control.KeySigner{Key: chattest.Bob.Signer})
	require.NoError(t, err)

	// A stalled step, resolved with its Retry button by the requester.
	stalled(t, g)

	// list through Slack.
	_, _, rp = g.command("UBOB", "list all", time.Now().Unix(), chattest.SlackSecret)
	require.Contains(t, g.reply(rp, "list"), runID)
}

// trigger is a trigger ID as Mattermost makes it, signed with the rig's stand-in for its key.
func (g *gw) trigger(user string, at time.Time) string {
	tr, err := chat.MattermostTrigger(user, at, g.mm)
	require.NoError(g.t, err)
	return tr
}

func unsignedTrigger(t *testing.T, user string) string {
	tr, err := chat.MattermostTrigger(user, time.Now(), nil)
	require.NoError(t, err)
	return tr
}

func (g *gw) mattermostCommand(token, user, text, trigger string) *http.Response {
	ru, _ := g.responseURL()
	form := url.Values{"token": {token}, "user_id": {user}, "user_name": {user}, "command": {"/stackrun"}, "text": {text}, "response_url": {ru}, "trigger_id": {trigger}}
	req, _ := http.NewRequest(http.MethodPost, g.url+"/mattermost/commands", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, _, _ := g.do(req, "")
	return resp
}

func (g *gw) mattermostAction(user string, c chat.MattermostContext, trigger string) (int, chat.MattermostActionResponse) {
	b, _ := json.Marshal(map[string]any{"user_id": user, "user_name": user, "channel_id": "c1", "post_id": "p1",
		"trigger_id": trigger, "context": c.ContextMap()})
	req, _ := http.NewRequest(http.MethodPost, g.url+"/mattermost/actions", strings.NewReader(string(b)))
	req.Header.Set("Content-Type", "application/json")
	resp, body, _ := g.do(req, "")
	var out chat.MattermostActionResponse
	_ = json.Unmarshal([]byte(body), &out)
	return resp.StatusCode, out
}

// buttonValue finds the value of the button with actionID in Block Kit JSON.
func buttonValue(t *testing.T, blocks json.RawMessage, actionID string) string {
	var bs []struct {
		Type     string `json:"type"`
		Elements []struct {
			ActionID string `json:"action_id"`
			Value    string `json:"value"`
		} `json:"elements"`
	}
	require.NoError(t, json.Unmarshal(blocks, &bs))
	for _, b := range bs {
		for _, e := range b.Elements {
			if b.Type == "actions" && e.ActionID == actionID {
				return e.Value
			}
		}
	}
	t.Fatalf("no %s button in %s", actionID, blocks)
	return ""
}

func mattermostContext(t *testing.T, msg []byte, id string) chat.MattermostContext {
	var m chat.MattermostMessage
	require.NoError(t, json.Unmarshal(msg, &m))
	for _, a := range m.Attachments {
		for _, act := range a.Actions {
			if act.ID == id {
				b, err := json.Marshal(act.Integration.Context)
				require.NoError(t, err)
				var c chat.MattermostContext
				require.NoError(t, json.Unmarshal(b, &c))
				return c
			}
		}
	}
	t.Fatalf("no %s button in %s", id, msg)
	return chat.MattermostContext{}
}

// stalled: svc-b fails to start (the fake host refuses) until fixed; the step stalls, the worker
// posts Retry/Skip/Abort; erin (no rights on restart-service) is refused; alice fixes the host
// and presses Retry; the run completes.
func stalled(t *testing.T, g *gw) {
	const id = "restart-service/node1/svc-b"
	fail := filepath.Join(g.rig.State, "svc-b.fail-start")
	require.NoError(t, os.WriteFile(fail, nil, 0o644))
	_, _, rp := g.command("UALICE", "restart-service --host node1 --service svc-b --reason \"stall test\"", time.Now().Unix(), chattest.SlackSecret)
	require.Contains(t, g.reply(rp, "start svc-b"), "alice started `"+id+"`")
	gate := g.rig.Received.WaitFor(t, "/slack", 60*time.Second, "svc-b gate", func(b []byte) bool {
		return strings.Contains(string(b), "Approval needed") && strings.Contains(string(b), id)
	})
	var msg struct {
		Blocks json.RawMessage `json:"blocks"`
	}
	require.NoError(t, json.Unmarshal(gate, &msg))
	rp = g.press("UBOB", msg.Blocks, chat.ActionApprove, buttonValue(t, msg.Blocks, chat.ActionApprove))
	require.Contains(t, g.reply(rp, "approve svc-b"), "approved by bob")

	stall := g.rig.Received.WaitFor(t, "/slack", 60*time.Second, "stalled message", func(b []byte) bool {
		return strings.Contains(string(b), "Stalled") && strings.Contains(string(b), id)
	})
	require.NoError(t, json.Unmarshal(stall, &msg))
	require.Contains(t, string(msg.Blocks), "Job for svc-b failed", "the error is in the message")
	retry := buttonValue(t, msg.Blocks, chat.ActionRetry)
	buttonValue(t, msg.Blocks, chat.ActionSkip)
	buttonValue(t, msg.Blocks, chat.ActionAbort)

	rp = g.press("UERIN", msg.Blocks, chat.ActionRetry, retry)
	require.Contains(t, g.reply(rp, "erin's retry"), "erin may not resolve steps of restart-service runs")
	require.NoError(t, os.Remove(fail))
	rp = g.press("UALICE", msg.Blocks, chat.ActionRetry, retry)
	require.Contains(t, g.reply(rp, "alice's retry"), "Step `start` of `"+id+"`: retry by alice")

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	rep, err := control.Report(ctx, g.rig.Server.Client, id, true)
	require.NoError(t, err)
	require.Equal(t, workflows.StatusCompleted, rep.Status, rep.Summary)
	last := rep.Decisions[len(rep.Decisions)-1]
	require.Equal(t, "resolve", last.Kind)
	require.Equal(t, "retry", last.Outcome)
	require.Equal(t, "slack:UALICE", last.Via)
}
