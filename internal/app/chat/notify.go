package chat

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/slack-go/slack"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/config"
)

// SlackSink posts notifications to Slack: with the bot token to Channel (chat.postMessage), or
// to an incoming webhook.
type SlackSink struct {
	BotToken   string
	Channel    string
	WebhookURL string
	Links      Links
	// APIURL overrides Slack's API base (tests); empty means https://slack.com/api/.
	APIURL string
	HTTP   *http.Client
}

// Name implements activities.NotifySink.
func (s *SlackSink) Name() string { return "slack" }

// Send implements activities.NotifySink.
func (s *SlackSink) Send(ctx context.Context, n activities.Notification) error {
	blocks, text := SlackBlocks(n, s.Links)
	hc := httpClient(s.HTTP)
	if s.BotToken != "" {
		opts := []slack.Option{slack.OptionHTTPClient(hc)}
		if s.APIURL != "" {
			opts = append(opts, slack.OptionAPIURL(s.APIURL))
		}
		api := slack.New(s.BotToken, opts...)
		_, _, err := api.PostMessageContext(ctx, s.Channel, slack.MsgOptionText(text, false), slack.MsgOptionBlocks(blocks...))
		if err != nil {
			return fmt.Errorf("slack chat.postMessage to %s: %w", s.Channel, err)
		}
		return nil
	}
	msg := &slack.WebhookMessage{Text: text, Blocks: &slack.Blocks{BlockSet: blocks}}
	if err := slack.PostWebhookCustomHTTPContext(ctx, s.WebhookURL, hc, msg); err != nil {
		// slack-go's error may quote the URL, which is a secret: say only what failed.
		return fmt.Errorf("slack incoming webhook: %s", redactURL(err.Error(), s.WebhookURL))
	}
	return nil
}

// MattermostSink posts notifications to a Mattermost incoming webhook, with buttons that post
// back to the gateway (PublicURL) signed with the Mattermost token.
type MattermostSink struct {
	WebhookURL string
	PublicURL  string
	Signer     ActionSigner
	Links      Links
	HTTP       *http.Client
	// ButtonTTL is how long the buttons work (0: DefaultButtonTTL).
	ButtonTTL time.Duration
}

// Name implements activities.NotifySink.
func (s *MattermostSink) Name() string { return "mattermost" }

// Send implements activities.NotifySink.
func (s *MattermostSink) Send(ctx context.Context, n activities.Notification) error {
	ttl := s.ButtonTTL
	if ttl <= 0 {
		ttl = DefaultButtonTTL
	}
	msg := MattermostNotification(n, s.Links, s.PublicURL, s.Signer, time.Now().Add(ttl))
	return postJSON(ctx, httpClient(s.HTTP), "mattermost webhook", s.WebhookURL, msg)
}

// WebhookSink posts every notification as JSON (WebhookPayload) to a generic webhook.
type WebhookSink struct {
	URL   string
	Links Links
	HTTP  *http.Client
}

// Name implements activities.NotifySink.
func (s *WebhookSink) Name() string { return "webhook" }

// Send implements activities.NotifySink.
func (s *WebhookSink) Send(ctx context.Context, n activities.Notification) error {
	p := WebhookPayload{Notification: n, Headline: Headline(n), WebUIURL: s.Links.run(n.WorkflowID)}
	return postJSON(ctx, httpClient(s.HTTP), "webhook", s.URL, p)
}

// sinkTimeout bounds one delivery: three attempts and their pauses stay within the Notify
// activity's 30-second start-to-close timeout.
const sinkTimeout = 8 * time.Second

func httpClient(hc *http.Client) *http.Client {
	if hc != nil {
		return hc
	}
	return &http.Client{Timeout: sinkTimeout}
}

func postJSON(ctx context.Context, hc *http.Client, what, url string, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%s: bad URL", what)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %s", what, redactURL(err.Error(), url))
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s: HTTP %d: %s", what, resp.StatusCode, bytes.TrimSpace(b))
	}
	return nil
}

// redactURL removes a secret URL from an error message.
func redactURL(msg, url string) string {
	if url == "" {
		return msg
	}
	return string(bytes.ReplaceAll([]byte(msg), []byte(url), []byte("<webhook URL>")))
}

// Sinks builds the notification sinks the chat configuration asks for (none when it names no
// destination). The worker gives them to activities.Machine.
func Sinks(c config.Chat, namespace string) []activities.NotifySink {
	links := Links{WebUIURL: c.WebUIURL, Namespace: namespace}
	var out []activities.NotifySink
	if c.Slack.BotToken != "" || c.Slack.WebhookURL != "" {
		out = append(out, &SlackSink{BotToken: c.Slack.BotToken, Channel: c.Slack.Channel, WebhookURL: c.Slack.WebhookURL, Links: links})
	}
	if c.Mattermost.WebhookURL != "" {
		out = append(out, &MattermostSink{WebhookURL: c.Mattermost.WebhookURL, PublicURL: c.PublicURL,
			Signer: ActionSigner{Key: c.Mattermost.Token}, Links: links})
	}
	if c.WebhookURL != "" {
		out = append(out, &WebhookSink{URL: c.WebhookURL, Links: links})
	}
	return out
}
