//go:build e2e

package e2e

// ChatOps end to end: a Slack slash command, signed exactly as Slack signs it, reaches the real
// `stackrun chat serve` binary, which starts restart-service on the lab through a real dev server
// and the real worker binary; the worker posts the gate message (plan and buttons) to a Slack
// incoming-webhook receiver run by the test; the test presses Approve (a signed block_actions
// payload built from that message) as a second operator; the run restarts the service over SSH
// on the lab and completes.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/stackrun/stackrun/internal/app/chat"
	"github.com/stackrun/stackrun/internal/app/chat/chattest"
	"github.com/stackrun/stackrun/internal/app/control"
	"github.com/stackrun/stackrun/internal/testenv/devserver"
	"github.com/stackrun/stackrun/internal/testenv/operators"
	"github.com/stackrun/stackrun/workflows"
)

const chatSecret = "e2e-slack-signing-secret"

func TestChatOpsSlashCommandAndButtonOnLab(t *testing.T) {
	labCfg := labConfig(t)
	base, err := os.ReadFile(labCfg)
	require.NoError(t, err)
	require.NotRegexp(t, regexp.MustCompile(`(?m)^chat:`), string(base), "the lab's config has a chat section: this test adds its own")
	hooks := chattest.NewReceiver(t)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "stackrun.yaml")
	chatYAML := `
chat:
  listen_address: 127.0.0.1:0
  web_ui_url: http://127.0.0.1:8233
  slack:
    signing_secret: ` + chatSecret + `
    webhook_url: ` + hooks.URL + `/slack
  users:
    - {operator: alice, slack: UALICE, roles: [oncall]}
    - {operator: bob, slack: UBOB, roles: [oncall]}
  roles:
    oncall: {runbooks: [restart-service, post-reboot-check], gates: [approve-restart]}
`
	// The gateway signs with a key of its own; the worker accepts it for the chat users' operators
	// on the gates and runbooks their roles allow (trust.chat_gateway, under the lab's trust:).
	gw := operators.New(t, "chat")
	gwYAML := fmt.Sprintf("trust:\n  chat_gateway:\n    public_key: %q\n    private_key_file: %s\n    vouch:\n"+
		"      - {operators: [alice, bob], gates: [approve-restart], runbooks: [restart-service, post-reboot-check]}\n",
		gw.AuthorizedKey(), gw.WriteKeyFile(t, dir))
	withGateway := string(base) + gwYAML // a lab from before lab/up.sh wrote trust:
	if regexp.MustCompile(`(?m)^trust:$`).MatchString(string(base)) {
		withGateway = regexp.MustCompile(`(?m)^trust:\n`).ReplaceAllLiteralString(string(base), gwYAML)
	}
	require.NoError(t, os.WriteFile(cfgPath, append([]byte(withGateway), []byte(chatYAML)...), 0o600))

	srv := devserver.Start(t)
	startWorker(t, cfgPath, srv)
	gateway := startGateway(t, cfgPath, srv)

	// The slash command, as Slack sends it.
	const host, service = "storage3", "swift-container-replicator"
	runID := "restart-service/" + host + "/" + service
	form := url.Values{"command": {"/stackrun"}, "text": {"restart-service " + host + " " + service + " e2e chatops"},
		"user_id": {"UALICE"}, "user_name": {"alice"}, "team_id": {"T1"}, "channel_id": {"C1"},
		"response_url": {hooks.URL + "/response/start"}}
	code, body := slackPost(t, gateway+"/slack/commands", form)
	require.Equal(t, http.StatusOK, code, body)
	started := hooks.WaitFor(t, "/response/start", 30*time.Second, "answer to the slash command", func([]byte) bool { return true })
	require.Contains(t, chattest.JSONField(started, "text"), "alice started `"+runID+"`")

	// The worker posts the gate message to the Slack webhook: plan and buttons.
	gateMsg := hooks.WaitFor(t, "/slack", 90*time.Second, "gate message", func(b []byte) bool {
		return strings.Contains(string(b), "Approval needed") && strings.Contains(string(b), runID)
	})
	var msg struct {
		Blocks json.RawMessage `json:"blocks"`
	}
	require.NoError(t, json.Unmarshal(gateMsg, &msg))
	require.Contains(t, string(msg.Blocks), "stop "+service+" on "+host, "the plan is in the message")
	value := approveValue(t, msg.Blocks)

	// bob presses Approve.
	payload, _ := json.Marshal(map[string]any{
		"type": "block_actions", "user": map[string]any{"id": "UBOB", "username": "bob", "name": "bob"},
		"team": map[string]any{"id": "T1"}, "api_app_id": "A1", "response_url": hooks.URL + "/response/approve",
		"message": map[string]any{"type": "message", "ts": "1.1", "blocks": msg.Blocks},
		"actions": []map[string]any{{"type": "button", "action_id": chat.ActionApprove, "block_id": "stackrun-actions", "value": value, "action_ts": "1.2"}},
	})
	code, body = slackPost(t, gateway+"/slack/actions", url.Values{"payload": {string(payload)}})
	require.Equal(t, http.StatusOK, code, body)
	approved := hooks.WaitFor(t, "/response/approve", 30*time.Second, "answer to the button", func([]byte) bool { return true })
	require.Contains(t, chattest.JSONField(approved, "text"), "approved by bob")

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := control.Report(ctx, srv.Client, runID, true)
	require.NoError(t, err)
	require.Equal(t, workflows.StatusCompleted, rep.Status, rep.Summary)
	require.Equal(t, "slack:UBOB", rep.Decisions[0].Via)
	require.Equal(t, gw.Fingerprint(), rep.Decisions[0].Key, "signed by the gateway's key")
	require.Equal(t, gw.Fingerprint(), rep.Start.Key, "the start too")
	require.Equal(t, "alice", rep.RequestedBy)
	var acts []string
	for _, a := range rep.Audit {
		if a.Target == host && a.Result == "ok" {
			acts = append(acts, a.Step+":"+a.Activity)
		}
	}
	require.Subset(t, acts, []string{"stop:SetService", "start:SetService", "verify:ServiceStatus"}, "the service was restarted over SSH")
	t.Logf("audit on %s: %v", host, acts)
	hooks.WaitFor(t, "/slack", 30*time.Second, "run-finished message", func(b []byte) bool {
		return strings.Contains(string(b), "ended Completed") && strings.Contains(string(b), runID)
	})
}

// startGateway builds and runs `stackrun chat serve` and returns its base URL.
func startGateway(t *testing.T, cfgPath string, srv *devserver.Server) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "stackrun")
	build := exec.Command("go", "build", "-o", bin, "./starter")
	build.Dir = devserver.RepoRoot(t)
	out, err := build.CombinedOutput()
	require.NoError(t, err, string(out))
	cmd := exec.Command(bin, "chat", "serve", "--config", cfgPath, "--temporal-address", srv.HostPort)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	logPath := filepath.Join(t.TempDir(), "chat.log")
	logf, err := os.Create(logPath)
	require.NoError(t, err)
	cmd.Stderr = logf
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_, _ = cmd.Process.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("chat gateway log:\n%s", b)
		}
	})
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
		}
	}()
	select {
	case l := <-lines:
		m := regexp.MustCompile(`listening on (http://\S+)`).FindStringSubmatch(l)
		require.NotNil(t, m, "gateway said %q", l)
		return m[1]
	case <-time.After(30 * time.Second):
		b, _ := os.ReadFile(logPath)
		t.Fatalf("stackrun chat serve did not start:\n%s", b)
	}
	return ""
}

// slackPost sends a form signed exactly as Slack signs requests.
func slackPost(t *testing.T, u string, form url.Values) (int, string) {
	t.Helper()
	body := form.Encode()
	ts := time.Now().Unix()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Slack-Request-Timestamp", strconv.FormatInt(ts, 10))
	req.Header.Set("X-Slack-Signature", chat.SignSlack(chatSecret, ts, []byte(body)))
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Less(t, time.Since(start), 3*time.Second, "Slack's 3-second limit")
	var b strings.Builder
	_, _ = bufio.NewReader(resp.Body).WriteTo(&b)
	return resp.StatusCode, b.String()
}

func approveValue(t *testing.T, blocks json.RawMessage) string {
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
			if b.Type == "actions" && e.ActionID == chat.ActionApprove {
				return e.Value
			}
		}
	}
	t.Fatalf("no approve button in %s", blocks)
	return ""
}
