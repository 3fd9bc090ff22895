//go:build e2e

package e2e

// Evacuate and RecoverHost end to end: the real worker on a real Temporal dev
// server, over real SSH, against the lab's real Nova (fake hypervisors), Placement and MariaDB.

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/flavors"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stackrun/stackrun/internal/app/control"
	"github.com/stackrun/stackrun/workflows"
)

func evacInput(host string) *workflows.EvacuateInput {
	return &workflows.EvacuateInput{Meta: workflows.Meta{RequestedBy: "alice", Reason: "e2e maintenance"}, Host: host, Parallel: 3}
}

// Test 1: eight instances on compute1 (six ACTIVE, one SHUTOFF, one ERROR).
func TestNovaEvacuateComputeHost(t *testing.T) {
	l := newNovaLab(t)
	ids := l.boot("evac", "compute1", 8)
	l.stop(ids[6])
	l.setError(ids[7])

	// Dry run: the plan, and nothing changes.
	in := evacInput("compute1")
	in.DryRun = true
	rep := l.report(l.start("evacuate", in), 2*time.Minute)
	require.Equal(t, workflows.StatusCompleted, rep.Status, rep.Summary)
	plan := strings.Join(rep.Plan, "\n")
	for i, id := range ids {
		assert.Contains(t, plan, id)
		switch {
		case i < 6:
			assert.Regexp(t, id+`\) \[ACTIVE\]: live-migrate compute1 → compute[23]`, plan)
		case i == 6:
			assert.Regexp(t, id+`\) \[SHUTOFF\]: cold-migrate \+ confirm compute1 → compute[23]`, plan)
		default:
			assert.Regexp(t, id+`\) \[ERROR\]: SKIP`, plan)
		}
	}
	assert.Equal(t, "enabled", l.service("compute1").Status)
	assert.Empty(t, l.migrations(ids), "a dry run migrates nothing")
	for _, id := range ids {
		assert.Equal(t, "compute1", l.server(id).Host)
	}

	// The real run waits at approve-plan; the requester may not approve it (two-person rule).
	id := l.start("evacuate", evacInput("compute1"))
	l.waitFor(id, time.Minute, "gate approve-plan", func(st workflows.Status) bool {
		return len(st.OpenGates) == 1 && st.OpenGates[0].Name == workflows.GateApprovePlan
	})
	assert.Equal(t, "enabled", l.service("compute1").Status, "nothing changes before approval")
	var sawDisabled atomic.Bool
	stopWatch := make(chan struct{})
	go func() {
		for {
			select {
			case <-stopWatch:
				return
			case <-time.After(500 * time.Millisecond):
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			svcs, err := l.cl.ComputeServices(ctx, "nova-compute")
			cancel()
			if err != nil {
				continue
			}
			for _, s := range svcs {
				if s.Host == "compute1" && s.Status == "disabled" && s.DisabledReason == "e2e maintenance" {
					sawDisabled.Store(true)
				}
			}
		}
	}()
	l.approve(id, workflows.GateApprovePlan, "bob")
	rep = l.report(id, 10*time.Minute)
	close(stopWatch)
	require.Equal(t, workflows.StatusCompleted, rep.Status, "%s\nsteps: %+v\nfindings: %+v", rep.Summary, rep.Steps, rep.Findings)
	assert.True(t, sawDisabled.Load(), "compute1 was disabled with the reason during the run")
	assert.Equal(t, "enabled", l.service("compute1").Status, "compute1 is enabled after")
	assert.Empty(t, rep.LeftState)

	for i, sid := range ids {
		s := l.server(sid)
		switch {
		case i < 6:
			assert.Contains(t, []string{"compute2", "compute3"}, s.Host, sid)
			assert.Equal(t, "ACTIVE", s.Status, sid)
		case i == 6:
			assert.Contains(t, []string{"compute2", "compute3"}, s.Host, sid)
			assert.Equal(t, "SHUTOFF", s.Status, sid)
		default:
			assert.Equal(t, "compute1", s.Host, "the ERROR instance is left")
			assert.Equal(t, "ERROR", s.Status)
		}
		if i < 7 {
			st := stepByName(rep, "migrate/"+sid)
			require.NotNil(t, st, sid)
			assert.Equal(t, workflows.StepDone, st.State)
			assert.Contains(t, st.Detail, "compute1 → "+s.Host, "the report says from → to")
		}
	}
	var errFinding bool
	for _, f := range rep.Findings {
		if strings.Contains(f.Message, ids[7]) {
			errFinding = true
		}
	}
	assert.True(t, errFinding, "the ERROR instance is reported: %+v", rep.Findings)
	m := l.migrations(ids)
	assert.Equal(t, 6, m["live-migration"], "%v", m)
	assert.Equal(t, 1, m["migration"], "%v", m)
}

// Test 2: SIGKILL the worker while migrations are in flight; a new worker finishes the run and
// nothing is migrated twice.
func TestNovaEvacuateSurvivesWorkerKill(t *testing.T) {
	l := newNovaLab(t)
	ids := l.boot("kill", "compute2", 6)
	in := evacInput("compute2")
	in.Parallel = 2
	in.Targets = []string{"compute3"}
	id := l.start("evacuate", in)
	l.waitFor(id, time.Minute, "gate approve-plan", func(st workflows.Status) bool { return len(st.OpenGates) == 1 })
	l.approve(id, workflows.GateApprovePlan, "bob")
	// Kill once at least one move is done and others are running.
	l.waitFor(id, 5*time.Minute, "a move done", func(st workflows.Status) bool {
		done, running := 0, 0
		for _, s := range st.Steps {
			if strings.HasPrefix(s.Name, "migrate/") {
				switch s.State {
				case workflows.StepDone:
					done++
				case workflows.StepRunning:
					running++
				}
			}
		}
		return done >= 1 && running >= 1
	})
	require.NoError(t, l.worker.Process.Signal(syscall.SIGKILL))
	_, _ = l.worker.Process.Wait()
	t.Log("worker killed mid-migrations")
	time.Sleep(3 * time.Second)
	l.worker = startWorker(t, l.cfgPath, l.srv)

	rep := l.report(id, 10*time.Minute)
	require.Equal(t, workflows.StatusCompleted, rep.Status, "%s\nsteps: %+v", rep.Summary, rep.Steps)
	moved := 0
	for _, sid := range ids {
		s := l.server(sid)
		assert.Equal(t, "compute3", s.Host)
		assert.Equal(t, "ACTIVE", s.Status)
		if s.Host == "compute3" {
			moved++
		}
	}
	m := l.migrations(ids)
	assert.Equal(t, moved, m["live-migration"], "one migration record per instance moved: %v", m)
	assert.Equal(t, len(ids), moved)
}

// Test 3: a migration that cannot succeed (its only target forced down mid-run) stalls its step;
// resolve skip lets the run finish and the report says so.
func TestNovaEvacuateStalledMigrationSkip(t *testing.T) {
	l := newNovaLab(t)
	ids := l.boot("stall", "compute3", 2)
	in := evacInput("compute3")
	in.Parallel = 1
	in.Targets = []string{"compute2"}
	id := l.start("evacuate", in)
	l.waitFor(id, time.Minute, "gate approve-plan", func(st workflows.Status) bool { return len(st.OpenGates) == 1 })
	// The only target goes down before any migration starts.
	out, err := exec.Command(l.labfail, "force-down", "compute2").CombinedOutput()
	require.NoError(t, err, string(out))
	l.approve(id, workflows.GateApprovePlan, "bob")
	st := l.waitFor(id, 5*time.Minute, "a stalled migration", func(st workflows.Status) bool { return len(st.Stalled) > 0 })
	step := st.Stalled[0].Step
	require.True(t, strings.HasPrefix(step, "migrate/"), step)
	t.Logf("stalled: %s: %s", step, st.Stalled[0].Error)
	ctx, cancel := l.ctx()
	_, err = resolve(ctx, l, id, step, workflows.ResolveSkip)
	cancel()
	require.NoError(t, err)
	// The second one stalls the same way.
	st = l.waitFor(id, 5*time.Minute, "the second stalled migration", func(st workflows.Status) bool {
		return len(st.Stalled) > 0 && st.Stalled[0].Step != step
	})
	ctx, cancel = l.ctx()
	_, err = resolve(ctx, l, id, st.Stalled[0].Step, workflows.ResolveSkip)
	cancel()
	require.NoError(t, err)
	rep := l.report(id, 5*time.Minute)
	require.Equal(t, workflows.StatusCompleted, rep.Status, rep.Summary)
	assert.Contains(t, rep.Summary, "0 instance(s) moved, 2 left")
	for _, sid := range ids {
		s := stepByName(rep, "migrate/"+sid)
		require.NotNil(t, s)
		assert.Equal(t, workflows.StepSkipped, s.State)
		assert.Contains(t, s.Detail, "left on compute3")
		assert.Equal(t, "compute3", l.server(sid).Host)
	}
	assert.Equal(t, "enabled", l.service("compute3").Status)
}

func resolve(ctx context.Context, l *novaLab, id, step, action string) (workflows.Decision, error) {
	return control.Resolve(ctx, l.srv.Client, id, workflows.ResolveRequest{Step: step, Action: action, By: "bob", Comment: "e2e", Via: "cli"}, as(l.t, "bob"))
}

// Test 4: targets restricted so that the instances cannot fit: refused before any change.
func TestNovaEvacuateRefusedForCapacity(t *testing.T) {
	l := newNovaLab(t)
	// A flavor with a 250 TB disk: the fake hypervisors have 600 TB each, so two such guests fill
	// most of a host, and a third on the target leaves room for one more only.
	ctx, cancel := l.ctx()
	fl, err := flavors.Create(ctx, l.cl.Compute, flavors.CreateOpts{Name: fmt.Sprintf("e2e-big-%d", time.Now().UnixNano()), VCPUs: 1, RAM: 512, Disk: gophercloud.IntToPointer(250000)}).Extract()
	cancel()
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := l.ctx()
		defer cancel()
		_ = flavors.Delete(ctx, l.cl.Compute, fl.ID).ExtractErr()
	})
	l.flavor = fl.ID
	ids := l.boot("cap", "compute3", 2)
	l.boot("cap-target", "compute2", 1)
	in := evacInput("compute3")
	in.Targets = []string{"compute2"}
	rep := l.report(l.start("evacuate", in), 2*time.Minute)
	require.Equal(t, workflows.StatusFailed, rep.Status, rep.Summary)
	assert.Contains(t, rep.Summary, "not enough capacity on the targets")
	assert.Contains(t, rep.Summary, "1 instance(s) fit nowhere")
	assert.Contains(t, rep.Summary, "250000 GB disk")
	t.Logf("refusal: %s", rep.Summary)
	assert.Empty(t, rep.Decisions, "no gate was reached")
	assert.Equal(t, "enabled", l.service("compute3").Status)
	assert.Empty(t, l.migrations(ids))
	for _, a := range rep.Audit {
		assert.NotEqual(t, "SetComputeService", a.Activity)
		assert.NotEqual(t, "MoveInstance", a.Activity)
	}
}

// Test 6: bad input — clear errors, nothing started or changed.
func TestNovaEvacuateBadInput(t *testing.T) {
	l := newNovaLab(t)
	rb, err := workflows.FindRunbook("evacuate")
	require.NoError(t, err)
	bad := map[string]*workflows.EvacuateInput{}
	in := evacInput("compute1")
	in.Targets = []string{"compute1"}
	bad["is the host being emptied"] = in
	in = evacInput("compute1")
	in.Parallel = -1 // 0 means policy.default_parallelism
	bad["parallel \"-1\": must be between 1 and 32"] = in
	in = evacInput("compute1; reboot")
	bad["not a valid host name"] = in
	in = evacInput("compute1")
	in.Targets = []string{"$(halt)"}
	bad["to \"$(halt)\": not a valid host name"] = in
	in = evacInput("compute1")
	in.Reason = "x\x1b[31m"
	bad["control characters"] = in
	for want, in := range bad {
		ctx, cancel := l.ctx()
		_, err := control.Start(ctx, l.srv.Client, l.cfg.Temporal.TaskQueue, rb, in, asRequester(t, in))
		cancel()
		require.Error(t, err, want)
		assert.ErrorIs(t, err, control.ErrInvalidInput)
		assert.Contains(t, err.Error(), want)
	}
	// An unknown host passes validation but the run refuses it before any change.
	rep := l.report(l.start("evacuate", evacInput("compute9")), 2*time.Minute)
	require.Equal(t, workflows.StatusFailed, rep.Status)
	assert.Contains(t, rep.Summary, "compute9")
	t.Logf("unknown host: %s", rep.Summary)
	for _, a := range rep.Audit {
		assert.NotEqual(t, "SetComputeService", a.Activity)
	}
	for _, h := range []string{"compute1", "compute2", "compute3"} {
		assert.Equal(t, "enabled", l.service(h).Status)
	}
}
