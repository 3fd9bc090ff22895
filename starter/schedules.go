package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/stackrun/stackrun/internal/app/control"
	"github.com/stackrun/stackrun/internal/app/report"
	"github.com/stackrun/stackrun/workflows"
)

func cadenceArg(cmd *cobra.Command, args []string) error {
	if len(args) != 1 {
		return usagef("%s takes 1 argument: the cadence (%s)", cmd.CommandPath(), strings.Join(workflows.Cadences, ", "))
	}
	if err := workflows.ValidateCadence(args[0]); err != nil {
		return &usageError{err}
	}
	return nil
}

func newSchedulesCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "schedules",
		Short: "Manage the recurring checks' Temporal Schedules (apply, list, pause, unpause, trigger)",
		Long: `The recurring checks (hourly, daily, weekly, monthly, quarterly, half-yearly) run on Temporal
Schedules named stackrun-check-<cadence>. "apply" creates or updates all six from the checks:
section of the configuration (times in checks.time_zone, overlap Skip, catch-up window
checks.catchup_window, pause on failure); applying twice changes nothing. To run one check now
without its schedule: stackrun run check --cadence daily.`,
		Example: `  stackrun schedules apply
  stackrun schedules list
  stackrun schedules pause weekly --comment "alertmanager migration"
  stackrun schedules unpause weekly
  stackrun schedules trigger daily`,
	}
	var comment string
	apply := &cobra.Command{
		Use:     "apply",
		Short:   "Create or update the six schedules from the configuration (idempotent)",
		Example: "  stackrun schedules apply\n  stackrun schedules apply --output json",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.dial(cmd)
			if err != nil {
				return err
			}
			ctx, cancel := a.callCtx(cmd)
			defer cancel()
			changes, err := control.ApplySchedules(ctx, c, a.cfg)
			if err != nil {
				return err
			}
			if a.json() {
				return a.printJSON(changes)
			}
			rows := make([][]string, len(changes))
			for i, ch := range changes {
				rows[i] = []string{ch.Cadence, ch.ID, ch.Action}
			}
			return report.Table(a.out, []string{"CADENCE", "SCHEDULE", "ACTION"}, rows)
		},
	}
	list := &cobra.Command{
		Use:     "list",
		Short:   "List the checks' schedules: paused or not, next and last runs",
		Example: "  stackrun schedules list\n  stackrun schedules list --output json",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.dial(cmd)
			if err != nil {
				return err
			}
			ctx, cancel := a.callCtx(cmd)
			defer cancel()
			views, err := control.ListSchedules(ctx, c)
			if err != nil {
				return err
			}
			if a.json() {
				return a.printJSON(views)
			}
			if len(views) == 0 {
				_, err := fmt.Fprintln(a.out, "No check schedules: run `stackrun schedules apply`.")
				return err
			}
			rows := make([][]string, len(views))
			for i, v := range views {
				state := "active"
				if v.Paused {
					state = "PAUSED"
					if v.Note != "" {
						state += " (" + v.Note + ")"
					}
				}
				next, last := "-", "-"
				if len(v.Next) > 0 {
					next = v.Next[0].In(loc(v.TimeZone)).Format("2006-01-02 15:04 MST")
				}
				if v.LastRun != nil {
					last = report.Time(*v.LastRun)
				}
				rows[i] = []string{v.Cadence, v.ID, state, next, last, fmt.Sprint(v.Actions), fmt.Sprint(v.SkippedOverlap)}
			}
			return report.Table(a.out, []string{"CADENCE", "SCHEDULE", "STATE", "NEXT", "LAST RUN", "RUNS", "SKIPPED (OVERLAP)"}, rows)
		},
	}
	simple := func(use, short string, do func(cmd *cobra.Command, cadence, note string) error, done string) *cobra.Command {
		sc := &cobra.Command{
			Use:     use + " <cadence>",
			Short:   short,
			Example: fmt.Sprintf("  stackrun schedules %s daily", use),
			Args:    cadenceArg,
			RunE: func(cmd *cobra.Command, args []string) error {
				who, err := a.operator()
				if err != nil {
					return err
				}
				note := who
				if comment != "" {
					note += ": " + comment
				}
				if err := do(cmd, args[0], note); err != nil {
					return err
				}
				if a.json() {
					return a.printJSON(map[string]string{"cadence": args[0], "schedule": control.ScheduleID(args[0]), "result": done})
				}
				_, err = fmt.Fprintf(a.out, "%s %s\n", control.ScheduleID(args[0]), done)
				return err
			},
		}
		return sc
	}
	pause := simple("pause", "Pause a cadence's schedule (with --comment saying why)", func(cmd *cobra.Command, cad, note string) error {
		c, err := a.dial(cmd)
		if err != nil {
			return err
		}
		ctx, cancel := a.callCtx(cmd)
		defer cancel()
		return control.PauseSchedule(ctx, c, cad, note)
	}, "paused")
	pause.Flags().StringVar(&comment, "comment", "", "why (recorded as the schedule's note)")
	unpause := simple("unpause", "Resume a paused schedule (also after a failed run paused it)", func(cmd *cobra.Command, cad, note string) error {
		c, err := a.dial(cmd)
		if err != nil {
			return err
		}
		ctx, cancel := a.callCtx(cmd)
		defer cancel()
		return control.UnpauseSchedule(ctx, c, cad, note)
	}, "unpaused")
	unpause.Flags().StringVar(&comment, "comment", "", "why (recorded as the schedule's note)")
	trigger := simple("trigger", "Start a cadence's check now through its schedule (skipped while one runs)", func(cmd *cobra.Command, cad, note string) error {
		c, err := a.dial(cmd)
		if err != nil {
			return err
		}
		ctx, cancel := a.callCtx(cmd)
		defer cancel()
		return control.TriggerSchedule(ctx, c, cad)
	}, "triggered (see `stackrun schedules list` and `stackrun list --runbook check`)")
	cmd.AddCommand(apply, list, pause, unpause, trigger)
	return cmd
}

func loc(tz string) *time.Location {
	l, err := time.LoadLocation(tz)
	if err != nil {
		return time.UTC
	}
	return l
}
