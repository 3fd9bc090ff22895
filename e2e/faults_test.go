//go:build e2e

package e2e

// Runbooks under injected API faults: the worker reaches Keystone, Nova, Placement, Glance,
// Neutron and Swift only through a real proxy (internal/testenv/faultproxy) that answers 20 % of
// the requests with a 503, a reset before or after the service handled them, an answer held
// past the client's timeout, or a slow body. The runs must end as they do without faults, with
// nothing done twice: a live migration whose POST was "lost" after Nova accepted it is found on
// the retry, not started again.

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stackrun/stackrun/config"
	"github.com/stackrun/stackrun/internal/app/control"
	"github.com/stackrun/stackrun/internal/testenv/devserver"
	"github.com/stackrun/stackrun/internal/testenv/faultproxy"
	"github.com/stackrun/stackrun/tests/crash/results"
	"github.com/stackrun/stackrun/workflows"
)

func TestFaultsOnLab(t *testing.T) {
	// The seed's draws go to whichever request comes next, so which requests are faulted depends
	// on timing; the writes that matter most are faulted by rule: the first server action (a
	// migration) loses Nova's answer after Nova carried it out, the first service update gets a 503.
	proxy := faultproxy.New(faultproxy.Options{Seed: 20261201, Rate: 0.2, HangFor: 15 * time.Second, SlowChunk: 20 * time.Millisecond,
		Force: []faultproxy.Forced{
			{Method: http.MethodPost, PathSuffix: "/action", Kind: faultproxy.ResetAfter},
			{Method: http.MethodPut, PathSuffix: "", Kind: faultproxy.Status503},
		}})
	t.Cleanup(proxy.Close)
	lab := requireLab(t)
	clouds := faultyClouds(t, proxy, lab.CloudsFile)
	// MariaDB too (the evacuation's API-versus-database cross-check reads Nova's tables): the
	// pool keeps its connections, so every one is killed within 3 s of opening.
	dbCutter := faultproxy.NewTCP(20261201, 1, 3*time.Second)
	t.Cleanup(dbCutter.Close)
	dbFront, err := dbCutter.Forward(lab.Env["LAB_IP_controller"] + ":3306")
	require.NoError(t, err)
	dsn := func(db string) string { return "stackrun_ro:labro@tcp(" + dbFront + ")/" + db + "?parseTime=true" }
	// The test's own clients go straight to the lab; only the worker's pass through the proxies.
	l := newNovaLab(t, "STACKRUN_OPENSTACK_CLOUDS_FILE="+clouds, "STACKRUN_OPENSTACK_REQUEST_TIMEOUT=5s",
		"STACKRUN_DATABASES_NOVA_DSN="+dsn("nova"), "STACKRUN_DATABASES_NOVA_API_DSN="+dsn("nova_api"))

	proxy.Enable(false)
	ids := l.boot("fault", "compute1", 3)
	l.stop(ids[2])
	proxy.Enable(true)

	// Evacuation: two live migrations, one cold migration with its confirm, the service disabled
	// and enabled again, all through the faults.
	id := l.start("evacuate", evacInput("compute1"))
	l.waitFor(id, 5*time.Minute, "gate approve-plan", func(st workflows.Status) bool {
		return len(st.OpenGates) == 1 && st.OpenGates[0].Name == workflows.GateApprovePlan
	})
	l.approve(id, workflows.GateApprovePlan, "bob")
	rep := l.report(id, 15*time.Minute)
	require.Equal(t, workflows.StatusCompleted, rep.Status, "%s\nsteps: %+v\nfindings: %+v", rep.Summary, rep.Steps, rep.Findings)
	proxy.Enable(false)
	for _, st := range rep.Steps {
		// The move whose answer was lost is found by its migration record on the retry: it is
		// this run's move, not one that "was already there".
		assert.NotContains(t, st.Detail, "was already there", "step %s", st.Name)
	}
	for i, sid := range ids {
		s := l.server(sid)
		assert.Contains(t, []string{"compute2", "compute3"}, s.Host, sid)
		if i < 2 {
			assert.Equal(t, "ACTIVE", s.Status, sid)
		} else {
			assert.Equal(t, "SHUTOFF", s.Status, sid)
		}
		n := l.migrations([]string{sid})
		assert.Equal(t, 1, n["live-migration"]+n["migration"], "%s migrated %v times: nothing may be done twice", sid, n)
	}
	assert.Equal(t, "enabled", l.service("compute1").Status, "compute1 is enabled after")
	evac := proxy.Stats()

	// A post-reboot check of the controller (every API probed through the faults) still finds
	// every service up: injected faults are retried, not reported as outages.
	proxy.Enable(true)
	in := &workflows.PostRebootCheckInput{Meta: workflows.Meta{RequestedBy: "carol"}, Host: "controller"}
	rep = l.report(l.start("post-reboot-check", in), 10*time.Minute)
	require.Equal(t, workflows.StatusCompleted, rep.Status, rep.Summary)
	for _, f := range rep.Findings {
		assert.NotContains(t, strings.ToLower(f.Message), "injected", "a fault reached the report: %+v", f)
	}
	all := proxy.Stats()
	t.Logf("faults injected: evacuation %d of %d requests %v; in all %d of %d %v (by method %v)",
		evac.Total(), evac.Requests, evac.Faults, all.Total(), all.Requests, all.Faults, all.ByMethod)
	writeFaults(t, "faults-api", results.Row{Runbook: "evacuate", FaultsInjected: results.Int(evac.Total() + dbCutsSoFar(dbCutter))},
		results.Row{Runbook: "post-reboot-check", FaultsInjected: results.Int(all.Total() - evac.Total())})
	require.Greater(t, evac.Total(), 5, "too few faults injected during the evacuation to prove anything")
	require.Positive(t, evac.ByMethod["POST"], "no server action met a fault")
	require.Positive(t, evac.ByMethod["PUT"], "no service update met a fault")
	dbConns, dbCuts := dbCutter.Counts()
	t.Logf("MariaDB connections %d, cut mid-stream %d", dbConns, dbCuts)
	require.Positive(t, dbCuts, "no MariaDB connection of the worker was killed (%d seen)", dbConns)
}

// SSH connections cut mid-command (each one within 15 s of opening): a restart of nova-compute still ends Completed with the
// service running and reconnected, and the service restarted once (counted from its PIDs).
func TestSSHFaultsOnLab(t *testing.T) {
	lab := requireLab(t)
	// The SSH pool keeps its connections: every one is cut at a random moment of its first 15 s.
	cutter := faultproxy.NewTCP(20261201, 1, 15*time.Second)
	t.Cleanup(cutter.Close)
	cfgPath := sshFaultConfig(t, cutter, labConfig(t), lab.KnownHosts)
	cfg, err := config.Load(config.LoadOptions{Path: cfgPath})
	require.NoError(t, err)
	srv := devserver.Start(t)
	startWorker(t, cfgPath, srv)

	pidOf := func() string {
		out, _ := lab.Exec(lab.Labctl, "status", "compute2", "nova-compute")
		if _, p, ok := strings.Cut(out, "(pid "); ok {
			return strings.TrimSuffix(strings.TrimSpace(p), ")")
		}
		return ""
	}
	first := pidOf()
	require.NotEmpty(t, first, "nova-compute does not run on compute2")
	pids := map[string]bool{}
	stop := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for {
			if p := pidOf(); p != "" {
				pids[p] = true
			}
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	rb, err := workflows.FindRunbook("restart-service")
	require.NoError(t, err)
	in := &workflows.RestartServiceInput{Meta: workflows.Meta{RequestedBy: "alice", Reason: "e2e ssh faults"}, Host: "compute2", Service: "nova-compute"}
	started, err := control.Start(ctx, srv.Client, cfg.Temporal.TaskQueue, rb, in, asRequester(t, in))
	require.NoError(t, err)
	deadline := time.Now().Add(5 * time.Minute)
	for {
		st, err := control.Status(ctx, srv.Client, started.WorkflowID)
		require.NoError(t, err)
		if len(st.OpenGates) == 1 && st.OpenGates[0].Name == workflows.GateApproveRestart {
			break
		}
		require.True(t, time.Now().Before(deadline), "gate approve-restart not reached: %s %s", st.Status, st.CurrentStep)
		time.Sleep(time.Second)
	}
	_, err = control.Approve(ctx, srv.Client, started.WorkflowID, workflows.GateDecisionRequest{Gate: workflows.GateApproveRestart, By: "bob", Comment: "e2e", Via: "cli"}, as(t, "bob"))
	require.NoError(t, err)
	rep, err := control.Report(ctx, srv.Client, started.WorkflowID, true)
	close(stop)
	<-watched
	require.NoError(t, err)
	require.Equal(t, workflows.StatusCompleted, rep.Status, "%s\nsteps: %+v\nfindings: %+v", rep.Summary, rep.Steps, rep.Findings)
	last := pidOf()
	require.NotEqual(t, first, last, "nova-compute was not restarted")
	delete(pids, first)
	require.Len(t, pids, 1, "nova-compute ran under %d new PIDs: restarted more than once (%v)", len(pids), pids)
	conns, cuts := cutter.Counts()
	t.Logf("SSH connections %d, cut mid-stream %d", conns, cuts)
	writeFaults(t, "faults-ssh", results.Row{Runbook: "restart-service", FaultsInjected: results.Int(cuts)})
	require.Positive(t, cuts, "no connection was cut: the test proved nothing")
}

func dbCutsSoFar(c *faultproxy.TCP) int { _, cuts := c.Counts(); return cuts }

// writeFaults records the faults a passing run survived in the reliability results (the
// "faults injected" column of make reliability's table; tests/crash/results).
func writeFaults(t *testing.T, part string, rows ...results.Row) {
	f := results.File{Part: part, Measured: time.Now().UTC(), Mode: "sample", Rows: rows}
	if err := results.Write(results.Dir(devserver.RepoRoot(t)), f); err != nil {
		t.Errorf("reliability results: %v", err)
	}
}
