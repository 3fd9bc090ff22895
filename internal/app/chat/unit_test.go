package chat_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/config"
	"github.com/stackrun/stackrun/internal/app/chat"
	"github.com/stackrun/stackrun/internal/testenv/operators"
)

func signedRequest(secret string, ts int64, body string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/slack/commands", strings.NewReader(body))
	r.Header.Set("X-Slack-Request-Timestamp", strconv.FormatInt(ts, 10))
	r.Header.Set("X-Slack-Signature", chat.SignSlack(secret, ts, []byte(body)))
	return r
}

func TestSlackVerifier(t *testing.T) {
	v := &chat.SlackVerifier{Secret: "s3cret"}
	now := time.Now().Unix()
	body := "text=list&user_id=U1"

	got, err := v.Verify(signedRequest("s3cret", now, body))
	require.NoError(t, err)
	require.Equal(t, body, string(got))

	// The same request again: a replay.
	_, err = v.Verify(signedRequest("s3cret", now, body))
	require.ErrorIs(t, err, chat.ErrReplayed)
	// Another body, same second: fine.
	_, err = v.Verify(signedRequest("s3cret", now, body+"&x=1"))
	require.NoError(t, err)

	_, err = v.Verify(signedRequest("other", now, "text=a"))
	require.ErrorIs(t, err, chat.ErrBadSignature)
	// A body changed after signing.
	r := signedRequest("s3cret", now, "text=a")
	r.Body = io.NopCloser(strings.NewReader("text=b"))
	_, err = v.Verify(r)
	require.ErrorIs(t, err, chat.ErrBadSignature)
	for _, ts := range []int64{now - 301, now + 301} {
		_, err = v.Verify(signedRequest("s3cret", ts, "text=c"))
		require.ErrorIs(t, err, chat.ErrExpired, "ts %d", ts)
	}
	_, err = v.Verify(httptest.NewRequest(http.MethodPost, "/", strings.NewReader("x")))
	require.ErrorIs(t, err, chat.ErrMissing)
	r = signedRequest("s3cret", now, "text=d")
	r.Header.Set("X-Slack-Signature", "v0=zz")
	_, err = v.Verify(r)
	require.ErrorIs(t, err, chat.ErrBadSignature)
}

func TestActionSignerAndToken(t *testing.T) {
	s := chat.ActionSigner{Key: "k"}
	sig := s.Sign("approve", "run/1", "gate")
	require.True(t, s.Verify(sig, "approve", "run/1", "gate"))
	require.False(t, s.Verify(sig, "approve", "run/2", "gate"))
	require.False(t, s.Verify(sig, "reject", "run/1", "gate"))
	require.False(t, chat.ActionSigner{Key: "other"}.Verify(sig, "approve", "run/1", "gate"))
	require.False(t, chat.ActionSigner{}.Verify(chat.ActionSigner{}.Sign("a"), "a"), "no key, no trust")
	require.True(t, chat.TokenMatches("abc", "abc"))
	require.False(t, chat.TokenMatches("abd", "abc"))
	require.False(t, chat.TokenMatches("", ""))
}

func TestTokenize(t *testing.T) {
	for in, want := range map[string][]string{
		`restart-service compute1 nova-compute config change`: {"restart-service", "compute1", "nova-compute", "config", "change"},
		`x --reason "two words" y`:                            {"x", "--reason", "two words", "y"},
		"x --reason “smart quotes” y":                         {"x", "--reason", "smart quotes", "y"},
		`a 'b c'  `:                                           {"a", "b c"},
		``:                                                    nil,
	} {
		got, err := chat.Tokenize(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	_, err := chat.Tokenize(`a "b`)
	require.Error(t, err)
}

func TestFindRunbookByPrefix(t *testing.T) {
	rb, err := chat.FindRunbook("restart-service")
	require.NoError(t, err)
	require.Equal(t, "restart-service", rb.Name)
	rb, err = chat.FindRunbook("restart")
	require.NoError(t, err)
	require.Equal(t, "restart-service", rb.Name)
	_, err = chat.FindRunbook("rest")
	require.Error(t, err, "a prefix must end at a '-'")
	_, err = chat.FindRunbook("nope")
	require.Error(t, err)
}

func TestDirectory(t *testing.T) {
	d := chat.NewDirectory(config.Chat{
		Users: []config.ChatUser{{Operator: "alice", Slack: "UA", Mattermost: "ma", Roles: []string{"OnCall"}}, {Operator: "bob", Slack: "UB", Roles: []string{"all"}}},
		Roles: map[string]config.ChatRole{"oncall": {Runbooks: []string{"restart-service"}, Gates: []string{"approve-restart"}}, "all": {Runbooks: []string{"*"}, Gates: []string{"*"}}},
	})
	a, err := d.Lookup(chat.Slack, "UA", "alice")
	require.NoError(t, err)
	require.Equal(t, "alice", a.Operator)
	require.Equal(t, "slack:UA", a.Via())
	require.True(t, a.CanStart("restart-service"))
	require.False(t, a.CanStart("post-reboot-check"))
	require.True(t, a.CanDecide("approve-restart"))
	require.False(t, a.CanDecide("disk-replaced"))
	m, err := d.Lookup(chat.Mattermost, "ma", "")
	require.NoError(t, err)
	require.Equal(t, "mattermost:ma", m.Via())
	b, _ := d.Lookup(chat.Slack, "UB", "")
	require.True(t, b.CanStart("anything") && b.CanDecide("anything"))
	require.False(t, b.CanDecide("start-instances"), "\"*\" does not cover starting tenants' instances")
	e := chat.NewDirectory(config.Chat{
		Users: []config.ChatUser{{Operator: "erin", Slack: "UE", Roles: []string{"reboots"}}},
		Roles: map[string]config.ChatRole{"reboots": {Runbooks: []string{"post-reboot-check"}, Gates: []string{"start-instances"}}},
	})
	erin, _ := e.Lookup(chat.Slack, "UE", "")
	require.True(t, erin.CanDecide("start-instances"), "a role that names it")
	_, err = d.Lookup(chat.Slack, "ua", "") // IDs are case-sensitive
	require.ErrorContains(t, err, "not a Stackrun operator")
	_, err = d.Lookup(chat.Mattermost, "UA", "")
	require.Error(t, err, "a Slack ID is not a Mattermost ID")
	_, err = d.Lookup(chat.Slack, "", "")
	require.Error(t, err)
}

var gateNote = activities.Notification{Kind: chat.KindGateOpened, WorkflowID: "restart-service/c1/nova-compute", RunID: "run-1", Runbook: "restart-service",
	Target: "c1/nova-compute", Name: "approve-restart", RequestedBy: "alice", Summary: "Restart nova-compute on c1.",
	Plan: []string{"stop nova-compute on c1", "start it"}, Destructive: true, Approvers: []string{"alice", "bob"}}

func TestSlackBlocks(t *testing.T) {
	links := chat.Links{WebUIURL: "http://ui:8233", Namespace: "default"}
	blocks, text := chat.SlackBlocks(gateNote, links)
	require.Contains(t, text, "Approval needed")
	b, err := json.Marshal(blocks)
	require.NoError(t, err)
	s := string(b)
	for _, want := range []string{"stop nova-compute on c1", "two-person rule: alice may not approve", "approvers: alice, bob",
		"http://ui:8233/namespaces/default/workflows/restart-service%2Fc1%2Fnova-compute", `"action_id":"approve"`, `"action_id":"reject"`,
		`"style":"danger"`, "/stackrun approve restart-service/c1/nova-compute approve-restart"} {
		require.Contains(t, s, want)
	}
	v := chat.ButtonValue{Run: gateNote.WorkflowID, RunID: "run-1", Name: "approve-restart"}
	vb, _ := json.Marshal(v)
	require.Contains(t, s, strings.ReplaceAll(strings.ReplaceAll(string(vb), `"`, `\"`), "/", "/"))

	stalled := activities.Notification{Kind: chat.KindStepStalled, WorkflowID: "r", Name: "start", Error: "Job failed", RequestedBy: "alice"}
	blocks, _ = chat.SlackBlocks(stalled, chat.Links{})
	b, _ = json.Marshal(blocks)
	for _, id := range []string{chat.ActionRetry, chat.ActionSkip, chat.ActionAbort} {
		require.Contains(t, string(b), `"action_id":"`+id+`"`)
	}
	require.NotContains(t, string(b), "web UI", "no link without web_ui_url")

	done := activities.Notification{Kind: chat.KindRunFinished, WorkflowID: "r", Status: "Completed", Summary: "all good",
		Findings: []activities.Finding{{Severity: "warning", Subject: "c1", Message: "slow"}}}
	blocks, text = chat.SlackBlocks(done, links)
	b, _ = json.Marshal(blocks)
	require.Contains(t, text, "ended Completed")
	require.Contains(t, string(b), "warning c1: slow")
	require.Contains(t, string(b), "stackrun report r")
	require.NotContains(t, string(b), `"type":"actions"`)
}

// contextOf reads a button's context back as Mattermost posts it (JSON).
func contextOf(t *testing.T, m map[string]any) chat.MattermostContext {
	t.Helper()
	b, err := json.Marshal(m)
	require.NoError(t, err)
	var c chat.MattermostContext
	require.NoError(t, json.Unmarshal(b, &c))
	return c
}

func TestMattermostNotificationButtonsAreSigned(t *testing.T) {
	signer := chat.ActionSigner{Key: "tok"}
	exp := time.Now().Add(time.Hour)
	m := chat.MattermostNotification(gateNote, chat.Links{}, "https://gw.example/", signer, exp)
	require.Len(t, m.Attachments, 1)
	acts := m.Attachments[0].Actions
	require.Len(t, acts, 2)
	require.Equal(t, "https://gw.example/mattermost/actions", acts[0].Integration.URL)
	c := contextOf(t, acts[0].Integration.Context)
	require.Equal(t, chat.MattermostContext{Action: "approve", Run: gateNote.WorkflowID, RunID: "run-1", Name: "approve-restart", Exp: exp.Unix(), Sig: c.Sig}, c)
	require.NoError(t, signer.VerifyContext(c, "anyone", time.Now()))
	require.Contains(t, m.Attachments[0].Text, "**Plan**")
	// Without the gateway's public URL: no buttons, the command is still there.
	m = chat.MattermostNotification(gateNote, chat.Links{}, "", signer, exp)
	require.Empty(t, m.Attachments[0].Actions)
	require.Contains(t, m.Attachments[0].Text, "/stackrun approve")
}

func TestSlackSinkBotToken(t *testing.T) {
	var mu sync.Mutex
	var got url.Values
	var auth string
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		require.Equal(t, "/api/chat.postMessage", r.URL.Path)
		_ = r.ParseForm()
		mu.Lock()
		got, auth = r.PostForm, r.Header.Get("Authorization")
		mu.Unlock()
		_, _ = io.WriteString(w, `{"ok":true,"channel":"C1","ts":"1.1"}`)
	}))
	defer api.Close()
	sink := &chat.SlackSink{BotToken: "xoxb-1", Channel: "#ops", APIURL: api.URL + "/api/"}
	require.NoError(t, sink.Send(context.Background(), gateNote))
	mu.Lock()
	defer mu.Unlock()
	// slack-go sends the token in the form or as a bearer header, depending on the call.
	require.True(t, auth == "Bearer xoxb-1" || got.Get("token") == "xoxb-1", "token not sent: auth %q form %v", auth, got)
	require.Equal(t, "#ops", got.Get("channel"))
	require.Contains(t, got.Get("blocks"), `"action_id":"approve"`)
	require.Contains(t, got.Get("text"), "Approval needed")
}

func TestSinksRedactWebhookURLs(t *testing.T) {
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "nope", 500) }))
	defer down.Close()
	secretURL := down.URL + "/services/T000/B000/XXXXSECRET"
	for _, s := range []activities.NotifySink{
		&chat.SlackSink{WebhookURL: secretURL}, &chat.MattermostSink{WebhookURL: secretURL}, &chat.WebhookSink{URL: secretURL},
	} {
		err := s.Send(context.Background(), gateNote)
		require.Error(t, err, s.Name())
		require.NotContains(t, err.Error(), "XXXXSECRET", s.Name())
	}
	closed := "http://127.0.0.1:1/hooks/XXXXSECRET"
	err := (&chat.WebhookSink{URL: closed}).Send(context.Background(), gateNote)
	require.Error(t, err)
	require.NotContains(t, err.Error(), "XXXXSECRET")
}

func TestWebhookSinkPayload(t *testing.T) {
	var body []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { body, _ = io.ReadAll(r.Body) }))
	defer srv.Close()
	s := &chat.WebhookSink{URL: srv.URL, Links: chat.Links{WebUIURL: "http://ui", Namespace: "ns"}}
	require.NoError(t, s.Send(context.Background(), gateNote))
	var p map[string]any
	require.NoError(t, json.Unmarshal(body, &p))
	assert.Equal(t, "gate-opened", p["kind"])
	assert.Equal(t, "approve-restart", p["name"])
	assert.Equal(t, "http://ui/namespaces/ns/workflows/restart-service%2Fc1%2Fnova-compute", p["web_ui_url"])
	assert.Contains(t, p["headline"], "Approval needed")
}

func TestSinksFromConfig(t *testing.T) {
	require.Empty(t, chat.Sinks(config.Chat{}, "default"))
	s := chat.Sinks(config.Chat{WebhookURL: "http://h", Slack: config.ChatSlack{WebhookURL: "http://s"}, Mattermost: config.ChatMattermost{WebhookURL: "http://m"}}, "default")
	var names []string
	for _, x := range s {
		names = append(names, x.Name())
	}
	require.Equal(t, []string{"slack", "mattermost", "webhook"}, names)
}

// A button's context signs every field: another run (same workflow ID), gate, action, expiry or
// user does not verify; an expired one or one for another user is refused.
func TestButtonContextCoversRunGateUserExpiry(t *testing.T) {
	s := chat.ActionSigner{Key: "tok"}
	now := time.Now()
	c := s.SignContext(chat.MattermostContext{Action: "approve", Run: "swift-disk/s1/sdb", RunID: "r1", Name: "overwrite-disk", Exp: now.Add(time.Hour).Unix()})
	require.NoError(t, s.VerifyContext(c, "u1", now))
	for name, mutate := range map[string]func(*chat.MattermostContext){
		"run id": func(c *chat.MattermostContext) { c.RunID = "r2" },
		"run":    func(c *chat.MattermostContext) { c.Run = "swift-disk/s1/sdc" },
		"gate":   func(c *chat.MattermostContext) { c.Name = "disk-replaced" },
		"action": func(c *chat.MattermostContext) { c.Action = "reject" },
		"expiry": func(c *chat.MattermostContext) { c.Exp += 3600 },
		"user":   func(c *chat.MattermostContext) { c.User = "u1" },
	} {
		forged := c
		mutate(&forged)
		require.ErrorIs(t, s.VerifyContext(forged, "u1", now), chat.ErrBadSignature, name)
	}
	require.ErrorIs(t, s.VerifyContext(c, "u1", now.Add(2*time.Hour)), chat.ErrButtonExpired)
	mine := s.SignContext(chat.MattermostContext{Action: "approve", Run: "x", RunID: "r", Name: "g", Exp: now.Add(time.Hour).Unix(), User: "u1"})
	require.NoError(t, s.VerifyContext(mine, "u1", now))
	require.ErrorIs(t, s.VerifyContext(mine, "u2", now), chat.ErrButtonUser)
	require.ErrorIs(t, chat.ActionSigner{Key: "other"}.VerifyContext(c, "u1", now), chat.ErrBadSignature)
}

// Mattermost trigger IDs, built as Mattermost builds them: the user they name, their age, their
// single use, and (with Mattermost's public key) its signature.
func TestTriggerVerifier(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	require.NoError(t, err)
	pub, err := chat.ParseMattermostKey(base64.StdEncoding.EncodeToString(der))
	require.NoError(t, err)
	v := &chat.TriggerVerifier{PublicKey: pub}
	now := time.Now()
	tr, err := chat.MattermostTrigger("u1", now, key)
	require.NoError(t, err)
	require.NoError(t, v.Verify(tr, "u1"))
	require.ErrorIs(t, v.Verify(tr, "u1"), chat.ErrReplayed, "the same trigger twice")
	tr2, _ := chat.MattermostTrigger("u1", now, key)
	require.ErrorIs(t, v.Verify(tr2, "u2"), chat.ErrBadTrigger, "a trigger for another user")
	old, _ := chat.MattermostTrigger("u1", now.Add(-10*time.Minute), key)
	require.ErrorIs(t, v.Verify(old, "u1"), chat.ErrExpired)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	forged, _ := chat.MattermostTrigger("u1", now, other)
	require.ErrorIs(t, v.Verify(forged, "u1"), chat.ErrBadTrigger, "signed by another key")
	unsigned, _ := chat.MattermostTrigger("u1", now, nil)
	require.ErrorIs(t, v.Verify(unsigned, "u1"), chat.ErrBadTrigger, "no signature with the key configured")
	require.ErrorIs(t, v.Verify("", "u1"), chat.ErrNoTrigger)
	require.ErrorIs(t, v.Verify("not base64!", "u1"), chat.ErrBadTrigger)
	// Without Mattermost's key the user, the age and the single use are still checked.
	nokey := &chat.TriggerVerifier{}
	require.NoError(t, nokey.Verify(unsigned, "u1"))
	require.ErrorIs(t, nokey.Verify(unsigned, "u1"), chat.ErrReplayed)
	_, err = chat.ParseMattermostKey("bm90IGEga2V5")
	require.Error(t, err)
}

// Text from operators and tenants stays text: no channel-wide pings, no disguised links, no
// mentions, no fake lines, on both platforms.
func TestOperatorTextIsEscaped(t *testing.T) {
	evil := "reboot <!channel> <https://evil.example|the runbook> [the runbook](https://evil.example) ![x](https://evil.example/p.png) @all @here *bold* `code`\nApproved by bob"
	n := gateNote
	n.Summary = evil
	n.Plan = []string{"live-migrate instance " + evil}
	n.RequestedBy = "mallory"
	blocks, fallback := chat.SlackBlocks(n, chat.Links{})
	b := rawJSON(t, blocks)
	for _, out := range []string{string(b), fallback} {
		for _, bad := range []string{"<!channel>", "<https://evil.example|", "@all", "@here"} {
			require.NotContains(t, out, bad)
		}
	}
	require.Contains(t, string(b), "&lt;!channel&gt;", "shown as text")
	require.NotContains(t, string(b), `\nApproved by bob`, "a line break in a reason does not start a line")

	m := chat.MattermostNotification(n, chat.Links{}, "", chat.ActionSigner{}, time.Now())
	text := m.Text + m.Attachments[0].Text
	for _, bad := range []string{"](https://evil", "![x]", "@all", "@here", "*bold*", "`code`"} {
		require.NotContains(t, text, bad)
	}
	require.Contains(t, text, `\[the runbook\]\(https://evil.example\)`)

	// Replies of the gateway escape too: a stalled step's error in code keeps Slack's <...> inert.
	st := activities.Notification{Kind: chat.KindStepStalled, WorkflowID: "r", RunID: "1", Name: "start", Error: "failed: <!channel> `x`", RequestedBy: "a"}
	blocks, _ = chat.SlackBlocks(st, chat.Links{})
	require.NotContains(t, string(rawJSON(t, blocks)), "<!channel>")
	// A workflow ID cannot break out of the Markdown link to the web UI.
	n = gateNote
	n.WorkflowID = "x)[evil](https://evil.example"
	m = chat.MattermostNotification(n, chat.Links{WebUIURL: "http://ui"}, "", chat.ActionSigner{}, time.Now())
	require.Contains(t, m.Attachments[0].Text, "[Open in the Temporal web UI](http://ui/namespaces/default/workflows/x%29%5Bevil%5D%28https:%2F%2Fevil.example)")
	require.Contains(t, m.Text, `x\)\[evil\]\(https`, "the headline escapes it")
}

// rawJSON marshals without HTML escaping, so that "<" in the output is a real "<".
func rawJSON(t *testing.T, v any) []byte {
	t.Helper()
	var buf strings.Builder
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	require.NoError(t, enc.Encode(v))
	return []byte(buf.String())
}

func TestGatewayKeyMatchesThePolicy(t *testing.T) {
	dir := t.TempDir()
	gw, other := operators.New(t, "chat"), operators.New(t, "other")
	cfg := config.Default()
	cfg.Trust.ChatGateway.PublicKey = gw.AuthorizedKey()
	cfg.Trust.ChatGateway.PrivateKeyFile = gw.WriteKeyFile(t, dir)
	k, err := chat.GatewayKey(cfg)
	require.NoError(t, err)
	require.Equal(t, gw.Fingerprint(), k.Key().Fingerprint)
	cfg.Trust.ChatGateway.PrivateKeyFile = other.WriteKeyFile(t, dir)
	_, err = chat.GatewayKey(cfg)
	require.ErrorContains(t, err, "but trust.chat_gateway.public_key is "+gw.Fingerprint())
}
