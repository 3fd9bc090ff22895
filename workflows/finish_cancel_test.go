package workflows_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"

	"github.com/stackrun/stackrun/activities"
	wf "github.com/stackrun/stackrun/workflows"
)

// finishedNotes are the run-finished notifications delivered.
func (f *fixture) finishedNotes() []activities.Notification {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []activities.Notification
	for _, n := range f.notes {
		if n.Kind == "run-finished" {
			out = append(out, n)
		}
	}
	return out
}

// assertFinishedOnce checks that the run's end was told once, with the report's status and
// summary: a cancelled run's notification is started on a context the cancel does not reach.
func assertFinishedOnce(t *testing.T, f *fixture, rep *wf.Report) activities.Notification {
	t.Helper()
	notes := f.finishedNotes()
	require.Len(t, notes, 1, "run-finished notifications of the cancelled run: %v", f.notified)
	n := notes[0]
	assert.Equal(t, string(rep.Status), n.Status)
	assert.Equal(t, rep.Summary, n.Summary)
	assert.Contains(t, n.Text, "ended "+string(rep.Status))
	return n
}

// restart-service cancelled while it waits at its gate: nothing was done, and the run's end is
// still told (before the change finish-notify-on-cancel, its activity failed "canceled").
func TestRestartCancelledAtGateNotifiesItsEnd(t *testing.T) {
	f := newFixture(t, basePolicy())
	f.hostMocks()
	f.grantLeases()
	f.env.RegisterDelayedCallback(func() {
		require.Equal(t, wf.StatusWaitingApproval, f.status().Status)
		f.env.CancelWorkflow()
	}, time.Minute)
	f.run(wf.RestartService.Type, restartInput())
	rep := f.report()
	require.NotEqual(t, wf.StatusCompleted, rep.Status, rep.Summary)
	t.Logf("cancelled at the gate: %s %q", rep.Status, rep.Summary)
	assertFinishedOnce(t, f, rep)
	assert.Contains(t, f.notified, "gate-opened:"+wf.GateApproveRestart)
	f.env.AssertNotCalled(t, "SetService", mock.Anything, mock.Anything)
}

// inspect-disk cancelled while collect reads: the instance is given back, the run ends Aborted,
// and the notification says so, with nothing read in it.
func TestInspectDiskCancelledWhileCollectingNotifiesAborted(t *testing.T) {
	f := newFixture(t, inspectPolicy())
	w := &world{status: "ACTIVE"}
	inspectMocks(f, w, "ReadGuestFiles")
	f.env.OnActivity(inspectAct.ReadGuestFiles, mock.Anything, mock.Anything).After(30*time.Minute).
		Return([]activities.GuestFile{{Path: "/etc/hostname", Status: activities.FileOK, Content: "s3cret-content"}}, nil)
	f.approveDataAccess(time.Minute)
	f.env.RegisterDelayedCallback(func() { f.env.CancelWorkflow() }, 10*time.Minute)
	f.run(wf.InspectDisk.Type, inspectInput())
	rep := f.report()
	require.Equal(t, wf.StatusAborted, rep.Status, rep.Summary)
	n := assertFinishedOnce(t, f, rep)
	assert.Contains(t, n.Summary, "the run was cancelled during collect")
	b, err := json.Marshal(n)
	require.NoError(t, err)
	assert.NotContains(t, string(b), "s3cret-content", "nothing read goes into the notification")
	assert.Equal(t, []string{"locate", "suspend", "expose", "mount", "unmount", "detach", "resume"}, w.called())
}

// A run that is not cancelled is told once, as before (the change is asked only on a cancel).
func TestRestartRejectedNotifiesItsEndOnce(t *testing.T) {
	f := newFixture(t, basePolicy())
	f.hostMocks()
	f.env.RegisterDelayedCallback(func() {
		f.update(wf.UpdateReject, wf.GateDecisionRequest{Gate: wf.GateApproveRestart, By: "bob", Comment: "not now"}, "")
	}, time.Minute)
	f.run(wf.RestartService.Type, restartInput())
	rep := f.report()
	require.Equal(t, wf.StatusAborted, rep.Status, rep.Summary)
	assertFinishedOnce(t, f, rep)
}

// inspect-disk cancelled while collect reads, then its unmount stalls (busy) on the way out: the
// stall is told (before the change stall-notify-on-cancel, its notification failed "canceled"
// and the clean-up waited for nobody knew whom), an operator retries, and the end is told once.
func TestInspectDiskCleanupStallAfterCancelIsNotified(t *testing.T) {
	f := newFixture(t, inspectPolicy())
	w := &world{status: "ACTIVE"}
	inspectMocks(f, w, "ReadGuestFiles", "UnmountGuestFS")
	f.env.OnActivity(inspectAct.ReadGuestFiles, mock.Anything, mock.Anything).After(30*time.Minute).Return([]activities.GuestFile{}, nil)
	var busy atomic.Bool
	busy.Store(true)
	f.env.OnActivity(inspectAct.UnmountGuestFS, mock.Anything, mock.Anything).Return(func(context.Context, activities.DiskLocation) (activities.DiskUnmountResult, error) {
		w.call("unmount")
		if busy.Load() {
			return activities.DiskUnmountResult{}, errors.New("umount: target is busy")
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		w.mounts = false
		return activities.DiskUnmountResult{WasMounted: true}, nil
	})
	f.approveDataAccess(time.Minute)
	f.env.RegisterDelayedCallback(func() { f.env.CancelWorkflow() }, 10*time.Minute)
	f.env.RegisterDelayedCallback(func() {
		st := f.status()
		require.Len(t, st.Stalled, 1, "%+v", st)
		assert.Equal(t, "unmount", st.Stalled[0].Step)
		f.mu.Lock()
		notified := slices.Clone(f.notified)
		f.mu.Unlock()
		assert.Contains(t, notified, "step-stalled:unmount", "the clean-up's stall is told")
		busy.Store(false)
		f.update(wf.UpdateResolve, wf.ResolveRequest{Step: "unmount", Action: wf.ResolveRetry, By: "bob"}, "")
	}, 2*time.Hour)
	f.run(wf.InspectDisk.Type, inspectInput())
	rep := f.report()
	require.Equal(t, wf.StatusAborted, rep.Status, rep.Summary)
	assertFinishedOnce(t, f, rep)
	assert.Equal(t, 1, countOf(f.notified, "step-stalled:unmount"))
	calls := w.called()
	assert.Equal(t, []string{"unmount", "detach", "resume"}, calls[len(calls)-3:])
	assert.Equal(t, "ACTIVE", w.status)
	w.clean(t)
}
