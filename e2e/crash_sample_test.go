//go:build e2e

package e2e

// The crash matrix's lab sample (issue 17): the runbooks that had no worker-kill test on the lab
// run against the real lab with the real worker, which is SIGKILLed right after a chosen
// side-effecting activity starts; a new worker finishes the run, and the test counts from the real
// system that no side effect was repeated (Nova's instance actions and migration records, the
// service's PIDs) and from the audit trail that every effect was recorded once. The time from the
// kill to the retry is reported, never asserted. make test runs a sample (restart-service,
// post-reboot-check); STACKRUN_LAB_CRASH_FULL=1 (make reliability-lab) runs every case.

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/enums/v1"
	workflowpb "go.temporal.io/api/workflow/v1"

	"github.com/stackrun/stackrun/internal/testenv/devserver"
	"github.com/stackrun/stackrun/tests/crash/results"
	"github.com/stackrun/stackrun/workflows"
)

// labCrash is what one crashed run measured.
type labCrash struct {
	boundary  string        // the activity that was running when the worker died
	recovered time.Duration // kill → the killed activity's next attempt started (or it finished); -1: not seen
	retries   int           // activity attempts after the first, from the history
	repeated  int           // side effects done twice, counted from the real system and the audit trail
}

// labCrashCase is one runbook of the sample.
type labCrashCase struct {
	label  string // the crash matrix's row (tests/crash): the figures add up in the table
	sample bool   // in make test; the others only with STACKRUN_LAB_CRASH_FULL=1
	run    func(t *testing.T, c *labCrash)
}

func TestLabCrashSample(t *testing.T) {
	requireLab(t)
	full := os.Getenv("STACKRUN_LAB_CRASH_FULL") != ""
	var rows []results.Row
	for _, tc := range labCrashCases {
		if !tc.sample && !full {
			continue
		}
		var c labCrash
		c.recovered = -1
		start := time.Now()
		ok := t.Run(strings.Fields(tc.label)[0], func(t *testing.T) { tc.run(t, &c) })
		t.Logf("%s: crashed at %s, correct %v, repeated %d, retries %d, kill → retry %s, %s wall",
			tc.label, c.boundary, ok, c.repeated, c.retries, c.recovered.Round(100*time.Millisecond), time.Since(start).Round(time.Second))
		row := results.Row{Runbook: tc.label, BoundariesCrashed: results.Int(0), Runs: results.Int(1), RunsCorrect: results.Int(0),
			SideEffectsRepeated: results.Int(c.repeated), Retries: results.Int(c.retries)}
		if c.boundary != "" {
			row.BoundariesCrashed = results.Int(1)
		}
		if ok {
			row.RunsCorrect = results.Int(1)
		}
		if c.recovered >= 0 {
			row.WorstRecoverMS = results.Int64(c.recovered.Milliseconds())
		}
		rows = append(rows, row)
	}
	if os.Getenv("STACKRUN_RELIABILITY_DIR") == "" {
		return
	}
	mode := "sample"
	if full {
		mode = "full"
	}
	f := results.File{Part: "lab-crash", Measured: time.Now().UTC(), Mode: mode, Rows: rows}
	if err := results.Write(results.Dir(devserver.RepoRoot(t)), f); err != nil {
		t.Errorf("reliability results: %v", err)
	}
}

// crashAt waits until the run id has its nth distinct activity of one of the types acts started on the worker,
// SIGKILLs the worker, starts a new one, and measures (in the background, until the run ends)
// how long the killed activity waited for its next attempt. The returned func waits for that
// measurement and reads the retries from the history; call it once the run has ended.
func (l *novaLab) crashAt(id string, nth int, c *labCrash, acts ...string) func() {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	l.t.Cleanup(cancel) // a test that failed before the returned func stops the measurement
	seen := map[string]bool{}
	var killedID, act string
	var killedAttempt int32
	for killedID == "" {
		d, err := l.srv.Client.DescribeWorkflowExecution(ctx, id, "")
		if err != nil {
			cancel()
			l.t.Fatalf("describe %s: %v", id, err)
		}
		if d.GetWorkflowExecutionInfo().GetStatus() != enums.WORKFLOW_EXECUTION_STATUS_RUNNING {
			cancel()
			l.t.Fatalf("run %s ended before activity %v #%d started", id, acts, nth)
		}
		for _, pa := range d.GetPendingActivities() {
			if !slices.Contains(acts, pa.GetActivityType().GetName()) || pa.GetState() != enums.PENDING_ACTIVITY_STATE_STARTED {
				continue
			}
			seen[pa.GetActivityId()] = true
			if len(seen) == nth {
				killedID, killedAttempt, act = pa.GetActivityId(), pa.GetAttempt(), pa.GetActivityType().GetName()
				break
			}
		}
		if killedID == "" {
			time.Sleep(50 * time.Millisecond)
		}
	}
	require.NoError(l.t, l.worker.Process.Signal(syscall.SIGKILL))
	killed := time.Now()
	_, _ = l.worker.Process.Wait()
	c.boundary = fmt.Sprintf("%s #%d", act, nth)
	l.t.Logf("SIGKILL the worker: %s running (activity %s, attempt %d)", act, killedID, killedAttempt)
	l.worker = startWorker(l.t, l.cfgPath, l.srv)

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			d, err := l.srv.Client.DescribeWorkflowExecution(ctx, id, "")
			if err == nil {
				i := slices.IndexFunc(d.GetPendingActivities(), func(pa *workflowpb.PendingActivityInfo) bool { return pa.GetActivityId() == killedID })
				// Retried: a later attempt runs, or the activity is no longer pending (it finished
				// between two looks: the time is then an upper bound).
				if i < 0 || d.PendingActivities[i].GetAttempt() > killedAttempt && d.PendingActivities[i].GetState() == enums.PENDING_ACTIVITY_STATE_STARTED {
					c.recovered = time.Since(killed)
					return
				}
				if d.GetWorkflowExecutionInfo().GetStatus() != enums.WORKFLOW_EXECUTION_STATUS_RUNNING {
					return
				}
			}
			time.Sleep(200 * time.Millisecond)
		}
	}()
	return func() {
		wg.Wait()
		defer cancel()
		c.retries = l.retries(ctx, id)
	}
}

// retries counts the activity attempts after the first in the run's history.
func (l *novaLab) retries(ctx context.Context, id string) int {
	n := 0
	it := l.srv.Client.GetWorkflowHistory(ctx, id, "", false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			l.t.Logf("history of %s: %v", id, err)
			return n
		}
		if a := ev.GetActivityTaskStartedEventAttributes(); a != nil && a.GetAttempt() > 1 {
			n += int(a.GetAttempt()) - 1
		}
	}
	return n
}

// auditCount counts the audit entries of activity; step, target and result ("ok", "error")
// narrow it when not "".
func auditCount(entries []workflows.AuditEntry, step, activity, target, result string) int {
	n := 0
	for _, a := range entries {
		if a.Activity == activity && (step == "" || a.Step == step) && (target == "" || a.Target == target) && (result == "" || a.Result == result) {
			n++
		}
	}
	return n
}

// onceEach adds to c.repeated what ran more than once and asserts that each ran exactly once.
func onceEach(t *testing.T, c *labCrash, what string, counts map[string]int) {
	t.Helper()
	for k, n := range counts {
		if n > 1 {
			c.repeated += n - 1
		}
		assert.Equal(t, 1, n, "%s %s: done %d times", what, k, n)
	}
}
