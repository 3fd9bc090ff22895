package chat

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/slack-go/slack"

	"github.com/stackrun/stackrun/activities"
)

// Notification kinds the machinery sends (workflows/runbook.go).
const (
	KindGateOpened    = "gate-opened"
	KindGateEscalated = "gate-escalated"
	KindStepStalled   = "step-stalled"
	KindRunFinished   = "run-finished"
)

// Button actions. Slack buttons carry them as action_id; Mattermost buttons in their context.
const (
	ActionApprove = "approve"
	ActionReject  = "reject"
	ActionRetry   = "resolve:retry"
	ActionSkip    = "resolve:skip"
	ActionAbort   = "resolve:abort"
)

// ButtonValue is the value of a Slack button: which run (workflow ID and run ID) and which gate or
// step it decides. The run ID matters: the next run on the same target has the same workflow ID
// and the same gates, and a button of the old message must not decide it.
type ButtonValue struct {
	Run   string `json:"run"`
	RunID string `json:"run_id"`
	Name  string `json:"name"`
}

// Links say where messages point: the Temporal web UI and the slash command's name.
type Links struct {
	WebUIURL  string
	Namespace string
	Command   string // default /stackrun
}

func (l Links) cmd() string {
	if l.Command == "" {
		return "/stackrun"
	}
	return l.Command
}

func (l Links) run(id string) string { return RunLink(l.WebUIURL, l.Namespace, id) }

// Headline is a notification's one-line text, unescaped (the generic webhook's JSON).
func Headline(n activities.Notification) string {
	return headline(n, func(s string) string { return s })
}

// headline is the headline with every field escaped by esc (Slack's fallback, Mattermost's first
// line): targets and names come from operators' input.
func headline(n activities.Notification, esc func(string) string) string {
	e := func(s string) string { return esc(oneLine(s, 200)) }
	switch n.Kind {
	case KindGateOpened:
		return fmt.Sprintf("Approval needed: %s on %s waits at gate %s (run %s)", e(n.Runbook), e(n.Target), e(n.Name), e(n.WorkflowID))
	case KindGateEscalated:
		return fmt.Sprintf("ESCALATION: %s on %s still waits at gate %s (run %s)", e(n.Runbook), e(n.Target), e(n.Name), e(n.WorkflowID))
	case KindStepStalled:
		return fmt.Sprintf("Stalled: step %s of %s on %s needs retry, skip or abort (run %s)", e(n.Name), e(n.Runbook), e(n.Target), e(n.WorkflowID))
	case KindRunFinished:
		return fmt.Sprintf("%s on %s ended %s (run %s)", e(n.Runbook), e(n.Target), e(n.Status), e(n.WorkflowID))
	}
	return esc(n.Text)
}

func statusIcon(status string) string {
	switch status {
	case "Completed":
		return ":white_check_mark:"
	case "Aborted":
		return ":no_entry_sign:"
	case "Failed":
		return ":x:"
	}
	return ":information_source:"
}

func icon(n activities.Notification) string {
	switch n.Kind {
	case KindGateOpened:
		return ":raised_hand:"
	case KindGateEscalated:
		return ":rotating_light:"
	case KindStepStalled:
		return ":warning:"
	case KindRunFinished:
		return statusIcon(n.Status)
	}
	return ":information_source:"
}

// details are the lines under the headline, in the platform's markup. Every field is escaped:
// summaries carry reasons and instance names, errors carry what hosts and APIs said.
func details(n activities.Notification, m markup) []string {
	var out []string
	t := func(s string, max int) string { return m.text(oneLine(s, max)) }
	list := func(ss []string) string {
		out := make([]string, len(ss))
		for i, s := range ss {
			out[i] = t(s, 64)
		}
		return strings.Join(out, ", ")
	}
	switch n.Kind {
	case KindGateOpened, KindGateEscalated:
		if n.Summary != "" {
			out = append(out, t(n.Summary, 2000))
		}
		who := "Requested by " + t(n.RequestedBy, 64)
		if n.Destructive {
			who += " · two-person rule: " + t(n.RequestedBy, 64) + " may not approve"
		}
		if len(n.Approvers) > 0 {
			who += " · approvers: " + list(n.Approvers)
		}
		out = append(out, who)
		if len(n.Plan) > 0 {
			var b strings.Builder
			b.WriteString(m.bold("Plan") + "\n")
			for _, p := range n.Plan {
				fmt.Fprintf(&b, "• %s\n", t(p, 300))
			}
			out = append(out, strings.TrimRight(b.String(), "\n"))
		}
	case KindStepStalled:
		out = append(out, "Error: "+m.code(n.Error), "Requested by "+t(n.RequestedBy, 64))
	case KindRunFinished:
		if n.Summary != "" {
			out = append(out, t(n.Summary, 2000))
		}
		if len(n.Findings) > 0 {
			var b strings.Builder
			b.WriteString(m.bold(fmt.Sprintf("Findings (%d)", len(n.Findings))) + "\n")
			for _, f := range n.Findings {
				fmt.Fprintf(&b, "• %s %s: %s\n", t(f.Severity, 20), t(f.Subject, 100), t(f.Message, 300))
			}
			out = append(out, strings.TrimRight(b.String(), "\n"))
		}
		out = append(out, "Requested by "+t(n.RequestedBy, 64))
	default:
		out = append(out, t(n.Text, 2000))
	}
	return out
}

func oneLine(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > max {
		s = s[:max] + "…"
	}
	return s
}

// buttons lists the actions a notification offers.
func buttons(n activities.Notification) []struct{ action, label, style string } {
	type b = struct{ action, label, style string }
	switch n.Kind {
	case KindGateOpened, KindGateEscalated:
		return []b{{ActionApprove, "Approve", "primary"}, {ActionReject, "Reject", "danger"}}
	case KindStepStalled:
		return []b{{ActionRetry, "Retry", "primary"}, {ActionSkip, "Skip", ""}, {ActionAbort, "Abort", "danger"}}
	}
	return nil
}

// hint is the way to act without buttons: the slash command and the CLI.
func hint(n activities.Notification, l Links, m markup) string {
	switch n.Kind {
	case KindGateOpened, KindGateEscalated:
		return fmt.Sprintf("%s · CLI: %s", m.code(l.cmd()+" approve "+n.WorkflowID+" "+n.Name), m.code("stackrun approve "+n.WorkflowID+" "+n.Name))
	case KindStepStalled:
		return m.code(l.cmd() + " resolve " + n.WorkflowID + " " + n.Name + " retry|skip|abort")
	case KindRunFinished:
		return "Report: " + m.code("stackrun report "+n.WorkflowID)
	}
	return m.text(n.Hint)
}

// SlackBlocks builds the Block Kit message of a notification: headline, details, the way to act,
// a link to the run in the Temporal web UI, and the buttons (Approve/Reject on gates,
// Retry/Skip/Abort on stalled steps). The second result is the plain-text fallback.
func SlackBlocks(n activities.Notification, l Links) ([]slack.Block, string) {
	m := slackMarkup
	head := headline(n, m.text)
	mk := func(s string) *slack.TextBlockObject {
		return slack.NewTextBlockObject(slack.MarkdownType, s, false, false)
	}
	blocks := []slack.Block{slack.NewSectionBlock(mk(icon(n)+" "+m.bold(head)), nil, nil)}
	for _, d := range details(n, m) {
		blocks = append(blocks, slack.NewSectionBlock(mk(truncate(d, 2900)), nil, nil))
	}
	ctx := []slack.MixedElement{mk(hint(n, l, m))}
	if link := l.run(n.WorkflowID); link != "" {
		ctx = append(ctx, mk("<"+slackURL(link)+"|Open in the Temporal web UI>"))
	}
	blocks = append(blocks, slack.NewContextBlock("", ctx...))
	if bs := buttons(n); len(bs) > 0 {
		value, _ := json.Marshal(ButtonValue{Run: n.WorkflowID, RunID: n.RunID, Name: n.Name})
		var els []slack.BlockElement
		for _, b := range bs {
			btn := slack.NewButtonBlockElement(b.action, string(value), slack.NewTextBlockObject(slack.PlainTextType, b.label, false, false))
			if b.style != "" {
				btn = btn.WithStyle(slack.Style(b.style))
			}
			els = append(els, btn)
		}
		blocks = append(blocks, slack.NewActionBlock("stackrun-actions", els...))
	}
	return blocks, head
}

// markdownURL keeps a URL inside Markdown's (url): parentheses, spaces and angle brackets are
// percent-encoded.
func markdownURL(u string) string {
	return strings.NewReplacer("(", "%28", ")", "%29", " ", "%20", "<", "%3C", ">", "%3E").Replace(u)
}

// slackURL escapes a URL for Slack's <url|label>: & < > as entities, and '|' (which would end the
// URL) percent-encoded.
func slackURL(u string) string {
	return strings.NewReplacer("&", "&amp;", "<", "%3C", ">", "%3E", "|", "%7C").Replace(u)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// MattermostMessage is an incoming-webhook payload with interactive message buttons.
type MattermostMessage struct {
	Text         string                 `json:"text,omitempty"`
	Username     string                 `json:"username,omitempty"`
	ResponseType string                 `json:"response_type,omitempty"`
	Attachments  []MattermostAttachment `json:"attachments,omitempty"`
}

// MattermostAttachment is a message attachment (where buttons live).
type MattermostAttachment struct {
	Fallback string             `json:"fallback,omitempty"`
	Color    string             `json:"color,omitempty"`
	Text     string             `json:"text,omitempty"`
	Actions  []MattermostAction `json:"actions,omitempty"`
}

// MattermostAction is one button: Mattermost POSTs Integration.Context to Integration.URL.
type MattermostAction struct {
	ID          string                `json:"id"`
	Name        string                `json:"name"`
	Style       string                `json:"style,omitempty"`
	Integration MattermostIntegration `json:"integration"`
}

// MattermostIntegration is where a button posts, and what it sends.
type MattermostIntegration struct {
	URL     string         `json:"url"`
	Context map[string]any `json:"context"`
}

// MattermostContext is the context of Stackrun's buttons: the action, the run (workflow ID and
// run ID), the gate or step, the expiry (Unix seconds), the user it is for ("" = any listed user)
// and Sig, ActionSigner's HMAC over all of them (SignContext).
type MattermostContext struct {
	Action string `json:"action"`
	Run    string `json:"run"`
	RunID  string `json:"run_id"`
	Name   string `json:"name"`
	Exp    int64  `json:"exp"`
	User   string `json:"user,omitempty"`
	Sig    string `json:"sig"`
}

// ContextMap is the context as the button's integration carries it.
func (c MattermostContext) ContextMap() map[string]any {
	m := map[string]any{"action": c.Action, "run": c.Run, "run_id": c.RunID, "name": c.Name, "exp": c.Exp, "sig": c.Sig}
	if c.User != "" {
		m["user"] = c.User
	}
	return m
}

// DefaultButtonTTL is how long a Mattermost button works: a gate that waits longer is escalated,
// and the escalation carries fresh buttons.
const DefaultButtonTTL = 24 * time.Hour

// MattermostNotification builds the webhook payload of a notification. Buttons are added when
// publicURL (the gateway as Mattermost reaches it) and the signer's key are known; they stop
// working at expires.
func MattermostNotification(n activities.Notification, l Links, publicURL string, signer ActionSigner, expires time.Time) MattermostMessage {
	m := mattermostMarkup
	text := icon(n) + " " + m.bold(headline(n, m.text))
	att := MattermostAttachment{Fallback: headline(n, m.text), Color: color(n)}
	lines := details(n, m)
	lines = append(lines, hint(n, l, m))
	if link := l.run(n.WorkflowID); link != "" {
		lines = append(lines, "[Open in the Temporal web UI]("+markdownURL(link)+")")
	}
	att.Text = strings.Join(lines, "\n\n")
	if publicURL != "" && signer.Key != "" {
		for _, b := range buttons(n) {
			c := signer.SignContext(MattermostContext{Action: b.action, Run: n.WorkflowID, RunID: n.RunID, Name: n.Name, Exp: expires.Unix()})
			att.Actions = append(att.Actions, MattermostAction{
				// Mattermost wants alphanumeric action IDs.
				ID: strings.ReplaceAll(strings.TrimPrefix(b.action, "resolve:"), "-", ""), Name: b.label, Style: b.style,
				Integration: MattermostIntegration{URL: strings.TrimRight(publicURL, "/") + "/mattermost/actions",
					Context: c.ContextMap()},
			})
		}
	}
	return MattermostMessage{Text: text, Username: "stackrun", Attachments: []MattermostAttachment{att}}
}

func color(n activities.Notification) string {
	switch n.Kind {
	case KindGateOpened:
		return "#2f81f7"
	case KindGateEscalated, KindStepStalled:
		return "#d29922"
	}
	if n.Status == "Completed" {
		return "#2da44e"
	}
	return "#cf222e"
}

// WebhookPayload is what the generic webhook receives: the notification as the machinery sent
// it, the headline, and the link to the run.
type WebhookPayload struct {
	activities.Notification
	Headline string `json:"headline"`
	WebUIURL string `json:"web_ui_url,omitempty"`
}
