//go:build e2e

package e2e

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stackrun/stackrun/workflows"
)

// Test 5: compute2 dies (every process killed, sshd included); recover-host waits at the fencing
// gate, then rebuilds all its instances ACTIVE on other hosts.
func TestNovaRecoverDeadHost(t *testing.T) {
	l := newNovaLab(t)
	ids := l.boot("dead", "compute2", 3)
	out, err := exec.Command(l.labfail, "host-kill", "compute2").CombinedOutput()
	require.NoError(t, err, string(out))
	t.Cleanup(func() {
		if out, err := exec.Command(l.labfail, "host-start", "compute2").CombinedOutput(); err != nil {
			t.Logf("host-start compute2: %v %s", err, out)
		}
	})
	// Nova notices within service_down_time (40 s in the lab).
	end := time.Now().Add(2 * time.Minute)
	for l.service("compute2").State != "down" {
		require.True(t, time.Now().Before(end), "compute2 never reported down")
		time.Sleep(2 * time.Second)
	}

	id := l.start("recover-host", &workflows.RecoverHostInput{Meta: workflows.Meta{RequestedBy: "alice", Reason: "PSU failure"}, Host: "compute2", Parallel: 2})
	// Every lab address is on lo, so the dead host's address still answers ping: confirm-down
	// refuses it, and only the signed override gate lets the run go on (the lab shows that path;
	// the all-quiet path with gate confirm-host-dead is in workflows' unit tests).
	st := l.waitFor(id, 2*time.Minute, "gate confirm-host-dead-override", func(st workflows.Status) bool {
		return len(st.OpenGates) == 1 && st.OpenGates[0].Name == workflows.GateConfirmHostDeadOverride
	})
	assert.True(t, st.OpenGates[0].Destructive)
	assert.Contains(t, st.OpenGates[0].Summary, "REFUSED: compute2 still answers (SSH: no answer")
	assert.Contains(t, st.OpenGates[0].Summary, "ping 127.0.0.12: answered")
	for _, f := range st.Findings {
		assert.NotContains(t, f.Message, "still answers SSH", "a dead host does not answer SSH")
	}
	svc := l.service("compute2")
	assert.False(t, svc.ForcedDown, "nothing is forced down before the gate")
	for _, sid := range ids {
		assert.Equal(t, "compute2", l.server(sid).Host, "nothing moves before the gate")
	}
	l.approve(id, workflows.GateConfirmHostDeadOverride, "bob")
	rep := l.report(id, 10*time.Minute)
	require.Equal(t, workflows.StatusCompleted, rep.Status, "%s\nsteps: %+v\nfindings: %+v", rep.Summary, rep.Steps, rep.Findings)
	assert.Contains(t, rep.Summary, "3 of 3 instance(s) rebuilt elsewhere")
	assert.Contains(t, rep.LeftState, "FORCED DOWN")
	svc = l.service("compute2")
	assert.True(t, svc.ForcedDown)
	assert.Equal(t, "disabled", svc.Status)
	for _, sid := range ids {
		s := l.server(sid)
		assert.True(t, slices.Contains([]string{"compute1", "compute3"}, s.Host), "%s on %s", sid, s.Host)
		assert.Equal(t, "ACTIVE", s.Status)
		step := stepByName(rep, "evacuate/"+sid)
		require.NotNil(t, step)
		assert.True(t, strings.HasPrefix(step.Detail, "dead-"), step.Detail)
	}
	assert.Equal(t, 3, l.migrations(ids)["evacuation"])
}
