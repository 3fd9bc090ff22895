package config_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stackrun/stackrun/config"
	"github.com/stackrun/stackrun/internal/testenv/operators"
)

func TestChatSection(t *testing.T) {
	home := isolate(t)
	gw := operators.New(t, "chat")
	write(t, home, "secrets/slack", "sign-me\n")
	write(t, home, "secrets/hook", "https://hooks.slack.com/services/T/B/SECRET\n")
	p := write(t, home, "stackrun.yaml", `
chat:
  listen_address: 127.0.0.1:0
  web_ui_url: http://127.0.0.1:8233
  slack:
    signing_secret_file: ~/secrets/slack
    webhook_url_file: ~/secrets/hook
  mattermost:
    token: mm-token
    webhook_url: https://mm.example/hooks/abc
  users:
    - {operator: alice, slack: U012AB3CD, mattermost: 8ifn9j3wpjgu5cz1nd8mydmzja, roles: [OnCall]}
    - {operator: bob, slack: U045EF6GH, roles: [oncall, approver]}
  roles:
    oncall: {runbooks: [restart-service], gates: [approve-restart]}
    approver: {gates: ["*"]}
trust:
  chat_gateway: {public_key: "`+gw.AuthorizedKey()+`", private_key_file: `+gw.WriteKeyFile(t, home)+`}
`)
	cfg, err := config.Load(config.LoadOptions{Path: p, LookupEnv: env(home)})
	require.NoError(t, err)
	require.NoError(t, cfg.ValidateFor(config.ForChat))
	c := cfg.Chat
	assert.Equal(t, "sign-me", c.Slack.SigningSecret, "secret read from its file")
	assert.Equal(t, "https://hooks.slack.com/services/T/B/SECRET", c.Slack.WebhookURL)
	assert.Equal(t, "U012AB3CD", c.Users[0].Slack, "IDs keep their case")
	assert.Equal(t, []string{"*"}, c.Roles["approver"].Gates)

	r := cfg.Redacted()
	assert.Equal(t, "*****", r.Chat.Slack.SigningSecret)
	assert.Equal(t, "*****", r.Chat.Mattermost.Token)
	assert.Equal(t, "https://hooks.slack.com/*****", r.Chat.Slack.WebhookURL)
	assert.Equal(t, "sign-me", cfg.Chat.Slack.SigningSecret, "redaction copies")

	// The environment overrides a secret.
	cfg, err = config.Load(config.LoadOptions{Path: p, LookupEnv: env(home, "STACKRUN_CHAT_MATTERMOST_TOKEN", "from-env")})
	require.NoError(t, err)
	assert.Equal(t, "from-env", cfg.Chat.Mattermost.Token)
}

func TestChatDefaultsAndPurpose(t *testing.T) {
	home := isolate(t)
	cfg, err := config.Load(config.LoadOptions{LookupEnv: env(home)})
	require.NoError(t, err)
	assert.Equal(t, config.DefaultChatListenAddress, cfg.Chat.ListenAddress)
	require.NoError(t, cfg.Validate(), "no chat section is fine for the CLI")
	err = cfg.ValidateFor(config.ForChat)
	assert.Equal(t, []string{"chat.slack.signing_secret", "chat.users", "trust.chat_gateway.private_key_file"}, problemKeys(t, err))
}

func TestChatValidation(t *testing.T) {
	home := isolate(t)
	p := write(t, home, "stackrun.yaml", `
chat:
  listen_address: "nope"
  public_url: ftp://x
  slack:
    bot_token: xoxb-1
    webhook_url: https://hooks.slack.com/x
  users:
    - {operator: "bad name", slack: U1, roles: [ghost]}
    - {operator: bob, slack: U1, roles: []}
    - {operator: carol, roles: [oncall]}
  roles:
    oncall: {runbooks: ["Restart Service"]}
`)
	cfg, err := config.Load(config.LoadOptions{Path: p, LookupEnv: env(home)})
	require.NoError(t, err)
	keys := problemKeys(t, cfg.Validate())
	for _, want := range []string{"chat.listen_address", "chat.public_url", "chat.slack.bot_token", "chat.slack.channel",
		"chat.roles.oncall.runbooks[0]", "chat.users[0].operator", "chat.users[0].roles[0]",
		"chat.users[1].slack", "chat.users[1].roles", "chat.users[2]"} {
		assert.Contains(t, keys, want)
	}
	// Both a secret and its file.
	write(t, home, "s", "x")
	p = write(t, home, "stackrun.yaml", "chat:\n  slack:\n    signing_secret: a\n    signing_secret_file: "+home+"/s\n")
	_, err = config.Load(config.LoadOptions{Path: p, LookupEnv: env(home)})
	assert.Equal(t, []string{"chat.slack.signing_secret"}, problemKeys(t, err))
	// A typo names the key.
	p = write(t, home, "stackrun.yaml", "chat:\n  slack:\n    signing_secrett: a\n")
	_, err = config.Load(config.LoadOptions{Path: p, LookupEnv: env(home)})
	assert.Equal(t, []string{"chat.slack.signing_secrett"}, problemKeys(t, err))
}
