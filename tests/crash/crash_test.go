// Package crash is the crash matrix (issue 17): every runbook it covers runs once uncrashed to
// record its activity boundaries, then once per boundary and crash point with its worker — a
// process of its own (tests/crash/worker) — SIGKILLed right after the activity starts, or right
// after it acted and before its result is reported. A new worker then finishes the run, which must
// end as the uncrashed run did (status, summary, steps) with no side effect repeated, within
// about 30 s of the crash. All crashed runs go at once, each on its own task queue and worker.
package crash

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/config/policy"
	"github.com/stackrun/stackrun/internal/app/control"
	"github.com/stackrun/stackrun/internal/testenv/devserver"
	"github.com/stackrun/stackrun/internal/testenv/operators"
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
}

// runbookCase is one runbook of the matrix: its runbook and an input on a host of its own.
type runbookCase struct {
	rb    workflows.Runbook
	input func(host string) workflows.Input
	// env is the mocked world's settings for this runbook.
	env []string
}

var matrix = []runbookCase{
	{workflows.RestartService, func(host string) workflows.Input {
		return &workflows.RestartServiceInput{Meta: workflows.Meta{RequestedBy: "alice", Reason: "crash matrix"}, Host: host, Service: "nova-compute"}
	}, nil},
	{workflows.Evacuate, func(host string) workflows.Input {
		return &workflows.EvacuateInput{Meta: workflows.Meta{RequestedBy: "alice", Reason: "crash matrix"}, Host: host, Parallel: 2}
	}, nil},
	{workflows.PostRebootCheck, func(host string) workflows.Input {
		return &workflows.PostRebootCheckInput{Meta: workflows.Meta{RequestedBy: "alice", Reason: "crash matrix"}, Host: host, StartInstances: true}
	}, []string{"CRASH_INSTANCE_STATUS=SHUTOFF"}},
}

// outcome is what one run left: its report, the world's effects, the boundaries it crossed, and
// when it crashed and when the killed activity was retried.
type outcome struct {
	report     workflows.Report
	err        error
	effects    []string
	boundaries []string
	crashed    bool
	recovered  time.Duration
	starts     []string
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
			EscalationRepeats: 1, MaxHostsOutOfService: 100, DefaultParallelism: 2, ActivityMaxAttempts: 5},
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
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
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
	started, err := control.Start(ctx, r.srv.Client, tq, rc.rb, in, control.KeySigner{Key: r.alice.Signer})
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
			return outcome{err: fmt.Errorf("the worker was never killed at %s/%s", crashAt, when)}
		}
		procs = procs[:0]
		procs = append(procs, r.worker(rc, host, store, tq, "", ""))
	}
	var o outcome
	o.err = r.srv.Client.GetWorkflow(ctx, started.WorkflowID, "").Get(ctx, &o.report)
	// The end state names the run's own host: compare it as "HOST".
	o.report.Summary = strings.ReplaceAll(o.report.Summary, host, "HOST")
	for _, e := range lines(store, "effects.log") {
		o.effects = append(o.effects, strings.ReplaceAll(e, host, "HOST"))
	}
	starts := lines(store, "starts.log")
	o.starts = starts
	killedID := ""
	var crashAtMs int64
	for _, l := range starts {
		f := strings.Fields(l) // ms workflowID activityID attempt boundary
		if f[4] != "-" {
			o.boundaries = append(o.boundaries, f[4])
		}
		if crashAt != "" && f[4] == crashAt && killedID == "" { // the crashed worker's, not its successor's
			killedID = f[2]
		}
	}
	if c := lines(store, "crash.log"); len(c) > 0 {
		o.crashed = true
		crashAtMs, _ = strconv.ParseInt(strings.Fields(c[0])[0], 10, 64)
		for _, l := range starts {
			f := strings.Fields(l)
			ms, _ := strconv.ParseInt(f[0], 10, 64)
			if f[2] == killedID && f[3] != "1" && ms >= crashAtMs {
				o.recovered = time.Duration(ms-crashAtMs) * time.Millisecond
				break
			}
		}
	}
	return o
}

func (r *rig) approve(ctx context.Context, id string) {
	done := map[string]bool{}
	for ctx.Err() == nil {
		st, err := control.Status(ctx, r.srv.Client, id)
		if err == nil {
			for _, g := range st.OpenGates {
				if !done[g.Name] {
					_, err := control.Approve(ctx, r.srv.Client, id, workflows.GateDecisionRequest{Gate: g.Name, By: "bob", Comment: "crash matrix"},
						control.KeySigner{Key: r.bob.Signer})
					done[g.Name] = err == nil
				}
			}
		}
		time.Sleep(300 * time.Millisecond)
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

func TestCrashMatrix(t *testing.T) {
	r := newRig(t)
	type row struct {
		runbook             string
		boundaries, crashes int
		correct, repeated   int
		worst               time.Duration
		worstAt             string
	}
	rows := make([]row, len(matrix))
	// The runbooks go at once too: each run has its own host, task queue, store and workers.
	var all sync.WaitGroup
	only := os.Getenv("STACKRUN_CRASH_RUNBOOKS") // comma-separated runbook names; "" = all
	for i, rc := range matrix {
		if only != "" && !slices.Contains(strings.Split(only, ","), rc.rb.Name) {
			continue
		}
		all.Add(1)
		go func() {
			defer all.Done()
			rows[i] = row{runbook: rc.rb.Name}
			base := r.run(rc, rc.rb.Name+"-base", "", "")
			if base.err != nil {
				t.Errorf("%s uncrashed: %v", rc.rb.Name, base.err)
				return
			}
			if len(base.boundaries) == 0 || len(base.effects) == 0 {
				t.Errorf("%s uncrashed: %d boundaries, %d effects: the mocks are not in use", rc.rb.Name, len(base.boundaries), len(base.effects))
				return
			}
			t.Logf("%s uncrashed: %s [%s]; boundaries %v; effects %v", rc.rb.Name, base.report.Status, steps(base.report), base.boundaries, base.effects)
			rw := row{runbook: rc.rb.Name, boundaries: len(base.boundaries)}
			var mu sync.Mutex
			var wg sync.WaitGroup
			for _, when := range []string{"start", "end"} {
				for k, b := range base.boundaries {
					wg.Add(1)
					go func() {
						defer wg.Done()
						host := fmt.Sprintf("%s-%s-%d", rc.rb.Name, when, k)
						o := r.run(rc, host, b, when)
						mu.Lock()
						defer mu.Unlock()
						rw.crashes++
						what := fmt.Sprintf("%s crashed at %s (%s)", rc.rb.Name, b, when)
						switch {
						case o.err != nil:
							t.Errorf("%s: %v", what, o.err)
							return
						case !o.crashed:
							t.Errorf("%s: the worker did not crash", what)
							return
						}
						ok := true
						if o.report.Status != base.report.Status || o.report.Summary != base.report.Summary || steps(o.report) != steps(base.report) {
							t.Errorf("%s: ended %s %q [%s], uncrashed %s %q [%s]", what, o.report.Status, o.report.Summary, steps(o.report),
								base.report.Status, base.report.Summary, steps(base.report))
							ok = false
						}
						if extra := repeated(o.effects, base.effects); extra > 0 || !slices.Equal(dedup(o.effects), dedup(base.effects)) {
							t.Errorf("%s: effects %v, uncrashed %v", what, o.effects, base.effects)
							rw.repeated += extra
							ok = false
						}
						if o.recovered == 0 && !strings.HasPrefix(b, "Notify#") {
							// A notification is fire and forget: the run may end before its retry.
							t.Errorf("%s: the killed activity was never retried: %v", what, o.starts)
							ok = false
						}
						if o.recovered > workflows.RecoverWithin {
							t.Errorf("%s: %s from the crash to the retry, want under 30 s", what, o.recovered)
							ok = false
						}
						if o.recovered > rw.worst {
							rw.worst, rw.worstAt = o.recovered, b+" "+when
						}
						if ok {
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
	var b strings.Builder
	fmt.Fprintf(&b, "\ncrash matrix, %s (worst recover: from the SIGKILL to the killed activity's retry)\n%-16s %10s %8s %8s %9s %14s  %s\n", time.Now().UTC().Format(time.DateOnly), "runbook", "boundaries", "crashes", "correct", "repeated", "worst recover", "at")
	for _, rw := range rows {
		fmt.Fprintf(&b, "%-16s %10d %8d %8d %9d %14s  %s\n", rw.runbook, rw.boundaries, rw.crashes, rw.correct, rw.repeated, rw.worst.Round(100*time.Millisecond), rw.worstAt)
	}
	var tot row
	for _, rw := range rows {
		tot.boundaries += rw.boundaries
		tot.crashes += rw.crashes
		tot.correct += rw.correct
		tot.repeated += rw.repeated
		tot.worst = max(tot.worst, rw.worst)
	}
	fmt.Fprintf(&b, "%-16s %10d %8d %8d %9d %14s\n", "total", tot.boundaries, tot.crashes, tot.correct, tot.repeated, tot.worst.Round(100*time.Millisecond))
	t.Log(b.String())
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
