package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/stackrun/stackrun/internal/app/control"
	"github.com/stackrun/stackrun/workflows"
)

// Exit codes. Scripts, cron jobs and chat relays act on them, so each outcome of a run has its own;
// run --wait and report (with or without --wait) return the run's.
const (
	exitOK       = 0 // success; for a run: it ended Completed
	exitError    = 1 // the command failed (Temporal unreachable, run not found, refused decision...)
	exitUsage    = 2 // a mistake in the command line
	exitFailed   = 3 // the run ended Failed, or ended without a report (terminated, timed out)
	exitAborted  = 4 // the run ended Aborted (a rejected gate, a resolve abort)
	exitNotEnded = 5 // the run has not ended yet: --wait-timeout passed, following stopped (Ctrl-C), report without --wait
)

// exitCodesHelp documents the codes in --help.
const exitCodesHelp = `Exit codes (run --wait, report):
  0  the run ended Completed (other commands: success)
  1  error: Temporal unreachable, run not found, decision refused...
  2  usage error
  3  the run ended Failed (or Temporal ended it without a report: terminated, timed out)
  4  the run ended Aborted (gate rejected, resolve abort)
  5  the run has not ended: --wait-timeout passed or following was stopped; report without --wait
     of an open run. The run goes on.`

// codedError carries an exit code other than 1 up to main, with the message to print.
type codedError struct {
	code int
	err  error
}

func (e *codedError) Error() string { return e.err.Error() }
func (e *codedError) Unwrap() error { return e.err }

func exitCode(err error) int {
	var e *codedError
	if errors.As(err, &e) {
		return e.code
	}
	return exitError
}

// outcome is what run --wait and report return after printing a run's report: nil for Completed,
// the run's own exit code otherwise.
func outcome(rep *workflows.Report) error {
	switch rep.Status {
	case workflows.StatusCompleted:
		return nil
	case workflows.StatusAborted:
		return &codedError{exitAborted, fmt.Errorf("run %s ended Aborted", rep.WorkflowID)}
	case workflows.StatusFailed:
		return &codedError{exitFailed, fmt.Errorf("run %s ended Failed", rep.WorkflowID)}
	}
	return &codedError{exitFailed, fmt.Errorf("run %s ended with status %q", rep.WorkflowID, rep.Status)}
}

// endErr classifies an error from asking for a run's report: the run ending without one
// (terminated, timed out) is a failure (3), a run still open is "not ended" (5); other errors
// pass through (1).
func endErr(err error) error {
	var wee *temporal.WorkflowExecutionError
	if errors.As(err, &wee) {
		return &codedError{exitFailed, err}
	}
	var still *control.StillRunningError
	if errors.As(err, &still) {
		return &codedError{exitNotEnded, err}
	}
	return err
}

// waitErr is endErr for a wait under ctx: a wait cut short by --wait-timeout or Ctrl-C is "not
// ended" (5), said with the run's current status when Temporal still answers.
func waitErr(ctx context.Context, c client.Client, id string, timeout time.Duration, err error) error {
	// The SDK's long poll carries ctx's deadline to the server, which may answer DeadlineExceeded
	// a moment before ctx itself expires.
	_, bounded := ctx.Deadline()
	var dl *serviceerror.DeadlineExceeded
	timedOut := errors.Is(ctx.Err(), context.DeadlineExceeded) ||
		bounded && (errors.Is(err, context.DeadlineExceeded) || errors.As(err, &dl))
	if e := endErr(err); e != err || ctx.Err() == nil && !timedOut {
		return e
	}
	status := "not ended"
	qctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if st, qerr := control.Status(qctx, c, id); qerr == nil {
		status = "still " + string(st.Status)
	}
	why := "waiting stopped"
	if timedOut {
		why = "--wait-timeout " + timeout.String() + " passed"
	}
	return &codedError{exitNotEnded, fmt.Errorf("run %s is %s (%s); it goes on: stackrun status %s", id, status, why, id)}
}

// waitContext bounds a --wait by --wait-timeout (0: no bound).
func waitContext(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}
