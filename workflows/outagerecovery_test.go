package workflows_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"

	"github.com/stackrun/stackrun/activities"
	wf "github.com/stackrun/stackrun/workflows"
)

var outageAct *activities.Outage

// outageWorld is a small cloud after a power loss: what runs, what was started in which order,
// and which verifications fail (until fixed).
type outageWorld struct {
	mu       sync.Mutex
	running  map[string]bool
	started  []string
	broken   map[string]bool
	startedI []string
	failI    map[string]bool
	// stateFails: the next n snapshot reads of a service fail (a lost answer, a killed worker).
	stateFails map[string]int
	// verifies counts each service's verifications.
	verifies map[string]int
}

func outageTable(gate bool) activities.OutageTable {
	svc := func(host, name string, verify ...string) activities.OutageService {
		return activities.OutageService{Host: host, Role: "controller", Service: name, Verify: append([]string{"process"}, verify...)}
	}
	return activities.OutageTable{Instances: "ran-before", Gate: gate, Tiers: []activities.OutageTier{
		{Priority: 1, Name: "internal network", Hosts: []string{"controller", "compute1"}, HostVerify: []string{"reachable"}},
		{Priority: 3, Name: "public network", Missing: []string{"neutron-l3-agent"}},
		{Priority: 4, Name: "compute hosts", Hosts: []string{"compute1"}, Services: []activities.OutageService{
			{Host: "compute1", Role: "compute", Service: "nova-compute", Verify: []string{"process"}}}},
		{Priority: 5, Name: "user instances", Instances: true},
		{Priority: 10, Name: "message queue and database", Hosts: []string{"controller"}, Checks: []string{"db-integrity"},
			Services: []activities.OutageService{svc("controller", "mariadb", "port:3306"), svc("controller", "rabbitmq-server", "port:5672")}},
		{Priority: 15, Name: "keystone", Hosts: []string{"controller"}, Services: []activities.OutageService{svc("controller", "keystone", "api:identity")}},
		{Priority: 99, Name: "nova-api", Hosts: []string{"controller"}, Checks: []string{"hypervisors"},
			Services: []activities.OutageService{svc("controller", "nova-api", "api:compute")}},
	}}
}

func newOutageFixture(t *testing.T, table activities.OutageTable, w *outageWorld) *fixture {
	f := newFixture(t, basePolicy())
	f.env.RegisterActivity(outageAct)
	key := func(s activities.OutageService) string { return s.Service + "@" + s.Host }
	f.env.OnActivity(outageAct.OutagePlan, mock.Anything).Return(table, nil)
	f.env.OnActivity(outageAct.OutageServiceState, mock.Anything, mock.Anything).Return(func(_ context.Context, s activities.OutageService) (activities.ServiceState, error) {
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.stateFails[key(s)] > 0 {
			w.stateFails[key(s)]--
			return activities.ServiceState{}, errors.New("ssh: connection reset by peer")
		}
		return activities.ServiceState{Running: w.running[key(s)]}, nil
	})
	f.env.OnActivity(outageAct.OutageHostUp, mock.Anything, mock.Anything).Return(func(_ context.Context, r activities.OutageHostRequest) (activities.OutageHostResult, error) {
		return activities.OutageHostResult{Evidence: []string{r.Host + " answers over SSH"}}, nil
	})
	f.env.OnActivity(outageAct.OutageStartService, mock.Anything, mock.Anything).Return(func(_ context.Context, s activities.OutageService) (activities.OutageStarted, error) {
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.running[key(s)] {
			return activities.OutageStarted{AlreadyUp: true}, nil
		}
		w.running[key(s)] = true
		w.started = append(w.started, key(s))
		return activities.OutageStarted{At: time.Now()}, nil
	})
	f.env.OnActivity(outageAct.OutageVerifyService, mock.Anything, mock.Anything).Return(func(_ context.Context, r activities.OutageVerifyRequest) (activities.OutageVerified, error) {
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.verifies == nil {
			w.verifies = map[string]int{}
		}
		w.verifies[key(r.OutageService)]++
		if w.broken[key(r.OutageService)] {
			return activities.OutageVerified{}, fmt.Errorf("%s: port does not accept connections", key(r.OutageService))
		}
		if !w.running[key(r.OutageService)] {
			return activities.OutageVerified{}, errors.New("not running")
		}
		return activities.OutageVerified{Evidence: []string{key(r.OutageService) + " verified"}}, nil
	})
	f.env.OnActivity(outageAct.OutageDBIntegrity, mock.Anything).Return(activities.OutageDBCheck{Command: "mariadb-check --check --databases nova",
		Databases: []string{"nova"}, Tables: 120, Problems: []string{"nova.instances: error: Table is marked as crashed"}}, nil)
	f.env.OnActivity(outageAct.OutageInstancesBefore, mock.Anything).Return([]activities.OutageInstance{
		{ID: "i-1", Name: "web-1", Host: "compute1", VMState: "active", PowerState: activities.PowerRunning},
		{ID: "i-2", Name: "was-off", Host: "compute1", VMState: "stopped", PowerState: activities.PowerShutdown},
		{ID: "i-3", Name: "web-3", Host: "compute1", VMState: "active", PowerState: activities.PowerRunning},
	}, nil)
	f.env.OnActivity(outageAct.OutageHypervisors, mock.Anything, mock.Anything).Return(activities.OutageHypervisorCheck{
		Computes: map[string]string{"compute1": "up"}, Instances: 3, Mismatches: []string{"instance i-3 (web-3): database host compute1, but no hypervisor lists it"}}, nil)
	f.env.OnActivity(outageAct.OutageStartInstance, mock.Anything, mock.Anything).Return(func(_ context.Context, req activities.OutageInstanceRequest) (activities.OutageInstanceResult, error) {
		id := req.ID
		w.mu.Lock()
		defer w.mu.Unlock()
		w.startedI = append(w.startedI, id)
		if w.failI[id] {
			return activities.OutageInstanceResult{}, temporal.NewNonRetryableApplicationError("instance "+id+" went to ERROR: no valid host", activities.ErrTypeRefused, nil)
		}
		// the instance tier runs through the compute API: nova-api must be up by now
		if !w.running["nova-api@controller"] {
			return activities.OutageInstanceResult{}, errors.New("compute API down")
		}
		// Recreated when its host's nova-compute came back in this run (the record is stale).
		if !req.Recreate {
			return activities.OutageInstanceResult{ID: id, Action: "already-up", Status: "ACTIVE", Power: 1}, nil
		}
		return activities.OutageInstanceResult{ID: id, Action: "hard-reboot", Status: "ACTIVE", Power: 1}, nil
	})
	return f
}

func newWorld() *outageWorld {
	return &outageWorld{running: map[string]bool{"keystone@controller": true}, broken: map[string]bool{}, failI: map[string]bool{}}
}

func tierReports(t *testing.T, rep *wf.Report) map[int]wf.OutageTierReport {
	t.Helper()
	b, ok := rep.Details["tiers"].([]wf.OutageTierReport)
	if !ok {
		// after a round trip through JSON the detail is generic: re-read it
		raw, _ := rep.Details["tiers"].([]any)
		out := map[int]wf.OutageTierReport{}
		for _, x := range raw {
			m := x.(map[string]any)
			tr := wf.OutageTierReport{Priority: int(m["priority"].(float64)), State: m["state"].(string)}
			for _, k := range []struct {
				key string
				dst *[]string
			}{{"started", &tr.Started}, {"already_up", &tr.AlreadyUp}, {"verified", &tr.Verified}, {"findings", &tr.Findings}} {
				l, _ := m[k.key].([]any)
				for _, s := range l {
					*k.dst = append(*k.dst, s.(string))
				}
			}
			out[tr.Priority] = tr
		}
		return out
	}
	out := map[int]wf.OutageTierReport{}
	for _, tr := range b {
		out[tr.Priority] = tr
	}
	return out
}

func TestOutageRecoveryRefusesBadInputBeforeAnything(t *testing.T) {
	for _, c := range []struct {
		in    wf.OutageRecoveryInput
		field string
	}{
		{wf.OutageRecoveryInput{FromTier: -1}, "from_tier"},
		{wf.OutageRecoveryInput{FromTier: 5000}, "from_tier"},
		{wf.OutageRecoveryInput{Parallel: 1000}, "parallel"},
		{wf.OutageRecoveryInput{VerifyWait: "soon"}, "verify_wait"},
		{wf.OutageRecoveryInput{VerifyWait: "2h"}, "verify_wait"},
	} {
		c.in.Meta = wf.Meta{RequestedBy: "carol"}
		err := c.in.Validate()
		require.Error(t, err, "%+v", c.in)
		assert.Contains(t, err.Error(), c.field)
		f := newOutageFixture(t, outageTable(false), newWorld())
		f.run(wf.OutageRecovery.Type, c.in)
		rep := f.report()
		assert.Equal(t, wf.StatusFailed, rep.Status)
		assert.Contains(t, rep.Summary, "invalid input")
		assert.Empty(t, rep.Audit, "nothing ran")
	}
	// A tier the table does not have: refused after reading the table, before anything else.
	w := newWorld()
	f := newOutageFixture(t, outageTable(false), w)
	f.run(wf.OutageRecovery.Type, wf.OutageRecoveryInput{Meta: wf.Meta{RequestedBy: "carol"}, FromTier: 7})
	rep := f.report()
	assert.Equal(t, wf.StatusFailed, rep.Status)
	assert.Contains(t, rep.Summary, "from_tier")
	assert.Contains(t, rep.Summary, "tiers: 1, 3, 4, 5, 10, 15, 99")
	require.Len(t, rep.Audit, 1)
	assert.Equal(t, "OutagePlan", rep.Audit[0].Activity)
	assert.Empty(t, w.started)
}

func TestOutageRecoveryBringsTiersBackInOrder(t *testing.T) {
	w := newWorld()
	f := newOutageFixture(t, outageTable(false), w)
	f.run(wf.OutageRecovery.Type, wf.OutageRecoveryInput{Meta: wf.Meta{RequestedBy: "carol"}})
	rep := f.report()
	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)

	// Tiers in priority order; keystone ran already: checked, not started.
	got := orderOf(w.started, "nova-compute", "mariadb", "rabbitmq-server", "nova-api")
	require.Len(t, got, 4)
	assert.Equal(t, "nova-compute@compute1", got[0])
	assert.ElementsMatch(t, []string{"mariadb@controller", "rabbitmq-server@controller"}, got[1:3], "tier 10 in parallel")
	assert.Equal(t, "nova-api@controller", got[3])
	assert.NotContains(t, w.started, "keystone@controller")
	// Only the instances that ran before (database record), after the compute API answers.
	assert.ElementsMatch(t, []string{"i-1", "i-3"}, w.startedI)

	tiers := tierReports(t, rep)
	assert.Equal(t, "empty", tiers[3].State)
	assert.Equal(t, "verified", tiers[10].State)
	assert.Equal(t, []string{"keystone@controller"}, tiers[15].AlreadyUp)
	assert.Len(t, tiers[5].Started, 2)
	assert.Contains(t, tiers[10].Findings, "nova.instances: error: Table is marked as crashed")

	msgs := ""
	for _, fd := range rep.Findings {
		msgs += fd.Severity + " " + fd.Message + "\n"
	}
	assert.Contains(t, msgs, "info tier 3 (public network) is empty: nothing of it in this cloud (no host runs neutron-l3-agent)")
	assert.Contains(t, msgs, "critical integrity check: nova.instances: error: Table is marked as crashed (from: mariadb-check")
	assert.Contains(t, msgs, "warning instance i-3 (web-3): database host compute1, but no hypervisor lists it")
	assert.Contains(t, rep.Summary, "(2 instance(s) started)")
	assert.Contains(t, strings.Join(rep.Plan, "\n"), "tier 5 user instances: instances that ran before the outage, policy ran-before (started after tier 99")
	assert.Contains(t, strings.Join(rep.Plan, "\n"), "tier 3 public network: EMPTY")
	assert.Contains(t, strings.Join(rep.Plan, "\n"), "keystone on controller [running]")
}

// A snapshot read cut once (a lost answer, the worker killed during it) is read again: the plan
// says what runs, not "unknown" (outage-snapshot-retries).
func TestOutageRecoverySnapshotReadIsRetried(t *testing.T) {
	w := newWorld()
	w.stateFails = map[string]int{"keystone@controller": 1, "mariadb@controller": 2}
	f := newOutageFixture(t, outageTable(false), w)
	f.run(wf.OutageRecovery.Type, wf.OutageRecoveryInput{Meta: wf.Meta{RequestedBy: "carol", DryRun: true}})
	rep := f.report()
	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	plan := strings.Join(rep.Plan, "\n")
	assert.Contains(t, plan, "keystone on controller [running]")
	assert.Contains(t, plan, "mariadb on controller [stopped]")
	assert.NotContains(t, plan, "[unknown]")
	assert.Equal(t, map[string]int{"keystone@controller": 0, "mariadb@controller": 0}, w.stateFails, "every failed read was read again")
}

// orderOf keeps the names of want in the order they appear in got.
func orderOf(got []string, want ...string) []string {
	var out []string
	for _, g := range got {
		for _, w := range want {
			if strings.HasPrefix(g, w+"@") {
				out = append(out, g)
			}
		}
	}
	return out
}

func TestOutageRecoveryStallsATierAndResumesOnRetry(t *testing.T) {
	w := newWorld()
	w.broken["rabbitmq-server@controller"] = true
	f := newOutageFixture(t, outageTable(false), w)
	f.env.RegisterDelayedCallback(func() {
		st := f.status()
		require.Equal(t, wf.StatusStalled, st.Status)
		require.Len(t, st.Stalled, 1)
		require.Equal(t, "tier-10", st.Stalled[0].Step)
		require.Contains(t, st.Stalled[0].Error, "port does not accept connections")
		w.mu.Lock()
		// nothing of a later tier was started
		assert.NotContains(t, w.started, "nova-api@controller")
		assert.Empty(t, w.startedI)
		w.broken["rabbitmq-server@controller"] = false
		w.mu.Unlock()
		f.update(wf.UpdateResolve, wf.ResolveRequest{Step: "tier-10", Action: wf.ResolveRetry, By: "bob"}, "")
	}, 2*time.Hour)
	f.run(wf.OutageRecovery.Type, wf.OutageRecoveryInput{Meta: wf.Meta{RequestedBy: "carol"}})
	rep := f.report()
	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	assert.Contains(t, f.notified, "step-stalled:tier-10")
	// Started once, though the step ran twice, and still reported as started (not "already up").
	assert.Equal(t, 1, strings.Count(strings.Join(w.started, ","), "rabbitmq-server@controller"))
	tiers := tierReports(t, rep)
	assert.Contains(t, tiers[10].Started, "rabbitmq-server@controller")
	assert.NotContains(t, tiers[10].AlreadyUp, "rabbitmq-server@controller")
	assert.Contains(t, w.started, "nova-api@controller")
}

// A tier in slices (outage-continue-as-new; slices of 2 here) that stalls in its second slice:
// the retry goes on from that slice, the first one's services are neither started nor verified
// again, and the report still lists every service of the tier once.
func TestOutageRecoveryRetryGoesOnFromTheSliceThatStalled(t *testing.T) {
	defer wf.SetOutageSlice(2)()
	table := outageTable(false)
	db := &table.Tiers[4] // tier 10
	for _, n := range []string{"memcached", "redis"} {
		db.Services = append(db.Services, activities.OutageService{Host: "controller", Role: "controller", Service: n, Verify: []string{"process"}})
	}
	w := newWorld()
	w.broken["redis@controller"] = true
	f := newOutageFixture(t, table, w)
	f.env.RegisterDelayedCallback(func() {
		st := f.status()
		require.Equal(t, wf.StatusStalled, st.Status)
		require.Len(t, st.Stalled, 1)
		require.Equal(t, "tier-10", st.Stalled[0].Step)
		w.mu.Lock()
		assert.Equal(t, 1, w.verifies["mariadb@controller"], "the first slice verified once")
		w.broken["redis@controller"] = false
		w.mu.Unlock()
		f.update(wf.UpdateResolve, wf.ResolveRequest{Step: "tier-10", Action: wf.ResolveRetry, By: "bob"}, "")
	}, 2*time.Hour)
	f.run(wf.OutageRecovery.Type, wf.OutageRecoveryInput{Meta: wf.Meta{RequestedBy: "carol"}})
	rep := f.report()
	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	w.mu.Lock()
	defer w.mu.Unlock()
	assert.Equal(t, 1, w.verifies["mariadb@controller"], "not verified again on the retry")
	assert.Equal(t, 1, w.verifies["rabbitmq-server@controller"], "not verified again on the retry")
	assert.Equal(t, 2, w.verifies["memcached@controller"], "the stalled slice again")
	assert.Equal(t, 1, strings.Count(strings.Join(w.started, ","), "mariadb@controller"))
	tiers := tierReports(t, rep)
	assert.ElementsMatch(t, []string{"mariadb@controller", "rabbitmq-server@controller", "memcached@controller", "redis@controller"}, tiers[10].Started)
	assert.ElementsMatch(t, []string{"mariadb@controller verified", "rabbitmq-server@controller verified", "memcached@controller verified", "redis@controller verified",
		"database integrity: 120 table(s) of nova checked (mariadb-check --check --databases nova)",
		"instances before the outage (database, before the power-state sync): 2 of 3 ran"},
		tiers[10].Verified, "each service's evidence once, then the check's")
	for _, s := range rep.Steps {
		if s.Name == "tier-10" {
			assert.Equal(t, 2, s.Attempts)
		}
	}
}

func TestOutageRecoveryDryRunAndFromTierAndGate(t *testing.T) {
	// Dry run: the plan only, nothing started.
	w := newWorld()
	f := newOutageFixture(t, outageTable(false), w)
	f.run(wf.OutageRecovery.Type, wf.OutageRecoveryInput{Meta: wf.Meta{RequestedBy: "carol", DryRun: true}})
	rep := f.report()
	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	assert.Empty(t, w.started)
	assert.Contains(t, strings.Join(rep.Plan, "\n"), "mariadb on controller [stopped] (process, port:3306)")

	// --from-tier 15 with the gate: tiers below are not run, the instances are read late (a
	// warning) and started only after the signed approval.
	w = newWorld()
	f = newOutageFixture(t, outageTable(true), w)
	f.approveAt(wf.GateApproveInstanceStart, "bob", time.Hour)
	f.run(wf.OutageRecovery.Type, wf.OutageRecoveryInput{Meta: wf.Meta{RequestedBy: "carol"}, FromTier: 15})
	rep = f.report()
	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	assert.Equal(t, []string{"nova-api@controller"}, w.started)
	assert.ElementsMatch(t, []string{"i-1", "i-3"}, w.startedI)
	tiers := tierReports(t, rep)
	assert.Len(t, tiers[5].AlreadyUp, 2, "compute1 was not restarted by this run: its guests are taken as running")
	assert.Equal(t, "not-run", tiers[10].State)
	require.NotEmpty(t, rep.Decisions)
	assert.Equal(t, wf.GateApproveInstanceStart, rep.Decisions[0].Name)
	assert.Contains(t, strings.Join(rep.Plan, "\n"), "tier 10 message queue and database: not run (--from-tier 15)")
}

// An instance that does not start again is a finding; the cloud's recovery completes.
func TestOutageRecoveryInstanceThatFailsIsAFinding(t *testing.T) {
	w := newWorld()
	w.failI["i-3"] = true
	f := newOutageFixture(t, outageTable(false), w)
	f.run(wf.OutageRecovery.Type, wf.OutageRecoveryInput{Meta: wf.Meta{RequestedBy: "carol"}})
	rep := f.report()
	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	assert.NotContains(t, f.notified, "step-stalled:tier-5")
	tiers := tierReports(t, rep)
	assert.Len(t, tiers[5].Started, 1)
	require.Len(t, tiers[5].Findings, 1)
	assert.Contains(t, tiers[5].Findings[0], "no valid host")
}

// A tier's own parallel (outage.tiers[].parallel) bounds that tier; the plan says so. A
// --parallel given to the run wins over it.
func TestOutageRecoveryTierParallel(t *testing.T) {
	table := outageTable(false)
	table.Tiers[2].Parallel = 8 // tier 4, the compute hosts
	w := newWorld()
	f := newOutageFixture(t, table, w)
	f.run(wf.OutageRecovery.Type, wf.OutageRecoveryInput{Meta: wf.Meta{RequestedBy: "carol", DryRun: true}})
	rep := f.report()
	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	plan := strings.Join(rep.Plan, "\n")
	assert.Contains(t, plan, "tier 4 compute hosts: nova-compute on compute1 [stopped] (process); 8 at once (the tier's parallel)")
	assert.Equal(t, 1, strings.Count(plan, "at once"), "only the tier that has its own bound")

	f = newOutageFixture(t, table, newWorld())
	f.run(wf.OutageRecovery.Type, wf.OutageRecoveryInput{Meta: wf.Meta{RequestedBy: "carol", DryRun: true}, Parallel: 2})
	rep = f.report()
	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	assert.NotContains(t, strings.Join(rep.Plan, "\n"), "at once", "--parallel given: the run's bound for every tier")

	// A run with it completes like any other.
	w = newWorld()
	f = newOutageFixture(t, table, w)
	f.run(wf.OutageRecovery.Type, wf.OutageRecoveryInput{Meta: wf.Meta{RequestedBy: "carol"}})
	rep = f.report()
	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	assert.Contains(t, w.started, "nova-compute@compute1")
}
