package workflows_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/config/policy"
	wf "github.com/stackrun/stackrun/workflows"
)

// rollFixture simulates three computes (racks r1, r2, r2) with two instances each; the evacuate
// and post-reboot-check children are mocked (their own tests cover them), everything the wave
// does itself goes through mocked activities that change the simulated world.
type rollFixture struct {
	*fixture
	where     map[string]string // instance -> host
	calls     []string
	out       map[string]bool // hosts out of service now (disabled, evacuating, rebooting)
	maxOut    int
	bootFails map[string]int // host -> WaitForBoot failures left
	critical  map[string]int // host -> post-reboot checks that still find something critical
	evacuated []wf.EvacuateInput
	tight     bool                             // every host has room for one small instance only
	amqp      *activities.AMQPResult           // what CheckAMQP finds (default: a connection in the log)
	amqpOf    map[string]activities.AMQPResult // what CheckAMQP finds on a host, before amqp
	amqpCalls map[string]int                   // host -> CheckAMQP calls
	computes  []string                         // the cloud's computes (compute1-3)
	policy    policy.Policy
	freeRAM   map[string]int // host -> free RAM Placement reports, when not the default
}

var rollRacks = map[string]string{"compute1": "r1", "compute2": "r2", "compute3": "r2"}

func rollFacts(h string) activities.HostFacts {
	return activities.HostFacts{Name: h, Address: "127.0.0.1", Roles: []string{"compute"}, Labels: map[string]string{"rack": rollRacks[h]},
		Services: []activities.ServiceFacts{{Role: "compute", Name: "nova-compute", Log: "/var/log/nova-compute.log", AMQP: true}}}
}

func (f *rollFixture) setOut(h string, out bool) {
	f.out[h] = out
	n := 0
	for _, o := range f.out {
		if o {
			n++
		}
	}
	f.maxOut = max(f.maxOut, n)
}

func (f *rollFixture) on(h string) []activities.Instance {
	var out []activities.Instance
	for id, host := range f.where {
		if host == h {
			out = append(out, activities.Instance{ID: id, Name: "vm-" + id, Status: "ACTIVE", PowerState: 1, Host: h, VCPUs: 1, RAMMB: 512, DiskGB: 1})
		}
	}
	slices.SortFunc(out, func(a, b activities.Instance) int { return strings.Compare(a.ID, b.ID) })
	return out
}

func newRollFixture(t *testing.T) *rollFixture {
	return newRollFixtureOf(t, []string{"compute1", "compute2", "compute3"}, 3)
}

// newRollFixtureOf is a cloud of the computes, the first withInstances of them with two
// instances each.
func newRollFixtureOf(t *testing.T, computes []string, withInstances int) *rollFixture {
	p := basePolicy()
	p.TwoPersonGates = []string{wf.GateApprovePlan, wf.GateCanaryOK}
	f := &rollFixture{fixture: newFixture(t, p), policy: p, where: map[string]string{}, out: map[string]bool{}, bootFails: map[string]int{}, critical: map[string]int{}, amqpCalls: map[string]int{},
		computes: computes, freeRAM: map[string]int{}}
	for i, h := range computes[:withInstances] {
		f.where[fmt.Sprintf("i%d-a", i+1)] = h
		f.where[fmt.Sprintf("i%d-b", i+1)] = h
	}
	f.mockWorld()
	return f
}

// mockWorld sets the mocks of the simulated world on the fixture's test environment.
func (f *rollFixture) mockWorld() {
	f.env.RegisterActivity(computeAct)
	f.env.RegisterActivity(novaDBAct)
	f.grantLeases()
	f.env.OnActivity(hosts.HostsWithRole, mock.Anything, "compute").Return([]activities.HostFacts{rollFacts("compute1"), rollFacts("compute2"), rollFacts("compute3")}, nil)
	f.env.OnActivity(hosts.DescribeHost, mock.Anything, mock.Anything).Return(func(_ context.Context, h string) (activities.HostFacts, error) { return rollFacts(h), nil })
	f.env.OnActivity(computeAct.ComputeServices, mock.Anything).Return(func(context.Context) ([]activities.ComputeService, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		var out []activities.ComputeService
		for _, h := range f.computes {
			st := map[bool]string{true: "disabled", false: "enabled"}[f.out[h]]
			out = append(out, activities.ComputeService{Host: h, ID: "s-" + h, Status: st, State: "up", UpdatedAt: time.Now().Add(1000 * time.Hour)})
		}
		return out, nil
	})
	f.env.OnActivity(computeAct.InstancesOnHost, mock.Anything, mock.Anything).Return(func(_ context.Context, h string) ([]activities.Instance, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.on(h), nil
	})
	f.env.OnActivity(novaDBAct.DBInstancesOnHost, mock.Anything, mock.Anything).Return(func(_ context.Context, h string) ([]string, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		var ids []string
		for _, i := range f.on(h) {
			ids = append(ids, i.ID)
		}
		return ids, nil
	})
	f.env.OnActivity(computeAct.GetInstance, mock.Anything, mock.Anything).Return(func(_ context.Context, id string) (activities.Instance, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		return activities.Instance{ID: id, Name: "vm-" + id, Status: "ACTIVE", PowerState: 1, Host: f.where[id], VCPUs: 1, RAMMB: 512, DiskGB: 1}, nil
	})
	f.env.OnActivity(computeAct.Capacity, mock.Anything, mock.Anything).Return(func(_ context.Context, hs []string) ([]activities.HostCapacity, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		var out []activities.HostCapacity
		for _, h := range hs {
			c := activities.HostCapacity{Host: h, FreeVCPUs: 100, FreeRAMMB: 100000, FreeDiskGB: 1000}
			if f.tight {
				c = activities.HostCapacity{Host: h, FreeVCPUs: 1, FreeRAMMB: 512, FreeDiskGB: 1}
			}
			if ram, ok := f.freeRAM[h]; ok {
				c.FreeRAMMB = ram
			}
			out = append(out, c)
		}
		return out, nil
	})
	f.env.OnActivity(computeAct.SetComputeService, mock.Anything, mock.Anything).Return(func(_ context.Context, ch activities.ServiceChange) (activities.ComputeService, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if ch.Disable {
			f.calls = append(f.calls, "disable:"+ch.Host+":"+ch.Reason)
			f.setOut(ch.Host, true)
		} else {
			f.calls = append(f.calls, "enable:"+ch.Host)
			f.setOut(ch.Host, false)
		}
		return activities.ComputeService{Host: ch.Host}, nil
	})
	f.env.OnActivity(computeAct.MoveInstance, mock.Anything, mock.Anything).Return(func(_ context.Context, req activities.MoveRequest) (activities.MoveResult, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.calls = append(f.calls, "move:"+req.ID+":"+req.Source+"->"+req.Target)
		f.where[req.ID] = req.Target
		return activities.MoveResult{ID: req.ID, From: req.Source, To: req.Target, Status: "ACTIVE", Migration: "m", MigrationStat: "completed", Started: true}, nil
	})
	f.env.OnActivity(hosts.RebootHost, mock.Anything, mock.Anything).Return(func(_ context.Context, req activities.RebootRequest) (activities.RebootResult, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.calls = append(f.calls, "reboot:"+req.Host)
		return activities.RebootResult{Issued: true, Detail: "reboot sent"}, nil
	})
	f.env.OnActivity(hosts.WaitForBoot, mock.Anything, mock.Anything).Return(func(_ context.Context, req activities.BootWait) (time.Time, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.bootFails[req.Host] > 0 {
			f.bootFails[req.Host]--
			return time.Time{}, temporal.NewApplicationError(req.Host+" did not come back", "BootTimeout")
		}
		return req.After.Add(5 * time.Second), nil
	})
	f.env.OnActivity(hosts.ServiceStatus, mock.Anything, mock.Anything).Return(activities.ServiceState{Running: true}, nil)
	f.env.OnActivity(hosts.CheckAMQP, mock.Anything, mock.Anything).Return(func(_ context.Context, req activities.AMQPRequest) (activities.AMQPResult, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.amqpCalls[req.Host]++
		if a, ok := f.amqpOf[req.Host]; ok {
			return a, nil
		}
		if f.amqp != nil {
			return *f.amqp, nil
		}
		return activities.AMQPResult{Connected: true, At: time.Now(), Evidence: activities.EvidenceLog}, nil
	})
	f.env.OnActivity(hosts.SetService, mock.Anything, mock.Anything).Return(func(_ context.Context, a activities.ServiceAction) error {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.calls = append(f.calls, a.Action+":"+a.Host+"/"+a.Service)
		return nil
	})
	// The children: an evacuation that moves every instance to its first target, and a
	// post-reboot check that finds what the test says.
	f.env.OnWorkflow(wf.Evacuate.Type, mock.Anything, mock.Anything).Return(func(ctx workflow.Context, in wf.EvacuateInput) (*wf.Report, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.evacuated = append(f.evacuated, in)
		f.calls = append(f.calls, "evacuate:"+in.Host+":"+in.Reason)
		f.setOut(in.Host, true)
		for id, h := range f.where {
			if h == in.Host {
				f.where[id] = in.Targets[0]
			}
		}
		f.setOut(in.Host, false) // the evacuation enables the host again at its end
		return &wf.Report{Status: wf.StatusCompleted, Summary: in.Host + " emptied"}, nil
	})
	f.env.OnWorkflow(wf.PostRebootCheck.Type, mock.Anything, mock.Anything).Return(func(ctx workflow.Context, in wf.PostRebootCheckInput) (*wf.Report, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.calls = append(f.calls, "post-reboot-check:"+in.Host)
		rep := &wf.Report{Status: wf.StatusCompleted, Summary: "all post-reboot checks passed"}
		if f.critical[in.Host] > 0 {
			f.critical[in.Host]--
			rep.Findings = []activities.Finding{{Severity: activities.SeverityCritical, Subject: in.Host + "/nova-compute", Message: "nova-compute is not running"}}
			rep.Summary = "1 critical, 0 warning finding(s)"
		}
		return rep, nil
	})
}

func rollInput() wf.RollingMaintenanceInput {
	return wf.RollingMaintenanceInput{Meta: wf.Meta{RequestedBy: "carol", Reason: "kernel update"}, Role: "compute", BatchBy: "rack", Action: wf.ActionReboot}
}

func (f *rollFixture) approveGate(gate string, at time.Duration) {
	f.env.RegisterDelayedCallback(func() {
		f.update(wf.UpdateApprove, wf.GateDecisionRequest{Gate: gate, By: "alice"}, "")
	}, at)
}

func TestRollingMaintenanceInputValidation(t *testing.T) {
	ok := rollInput()
	require.NoError(t, ok.Validate())
	cases := map[string]func(in *wf.RollingMaintenanceInput){
		"hosts":      func(in *wf.RollingMaintenanceInput) { in.Hosts = []string{"compute1"} }, // and --role
		"hosts[1]":   func(in *wf.RollingMaintenanceInput) { in.Role, in.Hosts = "", []string{"compute1", "compute1"} },
		"hosts[0]":   func(in *wf.RollingMaintenanceInput) { in.Role, in.Hosts = "", []string{"c1;reboot"} },
		"role":       func(in *wf.RollingMaintenanceInput) { in.Role = "controller" },
		"action":     func(in *wf.RollingMaintenanceInput) { in.Action = "format" },
		"batch-by":   func(in *wf.RollingMaintenanceInput) { in.BatchBy = "$(reboot)" },
		"batch-size": func(in *wf.RollingMaintenanceInput) { in.BatchSize = 2 }, // with --batch-by
		"parallel":   func(in *wf.RollingMaintenanceInput) { in.Parallel = -1 },
		"to_version": func(in *wf.RollingMaintenanceInput) { in.ToCandidate = true }, // not an upgrade
		"reason":     func(in *wf.RollingMaintenanceInput) { in.Reason = "" },
	}
	for field, mut := range cases {
		in := rollInput()
		mut(&in)
		err := in.Validate()
		require.Error(t, err, field)
		assert.True(t, strings.HasPrefix(err.Error(), field), "%s: %v", field, err)
	}
	up := rollInput()
	up.Action = wf.ActionUpgrade
	assert.ErrorContains(t, up.Validate(), "to_version")
	up.ToVersion = []string{"python3-nova=1:2;rm"}
	assert.ErrorContains(t, up.Validate(), "not a Debian version")
	up.ToVersion = []string{"python3-nova=2:26.2.2-1~deb12u5"}
	assert.NoError(t, up.Validate())
	long := rollInput()
	long.Reason = strings.Repeat("x", 250)
	assert.ErrorContains(t, long.Validate(), "disabled_reason")
}

func TestRollingMaintenanceDryRunPlansBatchesByRack(t *testing.T) {
	f := newRollFixture(t)
	in := rollInput()
	in.DryRun = true
	f.run(wf.RollingMaintenance.Type, in)
	rep := f.report()
	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	plan := strings.Join(rep.Plan, "\n")
	assert.Contains(t, plan, "reboot of 3 compute host(s) in 2 batch(es): 1 (rack=r1, the canary): compute1; 2 (rack=r2): compute2, compute3")
	assert.Contains(t, plan, "gate canary-ok after batch 1")
	// compute2's instances may not go to compute3: the same failure domain.
	assert.Contains(t, plan, "compute2: 2 instance(s) now (2 to move) → child run evacuate compute2 (its own plan and gate approve-plan; targets compute1)")
	assert.Contains(t, plan, "compute1: 2 instance(s) now (2 to move) → child run evacuate compute1 (its own plan and gate approve-plan; targets compute2, compute3)")
	f.mu.Lock()
	defer f.mu.Unlock()
	assert.Empty(t, f.calls, "a dry run changes nothing")
	assert.Empty(t, f.evacuated)
}

func TestRollingMaintenanceRebootsHostByHostAndBringsInstancesBack(t *testing.T) {
	f := newRollFixture(t)
	f.approveGate(wf.GateApprovePlan, time.Minute)
	var atCanary []string
	f.env.RegisterDelayedCallback(func() {
		st := f.status()
		require.Len(t, st.OpenGates, 1)
		require.Equal(t, wf.GateCanaryOK, st.OpenGates[0].Name)
		f.mu.Lock()
		atCanary = slices.Clone(f.calls)
		f.mu.Unlock()
		f.update(wf.UpdateApprove, wf.GateDecisionRequest{Gate: wf.GateCanaryOK, By: "carol"}, "may not approve") // the requester
		f.update(wf.UpdateApprove, wf.GateDecisionRequest{Gate: wf.GateCanaryOK, By: "alice"}, "")
	}, 3*time.Hour)
	f.run(wf.RollingMaintenance.Type, rollInput())
	rep := f.report()
	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	assert.Empty(t, rep.LeftState)
	assert.Contains(t, rep.Summary, "3 of 3 host(s) done")

	f.mu.Lock()
	defer f.mu.Unlock()
	// Every instance is back where it was.
	for id, h := range f.where {
		assert.Equal(t, "compute"+id[1:2], h, id)
	}
	assert.Equal(t, 1, f.maxOut, "never two hosts out of service at once")
	// The canary batch was done (its instances back) before the gate, nothing of batch 2 was.
	joined := strings.Join(atCanary, "\n")
	assert.Contains(t, joined, "move:i1-b:compute2->compute1")
	assert.NotContains(t, joined, "compute2:")
	assert.NotContains(t, joined, "reboot:compute2")
	// Host by host, in order: evacuate, disable, reboot, check, enable, back; then the next.
	var seq []string
	for _, c := range f.calls {
		if !strings.HasPrefix(c, "move:") {
			seq = append(seq, strings.SplitN(c, ":", 3)[0]+":"+strings.SplitN(c, ":", 3)[1])
		}
	}
	want := []string{}
	for _, h := range []string{"compute1", "compute2", "compute3"} {
		want = append(want, "evacuate:"+h, "disable:"+h, "reboot:"+h, "post-reboot-check:"+h, "enable:"+h)
	}
	assert.Equal(t, want, seq)
	assert.Equal(t, []string{"compute2", "compute3"}, f.evacuated[0].Targets)
	assert.Equal(t, []string{"compute1"}, f.evacuated[1].Targets, "the rest of compute2's rack is no target")
	assert.Equal(t, "rolling-maintenance reboot: kernel update", f.evacuated[0].Reason)
	assert.Contains(t, stepDetail(rep, "compute2/migrate-back"), "2 of 2 moved back to compute2")
	assert.Contains(t, stepDetail(rep, "wave"), "done: [compute1, compute2, compute3]; in progress: []; untouched: []")
}

func TestRollingMaintenanceStallsWithTheWaveListed(t *testing.T) {
	f := newRollFixture(t)
	f.bootFails["compute2"] = 100
	in := rollInput()
	in.BatchBy = "" // one host per batch: compute1 is the canary
	f.approveGate(wf.GateApprovePlan, time.Minute)
	f.approveGate(wf.GateCanaryOK, 3*time.Hour)
	f.env.RegisterDelayedCallback(func() {
		st := f.status()
		require.Len(t, st.Stalled, 1, "%+v", st)
		assert.Equal(t, "compute2/wait-boot", st.Stalled[0].Step)
		assert.Contains(t, st.Stalled[0].Error, "compute2 did not come back")
		assert.Contains(t, st.Stalled[0].Error, "the wave waits here: done: [compute1]; in progress: [compute2]; untouched: [compute3]")
		f.update(wf.UpdateResolve, wf.ResolveRequest{Step: "compute2/wait-boot", Action: wf.ResolveAbort, By: "bob"}, "")
	}, 8*time.Hour)
	f.run(wf.RollingMaintenance.Type, in)
	rep := f.report()
	require.Equal(t, wf.StatusAborted, rep.Status, rep.Summary)
	assert.Contains(t, rep.LeftState, "done: [compute1]; in progress: [compute2]; untouched: [compute3]")
	assert.Contains(t, rep.LeftState, "nova-compute on compute2 is DISABLED")
	f.mu.Lock()
	defer f.mu.Unlock()
	assert.Len(t, f.evacuated, 2, "compute3 untouched")
	assert.NotContains(t, strings.Join(f.calls, " "), "compute3")
}

func TestRollingMaintenanceCriticalPostRebootFindingStallsThenRetries(t *testing.T) {
	f := newRollFixture(t)
	f.critical["compute1"] = 1
	in := rollInput()
	in.Role, in.Hosts, in.BatchBy = "", []string{"compute1"}, ""
	f.approveGate(wf.GateApprovePlan, time.Minute)
	f.env.RegisterDelayedCallback(func() {
		st := f.status()
		require.Len(t, st.Stalled, 1, "%+v", st)
		assert.Equal(t, "compute1/post-reboot-check", st.Stalled[0].Step)
		assert.Contains(t, st.Stalled[0].Error, "nova-compute is not running")
		f.update(wf.UpdateResolve, wf.ResolveRequest{Step: "compute1/post-reboot-check", Action: wf.ResolveRetry, By: "bob"}, "")
	}, 3*time.Hour)
	f.run(wf.RollingMaintenance.Type, in)
	rep := f.report()
	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	assert.Contains(t, stepDetail(rep, "compute1/post-reboot-check"), "/compute1/post-reboot-check-2")
	f.mu.Lock()
	defer f.mu.Unlock()
	assert.Equal(t, 1, strings.Count(strings.Join(f.calls, " "), "reboot:compute1"), "the retry checks again; it does not reboot again")
}

func TestRollingMaintenanceRefusesWhenAHostDoesNotFitBeforeAnyChange(t *testing.T) {
	f := newRollFixture(t)
	f.tight = true // compute2's two instances cannot both go to compute1 (compute3 is in its rack)
	f.run(wf.RollingMaintenance.Type, rollInput())
	rep := f.report()
	assert.Equal(t, wf.StatusFailed, rep.Status)
	assert.Contains(t, rep.Summary, "refused: capacity")
	assert.Contains(t, rep.Summary, "not enough capacity")
	f.mu.Lock()
	defer f.mu.Unlock()
	assert.Empty(t, f.calls)
}

func TestRollingMaintenanceUpgradesNovaComputeHostByHost(t *testing.T) {
	f := newRollFixture(t)
	w := &upgradeWorld{installed: map[string]string{"python3-nova": novaOld}}
	f.upgradeMocks(w)
	in := rollInput()
	in.Role, in.Hosts, in.BatchBy, in.Action, in.ToCandidate = "", []string{"compute1", "compute2"}, "", wf.ActionUpgrade, true
	f.approveGate(wf.GateApprovePlan, time.Minute)
	f.approveGate(wf.GateCanaryOK, 3*time.Hour)
	f.run(wf.RollingMaintenance.Type, in)
	rep := f.report()
	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	plan := strings.Join(rep.Plan, "\n")
	assert.Contains(t, plan, "upgrade nova-compute (python3-nova "+novaOld+" → "+novaNew+")")
	assert.Contains(t, plan, "no schema commands on computes")
	w.mu.Lock()
	assert.Equal(t, []string{"nova/compute1", "nova/compute2"}, w.order, "one host after the other")
	assert.Equal(t, novaNew, w.installed["python3-nova"])
	w.mu.Unlock()
	var acts []string
	for _, a := range rep.Audit {
		acts = append(acts, a.Activity)
	}
	assert.NotContains(t, acts, "SchemaSync", "no schema commands on computes")
	assert.Contains(t, acts, "InstallPackages")
	assert.Equal(t, wf.StepDone, stepState(rep, "nova/compute2/verify"))
	assert.Contains(t, fmt.Sprint(rep.Details["packages"]), "python3-nova "+novaOld+" → "+novaNew)
	f.mu.Lock()
	defer f.mu.Unlock()
	assert.Len(t, f.evacuated, 2)
	for id, h := range f.where {
		assert.Equal(t, "compute"+id[1:2], h, id)
	}
}

// After a reboot, a service report after the boot proves nova-compute is back on the queue: the
// AMQP evidence is looked at once per host, not waited for (oslo.messaging logs the connection at
// DEBUG only). Histories from before the change (GetVersion default) keep waiting for it.
func TestRollingMaintenanceRebootChecksAMQPOnceAfterAReport(t *testing.T) {
	run := func(t *testing.T, old bool, amqp activities.AMQPResult) (*rollFixture, *wf.Report) {
		f := newRollFixture(t)
		f.amqp = &amqp
		if old {
			f.env.OnGetVersion("rolling-reboot-check-once", workflow.DefaultVersion, 1).Return(workflow.DefaultVersion)
		}
		in := rollInput()
		in.Role, in.Hosts, in.BatchBy = "", []string{"compute1", "compute2"}, ""
		f.approveGate(wf.GateApprovePlan, time.Minute)
		f.approveGate(wf.GateCanaryOK, 3*time.Hour)
		f.run(wf.RollingMaintenance.Type, in)
		return f, f.report()
	}
	socket := activities.AMQPResult{Connected: true, At: time.Now(), Evidence: activities.EvidenceSocket, Line: "127.0.0.1:5672 pid=42"}
	t.Run("socket only", func(t *testing.T) {
		f, rep := run(t, false, socket)
		require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
		assert.Equal(t, map[string]int{"compute1": 1, "compute2": 1}, f.amqpCalls, "one look per host (the post-reboot check child is mocked)")
		assert.Contains(t, stepDetail(rep, "compute1/verify-reconnect"), "WEAKER EVIDENCE")
		assert.Contains(t, stepDetail(rep, "compute2/verify-reconnect"), "WEAKER EVIDENCE")
	})
	t.Run("nothing seen", func(t *testing.T) {
		f, rep := run(t, false, activities.AMQPResult{})
		require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
		assert.Equal(t, map[string]int{"compute1": 1, "compute2": 1}, f.amqpCalls)
		assert.Contains(t, stepDetail(rep, "compute2/verify-reconnect"), "proven by the service report")
		var warned []string
		for _, fd := range rep.Findings {
			if fd.Severity == activities.SeverityWarning && strings.Contains(fd.Message, "no AMQP socket seen") {
				warned = append(warned, fd.Subject)
			}
		}
		assert.Equal(t, []string{"compute1/nova-compute", "compute2/nova-compute"}, warned)
	})
	t.Run("before the change", func(t *testing.T) {
		f, rep := run(t, true, socket)
		require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
		assert.Equal(t, map[string]int{"compute1": 6, "compute2": 6}, f.amqpCalls, "the old wait: six looks for a log line")
	})
}

// TestRollingMaintenanceBoundsEvacuateTargetsOnALargeCloud: on a cloud of 100 computes, a wave's
// host has 98 computes outside its batch, more than evacuate takes (64): its evacuate child gets
// 64, first where the capacity check placed its instances, then the roomiest others (ties by
// name), and the wave completes.
func TestRollingMaintenanceBoundsEvacuateTargetsOnALargeCloud(t *testing.T) {
	var computes []string
	for i := 1; i <= 100; i++ {
		computes = append(computes, fmt.Sprintf("compute%03d", i))
	}
	f := newRollFixtureOf(t, computes, 2)
	for _, h := range computes {
		f.freeRAM[h] = 10000
	}
	// PlanMoves puts each instance (512 MB) on the target with the most free RAM: compute042
	// (the first of the two with 10,400), then compute099; compute077 is the roomiest other.
	f.freeRAM["compute042"], f.freeRAM["compute099"], f.freeRAM["compute077"] = 10400, 10400, 10200
	in := rollInput()
	in.Role, in.BatchBy, in.BatchSize, in.Hosts = "", "", 2, []string{"compute001", "compute002"}
	f.approveGate(wf.GateApprovePlan, time.Minute)
	f.run(wf.RollingMaintenance.Type, in)
	rep := f.report()
	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	assert.Contains(t, rep.Summary, "2 of 2 host(s) done")

	want := []string{"compute042", "compute099", "compute077"}
	for _, h := range computes[2:] {
		if len(want) < 64 && !slices.Contains(want, h) {
			want = append(want, h)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	require.Len(t, f.evacuated, 2)
	for _, ev := range f.evacuated {
		assert.Equal(t, want, ev.Targets, ev.Host)
		assert.NoError(t, ev.Validate(), "evacuate takes its input")
	}
	for id, h := range f.where {
		assert.Equal(t, map[byte]string{'1': "compute001", '2': "compute002"}[id[1]], h, "%s is back", id)
	}
	plan := strings.Join(rep.Plan, "\n")
	assert.Contains(t, plan, "targets compute042, compute099, compute077, compute003, compute004, compute005, compute006, compute007 and 56 more (64 in all))")
}

// runChain runs the wave as Temporal runs a chain that continues as new: each run in a test
// environment of its own on the same simulated world, the next one with the input the last one
// continued with, every run's history as long as the budget (so that each run does one host).
// It returns how many runs the chain had.
func (f *rollFixture) runChain(in wf.RollingMaintenanceInput) int {
	f.t.Helper()
	f.env.SetCurrentHistoryLength(f.policy.HistoryBudget + 1)
	f.run(wf.RollingMaintenance.Type, in)
	for runs := 1; ; runs++ {
		require.True(f.t, f.env.IsWorkflowCompleted())
		var can *workflow.ContinueAsNewError
		if !errors.As(f.env.GetWorkflowError(), &can) {
			return runs
		}
		require.Less(f.t, runs, 10, "a chain of at most one run per host")
		var next wf.RollingMaintenanceInput
		require.NoError(f.t, converter.GetDefaultDataConverter().FromPayloads(can.Input, &next))
		require.NotNil(f.t, next.Continued)
		f.t.Logf("run %d continued as new: input %d bytes, %d steps", runs, can.Input.Size(), len(next.Continued.Steps))
		f.fixture = newFixture(f.t, f.policy)
		f.mockWorld()
		f.env.SetContinuedExecutionRunID(fmt.Sprintf("run-%d", runs))
		f.env.SetCurrentHistoryLength(f.policy.HistoryBudget + 1)
		f.run(wf.RollingMaintenance.Type, next)
	}
}

// TestRollingMaintenanceContinuesAsNewBetweenHosts: with a history budget every host passes, the
// wave continues as new between its hosts (three runs for three hosts) and ends as one run
// would: planned and approved once, the canary's gate asked once, every host done once and in
// order, the instances back, and the report the whole chain's.
func TestRollingMaintenanceContinuesAsNewBetweenHosts(t *testing.T) {
	f := newRollFixture(t)
	f.policy.HistoryBudget = 100
	f.fixture = newFixture(t, f.policy)
	f.mockWorld()
	f.approveGate(wf.GateApprovePlan, time.Minute)
	f.approveGate(wf.GateCanaryOK, 3*time.Hour)
	runs := f.runChain(rollInput())
	rep := f.report()
	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	assert.Equal(t, 3, runs, "one run per host")
	assert.EqualValues(t, 3, rep.Details["runs"])
	assert.Empty(t, rep.LeftState)
	assert.Contains(t, rep.Summary, "3 of 3 host(s) done")
	assert.Contains(t, stepDetail(rep, "wave"), "done: [compute1, compute2, compute3]; in progress: []; untouched: []")
	require.Len(t, rep.Decisions, 2, "approved once, the canary once: %+v", rep.Decisions)
	assert.Equal(t, wf.GateApprovePlan, rep.Decisions[0].Name)
	assert.Equal(t, wf.GateCanaryOK, rep.Decisions[1].Name)
	assert.NotEmpty(t, rep.Plan, "the first run's plan")
	// The hosts of the earlier runs are one step each (their own steps are in those runs'
	// histories), the last run's host has all its steps.
	state := map[string]wf.StepState{}
	for _, s := range rep.Steps {
		state[s.Name] = s.State
	}
	for i, h := range []string{"compute1", "compute2"} {
		assert.Equal(t, wf.StepDone, state[h], "%s in the report: %+v", h, rep.Steps)
		assert.Equal(t, fmt.Sprintf("done: 2 of 2 moved back to %s (15 step(s): 15 done, 0 skipped, 0 failed; each one in the history of run %d of the chain)", h, i+1), stepDetail(rep, h))
		assert.NotContains(t, state, h+"/evacuate")
		assert.NotContains(t, state, h+"/verify-reconnect", "folded with the host's other steps")
	}
	assert.NotContains(t, state, "verify-reconnect", "no step shared by the hosts")
	assert.NotContains(t, state, "acquire-lease")
	for _, s := range []string{"evacuate", "acquire-lease", "disable", "reboot", "verify-reconnect", "post-reboot-check", "enable", "migrate-back"} {
		assert.Equal(t, wf.StepDone, state["compute3/"+s], "compute3/%s in the report", s)
	}
	assert.Equal(t, wf.StepDone, state["wave"])

	f.mu.Lock()
	defer f.mu.Unlock()
	for id, h := range f.where {
		assert.Equal(t, "compute"+id[1:2], h, id)
	}
	var seq []string
	for _, c := range f.calls {
		if !strings.HasPrefix(c, "move:") {
			seq = append(seq, strings.SplitN(c, ":", 3)[0]+":"+strings.SplitN(c, ":", 3)[1])
		}
	}
	var want []string
	for _, h := range []string{"compute1", "compute2", "compute3"} {
		want = append(want, "evacuate:"+h, "disable:"+h, "reboot:"+h, "post-reboot-check:"+h, "enable:"+h)
	}
	assert.Equal(t, want, seq, "every host once, in order")
	assert.Equal(t, []string{"compute1"}, f.evacuated[1].Targets, "the plan's targets, carried")
}
