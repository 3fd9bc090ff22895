//go:build e2e

package e2e

// PostRebootCheck on a compute whose services really stopped and started: the lab's fake driver
// keeps its guests in nova-compute's memory, so a restart loses them as a reboot loses libvirt's
// domains, while the Nova database still says ACTIVE and running.

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/workflows"
)

// restartCompute stops and starts nova-compute on host and waits until Nova has a report from
// the new process.
func (l *novaLab) restartCompute(host string) time.Time {
	l.t.Helper()
	out, err := exec.Command(l.labctl, "stop", host, "nova-compute").CombinedOutput()
	require.NoError(l.t, err, string(out))
	started := time.Now().UTC().Truncate(time.Second)
	out, err = exec.Command(l.labctl, "start", host, "nova-compute").CombinedOutput()
	require.NoError(l.t, err, string(out))
	end := time.Now().Add(2 * time.Minute)
	for {
		s := l.service(host)
		if s.State == "up" && s.UpdatedAt.After(started) {
			return started
		}
		require.True(l.t, time.Now().Before(end), "%s never reported up after the restart: %+v", host, s)
		time.Sleep(2 * time.Second)
	}
}

func (l *novaLab) hypervisorRuns(id string) bool {
	l.t.Helper()
	ctx, cancel := l.ctx()
	defer cancel()
	ok, _, err := l.cl.HypervisorRuns(ctx, id)
	require.NoError(l.t, err)
	return ok
}

func TestPostRebootLostInstancesHardRebootedOnLab(t *testing.T) {
	l := newNovaLab(t)
	ids := l.boot("lost", "compute3", 2)
	for _, id := range ids {
		require.True(t, l.hypervisorRuns(id), "before the restart the hypervisor runs %s", id)
	}
	since := l.restartCompute("compute3")
	for _, id := range ids {
		s := l.server(id)
		require.Equal(t, "ACTIVE", s.Status, "the database still says ACTIVE")
		require.False(t, l.hypervisorRuns(id), "the restarted compute lost %s", id)
	}

	id := l.start("post-reboot-check", &workflows.PostRebootCheckInput{Meta: workflows.Meta{RequestedBy: "carol", Reason: "e2e lost instances"},
		Host: "compute3", Role: "compute", Since: since, StartInstances: true})
	st := l.waitFor(id, 3*time.Minute, "gate start-instances", func(st workflows.Status) bool {
		return len(st.OpenGates) == 1 && st.OpenGates[0].Name == workflows.GateStartInstances
	})
	for _, sid := range ids {
		assert.Contains(t, st.OpenGates[0].Summary, sid+", LOST by the hypervisor: hard reboot")
		assert.False(t, l.hypervisorRuns(sid), "nothing is rebooted before the gate")
	}
	l.approve(id, workflows.GateStartInstances, "bob")
	rep := l.report(id, 8*time.Minute)
	require.Equal(t, workflows.StatusCompleted, rep.Status, "%s\nsteps: %+v\nfindings: %+v", rep.Summary, rep.Steps, rep.Findings)
	lost := 0
	for _, f := range rep.Findings {
		if strings.Contains(f.Message, "LOST by the hypervisor") {
			lost++
		}
	}
	assert.Equal(t, 2, lost, "%+v", rep.Findings)
	for _, sid := range ids {
		s := l.server(sid)
		assert.Equal(t, "ACTIVE", s.Status)
		assert.Equal(t, "compute3", s.Host)
		assert.EqualValues(t, 1, s.PowerState, "running")
		assert.True(t, l.hypervisorRuns(sid), "the hard reboot recreated %s on the hypervisor", sid)
	}
	actions := 0
	for _, a := range rep.Audit {
		if a.Activity == "HardRebootOn" {
			actions++
		}
	}
	assert.Equal(t, 2, actions, "one hard reboot per lost instance")
}

// nova-compute stopped: the check reports it (critical), does not ask the hypervisor, and ends.
func TestPostRebootServiceDownReportedOnLab(t *testing.T) {
	l := newNovaLab(t) // its clean-up starts nova-compute again
	out, err := exec.Command(l.labctl, "stop", "compute3", "nova-compute").CombinedOutput()
	require.NoError(t, err, string(out))
	id := l.start("post-reboot-check", &workflows.PostRebootCheckInput{Meta: workflows.Meta{RequestedBy: "carol"}, Host: "compute3"})
	rep := l.report(id, 3*time.Minute)
	require.Equal(t, workflows.StatusCompleted, rep.Status, rep.Summary)
	var down, notAsked bool
	for _, f := range rep.Findings {
		down = down || (f.Subject == "compute3/nova-compute" && f.Severity == activities.SeverityCritical && strings.Contains(f.Message, "is not running"))
		notAsked = notAsked || strings.Contains(f.Message, "the hypervisor was not asked")
	}
	assert.True(t, down, "nova-compute down is a critical finding: %+v", rep.Findings)
	assert.True(t, notAsked, "%+v", rep.Findings)
	assert.Contains(t, rep.Summary, "critical")
}
