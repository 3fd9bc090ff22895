//go:build e2e

package e2e

// OutageRecovery end to end: every lab host's services SIGKILLed at once (labfail power-loss),
// then outage-recovery brings the cloud back tier by tier through the real worker, over SSH, with
// the worker itself SIGKILLed halfway; a tier that cannot come up stalls the run until it is
// fixed; bad input is refused before anything runs. The lab is left up (lab/up.sh) at the end.

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/config"
	"github.com/stackrun/stackrun/internal/app/control"
	"github.com/stackrun/stackrun/internal/testenv/devserver"
	"github.com/stackrun/stackrun/workflows"
)

// labRestore starts every service of every lab host again (labctl start <host> all: what a test
// killed comes back, Alertmanager included) and checks the lab with lab/status.sh.
func labRestore(t *testing.T) {
	t.Helper()
	root := devserver.RepoRoot(t)
	env := append(os.Environ(), "STACKRUN_LAB_DIR="+labDir(t))
	var wg sync.WaitGroup
	for _, h := range []string{"controller", "compute1", "compute2", "compute3", "storage1", "storage2", "storage3"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.Command(filepath.Join(root, "lab", "bin", "labctl"), "start", h, "all")
			cmd.Env = env
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("labctl start %s all: %v\n%s", h, err, out)
			}
		}()
	}
	wg.Wait()
	cmd := exec.Command(filepath.Join(root, "lab", "status.sh"))
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("lab/status.sh after the test: %v\n%s", err, tail(string(out), 40))
	}
}

// outageConfig is the lab's stackrun.yaml with this tree's outage: table (lab/lib/stackrun_yaml.sh,
// stackrun_outage_yaml) in place of the one the file has: the lab's stackrun.yaml is written by
// the clone that brought the lab up (lab.env's LAB_SRC), whose table may be older than the one
// under test (or missing, from an older up.sh).
func outageConfig(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(labConfig(t))
	require.NoError(t, err)
	root := devserver.RepoRoot(t)
	cmd := exec.Command("bash", "-c", `source lab/lib/common.sh && source lab/lib/services.sh && source lab/lib/stackrun_yaml.sh && stackrun_outage_yaml`)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "STACKRUN_LAB_DIR="+labDir(t))
	out, err := cmd.Output()
	require.NoError(t, err)
	p := filepath.Join(t.TempDir(), "stackrun.yaml")
	require.NoError(t, os.WriteFile(p, append(append(withoutSection(b, "outage"), '\n'), out...), 0o600))
	// A table the worker refuses would leave the run without a worker: refuse it here, at once.
	_, err = config.Load(config.LoadOptions{Path: p})
	require.NoError(t, err, "the lab's configuration with this tree's outage table")
	return p
}

// withoutSection is YAML text without its top-level section name: (from its key to the next
// top-level key).
func withoutSection(b []byte, name string) []byte {
	var out []string
	in := false
	for _, line := range strings.SplitAfter(string(b), "\n") {
		top := line != "" && line[0] != ' ' && line[0] != '\t' && line[0] != '#' && line[0] != '\n'
		if top {
			in = strings.HasPrefix(line, name+":")
		}
		if !in {
			out = append(out, line)
		}
	}
	return []byte(strings.Join(out, ""))
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// tiersOf reads the report's per-tier detail.
func tiersOf(t *testing.T, rep *workflows.Report) map[int]workflows.OutageTierReport {
	t.Helper()
	var list []workflows.OutageTierReport
	b, err := json.Marshal(rep.Details["tiers"])
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &list))
	out := map[int]workflows.OutageTierReport{}
	for _, tr := range list {
		out[tr.Priority] = tr
	}
	return out
}

func (l *novaLab) running(host, svc string) bool {
	return exec.Command(l.labctl, "status", host, svc).Run() == nil
}

func TestOutageRecoveryOnLab(t *testing.T) {
	l := newNovaLab(t)
	// The worker reads the lab's own priority table.
	l.cfgPath = outageConfig(t)
	require.NoError(t, l.worker.Process.Kill())
	_, _ = l.worker.Process.Wait()
	l.worker = startWorker(t, l.cfgPath, l.srv)
	in := func(from int) *workflows.OutageRecoveryInput {
		return &workflows.OutageRecoveryInput{Meta: workflows.Meta{RequestedBy: "alice", Reason: "e2e power loss"}, FromTier: from}
	}

	t.Run("bad-input", func(t *testing.T) {
		rb, err := workflows.FindRunbook("outage-recovery")
		require.NoError(t, err)
		ctx, cancel := l.ctx()
		defer cancel()
		bad := in(-3)
		_, err = control.Start(ctx, l.srv.Client, l.cfg.Temporal.TaskQueue, rb, bad, asRequester(t, bad))
		require.ErrorContains(t, err, "from_tier")
		// A priority the lab's table does not have: the run reads the table and ends there.
		id := l.start("outage-recovery", in(7))
		rep := l.report(id, 2*time.Minute)
		assert.Equal(t, workflows.StatusFailed, rep.Status)
		assert.Contains(t, rep.Summary, "from_tier")
		for _, a := range rep.Audit {
			assert.Equal(t, "OutagePlan", a.Activity, "nothing but the table was read")
		}
	})

	// On the healthy lab, from nova-api on: everything runs already, nothing is started.
	t.Run("already-up", func(t *testing.T) {
		rep := l.report(l.start("outage-recovery", in(99)), 5*time.Minute)
		require.Equal(t, workflows.StatusCompleted, rep.Status, "%s\nsteps: %+v", rep.Summary, rep.Steps)
		tiers := tiersOf(t, rep)
		assert.Equal(t, []string{"nova-api@controller"}, tiers[99].AlreadyUp)
		assert.Empty(t, tiers[99].Started)
		assert.Equal(t, "not-run", tiers[10].State)
		assert.Equal(t, workflows.StepDone, stepByName(rep, "hypervisors").State)
		assert.Contains(t, rep.Summary, "0 started")
	})

	t.Run("power-loss", func(t *testing.T) {
		ids := l.boot("outage", "compute2", 2)
		l.stop(ids[1]) // SHUTOFF before the outage: must stay so
		t.Cleanup(func() { labRestore(t) })
		out, err := exec.Command(l.labfail, "power-loss").CombinedOutput()
		require.NoError(t, err, string(out))
		for _, s := range []string{"mariadb", "rabbitmq-server", "keystone", "nova-api"} {
			require.False(t, l.running("controller", s), "%s survived the power loss", s)
		}
		require.False(t, l.running("compute1", "nova-compute"))
		require.False(t, l.running("storage2", "swift-object"))

		id := l.start("outage-recovery", in(0))
		// Kill the worker once the database tier is verified, start another: the run resumes.
		l.waitFor(id, 5*time.Minute, "db-integrity done", func(st workflows.Status) bool {
			i := slices.IndexFunc(st.Steps, func(s workflows.StepStatus) bool { return s.Name == "db-integrity" })
			return i >= 0 && st.Steps[i].State == workflows.StepDone
		})
		require.NoError(t, l.worker.Process.Kill()) // SIGKILL
		_, _ = l.worker.Process.Wait()
		// The new worker serves the later subtests too: it must outlive this one.
		l.worker = startWorkerFor(t, l.t, l.cfgPath, l.srv)
		rep := l.report(id, 20*time.Minute) // a loaded machine: each tier can take minutes
		require.Equal(t, workflows.StatusCompleted, rep.Status, "%s\nsteps: %+v\nfindings: %+v", rep.Summary, rep.Steps, rep.Findings)
		t.Logf("summary: %s", rep.Summary)
		logTierTimes(t, rep)

		// Every API answers, three computes up, the Swift devices mounted and answering.
		ctx, cancel := l.ctx()
		defer cancel()
		for _, api := range []string{"identity", "compute", "placement", "image", "network", "object-store"} {
			tm, err := l.cl.TimeAPI(ctx, api)
			require.NoError(t, err, api)
			assert.Equal(t, 2, tm.Status/100, "%s API: HTTP %d", api, tm.Status)
		}
		for _, h := range []string{"compute1", "compute2", "compute3"} {
			assert.Equal(t, "up", l.service(h).State, h)
		}
		for node, devs := range map[string][]string{"storage1": {"sdb", "sdc"}, "storage2": {"sdd", "sde"}, "storage3": {"sdf", "sdg"}} {
			for _, d := range devs {
				info, err := exec.Command(l.labfail, "disk-info", node, d).CombinedOutput()
				require.NoError(t, err, string(info))
				assert.Contains(t, string(info), "state=mounted", "%s/%s", node, d)
			}
		}
		_, err = l.cl.ObjectStoreAccountStat(ctx)
		require.NoError(t, err, "the object store answers")

		// The instance that ran is ACTIVE again, the one that was SHUTOFF was not started.
		assert.Equal(t, "ACTIVE", l.server(ids[0]).Status)
		assert.Equal(t, "SHUTOFF", l.server(ids[1]).Status, "only what ran before is started")

		tiers := tiersOf(t, rep)
		for _, p := range []int{1, 2, 4, 5, 10, 15, 20, 21, 22, 98, 99} {
			assert.Equal(t, "verified", tiers[p].State, "tier %d: %+v", p, tiers[p])
		}
		for _, p := range []int{3, 100} {
			assert.Equal(t, "empty", tiers[p].State, "tier %d", p)
		}
		assert.Contains(t, tiers[10].Started, "mariadb@controller")
		assert.Contains(t, tiers[22].Started, "nova-conductor@controller")
		// The lab's table: placement with cinder-scheduler, neutron-server with Glance (no tiers of their own).
		assert.Contains(t, tiers[20].Started, "placement-api@controller")
		assert.Contains(t, tiers[21].Started, "neutron-server@controller")
		for _, p := range []int{16, 17} {
			assert.NotContains(t, tiers, p, "tier %d", p)
		}
		assert.Contains(t, strings.Join(tiers[5].Started, " ")+strings.Join(tiers[5].AlreadyUp, " "), ids[0])
		assert.NotContains(t, strings.Join(tiers[5].Started, " "), ids[1])
		verified := strings.Join(tiers[10].Verified, "\n")
		assert.Contains(t, verified, "database integrity:")
		assert.Contains(t, verified, "mariadb-check")
		assert.NotNil(t, stepByName(rep, "db-integrity"))
		assert.Equal(t, workflows.StepDone, stepByName(rep, "hypervisors").State)
		for _, f := range rep.Findings {
			assert.NotEqual(t, activities.SeverityCritical, f.Severity, "%s: %s", f.Subject, f.Message)
		}
		// Tiers ran in order: each tier's first activity after the previous tier's last.
		var last time.Time
		for _, step := range []string{"tier-1", "tier-2", "tier-4", "tier-10", "tier-15", "tier-20", "tier-21", "tier-22", "tier-98", "tier-99", "tier-5"} {
			var first, end time.Time
			for _, a := range rep.Audit {
				if a.Step == step {
					if first.IsZero() {
						first = a.At
					}
					end = a.At.Add(a.Duration)
				}
			}
			require.False(t, first.IsZero(), "no activity of %s", step)
			assert.False(t, first.Before(last), "%s began before the previous tier ended", step)
			last = end
		}
	})

	t.Run("tier-stalls-until-fixed", func(t *testing.T) {
		t.Cleanup(func() { labRestore(t) })
		data := filepath.Join(labDir(t), "hosts", "controller", "data", "rabbitmq")
		fi, err := os.Stat(data)
		require.NoError(t, err)
		for _, s := range []string{"rabbitmq-server", "keystone", "nova-conductor", "nova-scheduler", "nova-api"} {
			out, err := exec.Command(l.labctl, "kill", "controller", s).CombinedOutput()
			require.NoError(t, err, string(out))
		}
		require.NoError(t, os.Chmod(data, 0))
		t.Cleanup(func() { _ = os.Chmod(data, fi.Mode().Perm()) })

		stall := in(10)
		stall.VerifyWait = "30s" // the stall comes after 30 s of failed verifications, not 3 min
		id := l.start("outage-recovery", stall)
		st := l.waitFor(id, 5*time.Minute, "tier-10 stalled", func(st workflows.Status) bool { return len(st.Stalled) > 0 })
		require.Equal(t, "tier-10", st.Stalled[0].Step, "%+v", st.Stalled)
		t.Logf("stalled: %s", st.Stalled[0].Error)
		for _, s := range []string{"keystone", "nova-conductor", "nova-api"} {
			assert.False(t, l.running("controller", s), "%s of a later tier was started", s)
		}
		require.NoError(t, os.Chmod(data, fi.Mode().Perm()))
		ctx, cancel := l.ctx()
		_, err = control.Resolve(ctx, l.srv.Client, id, workflows.ResolveRequest{Step: "tier-10", Action: workflows.ResolveRetry, By: "bob", Comment: "e2e: data directory readable again", Via: "cli"}, as(t, "bob"))
		cancel()
		require.NoError(t, err)
		rep := l.report(id, 10*time.Minute)
		require.Equal(t, workflows.StatusCompleted, rep.Status, "%s\nsteps: %+v", rep.Summary, rep.Steps)
		tiers := tiersOf(t, rep)
		assert.Equal(t, "not-run", tiers[4].State)
		assert.Contains(t, tiers[10].Started, "rabbitmq-server@controller")
		assert.Contains(t, tiers[10].AlreadyUp, "mariadb@controller")
		assert.Contains(t, tiers[15].Started, "keystone@controller")
		assert.Contains(t, tiers[99].Started, "nova-api@controller")
		require.Len(t, rep.Decisions, 1)
		assert.Equal(t, "retry", rep.Decisions[0].Outcome)
		for _, s := range []string{"rabbitmq-server", "keystone", "nova-conductor", "nova-scheduler", "nova-api"} {
			assert.True(t, l.running("controller", s), s)
		}
	})
}

// logTierTimes prints outage-recovery's time per tier (its steps' audit: the plan, each tier and
// its checks) and the slowest activity of each: where its time goes.
func logTierTimes(t *testing.T, rep *workflows.Report) {
	type span struct {
		first, end time.Time
		slow       workflows.AuditEntry
	}
	spans := map[string]*span{}
	var order []string
	for _, a := range rep.Audit {
		sp, ok := spans[a.Step]
		if !ok {
			sp = &span{first: a.At}
			spans[a.Step] = sp
			order = append(order, a.Step)
		}
		if e := a.At.Add(a.Duration); e.After(sp.end) {
			sp.end = e
		}
		if a.Duration > sp.slow.Duration {
			sp.slow = a
		}
	}
	lines := []string{fmt.Sprintf("run %s .. %s (%s)", rep.Started.Format("15:04:05.0"), rep.Ended.Format("15:04:05.0"), rep.Ended.Sub(rep.Started).Round(100*time.Millisecond))}
	for _, step := range order {
		sp := spans[step]
		lines = append(lines, fmt.Sprintf("%-16s +%6.1fs %6.1fs  slowest %s on %s %.1fs %s", step, sp.first.Sub(rep.Started).Seconds(),
			sp.end.Sub(sp.first).Seconds(), sp.slow.Activity, sp.slow.Target, sp.slow.Duration.Seconds(), sp.slow.Error))
	}
	t.Logf("outage-recovery steps:\n%s", strings.Join(lines, "\n"))
}
