package chat

import (
	"encoding/json"
	"fmt"
	"strings"

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

// ButtonValue is the value of a Slack button: which run and which gate or step it decides.
type ButtonValue struct {
	Run  string `json:"run"`
	Name string `json:"name"`
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

// Headline is a notification's one-line text (Slack's fallback, Mattermost's first line).
func Headline(n activities.Notification) string {
	switch n.Kind {
	case KindGateOpened:
		return fmt.Sprintf("Approval needed: %s on %s waits at gate %s (run %s)", n.Runbook, n.Target, n.Name, n.WorkflowID)
	case KindGateEscalated:
		return fmt.Sprintf("ESCALATION: %s on %s still waits at gate %s (run %s)", n.Runbook, n.Target, n.Name, n.WorkflowID)
	case KindStepStalled:
		return fmt.Sprintf("Stalled: step %s of %s on %s needs retry, skip or abort (run %s)", n.Name, n.Runbook, n.Target, n.WorkflowID)
	case KindRunFinished:
		return fmt.Sprintf("%s on %s ended %s (run %s)", n.Runbook, n.Target, n.Status, n.WorkflowID)
	}
	return n.Text
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

// details are the lines under the headline, in the Markdown both platforms read (bold differs:
// Slack *x*, Markdown **x**).
func details(n activities.Notification, bold func(string) string) []string {
	var out []string
	switch n.Kind {
	case KindGateOpened, KindGateEscalated:
		if n.Summary != "" {
			out = append(out, n.Summary)
		}
		who := "Requested by " + n.RequestedBy
		if n.Destructive {
			who += " · two-person rule: " + n.RequestedBy + " may not approve"
		}
		if len(n.Approvers) > 0 {
			who += " · approvers: " + strings.Join(n.Approvers, ", ")
		}
		out = append(out, who)
		if len(n.Plan) > 0 {
			var b strings.Builder
			b.WriteString(bold("Plan") + "\n")
			for _, p := range n.Plan {
				fmt.Fprintf(&b, "• %s\n", p)
			}
			out = append(out, strings.TrimRight(b.String(), "\n"))
		}
	case KindStepStalled:
		out = append(out, "Error: `"+oneLine(n.Error, 500)+"`", "Requested by "+n.RequestedBy)
	case KindRunFinished:
		if n.Summary != "" {
			out = append(out, n.Summary)
		}
		if len(n.Findings) > 0 {
			var b strings.Builder
			b.WriteString(bold(fmt.Sprintf("Findings (%d)", len(n.Findings))) + "\n")
			for _, f := range n.Findings {
				fmt.Fprintf(&b, "• %s %s: %s\n", f.Severity, f.Subject, oneLine(f.Message, 300))
			}
			out = append(out, strings.TrimRight(b.String(), "\n"))
		}
		out = append(out, "Requested by "+n.RequestedBy)
	default:
		out = append(out, n.Text)
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
func hint(n activities.Notification, l Links) string {
	switch n.Kind {
	case KindGateOpened, KindGateEscalated:
		return fmt.Sprintf("`%s approve %s %s` · CLI: `stackrun approve %s %s`", l.cmd(), n.WorkflowID, n.Name, n.WorkflowID, n.Name)
	case KindStepStalled:
		return fmt.Sprintf("`%s resolve %s %s retry|skip|abort`", l.cmd(), n.WorkflowID, n.Name)
	case KindRunFinished:
		return fmt.Sprintf("Report: `stackrun report %s`", n.WorkflowID)
	}
	return n.Hint
}

// SlackBlocks builds the Block Kit message of a notification: headline, details, the way to act,
// a link to the run in the Temporal web UI, and the buttons (Approve/Reject on gates,
// Retry/Skip/Abort on stalled steps). The second result is the plain-text fallback.
func SlackBlocks(n activities.Notification, l Links) ([]slack.Block, string) {
	head := Headline(n)
	mk := func(s string) *slack.TextBlockObject {
		return slack.NewTextBlockObject(slack.MarkdownType, s, false, false)
	}
	bold := func(s string) string { return "*" + s + "*" }
	blocks := []slack.Block{slack.NewSectionBlock(mk(icon(n)+" "+bold(slackEscape(head))), nil, nil)}
	for _, d := range details(n, bold) {
		blocks = append(blocks, slack.NewSectionBlock(mk(truncate(d, 2900)), nil, nil))
	}
	ctx := []slack.MixedElement{mk(hint(n, l))}
	if link := l.run(n.WorkflowID); link != "" {
		ctx = append(ctx, mk("<"+link+"|Open in the Temporal web UI>"))
	}
	blocks = append(blocks, slack.NewContextBlock("", ctx...))
	if bs := buttons(n); len(bs) > 0 {
		value, _ := json.Marshal(ButtonValue{Run: n.WorkflowID, Name: n.Name})
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

func slackEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
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

// MattermostContext is the context of Stackrun's buttons; Sig is ActionSigner's HMAC over
// action, run and name.
type MattermostContext struct {
	Action string `json:"action"`
	Run    string `json:"run"`
	Name   string `json:"name"`
	Sig    string `json:"sig"`
}

// MattermostNotification builds the webhook payload of a notification. Buttons are added when
// publicURL (the gateway as Mattermost reaches it) and the signer's key are known.
func MattermostNotification(n activities.Notification, l Links, publicURL string, signer ActionSigner) MattermostMessage {
	bold := func(s string) string { return "**" + s + "**" }
	text := icon(n) + " " + bold(Headline(n))
	att := MattermostAttachment{Fallback: Headline(n), Color: color(n)}
	lines := details(n, bold)
	lines = append(lines, hint(n, l))
	if link := l.run(n.WorkflowID); link != "" {
		lines = append(lines, "[Open in the Temporal web UI]("+link+")")
	}
	att.Text = strings.Join(lines, "\n\n")
	if publicURL != "" && signer.Key != "" {
		for _, b := range buttons(n) {
			c := MattermostContext{Action: b.action, Run: n.WorkflowID, Name: n.Name, Sig: signer.Sign(b.action, n.WorkflowID, n.Name)}
			att.Actions = append(att.Actions, MattermostAction{
				// Mattermost wants alphanumeric action IDs.
				ID: strings.ReplaceAll(strings.TrimPrefix(b.action, "resolve:"), "-", ""), Name: b.label, Style: b.style,
				Integration: MattermostIntegration{URL: strings.TrimRight(publicURL, "/") + "/mattermost/actions",
					Context: map[string]any{"action": c.Action, "run": c.Run, "name": c.Name, "sig": c.Sig}},
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
