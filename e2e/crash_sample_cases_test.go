//go:build e2e

package e2e

// The cases of the lab crash sample (crash_sample_test.go): for each runbook, where the worker is
// killed and what is counted from the real system afterwards.

import (
	"os/exec"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/workflows"
)

var labCrashCases = []labCrashCase{
	{label: "restart-service", sample: true, run: crashRestartService},
	{label: "post-reboot-check (--start-instances)", sample: true, run: crashPostRebootStart},
	{label: "recover-host", run: crashRecoverHost},
	{label: "diagnose (api-slow)", run: crashDiagnose},
	{label: "check (daily)", run: crashCheckDaily},
}

// restart-service nova-compute on compute1, the worker killed as soon as an activity runs after
// the gate (the stop, in practice; a later one if the stop was quicker than a look): the service
// runs again under exactly one new PID, and the audit trail has one stop and one start.
func crashRestartService(t *testing.T, c *labCrash) {
	l := newNovaLab(t) // its clean-up starts nova-compute where it is stopped
	const host, svc = "compute1", "nova-compute"
	pidOf := func() string {
		out, _ := exec.Command(l.labctl, "status", host, svc).CombinedOutput()
		if _, p, ok := strings.Cut(string(out), "(pid "); ok {
			return strings.TrimSuffix(strings.TrimSpace(p), ")")
		}
		return ""
	}
	first := pidOf()
	require.NotEmpty(t, first, "%s does not run on %s", svc, host)
	// Every PID the service runs under during the run: a second restart shows as a third PID.
	var mu sync.Mutex
	pids := map[string]bool{}
	stop := make(chan struct{})
	var watch sync.WaitGroup
	watch.Add(1)
	go func() {
		defer watch.Done()
		for {
			if p := pidOf(); p != "" {
				mu.Lock()
				pids[p] = true
				mu.Unlock()
			}
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	stopWatch := sync.OnceFunc(func() { close(stop); watch.Wait() })
	t.Cleanup(stopWatch)

	id := l.start("restart-service", &workflows.RestartServiceInput{Meta: workflows.Meta{RequestedBy: "alice", Reason: "e2e crash sample"}, Host: host, Service: svc})
	l.waitFor(id, 2*time.Minute, "gate approve-restart", func(st workflows.Status) bool {
		return len(st.OpenGates) == 1 && st.OpenGates[0].Name == workflows.GateApproveRestart
	})
	l.approve(id, workflows.GateApproveRestart, "bob")
	finish := l.crashAt(id, 1, c, "SetService", "ServiceStatus", "CheckAMQP")
	rep := l.report(id, 6*time.Minute)
	finish()
	stopWatch()
	require.Equal(t, workflows.StatusCompleted, rep.Status, "%s\nsteps: %+v\nfindings: %+v", rep.Summary, rep.Steps, rep.Findings)
	last := pidOf()
	require.NotEmpty(t, last, "%s runs after the run", svc)
	assert.NotEqual(t, first, last, "%s was restarted", svc)
	delete(pids, first)
	onceEach(t, c, "started under a new PID:", map[string]int{svc: len(pids)})
	onceEach(t, c, "audit", map[string]int{
		"stop": auditCount(rep.Audit, "stop", "SetService", host, "ok"), "start": auditCount(rep.Audit, "start", "SetService", host, "ok")})
}

// post-reboot-check --start-instances on compute3 with three SHUTOFF instances, the worker killed
// while the first RecoverInstance runs: every instance ends ACTIVE and running, and Nova's
// instance-action log has exactly one start (and no reboot) per instance.
func crashPostRebootStart(t *testing.T, c *labCrash) {
	l := newNovaLab(t)
	const host = "compute3"
	ids := l.boot("crash-prc", host, 3)
	for _, sid := range ids {
		l.stop(sid)
	}
	id := l.start("post-reboot-check", &workflows.PostRebootCheckInput{Meta: workflows.Meta{RequestedBy: "carol", Reason: "e2e crash sample"},
		Host: host, Role: "compute", StartInstances: true})
	st := l.waitFor(id, 4*time.Minute, "gate start-instances", func(st workflows.Status) bool {
		return len(st.OpenGates) == 1 && st.OpenGates[0].Name == workflows.GateStartInstances
	})
	for _, sid := range ids {
		require.Contains(t, st.OpenGates[0].Summary, sid, "the gate lists the SHUTOFF instance")
	}
	l.approve(id, workflows.GateStartInstances, "bob")
	finish := l.crashAt(id, 1, c, "RecoverInstance")
	rep := l.report(id, 8*time.Minute)
	finish()
	require.Equal(t, workflows.StatusCompleted, rep.Status, "%s\nsteps: %+v\nfindings: %+v", rep.Summary, rep.Steps, rep.Findings)
	starts, audited := map[string]int{}, map[string]int{}
	for _, sid := range ids {
		s := l.waitServer(sid, func(s *servers.Server) bool { return s.TaskState == "" }, 2*time.Minute, "settled")
		assert.Equal(t, "ACTIVE", s.Status, sid)
		assert.EqualValues(t, 1, s.PowerState, "%s runs", sid)
		acts := l.actions(sid)
		for _, a := range acts {
			switch a {
			case "start":
				starts[sid]++
			case "reboot":
				c.repeated++
				t.Errorf("%s was rebooted after its start: %v", sid, acts)
			}
		}
		audited[sid] = auditCount(rep.Audit, "start-instances-run", "RecoverInstance", sid, "ok")
	}
	onceEach(t, c, "Nova instance action start of", starts)
	onceEach(t, c, "audit RecoverInstance of", audited)
}

// recover-host of a killed compute2 with two instances, the worker killed while the first
// evacuation runs: both are rebuilt elsewhere with one evacuation record each, the host forced
// down and disabled once each (audit).
func crashRecoverHost(t *testing.T, c *labCrash) {
	l := newNovaLab(t)
	const host = "compute2"
	ids := l.boot("crash-rh", host, 2)
	out, err := exec.Command(l.labfail, "host-kill", host).CombinedOutput()
	require.NoError(t, err, string(out))
	t.Cleanup(func() {
		if out, err := exec.Command(l.labfail, "host-start", host).CombinedOutput(); err != nil {
			t.Logf("host-start %s: %v %s", host, err, out)
		}
	})
	end := time.Now().Add(2 * time.Minute)
	for l.service(host).State != "down" {
		require.True(t, time.Now().Before(end), "%s never reported down", host)
		time.Sleep(2 * time.Second)
	}
	id := l.start("recover-host", &workflows.RecoverHostInput{Meta: workflows.Meta{RequestedBy: "alice", Reason: "e2e crash sample"}, Host: host, Parallel: 1})
	// The lab's addresses all answer ping: the override gate (TestNovaRecoverDeadHost).
	l.waitFor(id, 2*time.Minute, "gate confirm-host-dead-override", func(st workflows.Status) bool {
		return len(st.OpenGates) == 1 && st.OpenGates[0].Name == workflows.GateConfirmHostDeadOverride
	})
	l.approve(id, workflows.GateConfirmHostDeadOverride, "bob")
	finish := l.crashAt(id, 1, c, "MoveInstance")
	rep := l.report(id, 10*time.Minute)
	finish()
	require.Equal(t, workflows.StatusCompleted, rep.Status, "%s\nsteps: %+v\nfindings: %+v", rep.Summary, rep.Steps, rep.Findings)
	assert.Contains(t, rep.Summary, "2 of 2 instance(s) rebuilt elsewhere")
	svc := l.service(host)
	assert.True(t, svc.ForcedDown)
	assert.Equal(t, "disabled", svc.Status)
	evacs, audited := map[string]int{}, map[string]int{}
	for _, sid := range ids {
		s := l.server(sid)
		assert.Contains(t, []string{"compute1", "compute3"}, s.Host, sid)
		assert.Equal(t, "ACTIVE", s.Status, sid)
		evacs[sid] = l.migrations([]string{sid})["evacuation"]
		audited[sid] = auditCount(rep.Audit, "", "MoveInstance", sid, "ok")
	}
	onceEach(t, c, "evacuation record of", evacs)
	onceEach(t, c, "audit MoveInstance of", audited)
	// force-down: one call sets forced_down, one disables with the reason.
	n := auditCount(rep.Audit, "force-down", "SetComputeService", host, "ok")
	assert.Equal(t, 2, n, "force-down and disable, once each")
	c.repeated += max(0, n-2)
}

// diagnose api-slow of all APIs, the worker killed while the first collector runs: the diagnosis
// completes, no collector's step is left running, and each collector is recorded once (whatever
// its result: a collector the lab cannot answer is a blind spot of the report, not of the crash).
func crashDiagnose(t *testing.T, c *labCrash) {
	l := newNovaLab(t)
	id := l.start("diagnose", &workflows.DiagnoseInput{Meta: workflows.Meta{RequestedBy: "carol"}, Symptom: "api-slow", Subject: "all"})
	finish := l.crashAt(id, 1, c, diagnoseCollectors...)
	rep := l.report(id, 6*time.Minute)
	finish()
	require.Equal(t, workflows.StatusCompleted, rep.Status, "%s\nsteps: %+v", rep.Summary, rep.Steps)
	audited := map[string]int{}
	for _, s := range stepsWithPrefix(rep, "collect/") {
		assert.Contains(t, []workflows.StepState{workflows.StepDone, workflows.StepFailed}, s.State, s.Name)
		if s.State != workflows.StepDone {
			t.Logf("%s: %s %s", s.Name, s.State, s.Error)
		}
		n := 0
		for _, a := range diagnoseCollectors {
			n += auditCount(rep.Audit, s.Name, a, "", "")
		}
		audited[s.Name] = n
	}
	require.NotEmpty(t, audited, "no collector ran: %+v", rep.Steps)
	onceEach(t, c, "audit", audited)
}

var diagnoseCollectors = []string{"DiagnoseComponents", "DiagnoseRelated", "DiagnoseCapacity", "DiagnoseProcesses", "DiagnoseNode",
	"DiagnoseLogs", "DiagnoseNetwork", "DiagnoseConnects", "DiagnoseAPIs"}

// check daily, the worker killed while the first probe runs: the check completes, no probe step
// is left running, every probe is recorded once (whatever its result: a probe that fails is a
// finding of the check), and the report is recorded once.
func crashCheckDaily(t *testing.T, c *labCrash) {
	l := newNovaLab(t)
	am := &checksLab{t: t, labctl: l.labctl, amURL: l.cfg.Checks.Alertmanager.URL}
	require.NotEmpty(t, am.amURL, "checks.alertmanager.url in the lab's stackrun.yaml")
	am.ensureAlertmanager()
	id := l.start("check", &workflows.CheckInput{Meta: workflows.Meta{RequestedBy: "carol"}, Cadence: "daily"})
	finish := l.crashAt(id, 1, c, checkProbes()...)
	rep := l.report(id, 8*time.Minute)
	finish()
	require.Equal(t, workflows.StatusCompleted, rep.Status, "%s\nsteps: %+v", rep.Summary, rep.Steps)
	audited, total := map[string]int{}, 0
	for _, s := range stepsWithPrefix(rep, "probe/") {
		assert.NotContains(t, []workflows.StepState{workflows.StepRunning, workflows.StepPending}, s.State, s.Name)
		n := 0
		for _, a := range checkProbes() {
			n += auditCount(rep.Audit, s.Name, a, "", "")
		}
		total += n
		// A host batch (HostProbes) is recorded under the first of its steps: the others have none.
		if n > 1 {
			audited[s.Name] = n
		}
	}
	require.Positive(t, total, "no probe ran: %+v", rep.Steps)
	audited["record"] = auditCount(rep.Audit, "record", "Record", "", "ok")
	onceEach(t, c, "audit", audited)
}

// checkProbes are the check's probe activities (the methods of activities.Checks named *Probe,
// and HostProbes, the per-host batch).
func checkProbes() []string {
	var out []string
	ty := reflect.TypeOf(&activities.Checks{})
	for i := range ty.NumMethod() {
		if n := ty.Method(i).Name; strings.HasSuffix(n, "Probe") || n == "HostProbes" {
			out = append(out, n)
		}
	}
	return out
}
