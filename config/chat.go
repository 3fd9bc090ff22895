package config

import (
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/stackrun/stackrun/internal/infra/redact"
)

// Chat configures the chat gateway (stackrun chat serve) and where the worker posts
// notifications. Secrets (signing secret, tokens, webhook URLs) may come from *_file keys; they
// stay in the gateway and the worker, never in workflow history.
type Chat struct {
	// ListenAddress is where `stackrun chat serve` listens (host:port).
	ListenAddress string `mapstructure:"listen_address" yaml:"listen_address" json:"listen_address"`
	// PublicURL is the gateway's base URL as Mattermost reaches it (buttons post to
	// <public_url>/mattermost/actions). Empty: Mattermost messages carry no buttons.
	PublicURL string `mapstructure:"public_url" yaml:"public_url" json:"public_url"`
	// WebUIURL is the Temporal web UI's base URL, for links to runs in messages.
	WebUIURL string `mapstructure:"web_ui_url" yaml:"web_ui_url" json:"web_ui_url"`
	// WebhookURL receives every notification as JSON (a generic webhook).
	WebhookURL     string         `mapstructure:"webhook_url" yaml:"webhook_url" json:"webhook_url"`
	WebhookURLFile string         `mapstructure:"webhook_url_file" yaml:"webhook_url_file,omitempty" json:"webhook_url_file,omitempty"`
	Slack          ChatSlack      `mapstructure:"slack" yaml:"slack" json:"slack"`
	Mattermost     ChatMattermost `mapstructure:"mattermost" yaml:"mattermost" json:"mattermost"`
	// Users maps chat identities to operators and their roles.
	Users []ChatUser `mapstructure:"users" yaml:"users" json:"users"`
	// Roles say which runbooks a user may start and which gates they may decide.
	Roles map[string]ChatRole `mapstructure:"roles" yaml:"roles" json:"roles"`
}

// ChatSlack is the Slack app: the signing secret verifies its requests; notifications go through
// the bot token (chat.postMessage to Channel) or an incoming webhook, not both.
type ChatSlack struct {
	SigningSecret     string `mapstructure:"signing_secret" yaml:"signing_secret" json:"signing_secret"`
	SigningSecretFile string `mapstructure:"signing_secret_file" yaml:"signing_secret_file,omitempty" json:"signing_secret_file,omitempty"`
	BotToken          string `mapstructure:"bot_token" yaml:"bot_token" json:"bot_token"`
	BotTokenFile      string `mapstructure:"bot_token_file" yaml:"bot_token_file,omitempty" json:"bot_token_file,omitempty"`
	Channel           string `mapstructure:"channel" yaml:"channel" json:"channel"`
	WebhookURL        string `mapstructure:"webhook_url" yaml:"webhook_url" json:"webhook_url"`
	WebhookURLFile    string `mapstructure:"webhook_url_file" yaml:"webhook_url_file,omitempty" json:"webhook_url_file,omitempty"`
}

// ChatMattermost is the Mattermost integration: Token verifies slash commands (and signs the
// buttons' context); notifications go to an incoming webhook.
type ChatMattermost struct {
	Token     string `mapstructure:"token" yaml:"token" json:"token"`
	TokenFile string `mapstructure:"token_file" yaml:"token_file,omitempty" json:"token_file,omitempty"`
	// SigningPublicKey is Mattermost's AsymmetricSigningPublicKey (GET
	// /api/v4/config/client?format=old): with it the gateway verifies Mattermost's signature on
	// the trigger ID of every command and button press, so the user a request names is proven.
	SigningPublicKey string `mapstructure:"signing_public_key" yaml:"signing_public_key,omitempty" json:"signing_public_key,omitempty"`
	WebhookURL       string `mapstructure:"webhook_url" yaml:"webhook_url" json:"webhook_url"`
	WebhookURLFile   string `mapstructure:"webhook_url_file" yaml:"webhook_url_file,omitempty" json:"webhook_url_file,omitempty"`
}

// ChatUser is one person: their chat user IDs and the operator name runs record.
type ChatUser struct {
	Operator   string   `mapstructure:"operator" yaml:"operator" json:"operator"`
	Slack      string   `mapstructure:"slack" yaml:"slack,omitempty" json:"slack,omitempty"`
	Mattermost string   `mapstructure:"mattermost" yaml:"mattermost,omitempty" json:"mattermost,omitempty"`
	Roles      []string `mapstructure:"roles" yaml:"roles" json:"roles"`
}

// ChatRole is what a role allows from chat; "*" means every runbook or gate. The workflow's own
// policy (policy.approvers, two_person_gates) still applies on top.
type ChatRole struct {
	Runbooks []string `mapstructure:"runbooks" yaml:"runbooks" json:"runbooks"`
	Gates    []string `mapstructure:"gates" yaml:"gates" json:"gates"`
}

// DefaultChatListenAddress is chat.listen_address's default.
const DefaultChatListenAddress = "127.0.0.1:8090"

func defaultChat() Chat {
	return Chat{ListenAddress: DefaultChatListenAddress, Roles: map[string]ChatRole{}}
}

var (
	operatorRE  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)
	chatIDRE    = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)
	chatNameRE  = regexp.MustCompile(`^[a-z0-9*][a-z0-9._-]{0,63}$`)
	slackChanRE = regexp.MustCompile(`^[#@]?[A-Za-z0-9._-]{1,80}$`)
)

func (c *Config) validateChat(ps *Problems, forChat bool) {
	ch := c.Chat
	// Port 0 (any free port; the gateway prints the one it got) is allowed here.
	addr := ch.ListenAddress
	if h, p, err := net.SplitHostPort(addr); err == nil && p == "0" {
		addr = net.JoinHostPort(h, "1")
	}
	if err := checkHostPort(addr, true); err != nil {
		ps.add("chat.listen_address", "%q is not host:port (port 0 = any free port)", ch.ListenAddress)
	}
	for _, u := range []struct{ key, v string }{
		{"chat.public_url", ch.PublicURL}, {"chat.web_ui_url", ch.WebUIURL}, {"chat.webhook_url", ch.WebhookURL},
		{"chat.slack.webhook_url", ch.Slack.WebhookURL}, {"chat.mattermost.webhook_url", ch.Mattermost.WebhookURL},
	} {
		if u.v == "" {
			continue
		}
		if err := checkHTTPURL(u.v); err != nil {
			ps.add(u.key, "%v", err)
		}
	}
	if k := ch.Mattermost.SigningPublicKey; k != "" {
		if err := checkMattermostKey(k); err != nil {
			ps.add("chat.mattermost.signing_public_key", "%v", err)
		}
	}
	if ch.Slack.BotToken != "" && ch.Slack.WebhookURL != "" {
		ps.add("chat.slack.bot_token", "set chat.slack.bot_token (with channel) or chat.slack.webhook_url, not both")
	}
	if ch.Slack.BotToken != "" && ch.Slack.Channel == "" {
		ps.add("chat.slack.channel", "required with chat.slack.bot_token (the channel notifications go to)")
	}
	if ch.Slack.Channel != "" && !slackChanRE.MatchString(ch.Slack.Channel) {
		ps.add("chat.slack.channel", "%q is not a channel name or ID", ch.Slack.Channel)
	}
	for _, name := range sortedMapKeys(ch.Roles) {
		r := ch.Roles[name]
		key := "chat.roles." + name
		if len(r.Runbooks) == 0 && len(r.Gates) == 0 {
			ps.add(key, "allows nothing: list runbooks and/or gates (\"*\" for all)")
		}
		for i, rb := range r.Runbooks {
			if !chatNameRE.MatchString(rb) {
				ps.add(fmt.Sprintf("%s.runbooks[%d]", key, i), "%q is not a runbook name or \"*\"", rb)
			}
		}
		for i, g := range r.Gates {
			if !chatNameRE.MatchString(g) {
				ps.add(fmt.Sprintf("%s.gates[%d]", key, i), "%q is not a gate name or \"*\"", g)
			}
		}
	}
	seenOp := map[string]bool{}
	seen := map[string]string{}
	for i, u := range ch.Users {
		key := fmt.Sprintf("chat.users[%d]", i)
		if !operatorRE.MatchString(u.Operator) {
			ps.add(key+".operator", "%q is not a valid operator name (letters, digits, '._@-', at most 64)", u.Operator)
		} else if seenOp[u.Operator] {
			ps.add(key+".operator", "operator %q listed twice", u.Operator)
		}
		seenOp[u.Operator] = true
		if u.Slack == "" && u.Mattermost == "" {
			ps.add(key, "set slack and/or mattermost (the user's chat IDs)")
		}
		for _, id := range []struct{ field, platform, v string }{{"slack", "slack", u.Slack}, {"mattermost", "mattermost", u.Mattermost}} {
			if id.v == "" {
				continue
			}
			if !chatIDRE.MatchString(id.v) {
				ps.add(key+"."+id.field, "%q is not a chat user ID", id.v)
				continue
			}
			k := id.platform + ":" + id.v
			if prev, dup := seen[k]; dup {
				ps.add(key+"."+id.field, "%s user %s is already mapped to %s", id.platform, id.v, prev)
			}
			seen[k] = u.Operator
		}
		if len(u.Roles) == 0 {
			ps.add(key+".roles", "required: at least one role (defined under chat.roles)")
		}
		for j, r := range u.Roles {
			if _, ok := ch.Roles[strings.ToLower(r)]; !ok {
				ps.add(fmt.Sprintf("%s.roles[%d]", key, j), "role %q is not defined under chat.roles", r)
			}
		}
	}
	if !forChat {
		return
	}
	if ch.Slack.SigningSecret == "" && ch.Mattermost.Token == "" {
		ps.add("chat.slack.signing_secret", "set chat.slack.signing_secret and/or chat.mattermost.token: the gateway verifies every request")
	}
	if len(ch.Users) == 0 {
		ps.add("chat.users", "required: nobody could use the gateway")
	}
}

// checkMattermostKey accepts base64 of a DER (PKIX) ECDSA public key, as Mattermost publishes it.
func checkMattermostKey(b64 string) error {
	der, err := base64.StdEncoding.DecodeString(strings.TrimSpace(b64))
	if err != nil {
		return fmt.Errorf("not base64: %v", err)
	}
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return fmt.Errorf("not a public key: %v", err)
	}
	if _, ok := k.(*ecdsa.PublicKey); !ok {
		return fmt.Errorf("%T is not the ECDSA key Mattermost signs with", k)
	}
	return nil
}

// checkHTTPURL accepts absolute http(s) URLs with a host.
func checkHTTPURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("not an http(s) URL with a host")
	}
	return nil
}

// redacted masks the chat secrets: tokens entirely, webhook URLs after their host (the path is
// the secret).
func (ch Chat) redacted() Chat {
	r := ch
	mask := func(s string) string {
		if s == "" {
			return ""
		}
		return "*****"
	}
	maskURL := func(s string) string {
		if s == "" {
			return ""
		}
		u, err := url.Parse(s)
		if err != nil || u.Host == "" {
			return "*****"
		}
		return u.Scheme + "://" + u.Host + "/*****"
	}
	r.PublicURL, r.WebUIURL = redact.URL(ch.PublicURL), redact.URL(ch.WebUIURL)
	r.Slack.SigningSecret = mask(ch.Slack.SigningSecret)
	r.Slack.BotToken = mask(ch.Slack.BotToken)
	r.Mattermost.Token = mask(ch.Mattermost.Token)
	r.WebhookURL = maskURL(ch.WebhookURL)
	r.Slack.WebhookURL = maskURL(ch.Slack.WebhookURL)
	r.Mattermost.WebhookURL = maskURL(ch.Mattermost.WebhookURL)
	r.Users = make([]ChatUser, len(ch.Users))
	for i, u := range ch.Users {
		u.Roles = slices.Clone(u.Roles)
		r.Users[i] = u
	}
	r.Roles = make(map[string]ChatRole, len(ch.Roles))
	for k, v := range ch.Roles {
		r.Roles[k] = ChatRole{Runbooks: slices.Clone(v.Runbooks), Gates: slices.Clone(v.Gates)}
	}
	return r
}

// Allows reports whether list allows name ("*" allows everything).
func Allows(list []string, name string) bool {
	return slices.Contains(list, "*") || slices.Contains(list, strings.ToLower(name)) || slices.Contains(list, name)
}
