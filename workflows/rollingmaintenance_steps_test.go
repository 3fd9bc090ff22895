package workflows_test

import (
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/workflow"

	"github.com/stackrun/stackrun/activities"
	wf "github.com/stackrun/stackrun/workflows"
)

// TestRollingMaintenanceHostStepsNamedPerHost: in a wave of two hosts, each host has its own
// acquire-lease and verify-reconnect steps (<host>/...), with its own detail, in the order it
// ran them; before the change rolling-host-step-names one step of each served both hosts, the
// second host's state overwriting the first's (histories from then replay so).
func TestRollingMaintenanceHostStepsNamedPerHost(t *testing.T) {
	run := func(t *testing.T, old bool, action string) *wf.Report {
		f := newRollFixture(t)
		// Different evidence per host, so that each host's detail is told apart.
		f.amqpOf = map[string]activities.AMQPResult{
			"compute1": {Connected: true, At: time.Now(), Evidence: activities.EvidenceSocket, Line: "127.0.0.1:5672 pid=41"},
			"compute2": {Connected: true, At: time.Now(), Evidence: activities.EvidenceLog, Line: "Connected to AMQP server"},
		}
		if old {
			f.env.OnGetVersion("rolling-host-step-names", workflow.DefaultVersion, 1).Return(workflow.DefaultVersion)
		}
		in := rollInput()
		in.Role, in.Hosts, in.BatchBy, in.Action = "", []string{"compute1", "compute2"}, "", action
		f.approveGate(wf.GateApprovePlan, time.Minute)
		f.approveGate(wf.GateCanaryOK, 3*time.Hour)
		f.run(wf.RollingMaintenance.Type, in)
		rep := f.report()
		require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
		return rep
	}
	for _, action := range []string{wf.ActionReboot, wf.ActionRestartService} {
		t.Run(action, func(t *testing.T) {
			rep := run(t, false, action)
			var names []string
			for _, s := range rep.Steps {
				names = append(names, s.Name)
				assert.NotContains(t, []string{"acquire-lease", "verify-reconnect"}, s.Name, "a step shared by the hosts")
			}
			for _, h := range []string{"compute1", "compute2"} {
				for _, s := range []string{"acquire-lease", "verify-reconnect"} {
					st := stepNamed(rep, h+"/"+s)
					require.NotNil(t, st, "%s/%s in %v", h, s, names)
					assert.Equal(t, wf.StepDone, st.State, st.Name)
					assert.Equal(t, h, st.Target, st.Name)
					assert.Equal(t, 1, st.Attempts, st.Name)
				}
				assert.Equal(t, "granted", stepDetail(rep, h+"/acquire-lease"))
				// In the host's order: the lease after the evacuation, before the disable.
				assert.Less(t, slices.Index(names, h+"/evacuate"), slices.Index(names, h+"/acquire-lease"))
				assert.Less(t, slices.Index(names, h+"/acquire-lease"), slices.Index(names, h+"/disable"))
			}
			assert.Contains(t, stepDetail(rep, "compute1/verify-reconnect"), "WEAKER EVIDENCE, only a socket seen by ss (127.0.0.1:5672 pid=41)")
			assert.Contains(t, stepDetail(rep, "compute2/verify-reconnect"), "(evidence: log)")
			assert.NotContains(t, stepDetail(rep, "compute2/verify-reconnect"), "WEAKER")
			for _, e := range rep.Audit {
				if e.Activity == "CheckAMQP" {
					assert.Equal(t, e.Target+"/verify-reconnect", e.Step, "the audit names the host's step")
				}
			}
		})
	}
	t.Run("before the change", func(t *testing.T) {
		rep := run(t, true, wf.ActionReboot)
		assert.Nil(t, stepNamed(rep, "compute1/verify-reconnect"))
		assert.Nil(t, stepNamed(rep, "compute1/acquire-lease"))
		rc := stepNamed(rep, "verify-reconnect")
		require.NotNil(t, rc)
		assert.Equal(t, "compute2", rc.Target, "one step for both hosts: the last host's")
		assert.Equal(t, 2, rc.Attempts)
		require.NotNil(t, stepNamed(rep, "acquire-lease"))
	})
}
