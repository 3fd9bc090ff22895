package workflows_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/worker"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/config/policy"
	"github.com/stackrun/stackrun/internal/app/control"
	"github.com/stackrun/stackrun/internal/infra/trust"
	"github.com/stackrun/stackrun/internal/testenv/devserver"
	wf "github.com/stackrun/stackrun/workflows"
)

// outageChainWorld is a cloud after a power loss behind a real worker on a real dev server
// (real history, real continue-as-new): every call of the outage activities, in order.
type outageChainWorld struct {
	mu      sync.Mutex
	running map[string]bool
	calls   map[string]int // activity/key -> calls
	seq     []string       // what was verified (hosts, services) or started (instances), in order
	// hold, when set, is called before a state is read (its error the read's): a worker that
	// stops in the middle of the snapshot.
	hold func(ctx context.Context, key string) error
}

// outageChainTable: five hosts to verify, five computes, the database with its check, the
// compute API with the hypervisors' check, five instances that ran before (after the gate).
// With slices of two, the host and compute tiers and the instances take three slices each.
func outageChainTable() (activities.OutageTable, []activities.OutageInstance) {
	var hosts, computes []string
	var svcs []activities.OutageService
	var before []activities.OutageInstance
	for i := 1; i <= 5; i++ {
		hosts = append(hosts, fmt.Sprintf("host%d", i))
		c := fmt.Sprintf("compute%d", i)
		computes = append(computes, c)
		svcs = append(svcs, activities.OutageService{Host: c, Role: "compute", Service: "nova-compute", Verify: []string{"process"}})
		before = append(before, activities.OutageInstance{ID: fmt.Sprintf("i-%d", i), Name: fmt.Sprintf("web-%d", i), Host: c, VMState: "active", PowerState: activities.PowerRunning})
	}
	before = append(before, activities.OutageInstance{ID: "i-off", Name: "was-off", Host: "compute1", VMState: "stopped", PowerState: activities.PowerShutdown})
	ctl := func(name string, verify ...string) activities.OutageService {
		return activities.OutageService{Host: "controller", Role: "controller", Service: name, Verify: append([]string{"process"}, verify...)}
	}
	return activities.OutageTable{Instances: "ran-before", Gate: true, Tiers: []activities.OutageTier{
		{Priority: 1, Name: "internal network", Hosts: hosts, HostVerify: []string{"reachable"}},
		{Priority: 3, Name: "public network", Missing: []string{"neutron-l3-agent"}},
		{Priority: 4, Name: "compute hosts", Hosts: computes, Services: svcs},
		{Priority: 5, Name: "user instances", Instances: true},
		{Priority: 10, Name: "message queue and database", Hosts: []string{"controller"}, Checks: []string{"db-integrity"},
			Services: []activities.OutageService{ctl("mariadb", "port:3306"), ctl("rabbitmq-server", "port:5672")}},
		{Priority: 99, Name: "nova-api", Hosts: []string{"controller"}, Checks: []string{"hypervisors"},
			Services: []activities.OutageService{ctl("nova-api", "api:compute")}},
	}}, before
}

// startOutageWorker runs a worker of outage-recovery on tq with policy p against w, until the
// test ends or stop.
func startOutageWorker(t *testing.T, srv *devserver.Server, tq string, p policy.Policy, w *outageChainWorld) (stop func()) {
	table, before := outageChainTable()
	wk := worker.New(srv.Client, tq, worker.Options{})
	wf.Register(wk)
	keys := testKeys()
	wk.RegisterActivity(&activities.Machine{Policy: p, Keys: func() (trust.Policy, error) { return keys, nil }})
	wk.RegisterActivity(&activities.Lease{Client: srv.Client, TaskQueue: tq})
	reg := func(name string, fn any) { wk.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: name}) }
	key := func(s activities.OutageService) string { return s.Service + "@" + s.Host }
	call := func(what string, seq bool) {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.calls[what]++
		if seq {
			w.seq = append(w.seq, what)
		}
	}
	reg("OutagePlan", func(context.Context) (activities.OutageTable, error) { call("plan", false); return table, nil })
	reg("OutageServiceState", func(ctx context.Context, s activities.OutageService) (activities.ServiceState, error) {
		call("state/"+key(s), false)
		if w.hold != nil {
			if err := w.hold(ctx, key(s)); err != nil {
				return activities.ServiceState{}, err
			}
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		return activities.ServiceState{Running: w.running[key(s)]}, nil
	})
	reg("OutageHostUp", func(_ context.Context, r activities.OutageHostRequest) (activities.OutageHostResult, error) {
		call("host/"+r.Host, true)
		return activities.OutageHostResult{Evidence: []string{r.Host + " answers over SSH"}}, nil
	})
	reg("OutageStartService", func(_ context.Context, s activities.OutageService) (activities.OutageStarted, error) {
		call("start/"+key(s), false)
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.running[key(s)] {
			return activities.OutageStarted{AlreadyUp: true}, nil
		}
		w.running[key(s)] = true
		return activities.OutageStarted{At: time.Now()}, nil
	})
	reg("OutageVerifyService", func(_ context.Context, r activities.OutageVerifyRequest) (activities.OutageVerified, error) {
		call("verify/"+key(r.OutageService), true)
		return activities.OutageVerified{Evidence: []string{key(r.OutageService) + " verified"}}, nil
	})
	reg("OutageDBIntegrity", func(context.Context) (activities.OutageDBCheck, error) {
		call("db-integrity", true)
		return activities.OutageDBCheck{Command: "mariadb-check --check --databases nova", Databases: []string{"nova"}, Tables: 120}, nil
	})
	reg("OutageInstancesBefore", func(context.Context) ([]activities.OutageInstance, error) {
		call("instances-before", false)
		return before, nil
	})
	reg("OutageHypervisors", func(context.Context, time.Time) (activities.OutageHypervisorCheck, error) {
		call("hypervisors", true)
		up := map[string]string{}
		for i := 1; i <= 5; i++ {
			up[fmt.Sprintf("compute%d", i)] = "up"
		}
		return activities.OutageHypervisorCheck{Computes: up, Instances: len(before)}, nil
	})
	reg("OutageStartInstance", func(_ context.Context, r activities.OutageInstanceRequest) (activities.OutageInstanceResult, error) {
		call("instance/"+r.ID, true)
		return activities.OutageInstanceResult{ID: r.ID, Action: "hard-reboot", Status: "ACTIVE", Power: activities.PowerRunning}, nil
	})
	require.NoError(t, wk.Start())
	stop = sync.OnceFunc(wk.Stop)
	t.Cleanup(stop)
	return stop
}

// runOutage starts the recovery as alice on tq, approves the instances' gate as bob whenever one
// is open (it must open once), and returns the report and the start.
func runOutage(t *testing.T, ctx context.Context, srv *devserver.Server, tq string) (*wf.Report, control.Started) {
	rb, err := wf.FindRunbook("outage-recovery")
	require.NoError(t, err)
	started, err := control.Start(ctx, srv.Client, tq, rb, &wf.OutageRecoveryInput{Meta: wf.Meta{RequestedBy: "alice", Reason: "power loss"}, Parallel: 2},
		control.KeySigner{Key: testOps["alice"].Signer})
	require.NoError(t, err)
	for {
		st, err := control.Status(ctx, srv.Client, started.WorkflowID)
		if err == nil && len(st.OpenGates) == 1 {
			require.Equal(t, wf.GateApproveInstanceStart, st.OpenGates[0].Name)
			break
		}
		require.NoError(t, ctx.Err(), "the instances' gate never opened")
		time.Sleep(50 * time.Millisecond)
	}
	_, err = control.Approve(ctx, srv.Client, started.WorkflowID, wf.GateDecisionRequest{Gate: wf.GateApproveInstanceStart, By: "bob"},
		control.KeySigner{Key: testOps["bob"].Signer})
	require.NoError(t, err)
	rep, err := control.Report(ctx, srv.Client, started.WorkflowID, true)
	require.NoError(t, err)
	return rep, started
}

// comparable is what must be the same in a chain's report and in one run's: the summary, every
// tier (its lists sorted: services verified in parallel finish in any order; no seconds), the
// steps with their states and attempts, the findings, the decisions' gates, how many calls of
// each activity the audit trail records.
func outageComparable(t *testing.T, rep *wf.Report) map[string]any {
	tiers := tierReports(t, rep)
	out := map[string]any{"summary": rep.Summary, "plan": rep.Plan}
	for p, tr := range tiers {
		for _, l := range [][]string{tr.Started, tr.AlreadyUp, tr.Verified, tr.Findings} {
			slices.Sort(l)
		}
		out[fmt.Sprintf("tier %d", p)] = fmt.Sprintf("%s started %v up %v verified %v findings %v", tr.State, tr.Started, tr.AlreadyUp, tr.Verified, tr.Findings)
	}
	var steps []string
	for _, s := range rep.Steps {
		steps = append(steps, fmt.Sprintf("%s %s %d", s.Name, s.State, s.Attempts))
	}
	out["steps"] = steps
	var findings []string
	for _, f := range rep.Findings {
		findings = append(findings, f.Severity+" "+f.Message)
	}
	slices.Sort(findings)
	out["findings"] = findings
	var gates []string
	for _, d := range rep.Decisions {
		gates = append(gates, d.Name+" "+d.By)
	}
	out["decisions"] = gates
	calls := map[string]int{}
	for _, a := range rep.Audit {
		calls[a.Activity] += max(a.Count, 1)
	}
	out["audit"] = calls
	return out
}

// TestOutageRecoveryContinuesAsNewWithFullReport: with a history budget every unit passes and
// slices of two, a recovery continues as new between the slices of its plan's snapshot, between
// its tiers and between the slices of a tier (on a real dev server), and ends as one run does:
// planned once (the table read once, each service's state once: the same plan), the gate asked
// once, every host, service and instance brought back and verified
// once, tier after tier in order, and the same report as the same recovery in one run. Every
// run of the chain replays.
func TestOutageRecoveryContinuesAsNewWithFullReport(t *testing.T) {
	srv := devserver.Start(t)
	t.Cleanup(wf.SetOutageSlice(2))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	one := &outageChainWorld{running: map[string]bool{"rabbitmq-server@controller": true}, calls: map[string]int{}}
	startOutageWorker(t, srv, "outage-one-run", basePolicy(), one)
	rep1, started1 := runOutage(t, ctx, srv, "outage-one-run")
	require.Equal(t, wf.StatusCompleted, rep1.Status, rep1.Summary)
	lengths1, _ := chainLengths(t, ctx, srv.Client, started1.WorkflowID, started1.RunID)
	require.Len(t, lengths1, 1, "under the default budget: one run")

	chain := &outageChainWorld{running: map[string]bool{"rabbitmq-server@controller": true}, calls: map[string]int{}}
	p := basePolicy()
	p.HistoryBudget = 1
	startOutageWorker(t, srv, "outage-chain", p, chain)
	rep, started := runOutage(t, ctx, srv, "outage-chain")
	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	lengths, status := chainLengths(t, ctx, srv.Client, started.WorkflowID, started.RunID)
	require.Equal(t, enums.WORKFLOW_EXECUTION_STATUS_COMPLETED, status)
	t.Logf("one run: %d events; the chain: runs of %v events", lengths1[0], lengths)
	// The snapshot of 8 services in 4 slices; tiers 1, 3, 4, 10, 99, 5, of which 1 and 4 and
	// the instances in three slices each (and tier 4's hosts are not verified: it has no
	// host_verify): a run for each slice of the snapshot, each tier and each slice of a tier.
	require.Len(t, lengths, 4+12, "a run per slice of the snapshot, per tier and per slice of a tier")
	assert.EqualValues(t, 4+12, rep.Details["runs"])
	assert.Nil(t, rep1.Details["runs"], "one run")
	replayChain(t, ctx, srv.Client, started.WorkflowID, started.RunID)

	assert.Equal(t, outageComparable(t, rep1), outageComparable(t, rep), "the chain's report is the one run's")
	assert.Contains(t, rep.Summary, "cloud recovered: 5 tier(s) verified, 1 empty; 7 started, 1 already up (5 instance(s) started)")

	chain.mu.Lock()
	defer chain.mu.Unlock()
	one.mu.Lock()
	defer one.mu.Unlock()
	assert.Equal(t, one.calls, chain.calls, "the same calls as in one run")
	assert.Equal(t, 1, chain.calls["plan"], "planned once")
	assert.Equal(t, 1, chain.calls["instances-before"], "the instances' record read once")
	for k, n := range chain.calls {
		assert.Equal(t, 1, n, "%s: once", k)
	}
	// Tier after tier, in the run's order (the instances after the compute API).
	tierOf := func(what string) int {
		for i, prefix := range []string{"host/", "verify/nova-compute@", "verify/mariadb@", "verify/rabbitmq-server@", "db-integrity", "verify/nova-api@", "hypervisors", "instance/"} {
			if len(what) >= len(prefix) && what[:len(prefix)] == prefix {
				return []int{1, 4, 10, 10, 10, 99, 99, 5}[i]
			}
		}
		return -1
	}
	order := []int{1, 4, 10, 99, 5}
	var got []int
	for _, what := range chain.seq {
		k := slices.Index(order, tierOf(what))
		require.GreaterOrEqual(t, k, 0, "%s: of no tier", what)
		if len(got) > 0 {
			require.GreaterOrEqual(t, k, got[len(got)-1], "%s before a tier that comes earlier: %v", what, chain.seq)
		}
		got = append(got, k)
	}
	assert.Len(t, chain.seq, 5+5+2+1+1+1+5, "every host, service, check and instance: %v", chain.seq)
	for _, s := range rep.Steps {
		assert.Contains(t, []wf.StepState{wf.StepDone, wf.StepSkipped}, s.State, "step %s", s.Name)
	}
	require.Len(t, rep.Decisions, 1, "the gate asked once: %+v", rep.Decisions)
}

// TestOutageRecoveryPlanContinuesAsNewInItsSnapshot: a dry run whose snapshot is 4 slices of 2
// services continues as new between them (a budget of 1 event), the plan going on where the last
// run stopped, and ends with the plan of the same dry run in one run: the table read once, each
// service's state once, the plan's states ([running], [stopped]) the same. Every run replays.
func TestOutageRecoveryPlanContinuesAsNewInItsSnapshot(t *testing.T) {
	srv := devserver.Start(t)
	t.Cleanup(wf.SetOutageSlice(2))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rb, err := wf.FindRunbook("outage-recovery")
	require.NoError(t, err)
	dry := func(tq string, p policy.Policy) (*wf.Report, []int, *outageChainWorld) {
		w := &outageChainWorld{running: map[string]bool{"rabbitmq-server@controller": true, "nova-compute@compute3": true}, calls: map[string]int{}}
		startOutageWorker(t, srv, tq, p, w)
		started, err := control.Start(ctx, srv.Client, tq, rb, &wf.OutageRecoveryInput{Meta: wf.Meta{RequestedBy: "alice", Reason: "power loss", DryRun: true}},
			control.KeySigner{Key: testOps["alice"].Signer})
		require.NoError(t, err)
		rep, err := control.Report(ctx, srv.Client, started.WorkflowID, true)
		require.NoError(t, err)
		lengths, status := chainLengths(t, ctx, srv.Client, started.WorkflowID, started.RunID)
		require.Equal(t, enums.WORKFLOW_EXECUTION_STATUS_COMPLETED, status)
		replayChain(t, ctx, srv.Client, started.WorkflowID, started.RunID)
		return rep, lengths, w
	}
	rep1, lengths1, one := dry("outage-dry-one", basePolicy())
	require.Len(t, lengths1, 1, "under the default budget: one run")
	p := basePolicy()
	p.HistoryBudget = 1
	rep, lengths, chain := dry("outage-dry-chain", p)
	t.Logf("one run: %d events; the chain: runs of %v events", lengths1[0], lengths)
	require.Len(t, lengths, 4, "a run per slice of the snapshot (8 services, 2 a slice)")
	assert.EqualValues(t, 4, rep.Details["runs"])

	require.Equal(t, wf.StatusCompleted, rep.Status, rep.Summary)
	assert.Equal(t, rep1.Summary, rep.Summary)
	assert.Equal(t, rep1.Plan, rep.Plan, "the chain's plan is the one run's")
	assert.Contains(t, rep.Plan, "tier 10 message queue and database: mariadb on controller [stopped] (process, port:3306); "+
		"rabbitmq-server on controller [running] (process, port:5672); then db-integrity")
	assert.Contains(t, rep.Plan[2], "nova-compute on compute3 [running] (process); nova-compute on compute4 [stopped] (process)")
	var steps, steps1 []string
	for _, s := range rep.Steps {
		steps = append(steps, fmt.Sprintf("%s %s %d", s.Name, s.State, s.Attempts))
	}
	for _, s := range rep1.Steps {
		steps1 = append(steps1, fmt.Sprintf("%s %s %d", s.Name, s.State, s.Attempts))
	}
	assert.Equal(t, steps1, steps, "the same steps, states and attempts")
	chain.mu.Lock()
	defer chain.mu.Unlock()
	one.mu.Lock()
	defer one.mu.Unlock()
	assert.Equal(t, one.calls, chain.calls, "the same calls as in one run")
	assert.Len(t, chain.calls, 1+8, "the table and 8 states: %v", chain.calls)
	for k, n := range chain.calls {
		assert.Equal(t, 1, n, "%s: once", k)
	}
}

// TestOutageRecoverySnapshotGoesOnOnAnotherWorker: the worker is stopped in the middle of the
// snapshot's third slice (its third run: the slices of 2 before it were recorded in the runs
// before), and another worker, with nothing cached, goes on: it reads the states of that slice
// and the next, never those of the first two slices, and the plan is the one run's.
func TestOutageRecoverySnapshotGoesOnOnAnotherWorker(t *testing.T) {
	srv := devserver.Start(t)
	t.Cleanup(wf.SetOutageSlice(2))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rb, err := wf.FindRunbook("outage-recovery")
	require.NoError(t, err)
	in := &wf.OutageRecoveryInput{Meta: wf.Meta{RequestedBy: "alice", Reason: "power loss", DryRun: true}}
	world := func() *outageChainWorld {
		return &outageChainWorld{running: map[string]bool{"rabbitmq-server@controller": true}, calls: map[string]int{}}
	}
	one := world()
	startOutageWorker(t, srv, "outage-snap-one", basePolicy(), one)
	started1, err := control.Start(ctx, srv.Client, "outage-snap-one", rb, in, control.KeySigner{Key: testOps["alice"].Signer})
	require.NoError(t, err)
	rep1, err := control.Report(ctx, srv.Client, started1.WorkflowID, true)
	require.NoError(t, err)

	p := basePolicy()
	p.HistoryBudget = 1
	a, b := world(), world()
	reached := make(chan struct{})
	// The first service of the third slice (tier 4's computes first): held until the worker stops.
	a.hold = func(ctx context.Context, key string) error {
		if key != "nova-compute@compute5" {
			return nil
		}
		close(reached)
		<-ctx.Done()
		return ctx.Err()
	}
	stopA := startOutageWorker(t, srv, "outage-snap-chain", p, a)
	started, err := control.Start(ctx, srv.Client, "outage-snap-chain", rb, in, control.KeySigner{Key: testOps["alice"].Signer})
	require.NoError(t, err)
	select {
	case <-reached:
	case <-ctx.Done():
		t.Fatal("the snapshot's third slice never began")
	}
	stopA()
	startOutageWorker(t, srv, "outage-snap-chain", p, b)
	rep, err := control.Report(ctx, srv.Client, started.WorkflowID, true)
	require.NoError(t, err)
	lengths, status := chainLengths(t, ctx, srv.Client, started.WorkflowID, started.RunID)
	require.Equal(t, enums.WORKFLOW_EXECUTION_STATUS_COMPLETED, status)
	require.Len(t, lengths, 4, "a run per slice of the snapshot")
	replayChain(t, ctx, srv.Client, started.WorkflowID, started.RunID)
	assert.Equal(t, rep1.Plan, rep.Plan, "the plan of the one run")

	a.mu.Lock()
	defer a.mu.Unlock()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, k := range []string{"nova-compute@compute1", "nova-compute@compute2", "nova-compute@compute3", "nova-compute@compute4"} {
		assert.Equal(t, 1, a.calls["state/"+k], "%s: read by the first worker", k)
		assert.Zero(t, b.calls["state/"+k], "%s: recorded in an earlier run, not read again", k)
	}
	// The slice under way (its reads in parallel: one the stop cut, read again, the other by
	// either worker, twice if the stop cut its answer too), then the last, by the second worker.
	assert.GreaterOrEqual(t, b.calls["state/nova-compute@compute5"], 1, "the state whose read the stop cut: read again")
	assert.GreaterOrEqual(t, a.calls["state/mariadb@controller"]+b.calls["state/mariadb@controller"], 1, "mariadb@controller: read")
	for _, k := range []string{"rabbitmq-server@controller", "nova-api@controller"} {
		assert.Equal(t, 1, b.calls["state/"+k], "%s: read by the second worker", k)
		assert.Zero(t, a.calls["state/"+k], "%s: not by the first", k)
	}
	assert.Zero(t, b.calls["plan"], "the table is not read again")
}
