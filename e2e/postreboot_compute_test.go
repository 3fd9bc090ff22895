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

	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/instanceactions"
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

// hypervisorRuns asks Nova's diagnostics whether the hypervisor runs id, asking again for a
// while when the call itself fails (one lost RPC reply is a 500 from nova-api).
func (l *novaLab) hypervisorRuns(id string) bool {
	l.t.Helper()
	end := time.Now().Add(4 * time.Minute)
	for {
		ctx, cancel := l.ctx()
		ok, _, err := l.cl.HypervisorRuns(ctx, id)
		cancel()
		if err == nil {
			return ok
		}
		require.True(l.t, time.Now().Before(end), "diagnostics of %s kept failing: %v", id, err)
		l.t.Logf("diagnostics of %s: %v (asking again)", id, err)
		time.Sleep(2 * time.Second)
	}
}

// actions lists the instance actions Nova recorded for id (create, reboot, ...).
func (l *novaLab) actions(id string) []string {
	l.t.Helper()
	ctx, cancel := l.ctx()
	defer cancel()
	pages, err := instanceactions.List(l.cl.Compute, id, nil).AllPages(ctx)
	require.NoError(l.t, err)
	acts, err := instanceactions.ExtractInstanceActions(pages)
	require.NoError(l.t, err)
	out := make([]string, len(acts))
	for i, a := range acts {
		out[i] = a.Action
	}
	return out
}

// Two instances that the restarted compute lost are found (ACTIVE in the database, not on the
// hypervisor), listed at the gate and hard-rebooted after it; one booted after the restart runs
// and is left alone.
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
	kept := l.boot("kept", "compute3", 1)[0]
	require.True(t, l.hypervisorRuns(kept), "booted after the restart: the hypervisor runs %s", kept)

	id := l.start("post-reboot-check", &workflows.PostRebootCheckInput{Meta: workflows.Meta{RequestedBy: "carol", Reason: "e2e lost instances"},
		Host: "compute3", Role: "compute", Since: since, StartInstances: true})
	st := l.waitFor(id, 4*time.Minute, "gate start-instances", func(st workflows.Status) bool {
		return len(st.OpenGates) == 1 && st.OpenGates[0].Name == workflows.GateStartInstances
	})
	summary := st.OpenGates[0].Summary
	assert.Contains(t, summary, "instance(s) on compute3")
	for _, sid := range ids {
		assert.Contains(t, summary, sid+", LOST by the hypervisor: hard reboot")
		assert.False(t, l.hypervisorRuns(sid), "nothing is rebooted before the gate")
	}
	assert.NotContains(t, summary, kept, "the running instance is not on the list")
	l.approve(id, workflows.GateStartInstances, "bob")
	rep := l.report(id, 8*time.Minute)
	require.Equal(t, workflows.StatusCompleted, rep.Status, "%s\nsteps: %+v\nfindings: %+v", rep.Summary, rep.Steps, rep.Findings)

	var lost []string
	for _, f := range rep.Findings {
		if strings.Contains(f.Message, "LOST by the hypervisor") {
			assert.Equal(t, activities.SeverityCritical, f.Severity, "%+v", f)
			lost = append(lost, strings.TrimPrefix(f.Subject, "compute3/"))
		}
		assert.NotContains(t, f.Subject, kept, "no finding about the running instance: %+v", f)
	}
	// Subsets, not equality: an instance another test left on compute3 is lost by the restart too.
	assert.Subset(t, lost, ids, "a finding per lost instance: %+v", rep.Findings)
	var rebooted []string
	for _, a := range rep.Audit {
		if a.Activity == "HardRebootOn" {
			rebooted = append(rebooted, a.Target)
		}
	}
	assert.Subset(t, rebooted, ids, "a hard reboot per lost instance")
	assert.NotContains(t, rebooted, kept, "no reboot of the running instance")
	assert.Len(t, rebooted, len(lost), "hard reboots only for the lost instances")
	for _, sid := range ids {
		s := l.server(sid)
		assert.Equal(t, "ACTIVE", s.Status)
		assert.Equal(t, "compute3", s.Host)
		assert.EqualValues(t, 1, s.PowerState, "running")
		assert.Contains(t, l.actions(sid), "reboot", "Nova recorded the hard reboot of %s", sid)
		assert.True(t, l.hypervisorRuns(sid), "the hard reboot recreated %s on the hypervisor", sid)
	}
	s := l.server(kept)
	assert.Equal(t, "ACTIVE", s.Status)
	assert.EqualValues(t, 1, s.PowerState)
	assert.Equal(t, []string{"create"}, l.actions(kept), "the running instance was not touched")
	assert.True(t, l.hypervisorRuns(kept))
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
