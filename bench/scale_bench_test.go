//go:build bench

// The scale bench (issue 16, "Scale, measured"): the real worker (bench/scaleworker: every
// workflow and the worker options of stackrun-worker, only the host and OpenStack activities
// mocked) over a 10,000-host inventory, on the Temporal dev server and on a real cluster
// (scripts/cluster/up.sh: five Temporal services on PostgreSQL, mTLS), side by side:
//
//   - 200 runbooks in flight at once (restart-service, evacuate, post-reboot-check, each started
//     signed by alice, every gate approved signed by bob as soon as it opens): start to first
//     step, worker CPU and RSS, history events and bytes per run, the lease workflow's history;
//   - 1,000 runs parked at their gate: worker RSS, worker and server CPU, and the frontend's
//     requests by operation (its Prometheus metrics) over a quiet minute, against a minute of
//     the same worker idle.
//
// It prints tables and asserts only what must hold (every run completes), never a time.
//
//	flock -o /tmp/stackrun-cluster.lock go test -tags bench -run TestScaleBench -v -timeout 60m ./bench/
//
// STACKRUN_SCALE_SIDES=dev,cluster (default both), STACKRUN_SCALE_RUNS=200,
// STACKRUN_SCALE_PARKED=1000, STACKRUN_SCALE_HOSTS=10000, STACKRUN_SCALE_CACHE (the worker's
// worker.workflow_cache_size; default the SDK's 10,000), STACKRUN_SCALE_WINDOW=60s,
// STACKRUN_SCALE_PARTS=flight,parked (the runs in flight with the idle window; the parked runs).
package bench

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/testsuite"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/internal/app/control"
	"github.com/stackrun/stackrun/internal/testenv/devserver"
	"github.com/stackrun/stackrun/internal/testenv/operators"
	"github.com/stackrun/stackrun/workflows"
)

type devserverOptions = testsuite.DevServerOptions

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// sideResult is what one Temporal side measured.
type sideResult struct {
	name string
	rows map[string]string
}

func TestScaleBench(t *testing.T) {
	nRuns, nParked, nHosts := envInt("STACKRUN_SCALE_RUNS", 200), envInt("STACKRUN_SCALE_PARKED", 1000), envInt("STACKRUN_SCALE_HOSTS", 10000)
	window, err := time.ParseDuration(cmpOr(os.Getenv("STACKRUN_SCALE_WINDOW"), "60s"))
	require.NoError(t, err)
	sides := strings.Split(cmpOr(os.Getenv("STACKRUN_SCALE_SIDES"), "dev,cluster"), ",")
	cache := os.Getenv("STACKRUN_SCALE_CACHE")
	parts := strings.Split(cmpOr(os.Getenv("STACKRUN_SCALE_PARTS"), "flight,parked"), ",")
	root := devserver.RepoRoot(t)
	bin := filepath.Join(t.TempDir(), "scaleworker")
	goBuild(t, root, "./bench/scaleworker", bin)
	tm := team{alice: operators.New(t, "alice"), bob: operators.New(t, "bob")}

	var results []sideResult
	for _, s := range sides {
		t.Run(s, func(t *testing.T) {
			var side *temporalSide
			switch s {
			case "dev":
				side = devSide(t)
			case "cluster":
				side = clusterSide(t, tm)
			default:
				t.Fatalf("STACKRUN_SCALE_SIDES: unknown side %q (dev, cluster)", s)
			}
			res := sideResult{name: side.name, rows: map[string]string{}}
			tq := "scale-bench"
			cfg := workerConfig(t, side, tq, nHosts, tm, cache)
			b := &scaleBench{t: t, side: side, tq: tq, tm: tm, res: res.rows}

			if slices.Contains(parts, "flight") {
				w := startWorker(t, bin, cfg)
				b.waitPollers(w)
				b.idle(w, window)
				b.inFlight(w, nRuns, nHosts)
				w.stop()
			}
			if slices.Contains(parts, "parked") {
				w := startWorker(t, bin, cfg)
				b.waitPollers(w)
				b.parked(w, nParked, nHosts, window)
				w.stop()
			}
			results = append(results, res)
		})
	}
	printScale(results, nRuns, nParked, nHosts, window, cache)
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

type scaleBench struct {
	t    *testing.T
	side *temporalSide
	tq   string
	tm   team
	res  map[string]string
}

func (b *scaleBench) ctx(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

// waitPollers waits until the worker polls its task queue.
func (b *scaleBench) waitPollers(w *scaleWorker) {
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		ctx, cancel := b.ctx(10 * time.Second)
		d, err := b.side.client.DescribeTaskQueue(ctx, b.tq, enumspb.TASK_QUEUE_TYPE_WORKFLOW)
		cancel()
		for _, p := range d.GetPollers() {
			if err == nil && strings.Contains(p.GetIdentity(), fmt.Sprintf("scaleworker/%d", w.pid())) {
				return
			}
		}
		if w.cmd.ProcessState != nil {
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	log, _ := os.ReadFile(w.log)
	b.t.Fatalf("the scale worker does not poll %s:\n%s", b.tq, lastLines(string(log), 20))
}

// idle measures a window with the worker polling and nothing to do.
func (b *scaleBench) idle(w *scaleWorker, window time.Duration) {
	before, u0, s0 := counters(b.t, b.side.metrics), procUsage(w.pid()), procUsage(b.side.pids()...)
	time.Sleep(window)
	after, u1, s1 := counters(b.t, b.side.metrics), procUsage(w.pid()), procUsage(b.side.pids()...)
	polls, other := requestRates(before, after, window)
	b.res["idle.polls"] = fmt.Sprintf("%.2f/s", polls)
	b.res["idle.other"] = fmt.Sprintf("%.2f/s", other)
	b.res["idle.worker"] = fmt.Sprintf("%.1f%% of a core, RSS %s", pct(u1.cpu-u0.cpu, window), mib(u1.rss))
	b.res["idle.server"] = fmt.Sprintf("%.1f%% of a core", pct(s1.cpu-s0.cpu, window))
	b.res["idle.ops"] = topOps(before, after)
}

// topOps names the frontend's busiest operations between two scrapes, with their counts.
func topOps(before, after map[string]float64) string {
	type op struct {
		name string
		n    float64
	}
	var ops []op
	for k, v := range after {
		if n := v - before[k]; strings.HasPrefix(k, "req/") && n > 0 {
			ops = append(ops, op{strings.TrimPrefix(k, "req/"), n})
		}
	}
	sort.Slice(ops, func(i, j int) bool { return ops[i].n > ops[j].n || ops[i].n == ops[j].n && ops[i].name < ops[j].name })
	var out []string
	for i, o := range ops {
		if i == 6 {
			out = append(out, "…")
			break
		}
		out = append(out, fmt.Sprintf("%s %.0f", o.name, o.n))
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ", ")
}

// requestRates is the frontend's requests per second between two scrapes: long polls, and the rest.
func requestRates(before, after map[string]float64, d time.Duration) (polls, other float64) {
	for k, v := range after {
		if !strings.HasPrefix(k, "req/") {
			continue
		}
		n := v - before[k]
		if strings.HasPrefix(k, "req/Poll") {
			polls += n
		} else {
			other += n
		}
	}
	return polls / d.Seconds(), other / d.Seconds()
}

func pct(cpu, wall time.Duration) float64 { return 100 * cpu.Seconds() / wall.Seconds() }

func mib(kib int64) string { return fmt.Sprintf("%.0f MiB", float64(kib)/1024) }

// run is one run the bench started.
type run struct {
	id, runID, runbook string
	start              time.Time
}

// mixInput is the i-th run of the mix: restart-service, evacuate, post-reboot-check in turn, each
// on a host of its own spread over the inventory (post-reboot-check's hosts are those whose
// instances the mocked world keeps shut off, index ≡ 2 mod 3).
func mixInput(i, n, nHosts int) (workflows.Runbook, workflows.Input) {
	host := hostName(3*((i*nHosts)/(3*n)) + i%3)
	meta := workflows.Meta{RequestedBy: "alice", Reason: "scale bench"}
	switch i % 3 {
	case 0:
		return workflows.RestartService, &workflows.RestartServiceInput{Meta: meta, Host: host, Service: "nova-compute"}
	case 1:
		return workflows.Evacuate, &workflows.EvacuateInput{Meta: meta, Host: host, Parallel: 2}
	}
	return workflows.PostRebootCheck, &workflows.PostRebootCheckInput{Meta: meta, Host: host, StartInstances: true}
}

// startRuns starts n runs, 20 at a time, signed by alice.
func (b *scaleBench) startRuns(n int, input func(i int) (workflows.Runbook, workflows.Input)) []run {
	runs := make([]run, n)
	sem := make(chan struct{}, 20)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			rb, in := input(i)
			ctx, cancel := b.ctx(time.Minute)
			defer cancel()
			start := time.Now()
			st, err := control.Start(ctx, b.side.client, b.tq, rb, in, b.tm.signer(b.tm.alice))
			if err != nil {
				errs <- err
				return
			}
			runs[i] = run{id: st.WorkflowID, runID: st.RunID, runbook: rb.Name, start: start}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(b.t, err)
	}
	return runs
}

// approver approves (signed by bob) every gate that opens among the task queue's runs until stop.
func (b *scaleBench) approver(stop <-chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		done := map[string]bool{}
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Second):
			}
			ctx, cancel := b.ctx(time.Minute)
			ids := b.list(ctx, fmt.Sprintf("TaskQueue = '%s' AND ExecutionStatus = 'Running' AND RunbookStatus = 'WaitingApproval'", b.tq))
			sem := make(chan struct{}, 10)
			var mu sync.Mutex
			var iw sync.WaitGroup
			for _, id := range ids {
				iw.Add(1)
				sem <- struct{}{}
				go func() {
					defer iw.Done()
					defer func() { <-sem }()
					st, err := control.Status(ctx, b.side.client, id)
					if err != nil {
						return
					}
					for _, g := range st.OpenGates {
						mu.Lock()
						seen := done[id+" "+g.Name]
						mu.Unlock()
						if seen {
							continue
						}
						_, err := control.Approve(ctx, b.side.client, id, workflows.GateDecisionRequest{Gate: g.Name, By: "bob", Via: "scale-bench"}, b.tm.signer(b.tm.bob))
						if err == nil {
							mu.Lock()
							done[id+" "+g.Name] = true
							mu.Unlock()
						}
					}
				}()
			}
			iw.Wait()
			cancel()
		}
	}()
	return &wg
}

// list returns the workflow IDs a visibility query finds.
func (b *scaleBench) list(ctx context.Context, query string) []string {
	var ids []string
	var token []byte
	for {
		resp, err := b.side.client.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: query, NextPageToken: token, PageSize: 1000})
		if err != nil {
			return ids
		}
		for _, e := range resp.GetExecutions() {
			ids = append(ids, e.GetExecution().GetWorkflowId())
		}
		if token = resp.GetNextPageToken(); len(token) == 0 {
			return ids
		}
	}
}

func (b *scaleBench) count(query string) int64 {
	ctx, cancel := b.ctx(30 * time.Second)
	defer cancel()
	resp, err := b.side.client.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{Query: query})
	if err != nil {
		return -1
	}
	return resp.GetCount()
}

// inFlight starts n runs of the mix at once and follows them to their end.
func (b *scaleBench) inFlight(w *scaleWorker, n, nHosts int) {
	t := b.t
	u0, s0, t0 := procUsage(w.pid()), procUsage(b.side.pids()...), time.Now()
	stop := make(chan struct{})
	appr := b.approver(stop)
	runs := b.startRuns(n, func(i int) (workflows.Runbook, workflows.Input) { return mixInput(i, n, nHosts) })
	startedIn := time.Since(t0)

	reports := make([]*workflows.Report, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, r := range runs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := b.ctx(20 * time.Minute)
			defer cancel()
			var rep workflows.Report
			errs[i] = b.side.client.GetWorkflow(ctx, r.id, r.runID).Get(ctx, &rep)
			reports[i] = &rep
		}()
	}
	wg.Wait()
	wall := time.Since(t0)
	close(stop)
	appr.Wait()
	u1, s1 := procUsage(w.pid()), procUsage(b.side.pids()...)

	first := w.firstSteps()
	var lat []time.Duration
	completed := 0
	byRunbook := map[string][]int64{}
	var maxEvents, maxBytes int64
	maxOf := ""
	for i, r := range runs {
		if f, ok := first[r.id]; ok {
			lat = append(lat, f.Sub(r.start))
		}
		if errs[i] == nil && reports[i].Status == workflows.StatusCompleted {
			completed++
		} else {
			t.Errorf("%s: %v %s %s", r.id, errs[i], reports[i].Status, reports[i].Summary)
		}
		ev, by := b.history(r.id, r.runID)
		byRunbook[r.runbook] = append(byRunbook[r.runbook], ev)
		if ev > maxEvents {
			maxEvents, maxOf = ev, r.runbook
		}
		maxBytes = max(maxBytes, by)
	}
	leaseEvents, _ := b.history(activities.LeaseWorkflowID, "")
	leaseRuns := len(b.listRuns(activities.LeaseWorkflowID))

	b.res["a.started"] = fmt.Sprintf("%d in %.1f s", n, startedIn.Seconds())
	b.res["a.completed"] = fmt.Sprintf("%d / %d", completed, n)
	b.res["a.wall"] = fmt.Sprintf("%.1f s", wall.Seconds())
	b.res["a.latency"] = percentiles(lat)
	var rbs []string
	for rb, evs := range byRunbook {
		slices.Sort(evs)
		rbs = append(rbs, fmt.Sprintf("%s %d–%d", rb, evs[0], evs[len(evs)-1]))
	}
	sort.Strings(rbs)
	b.res["a.events"] = strings.Join(rbs, "; ")
	b.res["a.maxevents"] = fmt.Sprintf("%d (%s)", maxEvents, maxOf)
	b.res["a.maxbytes"] = fmt.Sprintf("%.2f MB", float64(maxBytes)/1e6)
	b.res["a.lease"] = fmt.Sprintf("%d events in its current run, %d run(s) (continue-as-new)", leaseEvents, leaseRuns)
	b.res["a.worker"] = fmt.Sprintf("%.1f s CPU (%.0f%% of a core), peak RSS %s", (u1.cpu - u0.cpu).Seconds(), pct(u1.cpu-u0.cpu, wall), mib(u1.hwm))
	b.res["a.server"] = fmt.Sprintf("%.1f s CPU (%.0f%% of a core)", (s1.cpu - s0.cpu).Seconds(), pct(s1.cpu-s0.cpu, wall))
	require.Less(t, maxEvents, int64(10240), "no run above 10,240 history events")
}

// history is a run's history length and size ("" runID: the current run).
func (b *scaleBench) history(id, runID string) (events, bytes int64) {
	ctx, cancel := b.ctx(30 * time.Second)
	defer cancel()
	d, err := b.side.client.DescribeWorkflowExecution(ctx, id, runID)
	if err != nil {
		b.t.Errorf("describe %s: %v", id, err)
		return 0, 0
	}
	info := d.GetWorkflowExecutionInfo()
	return info.GetHistoryLength(), info.GetHistorySizeBytes()
}

func (b *scaleBench) listRuns(id string) []string {
	ctx, cancel := b.ctx(30 * time.Second)
	defer cancel()
	return b.list(ctx, fmt.Sprintf("WorkflowId = '%s'", id))
}

func percentiles(d []time.Duration) string {
	if len(d) == 0 {
		return "none measured"
	}
	slices.Sort(d)
	at := func(p float64) time.Duration { return d[min(len(d)-1, int(p*float64(len(d))))] }
	ms := func(x time.Duration) string { return fmt.Sprintf("%.0f ms", float64(x.Microseconds())/1000) }
	return fmt.Sprintf("p50 %s, p95 %s, max %s", ms(at(0.5)), ms(at(0.95)), ms(d[len(d)-1]))
}

// parked starts n restart-service runs, waits until every one waits at its gate, then measures a
// quiet window.
func (b *scaleBench) parked(w *scaleWorker, n, nHosts int, window time.Duration) {
	t := b.t
	u0, t0 := procUsage(w.pid()), time.Now()
	b.startRuns(n, func(i int) (workflows.Runbook, workflows.Input) {
		return workflows.RestartService, &workflows.RestartServiceInput{Meta: workflows.Meta{RequestedBy: "alice", Reason: "scale bench: parked"},
			Host: hostName(i * nHosts / n), Service: "nova-compute"}
	})
	q := fmt.Sprintf("TaskQueue = '%s' AND ExecutionStatus = 'Running' AND RunbookStatus = 'WaitingApproval' AND WorkflowType = '%s'", b.tq, workflows.RestartService.Type)
	deadline := time.Now().Add(20 * time.Minute)
	var waiting int64
	for time.Now().Before(deadline) {
		if waiting = b.count(q); waiting >= int64(n) {
			break
		}
		time.Sleep(2 * time.Second)
	}
	require.EqualValues(t, n, waiting, "runs waiting at their gate")
	parkedIn := time.Since(t0)
	u1 := procUsage(w.pid())
	// The gate's search attribute is set before its notification and the task that follows: wait
	// until no workflow or activity task completes for 10 s.
	settled := b.settle(5 * time.Minute)

	before, w0, s0 := counters(t, b.side.metrics), procUsage(w.pid()), procUsage(b.side.pids()...)
	time.Sleep(window)
	after, w1, s1 := counters(t, b.side.metrics), procUsage(w.pid()), procUsage(b.side.pids()...)
	polls, other := requestRates(before, after, window)
	wft := after["req/RespondWorkflowTaskCompleted"] - before["req/RespondWorkflowTaskCompleted"]
	b.res["b.parked"] = fmt.Sprintf("%d in %.1f s, quiet %.0f s later (worker %.1f s CPU, peak RSS %s)", n, parkedIn.Seconds(), settled.Seconds(), (u1.cpu - u0.cpu).Seconds(), mib(u1.hwm))
	b.res["b.rss"] = mib(w1.rss)
	b.res["b.worker"] = fmt.Sprintf("%.2f%% of a core", pct(w1.cpu-w0.cpu, window))
	b.res["b.server"] = fmt.Sprintf("%.1f%% of a core", pct(s1.cpu-s0.cpu, window))
	b.res["b.polls"] = fmt.Sprintf("%.2f/s", polls)
	b.res["b.other"] = fmt.Sprintf("%.2f/s (%.0f workflow tasks)", other, wft)
	b.res["b.ops"] = topOps(before, after)
	b.res["b.persistence"] = fmt.Sprintf("%.1f/s", (after["persistence"]-before["persistence"])/window.Seconds())
}

// settle waits until the frontend has seen no task completed for 10 s, and returns how long it took.
func (b *scaleBench) settle(limit time.Duration) time.Duration {
	start := time.Now()
	done := func(c map[string]float64) float64 {
		return c["req/RespondWorkflowTaskCompleted"] + c["req/RespondActivityTaskCompleted"] + c["req/RespondWorkflowTaskFailed"]
	}
	last, quiet := done(counters(b.t, b.side.metrics)), 0
	for time.Since(start) < limit && quiet < 2 {
		time.Sleep(5 * time.Second)
		now := done(counters(b.t, b.side.metrics))
		if now == last {
			quiet++
		} else {
			quiet = 0
		}
		last = now
	}
	return time.Since(start)
}

func printScale(results []sideResult, nRuns, nParked, nHosts int, window time.Duration, cache string) {
	if len(results) == 0 {
		return
	}
	if cache == "" {
		cache = "SDK default (10,000 workflows)"
	}
	rows := []struct{ key, label string }{
		{"a.started", fmt.Sprintf("**%d runs in flight** (restart-service, evacuate, post-reboot-check over %d hosts): started", nRuns, nHosts)},
		{"a.completed", "completed (every gate approved as it opened)"},
		{"a.wall", "wall time, first start to last end"},
		{"a.latency", "start → first step reaches the world"},
		{"a.events", "history events per run, by runbook (min–max)"},
		{"a.maxevents", "most history events of one run (goal < 10,240)"},
		{"a.maxbytes", "largest history of one run"},
		{"a.lease", "the lease workflow (max 20 hosts out of service)"},
		{"a.worker", "worker CPU, peak RSS"},
		{"a.server", "Temporal server CPU (dev server; or 5 services + PostgreSQL)"},
		{"idle.polls", fmt.Sprintf("**idle worker**, %s: frontend long polls", window)},
		{"idle.other", "frontend, other requests"},
		{"idle.ops", "frontend requests in the window, by operation"},
		{"idle.worker", "worker CPU, RSS"},
		{"idle.server", "Temporal server CPU"},
		{"b.parked", fmt.Sprintf("**%d runs parked at their gate** (fresh worker): parked", nParked)},
		{"b.rss", fmt.Sprintf("worker RSS while they wait (goal ≤ 100 MB; workflow cache: %s)", cache)},
		{"b.worker", fmt.Sprintf("worker CPU over %s while they wait", window)},
		{"b.polls", "frontend long polls"},
		{"b.other", "frontend, other requests"},
		{"b.ops", "frontend requests in the window, by operation"},
		{"b.persistence", "persistence requests (all services)"},
		{"b.server", "Temporal server CPU"},
	}
	fmt.Printf("\nScale bench, %s, %d cores, load %s\n\n| | %s |\n| --- |%s\n", time.Now().UTC().Format(time.DateOnly), runtime.NumCPU(), loadavg(),
		strings.Join(names(results), " | "), strings.Repeat(" --- |", len(results)))
	for _, r := range rows {
		var cells []string
		for _, res := range results {
			cells = append(cells, cmpOr(res.rows[r.key], "—"))
		}
		fmt.Printf("| %s | %s |\n", r.label, strings.Join(cells, " | "))
	}
	fmt.Println()
}

func names(rs []sideResult) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.name)
	}
	return out
}
