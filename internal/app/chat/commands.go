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
		return s.Decide(ctx, id, verb, rest[0], rest[1], strings.Join(rest[2:], " "))
	case "resolve":
		if len(rest) < 3 {
			return Reply{Text: fmt.Sprintf("usage: `%s resolve <run> <step> retry|skip|abort [comment...]`", s.cmd())}
		}
		return s.Decide(ctx, id, "resolve:"+strings.ToLower(rest[2]), rest[0], rest[1], strings.Join(rest[3:], " "))
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
	m := in.GetMeta()
	m.RequestedBy, m.Reason, m.DryRun = id.Operator, reason, dryRun
	if err := in.Validate(); err != nil {
		return Reply{Text: fmt.Sprintf("invalid input for %s: %v\n%s", rb.Name, err, runUsage)}
	}
	started, err := control.Start(ctx, s.Client, s.TaskQueue, rb, in)
	if err != nil {
		if errors.Is(err, control.ErrAlreadyRunning) {
			return refused("%v", err)
		}
		return Reply{Text: "Could not start: " + err.Error()}
	}
	s.log().Info("chat started run", "workflow_id", started.WorkflowID, "operator", id.Operator, "via", id.Via())
	if dryRun {
		rep, err := control.Report(ctx, s.Client, started.WorkflowID, true)
		if err != nil {
			return Reply{Text: fmt.Sprintf("Dry run `%s` started; its plan is not ready yet (%v): `%s status %s`", started.WorkflowID, err, s.cmd(), started.WorkflowID)}
		}
		var b strings.Builder
		fmt.Fprintf(&b, "Dry run of %s on `%s` (nothing changed): %s\n", rb.Name, rb.Target(in), rep.Summary)
		writePlan(&b, rep.Plan)
		return Reply{Text: b.String()}
	}
	text := fmt.Sprintf(":arrow_forward: %s started `%s` (%s on `%s`)", id.Operator, started.WorkflowID, rb.Name, rb.Target(in))
	if reason != "" {
		text += ": " + reason
	}
	text += fmt.Sprintf(".\nFollow it: `%s status %s`", s.cmd(), started.WorkflowID)
	if link := RunLink(s.WebUIURL, s.Namespace, started.WorkflowID); link != "" {
		text += " · " + mdLink(id.Platform, link, "Temporal web UI")
	}
	return Reply{Text: text, Public: true}
}

// Decide approves or rejects a gate, or resolves a stalled step ("resolve:retry|skip|abort"),
// as the verified user. The gateway checks the user's chat roles; the workflow's update
// validator checks the approver against the worker's policy and the two-person rule, and its
// refusal is reported as is. Nothing changes in a run when either refuses.
func (s *Service) Decide(ctx context.Context, id Identity, action, run, name, comment string) Reply {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
	}
	s.log().Info("chat decision", "action", action, "workflow_id", run, "name", name, "operator", id.Operator, "via", id.Via())
	switch action {
	case "approve", "reject":
		if !id.CanDecide(name) {
			return refused("%s may not %s gate `%s` from chat (roles: %s)", id.Operator, action, name, strings.Join(id.Roles, ", "))
		}
		req := workflows.GateDecisionRequest{Gate: name, By: id.Operator, Comment: comment, Via: id.Via()}
		var d workflows.Decision
		var err error
		if action == "approve" {
			d, err = control.Approve(ctx, s.Client, run, req)
		} else {
			d, err = control.Reject(ctx, s.Client, run, req)
		}
		if err != nil {
			return s.decisionError(ctx, run, err)
		}
		icon := ":white_check_mark:"
		if action == "reject" {
			icon = ":x:"
		}
		return Reply{Text: fmt.Sprintf("%s Gate `%s` of `%s` %s by %s%s.", icon, d.Name, run, d.Outcome, d.By, commentText(d.Comment)), Public: true, Done: true}
	}
	act, ok := strings.CutPrefix(action, "resolve:")
	if !ok || !slices.Contains([]string{workflows.ResolveRetry, workflows.ResolveSkip, workflows.ResolveAbort}, act) {
		return Reply{Text: fmt.Sprintf("unknown action %q: approve, reject, or resolve with retry, skip or abort", action)}
	}
	st, err := control.Status(ctx, s.Client, run)
	if err != nil {
		return Reply{Text: err.Error()}
	}
	if !id.CanStart(st.Runbook) {
		return refused("%s may not resolve steps of %s runs from chat (roles: %s)", id.Operator, st.Runbook, strings.Join(id.Roles, ", "))
	}
	d, err := control.Resolve(ctx, s.Client, run, workflows.ResolveRequest{Step: name, Action: act, By: id.Operator, Comment: comment, Via: id.Via()})
	if err != nil {
		return s.decisionError(ctx, run, err)
	}
	return Reply{Text: fmt.Sprintf(":wrench: Step `%s` of `%s`: %s by %s%s.", d.Name, run, d.Outcome, d.By, commentText(d.Comment)), Public: true, Done: true}
}

func commentText(c string) string {
	if c == "" {
		return ""
	}
	return " (" + c + ")"
}

func (s *Service) decisionError(ctx context.Context, run string, err error) Reply {
	if control.IsRefused(err) {
		return refused("%s", err.Error())
	}
	// A run that has ended takes no decision: say so rather than "not found".
	if d, derr := s.Client.DescribeWorkflowExecution(ctx, run, ""); derr == nil {
		if st := d.GetWorkflowExecutionInfo().GetStatus(); st != enums.WORKFLOW_EXECUTION_STATUS_RUNNING {
			return refused("run `%s` has already ended (%s): nothing to decide", run, strings.TrimPrefix(st.String(), "WorkflowExecutionStatus"))
		}
	}
	return Reply{Text: "Could not decide: " + err.Error()}
}

func (s *Service) status(ctx context.Context, id Identity, run string) Reply {
	st, err := control.Status(ctx, s.Client, run)
	if err != nil {
		return Reply{Text: err.Error()}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "`%s`: %s — %s on `%s`, requested by %s", run, st.Status, st.Runbook, st.Target, st.RequestedBy)
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
		fmt.Fprintf(&b, ":warning: step `%s` is stalled: %s — `%s resolve %s %s retry|skip|abort`\n", x.Step, x.Error, s.cmd(), run, x.Step)
	}
	var steps []string
	for _, x := range st.Steps {
		steps = append(steps, x.Name+" "+string(x.State))
	}
	if len(steps) > 0 {
		fmt.Fprintf(&b, "Steps: %s\n", strings.Join(steps, " · "))
	}
	writePlan(&b, st.Plan)
	if link := RunLink(s.WebUIURL, s.Namespace, run); link != "" {
		fmt.Fprintf(&b, "%s\n", mdLink(id.Platform, link, "Temporal web UI"))
	}
	return Reply{Text: strings.TrimRight(b.String(), "\n")}
}

func writePlan(b *strings.Builder, plan []string) {
	if len(plan) == 0 {
		return
	}
	b.WriteString("Plan:\n")
	for i, p := range plan {
		if i == 20 {
			fmt.Fprintf(b, "• … and %d more\n", len(plan)-20)
			break
		}
		fmt.Fprintf(b, "• %s\n", p)
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
		fmt.Fprintf(&b, " — %s, requested by %s\n", r.Runbook, r.RequestedBy)
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
		return "<" + u + "|" + text + ">"
	}
	return "[" + text + "](" + u + ")"
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
