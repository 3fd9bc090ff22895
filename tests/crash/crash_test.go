// Package crash is the crash matrix (issue 17): every runbook it covers runs once uncrashed to
// record its activity boundaries, then once per boundary and crash point with its worker — a
// process of its own (tests/crash/worker) — SIGKILLed right after the activity starts, or right
// after it acted and before its result is reported. A new worker then finishes the run, which must
// end as the uncrashed run did (status, summary, steps) with no side effect repeated, within
// about 30 s of the crash. All crashed runs go at once, each on its own task queue and worker.
package crash

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/config/policy"
	"github.com/stackrun/stackrun/internal/app/control"
	"github.com/stackrun/stackrun/internal/testenv/devserver"
	"github.com/stackrun/stackrun/internal/testenv/operators"
	"github.com/stackrun/stackrun/tests/crash/results"
	"github.com/stackrun/stackrun/workflows"
)

const leaseQueue = "crash-lease"

// rig is the dev server, the built worker binary, the operators and the shared lease worker.
type rig struct {
	t      *testing.T
	srv    *devserver.Server
	bin    string
	config string
	alice  operators.Operator
	bob    operators.Operator
	// timeout bounds one run (default 5 minutes: a loaded machine slows the matrix down).
	timeout time.Duration
	// afterRun, when set, runs once a run completed, while its worker still runs (a query of a
	// closed run needs one); its error is the outcome's afterErr.
	afterRun func(rc runbookCase, workflowID string) error
}

// outcome is what one run left: its report, the world's effects, the boundaries it crossed, and
// when it crashed and when the killed activity was retried.
type outcome struct {
	report     workflows.Report
	err        error
	afterErr   error // rig.afterRun's
	effects    []string
	boundaries []string
	crashed    bool
	recovered  time.Duration
	starts     []string
	// audit is the report's audit trail, one "step activity target result" per entry.
	audit []string
	// retries are the activity attempts after the first.
	retries int
	// retryAttempt is the attempt of the killed activity that ran after the crash (1: the
	// workflow scheduled the work again).
	retryAttempt string
	// workflowID is the run's.
	workflowID string
}

func newRig(t *testing.T) *rig {
	srv := devserver.Start(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "crash-worker")
	build := exec.Command("go", "build", "-o", bin, "./worker")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the crash worker: %v\n%s", err, out)
	}
	r := &rig{t: t, srv: srv, bin: bin, alice: operators.New(t, "alice"), bob: operators.New(t, "bob")}
	cfg := struct {
		Policy policy.Policy `json:"policy"`
		Keys   any           `json:"keys"`
	}{
		Policy: policy.Policy{Approvers: []string{"alice", "bob"}, GateTimeout: time.Hour, Escalation: workflows.EscalateThenWait,
			EscalationRepeats: 1, MaxHostsOutOfService: 100, DefaultParallelism: 2, ActivityMaxAttempts: 5,
			// inspect-disk refuses unless reading a user's data takes two people.
			TwoPersonGates: []string{workflows.GateDataAccess}},
		Keys: operators.Policy(r.alice, r.bob),
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.config = filepath.Join(dir, "config.json")
	if err := os.WriteFile(r.config, b, 0o600); err != nil {
		t.Fatal(err)
	}
	// The lease workflow runs in this process: it is shared by every run and is not under test.
	lw := worker.New(srv.Client, leaseQueue, worker.Options{})
	lw.RegisterWorkflowWithOptions(workflows.HostLease, workflow.RegisterOptions{Name: activities.LeaseWorkflowType})
	// The start nonces' marker workflows (ClaimStartNonce starts them on this queue): without
	// them, every run's marker retried its workflow task on the dev server.
	lw.RegisterWorkflowWithOptions(workflows.StartNonce, workflow.RegisterOptions{Name: activities.StartNonceType})
	lw.RegisterActivity(&activities.Lease{Client: srv.Client, TaskQueue: leaseQueue})
	if err := lw.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lw.Stop)
	return r
}

// worker starts one worker process; crashAt "" never crashes.
func (r *rig) worker(rc runbookCase, host, store, tq, crashAt, when string) *exec.Cmd {
	cmd := exec.Command(r.bin)
	cmd.Env = append(os.Environ(), "CRASH_HOSTPORT="+r.srv.HostPort, "CRASH_TASK_QUEUE="+tq, "CRASH_LEASE_QUEUE="+leaseQueue,
		"CRASH_HOSTS="+host+","+host+"-t1,"+host+"-t2", "CRASH_STORE="+store, "CRASH_CONFIG="+r.config, "CRASH_AT="+crashAt, "CRASH_WHEN="+when)
	cmd.Env = append(cmd.Env, rc.env...)
	log, err := os.Create(filepath.Join(store, "worker-"+strconv.FormatInt(time.Now().UnixNano(), 10)+".log"))
	if err != nil {
		r.t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	return cmd
}

// run runs the case once on host, crashing its first worker at crashAt/when (or not at all).
func (r *rig) run(rc runbookCase, host, crashAt, when string) outcome {
	t := r.t
	store := t.TempDir()
	tq := "crash-" + host
	ctx, cancel := context.WithTimeout(context.Background(), cmp.Or(r.timeout, 5*time.Minute))
	defer cancel()
	first := r.worker(rc, host, store, tq, crashAt, when)
	procs := []*exec.Cmd{first}
	defer func() {
		for _, p := range procs {
			_ = p.Process.Kill()
			_ = p.Wait()
		}
	}()
	in := rc.input(host)
	started, err := r.start(ctx, tq, rc.rb, in, host)
	if err != nil {
		return outcome{err: fmt.Errorf("start: %w", err)}
	}
	// Approve every gate that opens, as bob, whichever worker runs the workflow then.
	go r.approve(ctx, started.WorkflowID)
	if crashAt != "" {
		exited := make(chan error, 1)
		go func() { exited <- first.Wait() }()
		select {
		case <-exited:
		case <-ctx.Done():
			return outcome{err: fmt.Errorf("the worker was never killed at %s/%s; its activities: %v", crashAt, when, lines(store, "starts.log"))}
		}
		procs = procs[:0]
		procs = append(procs, r.worker(rc, host, store, tq, "", ""))
	}
	o := outcome{workflowID: started.WorkflowID}
	o.err = r.srv.Client.GetWorkflow(ctx, started.WorkflowID, "").Get(ctx, &o.report)
	if r.afterRun != nil && o.err == nil {
		o.afterErr = r.afterRun(rc, started.WorkflowID)
	}
	// The end state names the run's own host and instance: compare them as HOST and UUID.
	norm := strings.NewReplacer(host, "HOST", instanceID(host), "UUID").Replace
	o.report.Summary = norm(o.report.Summary)
	for i := range o.report.Steps {
		o.report.Steps[i].Name = norm(o.report.Steps[i].Name)
	}
	for _, e := range lines(store, "effects.log") {
		o.effects = append(o.effects, norm(e))
	}
	for _, a := range o.report.Audit {
		o.audit = append(o.audit, norm(fmt.Sprintf("%s %s %s %s", a.Step, a.Activity, a.Target, a.Result)))
	}
	starts := lines(store, "starts.log")
	o.starts = starts
	killedID, killedWork := "", ""
	var crashAtMs int64
	for _, l := range starts {
		f := strings.Fields(l) // ms workflowID activityID attempt boundary work
		if f[4] != "-" {
			o.boundaries = append(o.boundaries, f[4])
		}
		if f[3] != "1" {
			o.retries++
		}
		if crashAt != "" && f[4] == crashAt && killedID == "" { // the crashed worker's, not its successor's
			killedID, killedWork = f[2], f[5]
		}
	}
	if c := lines(store, "crash.log"); len(c) > 0 {
		o.crashed = true
		crashAtMs, _ = strconv.ParseInt(strings.Fields(c[0])[0], 10, 64)
		for _, l := range starts {
			f := strings.Fields(l)
			ms, _ := strconv.ParseInt(f[0], 10, 64)
			// The retry: the killed activity's next attempt, or the same work scheduled again
			// (a step retried by the workflow once the activity's attempts ran out).
			if ms >= crashAtMs && (f[2] == killedID && f[3] != "1" || f[2] != killedID && f[5] == killedWork) {
				o.recovered = time.Duration(ms-crashAtMs) * time.Millisecond
				o.retryAttempt = f[3]
				break
			}
		}
	}
	return o
}

// start starts the runbook as control.Start does (validated, signed by alice), under a workflow
// ID of the run's own: runbooks keyed by something other than a host (a cadence, "cloud", a
// ring change) would otherwise have one ID for every run of the matrix.
func (r *rig) start(ctx context.Context, tq string, rb workflows.Runbook, in workflows.Input, host string) (control.Started, error) {
	if err := in.Validate(); err != nil {
		return control.Started{}, err
	}
	id := rb.WorkflowID(in) + "@" + host
	st, err := control.StartStatement(id, in)
	if err != nil {
		return control.Started{}, err
	}
	sig, err := control.KeySigner{Key: r.alice.Signer}.Sign(st)
	if err != nil {
		return control.Started{}, err
	}
	opts := client.StartWorkflowOptions{ID: id, TaskQueue: tq, Memo: map[string]any{control.MemoStartSignature: sig},
		TypedSearchAttributes: temporal.NewSearchAttributes(workflows.AttrStatus.ValueSet(string(workflows.StatusPlanning)),
			workflows.AttrTarget.ValueSet(rb.Target(in)), workflows.AttrRequestedBy.ValueSet(in.GetMeta().RequestedBy))}
	arg := reflect.ValueOf(in).Elem().Interface()
	// A loaded dev server can miss the start's RPC deadline: start again; a start that had
	// gone through is found by its ID.
	for attempt := 1; ; attempt++ {
		run, err := r.srv.Client.ExecuteWorkflow(ctx, opts, rb.Type, arg)
		if err == nil {
			return control.Started{WorkflowID: run.GetID(), RunID: run.GetRunID()}, nil
		}
		var already *serviceerror.WorkflowExecutionAlreadyStarted
		if errors.As(err, &already) {
			return control.Started{WorkflowID: id, RunID: already.RunId}, nil
		}
		if attempt == 5 || ctx.Err() != nil {
			return control.Started{}, err
		}
		time.Sleep(time.Second)
	}
}

// approve approves every gate that opens, as bob. It asks the run (a query: work for its worker)
// only while the run's status attribute says it waits for approval, which the server answers
// alone: 40 runs at once would otherwise keep a loaded machine's workers busy with queries.
func (r *rig) approve(ctx context.Context, id string) {
	done := map[string]bool{}
	for ctx.Err() == nil {
		time.Sleep(500 * time.Millisecond)
		d, err := r.srv.Client.DescribeWorkflowExecution(ctx, id, "")
		if err != nil {
			continue
		}
		if d.GetWorkflowExecutionInfo().GetStatus() != enums.WORKFLOW_EXECUTION_STATUS_RUNNING {
			return
		}
		// A child with gates of its own (rolling-maintenance's evacuate): approved the same way.
		for _, c := range d.GetPendingChildren() {
			if cid := c.GetWorkflowId(); !done["child "+cid] {
				done["child "+cid] = true
				go r.approve(ctx, cid)
			}
		}
		var status string
		if p := d.GetWorkflowExecutionInfo().GetSearchAttributes().GetIndexedFields()[workflows.AttrStatus.GetName()]; p != nil {
			_ = converter.GetDefaultDataConverter().FromPayload(p, &status)
		}
		if status != string(workflows.StatusWaitingApproval) {
			continue
		}
		st, err := control.Status(ctx, r.srv.Client, id)
		if err != nil {
			continue
		}
		for _, g := range st.OpenGates {
			if !done[g.Name] {
				_, err := control.Approve(ctx, r.srv.Client, id, workflows.GateDecisionRequest{Gate: g.Name, By: "bob", Comment: "crash matrix"},
					control.KeySigner{Key: r.bob.Signer})
				done[g.Name] = err == nil
			}
		}
	}
}

func lines(dir, file string) []string {
	f, err := os.Open(filepath.Join(dir, file))
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		if l := strings.TrimSpace(s.Text()); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// steps are the report's step states, the part of the end state the crash must not change.
func steps(rep workflows.Report) string {
	var b strings.Builder
	for _, s := range rep.Steps {
		fmt.Fprintf(&b, "%s=%s ", s.Name, s.State)
	}
	return b.String()
}

// row is one case's figures.
type row struct {
	label               string
	boundaries, crashes int
	correct, repeated   int
	retries             int
	worst               time.Duration
	worstAt             string
}

// sample picks, in make test, up to sampleSize boundaries of each case per crash point, spread
// over the run (the first, the last, and between); the other crash point takes the ones
// between those, so that the two together cover twice as many. STACKRUN_CRASH_FULL=1 (make
// reliability) crashes every boundary.
const sampleSize = 3

func sample(bounds []string, when string) []int {
	n := len(bounds)
	var ks []int
	if os.Getenv("STACKRUN_CRASH_FULL") != "" || n <= 2*sampleSize {
		for k := range n {
			ks = append(ks, k)
		}
		if os.Getenv("STACKRUN_CRASH_FULL") == "" && n > sampleSize {
			// Small cases: start takes the even boundaries, end the odd, plus the last.
			var half []int
			for _, k := range ks {
				if (k%2 == 0) == (when == "start") || k == n-1 {
					half = append(half, k)
				}
			}
			return half
		}
		return ks
	}
	off := 0.0
	if when == "end" {
		off = 0.5
	}
	for i := range sampleSize {
		k := int((float64(i) + off) * float64(n-1) / float64(sampleSize-1))
		if k >= n {
			k = n - 1
		}
		if !slices.Contains(ks, k) {
			ks = append(ks, k)
		}
	}
	return ks
}

func TestCrashMatrix(t *testing.T) {
	r := newRig(t)
	rows := make([]row, len(matrix))
	full := os.Getenv("STACKRUN_CRASH_FULL") != ""
	// The cases go at once too: each run has its own hosts, task queue, store, workers and
	// workflow ID; at most maxRuns at a time (a crashed run mostly waits for its heartbeat timeout).
	runs := make(chan struct{}, maxRuns)
	var all, bases sync.WaitGroup
	only := os.Getenv("STACKRUN_CRASH_RUNBOOKS") // comma-separated runbook names; "" = all
	for _, rc := range matrix {
		if only == "" || slices.Contains(strings.Split(only, ","), rc.rb.Name) {
			bases.Add(1)
		}
	}
	for i, rc := range matrix {
		rows[i] = row{label: rc.label()}
		if only != "" && !slices.Contains(strings.Split(only, ","), rc.rb.Name) {
			continue
		}
		all.Add(1)
		go func() {
			defer all.Done()
			name := runName(rc)
			// The uncrashed runs first, all of them, before any crash loads the machine.
			base := r.run(rc, name+"-base", "", "")
			bases.Done()
			bases.Wait()
			if base.err != nil {
				t.Errorf("%s uncrashed: %v", rc.label(), base.err)
				return
			}
			if len(base.boundaries) == 0 || (len(base.effects) == 0 && !rc.rb.ReadOnly) {
				t.Errorf("%s uncrashed: %d boundaries, %d effects: the mocks are not in use", rc.label(), len(base.boundaries), len(base.effects))
				return
			}
			if base.report.Status != workflows.StatusCompleted {
				t.Errorf("%s uncrashed ended %s: %s [%s]", rc.label(), base.report.Status, base.report.Summary, steps(base.report))
				return
			}
			t.Logf("%s uncrashed: %s %q [%s]; boundaries %v; effects %v", rc.label(), base.report.Status, base.report.Summary, steps(base.report), base.boundaries, base.effects)
			rw := row{label: rc.label(), boundaries: len(base.boundaries)}
			if os.Getenv("STACKRUN_CRASH_BASE_ONLY") != "" { // the uncrashed runs only (writing a mock)
				rows[i] = rw
				return
			}
			var mu sync.Mutex
			var wg sync.WaitGroup
			for _, when := range []string{"start", "end"} {
				ks := sample(base.boundaries, when)
				for _, b := range rc.crashAlso {
					k := slices.Index(base.boundaries, b)
					if k < 0 {
						t.Errorf("%s: boundary %s (crashAlso) not crossed: %v", rc.label(), b, base.boundaries)
					} else if !slices.Contains(ks, k) {
						ks = append(ks, k)
					}
				}
				for _, k := range ks {
					b := base.boundaries[k]
					if one := os.Getenv("STACKRUN_CRASH_ONLY"); one != "" && one != b+"/"+when { // one crash point (a failing one, again)
						continue
					}
					wg.Add(1)
					go func() {
						defer wg.Done()
						runs <- struct{}{}
						o := r.run(rc, fmt.Sprintf("%s-%s-%d", name, when, k), b, when)
						<-runs
						mu.Lock()
						defer mu.Unlock()
						rw.crashes++
						rw.retries += o.retries
						if judge(t, rc, base, o, b, when, &rw) {
							rw.correct++
						}
					}()
				}
			}
			wg.Wait()
			rows[i] = rw
		}()
	}
	all.Wait()
	report(t, rows, full)
}

// runName is the case's name for its runs: their hosts, nodes and instance are named after it.
func runName(rc runbookCase) string {
	return strings.Join(strings.FieldsFunc(rc.label(), func(c rune) bool { return !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') }), "-")
}

// maxRuns bounds the runs (worker processes) under way at once.
const maxRuns = 32

// judge compares a crashed run with the uncrashed one; it reports whether it ended correctly.
func judge(t *testing.T, rc runbookCase, base, o outcome, b, when string, rw *row) bool {
	what := fmt.Sprintf("%s crashed at %s (%s)", rc.label(), b, when)
	switch {
	case o.err != nil:
		t.Errorf("%s: %v", what, o.err)
		return false
	case !o.crashed:
		t.Errorf("%s: the worker did not crash", what)
		return false
	}
	ok := true
	if o.report.Status != base.report.Status || o.report.Summary != base.report.Summary || steps(o.report) != steps(base.report) {
		t.Errorf("%s: ended %s %q [%s], uncrashed %s %q [%s]", what, o.report.Status, o.report.Summary, steps(o.report),
			base.report.Status, base.report.Summary, steps(base.report))
		ok = false
	}
	// Side effects, counted twice: in the world (the mocks' effects log) and in the run's audit
	// trail (an activity the workflow ran twice is two entries).
	if extra := repeated(o.effects, base.effects); extra > 0 || !slices.Equal(dedup(o.effects), dedup(base.effects)) {
		t.Errorf("%s: effects %v, uncrashed %v", what, o.effects, base.effects)
		rw.repeated += extra
		ok = false
	}
	// An audit entry is "step activity target result": the same work done more often is a
	// repeat; a different result (a probe that failed after the crash) is a wrong end.
	work := func(audit []string) []string {
		out := make([]string, len(audit))
		for i, a := range audit {
			out[i] = a[:strings.LastIndex(a, " ")]
		}
		return out
	}
	if extra := repeated(work(o.audit), work(base.audit)); extra > 0 {
		t.Errorf("%s: audit trail %v, uncrashed %v", what, o.audit, base.audit)
		rw.repeated += extra
		ok = false
	} else if !slices.Equal(dedup(o.audit), dedup(base.audit)) {
		t.Errorf("%s: audit trail %v, uncrashed %v", what, o.audit, base.audit)
		ok = false
	}
	if o.recovered == 0 && !strings.HasPrefix(b, "Notify#") {
		// A notification is fire and forget: the run may end before its retry.
		t.Errorf("%s: the killed activity was never retried: %v", what, o.starts)
		ok = false
	}
	// Time to recover is a figure (the table's worst column), not a pass mark: on a loaded
	// machine the retry's first dispatch can go to the killed worker's dead poll and cost a
	// second heartbeat timeout. The bound itself is proven on the options
	// (workflows.TestActivityOptionsRecoverWithin30s).
	if o.recovered > workflows.RecoverWithin {
		t.Logf("%s: %s from the crash to the retry (attempt %s), over %s", what, o.recovered, o.retryAttempt, workflows.RecoverWithin)
	}
	if o.recovered > rw.worst {
		rw.worst, rw.worstAt = o.recovered, b+" "+when
	}
	return ok
}

// report logs the table and writes the crash part of the reliability results (tests/crash/results).
func report(t *testing.T, rows []row, full bool) {
	mode := "sample"
	if full {
		mode = "full"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\ncrash matrix (%s), %s (worst recover: from the SIGKILL to the killed activity's retry)\n%-38s %10s %8s %8s %9s %8s %14s  %s\n",
		mode, time.Now().UTC().Format(time.DateOnly), "runbook", "boundaries", "crashes", "correct", "repeated", "retries", "worst recover", "at")
	var tot row
	file := results.File{Part: "crash", Measured: time.Now().UTC(), Mode: mode}
	for _, rw := range rows {
		if rw.boundaries == 0 {
			continue
		}
		fmt.Fprintf(&b, "%-38s %10d %8d %8d %9d %8d %14s  %s\n", rw.label, rw.boundaries, rw.crashes, rw.correct, rw.repeated, rw.retries, rw.worst.Round(100*time.Millisecond), rw.worstAt)
		tot.boundaries += rw.boundaries
		tot.crashes += rw.crashes
		tot.correct += rw.correct
		tot.repeated += rw.repeated
		tot.retries += rw.retries
		tot.worst = max(tot.worst, rw.worst)
		file.Rows = append(file.Rows, results.Row{Runbook: rw.label, BoundariesCrashed: results.Int(rw.crashes), Runs: results.Int(rw.crashes),
			RunsCorrect: results.Int(rw.correct), SideEffectsRepeated: results.Int(rw.repeated), WorstRecoverMS: results.Int64(rw.worst.Milliseconds()),
			Retries: results.Int(rw.retries)})
	}
	fmt.Fprintf(&b, "%-38s %10d %8d %8d %9d %8d %14s\n", "total", tot.boundaries, tot.crashes, tot.correct, tot.repeated, tot.retries, tot.worst.Round(100*time.Millisecond))
	t.Log(b.String())
	if os.Getenv("STACKRUN_CRASH_RUNBOOKS") == "" {
		if err := results.Write(results.Dir(devserver.RepoRoot(t)), file); err != nil {
			t.Errorf("write the results: %v", err)
		}
	}
}

// repeated counts effects done more often than in the uncrashed run.
func repeated(got, base []string) int {
	n := map[string]int{}
	for _, e := range base {
		n[e]--
	}
	for _, e := range got {
		n[e]++
	}
	extra := 0
	for _, v := range n {
		extra += max(v, 0)
	}
	return extra
}

func dedup(in []string) []string {
	out := slices.Clone(in)
	slices.Sort(out)
	return slices.Compact(out)
}
