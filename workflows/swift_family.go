package workflows

// The Swift family: what the Swift runbooks (swift-disk, swift-ring) share — device names, a
// ring change run as a child, min_part_hours, and following replication until it settles.

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/stackrun/stackrun/activities"
)

var swiftDeviceRE = regexp.MustCompile(`^[a-z][a-z0-9]{1,31}$`)

// ValidateSwiftDevice checks a Swift device name: a plain name like sdb, never a path.
func ValidateSwiftDevice(field, v string) error {
	if v == "" {
		return &FieldError{Field: field, Problem: "required"}
	}
	if !swiftDeviceRE.MatchString(v) {
		return &FieldError{Field: field, Value: v, Problem: "not a Swift device name: want a plain name like sdb (lower-case letters and digits; no path, no /dev/, no shell characters)"}
	}
	return nil
}

// validateWait bounds a wait and its poll interval (0: the default): a poll interval of 1 ns
// would run SSH commands in a tight loop, a negative or 100-year timeout is a typo.
func validateWait(timeoutField string, timeout time.Duration, pollField string, poll time.Duration) error {
	if timeout != 0 && (timeout < time.Minute || timeout > 30*24*time.Hour) {
		return &FieldError{Field: timeoutField, Value: timeout.String(), Problem: "must be 1m to 720h (0: the default)"}
	}
	if poll != 0 && (poll < time.Second || poll > time.Hour) {
		return &FieldError{Field: pollField, Value: poll.String(), Problem: "must be 1s to 1h (0: the default)"}
	}
	return nil
}

// waitSettled follows replication (a heartbeating activity) until every replicator of the
// storage nodes finished a pass that began after now, or the timeout passes.
func waitSettled(r *Run, name string, cl activities.SwiftCluster, timeout, interval time.Duration, refill *refillCheck) error {
	return waitSettledSince(r, name, cl, workflow.Now(r.ctx), timeout, interval, refill)
}

// ringChild runs a SwiftRing as a child workflow, approved by this run's own gate policy.
// A child that ends other than completed (refused inside min_part_hours, failed, aborted)
// stalls the step with its report's summary and what was left (left); retry starts a new child.
func ringChild(r *Run, name string, in SwiftRingInput, left string) error {
	in.Meta = Meta{RequestedBy: r.meta.RequestedBy, Reason: fmt.Sprintf("%s for %s", name, r.info.WorkflowExecution.ID)}
	in.ParentApproved = r.info.WorkflowExecution.ID
	attempt := 0
	return r.Do(name, StepOptions{Target: "rings", NoSkip: true}, func(ctx workflow.Context) error {
		attempt++
		id := r.info.WorkflowExecution.ID + "/" + name
		if attempt > 1 {
			id += fmt.Sprintf("-%d", attempt) // a finished child's ID is not reused
		}
		cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
			WorkflowID:            id,
			ParentClosePolicy:     enums.PARENT_CLOSE_POLICY_ABANDON,
			WorkflowIDReusePolicy: enums.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE_FAILED_ONLY,
			TypedSearchAttributes: temporal.NewSearchAttributes(
				AttrStatus.ValueSet(string(StatusPlanning)), AttrTarget.ValueSet(SwiftRing.Target(&in)), AttrRequestedBy.ValueSet(in.RequestedBy)),
		})
		r.SetDetail(name+"_run", id)
		var rep Report
		if err := workflow.ExecuteChildWorkflow(cctx, SwiftRing.Type, in).Get(ctx, &rep); err != nil {
			return fmt.Errorf("ring change %s: %w; %s", id, err, left)
		}
		if rep.Status != StatusCompleted {
			return fmt.Errorf("ring change %s ended %s: %s; %s; resolve retry to start a new ring change (e.g. once min_part_hours has passed), or abort",
				id, rep.Status, rep.Summary, left)
		}
		r.step(name).Detail = rep.Summary
		return nil
	})
}

// refillCheck is what the refill step compares: the device, the object ring's weights and the
// new file system's used bytes right after its mount.
type refillCheck struct {
	dev      activities.DiskRequest
	weights  map[string]float64
	baseline int64
}

// waitSettledSince is waitSettled with an explicit start.
func waitSettledSince(r *Run, name string, cl activities.SwiftCluster, since time.Time, timeout, interval time.Duration, refill *refillCheck) error {
	if timeout <= 0 {
		timeout = 24 * time.Hour
	}
	if interval <= 0 {
		interval = 30 * time.Second
	}
	req := activities.ReplicationRequest{Nodes: cl.StorageNodes(), Since: since, Deadline: since.Add(timeout), Interval: interval}
	if refill != nil {
		req.Device, req.Weights, req.DeviceBaseline = &refill.dev, refill.weights, refill.baseline
	}
	return r.Do(name, StepOptions{Target: strings.Join(req.Nodes, ",")}, func(ctx workflow.Context) error {
		var res activities.ReplicationResult
		actx := r.ActivityOptions(ctx, timeout+10*time.Minute, max(2*interval, time.Minute))
		if err := r.Exec(actx, name, "replication", swift.FollowReplication, &res, req); err != nil {
			return err
		}
		r.step(name).Detail = res.Detail
		r.SetDetail(strings.ReplaceAll(name, "/", "_"), res)
		return nil
	})
}

func minPartHours(st activities.RingStatus) int {
	m := 0
	for _, ri := range st.Rings {
		m = max(m, ri.MinPartHours)
	}
	return m
}

// recheckInterval is how often a min_part_hours wait re-reads the builders: ten poll intervals,
// 1-15 minutes (5 by default). A builder whose min_part_hours was ended by its operator
// (pretend_min_part_hours_passed, never run by a runbook) is noticed within that time.
func recheckInterval(poll time.Duration) time.Duration {
	if poll <= 0 {
		poll = 30 * time.Second
	}
	return min(max(10*poll, time.Minute), 15*time.Minute)
}

// minPartHoursWindow is the longest one AwaitMinPartHours call waits before the workflow looks
// again (and records where the wait stands).
const minPartHoursWindow = 6 * time.Hour

// waitMinPartHours re-reads the rings and, while the last rebalance is too recent, waits on a
// durable timer (wait), re-reading the builders every recheck, or refuses.
func waitMinPartHours(r *Run, name string, cl activities.SwiftCluster, wait bool, recheck time.Duration) error {
	return r.Do(name, StepOptions{Target: cl.RingBuilderHost, NoSkip: true}, func(ctx workflow.Context) error {
		for {
			var st activities.RingStatus
			if err := r.Exec(ctx, name, cl.RingBuilderHost, swift.RingStatus, &st); err != nil {
				return err
			}
			rem := st.MaxRemaining()
			if rem <= 0 {
				r.step(name).Detail = "min_part_hours passed"
				return nil
			}
			if !wait {
				return temporal.NewNonRetryableApplicationError(fmt.Sprintf("the last rebalance is too recent: %s of min_part_hours remain (never forced)", rem), activities.ErrTypeRefused, nil)
			}
			until := workflow.Now(ctx).Add(rem + time.Minute)
			r.step(name).Detail = fmt.Sprintf("waiting until %s for min_part_hours (%s remaining; the builders are re-read every %s)", until.UTC().Format(time.RFC3339), rem, recheck)
			r.updateDetails()
			if workflow.GetVersion(ctx, "swift-min-part-hours-in-activity", workflow.DefaultVersion, 1) == workflow.DefaultVersion {
				// Runs recorded before: a workflow timer per re-read (about 11 events each).
				if err := workflow.Sleep(ctx, min(rem+time.Minute, recheck)); err != nil {
					return err
				}
				continue
			}
			// One heartbeating activity re-reads the builders for up to minPartHoursWindow: a
			// day's wait costs about ten events per step, whatever the re-read interval.
			window := min(rem+time.Minute, minPartHoursWindow)
			actx := r.ActivityOptions(ctx, window+5*time.Minute, max(3*recheck, time.Minute))
			var after activities.RingStatus
			req := activities.MinPartHoursRequest{Interval: recheck, Until: workflow.Now(ctx).Add(window)}
			if err := r.Exec(actx, name, cl.RingBuilderHost, swift.AwaitMinPartHours, &after, req); err != nil {
				return err
			}
		}
	})
}
