package main

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/stackrun/stackrun/config"
	"github.com/stackrun/stackrun/internal/app/control"
	"github.com/stackrun/stackrun/internal/app/report"
	"github.com/stackrun/stackrun/workflows"
)

func statusNames() string {
	names := make([]string, len(workflows.AllStatuses))
	for i, s := range workflows.AllStatuses {
		names[i] = string(s)
	}
	return strings.Join(names, ", ")
}

func newListCmd(a *app) *cobra.Command {
	var f control.Filter
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List runs, filtered by status, runbook and target",
		Long: `List runs from Temporal's visibility store, newest first. Visibility is eventually
consistent: a run started a moment ago may take a second to show.

Statuses: ` + statusNames() + `.`,
		Example: `  stackrun list --status WaitingApproval
  stackrun list --runbook restart-service --target compute1/nova-compute
  stackrun list --status Stalled --output json`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := control.Query(f); err != nil {
				return &usageError{err}
			}
			if f.Limit < 0 || f.Limit > control.MaxLimit {
				return usagef("--limit %d: must be between 1 and %d", f.Limit, control.MaxLimit)
			}
			c, err := a.dial(cmd)
			if err != nil {
				return err
			}
			ctx, cancel := a.callCtx(cmd)
			defer cancel()
			runs, err := control.List(ctx, c, f)
			if err != nil {
				return err
			}
			if a.json() {
				return a.printJSON(runs)
			}
			if len(runs) == 0 {
				_, err := fmt.Fprintln(a.out, "No runs match.")
				return err
			}
			rows := make([][]string, len(runs))
			for i, r := range runs {
				rows[i] = []string{r.WorkflowID, r.Runbook, r.Status, r.Step, r.Target, r.RequestedBy, report.Time(r.Started), r.TemporalStatus}
			}
			return report.Table(a.out, []string{"RUN", "RUNBOOK", "STATUS", "STEP", "TARGET", "REQUESTED BY", "STARTED", "TEMPORAL"}, rows)
		},
	}
	cmd.Flags().StringVar(&f.Status, "status", "", "only runs in this status ("+statusNames()+")")
	cmd.Flags().StringVar(&f.Runbook, "runbook", "", "only runs of this runbook ("+strings.Join(runbookNames(), ", ")+")")
	cmd.Flags().StringVar(&f.Target, "target", "", "only runs on this target (exact RunbookTarget, e.g. compute1/nova-compute)")
	cmd.Flags().IntVar(&f.Limit, "limit", control.DefaultLimit, "at most this many runs")
	return cmd
}

// statusView is what status --output json prints: the status query's answer, the run's ID and
// the commands that would move it on.
type statusView struct {
	WorkflowID string `json:"workflow_id"`
	workflows.Status
	Commands []string `json:"commands,omitempty"`
}

func nextCommands(id string, st workflows.Status) []string {
	var out []string
	for _, g := range st.OpenGates {
		out = append(out,
			fmt.Sprintf("stackrun approve %s %s --comment \"...\"", id, g.Name),
			fmt.Sprintf("stackrun reject %s %s --comment \"...\"", id, g.Name))
	}
	for _, s := range st.Stalled {
		out = append(out, fmt.Sprintf("stackrun resolve %s %s retry|skip|abort --comment \"...\"", id, s.Step))
	}
	return out
}

func newStatusCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "status <run-id>",
		Short: "Show a run's steps, open gates, stalled steps and what to do next",
		Example: `  stackrun status restart-service/compute1/nova-compute
  stackrun status restart-service/compute1/nova-compute --output json`,
		Args: exactArgs("run-id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			c, err := a.dial(cmd)
			if err != nil {
				return err
			}
			ctx, cancel := a.callCtx(cmd)
			defer cancel()
			st, err := control.Status(ctx, c, id)
			if err != nil {
				return err
			}
			v := statusView{WorkflowID: id, Status: st, Commands: nextCommands(id, st)}
			if a.json() {
				return a.printJSON(v)
			}
			return a.printStatus(v)
		},
	}
}

func (a *app) printStatus(v statusView) error {
	w := a.out
	fmt.Fprintf(w, "Run:           %s\n", v.WorkflowID)
	fmt.Fprintf(w, "Runbook:       %s on %s\n", v.Runbook, v.Target)
	status := string(v.Status.Status)
	if v.CurrentStep != "" {
		status += " (step " + v.CurrentStep + ")"
	}
	if v.DryRun {
		status += " [dry run]"
	}
	fmt.Fprintf(w, "Status:        %s\n", status)
	fmt.Fprintf(w, "Requested by:  %s\n\n", v.RequestedBy)
	if err := report.Table(w, report.StepHeader, report.StepRows(v.Steps)); err != nil {
		return err
	}
	if len(v.OpenGates) > 0 {
		fmt.Fprintln(w, "\nOpen gates:")
		rows := make([][]string, len(v.OpenGates))
		for i, g := range v.OpenGates {
			rule := ""
			if g.Destructive {
				rule = "two-person (not " + v.RequestedBy + ")"
			}
			rows[i] = []string{g.Name, strings.Join(g.Approvers, ","), rule, report.Time(g.OpenedAt), report.Time(g.Deadline), fmt.Sprint(g.Escalations), g.Summary}
		}
		if err := report.Table(w, []string{"GATE", "APPROVERS", "RULE", "OPENED", "DEADLINE", "ESCALATIONS", "SUMMARY"}, rows); err != nil {
			return err
		}
	}
	if len(v.Stalled) > 0 {
		fmt.Fprintln(w, "\nStalled steps:")
		rows := make([][]string, len(v.Stalled))
		for i, s := range v.Stalled {
			rows[i] = []string{s.Step, report.Time(s.Since), s.Error}
		}
		if err := report.Table(w, []string{"STEP", "SINCE", "ERROR"}, rows); err != nil {
			return err
		}
	}
	if len(v.Decisions) > 0 {
		fmt.Fprintln(w, "\nDecisions:")
		rows := make([][]string, len(v.Decisions))
		for i, d := range v.Decisions {
			rows[i] = []string{report.Time(d.At), d.Kind, d.Name, d.Outcome, d.By, d.Via, d.Comment, report.Signer(d)}
		}
		if err := report.Table(w, []string{"WHEN", "KIND", "NAME", "OUTCOME", "BY", "VIA", "COMMENT", "SIGNED"}, rows); err != nil {
			return err
		}
	}
	if len(v.Plan) > 0 {
		fmt.Fprintln(w, "\nPlan:")
		for i, p := range v.Plan {
			fmt.Fprintf(w, "  %d. %s\n", i+1, p)
		}
	}
	if len(v.Commands) > 0 {
		fmt.Fprintln(w, "\nNext:")
		for _, c := range v.Commands {
			fmt.Fprintf(w, "  %s\n", c)
		}
	}
	return nil
}

func newDecideCmd(a *app, approve bool) *cobra.Command {
	var (
		comment     string
		printSignal bool
	)
	verb, past := "reject", "rejected"
	short := "Reject an open gate: the run aborts"
	if approve {
		verb, past = "approve", "approved"
		short = "Approve an open gate: the run goes on"
	}
	cmd := &cobra.Command{
		Use:   verb + " <run-id> <gate>",
		Short: short,
		Long: short + `.

The decision is signed (ssh-agent, or --key) over the run's workflow ID and run ID, the gate, the
outcome, you, the time and a one-time nonce. The workflow checks it at once: the signature must
be made by one of your keys in the worker's policy and be fresh, the gate must be open, you must
be one of its approvers, and on a destructive (two-person) gate the requester may not approve
their own run. A refused decision changes nothing. You are --as, or your login name.

--print-signal sends nothing: it prints the signed JSON to paste into the Temporal web UI
("More Actions" > "Send a Signal", signal ` + "`" + verb + "`" + `) or to give to
` + "`temporal workflow signal`" + `. It is valid for this run only and for trust.max_signature_age.`,
		Example: fmt.Sprintf(`  stackrun %[1]s restart-service/compute1/nova-compute approve-restart --comment "checked the plan"
  stackrun %[1]s restart-service/compute1/nova-compute approve-restart --as bob --key ~/.ssh/id_ed25519 --output json
  stackrun %[1]s restart-service/compute1/nova-compute approve-restart --print-signal`, verb),
		Args: exactArgs("run-id", "gate"),
		RunE: func(cmd *cobra.Command, args []string) error {
			who, err := a.operator()
			if err != nil {
				return err
			}
			c, err := a.dial(cmd)
			if err != nil {
				return err
			}
			s, closeSigner, err := a.signer(cmd, who)
			if err != nil {
				return err
			}
			defer closeSigner()
			ctx, cancel := a.callCtx(cmd)
			defer cancel()
			req := workflows.GateDecisionRequest{Gate: args[1], By: who, Comment: comment, Via: "cli"}
			if printSignal {
				req.Via = "web-ui"
				runID, sig, err := control.PrintSignal(ctx, c, args[0], req, approve, s)
				if err != nil {
					return err
				}
				fmt.Fprintf(a.errOut, "Signed for run %s of %s (valid %s). In the web UI: More Actions > Send a Signal, signal name %q, input:\n",
					runID, args[0], a.cfg.Trust.MaxSignatureAge, verb)
				return a.printJSON(sig)
			}
			d, err := control.DecideGate(ctx, c, args[0], "", req, approve, s)
			if err != nil {
				return err
			}
			if a.json() {
				return a.printJSON(d)
			}
			_, err = fmt.Fprintf(a.out, "Gate %s of %s %s by %s.\n", d.Name, args[0], past, d.By)
			return err
		},
	}
	cmd.Flags().StringVar(&comment, "comment", "", "why (recorded with the decision)")
	cmd.Flags().BoolVar(&printSignal, "print-signal", false, "print the signed JSON for the web UI's \"Send a Signal\" instead of sending")
	return cmd
}

func newResolveCmd(a *app) *cobra.Command {
	var comment string
	actions := []string{workflows.ResolveRetry, workflows.ResolveSkip, workflows.ResolveAbort}
	cmd := &cobra.Command{
		Use:   "resolve <run-id> <step> retry|skip|abort",
		Short: "Decide a stalled step: retry it, skip it, or abort the run",
		Long: `Decide a stalled step. A step stalls when its activity is out of retries; the run waits
for an operator: retry runs the step again, skip goes on without it (refused for steps later
steps depend on), abort ends the run as Aborted.`,
		Example: `  stackrun resolve restart-service/compute1/nova-compute verify retry --comment "AMQP is back"
  stackrun resolve restart-service/compute1/nova-compute verify abort`,
		Args: exactArgs("run-id", "step", "action"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !slices.Contains(actions, args[2]) {
				return usagef("action %q: must be retry, skip or abort", args[2])
			}
			who, err := a.operator()
			if err != nil {
				return err
			}
			c, err := a.dial(cmd)
			if err != nil {
				return err
			}
			s, closeSigner, err := a.signer(cmd, who)
			if err != nil {
				return err
			}
			defer closeSigner()
			ctx, cancel := a.callCtx(cmd)
			defer cancel()
			d, err := control.Resolve(ctx, c, args[0], workflows.ResolveRequest{Step: args[1], Action: args[2], By: who, Comment: comment, Via: "cli"}, s)
			if err != nil {
				return err
			}
			if a.json() {
				return a.printJSON(d)
			}
			_, err = fmt.Fprintf(a.out, "Step %s of %s: %s, decided by %s.\n", d.Name, args[0], d.Outcome, d.By)
			return err
		},
	}
	cmd.Flags().StringVar(&comment, "comment", "", "why (recorded with the decision)")
	return cmd
}

func newReportCmd(a *app) *cobra.Command {
	var (
		wait        bool
		waitTimeout time.Duration
		format      string
	)
	cmd := &cobra.Command{
		Use:   "report <run-id>",
		Short: "Print a finished run's report (Markdown or JSON)",
		Long: `Print a finished run's report (Markdown or JSON). --wait waits for an open run to end
(--wait-timeout bounds the wait). The exit code is the run's outcome.

` + exitCodesHelp,
		Example: `  stackrun report restart-service/compute1/nova-compute
  stackrun report restart-service/compute1/nova-compute --wait --format json > report.json`,
		Args: exactArgs("run-id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "" && format != "markdown" && format != "json" {
				return usagef("--format %q: must be markdown or json", format)
			}
			if waitTimeout < 0 {
				return usagef("--wait-timeout %s: must not be negative", waitTimeout)
			}
			wait = wait || waitTimeout > 0
			c, err := a.dial(cmd)
			if err != nil {
				return err
			}
			ctx, cancel := a.callCtx(cmd)
			if wait {
				ctx, cancel = waitContext(cmd.Context(), waitTimeout)
			}
			defer cancel()
			rep, err := control.Report(ctx, c, args[0], wait)
			if err != nil {
				if wait {
					return waitErr(ctx, c, args[0], waitTimeout, err)
				}
				return endErr(err)
			}
			if err := a.printReport(rep, format); err != nil {
				return err
			}
			return outcome(rep)
		},
	}
	cmd.Flags().BoolVar(&wait, "wait", false, "wait for the run to end")
	cmd.Flags().DurationVar(&waitTimeout, "wait-timeout", 0, "with --wait (implied): give up after this long, exit 5 if the run has not ended (0: no limit)")
	cmd.Flags().StringVar(&format, "format", "", "markdown or json (default: markdown, json with --output json)")
	return cmd
}

func newConfigCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Show or validate the configuration",
		Args:  exactArgs(),
		RunE:  func(cmd *cobra.Command, args []string) error { return cmd.Help() },
	}
	show := &cobra.Command{
		Use:   "show",
		Short: "Print the effective configuration, secrets redacted (YAML)",
		Example: `  stackrun config show
  stackrun config show --config /etc/stackrun/stackrun.yaml --output json`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := config.Load(config.LoadOptions{Flags: cmd.Flags()})
			if err != nil {
				return err
			}
			red := cfg.Redacted()
			if a.json() {
				return a.printJSON(red)
			}
			if cfg.File != "" {
				fmt.Fprintf(a.out, "# file: %s\n", cfg.File)
			} else {
				fmt.Fprintln(a.out, "# no configuration file: defaults, environment and flags")
			}
			enc := yaml.NewEncoder(a.out)
			enc.SetIndent(2)
			if err := enc.Encode(red); err != nil {
				return err
			}
			return enc.Close()
		},
	}
	var forWorker bool
	validate := &cobra.Command{
		Use:   "validate",
		Short: "Check the configuration and list every problem, naming its key",
		Example: `  stackrun config validate
  stackrun config validate --worker --config /etc/stackrun/stackrun.yaml`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			type result struct {
				OK       bool             `json:"ok"`
				File     string           `json:"file"`
				Purpose  string           `json:"purpose"`
				Problems []config.Problem `json:"problems,omitempty"`
			}
			purpose := config.ForCLI
			if forWorker {
				purpose = config.ForWorker
			}
			res := result{Purpose: purpose.String()}
			cfg, err := config.Load(config.LoadOptions{Flags: cmd.Flags()})
			if err == nil {
				res.File = cfg.File
				err = cfg.ValidateFor(purpose)
			}
			if err != nil {
				ps, ok := err.(config.Problems)
				if !ok {
					return err
				}
				res.Problems = ps
			}
			res.OK = len(res.Problems) == 0
			if a.json() {
				if err := a.printJSON(res); err != nil {
					return err
				}
			} else if res.OK {
				file := res.File
				if file == "" {
					file = "(no file: defaults, environment and flags)"
				}
				fmt.Fprintf(a.out, "Configuration OK for the %s: %s\n", res.Purpose, file)
			}
			if !res.OK {
				if a.json() {
					return fmt.Errorf("configuration has %d problem(s)", len(res.Problems))
				}
				return config.Problems(res.Problems)
			}
			return nil
		},
	}
	validate.Flags().BoolVar(&forWorker, "worker", false, "also check what only the worker needs (SSH key, known_hosts, audit log)")
	cmd.AddCommand(show, validate)
	return cmd
}
