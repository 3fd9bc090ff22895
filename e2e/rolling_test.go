//go:build e2e

package e2e

// rolling-maintenance end to end (issue 12, test 4): the real worker on a real Temporal dev
// server, over real SSH, against the lab: compute1..3 with two instances each, --role compute
// --batch-by rack --action reboot, max_hosts_out_of_service 1. Each host is evacuated (a real
// evacuate child run, its plan approved by a signed operator), "rebooted" (labctl reboot: every
// service and sshd stop, the host's boot time changes), checked (post-reboot-check child), and
// gets its instances back. A watcher samples Nova's services and the nova-compute processes every
// second: never two computes out of service at once.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/internal/app/control"
	"github.com/stackrun/stackrun/workflows"
)

var rollComputes = []string{"compute1", "compute2", "compute3"}

// bootTime is the lab host's boot time (labctl uptime: since its last labctl reboot).
func (l *novaLab) bootTime(host string) time.Time {
	l.t.Helper()
	out, err := exec.Command(l.labctl, "uptime", host).Output()
	require.NoError(l.t, err, "labctl uptime %s", host)
	secs, err := strconv.ParseFloat(strings.Fields(string(out))[0], 64)
	require.NoError(l.t, err)
	return time.Now().Add(-time.Duration(secs * float64(time.Second)))
}

// outWatch samples, every second, which computes are out of service: disabled or down in Nova, or
// their nova-compute process not running.
type outWatch struct {
	mu      sync.Mutex
	maxOut  int
	overlap []string
	seenOut map[string]bool
	samples int
	stop    chan struct{}
	done    chan struct{}
}

func (l *novaLab) watchOut() *outWatch {
	w := &outWatch{seenOut: map[string]bool{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			select {
			case <-w.stop:
				return
			case <-time.After(time.Second):
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			svcs, err := l.cl.ComputeServices(ctx, "nova-compute")
			cancel()
			if err != nil {
				continue
			}
			var out []string
			for _, s := range svcs {
				running := exec.Command(l.labctl, "status", s.Host, "nova-compute").Run() == nil
				if s.Status == "disabled" || s.State != "up" || !running {
					out = append(out, fmt.Sprintf("%s(%s,%s,running=%v)", s.Host, s.Status, s.State, running))
				}
			}
			w.mu.Lock()
			w.samples++
			w.maxOut = max(w.maxOut, len(out))
			if len(out) > 1 {
				w.overlap = append(w.overlap, time.Now().Format(time.TimeOnly)+" "+strings.Join(out, " "))
			}
			for _, o := range out {
				w.seenOut[o[:strings.IndexByte(o, '(')]] = true
			}
			w.mu.Unlock()
		}
	}()
	return w
}

// approveAll approves, as alice, every gate that the run or one of its children opens, until the
// run ends; it returns the gates it approved.
func (l *novaLab) approveAll(id string, children []string, timeout time.Duration) []string {
	l.t.Helper()
	var approved []string
	end := time.Now().Add(timeout)
	for time.Now().Before(end) {
		for _, run := range append([]string{id}, children...) {
			ctx, cancel := l.ctx()
			st, err := control.Status(ctx, l.srv.Client, run)
			cancel()
			if err != nil {
				continue // a child not started yet
			}
			if run == id {
				switch st.Status {
				case workflows.StatusCompleted, workflows.StatusFailed, workflows.StatusAborted:
					return approved
				}
			}
			require.Empty(l.t, st.Stalled, "run %s stalled", run)
			for _, g := range st.OpenGates {
				l.approve(run, g.Name, "alice")
				approved = append(approved, run+":"+g.Name)
			}
		}
		time.Sleep(time.Second)
	}
	l.t.Fatalf("run %s did not end within %s (approved %v)", id, timeout, approved)
	return nil
}

// logTimeline logs each step of the runs (that answer) with its start, duration and state: where
// the wave's time went, also when the test fails.
func (l *novaLab) logTimeline(t0 time.Time, runs []string) {
	for _, run := range runs {
		ctx, cancel := l.ctx()
		st, err := control.Status(ctx, l.srv.Client, run)
		cancel()
		if err != nil {
			continue
		}
		var b strings.Builder
		for _, s := range st.Steps {
			if s.Started == nil {
				continue
			}
			d := "-"
			if s.Ended != nil {
				d = s.Ended.Sub(*s.Started).Round(100 * time.Millisecond).String()
			}
			fmt.Fprintf(&b, "\n  +%4.0fs %-8s %-28s %s", s.Started.Sub(t0).Seconds(), d, s.Name, s.State)
		}
		l.t.Logf("timeline of %s (%s):%s", run, st.Status, b.String())
	}
}

func TestRollingMaintenanceRebootOnLab(t *testing.T) {
	t0 := time.Now()
	if b, err := os.ReadFile(labConfig(t)); err != nil || !strings.Contains(string(b), "host_reboot:") {
		t.Fatalf("the lab's stackrun.yaml maps no host_reboot (labctl reboot): apply lab/ with lab/up.sh (%v)", err)
	}
	l := newNovaLab(t, "STACKRUN_POLICY_MAX_HOSTS_OUT_OF_SERVICE=1")
	// The wave moves every instance of a host; instances another test left behind (in whatever
	// state) would make this test about them: it starts from computes without foreign instances.
	ctx0, cancel0 := l.ctx()
	for _, h := range rollComputes {
		list, err := l.cl.ServersOnHost(ctx0, h)
		require.NoError(t, err)
		for _, s := range list {
			t.Errorf("%s has an instance this test did not create: %s (%s, %s): the lab must be left without instances", h, s.Name, s.ID, s.Status)
		}
	}
	cancel0()
	if t.Failed() {
		t.FailNow()
	}
	on := map[string][]string{}
	var all []string
	for _, h := range rollComputes {
		on[h] = l.boot("roll-"+h, h, 2)
		all = append(all, on[h]...)
	}
	booted := map[string]time.Time{}
	for _, h := range rollComputes {
		booted[h] = l.bootTime(h)
	}

	// A dry run plans the three batches (one rack each) and changes nothing.
	in := &workflows.RollingMaintenanceInput{Meta: workflows.Meta{RequestedBy: "carol", Reason: "e2e rolling reboot"},
		Role: "compute", BatchBy: "rack", Action: workflows.ActionReboot, Parallel: 2}
	dry := *in
	dry.DryRun = true
	rep := l.report(l.start("rolling-maintenance", &dry), 2*time.Minute)
	require.Equal(t, workflows.StatusCompleted, rep.Status, rep.Summary)
	assert.Contains(t, strings.Join(rep.Plan, "\n"), "reboot of 3 compute host(s) in 3 batch(es): 1 (rack=r1, the canary): compute1; 2 (rack=r2): compute2; 3 (rack=r3): compute3")
	assert.Empty(t, l.migrations(all), "a dry run migrates nothing")

	w := l.watchOut()
	started := time.Now()
	id := l.start("rolling-maintenance", in)
	var children []string
	for _, h := range rollComputes {
		children = append(children, id+"/"+h+"/evacuate")
	}
	defer func() {
		runs := []string{id}
		for _, h := range rollComputes {
			runs = append(runs, id+"/"+h+"/evacuate", id+"/"+h+"/post-reboot-check")
		}
		l.logTimeline(started, runs)
	}()
	approved := l.approveAll(id, children, 12*time.Minute)
	close(w.stop)
	<-w.done
	wall := time.Since(started)
	rep = l.report(id, time.Minute)
	require.Equal(t, workflows.StatusCompleted, rep.Status, "%s; left: %s; findings %+v", rep.Summary, rep.LeftState, rep.Findings)
	t.Logf("rolling reboot of 3 computes (2 instances each): %s for the run, %s for the whole test; approved %v", wall.Round(time.Second), time.Since(t0).Round(time.Second), approved)

	// Signed gates: the wave's plan, each host's evacuation plan, the canary.
	assert.Contains(t, approved, id+":"+workflows.GateApprovePlan)
	assert.Contains(t, approved, id+":"+workflows.GateCanaryOK)
	for _, c := range children {
		assert.Contains(t, approved, c+":"+workflows.GateApprovePlan)
	}
	// Never two computes out at once (max_hosts_out_of_service 1), and each one was out.
	w.mu.Lock()
	assert.Equal(t, 1, w.maxOut, "computes out of service at once (samples %d): %v", w.samples, w.overlap)
	for _, h := range rollComputes {
		assert.True(t, w.seenOut[h], "%s was never seen out of service in %d samples", h, w.samples)
	}
	w.mu.Unlock()
	// The lease's own record: one slot, nobody holding or waiting.
	ctx, cancel := l.ctx()
	v, err := l.srv.Client.QueryWorkflow(ctx, activities.LeaseWorkflowID, "", workflows.QueryLease)
	cancel()
	require.NoError(t, err)
	var ls activities.LeaseState
	require.NoError(t, v.Get(&ls))
	assert.Equal(t, 1, ls.Max)
	assert.Empty(t, ls.Holders)
	assert.Empty(t, ls.Waiting)

	for _, h := range rollComputes {
		// Rebooted: a boot time after the run started, and checked after it.
		assert.True(t, l.bootTime(h).After(started), "%s has no new boot time (was %s)", h, booted[h])
		assert.Equal(t, workflows.StepDone, stepByName(rep, h+"/post-reboot-check").State)
		assert.Equal(t, workflows.StepDone, stepByName(rep, h+"/wait-boot").State)
		// Evacuated by its own evacuate run, back in service, its instances back.
		assert.Contains(t, stepByName(rep, h+"/evacuate").Detail, h+" emptied: 2 instance(s) moved")
		assert.Contains(t, stepByName(rep, h+"/migrate-back").Detail, "2 of 2 moved back to "+h)
		assert.Equal(t, "enabled", l.service(h).Status)
		for _, sid := range on[h] {
			s := l.server(sid)
			assert.Equal(t, h, s.Host, sid)
			assert.Equal(t, "ACTIVE", s.Status, sid)
		}
	}
	assert.Equal(t, map[string]int{"live-migration": 2 * len(all)}, l.migrations(all), "each instance moved away and back once")
	assert.Contains(t, rep.Summary, "3 of 3 host(s) done")
	assert.Empty(t, rep.LeftState)
}
