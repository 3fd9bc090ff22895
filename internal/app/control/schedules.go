package control

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/stackrun/stackrun/config"
	"github.com/stackrun/stackrun/workflows"
)

// SchedulePrefix starts the ID of every recurring check's schedule: stackrun-check-<cadence>.
const SchedulePrefix = "stackrun-check-"

// ScheduleRequester is the RequestedBy of runs that schedules start.
const ScheduleRequester = "schedule"

// ScheduleID is the schedule of a cadence.
func ScheduleID(cadence string) string { return SchedulePrefix + cadence }

// CheckCalendar turns a cadence's configured time into a calendar spec (times in the schedule's
// time zone): hourly at minute M; daily at HH:MM; weekly on a weekday; monthly on a day;
// quarterly on a day of January, April, July and October; half-yearly of January and July.
func CheckCalendar(cadence string, s config.CheckSchedule) (client.ScheduleCalendarSpec, error) {
	if err := workflows.ValidateCadence(cadence); err != nil {
		return client.ScheduleCalendarSpec{}, err
	}
	if err := s.Check(cadence); err != nil {
		return client.ScheduleCalendarSpec{}, fmt.Errorf("%s: %w", config.CadenceKey(cadence), err)
	}
	one := func(v int) []client.ScheduleRange { return []client.ScheduleRange{{Start: v}} }
	cal := client.ScheduleCalendarSpec{Second: one(0), Comment: "stackrun " + cadence + " check"}
	if cadence == "hourly" {
		cal.Minute = one(s.Minute)
		cal.Hour = []client.ScheduleRange{{Start: 0, End: 23}}
		return cal, nil
	}
	h, m, _ := config.ParseAt(s.At)
	cal.Hour, cal.Minute = one(h), one(m)
	switch cadence {
	case "weekly":
		cal.DayOfWeek = one(int(config.Weekdays[strings.ToLower(s.Weekday)]))
	case "monthly":
		cal.DayOfMonth = one(s.Day)
	case "quarterly":
		cal.DayOfMonth = one(s.Day)
		cal.Month = []client.ScheduleRange{{Start: 1, End: 12, Step: 3}}
	case "half-yearly":
		cal.DayOfMonth = one(s.Day)
		cal.Month = []client.ScheduleRange{{Start: 1, End: 12, Step: 6}}
	}
	return cal, nil
}

// CheckScheduleOptions builds the whole schedule of a cadence from the configuration: the
// calendar in checks.time_zone, the action (workflow check with that cadence), overlap Skip,
// the short catch-up window, and pause on failure.
func CheckScheduleOptions(cfg *config.Config, cadence string) (client.ScheduleOptions, error) {
	s, ok := cfg.Checks.Schedules.Schedule(cadence)
	if !ok {
		return client.ScheduleOptions{}, workflows.ValidateCadence(cadence)
	}
	if _, err := time.LoadLocation(cfg.Checks.TimeZone); err != nil || cfg.Checks.TimeZone == "" {
		return client.ScheduleOptions{}, fmt.Errorf("checks.time_zone %q: not an IANA time zone (e.g. UTC, Europe/Berlin)", cfg.Checks.TimeZone)
	}
	cal, err := CheckCalendar(cadence, s)
	if err != nil {
		return client.ScheduleOptions{}, err
	}
	in := workflows.CheckInput{Meta: workflows.Meta{RequestedBy: ScheduleRequester, Reason: "scheduled " + cadence + " check"}, Cadence: cadence}
	return client.ScheduleOptions{
		ID:   ScheduleID(cadence),
		Spec: client.ScheduleSpec{Calendars: []client.ScheduleCalendarSpec{cal}, TimeZoneName: cfg.Checks.TimeZone},
		Action: &client.ScheduleWorkflowAction{
			ID: workflows.CheckWorkflowID(cadence), Workflow: workflows.Check.Type, Args: []any{in}, TaskQueue: cfg.Temporal.TaskQueue,
			TypedSearchAttributes: temporal.NewSearchAttributes(
				workflows.AttrStatus.ValueSet(string(workflows.StatusPlanning)),
				workflows.AttrTarget.ValueSet(cadence),
				workflows.AttrRequestedBy.ValueSet(ScheduleRequester),
			),
		},
		Overlap:        enums.SCHEDULE_OVERLAP_POLICY_SKIP,
		CatchupWindow:  cfg.Checks.CatchupWindow,
		PauseOnFailure: true,
		Note:           "managed by stackrun schedules apply",
	}, nil
}

// ScheduleChange is what ApplySchedules did to one cadence.
type ScheduleChange struct {
	Cadence string `json:"cadence"`
	ID      string `json:"id"`
	Action  string `json:"action"` // created, updated, deleted (disabled), absent (disabled)
}

// ApplySchedules creates or updates the six schedules from the configuration, idempotently: a
// schedule that exists is updated in place (its paused state and note are kept), a disabled
// cadence's schedule is deleted. Nothing is changed when the configuration is invalid.
func ApplySchedules(ctx context.Context, c client.Client, cfg *config.Config) ([]ScheduleChange, error) {
	opts := map[string]client.ScheduleOptions{}
	for _, cad := range workflows.Cadences {
		o, err := CheckScheduleOptions(cfg, cad)
		if err != nil {
			return nil, err
		}
		opts[cad] = o
	}
	sc := c.ScheduleClient()
	var out []ScheduleChange
	for _, cad := range workflows.Cadences {
		o := opts[cad]
		s, _ := cfg.Checks.Schedules.Schedule(cad)
		h := sc.GetHandle(ctx, o.ID)
		if s.Disabled {
			err := h.Delete(ctx)
			var nf *serviceerror.NotFound
			switch {
			case err == nil:
				out = append(out, ScheduleChange{cad, o.ID, "deleted (disabled)"})
			case errors.As(err, &nf):
				out = append(out, ScheduleChange{cad, o.ID, "absent (disabled)"})
			default:
				return out, fmt.Errorf("delete schedule %s: %w", o.ID, err)
			}
			continue
		}
		_, err := sc.Create(ctx, o)
		if err == nil {
			out = append(out, ScheduleChange{cad, o.ID, "created"})
			continue
		}
		if !errors.Is(err, temporal.ErrScheduleAlreadyRunning) {
			return out, fmt.Errorf("create schedule %s: %w", o.ID, err)
		}
		err = h.Update(ctx, client.ScheduleUpdateOptions{DoUpdate: func(in client.ScheduleUpdateInput) (*client.ScheduleUpdate, error) {
			s := in.Description.Schedule
			spec := o.Spec
			s.Spec = &spec
			s.Action = o.Action
			s.Policy = &client.SchedulePolicies{Overlap: o.Overlap, CatchupWindow: o.CatchupWindow, PauseOnFailure: o.PauseOnFailure}
			return &client.ScheduleUpdate{Schedule: &s}, nil
		}})
		if err != nil {
			return out, fmt.Errorf("update schedule %s: %w", o.ID, err)
		}
		out = append(out, ScheduleChange{cad, o.ID, "updated"})
	}
	return out, nil
}

// ScheduleView is one recurring check's schedule as listed.
type ScheduleView struct {
	Cadence        string      `json:"cadence"`
	ID             string      `json:"id"`
	Paused         bool        `json:"paused"`
	Note           string      `json:"note,omitempty"`
	TimeZone       string      `json:"time_zone"`
	Next           []time.Time `json:"next,omitempty"`
	LastRun        *time.Time  `json:"last_run,omitempty"`
	LastWorkflowID string      `json:"last_workflow_id,omitempty"`
	Actions        int         `json:"actions"`
	SkippedOverlap int         `json:"skipped_overlap"`
	MissedCatchup  int         `json:"missed_catchup"`
	Running        []string    `json:"running,omitempty"`
}

// DescribeSchedule describes one cadence's schedule.
func DescribeSchedule(ctx context.Context, c client.Client, cadence string) (ScheduleView, error) {
	if err := workflows.ValidateCadence(cadence); err != nil {
		return ScheduleView{}, err
	}
	id := ScheduleID(cadence)
	d, err := c.ScheduleClient().GetHandle(ctx, id).Describe(ctx)
	if err != nil {
		var nf *serviceerror.NotFound
		if errors.As(err, &nf) {
			return ScheduleView{}, fmt.Errorf("schedule %s not found: run `stackrun schedules apply`", id)
		}
		return ScheduleView{}, fmt.Errorf("describe schedule %s: %w", id, err)
	}
	v := ScheduleView{Cadence: cadence, ID: id, Next: d.Info.NextActionTimes, Actions: d.Info.NumActions,
		SkippedOverlap: d.Info.NumActionsSkippedOverlap, MissedCatchup: d.Info.NumActionsMissedCatchupWindow}
	if d.Schedule.State != nil {
		v.Paused, v.Note = d.Schedule.State.Paused, d.Schedule.State.Note
	}
	if d.Schedule.Spec != nil {
		v.TimeZone = d.Schedule.Spec.TimeZoneName
	}
	if n := len(d.Info.RecentActions); n > 0 {
		last := d.Info.RecentActions[n-1]
		t := last.ActualTime
		v.LastRun = &t
		if last.StartWorkflowResult != nil {
			v.LastWorkflowID = last.StartWorkflowResult.WorkflowID
		}
	}
	for _, r := range d.Info.RunningWorkflows {
		v.Running = append(v.Running, r.WorkflowID)
	}
	return v, nil
}

// ListSchedules describes the recurring checks' schedules that exist, in cadence order.
func ListSchedules(ctx context.Context, c client.Client) ([]ScheduleView, error) {
	it, err := c.ScheduleClient().List(ctx, client.ScheduleListOptions{PageSize: 100})
	if err != nil {
		return nil, fmt.Errorf("list schedules: %w", err)
	}
	found := map[string]bool{}
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			return nil, fmt.Errorf("list schedules: %w", err)
		}
		if cad, ok := strings.CutPrefix(e.ID, SchedulePrefix); ok {
			found[cad] = true
		}
	}
	var out []ScheduleView
	for _, cad := range workflows.Cadences {
		if !found[cad] {
			continue
		}
		v, err := DescribeSchedule(ctx, c, cad)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	sort.SliceStable(out, func(i, j int) bool { return indexOf(out[i].Cadence) < indexOf(out[j].Cadence) })
	return out, nil
}

func indexOf(cad string) int {
	for i, c := range workflows.Cadences {
		if c == cad {
			return i
		}
	}
	return len(workflows.Cadences)
}

func scheduleHandle(ctx context.Context, c client.Client, cadence string) (client.ScheduleHandle, error) {
	if err := workflows.ValidateCadence(cadence); err != nil {
		return nil, err
	}
	return c.ScheduleClient().GetHandle(ctx, ScheduleID(cadence)), nil
}

func scheduleErr(op, cadence string, err error) error {
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return fmt.Errorf("schedule %s not found: run `stackrun schedules apply`", ScheduleID(cadence))
	}
	return fmt.Errorf("%s schedule %s: %w", op, ScheduleID(cadence), err)
}

// PauseSchedule pauses a cadence's schedule with a note (who and why).
func PauseSchedule(ctx context.Context, c client.Client, cadence, note string) error {
	h, err := scheduleHandle(ctx, c, cadence)
	if err != nil {
		return err
	}
	if err := h.Pause(ctx, client.SchedulePauseOptions{Note: note}); err != nil {
		return scheduleErr("pause", cadence, err)
	}
	return nil
}

// UnpauseSchedule resumes a cadence's schedule.
func UnpauseSchedule(ctx context.Context, c client.Client, cadence, note string) error {
	h, err := scheduleHandle(ctx, c, cadence)
	if err != nil {
		return err
	}
	if err := h.Unpause(ctx, client.ScheduleUnpauseOptions{Note: note}); err != nil {
		return scheduleErr("unpause", cadence, err)
	}
	return nil
}

// TriggerSchedule starts the cadence's check now through its schedule (overlap Skip applies:
// nothing starts while a run of the schedule is open).
func TriggerSchedule(ctx context.Context, c client.Client, cadence string) error {
	h, err := scheduleHandle(ctx, c, cadence)
	if err != nil {
		return err
	}
	if err := h.Trigger(ctx, client.ScheduleTriggerOptions{Overlap: enums.SCHEDULE_OVERLAP_POLICY_SKIP}); err != nil {
		return scheduleErr("trigger", cadence, err)
	}
	return nil
}
