package chat

import (
	"strings"
)

// Text that operators and tenants chose (reasons, comments, instance names, error messages) goes
// into chat messages through these, so that it stays text: "<!channel>" does not page a channel,
// "<https://evil|the runbook>" and "[the runbook](https://evil)" do not become disguised links,
// "@all" does not notify everyone, and a line break does not fake a line of ours.

// wordJoiner is U+2060: invisible, and it breaks a mention ("@channel") apart.
const wordJoiner = "\u2060"

// slackText escapes text for Slack mrkdwn: &, < and > as Slack's docs require (so <!channel>,
// <@U123> and <url|label> are shown, not interpreted), and mentions are broken.
func slackText(s string) string {
	s = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
	return breakMentions(s)
}

// mattermostText escapes text for Mattermost's Markdown: the characters that make links, images,
// emphasis, code, tables and HTML inline are backslash-escaped (the text is one line, so
// block syntax such as headings and lists cannot start), and mentions are broken.
func mattermostText(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '\\', '`', '*', '_', '[', ']', '(', ')', '!', '#', '<', '>', '|', '~':
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return breakMentions(b.String())
}

// markup is how one platform writes what messages need: escaped text, inline code, bold.
type markup struct {
	text func(string) string
	code func(string) string
	bold func(string) string
}

var (
	slackMarkup = markup{text: slackText, bold: func(s string) string { return "*" + s + "*" },
		code: func(s string) string {
			return codeSpan(strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s))
		}}
	mattermostMarkup = markup{text: mattermostText, bold: func(s string) string { return "**" + s + "**" }, code: codeSpan}
)

// markupFor returns the markup of a platform.
func markupFor(platform string) markup {
	if platform == Slack {
		return slackMarkup
	}
	return mattermostMarkup
}

// breakMentions puts a word joiner after every '@' so that no mention (@channel, @here, @all,
// @someone) is recognised by the platform.
func breakMentions(s string) string {
	return strings.ReplaceAll(s, "@", "@"+wordJoiner)
}

// codeSpan renders s as inline code: backticks (which would end the span) become quotes, the text
// stays on one line, and mentions are broken. Inside code Markdown is not interpreted (Slack's
// <...> sequences are: slackMarkup escapes them first).
func codeSpan(s string) string {
	s = breakMentions(strings.ReplaceAll(oneLine(s, 500), "`", "'"))
	if s == "" {
		return "``"
	}
	return "`" + s + "`"
}
