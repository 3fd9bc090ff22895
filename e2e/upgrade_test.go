//go:build e2e

package e2e

// staged-upgrade end to end (issue 12, tests 1, 2, 3 and 5): the real worker binary on a real
// Temporal dev server, over real SSH, real apt transactions between Debian's two builds of the
// Zed packages, real dumps and restores. Run under the lab lock; each test starts from the older
// builds (lab/bin/labpkg older) and leaves the lab on the newer ones, as found.

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/internal/app/control"
	"github.com/stackrun/stackrun/internal/testenv/devserver"
	"github.com/stackrun/stackrun/workflows"
)

type upgradeLab struct {
	t      *testing.T
	l      *Lab
	u      *activities.Upgrade
	srv    *devserver.Server
	worker *exec.Cmd
	labpkg string
}

func newUpgradeLab(t *testing.T, older bool) *upgradeLab {
	l := requireLab(t)
	ul := &upgradeLab{t: t, l: l, u: labUpgrade(t, l), labpkg: filepath.Join(filepath.Dir(l.Labctl), "labpkg")}
	t.Cleanup(func() {
		// as found: the newer builds, every service up
		if out, err := l.Exec(ul.labpkg, "newer"); err != nil {
			t.Errorf("cleanup: labpkg newer: %v\n%s", err, out)
		}
	})
	if older {
		start := time.Now()
		l.Run(t, ul.labpkg, "older")
		t.Logf("labpkg older: %s", time.Since(start).Round(time.Second))
	}
	ul.srv = devserver.Start(t)
	ul.worker = startWorker(t, l.Config, ul.srv)
	return ul
}

func (ul *upgradeLab) installed(pkg string) string {
	out, err := exec.Command("dpkg-query", "-W", "-f=${Version}", pkg).Output()
	require.NoError(ul.t, err)
	return string(out)
}

func (ul *upgradeLab) candidate(pkg string) string {
	f, err := ul.u.PackageFacts(context.Background(), activities.PackageFactsRequest{Host: "controller", Packages: []string{pkg}})
	require.NoError(ul.t, err)
	return f[0].Candidate
}

func (ul *upgradeLab) start(in *workflows.StagedUpgradeInput) string {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rb, err := workflows.FindRunbook("staged-upgrade")
	require.NoError(ul.t, err)
	st, err := control.Start(ctx, ul.srv.Client, "stackrun", rb, in, asRequester(ul.t, in))
	require.NoError(ul.t, err)
	return st.WorkflowID
}

// drive approves every open gate as bob, signed (the requester is alice: two persons), answers stalled
// steps with onStall, and returns the report when the run ends.
func (ul *upgradeLab) drive(id string, timeout time.Duration, onStall func(step string) string, each func(st workflows.Status)) *workflows.Report {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for ctx.Err() == nil {
		st, err := control.Status(ctx, ul.srv.Client, id)
		if err == nil {
			if each != nil {
				each(st)
			}
			for _, g := range st.OpenGates {
				_, err := control.Approve(ctx, ul.srv.Client, id, workflows.GateDecisionRequest{Gate: g.Name, By: "bob", Comment: "e2e", Via: "cli"}, as(ul.t, "bob"))
				require.NoError(ul.t, err, g.Name)
			}
			for _, s := range st.Stalled {
				action := workflows.ResolveRetry
				if onStall != nil {
					action = onStall(s.Step)
				}
				_, err := control.Resolve(ctx, ul.srv.Client, id, workflows.ResolveRequest{Step: s.Step, Action: action, By: "alice", Comment: "e2e: " + s.Error, Via: "cli"}, as(ul.t, "alice"))
				require.NoError(ul.t, err, s.Step)
			}
			if st.Status == workflows.StatusCompleted || st.Status == workflows.StatusAborted || st.Status == workflows.StatusFailed {
				break
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	rep, err := control.Report(ctx, ul.srv.Client, id, true)
	require.NoError(ul.t, err)
	return rep
}

func details(rep *workflows.Report, key string) []string {
	var out []string
	if v, ok := rep.Details[key].([]any); ok {
		for _, x := range v {
			out = append(out, x.(string))
		}
	}
	return out
}

// Test 1: the lab on the older builds, staged-upgrade --to-candidate, every gate approved by a
// second person: every package at the newer build, every service verified, the smoke test passed;
// the report lists from → to per package and every backup with its checksum.
func TestStagedUpgradeOnLab(t *testing.T) {
	ul := newUpgradeLab(t, true)
	start := time.Now()
	want := map[string]string{}
	for _, p := range []string{"python3-keystone", "python3-glance", "python3-nova"} {
		want[p] = ul.candidate(p)
		require.NotEqual(t, want[p], ul.installed(p), "%s starts on the older build", p)
	}
	cinder := ul.installed("python3-cinder") // Debian 12 has one build: the package step skips it
	require.NotEmpty(t, cinder)
	// --batch-size 2: the three computes in two batches, each phase a child run (upgrade_batch.go).
	id := ul.start(&workflows.StagedUpgradeInput{Meta: workflows.Meta{RequestedBy: "alice", Reason: "e2e: Zed security builds"}, ToCandidate: true, BatchSize: 2})
	rep := ul.drive(id, 25*time.Minute, nil, nil)
	require.Equal(t, workflows.StatusCompleted, rep.Status, rep.Summary)
	t.Logf("staged-upgrade completed in %s: %s", time.Since(start).Round(time.Second), rep.Summary)
	for p, v := range want {
		assert.Equal(t, v, ul.installed(p), p)
	}
	pk := strings.Join(details(rep, "packages"), "\n")
	for _, p := range []string{"python3-keystone", "python3-glance", "python3-nova"} {
		assert.Contains(t, pk, p+" ", "report lists %s", p)
	}
	assert.Contains(t, pk, "nova on compute1: already at the target version", "shared package set: honest skip")
	assert.Contains(t, pk, "cinder on controller: already at the target version", "python3-cinder has one build: honest skip")
	assert.Equal(t, cinder, ul.installed("python3-cinder"))
	bk := details(rep, "backups")
	assert.GreaterOrEqual(t, len(bk), 4+3+4+2, "archives per host and service, dumps of keystone, placement, glance, nova, cinder")
	assert.Contains(t, strings.Join(bk, "\n"), "/backups/cinder/", "cinder's configuration and database backed up")
	for _, step := range []string{"stop", "backup", "upgrade", "schema", "start", "verify"} {
		st := stepByName(rep, "cinder/controller/"+step)
		if assert.NotNil(t, st, step) {
			assert.Equal(t, workflows.StepDone, st.State, "cinder/controller/%s", step)
		}
	}
	if st := stepByName(rep, "cinder/smoke"); assert.NotNil(t, st) {
		assert.Equal(t, workflows.StepDone, st.State, "cinder/smoke")
	}
	// The computes went in child runs, linked from the parent's steps; their packages and
	// backups are in the parent's report.
	for _, step := range []string{"nova/computes-1/pin", "nova/computes-2/pin", "nova/computes-1/upgrade", "nova/computes-2/upgrade", "nova/computes-1/unpin", "nova/computes-2/unpin"} {
		if st := stepByName(rep, step); assert.NotNil(t, st, step) {
			assert.Equal(t, workflows.StepDone, st.State, step)
			assert.Contains(t, st.Detail, id+"/"+step, "the step names its child run")
		}
	}
	assert.Len(t, details(rep, "batch_runs"), 6, "two batches, three phases")
	for _, c := range []string{"compute1", "compute2", "compute3"} {
		assert.Contains(t, pk, "nova on "+c+": ", "the parent's report has %s's package step", c)
		assert.Contains(t, strings.Join(bk, "\n"), " on "+c+": ", "the parent's report has %s's configuration archive", c)
	}
	for _, b := range bk {
		assert.Regexp(t, `sha256 [0-9a-f]{64}`, b)
	}
	var smoke, volume bool
	for _, f := range rep.Findings {
		smoke = smoke || strings.Contains(f.Message, "nova: server deleted")
		volume = volume || strings.Contains(f.Message, "(1 GiB) available on controller@fake") && strings.Contains(f.Message, "cinder: volume deleted")
	}
	assert.True(t, smoke, "the smoke test booted and deleted a server: %+v", rep.Findings)
	assert.True(t, volume, "cinder's smoke test made a volume, saw it available and deleted it: %+v", rep.Findings)
	var gates []string
	for _, d := range rep.Decisions {
		if d.Kind == "gate" {
			gates = append(gates, d.Name)
			assert.Equal(t, "bob", d.By)
		}
	}
	assert.Subset(t, gates, []string{workflows.GateReleaseNotesRead, workflows.GateTestedOnStaging, "canary-ok:keystone", "canary-ok:glance", "canary-ok:nova", "canary-ok:cinder"})
	for _, d := range details(rep, "schema") {
		assert.Contains(t, d, "no schema change", "patch builds: schema commands are no-ops")
	}
}

// Test 2: glance's configuration broken while its gate config-updated is open (the operator's
// edit went wrong): glance-api does not start, the step stalls, the operator aborts, a second
// person approves rollback:glance; glance's package, configuration and database are back at
// the recorded state and glance answers; the run ends Aborted, saying so.
func TestStagedUpgradeRollbackOnLab(t *testing.T) {
	ul := newUpgradeLab(t, true)
	start := time.Now()
	older := ul.installed("python3-glance")
	conf := filepath.Join(ul.l.Dir, "hosts", "controller", "etc", "glance", "glance-api.conf")
	orig, err := os.ReadFile(conf)
	require.NoError(t, err)
	t.Cleanup(func() {
		// whatever happened, the shared lab keeps a working glance configuration
		if now, err := os.ReadFile(conf); err == nil && string(now) != string(orig) {
			t.Errorf("glance-api.conf was not restored by the run: the test puts it back")
			_ = os.WriteFile(conf, orig, 0o644)
			_, _ = ul.l.Exec(ul.l.Labctl, "restart", "controller", "glance-api")
		}
	})
	before := labSQL(t, ul.l, "SELECT COUNT(*) FROM glance.images")
	id := ul.start(&workflows.StagedUpgradeInput{Meta: workflows.Meta{RequestedBy: "alice", Reason: "e2e rollback"},
		Services: []string{"glance"}, ToCandidate: true, ConfigChanges: []string{"glance"}})
	broken, stalled := false, ""
	rep := ul.drive(id, 15*time.Minute, func(step string) string {
		stalled = step // start or verify: glance-api does not come up
		return workflows.ResolveAbort
	}, func(st workflows.Status) {
		for _, g := range st.OpenGates {
			if strings.HasPrefix(g.Name, workflows.GateConfigUpdated) && !broken {
				// the operator's edit goes wrong: a port that is not one
				require.NoError(t, os.WriteFile(conf, append(append([]byte{}, orig...), "\n[DEFAULT]\nbind_port = not-a-port\n"...), 0o644))
				broken = true
			}
		}
	})
	t.Logf("stalled at %s, aborted, rollback approved by bob", stalled)
	assert.True(t, strings.HasPrefix(stalled, "glance/controller/"), stalled)
	require.True(t, broken)
	require.Equal(t, workflows.StatusAborted, rep.Status, rep.Summary)
	t.Logf("rollback run ended in %s: %s", time.Since(start).Round(time.Second), rep.Summary)
	assert.Contains(t, rep.Summary, "rolled back")
	assert.Equal(t, older, ul.installed("python3-glance"), "package downgraded to the recorded version")
	now, err := os.ReadFile(conf)
	require.NoError(t, err)
	assert.Equal(t, string(orig), string(now), "configuration restored")
	assert.Equal(t, before, labSQL(t, ul.l, "SELECT COUNT(*) FROM glance.images"), "database restored")
	restored := strings.Join(details(rep, "restored"), "\n")
	assert.Contains(t, restored, "configuration")
	assert.Contains(t, restored, "databases glance")
	assert.Contains(t, restored, "package python3-glance back to "+older)
	st, err := ul.u.Hosts.ServiceStatus(context.Background(), activities.ServiceRequest{Host: "controller", Role: "controller", Service: "glance-api"})
	require.NoError(t, err)
	assert.True(t, st.Running, "glance-api runs after the rollback")
}

// Test 3: the worker is SIGKILLed during the database dump and during the package step; the run
// completes on a new worker, with one backup per host and service.
func TestStagedUpgradeWorkerKilledOnLab(t *testing.T) {
	ul := newUpgradeLab(t, true)
	start := time.Now()
	id := ul.start(&workflows.StagedUpgradeInput{Meta: workflows.Meta{RequestedBy: "alice", Reason: "e2e crash"}, Services: []string{"glance"}, ToCandidate: true})
	killed := map[string]bool{}
	rep := ul.drive(id, 15*time.Minute, nil, func(st workflows.Status) {
		for _, s := range st.Steps {
			if s.State != workflows.StepRunning || killed[s.Name] {
				continue
			}
			if s.Name == "glance/controller/backup" || s.Name == "glance/controller/upgrade" {
				killed[s.Name] = true
				_ = ul.worker.Process.Kill() // SIGKILL
				_, _ = ul.worker.Process.Wait()
				t.Logf("worker killed during %s", s.Name)
				ul.worker = startWorker(t, ul.l.Config, ul.srv)
			}
		}
	})
	require.Equal(t, workflows.StatusCompleted, rep.Status, rep.Summary)
	t.Logf("run with two worker kills completed in %s", time.Since(start).Round(time.Second))
	assert.True(t, killed["glance/controller/upgrade"], "the worker was killed during the package step")
	assert.True(t, killed["glance/controller/backup"], "the worker was killed during the backups")
	assert.Equal(t, ul.candidate("python3-glance"), ul.installed("python3-glance"))
	bk := details(rep, "backups")
	assert.Len(t, bk, 2, "one archive and one dump for glance on controller: %v", bk)
	tag := ""
	for _, b := range bk {
		if i := strings.Index(b, "/db-"); i >= 0 {
			tag = b[i+4 : i+4+strings.Index(b[i+4:], ".sql")]
		}
	}
	require.NotEmpty(t, tag)
	dumps, _ := filepath.Glob(filepath.Join(ul.l.Dir, "hosts", "controller", "backups", "glance", "db-"+tag+".sql*"))
	assert.Len(t, dumps, 1, "one dump of this run, no partial left: %v", dumps)
}

// Test 5: bad input is refused before any change: nothing stops, no package moves.
func TestStagedUpgradeBadInputOnLab(t *testing.T) {
	ul := newUpgradeLab(t, false)
	pid, err := ul.l.Exec(ul.l.Labctl, "pid", "controller", "glance-api")
	require.NoError(t, err)
	ver := ul.installed("python3-glance")
	for _, c := range []struct {
		in   workflows.StagedUpgradeInput
		want string
	}{
		{workflows.StagedUpgradeInput{Services: []string{"glance", "trove"}, ToCandidate: true}, `services[1] "trove": unknown service`},
		{workflows.StagedUpgradeInput{Services: []string{"glance"}, ToCandidate: true, Canary: "storage1"}, "runs none of the services upgraded"},
		{workflows.StagedUpgradeInput{Services: []string{"glance"}, ToVersion: []string{"python3-glance=2:99.0.0-1"}}, "version does not exist on controller"},
	} {
		c.in.Meta = workflows.Meta{RequestedBy: "alice", Reason: "e2e bad input"}
		id := ul.start(&c.in)
		rep := ul.drive(id, 2*time.Minute, nil, nil)
		assert.Equal(t, workflows.StatusFailed, rep.Status)
		assert.Contains(t, rep.Summary, c.want)
	}
	// hostile strings do not even start a run
	for _, in := range []workflows.StagedUpgradeInput{
		{Services: []string{"glance;reboot"}, ToCandidate: true},
		{Services: []string{"glance"}, ToVersion: []string{"python3-glance=1$(reboot)"}},
		{Services: []string{"glance"}, ToCandidate: true, Canary: "controller`id`"},
	} {
		in.Meta = workflows.Meta{RequestedBy: "alice"}
		require.Error(t, in.Validate())
	}
	pid2, err := ul.l.Exec(ul.l.Labctl, "pid", "controller", "glance-api")
	require.NoError(t, err)
	assert.Equal(t, pid, pid2, "glance-api was not restarted")
	assert.Equal(t, ver, ul.installed("python3-glance"), "no package moved")
}
