package chat_test

import (
	"context"
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
	_, err = d.Lookup(chat.Slack, "ua", "") // IDs are case-sensitive
	require.ErrorContains(t, err, "not a Stackrun operator")
	_, err = d.Lookup(chat.Mattermost, "UA", "")
	require.Error(t, err, "a Slack ID is not a Mattermost ID")
	_, err = d.Lookup(chat.Slack, "", "")
	require.Error(t, err)
}

var gateNote = activities.Notification{Kind: chat.KindGateOpened, WorkflowID: "restart-service/c1/nova-compute", Runbook: "restart-service",
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
	v := chat.ButtonValue{Run: gateNote.WorkflowID, Name: "approve-restart"}
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

func TestMattermostNotificationButtonsAreSigned(t *testing.T) {
	signer := chat.ActionSigner{Key: "tok"}
	m := chat.MattermostNotification(gateNote, chat.Links{}, "https://gw.example/", signer)
	require.Len(t, m.Attachments, 1)
	acts := m.Attachments[0].Actions
	require.Len(t, acts, 2)
	require.Equal(t, "https://gw.example/mattermost/actions", acts[0].Integration.URL)
	c := acts[0].Integration.Context
	require.Equal(t, "approve", c["action"])
	require.True(t, signer.Verify(c["sig"].(string), "approve", gateNote.WorkflowID, "approve-restart"))
	require.Contains(t, m.Attachments[0].Text, "**Plan**")
	// Without the gateway's public URL: no buttons, the command is still there.
	m = chat.MattermostNotification(gateNote, chat.Links{}, "", signer)
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
