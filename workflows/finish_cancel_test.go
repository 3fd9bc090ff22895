package workflows_test

import (
	"encoding/json"
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
