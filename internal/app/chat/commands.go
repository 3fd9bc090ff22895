package chat

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/spf13/pflag"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/stackrun/stackrun/internal/app/control"
	"github.com/stackrun/stackrun/internal/app/inputflags"
	"github.com/stackrun/stackrun/internal/infra/trust/sshsign"
	"github.com/stackrun/stackrun/workflows"
)

// Reply is the gateway's answer to a command or a button.
type Reply struct {
	// Text uses the Markdown subset Slack and Mattermost share (`code`, links, line breaks).
	Text string
	// Public replies go to the channel; others only to the user (ephemeral).
	Public bool
	// Refused marks a refusal: nothing changed in any run.
	Refused bool
	// Done marks a decision that was recorded: the button message is replaced by Text.
	Done bool
}

func refused(format string, args ...any) Reply {
	return Reply{Text: ":no_entry: Refused: " + fmt.Sprintf(format, args...), Refused: true}
}

// Service runs chat commands and button actions against Temporal through internal/app/control, the
// same operations as the CLI.
type Service struct {
	Client    client.Client
	TaskQueue string
	// Namespace and WebUIURL build links to runs in the Temporal web UI (no links without WebUIURL).
	Namespace string
	WebUIURL  string
	// Command is the slash command's name as users type it (default /stackrun).
	Command string
	// Timeout bounds the Temporal calls of one command (default 30s).
	Timeout time.Duration
	Log     *slog.Logger
	// Key is the gateway's own key (trust.chat_gateway): every start and decision it makes is
	// signed with it, naming the chat user it verified. The worker accepts that only for the
	// operators, gates and runbooks trust.chat_gateway.vouch lists. nil: sent unsigned.
	Key sshsign.Signer
}

// signer is what signs for a verified chat user (nil without a gateway key).
func (s *Service) signer(id Identity) control.Signer {
	if s.Key == nil {
		return nil
	}
	return control.KeySigner{Key: s.Key, ChatUser: id.Via()}
}

func (s *Service) cmd() string {
	if s.Command == "" {
		return "/stackrun"
	}
	return s.Command
}

func (s *Service) log() *slog.Logger {
	if s.Log == nil {
		return slog.Default()
	}
	return s.Log
}

// Run executes one slash command's text for a verified user.
func (s *Service) Run(ctx context.Context, id Identity, text string) Reply {
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	args, err := Tokenize(text)
	if err != nil {
		return Reply{Text: err.Error() + "\n" + s.usage()}
	}
	if len(args) == 0 {
		return Reply{Text: s.usage()}
	}
	verb, rest := strings.ToLower(args[0]), args[1:]
	s.log().Info("chat command", "platform", id.Platform, "user", id.UserID, "operator", id.Operator, "verb", verb)
	switch verb {
	case "help":
		return Reply{Text: s.usage()}
	case "list":
		return s.list(ctx, rest)
	case "status":
		if len(rest) != 1 {
			return Reply{Text: fmt.Sprintf("usage: `%s status <run>`", s.cmd())}
		}
		return s.status(ctx, id, rest[0])
	case "approve", "reject":
		if len(rest) < 2 {
			return Reply{Text: fmt.Sprintf("usage: `%s %s <run> <gate> [comment...]`", s.cmd(), verb)}
		}
		return s.Decide(ctx, id, verb, rest[0], "", rest[1], strings.Join(rest[2:], " "))
	case "resolve":
		if len(rest) < 3 {
			return Reply{Text: fmt.Sprintf("usage: `%s resolve <run> <step> retry|skip|abort [comment...]`", s.cmd())}
		}
		return s.Decide(ctx, id, "resolve:"+strings.ToLower(rest[2]), rest[0], "", rest[1], strings.Join(rest[3:], " "))
	case "run":
		if len(rest) == 0 {
			return Reply{Text: s.usage()}
		}
		verb, rest = strings.ToLower(rest[0]), rest[1:]
	}
	rb, err := FindRunbook(verb)
	if err != nil {
		return Reply{Text: err.Error() + "\n" + s.usage()}
	}
	return s.start(ctx, id, rb, rest)
}

// FindRunbook finds a runbook by its name or by a unique prefix ending at a '-' ("evacuate" for
// "evacuate-host"), so that chat commands stay short.
func FindRunbook(name string) (workflows.Runbook, error) {
	if rb, err := workflows.FindRunbook(name); err == nil {
		return rb, nil
	}
	var found []workflows.Runbook
	for _, rb := range workflows.Runbooks {
		if strings.HasPrefix(rb.Name, name+"-") {
			found = append(found, rb)
		}
	}
	if len(found) == 1 {
		return found[0], nil
	}
	return workflows.Runbook{}, fmt.Errorf("unknown command or runbook %q", name)
}

func (s *Service) usage() string {
	names := workflows.RunbookNames()
	for i, n := range names {
		names[i] = "`" + n + "`"
	}
	c := s.cmd()
	return fmt.Sprintf(`Usage:
%[1]s <runbook> [--flag value ...] [positional required values] [reason...]   start a runbook (%[2]s; --dry-run for the plan only)
%[1]s approve|reject <run> <gate> [comment...]
%[1]s resolve <run> <step> retry|skip|abort [comment...]
%[1]s status <run>
%[1]s list [waiting|stalled|running|all]`, c, strings.Join(names, ", "))
}

// start parses the runbook's flags exactly as the CLI does (internal/app/inputflags), fills the
// required values given positionally in order, takes the rest as the reason, and starts the run
// through control.Start (the same validation as the CLI).
func (s *Service) start(ctx context.Context, id Identity, rb workflows.Runbook, args []string) Reply {
	if !id.CanStart(rb.Name) {
		return refused("%s may not start %s from chat (roles: %s)", id.Operator, rb.Name, strings.Join(id.Roles, ", "))
	}
	in := rb.NewInput()
	fs := pflag.NewFlagSet(rb.Name, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	flags, err := inputflags.Bind(fs, in)
	if err != nil {
		return Reply{Text: "internal error: " + err.Error()}
	}
	var reason string
	var dryRun bool
	fs.StringVar(&reason, "reason", "", "why you run it")
	fs.BoolVar(&dryRun, "dry-run", false, "plan only")
	runUsage := fmt.Sprintf("usage: `%s %s %s [reason...]`; flags:\n```\n%s```", s.cmd(), rb.Name, inputflags.Example(flags), fs.FlagUsages())
	if err := fs.Parse(args); err != nil {
		return Reply{Text: err.Error() + "\n" + runUsage}
	}
	pos := fs.Args()
	for _, f := range flags {
		if f.Required && f.Kind != "bool" && !fs.Changed(f.Name) && len(pos) > 0 {
			if err := fs.Set(f.Name, pos[0]); err != nil {
				return Reply{Text: fmt.Sprintf("--%s %q: %v\n%s", f.Name, pos[0], err, runUsage)}
			}
			pos = pos[1:]
		}
	}
	if len(pos) > 0 {
		if reason != "" {
			return Reply{Text: fmt.Sprintf("unexpected arguments %q (the reason is already given by --reason)\n%s", pos, runUsage)}
		}
		reason = strings.Join(pos, " ")
	}
	if pr, ok := in.(*workflows.PostRebootCheckInput); ok && pr.StartInstances && !id.CanDecide(workflows.GateStartInstances) {
		return refused("%s may not use --start-instances from chat: it needs a chat role that names gate %s (roles: %s)", id.Operator, workflows.GateStartInstances, strings.Join(id.Roles, ", "))
	}
	m := in.GetMeta()
	m.RequestedBy, m.Reason, m.DryRun = id.Operator, reason, dryRun
	if err := in.Validate(); err != nil {
		return Reply{Text: fmt.Sprintf("invalid input for %s: %v\n%s", rb.Name, err, runUsage)}
	}
	mk := markupFor(id.Platform)
	started, err := control.Start(ctx, s.Client, s.TaskQueue, rb, in, s.signer(id))
	if err != nil {
		if errors.Is(err, control.ErrAlreadyRunning) {
			return refused("%s", mk.text(err.Error()))
		}
		return Reply{Text: "Could not start: " + mk.text(err.Error())}
	}
	s.log().Info("chat started run", "workflow_id", started.WorkflowID, "operator", id.Operator, "via", id.Via())
	if dryRun {
		rep, err := control.Report(ctx, s.Client, started.WorkflowID, true)
		if err != nil {
			return Reply{Text: fmt.Sprintf("Dry run `%s` started; its plan is not ready yet (%v): `%s status %s`", started.WorkflowID, err, s.cmd(), started.WorkflowID)}
		}
		var b strings.Builder
		fmt.Fprintf(&b, "Dry run of %s on %s (nothing changed): %s\n", rb.Name, mk.code(rb.Target(in)), mk.text(oneLine(rep.Summary, 2000)))
		writePlan(&b, mk, rep.Plan)
		return Reply{Text: b.String()}
	}
	text := fmt.Sprintf(":arrow_forward: %s started %s (%s on %s)", mk.text(id.Operator), mk.code(started.WorkflowID), rb.Name, mk.code(rb.Target(in)))
	if reason != "" {
		text += ": " + mk.text(oneLine(reason, 500))
	}
	text += fmt.Sprintf(".\nFollow it: %s", mk.code(s.cmd()+" status "+started.WorkflowID))
	if link := RunLink(s.WebUIURL, s.Namespace, started.WorkflowID); link != "" {
		text += " · " + mdLink(id.Platform, link, "Temporal web UI")
	}
	return Reply{Text: text, Public: true}
}

// Decide approves or rejects a gate, or resolves a stalled step ("resolve:retry|skip|abort"),
// as the verified user, signed with the gateway's key. runID is the run a button was posted for
// ("" for a slash command: the run open now); a button of an earlier run on the same target is
// refused. The gateway checks the user's chat roles; the workflow's update validator checks the
// signature, the approver against the worker's policy and the two-person rule, and its refusal
// is reported as is. Nothing changes in a run when either refuses.
func (s *Service) Decide(ctx context.Context, id Identity, action, run, runID, name, comment string) Reply {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
	}
	s.log().Info("chat decision", "action", action, "workflow_id", run, "run_id", runID, "name", name, "operator", id.Operator, "via", id.Via())
	m := markupFor(id.Platform)
	if runID != "" {
		cur, err := control.CurrentRunID(ctx, s.Client, run)
		if err != nil {
			return Reply{Text: m.text(err.Error())}
		}
		if cur != runID {
			return refused("this button is for an earlier run of %s (run ID %s); the run open now (%s) was not decided: use its own message or %s",
				m.code(run), m.code(runID), m.code(cur), m.code(s.cmd()+" status "+run))
		}
	}
	switch action {
	case "approve", "reject":
		if !id.CanDecide(name) {
			return refused("%s may not %s gate %s from chat (roles: %s)", m.text(id.Operator), action, m.code(name), m.text(strings.Join(id.Roles, ", ")))
		}
		req := workflows.GateDecisionRequest{Gate: name, By: id.Operator, Comment: comment, Via: id.Via()}
		d, err := control.DecideGate(ctx, s.Client, run, runID, req, action == "approve", s.signer(id))
		if err != nil {
			return s.decisionError(ctx, run, m, err)
		}
		icon := ":white_check_mark:"
		if action == "reject" {
			icon = ":x:"
		}
		return Reply{Text: fmt.Sprintf("%s Gate %s of %s %s by %s%s.", icon, m.code(d.Name), m.code(run), d.Outcome, m.text(d.By), commentText(m, d.Comment)), Public: true, Done: true}
	}
	act, ok := strings.CutPrefix(action, "resolve:")
	if !ok || !slices.Contains([]string{workflows.ResolveRetry, workflows.ResolveSkip, workflows.ResolveAbort}, act) {
		return Reply{Text: fmt.Sprintf("unknown action %q: approve, reject, or resolve with retry, skip or abort", action)}
	}
	st, err := control.Status(ctx, s.Client, run)
	if err != nil {
		return Reply{Text: m.text(err.Error())}
	}
	if !id.CanStart(st.Runbook) {
		return refused("%s may not resolve steps of %s runs from chat (roles: %s)", m.text(id.Operator), st.Runbook, m.text(strings.Join(id.Roles, ", ")))
	}
	d, err := control.ResolveRun(ctx, s.Client, run, runID, workflows.ResolveRequest{Step: name, Action: act, By: id.Operator, Comment: comment, Via: id.Via()}, s.signer(id))
	if err != nil {
		return s.decisionError(ctx, run, m, err)
	}
	return Reply{Text: fmt.Sprintf(":wrench: Step %s of %s: %s by %s%s.", m.code(d.Name), m.code(run), d.Outcome, m.text(d.By), commentText(m, d.Comment)), Public: true, Done: true}
}

func commentText(m markup, c string) string {
	if c == "" {
		return ""
	}
	return " (" + m.text(oneLine(c, 500)) + ")"
}

func (s *Service) decisionError(ctx context.Context, run string, m markup, err error) Reply {
	if control.IsRefused(err) {
		return refused("%s", m.text(err.Error()))
	}
	// A run that has ended takes no decision: say so rather than "not found".
	if d, derr := s.Client.DescribeWorkflowExecution(ctx, run, ""); derr == nil {
		if st := d.GetWorkflowExecutionInfo().GetStatus(); st != enums.WORKFLOW_EXECUTION_STATUS_RUNNING {
			return refused("run %s has already ended (%s): nothing to decide", m.code(run), strings.TrimPrefix(st.String(), "WorkflowExecutionStatus"))
		}
	}
	return Reply{Text: "Could not decide: " + m.text(err.Error())}
}

func (s *Service) status(ctx context.Context, id Identity, run string) Reply {
	m := markupFor(id.Platform)
	st, err := control.Status(ctx, s.Client, run)
	if err != nil {
		return Reply{Text: m.text(err.Error())}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s — %s on %s, requested by %s", m.code(run), st.Status, st.Runbook, m.code(st.Target), m.text(st.RequestedBy))
	if st.CurrentStep != "" {
		fmt.Fprintf(&b, ", step `%s`", st.CurrentStep)
	}
	b.WriteString("\n")
	for _, g := range st.OpenGates {
		fmt.Fprintf(&b, ":raised_hand: waiting at gate `%s`", g.Name)
		if g.Destructive {
			b.WriteString(" (two-person rule: the requester may not approve)")
		}
		fmt.Fprintf(&b, " — `%s approve %s %s`\n", s.cmd(), run, g.Name)
	}
	for _, x := range st.Stalled {
		fmt.Fprintf(&b, ":warning: step %s is stalled: %s — %s\n", m.code(x.Step), m.code(x.Error), m.code(s.cmd()+" resolve "+run+" "+x.Step+" retry|skip|abort"))
	}
	var steps []string
	for _, x := range st.Steps {
		steps = append(steps, x.Name+" "+string(x.State))
	}
	if len(steps) > 0 {
		fmt.Fprintf(&b, "Steps: %s\n", strings.Join(steps, " · "))
	}
	writePlan(&b, m, st.Plan)
	if link := RunLink(s.WebUIURL, s.Namespace, run); link != "" {
		fmt.Fprintf(&b, "%s\n", mdLink(id.Platform, link, "Temporal web UI"))
	}
	return Reply{Text: strings.TrimRight(b.String(), "\n")}
}

func writePlan(b *strings.Builder, m markup, plan []string) {
	if len(plan) == 0 {
		return
	}
	b.WriteString("Plan:\n")
	for i, p := range plan {
		if i == 20 {
			fmt.Fprintf(b, "• … and %d more\n", len(plan)-20)
			break
		}
		fmt.Fprintf(b, "• %s\n", m.text(oneLine(p, 300)))
	}
}

func (s *Service) list(ctx context.Context, args []string) Reply {
	what := "waiting"
	if len(args) > 0 {
		what = args[0]
	}
	var statuses []string
	switch strings.ToLower(what) {
	case "waiting":
		statuses = []string{string(workflows.StatusWaitingApproval), string(workflows.StatusStalled)}
	case "stalled":
		statuses = []string{string(workflows.StatusStalled)}
	case "running":
		statuses = []string{string(workflows.StatusRunning)}
	case "all":
		statuses = []string{""}
	default:
		statuses = []string{what}
	}
	var runs []control.RunSummary
	for _, st := range statuses {
		r, err := control.List(ctx, s.Client, control.Filter{Status: st, Limit: 20})
		if err != nil {
			return Reply{Text: err.Error()}
		}
		runs = append(runs, r...)
	}
	if len(runs) == 0 {
		return Reply{Text: fmt.Sprintf("No runs (%s).", what)}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d run(s) (%s):\n", len(runs), what)
	for _, r := range runs {
		fmt.Fprintf(&b, "• `%s` — %s", r.WorkflowID, r.Status)
		if r.Step != "" {
			fmt.Fprintf(&b, " at `%s`", r.Step)
		}
		fmt.Fprintf(&b, " — %s, requested by %s\n", r.Runbook, codeSpan(r.RequestedBy))
	}
	return Reply{Text: strings.TrimRight(b.String(), "\n")}
}

// RunLink is the Temporal web UI page of a run ("" without a base URL).
func RunLink(base, namespace, workflowID string) string {
	if base == "" || workflowID == "" {
		return ""
	}
	if namespace == "" {
		namespace = "default"
	}
	return strings.TrimRight(base, "/") + "/namespaces/" + url.PathEscape(namespace) + "/workflows/" + url.PathEscape(workflowID)
}

// mdLink renders a link for the platform: Slack's <url|text>, Markdown's [text](url) elsewhere.
func mdLink(platform, u, text string) string {
	if platform == Slack {
		return "<" + slackURL(u) + "|" + text + ">"
	}
	return "[" + text + "](" + markdownURL(u) + ")"
}

// Tokenize splits a command line on white space, honouring "double", 'single' and the curly
// quotes chat clients substitute.
func Tokenize(s string) ([]string, error) {
	var out []string
	var cur strings.Builder
	inToken := false
	var quote rune
	closing := map[rune]rune{'"': '"', '\'': '\'', '“': '”', '‘': '’', '„': '“'}
	for _, c := range s {
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
				continue
			}
			cur.WriteRune(c)
		case closing[c] != 0:
			quote = closing[c]
			inToken = true
		case unicode.IsSpace(c):
			if inToken {
				out = append(out, cur.String())
				cur.Reset()
				inToken = false
			}
		default:
			cur.WriteRune(c)
			inToken = true
		}
	}
	if quote != 0 {
		return nil, errors.New("unterminated quote")
	}
	if inToken {
		out = append(out, cur.String())
	}
	return out, nil
}
