package workflows_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"

	"github.com/stackrun/stackrun/activities"
	wf "github.com/stackrun/stackrun/workflows"
)

// recoverFixture mocks a dead compute1 whose instances evacuate to compute2/compute3, except the
// ones in failMove (their evacuation fails every time, so its step stalls). The Nova database of
// the rewrite activities is a map: uuid → host, as the guarded UPDATE sees it.
type recoverFixture struct {
	*evacFixture
	dbHost      map[string]string
	rewrites    int
	reboots     int
	failReboots int // the first failReboots hard reboots fail
	// revived, answers and pings make the dead host report up / answer SSH / answer ping from now on.
	revived, answers, pings bool
	// volumes are the attachments the Nova/Cinder join lists, by host.
	volumes map[string][]activities.VolumeAttachment
}

func newRecoverFixture(t *testing.T, insts []activities.Instance, failMove ...string) *recoverFixture {
	p := basePolicy()
	p.TwoPersonGates = []string{wf.GateConfirmHostDead, wf.GateDBRewrite}
	f := &recoverFixture{evacFixture: &evacFixture{fixture: newFixture(t, p), failMove: map[string]bool{}}, dbHost: map[string]string{}}
	for _, id := range failMove {
		f.failMove[id] = true
	}
	f.env.RegisterActivity(computeAct)
	f.env.RegisterActivity(novaDBAct)
	f.grantLeases()
	f.env.OnActivity(hosts.DescribeHost, mock.Anything, "compute1").Return(computeFacts, nil)
	f.env.OnActivity(hosts.SSHReachable, mock.Anything, "compute1").Return(func(context.Context, string) (activities.Reachability, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.answers {
			return activities.Reachability{Host: "compute1", Reachable: true, Detail: "SSH-2.0-OpenSSH_9.2"}, nil
		}
		return activities.Reachability{Host: "compute1", Detail: "connection refused"}, nil
	})
	f.env.OnActivity(hosts.PingAddress, mock.Anything, "compute1").Return(func(context.Context, string) (activities.Reachability, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.calls = append(f.calls, "ping:compute1")
		if f.pings {
			return activities.Reachability{Host: "compute1", Reachable: true, Detail: "ping 127.0.0.11: answered (rtt min/avg/max/mdev = 0.05/0.06/0.07/0.01 ms)"}, nil
		}
		return activities.Reachability{Host: "compute1", Detail: "ping 127.0.0.11: no answer (2 packets transmitted, 0 received, 100% packet loss)"}, nil
	})
	f.env.OnActivity(computeAct.ComputeServices, mock.Anything).Return(func(context.Context) ([]activities.ComputeService, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		state := "down"
		if f.revived {
			state = "up"
		}
		return []activities.ComputeService{
			{Host: "compute1", ID: "s1", Status: "enabled", State: state},
			{Host: "compute2", ID: "s2", Status: "enabled", State: "up"},
			{Host: "compute3", ID: "s3", Status: "enabled", State: "up"},
		}, nil
	})
	for _, i := range insts {
		f.dbHost[i.ID] = "compute1"
	}
	onHost := func() []string {
		f.mu.Lock()
		defer f.mu.Unlock()
		var ids []string
		for _, i := range insts {
			if f.dbHost[i.ID] == "compute1" {
				ids = append(ids, i.ID)
			}
		}
		return ids
	}
	f.env.OnActivity(computeAct.InstancesOnHost, mock.Anything, "compute1").Return(func(context.Context, string) ([]activities.Instance, error) {
		var out []activities.Instance
		for _, id := range onHost() {
			out = append(out, insts[slices.IndexFunc(insts, func(i activities.Instance) bool { return i.ID == id })])
		}
		return out, nil
	})
	f.env.OnActivity(novaDBAct.DBInstancesOnHost, mock.Anything, "compute1").Return(func(context.Context, string) ([]string, error) { return onHost(), nil })
	f.env.OnActivity(novaDBAct.DBVolumeAttachments, mock.Anything, mock.Anything).Return(func(_ context.Context, host string) ([]activities.VolumeAttachment, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		return append([]activities.VolumeAttachment{}, f.volumes[host]...), nil
	})
	f.env.OnActivity(computeAct.Capacity, mock.Anything, mock.Anything).Return(bigCaps, nil)
	f.env.OnActivity(computeAct.SetComputeService, mock.Anything, mock.Anything).Return(func(_ context.Context, ch activities.ServiceChange) (activities.ComputeService, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.calls = append(f.calls, fmt.Sprintf("service:%s:%v:%v", ch.Host, ch.Disable, ch.ForcedDown != nil))
		return activities.ComputeService{Host: ch.Host}, nil
	})
	f.env.OnActivity(computeAct.MoveInstance, mock.Anything, mock.Anything).Return(func(_ context.Context, req activities.MoveRequest) (activities.MoveResult, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.calls = append(f.calls, "move:"+req.ID+":"+req.Kind)
		if f.failMove[req.ID] {
			return activities.MoveResult{}, temporal.NewApplicationError("move of "+req.ID+" from compute1 failed: it is ACTIVE on compute1 again (migration error: No valid host)", "MoveFailed")
		}
		f.dbHost[req.ID] = req.Target
		return activities.MoveResult{ID: req.ID, From: req.Source, To: req.Target, Status: "ACTIVE", Started: true}, nil
	})
	f.env.OnActivity(novaDBAct.DBRewritePlan, mock.Anything, mock.Anything).Return(func(_ context.Context, want []activities.InstanceRewrite) ([]activities.InstanceRewrite, error) {
		for i := range want {
			want[i].FromNode, want[i].ToNode = want[i].FromHost+".node", want[i].ToHost+".node"
		}
		return want, nil
	})
	f.env.OnActivity(novaDBAct.DBRewriteInstanceHost, mock.Anything, mock.Anything).Return(func(_ context.Context, w activities.InstanceRewrite) (activities.RewriteResult, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.rewrites++
		f.calls = append(f.calls, "rewrite:"+w.ID+":"+w.FromHost+"->"+w.ToHost)
		switch f.dbHost[w.ID] {
		case w.FromHost:
			f.dbHost[w.ID] = w.ToHost
			return activities.RewriteResult{ID: w.ID, RowsAffected: 1}, nil
		case w.ToHost:
			return activities.RewriteResult{ID: w.ID, Already: true}, nil
		}
		return activities.RewriteResult{}, temporal.NewNonRetryableApplicationError("elsewhere", activities.ErrTypeRefused, nil)
	})
	f.env.OnActivity(computeAct.HardRebootOn, mock.Anything, mock.Anything).Return(func(_ context.Context, req activities.HardRebootRequest) (activities.HardRebootResult, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.reboots++
		f.calls = append(f.calls, "reboot:"+req.ID+":"+req.Host)
		if f.reboots <= f.failReboots {
			return activities.HardRebootResult{}, temporal.NewApplicationError("still HARD_REBOOT", "RebootTimeout")
		}
		return activities.HardRebootResult{ID: req.ID, Status: "ACTIVE", Host: req.Host}, nil
	})
	return f
}

func recoverInput(fallback bool) wf.RecoverHostInput {
	return wf.RecoverHostInput{Meta: wf.Meta{RequestedBy: "alice", Reason: "PSU"}, Host: "compute1", Parallel: 2, DBRewriteFallback: fallback}
}

// The evacuation of id-001 stalls; the operator skips it; the fallback's gate lists the exact row
// and refuses the requester; a second person approves; the row is rewritten and the instance hard
// rebooted. The first hard reboot fails (step stalls): retry rewrites again, which changes no row.
func TestRecoverHostDBRewriteFallbackGatedAndIdempotent(t *testing.T) {
	f := newRecoverFixture(t, sampleInstances(3), "id-001")
	f.failReboots = 2 // both attempts of the first hard reboot (ActivityMaxAttempts 2)
	f.approveAt(wf.GateConfirmHostDead, time.Minute)
	f.env.RegisterDelayedCallback(func() {
		st := f.status()
		require.Equal(t, wf.StatusStalled, st.Status)
		require.Equal(t, "evacuate/id-001", st.Stalled[0].Step)
		f.update(wf.UpdateResolve, wf.ResolveRequest{Step: "evacuate/id-001", Action: wf.ResolveSkip, By: "bob"}, "")
	}, 3*time.Hour)
	f.env.RegisterDelayedCallback(func() {
		st := f.status()
		require.Equal(t, wf.StatusWaitingApproval, st.Status)
		require.Len(t, st.OpenGates, 1)
		g := st.OpenGates[0]
		require.Equal(t, wf.GateDBRewrite, g.Name)
		assert.True(t, g.Destructive)
		assert.Contains(t, g.Summary, "id-001: compute1/compute1.node → compute")
		assert.NotContains(t, g.Summary, "id-000", "only the failed instance's row")
		assert.NotContains(t, g.Summary, "id-002")
		f.mu.Lock()
		assert.Zero(t, f.rewrites, "nothing rewritten before the gate")
		f.mu.Unlock()
		f.update(wf.UpdateApprove, wf.GateDecisionRequest{Gate: wf.GateDBRewrite, By: "alice"}, "may not approve the destructive gate")
	}, 4*time.Hour)
	f.approveAt(wf.GateDBRewrite, 5*time.Hour)
	f.env.RegisterDelayedCallback(func() {
		st := f.status()
		require.Equal(t, wf.StatusStalled, st.Status)
		require.Equal(t, "db-rewrite/id-001", st.Stalled[0].Step)
		f.update(wf.UpdateResolve, wf.ResolveRequest{Step: "db-rewrite/id-001", Action: wf.ResolveRetry, By: "bob"}, "")
	}, 8*time.Hour)
	f.run(wf.RecoverHost.Type, recoverInput(true))
	rep := f.report()
	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	assert.Contains(t, rep.Summary, "3 of 3 instance(s) rebuilt elsewhere")

	f.mu.Lock()
	defer f.mu.Unlock()
	assert.Equal(t, 2, f.rewrites, "rewritten, then retried")
	assert.Equal(t, 3, f.reboots)
	assert.NotEqual(t, "compute1", f.dbHost["id-001"])
	var rewrites []string
	for _, c := range f.calls {
		if strings.HasPrefix(c, "rewrite:") {
			rewrites = append(rewrites, c)
		}
	}
	assert.Len(t, slices.Compact(rewrites), 1, "the same row both times: %v", rewrites)
	s := stepNamed(rep, "db-rewrite/id-001")
	require.NotNil(t, s)
	assert.Equal(t, wf.StepDone, s.State)
	assert.Contains(t, s.Detail, "row already rewritten (0 rows affected)")
	assert.Contains(t, stepNamed(rep, "db-rewrite").Detail, "1 of 1 instance(s)")
	var placement bool
	for _, fd := range rep.Findings {
		placement = placement || strings.Contains(fd.Message, "Placement still holds")
	}
	assert.True(t, placement, "the report says Placement was not touched: %+v", rep.Findings)
	require.Len(t, rep.Decisions, 4)
	assert.Equal(t, "bob", rep.Decisions[2].By)
}

// Without --db-rewrite-fallback a failed evacuation stays failed: no rewrite, no gate.
func TestRecoverHostNoDBRewriteWithoutFlag(t *testing.T) {
	f := newRecoverFixture(t, sampleInstances(3), "id-001")
	f.approveAt(wf.GateConfirmHostDead, time.Minute)
	f.env.RegisterDelayedCallback(func() {
		f.update(wf.UpdateResolve, wf.ResolveRequest{Step: "evacuate/id-001", Action: wf.ResolveSkip, By: "bob"}, "")
	}, 3*time.Hour)
	f.run(wf.RecoverHost.Type, recoverInput(false))
	rep := f.report()
	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	assert.Contains(t, rep.Summary, "2 of 3 instance(s) rebuilt elsewhere")
	assert.Zero(t, f.rewrites)
	assert.Zero(t, f.reboots)
	assert.Nil(t, stepNamed(rep, wf.GateDBRewrite))
	assert.Contains(t, rep.LeftState, "1 not [vm-001 (id-001)]")
}

// The second person rejects the rewrite: the run aborts and no row changes.
func TestRecoverHostDBRewriteRejected(t *testing.T) {
	f := newRecoverFixture(t, sampleInstances(2), "id-000")
	f.approveAt(wf.GateConfirmHostDead, time.Minute)
	f.env.RegisterDelayedCallback(func() {
		f.update(wf.UpdateResolve, wf.ResolveRequest{Step: "evacuate/id-000", Action: wf.ResolveSkip, By: "bob"}, "")
	}, 3*time.Hour)
	f.env.RegisterDelayedCallback(func() {
		f.update(wf.UpdateReject, wf.GateDecisionRequest{Gate: wf.GateDBRewrite, By: "bob", Comment: "no"}, "")
	}, 4*time.Hour)
	f.run(wf.RecoverHost.Type, recoverInput(true))
	rep := f.report()
	require.Equal(t, wf.StatusAborted, rep.Status, rep.Summary)
	assert.Zero(t, f.rewrites)
	assert.Contains(t, rep.LeftState, "FORCED DOWN")
	assert.Contains(t, rep.LeftState, "1 not [vm-000 (id-000)]")
}

// Every evacuation succeeds: the fallback's steps are skipped and no gate opens.
func TestRecoverHostDBRewriteNotNeeded(t *testing.T) {
	f := newRecoverFixture(t, sampleInstances(2))
	f.approveAt(wf.GateConfirmHostDead, time.Minute)
	f.run(wf.RecoverHost.Type, recoverInput(true))
	rep := f.report()
	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	assert.Equal(t, wf.StepSkipped, stepNamed(rep, wf.GateDBRewrite).State)
	assert.Zero(t, f.rewrites)
	assert.Len(t, rep.Decisions, 1)
}

func stepNamed(rep *wf.Report, name string) *wf.StepStatus {
	for i := range rep.Steps {
		if rep.Steps[i].Name == name {
			return &rep.Steps[i]
		}
	}
	return nil
}

// Right before forcing the host down the run looks again, even when the plan is fresh (a plan
// older than plan_max_age is made again anyway, stale.go): a host that reports up or answers SSH
// again since the fencing gate is refused with nothing forced down.
func TestRecoverHostRechecksRightBeforeForcingDown(t *testing.T) {
	for name, revive := range map[string]func(f *recoverFixture){
		"nova-compute up again": func(f *recoverFixture) { f.revived = true },
		"answers SSH again":     func(f *recoverFixture) { f.answers = true },
		"answers ping again":    func(f *recoverFixture) { f.pings = true },
	} {
		t.Run(name, func(t *testing.T) {
			f := newRecoverFixture(t, sampleInstances(2))
			f.env.RegisterDelayedCallback(func() {
				require.Equal(t, wf.StatusWaitingApproval, f.status().Status)
				f.mu.Lock()
				revive(f)
				f.mu.Unlock()
			}, 10*time.Minute)
			f.approveAt(wf.GateConfirmHostDead, 20*time.Minute)
			f.run(wf.RecoverHost.Type, recoverInput(false))
			rep := f.report()
			require.Equal(t, wf.StatusFailed, rep.Status, rep.Summary)
			assert.Contains(t, stepDetailErr(rep, "force-down"), "nothing was forced down")
			f.mu.Lock()
			defer f.mu.Unlock()
			for _, c := range f.calls {
				assert.False(t, strings.HasPrefix(c, "service:") || strings.HasPrefix(c, "move:"), "acted on a live host: %s", c)
			}
		})
	}
}

// The reason becomes Nova's disabled_reason (255 characters, text only): checked before anything.
func TestRecoverHostReasonFitsNova(t *testing.T) {
	for name, reason := range map[string]string{
		"too long":   strings.Repeat("x", 250),
		"ESC":        "PSU \x1b[31mred",
		"DEL":        "PSU \x7f",
		"C1 control": "PSU \u0085",
	} {
		in := recoverInput(false)
		in.Reason = reason
		err := in.Validate()
		require.Error(t, err, name)
		assert.Contains(t, err.Error(), "reason", name)
	}
	ok := recoverInput(false)
	ok.Reason = strings.Repeat("x", wf.NovaDisabledReasonMax-len("host failure: "))
	require.NoError(t, ok.Validate(), "exactly 255 with the prefix")
	f := newRecoverFixture(t, sampleInstances(1))
	in := recoverInput(false)
	in.Reason = strings.Repeat("y", 300)
	f.run(wf.RecoverHost.Type, in)
	rep := f.report()
	require.Equal(t, wf.StatusFailed, rep.Status)
	assert.Contains(t, rep.Summary, "invalid input")
	f.env.AssertNotCalled(t, "SetComputeService", mock.Anything, mock.Anything)
}

// A host whose service is down but that still answers (ping here, SSH below) is refused: the
// fencing gate is replaced by confirm-host-dead-override, and nothing is forced down or moved
// unless that gate is approved (signed). Rejected, the run ends with nothing done.
func TestRecoverHostRefusesAHostThatAnswersUnlessOverridden(t *testing.T) {
	for name, answer := range map[string]func(f *recoverFixture){
		"ping": func(f *recoverFixture) { f.pings = true },
		"ssh":  func(f *recoverFixture) { f.answers = true },
	} {
		t.Run(name+" rejected", func(t *testing.T) {
			f := newRecoverFixture(t, sampleInstances(2))
			answer(f)
			f.env.RegisterDelayedCallback(func() {
				st := f.status()
				require.Len(t, st.OpenGates, 1)
				assert.Equal(t, wf.GateConfirmHostDeadOverride, st.OpenGates[0].Name)
				assert.Contains(t, st.OpenGates[0].Summary, "REFUSED")
				assert.Contains(t, st.OpenGates[0].Summary, "ANSWERS")
				f.update(wf.UpdateReject, wf.GateDecisionRequest{Gate: wf.GateConfirmHostDeadOverride, By: "bob", Comment: "fence it first"}, "")
			}, 10*time.Minute)
			f.run(wf.RecoverHost.Type, recoverInput(false))
			rep := f.report()
			require.Equal(t, wf.StatusAborted, rep.Status, rep.Summary)
			assert.Equal(t, wf.StepSkipped, stepNamed(rep, wf.GateConfirmHostDead).State)
			for _, c := range f.calls {
				assert.False(t, strings.HasPrefix(c, "forced-down:") || strings.HasPrefix(c, "move:"), "acted on a host that answers: %s", c)
			}
		})
		t.Run(name+" overridden", func(t *testing.T) {
			f := newRecoverFixture(t, sampleInstances(2))
			answer(f)
			f.approveAt(wf.GateConfirmHostDeadOverride, 10*time.Minute)
			f.run(wf.RecoverHost.Type, recoverInput(false))
			rep := f.report()
			require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
			assert.Contains(t, rep.Summary, "2 of 2 instance(s) rebuilt elsewhere")
			var override bool
			for _, d := range rep.Decisions {
				override = override || (d.Name == wf.GateConfirmHostDeadOverride && d.Outcome == "approved" && d.By == "bob")
			}
			assert.True(t, override, "the override is recorded: %+v", rep.Decisions)
		})
	}
}

// All three signals quiet: the usual fencing gate, and the report lists what each said.
func TestRecoverHostConfirmDownReadsThreeSignals(t *testing.T) {
	f := newRecoverFixture(t, sampleInstances(1))
	f.approveAt(wf.GateConfirmHostDead, 10*time.Minute)
	f.run(wf.RecoverHost.Type, recoverInput(false))
	rep := f.report()
	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	d := stepNamed(rep, "confirm-down").Detail
	assert.Contains(t, d, "service down")
	assert.Contains(t, d, "SSH: no answer")
	assert.Contains(t, d, "ping 127.0.0.11: no answer")
	assert.Contains(t, rep.Details, "confirm_down")
}

// Volumes: after an evacuation Nova re-connected the volume itself (the report says so and checks
// the mapping on the new host); nothing is detached or re-attached.
func TestRecoverHostSaysWhatItDidAboutVolumes(t *testing.T) {
	f := newRecoverFixture(t, sampleInstances(1))
	vol := activities.VolumeAttachment{VolumeID: "vol-1", InstanceID: "id-000"}
	f.volumes = map[string][]activities.VolumeAttachment{"compute1": {vol}}
	f.env.RegisterDelayedCallback(func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.volumes = map[string][]activities.VolumeAttachment{"compute2": {vol}} // the rebuild moved the mapping
	}, 15*time.Minute)
	f.approveAt(wf.GateConfirmHostDead, 10*time.Minute)
	f.run(wf.RecoverHost.Type, recoverInput(false))
	rep := f.report()
	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	actions, ok := rep.Details["volume_actions"].([]any)
	require.True(t, ok, "%#v", rep.Details["volume_actions"])
	require.Len(t, actions, 1)
	assert.Contains(t, actions[0], "vol-1 of id-000: no detach/re-attach needed: Nova's evacuation rebuilt the instance on compute2")
}

// Volumes when the guide's detach/re-attach applies: an instance moved by the database rewrite is
// NOT re-attached by the runbook, and the report says precisely why and what to run by hand (a
// critical finding); an instance Nova rebuilt whose mapping is gone on its new host is a critical
// finding too. (Only Nova's own rebuild, with its mapping in place, needs nothing.)
func TestRecoverHostVolumesAfterRewriteAndLostMapping(t *testing.T) {
	f := newRecoverFixture(t, sampleInstances(2), "id-001")
	volA := activities.VolumeAttachment{VolumeID: "vol-a", InstanceID: "id-000"} // rebuilt by Nova, mapping lost
	volB := activities.VolumeAttachment{VolumeID: "vol-b", InstanceID: "id-001"} // moved by the rewrite
	f.volumes = map[string][]activities.VolumeAttachment{"compute1": {volA, volB}}
	f.env.RegisterDelayedCallback(func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.volumes = map[string][]activities.VolumeAttachment{"compute2": {volB}, "compute3": {volB}}
	}, 2*time.Hour)
	f.approveAt(wf.GateConfirmHostDead, time.Minute)
	f.env.RegisterDelayedCallback(func() {
		f.update(wf.UpdateResolve, wf.ResolveRequest{Step: "evacuate/id-001", Action: wf.ResolveSkip, By: "bob"}, "")
	}, 3*time.Hour)
	f.approveAt(wf.GateDBRewrite, 4*time.Hour)
	f.run(wf.RecoverHost.Type, recoverInput(true))
	rep := f.report()
	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	f.mu.Lock()
	require.Equal(t, 1, f.rewrites, "id-001 moved by the rewrite")
	f.mu.Unlock()

	actions, ok := rep.Details["volume_actions"].([]any)
	require.True(t, ok, "%#v", rep.Details["volume_actions"])
	require.Len(t, actions, 2)
	var rewritten string
	for _, a := range actions {
		if s, _ := a.(string); strings.HasPrefix(s, "vol-b of id-001: ") {
			rewritten = s
		}
	}
	assert.Contains(t, rewritten, "NOT detached and re-attached by this runbook")
	assert.Contains(t, rewritten, "the lab's Cinder cannot attach")
	assert.Contains(t, rewritten, "openstack server remove volume id-001 vol-b; openstack server add volume id-001 vol-b")

	crit := map[string]string{}
	for _, fd := range rep.Findings {
		if fd.Severity == activities.SeverityCritical && strings.HasPrefix(fd.Subject, "volume/") {
			crit[fd.Subject] += fd.Message + "\n"
		}
	}
	assert.Contains(t, crit["volume/vol-b"], "moved by the database rewrite: detach and re-attach it by hand", crit)
	assert.Contains(t, crit["volume/vol-a"], "no longer mapped to id-000 after the rebuild", crit)
	assert.Contains(t, stepNamed(rep, "volumes").Detail, "2 attachment(s), 2 need attention")
}
