//go:build e2e

package e2e

// The opt-in parts of the Nova runbooks on the lab: recover-host's database-rewrite fallback
// (gate db-rewrite, writable DSN, guarded UPDATE, hard reboot) and evacuate's maintenance gate
// (nova-compute stopped and started over SSH, reconnect checked) with migrate-back.

import (
	"context"
	"database/sql"
	"os/exec"
	"strings"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/internal/app/control"
	"github.com/stackrun/stackrun/internal/infra/openstack"
	"github.com/stackrun/stackrun/workflows"
)

// compute2 dies; its instances are to be rebuilt on compute3 only, but compute3 is forced down
// once the fencing gate is approved, so every evacuation is refused by the scheduler and stalls.
// The operator brings compute3 back and skips the stalled evacuations: with
// --db-rewrite-fallback the run lists the exact rows at gate db-rewrite (the requester may not
// approve it), rewrites instances.host/node through the writable account, hard-reboots each
// instance and verifies it ACTIVE on compute3. A second rewrite of the same row changes nothing.
func TestNovaRecoverDBRewriteFallback(t *testing.T) {
	l := newNovaLab(t)
	require.NotEmpty(t, l.cfg.Databases.NovaRWDSN, "the lab's stackrun.yaml has no databases.nova_rw_dsn: re-run lab/up.sh")
	l.deleteNamed("dbrw-") // leftovers of an interrupted run would be evacuated too
	ids := l.boot("dbrw", "compute2", 2)
	out, err := exec.Command(l.labfail, "host-kill", "compute2").CombinedOutput()
	require.NoError(t, err, string(out))
	t.Cleanup(func() {
		if out, err := exec.Command(l.labfail, "host-start", "compute2").CombinedOutput(); err != nil {
			t.Logf("host-start compute2: %v %s", err, out)
		}
	})
	end := time.Now().Add(2 * time.Minute)
	for l.service("compute2").State != "down" {
		require.True(t, time.Now().Before(end), "compute2 never reported down")
		time.Sleep(2 * time.Second)
	}

	id := l.start("recover-host", &workflows.RecoverHostInput{Meta: workflows.Meta{RequestedBy: "alice", Reason: "mainboard"},
		Host: "compute2", Targets: []string{"compute3"}, Parallel: 32, DBRewriteFallback: true})
	// The lab's addresses answer ping (all on lo): the override gate (nova_recover_test.go).
	st := l.waitFor(id, 2*time.Minute, "gate confirm-host-dead-override", func(st workflows.Status) bool {
		return len(st.OpenGates) == 1 && st.OpenGates[0].Name == workflows.GateConfirmHostDeadOverride
	})
	assert.Contains(t, strings.Join(st.Plan, "\n"), "gate db-rewrite")
	// The only target goes down after the plan was made: the evacuations will be refused.
	out, err = exec.Command(l.labfail, "force-down", "compute3").CombinedOutput()
	require.NoError(t, err, string(out))
	l.approve(id, workflows.GateConfirmHostDeadOverride, "bob")

	skipped := map[string]bool{}
	for len(skipped) < len(ids) {
		st = l.waitFor(id, 6*time.Minute, "a stalled evacuation", func(st workflows.Status) bool {
			for _, s := range st.Stalled {
				if !skipped[s.Step] {
					return true
				}
			}
			return false
		})
		for _, s := range st.Stalled {
			if skipped[s.Step] {
				continue
			}
			require.True(t, strings.HasPrefix(s.Step, "evacuate/"), "%s: %s", s.Step, s.Error)
			t.Logf("stalled: %s: %s", s.Step, s.Error)
			if len(skipped) == 0 {
				// The operator repairs the target before choosing the fallback.
				up := false
				ctx, cancel := l.ctx()
				_, err := l.compute().SetComputeService(ctx, activities.ServiceChange{Host: "compute3", ForcedDown: &up})
				cancel()
				require.NoError(t, err)
			}
			ctx, cancel := l.ctx()
			_, err := resolve(ctx, l, id, s.Step, workflows.ResolveSkip)
			cancel()
			require.NoError(t, err)
			skipped[s.Step] = true
		}
	}
	for _, sid := range ids {
		assert.Equal(t, "compute2", l.server(sid).Host, "the evacuation of %s was refused", sid)
	}

	st = l.waitFor(id, 3*time.Minute, "gate db-rewrite", func(st workflows.Status) bool {
		return len(st.OpenGates) == 1 && st.OpenGates[0].Name == workflows.GateDBRewrite
	})
	g := st.OpenGates[0]
	assert.True(t, g.Destructive, "db-rewrite is a two-person gate in the lab")
	t.Logf("gate db-rewrite: %s", g.Summary)
	for _, sid := range ids {
		assert.Regexp(t, sid+`: compute2/\S+ → compute3/\S+`, g.Summary)
	}
	ctx, cancel := l.ctx()
	_, err = control.Approve(ctx, l.srv.Client, id, workflows.GateDecisionRequest{Gate: workflows.GateDBRewrite, By: "alice", Via: "cli"}, as(t, "alice"))
	cancel()
	require.Error(t, err, "the requester may not approve the rewrite")
	assert.Contains(t, err.Error(), "may not approve")
	for _, sid := range ids {
		assert.Equal(t, "compute2", l.server(sid).Host, "nothing rewritten before the gate")
	}
	l.approve(id, workflows.GateDBRewrite, "bob")

	rep := l.report(id, 10*time.Minute)
	require.Equal(t, workflows.StatusCompleted, rep.Status, "%s\nsteps: %+v\nfindings: %+v", rep.Summary, rep.Steps, rep.Findings)
	assert.Contains(t, rep.Summary, "2 of 2 instance(s) rebuilt elsewhere")
	for _, sid := range ids {
		s := l.server(sid)
		assert.Equal(t, "compute3", s.Host, sid)
		assert.Equal(t, "ACTIVE", s.Status, sid)
		step := stepByName(rep, "db-rewrite/"+sid)
		require.NotNil(t, step, sid)
		assert.Equal(t, workflows.StepDone, step.State)
		assert.Contains(t, step.Detail, "1 row rewritten")
	}
	assert.Zero(t, countDoneEvacuations(t, l, ids), "no evacuation succeeded: the rewrite moved them")

	// The activity again, as a retry after a lost answer would: no row changes, no error.
	rw, err := sql.Open("mysql", l.cfg.Databases.NovaRWDSN)
	require.NoError(t, err)
	defer rw.Close()
	ro, err := sql.Open("mysql", l.cfg.Databases.NovaDSN)
	require.NoError(t, err)
	defer ro.Close()
	db := &activities.NovaDB{DB: ro, RW: rw}
	ctx, cancel = l.ctx()
	defer cancel()
	var host, node string
	require.NoError(t, ro.QueryRowContext(ctx, "SELECT host, node FROM instances WHERE uuid = ? AND deleted = 0", ids[0]).Scan(&host, &node))
	require.Equal(t, "compute3", host, "the Nova database places the instance on compute3")
	res, err := db.DBRewriteInstanceHost(ctx, activities.InstanceRewrite{ID: ids[0], FromHost: "compute2", ToHost: "compute3", ToNode: node})
	require.NoError(t, err)
	assert.Zero(t, res.RowsAffected)
	assert.True(t, res.Already)
	// A row on a third host is refused, not rewritten.
	_, err = db.DBRewriteInstanceHost(ctx, activities.InstanceRewrite{ID: ids[0], FromHost: "compute2", ToHost: "compute1", ToNode: "compute1"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "neither compute2 nor compute1")
	// The read-only account cannot write.
	_, err = ro.ExecContext(ctx, "UPDATE instances SET host = host WHERE uuid = ?", ids[0])
	require.Error(t, err, "databases.nova_dsn must be read-only")
}

// countDoneEvacuations counts the successful evacuation records of the servers since the test began.
func countDoneEvacuations(t *testing.T, l *novaLab, ids []string) int {
	t.Helper()
	ctx, cancel := l.ctx()
	defer cancel()
	n := 0
	for _, id := range ids {
		ms, err := activities.InstanceMigrations(ctx, l.cl, id)
		require.NoError(t, err)
		for _, m := range ms {
			if m.MigrationType == "evacuation" && !m.CreatedAt.Before(l.started.UTC().Add(-time.Minute)) && (m.Status == "done" || m.Status == "completed") {
				n++
			}
		}
	}
	return n
}

// evacuate --maintenance-gate --migrate-back on compute1 with two instances: nova-compute is
// stopped over SSH while the run waits at maintenance-done, started again and checked (service up,
// AMQP connection), the service is enabled, and the instances come back to compute1.
func TestNovaEvacuateMaintenanceGateMigrateBack(t *testing.T) {
	l := newNovaLab(t)
	ids := l.boot("maint", "compute1", 2)
	in := evacInput("compute1")
	in.Parallel = 2
	in.MaintenanceGate, in.MigrateBack = true, true
	id := l.start("evacuate", in)
	st := l.waitFor(id, time.Minute, "gate approve-plan", func(st workflows.Status) bool {
		return len(st.OpenGates) == 1 && st.OpenGates[0].Name == workflows.GateApprovePlan
	})
	plan := strings.Join(st.Plan, "\n")
	assert.Contains(t, plan, "gate maintenance-done")
	assert.Contains(t, plan, "move the instances back to compute1")
	l.approve(id, workflows.GateApprovePlan, "bob")

	st = l.waitFor(id, 5*time.Minute, "gate maintenance-done", func(st workflows.Status) bool {
		return len(st.OpenGates) == 1 && st.OpenGates[0].Name == workflows.GateMaintenanceDone
	})
	assert.Error(t, exec.Command(l.labctl, "status", "compute1", "nova-compute").Run(), "nova-compute on compute1 is stopped during the maintenance")
	assert.Equal(t, "disabled", l.service("compute1").Status)
	// The configuration-management hold: what would start nova-compute (here labctl, masked as
	// systemctl mask does) is refused during the maintenance.
	out, err := exec.Command(l.labctl, "start", "compute1", "nova-compute").CombinedOutput()
	assert.Error(t, err, "a masked nova-compute must not start: %s", out)
	assert.Contains(t, string(out), "masked")
	for _, sid := range ids {
		s := l.server(sid)
		assert.Contains(t, []string{"compute2", "compute3"}, s.Host, "%s is off compute1 during the maintenance", sid)
	}
	l.approve(id, workflows.GateMaintenanceDone, "bob")

	rep := l.report(id, 10*time.Minute)
	require.Equal(t, workflows.StatusCompleted, rep.Status, "%s\nsteps: %+v\nfindings: %+v", rep.Summary, rep.Steps, rep.Findings)
	assert.Empty(t, rep.LeftState)
	assert.Contains(t, rep.Summary, "instances moved back")
	require.NoError(t, exec.Command(l.labctl, "status", "compute1", "nova-compute").Run(), "nova-compute runs again")
	svc := l.service("compute1")
	assert.Equal(t, "enabled", svc.Status)
	assert.Equal(t, "up", svc.State)
	assert.Contains(t, stepByName(rep, "hold-config").Detail, "mask compute1 nova-compute")
	assert.Contains(t, stepByName(rep, "release-config").Detail, "unmask compute1 nova-compute")
	assert.Contains(t, rep.Details, "config_management")
	for _, name := range []string{"stop-compute", "hold-config", workflows.GateMaintenanceDone, "release-config", "start-compute", "verify-reconnect", "enable-service", "migrate-back"} {
		s := stepByName(rep, name)
		require.NotNil(t, s, name)
		assert.Equal(t, workflows.StepDone, s.State, "%s: %s", name, s.Detail)
	}
	rc := stepByName(rep, "verify-reconnect").Detail
	t.Logf("verify-reconnect: %s", rc)
	assert.Contains(t, rc, "service reports up")
	assert.Contains(t, rc, "AMQP", "the reconnect check saw nova-compute's AMQP connection (log, or a socket labelled weaker)")
	for _, f := range rep.Findings {
		assert.NotContains(t, f.Message, "no AMQP connection")
	}
	assert.Contains(t, stepByName(rep, "migrate-back").Detail, "2 of 2 moved back to compute1")
	for _, sid := range ids {
		s := l.server(sid)
		assert.Equal(t, "compute1", s.Host, sid)
		assert.Equal(t, "ACTIVE", s.Status, sid)
		back := stepByName(rep, "migrate-back/"+sid)
		require.NotNil(t, back, sid)
		assert.Contains(t, back.Detail, "→ compute1")
	}
	assert.Equal(t, 4, l.migrations(ids)["live-migration"], "two out, two back")
}

// deleteNamed deletes the servers whose name starts with prefix.
func (l *novaLab) deleteNamed(prefix string) {
	l.t.Helper()
	ctx, cancel := l.ctx()
	defer cancel()
	pages, err := servers.List(l.cl.Compute, servers.ListOpts{Name: "^" + prefix, AllTenants: true}).AllPages(ctx)
	require.NoError(l.t, err)
	list, err := servers.ExtractServers(pages)
	require.NoError(l.t, err)
	var ids []string
	for _, s := range list {
		if strings.HasPrefix(s.Name, prefix) {
			ids = append(ids, s.ID)
		}
	}
	if len(ids) > 0 {
		l.t.Logf("deleting %d leftover server(s) %s*", len(ids), prefix)
		l.deleteServers(ids)
	}
}

func (l *novaLab) compute() *activities.Compute {
	return &activities.Compute{Clients: func(context.Context) (*openstack.Clients, error) { return l.cl, nil }}
}
