package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"

	"github.com/stackrun/stackrun/internal/app/control"
	"github.com/stackrun/stackrun/internal/app/report"
	"github.com/stackrun/stackrun/workflows"
)

// pollInterval is how often run --wait asks a run for its status.
var pollInterval = 2 * time.Second

func newRunCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "run <runbook>",
		Short: "Start a runbook",
		Long: `Start a runbook. Each runbook is a subcommand with its own flags; a run's workflow ID is
derived from its target, so a second run on the same target is refused while the first is open.

--dry-run computes and prints the plan without changing anything. --wait follows the run, printing
step transitions, and prints its report at the end; its exit code is the run's outcome
(--wait-timeout bounds the wait).

` + exitCodesHelp,
		Example: `  stackrun run restart-service --host compute1 --service nova-compute --dry-run
  stackrun run restart-service --host compute1 --service nova-compute --reason "config change" --wait
  stackrun run post-reboot-check --host compute1 --wait --output json`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usagef("name a runbook: %s", strings.Join(runbookNames(), ", "))
			}
			return usagef("unknown runbook %q (known: %s)", args[0], strings.Join(runbookNames(), ", "))
		},
		RunE: func(cmd *cobra.Command, args []string) error { return nil },
	}
	for _, rb := range workflows.Runbooks {
		cmd.AddCommand(newRunbookCmd(a, rb))
	}
	return cmd
}

func runbookNames() []string { return workflows.RunbookNames() }

func newRunbookCmd(a *app, rb workflows.Runbook) *cobra.Command {
	in := rb.NewInput()
	var (
		reason      string
		dryRun      bool
		wait        bool
		waitTimeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   rb.Name,
		Short: rb.Short,
		Args:  exactArgs(),
	}
	flags, bindErr := bindInputFlags(cmd.Flags(), in)
	req := exampleFlags(flags)
	cmd.Example = fmt.Sprintf(`  stackrun run %[1]s %[2]s --dry-run
  stackrun run %[1]s %[2]s --reason "why you run it" --wait
  stackrun run %[1]s %[2]s --as alice --output json`, rb.Name, req)
	cmd.Flags().StringVar(&reason, "reason", "", "why you run it (recorded in the report)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "compute and print the plan only; change nothing (implies --wait)")
	cmd.Flags().BoolVar(&wait, "wait", false, "follow the run and print its report when it ends (exit code: the run's outcome, see stackrun run --help)")
	cmd.Flags().DurationVar(&waitTimeout, "wait-timeout", 0, "with --wait (implied): stop following after this long, exit 5 if the run has not ended (0: no limit)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if bindErr != nil {
			return bindErr
		}
		if waitTimeout < 0 {
			return usagef("--wait-timeout %s: must not be negative", waitTimeout)
		}
		wait = wait || waitTimeout > 0
		who, err := a.operator()
		if err != nil {
			return err
		}
		m := in.GetMeta()
		m.RequestedBy, m.Reason, m.DryRun = who, reason, dryRun
		if err := in.Validate(); err != nil {
			return &usageError{fmt.Errorf("invalid input for %s: %w", rb.Name, err)}
		}
		c, err := a.dial(cmd)
		if err != nil {
			return err
		}
		s, closeSigner, err := a.signer(cmd, who)
		if err != nil {
			if !dryRun && !rb.ReadOnly {
				return err
			}
			// A run that changes nothing may start unsigned (the workflow accepts it so).
			fmt.Fprintf(a.errOut, "Not signed (%v): a %s changes nothing, so it starts unsigned.\n", err, map[bool]string{true: "dry run", false: "read-only runbook"}[dryRun])
			s, closeSigner = nil, func() {}
		}
		ctx, cancel := a.callCtx(cmd)
		started, err := control.Start(ctx, c, a.cfg.Temporal.TaskQueue, rb, in, s)
		closeSigner()
		cancel()
		if err != nil {
			return err
		}
		if !wait && !dryRun {
			if a.json() {
				return a.printJSON(started)
			}
			fmt.Fprintf(a.out, "Started %s (run ID %s) as %s.\n", started.WorkflowID, started.RunID, who)
			fmt.Fprintf(a.out, "Follow it:  stackrun status %s\n", started.WorkflowID)
			fmt.Fprintf(a.out, "Report:     stackrun report %s --wait\n", started.WorkflowID)
			return nil
		}
		fmt.Fprintf(a.errOut, "Started %s (run ID %s) as %s; following it (Ctrl-C stops following, not the run).\n",
			started.WorkflowID, started.RunID, who)
		wctx, wcancel := waitContext(cmd.Context(), waitTimeout)
		defer wcancel()
		rep, err := follow(wctx, c, started, a.errOut)
		if err != nil {
			return waitErr(wctx, c, started.WorkflowID, waitTimeout, err)
		}
		if err := a.printReport(rep, ""); err != nil {
			return err
		}
		return outcome(rep)
	}
	return cmd
}

// follow polls a run's status every pollInterval, printing step transitions to w, until the run
// ends; then it returns the report.
func follow(ctx context.Context, c client.Client, started control.Started, w io.Writer) (*workflows.Report, error) {
	type result struct {
		rep *workflows.Report
		err error
	}
	done := make(chan result, 1)
	go func() {
		var rep workflows.Report
		err := c.GetWorkflow(ctx, started.WorkflowID, started.RunID).Get(ctx, &rep)
		if err != nil {
			done <- result{nil, fmt.Errorf("run %s ended without a report: %w", started.WorkflowID, err)}
			return
		}
		done <- result{&rep, nil}
	}()
	p := progress{w: w, id: started.WorkflowID, steps: map[string]workflows.StepState{}, gates: map[string]bool{}, stalled: map[string]bool{}}
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		select {
		case r := <-done:
			return r.rep, r.err
		case <-ctx.Done():
			return nil, fmt.Errorf("stopped following %s (the run goes on: stackrun status %s)", started.WorkflowID, started.WorkflowID)
		case <-tick.C:
			qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			st, err := control.Status(qctx, c, started.WorkflowID)
			cancel()
			if err != nil {
				if !errors.Is(ctx.Err(), context.Canceled) {
					fmt.Fprintf(w, "%s  (status not available: %v)\n", time.Now().Format("15:04:05"), err)
				}
				continue
			}
			p.update(st)
		}
	}
}

// progress remembers what was last printed, so that only transitions are printed.
type progress struct {
	w       io.Writer
	id      string
	status  workflows.RunStatus
	steps   map[string]workflows.StepState
	gates   map[string]bool
	stalled map[string]bool
}

func (p *progress) update(st workflows.Status) {
	now := time.Now().Format("15:04:05")
	if st.Status != p.status {
		fmt.Fprintf(p.w, "%s  run %s\n", now, st.Status)
		p.status = st.Status
	}
	for _, s := range st.Steps {
		old, seen := p.steps[s.Name]
		if seen && old == s.State || !seen && s.State == workflows.StepPending {
			p.steps[s.Name] = s.State
			continue
		}
		p.steps[s.Name] = s.State
		line := fmt.Sprintf("%s  step %-20s %s", now, s.Name, s.State)
		if s.Detail != "" {
			line += " (" + s.Detail + ")"
		}
		if s.Error != "" {
			line += ": " + s.Error
		}
		fmt.Fprintln(p.w, line)
	}
	for _, g := range st.OpenGates {
		if p.gates[g.Name] {
			continue
		}
		p.gates[g.Name] = true
		fmt.Fprintf(p.w, "%s  waiting for approval at gate %q until %s%s\n", now, g.Name, report.Time(g.Deadline), twoPerson(g))
		fmt.Fprintf(p.w, "          approve: stackrun approve %s %s\n", p.id, g.Name)
	}
	for _, s := range st.Stalled {
		if p.stalled[s.Step] {
			continue
		}
		p.stalled[s.Step] = true
		fmt.Fprintf(p.w, "%s  step %q is stalled: %s\n          resolve: stackrun resolve %s %s retry|skip|abort\n", now, s.Step, s.Error, p.id, s.Step)
	}
	for name := range p.stalled {
		still := false
		for _, s := range st.Stalled {
			still = still || s.Step == name
		}
		if !still {
			delete(p.stalled, name)
		}
	}
}

func twoPerson(g workflows.GateStatus) string {
	if g.Destructive {
		return " (two-person rule: the requester may not approve)"
	}
	return ""
}

// printReport prints a report as Markdown, or JSON with --output json or format "json".
func (a *app) printReport(rep *workflows.Report, format string) error {
	if format == "" {
		format = "markdown"
		if a.json() {
			format = "json"
		}
	}
	if format == "json" {
		b, err := report.JSON(rep)
		if err != nil {
			return err
		}
		_, err = a.out.Write(b)
		return err
	}
	_, err := io.WriteString(a.out, report.Markdown(rep))
	return err
}
