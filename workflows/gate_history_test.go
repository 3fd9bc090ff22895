package workflows_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"

	wf "github.com/stackrun/stackrun/workflows"
)

// A gate nobody answers, escalating without end (escalation_repeats 0, notify-then-wait) with
// gate_timeout 1m, keeps a small history: its waits double up to a week, and after 64
// escalations it waits without timers. The test environment skips time but counts no history
// events, so they are bounded from the commands the run issued: at most 6 events per timer
// (started, fired, the workflow task it wakes) and per activity attempt (scheduled, started,
// completed, its task), plus 3 per search-attribute upsert and 100 for the start, the markers
// and the end.
func TestGateUnansweredKeepsHistoryBounded(t *testing.T) {
	for _, c := range []struct {
		open        time.Duration
		escalations int
		maxEvents   int
	}{
		{30 * 24 * time.Hour, 16, 500},       // 14 doublings (11.4 days), then a week apart
		{3 * 365 * 24 * time.Hour, 64, 1100}, // capped in its first year: no timer after the 64th
	} {
		t.Run(fmt.Sprintf("%dd", c.open/(24*time.Hour)), func(t *testing.T) {
			p := basePolicy()
			p.GateTimeout, p.EscalationRepeats = time.Minute, 0
			f := newFixture(t, p)
			f.hostMocks()
			f.grantLeases()
			f.env.OnActivity(hosts.SetService, mock.Anything, mock.Anything).Return(nil)
			var timers, acts, upserts int
			f.env.SetOnTimerScheduledListener(func(string, time.Duration) { timers++ })
			f.env.SetOnActivityStartedListener(func(*activity.Info, context.Context, converter.EncodedValues) { acts++ })
			f.env.SetOnLocalActivityStartedListener(func(*activity.Info, context.Context, []any) { acts++ })
			timersAtDecision := 0
			f.env.RegisterDelayedCallback(func() {
				st := f.status()
				require.Equal(t, wf.StatusWaitingApproval, st.Status)
				require.Equal(t, c.escalations, st.OpenGates[0].Escalations)
				timersAtDecision = timers
				f.update(wf.UpdateApprove, wf.GateDecisionRequest{Gate: wf.GateApproveRestart, By: "bob"}, "")
			}, c.open)
			f.run(wf.RestartService.Type, restartInput())
			rep := f.report()
			require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
			require.Equal(t, c.escalations, strings.Count(strings.Join(f.notified, ","), "gate-escalated"))
			upserts = len(f.statuses) + len(f.steps)
			events := 6*(timers+acts) + 3*upserts + 100
			t.Logf("gate open %s: %d escalations, %d timers (%d by the decision), %d activities, %d upserts: at most %d events",
				c.open, c.escalations, timers, timersAtDecision, acts, upserts, events)
			require.Less(t, events, c.maxEvents)
			if c.escalations == 64 {
				require.Equal(t, 64, timersAtDecision, "a timer per escalation, none after the last")
			}
		})
	}
}
