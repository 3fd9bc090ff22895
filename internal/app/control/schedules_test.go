package control_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/stackrun/stackrun/config"
	"github.com/stackrun/stackrun/internal/app/control"
	"github.com/stackrun/stackrun/internal/testenv/devserver"
	"github.com/stackrun/stackrun/workflows"
)

func checksConfig(t *testing.T, tq string) *config.Config {
	cfg := config.Default()
	cfg.Temporal.TaskQueue = tq
	cfg.Checks.TimeZone = "Europe/Berlin"
	require.NoError(t, cfg.Validate())
	return cfg
}

// stubCheck stands in for the check workflow (registered under its type name): it waits for
// a "release" signal when the input asks for it, so that overlap can be tested.
func stubCheck(ctx workflow.Context, in workflows.CheckInput) (string, error) {
	if in.Reason == "block" {
		workflow.GetSignalChannel(ctx, "release").Receive(ctx, nil)
	}
	return in.Cadence, nil
}

// TestSchedulesOnDevServer applies the six schedules to a real Temporal dev server twice
// (idempotent), checks the calendar times the server computes for each cadence in the
// configured time zone, backfills a half year of the monthly and quarterly schedules to see
// them fire at the right times, and checks overlap Skip, pause and unpause.
func TestSchedulesOnDevServer(t *testing.T) {
	srv := devserver.Start(t)
	c := srv.Client
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tq := "checks-schedules-test"
	cfg := checksConfig(t, tq)
	w := worker.New(c, tq, worker.Options{})
	w.RegisterWorkflowWithOptions(stubCheck, workflow.RegisterOptions{Name: control.WorkflowType(workflows.Check)})
	require.NoError(t, w.Start())
	defer w.Stop()

	changes, err := control.ApplySchedules(ctx, c, cfg)
	require.NoError(t, err)
	require.Len(t, changes, 6)
	for _, ch := range changes {
		assert.Equal(t, "created", ch.Action, ch.Cadence)
	}
	require.NoError(t, control.PauseSchedule(ctx, c, "weekly", "alice: maintenance"))
	changes, err = control.ApplySchedules(ctx, c, cfg)
	require.NoError(t, err)
	for _, ch := range changes {
		assert.Equal(t, "updated", ch.Action, ch.Cadence)
	}
	views, err := control.ListSchedules(ctx, c)
	require.NoError(t, err)
	require.Len(t, views, 6, "applying twice leaves six schedules")

	berlin, _ := time.LoadLocation("Europe/Berlin")
	byCad := map[string]control.ScheduleView{}
	for _, v := range views {
		byCad[v.Cadence] = v
		assert.Equal(t, "Europe/Berlin", v.TimeZone)
		require.NotEmpty(t, v.Next, v.Cadence)
	}
	assert.True(t, byCad["weekly"].Paused, "apply keeps a pause")
	assert.Equal(t, "alice: maintenance", byCad["weekly"].Note)
	for _, n := range byCad["hourly"].Next {
		assert.Equal(t, 5, n.In(berlin).Minute())
	}
	for _, n := range byCad["daily"].Next {
		assert.Equal(t, "06:00", n.In(berlin).Format("15:04"))
	}
	for _, n := range byCad["monthly"].Next {
		l := n.In(berlin)
		assert.Equal(t, "1 07:00", l.Format("2 15:04"), "monthly on the 1st at 07:00 Berlin (DST included): %s", l)
	}
	assert.GreaterOrEqual(t, len(byCad["quarterly"].Next), 4)
	for _, n := range byCad["quarterly"].Next {
		l := n.In(berlin)
		assert.Contains(t, []time.Month{time.January, time.April, time.July, time.October}, l.Month())
		assert.Equal(t, "1 07:30", l.Format("2 15:04"))
	}
	for _, n := range byCad["half-yearly"].Next {
		l := n.In(berlin)
		assert.Contains(t, []time.Month{time.January, time.July}, l.Month())
		assert.Equal(t, "2 08:00", l.Format("2 15:04"))
	}
	for _, n := range byCad["weekly"].Next {
		assert.Equal(t, "Monday 06:30", n.In(berlin).Format("Monday 15:04"))
	}

	// Fire the monthly and quarterly schedules over the first half of 2025 (backfill): 6 and 2
	// runs, at the calendar times.
	for _, cad := range []string{"monthly", "quarterly"} {
		h := c.ScheduleClient().GetHandle(ctx, control.ScheduleID(cad))
		require.NoError(t, h.Backfill(ctx, client.ScheduleBackfillOptions{Backfill: []client.ScheduleBackfill{{
			Start: time.Date(2025, 1, 1, 0, 0, 0, 0, berlin), End: time.Date(2025, 7, 1, 0, 0, 0, 0, berlin),
			Overlap: enums.SCHEDULE_OVERLAP_POLICY_ALLOW_ALL}}}))
	}
	fired := func(cad string, want int) []string {
		var got []string
		require.Eventually(t, func() bool {
			resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
				Query: fmt.Sprintf("TemporalScheduledById = '%s' AND ExecutionStatus = 'Completed'", control.ScheduleID(cad))})
			if err != nil {
				return false
			}
			got = got[:0]
			for _, e := range resp.Executions {
				id := e.GetExecution().GetWorkflowId()
				got = append(got, id)
			}
			return len(got) == want
		}, 30*time.Second, 200*time.Millisecond, "%s: %v", cad, got)
		return got
	}
	monthly := fired("monthly", 6)
	quarterly := fired("quarterly", 2)
	// Schedules append the scheduled time (UTC) to the action's workflow ID.
	var times []string
	for _, id := range append(monthly, quarterly...) {
		i := strings.LastIndex(id, "-2025-")
		require.Greater(t, i, 0, id)
		ts, err := time.Parse(time.RFC3339, id[i+1:])
		require.NoError(t, err, id)
		times = append(times, strings.TrimPrefix(id[:i], "check/")+" "+ts.In(berlin).Format("2006-01-02 15:04"))
	}
	assert.ElementsMatch(t, []string{
		"monthly 2025-01-01 07:00", "monthly 2025-02-01 07:00", "monthly 2025-03-01 07:00",
		"monthly 2025-04-01 07:00", "monthly 2025-05-01 07:00", "monthly 2025-06-01 07:00",
		"quarterly 2025-01-01 07:30", "quarterly 2025-04-01 07:30",
	}, times)

	// Overlap Skip: while a daily run is open, a second trigger starts nothing.
	block := *cfg
	block.Checks.Schedules.Daily.At = "06:00"
	opts, err := control.CheckScheduleOptions(&block, "daily")
	require.NoError(t, err)
	action := opts.Action.(*client.ScheduleWorkflowAction)
	in := action.Args[0].(workflows.CheckInput)
	in.Reason = "block"
	h := c.ScheduleClient().GetHandle(ctx, control.ScheduleID("daily"))
	require.NoError(t, h.Update(ctx, client.ScheduleUpdateOptions{DoUpdate: func(u client.ScheduleUpdateInput) (*client.ScheduleUpdate, error) {
		s := u.Description.Schedule
		a := *action
		a.Args = []any{in}
		s.Action = &a
		return &client.ScheduleUpdate{Schedule: &s}, nil
	}}))
	require.NoError(t, control.TriggerSchedule(ctx, c, "daily"))
	var running control.ScheduleView
	require.Eventually(t, func() bool {
		running, err = control.DescribeSchedule(ctx, c, "daily")
		return err == nil && len(running.Running) == 1
	}, 20*time.Second, 100*time.Millisecond)
	require.NoError(t, control.TriggerSchedule(ctx, c, "daily"))
	require.Eventually(t, func() bool {
		v, err := control.DescribeSchedule(ctx, c, "daily")
		return err == nil && v.SkippedOverlap == 1 && len(v.Running) == 1 && v.Actions == 1
	}, 20*time.Second, 100*time.Millisecond, "the second trigger is skipped while the first run is open")
	require.NoError(t, c.SignalWorkflow(ctx, running.Running[0], "", "release", nil))

	require.NoError(t, control.UnpauseSchedule(ctx, c, "weekly", "bob"))
	v, err := control.DescribeSchedule(ctx, c, "weekly")
	require.NoError(t, err)
	assert.False(t, v.Paused)

	// Disabling a cadence deletes its schedule.
	cfg.Checks.Schedules.HalfYearly.Disabled = true
	changes, err = control.ApplySchedules(ctx, c, cfg)
	require.NoError(t, err)
	assert.Equal(t, "deleted (disabled)", changes[5].Action)
	_, err = control.DescribeSchedule(ctx, c, "half-yearly")
	require.ErrorContains(t, err, "schedule stackrun-check-half-yearly not found: run `stackrun schedules apply`")
}

func TestScheduleConfigErrors(t *testing.T) {
	cfg := config.Default()
	cfg.Checks.TimeZone = "Mars/Olympus_Mons"
	err := cfg.Validate()
	require.ErrorContains(t, err, `checks.time_zone: "Mars/Olympus_Mons" is not an IANA time zone`)
	_, err = control.CheckScheduleOptions(cfg, "daily")
	require.ErrorContains(t, err, "checks.time_zone")

	cfg = config.Default()
	_, err = control.CheckScheduleOptions(cfg, "yearly")
	require.ErrorContains(t, err, `cadence "yearly": unknown cadence`)
	cfg.Checks.Schedules.Monthly.Day = 31
	require.ErrorContains(t, cfg.Validate(), "checks.schedules.monthly: day 31: must be 1-28")
	cfg = config.Default()
	cfg.Checks.Schedules.Weekly.Weekday = "funday"
	require.ErrorContains(t, cfg.Validate(), `checks.schedules.weekly: weekday "funday"`)
	cfg = config.Default()
	cfg.Checks.CatchupWindow = 365 * 24 * time.Hour
	require.ErrorContains(t, cfg.Validate(), "checks.catchup_window")
}

func TestUnknownCadenceInConfigFile(t *testing.T) {
	p := t.TempDir() + "/stackrun.yaml"
	require.NoError(t, os.WriteFile(p, []byte("checks:\n  schedules:\n    yearly: {day: 1, at: \"07:00\"}\n"), 0o600))
	_, err := config.Load(config.LoadOptions{Path: p, LookupEnv: config.MapEnv(nil)})
	require.ErrorContains(t, err, "checks.schedules.yearly")
}
