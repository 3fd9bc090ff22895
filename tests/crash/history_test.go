package crash

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/api/common/v1"
	"go.temporal.io/api/enums/v1"

	"github.com/stackrun/stackrun/internal/app/control"
	"github.com/stackrun/stackrun/workflows"
)

// historyLimit is Temporal's warning: a run's history should stay under it (the hard limit is
// 51,200 events); past it a runbook continues as new or splits into children.
const historyLimit = 10240

// historyScale is each case's largest plan (CRASH_SCALE of the crash worker's mocks): a host of
// 1,000 instances (evacuate, recover-host, post-reboot-check), 500 computes upgraded, a check
// over 500 hosts (two per-host probes each), a diagnosis with 500 hosts' collectors, a ring
// change over 500 Swift nodes, an outage recovery of a 500-host cloud (the guide's 13 tiers,
// 628 services, 954 instances of which 848 ran before), a rolling reboot of 500 computes. 0:
// the runbook's plan does not grow with the cloud (one host, one device, one instance).
var historyScale = map[string]int{
	"evacuate": 1000, "recover-host": 1000, "post-reboot-check (--start-instances)": 1000,
	"staged-upgrade (--to-candidate)": 500, "check (daily)": 500, "diagnose (api-slow)": 500,
	"swift-ring (--set-weight)": 500, "swift-ring (--steps 3)": 500,
	"staged-upgrade (--to-candidate, 2,000 computes)": 2000,
	"outage-recovery": 500, "rolling-maintenance (--action reboot, --role compute)": 500,
}

// historyTimeout is a case's time when it needs more than 10 minutes per 500 of its scale: the
// rolling reboot of 500 computes waits out its poll intervals (some 10 hosts a minute here:
// 23 of its runs, 230 hosts, in the first 25 minutes on 2 December).
var historyTimeout = map[string]time.Duration{
	"rolling-maintenance (--action reboot, --role compute)": 75 * time.Minute,
}

// historyOnly are the worst cases that are not the matrix's: a staged upgrade of 2,000 computes,
// a ring change in the most steps input validation allows (each step rebalances, validates,
// distributes and waits for replication), and one in three steps over the largest ring (500
// nodes: one step is some 5,000 events). The ring changes continue as new between steps
// (policy.history_budget, default 8,000); the upgrade runs its computes in child runs.
var historyOnly = []runbookCase{
	// The largest cloud: 2,000 computes upgraded in batches of 100 (child runs), 8 at a
	// time within a batch (so that it takes less than an hour here; the events per run hardly
	// depend on it).
	{rb: workflows.StagedUpgrade, variant: "--to-candidate, 2,000 computes", input: func(string) workflows.Input {
		return &workflows.StagedUpgradeInput{Meta: meta(), ToCandidate: true, Parallel: 8}
	}},
	// A cloud's whole compute fleet rebooted: 500 hosts (--role compute: --hosts takes at most
	// 256) in batches of 10, three instances at home on each (CRASH_WAVE_INSTANCES), each host
	// an evacuate and a post-reboot-check child run. About 157 parent events a host: the wave
	// continues as new between hosts (policy.history_budget, or the server's suggestion), and each
	// evacuate child gets at most 64 targets (README, "History at the largest plans").
	{rb: workflows.RollingMaintenance, variant: "--action reboot, --role compute", input: func(string) workflows.Input {
		return &workflows.RollingMaintenanceInput{Meta: meta(), Role: "compute", Action: workflows.ActionReboot, BatchSize: 10, Parallel: 2}
	}, env: []string{"CRASH_WAVE_INSTANCES=3"}},
	{rb: workflows.SwiftRing, variant: "--steps 100", input: func(host string) workflows.Input {
		return &workflows.SwiftRingInput{Meta: meta(), SetWeight: []string{host + "-s3/sdf=0"}, Steps: 100, Wait: true}
	}},
	{rb: workflows.SwiftRing, variant: "--steps 3", input: func(host string) workflows.Input {
		return &workflows.SwiftRingInput{Meta: meta(), SetWeight: []string{host + "-s3/sdf=0"}, Steps: 3, Wait: true}
	}},
}

// TestHistoryWorstCase runs every case of the matrix once at its largest plan, on the dev server
// with the crash worker (activities answer at once), and counts the events of its history, of
// every run of its chain when it continued as new, and of every child run's: each must stay
// under historyLimit. STACKRUN_HISTORY_SCALE overrides
// the scales (one number for every growing case); STACKRUN_HISTORY_RUN (a regexp of labels)
// runs only the cases it matches.
func TestHistoryWorstCase(t *testing.T) {
	if os.Getenv("STACKRUN_HISTORY") == "" {
		// About 10 minutes on a loaded 2-core machine: make reliability runs it, make test does not.
		t.Skip("the largest plans through a dev server: STACKRUN_HISTORY=1 (make reliability)")
	}
	r := newRig(t)
	// A 500-node ring in three steps is some 15,000 events over its chain: over 10 minutes on a
	// loaded 2-core machine; the upgrade (2 December, load average 8-21 from other work): 500
	// computes at --parallel 2 in 14 minutes, 2,000 at --parallel 8 in 19 (about 38,000 and
	// 150,000 events over their runs; before the batches pinned and unpinned --parallel at a
	// time and the crash worker's store became a journal, 500 computes did not finish in 10
	// minutes and 2,000 ran 36 before the server terminated it). 10 minutes per 500 computes of
	// the largest case, 25 at least.
	r.timeout = 25 * time.Minute
	var wg sync.WaitGroup
	var mu sync.Mutex
	var table []string
	only, err := regexp.Compile(os.Getenv("STACKRUN_HISTORY_RUN"))
	if err != nil {
		t.Fatalf("STACKRUN_HISTORY_RUN: %v", err)
	}
	// A batch hands its parent its record; `stackrun report <batch>` still shows its whole
	// report (the query report, answered by the worker: before it stops).
	r.afterRun = func(rc runbookCase, id string) error {
		if rc.rb.Name != workflows.StagedUpgrade.Name {
			return nil
		}
		id += "/nova/computes-1/upgrade"
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		rep, err := control.Report(ctx, r.srv.Client, id, false)
		switch {
		case err != nil:
			return fmt.Errorf("report of %s: %w", id, err)
		case rep.Record || len(rep.Steps) == 0 || len(rep.Plan) == 0:
			return fmt.Errorf("report of %s: want the batch's whole report, got %d steps, %d plan lines (record %v; findings %v)", id, len(rep.Steps), len(rep.Plan), rep.Record, rep.Findings)
		}
		return nil
	}
	for _, rc := range append(slices.Clone(matrix), historyOnly...) {
		if only.MatchString(rc.label()) {
			r.timeout = max(r.timeout, time.Duration(historyScale[rc.label()]/500)*10*time.Minute, historyTimeout[rc.label()])
		}
	}
	for _, rc := range append(slices.Clone(matrix), historyOnly...) {
		if !only.MatchString(rc.label()) {
			continue
		}
		n := historyScale[rc.label()]
		if v, err := strconv.Atoi(os.Getenv("STACKRUN_HISTORY_SCALE")); err == nil && n > 0 {
			n = v
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := rc
			c.env = append(append([]string(nil), rc.env...), "CRASH_SCALE="+strconv.Itoa(n))
			start := time.Now()
			o := r.run(c, "hist-"+runName(rc), "", "")
			if o.err != nil {
				t.Errorf("%s at scale %d: %v", rc.label(), n, o.err)
				if o.workflowID == "" {
					return
				}
				o.report.Status = "unfinished" // its history so far is a figure too
			}
			if o.afterErr != nil {
				t.Errorf("%s: %v", rc.label(), o.afterErr)
			}
			events, runs, children, bytes, largest, parentBytes, childBytes, err := r.historyLength(o.workflowID)
			if err != nil {
				t.Errorf("%s: %v", rc.label(), err)
				return
			}
			worst := events
			for _, e := range children {
				worst = max(worst, e)
			}
			mu.Lock()
			kids := "-"
			if len(children) > 0 {
				kids = fmt.Sprintf("%d, largest %d", len(children), slices.Max(children))
			}
			table = append(table, fmt.Sprintf("%-38s %6d %8d %5d %18s %9s %9s %9s %9s  %s", rc.label(), n, events, runs, kids, mb(bytes), mb(parentBytes), mb(childBytes), time.Since(start).Round(time.Second), o.report.Status))
			mu.Unlock()
			if bytes >= historyBytesLimit {
				t.Errorf("%s at scale %d: a history of %s (the largest run's), want under %s (Temporal's warning; it terminates at 50 MB)", rc.label(), n, mb(bytes), mb(historyBytesLimit))
			}
			if worst >= historyLimit {
				t.Errorf("%s at scale %d: %d history events in its largest run (of %d; children %v), want under %d: continue as new or split into children", rc.label(), n, events, runs, children, historyLimit)
				// Where they come from: the largest run's events by activity type, timers, children.
				if b, err := r.historyBreakdown(largest); err == nil {
					t.Logf("%s: the largest run's events (%s):\n%s", rc.label(), largest.GetWorkflowId(), b)
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("\nhistory at the largest plans (events of the largest run of the chain; under %d; bytes: the largest run's, the parent's (its largest run), the largest child's)\n%-38s %6s %8s %5s %18s %9s %9s %9s %9s\n%s", historyLimit, "runbook", "scale", "events", "runs", "children", "bytes", "parent", "child", "took",
		joinLines(table))
}

// historyLength is the history length of the workflow ID's largest run (its runs followed from
// the first through every continue-as-new), how many runs it had, its child runs' lengths (one
// level: no runbook's child starts children), and the largest history size in bytes of all of
// them (a parent holds its children's results), and of the parent's runs and of its children
// apart.
func (r *rig) historyLength(id string) (_ int, _ int, _ []int, _ int64, _ *common.WorkflowExecution, parentBytes, childBytes int64, _ error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d, err := r.srv.Client.DescribeWorkflowExecution(ctx, id, "")
	if err != nil {
		return 0, 0, nil, 0, nil, 0, 0, err
	}
	var largest *common.WorkflowExecution
	most := 0
	note := func(e *common.WorkflowExecution, n int) {
		if n > most {
			largest, most = e, n
		}
	}
	var children []int
	worst, runs := 0, 0
	var bytes int64
	var perRun, inputs []int
	defer func() {
		if len(perRun) > 1 {
			// inputs: each run's input in bytes (a chain's carried state; Temporal's limit is 2 MB)
			r.t.Logf("%s: runs of %v events, inputs of %v bytes", id, perRun, inputs)
		}
	}()
	for runID := d.GetWorkflowExecutionInfo().GetFirstRunId(); runID != ""; runs++ {
		rd, err := r.srv.Client.DescribeWorkflowExecution(ctx, id, runID)
		if err != nil {
			return 0, 0, nil, 0, nil, 0, 0, err
		}
		perRun = append(perRun, int(rd.GetWorkflowExecutionInfo().GetHistoryLength()))
		note(&common.WorkflowExecution{WorkflowId: id, RunId: runID}, int(rd.GetWorkflowExecutionInfo().GetHistoryLength()))
		worst = max(worst, int(rd.GetWorkflowExecutionInfo().GetHistoryLength()))
		bytes = max(bytes, rd.GetWorkflowExecutionInfo().GetHistorySizeBytes())
		parentBytes = max(parentBytes, rd.GetWorkflowExecutionInfo().GetHistorySizeBytes())
		next := ""
		it := r.srv.Client.GetWorkflowHistory(ctx, id, runID, false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		for it.HasNext() {
			ev, err := it.Next()
			if err != nil {
				return 0, 0, nil, 0, nil, 0, 0, err
			}
			if a := ev.GetChildWorkflowExecutionStartedEventAttributes(); a != nil {
				cd, err := r.srv.Client.DescribeWorkflowExecution(ctx, a.GetWorkflowExecution().GetWorkflowId(), a.GetWorkflowExecution().GetRunId())
				if err != nil {
					return 0, 0, nil, 0, nil, 0, 0, err
				}
				children = append(children, int(cd.GetWorkflowExecutionInfo().GetHistoryLength()))
				note(a.GetWorkflowExecution(), int(cd.GetWorkflowExecutionInfo().GetHistoryLength()))
				bytes = max(bytes, cd.GetWorkflowExecutionInfo().GetHistorySizeBytes())
				childBytes = max(childBytes, cd.GetWorkflowExecutionInfo().GetHistorySizeBytes())
			}
			if a := ev.GetWorkflowExecutionStartedEventAttributes(); a != nil {
				n := 0
				for _, p := range a.GetInput().GetPayloads() {
					n += len(p.GetData())
				}
				inputs = append(inputs, n)
			}
			if a := ev.GetWorkflowExecutionContinuedAsNewEventAttributes(); a != nil {
				next = a.GetNewExecutionRunId()
			}
		}
		runID = next
	}
	return worst, runs, children, bytes, largest, parentBytes, childBytes, nil
}

// historyBreakdown counts a run's events by what caused them: each activity type's scheduled
// activities with their started and closed events, timers (started and fired), child runs
// (initiated, started, closed), workflow tasks (scheduled, started, completed), the rest by
// event type. Largest first.
func (r *rig) historyBreakdown(e *common.WorkflowExecution) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	count := map[string]int{}
	kind := map[int64]string{} // scheduled or initiated event ID -> its label
	it := r.srv.Client.GetWorkflowHistory(ctx, e.GetWorkflowId(), e.GetRunId(), false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			return "", err
		}
		label := ev.GetEventType().String()
		switch {
		case ev.GetActivityTaskScheduledEventAttributes() != nil:
			label = "activity " + ev.GetActivityTaskScheduledEventAttributes().GetActivityType().GetName()
			kind[ev.GetEventId()] = label
		case ev.GetActivityTaskStartedEventAttributes() != nil:
			label = kind[ev.GetActivityTaskStartedEventAttributes().GetScheduledEventId()]
		case ev.GetActivityTaskCompletedEventAttributes() != nil:
			label = kind[ev.GetActivityTaskCompletedEventAttributes().GetScheduledEventId()]
		case ev.GetActivityTaskFailedEventAttributes() != nil:
			label = kind[ev.GetActivityTaskFailedEventAttributes().GetScheduledEventId()]
		case ev.GetActivityTaskTimedOutEventAttributes() != nil:
			label = kind[ev.GetActivityTaskTimedOutEventAttributes().GetScheduledEventId()]
		case ev.GetTimerStartedEventAttributes() != nil, ev.GetTimerFiredEventAttributes() != nil, ev.GetTimerCanceledEventAttributes() != nil:
			label = "timers"
		case ev.GetStartChildWorkflowExecutionInitiatedEventAttributes() != nil, ev.GetChildWorkflowExecutionStartedEventAttributes() != nil,
			ev.GetChildWorkflowExecutionCompletedEventAttributes() != nil, ev.GetChildWorkflowExecutionFailedEventAttributes() != nil:
			label = "child runs"
		case ev.GetWorkflowTaskScheduledEventAttributes() != nil, ev.GetWorkflowTaskStartedEventAttributes() != nil,
			ev.GetWorkflowTaskCompletedEventAttributes() != nil, ev.GetWorkflowTaskTimedOutEventAttributes() != nil, ev.GetWorkflowTaskFailedEventAttributes() != nil:
			label = "workflow tasks"
		}
		count[label]++
	}
	labels := slices.Collect(maps.Keys(count))
	slices.SortFunc(labels, func(a, b string) int { return cmp.Or(count[b]-count[a], strings.Compare(a, b)) })
	out := ""
	for _, l := range labels {
		out += fmt.Sprintf("  %6d %s\n", count[l], l)
	}
	return out, nil
}

// historyBytesLimit is Temporal's warning on a history's size (it terminates the run at 50 MB).
const historyBytesLimit = 10 << 20

func mb(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/(1<<20)) }

func joinLines(ls []string) string {
	out := ""
	for _, l := range ls {
		out += l + "\n"
	}
	return out
}
