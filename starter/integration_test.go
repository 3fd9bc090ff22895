package main

// Integration tests through a real Temporal dev server (bin/temporal) with a worker in this
// process that runs a small gated workflow on the real runbook machinery, driven through
// internal/app/control, through the stackrun binary as a subprocess, and through `temporal workflow
// signal` (the web UI's path).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/config/policy"
	"github.com/stackrun/stackrun/internal/app/control"
	"github.com/stackrun/stackrun/internal/app/report"
	"github.com/stackrun/stackrun/internal/infra/trust"
	"github.com/stackrun/stackrun/internal/testenv/devserver"
	"github.com/stackrun/stackrun/internal/testenv/operators"
	"github.com/stackrun/stackrun/workflows"
)

var stackrunBin string // built by TestMain

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "stackrun-cli-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	stackrunBin = filepath.Join(dir, "stackrun")
	out, err := exec.Command("go", "build", "-o", stackrunBin, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build stackrun: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// ---- the test workflow: real machinery, one destructive gate ----

const testGate = "approve-plan"

type GatedTestInput struct {
	workflows.Meta
	Name string `json:"name" flag:"name" usage:"name of the thing (required)"`
}

func (in *GatedTestInput) Validate() error {
	if !workflows.ValidOperator(in.RequestedBy) {
		return &workflows.FieldError{Field: "requested_by", Value: in.RequestedBy, Problem: "not a valid operator name"}
	}
	if in.Name == "" {
		return &workflows.FieldError{Field: "name", Problem: "required"}
	}
	return nil
}

// StallTestInput is the input of the stalling test runbook (the same fields).
type StallTestInput struct{ GatedTestInput }

// Echo is the test's one activity: real, side-effect free.
func Echo(ctx context.Context, s string) (string, error) { return s, nil }

// gatedRunbook is a test runbook on the real machinery: prepare, gate approve-plan, act.
var gatedRunbook = workflows.Def[GatedTestInput, struct{}]{
	Name: "gated-test", Short: "test",
	Steps:  []string{"prepare", testGate, "act"},
	Key:    func(in *GatedTestInput) string { return in.Name },
	Target: func(in *GatedTestInput) string { return "lab/" + in.Name },
	Plan: func(r *workflows.Run, in *GatedTestInput, _ *struct{}) (workflows.Approval, error) {
		err := r.Do("prepare", workflows.StepOptions{Target: in.Name}, func(ctx workflow.Context) error {
			var out string
			return r.Exec(ctx, "prepare", in.Name, Echo, &out, "prepare "+in.Name)
		})
		if err != nil {
			return workflows.Approval{}, err
		}
		r.SetPlan([]string{"act on " + in.Name})
		return workflows.Approval{Gate: testGate, Summary: "act on " + in.Name}, nil
	},
	Act: func(r *workflows.Run, in *GatedTestInput, _ *struct{}) (string, error) {
		err := r.Do("act", workflows.StepOptions{Target: in.Name}, func(ctx workflow.Context) error {
			var out string
			return r.Exec(ctx, "act", in.Name, Echo, &out, "act "+in.Name)
		})
		return "acted on " + in.Name, err
	},
}.Build()

// flaky fails the first call for each key with an error no retry fixes, so the step stalls.
var flaky = struct {
	sync.Mutex
	seen map[string]bool
}{seen: map[string]bool{}}

func Flaky(ctx context.Context, key string) error {
	flaky.Lock()
	defer flaky.Unlock()
	if !flaky.seen[key] {
		flaky.seen[key] = true
		return temporal.NewNonRetryableApplicationError(key+" is unreachable", "Unreachable", nil)
	}
	return nil
}

// stallRunbook has one step that stalls once, then waits for resolve.
var stallRunbook = workflows.Def[StallTestInput, struct{}]{
	Name: "stall-test", Short: "test",
	Steps:  []string{"flaky"},
	Key:    func(in *StallTestInput) string { return in.Name },
	Target: func(in *StallTestInput) string { return "lab/" + in.Name },
	Plan: func(r *workflows.Run, in *StallTestInput, _ *struct{}) (workflows.Approval, error) {
		r.SetPlan([]string{"call flaky"})
		return workflows.Approval{}, nil
	},
	Act: func(r *workflows.Run, in *StallTestInput, _ *struct{}) (string, error) {
		return "", r.Do("flaky", workflows.StepOptions{Target: in.Name, NoSkip: true}, func(ctx workflow.Context) error {
			return r.Exec(ctx, "flaky", in.Name, Flaky, nil, in.Name)
		})
	},
}.Build()

// ---- harness ----

type env struct {
	t   *testing.T
	srv *devserver.Server
	c   client.Client
	tq  string
	dir string
	// ops are the operators with keys; cli signs as the --as operator with their key file.
	ops map[string]operators.Operator
}

// signer signs as the named operator (one without a key signs with a fresh key nobody knows).
func (e *env) signer(name string) control.Signer {
	o, ok := e.ops[name]
	if !ok {
		o = operators.New(e.t, name)
	}
	return control.KeySigner{Key: o.Signer}
}

// withKey adds "--key <file>" for the operator --as names: the CLI signs as them.
func (e *env) withKey(args []string) []string {
	for i, a := range args {
		if a == "--as" && i+1 < len(args) {
			if _, ok := e.ops[args[i+1]]; ok {
				return append(append([]string(nil), args...), "--key", e.keyFile(args[i+1]))
			}
		}
	}
	return args
}

// keyFile is the private key file of an operator (made on first use).
func (e *env) keyFile(name string) string {
	if _, ok := e.ops[name]; !ok {
		e.ops[name] = operators.New(e.t, name)
	}
	return filepath.Join(e.dir, name+"_ed25519")
}

// setup starts a dev server and a worker with the test workflows, plus what reg registers.
func setup(t *testing.T, reg ...func(worker.Worker)) *env {
	t.Helper()
	srv := devserver.Start(t)
	e := &env{t: t, srv: srv, c: srv.Client, tq: "stackrun-cli-test", dir: t.TempDir(), ops: map[string]operators.Operator{}}
	for _, name := range []string{"alice", "bob", "mallory"} {
		e.ops[name] = operators.New(t, name)
		e.ops[name].WriteKeyFile(t, e.dir)
	}
	w := worker.New(e.c, e.tq, worker.Options{})
	for _, rb := range []workflows.Runbook{gatedRunbook, stallRunbook} {
		w.RegisterWorkflowWithOptions(rb.Workflow, workflow.RegisterOptions{Name: rb.Type})
	}
	w.RegisterActivity(Echo)
	// Starts claim their nonce through a marker workflow (activities.ClaimStartNonce).
	w.RegisterActivity(&activities.Lease{Client: e.c, TaskQueue: e.tq})
	w.RegisterWorkflowWithOptions(workflows.StartNonce, workflow.RegisterOptions{Name: activities.StartNonceType})
	w.RegisterActivity(Flaky)
	w.RegisterActivity(&activities.Machine{Policy: policy.Policy{
		Approvers:           []string{"alice", "bob"},
		TwoPersonGates:      []string{testGate},
		GateTimeout:         time.Hour,
		Escalation:          workflows.EscalateThenWait,
		EscalationRepeats:   1,
		ActivityMaxAttempts: 3,
	}, Keys: func() (trust.Policy, error) { return operators.Policy(e.ops["alice"], e.ops["bob"]), nil }})
	for _, f := range reg {
		f(w)
	}
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	return e
}

func (e *env) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	e.t.Cleanup(cancel)
	return ctx
}

func (e *env) start(name, by string) control.Started {
	e.t.Helper()
	in := &GatedTestInput{Meta: workflows.Meta{RequestedBy: by, Reason: "integration test"}, Name: name}
	s, err := control.Start(e.ctx(), e.c, e.tq, gatedRunbook, in, e.signer(by))
	if err != nil {
		e.t.Fatalf("start %s: %v", name, err)
	}
	return s
}

// waitListed polls List until the run shows with the status (visibility is eventually consistent).
func (e *env) waitListed(f control.Filter, id string) control.RunSummary {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		runs, err := control.List(e.ctx(), e.c, f)
		if err != nil {
			e.t.Fatalf("list %+v: %v", f, err)
		}
		for _, r := range runs {
			if r.WorkflowID == id {
				return r
			}
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("run %s not listed with %+v within 10s (got %+v)", id, f, runs)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitGate waits until the run waits at the gate (the status query).
func (e *env) waitGate(id string) workflows.Status {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := control.Status(e.ctx(), e.c, id)
		if err == nil && len(st.OpenGates) == 1 {
			return st
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("run %s: no open gate within 10s (%+v, %v)", id, st, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

type result struct {
	stdout, stderr string
	code           int
}

// cli runs the stackrun binary against the dev server, isolated from any local configuration.
func (e *env) cli(args ...string) result {
	e.t.Helper()
	full := append([]string{"--temporal-address", e.srv.HostPort, "--task-queue", e.tq, "--timeout", "20s"}, e.withKey(args)...)
	cmd := exec.Command(stackrunBin, full...)
	cmd.Dir = e.dir
	cmd.Env = []string{"HOME=" + e.dir, "XDG_CONFIG_HOME=" + e.dir, "PATH=" + os.Getenv("PATH")}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errOut.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		e.t.Fatalf("stackrun %v: %v", args, err)
	}
	e.t.Logf("$ stackrun %s\n[exit %d]\n%s%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	return r
}

const selfApproval = `alice requested this run and may not approve the destructive gate "approve-plan": a second person must`

// ---- tests ----

func TestIntegration(t *testing.T) {
	e := setup(t)

	t.Run("control", func(t *testing.T) {
		e := *e
		e.t = t
		// Invalid input: a clear error naming the field, nothing started.
		_, err := control.Start(e.ctx(), e.c, e.tq, gatedRunbook, &GatedTestInput{Meta: workflows.Meta{RequestedBy: "alice"}}, e.signer("alice"))
		if err == nil || !strings.Contains(err.Error(), "name: required") || !errors.Is(err, control.ErrInvalidInput) {
			t.Fatalf("invalid input: %v", err)
		}
		if _, err := e.c.DescribeWorkflowExecution(e.ctx(), "gated-test/", ""); err == nil {
			t.Fatal("a run was started for invalid input")
		}

		s := e.start("one", "alice")
		if s.WorkflowID != "gated-test/one" || s.RunID == "" {
			t.Fatalf("started %+v", s)
		}
		// A second run on the same target is refused.
		_, err = control.Start(e.ctx(), e.c, e.tq, gatedRunbook, &GatedTestInput{Meta: workflows.Meta{RequestedBy: "bob"}, Name: "one"}, e.signer("bob"))
		if !errors.Is(err, control.ErrAlreadyRunning) || !strings.Contains(err.Error(), "already running: gated-test/one") {
			t.Fatalf("second start: %v", err)
		}

		run := e.waitListed(control.Filter{Status: string(workflows.StatusWaitingApproval)}, s.WorkflowID)
		if run.Target != "lab/one" || run.RequestedBy != "alice" || run.Runbook != "GatedTest" || run.Step != testGate {
			t.Errorf("listed %+v", run)
		}
		e.waitListed(control.Filter{Status: string(workflows.StatusWaitingApproval), Runbook: "GatedTest", Target: "lab/one"}, s.WorkflowID)

		// No report yet.
		_, err = control.Report(e.ctx(), e.c, s.WorkflowID, false)
		var still *control.StillRunningError
		if !errors.As(err, &still) || err.Error() != "run gated-test/one is still WaitingApproval; use --wait" {
			t.Fatalf("report of an open run: %v", err)
		}

		// Self-approval of the destructive gate is refused, verbatim, and changes nothing.
		_, err = control.Approve(e.ctx(), e.c, s.WorkflowID, workflows.GateDecisionRequest{Gate: testGate, By: "alice", Via: "cli"}, e.signer("alice"))
		if !control.IsRefused(err) || err.Error() != selfApproval {
			t.Fatalf("self-approval: %v", err)
		}
		_, err = control.Approve(e.ctx(), e.c, s.WorkflowID, workflows.GateDecisionRequest{Gate: testGate, By: "mallory", Via: "cli"}, e.signer("mallory"))
		if !control.IsRefused(err) || !strings.Contains(err.Error(), `operator "mallory" has no key in the policy`) {
			t.Fatalf("stranger's approval: %v", err)
		}
		_, err = control.Approve(e.ctx(), e.c, s.WorkflowID, workflows.GateDecisionRequest{Gate: "nope", By: "bob", Via: "cli"}, e.signer("bob"))
		if !control.IsRefused(err) || !strings.Contains(err.Error(), `gate "nope" is not open: open gates are approve-plan`) {
			t.Fatalf("unknown gate: %v", err)
		}
		st := e.waitGate(s.WorkflowID)
		// The two refusals about who decides are recorded; the one for a gate that is not open
		// is answered at once by the validator (there was nothing to decide).
		if st.Status != workflows.StatusWaitingApproval || len(st.Decisions) != 0 || len(st.Refused) != 2 || st.Refused[1].Via != "update" {
			t.Fatalf("refused updates changed the run: %+v", st)
		}
		if g := st.OpenGates[0]; g.Name != testGate || !g.Destructive || g.Deadline.Before(time.Now()) {
			t.Errorf("gate %+v", g)
		}

		d, err := control.Approve(e.ctx(), e.c, s.WorkflowID, workflows.GateDecisionRequest{Gate: testGate, By: "bob", Comment: "looks right", Via: "cli"}, e.signer("bob"))
		if err != nil || d.Outcome != "approved" || d.By != "bob" {
			t.Fatalf("approve as bob: %+v %v", d, err)
		}
		rep, err := control.Report(e.ctx(), e.c, s.WorkflowID, true)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Status != workflows.StatusCompleted || len(rep.Decisions) != 1 || rep.Decisions[0].By != "bob" || rep.Decisions[0].Via != "cli" {
			t.Fatalf("report %+v", rep)
		}
		md := report.Markdown(rep)
		for _, want := range []string{"- **Status:** Completed", "| gate | approve-plan | approved | bob | cli | looks right |", "| prepare | Echo |", "acted on one"} {
			if !strings.Contains(md, want) {
				t.Errorf("markdown lacks %q:\n%s", want, md)
			}
		}
		// Closed now: the report is there without waiting, and the target is free again.
		if _, err := control.Report(e.ctx(), e.c, s.WorkflowID, false); err != nil {
			t.Errorf("report of a closed run: %v", err)
		}
		e.waitListed(control.Filter{Status: string(workflows.StatusCompleted), Target: "lab/one"}, s.WorkflowID)
	})

	t.Run("cli", func(t *testing.T) {
		e := *e
		e.t = t
		s := e.start("two", "alice")
		e.waitGate(s.WorkflowID)

		// list --status WaitingApproval --output json, polled: visibility is eventually consistent.
		var runs []control.RunSummary
		deadline := time.Now().Add(10 * time.Second)
		for {
			r := e.cli("list", "--status", "WaitingApproval", "--output", "json")
			if r.code != 0 {
				t.Fatalf("list: exit %d", r.code)
			}
			if err := json.Unmarshal([]byte(r.stdout), &runs); err != nil {
				t.Fatalf("list json: %v", err)
			}
			if slices.ContainsFunc(runs, func(x control.RunSummary) bool { return x.WorkflowID == s.WorkflowID }) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s not listed", s.WorkflowID)
			}
			time.Sleep(300 * time.Millisecond)
		}
		table := e.cli("list", "--status", "WaitingApproval", "--target", "lab/two")
		if table.code != 0 || !strings.Contains(table.stdout, "RUN") || !strings.Contains(table.stdout, "gated-test/two") {
			t.Errorf("list table: %+v", table)
		}

		// Self-approval through the CLI: the workflow's message, verbatim, exit 1.
		r := e.cli("approve", s.WorkflowID, testGate, "--as", "alice")
		if r.code != 1 || !strings.Contains(r.stderr, "Error: "+selfApproval+"\n") {
			t.Fatalf("self-approval via CLI: %+v", r)
		}

		r = e.cli("status", s.WorkflowID, "--output", "json")
		var sv struct {
			WorkflowID string                 `json:"workflow_id"`
			Status     string                 `json:"status"`
			OpenGates  []workflows.GateStatus `json:"open_gates"`
			Decisions  []workflows.Decision   `json:"decisions"`
			Commands   []string               `json:"commands"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &sv); err != nil || r.code != 0 {
			t.Fatalf("status json: %v %+v", err, r)
		}
		if sv.Status != "WaitingApproval" || len(sv.OpenGates) != 1 || len(sv.Decisions) != 0 ||
			!slices.Contains(sv.Commands, `stackrun approve gated-test/two approve-plan --comment "..."`) {
			t.Errorf("status json %+v", sv)
		}
		r = e.cli("status", s.WorkflowID)
		for _, want := range []string{"Status:        WaitingApproval (step approve-plan)", "Open gates:", "two-person (not alice)", "Next:", "stackrun approve gated-test/two approve-plan"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("status table lacks %q", want)
			}
		}

		r = e.cli("report", s.WorkflowID)
		if r.code != exitNotEnded || !strings.Contains(r.stderr, "run gated-test/two is still WaitingApproval; use --wait") {
			t.Errorf("report of open run: %+v", r)
		}

		r = e.cli("approve", s.WorkflowID, testGate, "--as", "bob", "--comment", "lgtm")
		if r.code != 0 || r.stdout != "Gate approve-plan of gated-test/two approved by bob.\n" {
			t.Fatalf("approve as bob: %+v", r)
		}
		r = e.cli("report", s.WorkflowID, "--wait")
		for _, want := range []string{"# gated-test on `lab/two`", "- **Status:** Completed", "| approved | bob | cli | lgtm |"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("report lacks %q", want)
			}
		}
		r = e.cli("report", s.WorkflowID, "--output", "json")
		var rep workflows.Report
		if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || rep.Status != workflows.StatusCompleted {
			t.Errorf("report json: %v %+v", err, rep.Status)
		}
		r = e.cli("approve", s.WorkflowID, testGate, "--as", "bob")
		if r.code != 1 || !strings.Contains(r.stderr, "gated-test/two") {
			t.Errorf("approve of a closed run: %+v", r)
		}
	})

	t.Run("signal", func(t *testing.T) {
		e := *e
		e.t = t
		s := e.start("three", "alice")
		e.waitGate(s.WorkflowID)
		temporal := filepath.Join(devserver.RepoRoot(t), "bin", "temporal")
		if p := os.Getenv("STACKRUN_TEMPORAL_BIN"); p != "" {
			temporal = p
		}
		signal := func(input string) {
			t.Helper()
			out, err := exec.Command(temporal, "workflow", "signal", "--workflow-id", s.WorkflowID, "--name", workflows.SignalApprove,
				"--input", input, "--address", e.srv.HostPort, "--namespace", "default").CombinedOutput()
			if err != nil {
				t.Fatalf("temporal workflow signal: %v\n%s", err, out)
			}
		}
		waitRefused := func(n int) workflows.Status {
			t.Helper()
			deadline := time.Now().Add(10 * time.Second)
			for {
				st, err := control.Status(e.ctx(), e.c, s.WorkflowID)
				if err == nil && len(st.Refused) == n {
					return st
				}
				if time.Now().After(deadline) {
					t.Fatalf("%d refused signal(s) not recorded: %+v %v", n, st, err)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
		// What the web UI sends when someone types a name: unsigned, refused on a two-person gate.
		signal(fmt.Sprintf(`{"gate":%q,"by":"bob"}`, testGate))
		st := waitRefused(1)
		if st.Status != workflows.StatusWaitingApproval || !strings.Contains(st.Refused[0].Reason, "(unsigned)") || st.Refused[0].Via != "signal" {
			t.Fatalf("after the unsigned signal: %+v", st.Refused)
		}
		// Signed, but by the requester on a two-person gate: refused, recorded.
		_, self, err := control.PrintSignal(e.ctx(), e.c, s.WorkflowID, workflows.GateDecisionRequest{Gate: testGate, By: "alice"}, true, e.signer("alice"))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(self)
		signal(string(b))
		st = waitRefused(2)
		if st.Refused[1].Reason != selfApproval || st.Refused[1].Key != e.ops["alice"].Fingerprint() {
			t.Fatalf("after alice's own signal: %+v", st.Refused[1])
		}
		_, bob, err := control.PrintSignal(e.ctx(), e.c, s.WorkflowID, workflows.GateDecisionRequest{Gate: testGate, By: "bob"}, true, e.signer("bob"))
		if err != nil {
			t.Fatal(err)
		}
		b, _ = json.Marshal(bob)
		signal(string(b))
		rep, err := control.Report(e.ctx(), e.c, s.WorkflowID, true)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Status != workflows.StatusCompleted || len(rep.Decisions) != 1 || rep.Decisions[0].By != "bob" || rep.Decisions[0].Key != e.ops["bob"].Fingerprint() {
			t.Fatalf("report after signal: %+v", rep)
		}
		if len(rep.Refused) != 2 {
			t.Errorf("refused signals not in report: %+v", rep.Refused)
		}
		md := report.Markdown(rep)
		if !strings.Contains(md, "## Refused signals") || !strings.Contains(md, "| approved | bob | web-ui |") || !strings.Contains(md, "bob ("+e.ops["bob"].Fingerprint()+")") {
			t.Errorf("markdown:\n%s", md)
		}
		if !strings.Contains(md, "signed with "+e.ops["alice"].Fingerprint()) {
			t.Errorf("the report does not say how the start was signed:\n%s", md)
		}
	})

	t.Run("print-signal", func(t *testing.T) {
		e := *e
		e.t = t
		s := e.start("print", "alice")
		e.waitGate(s.WorkflowID)
		r := e.cli("approve", s.WorkflowID, testGate, "--as", "bob", "--comment", "from the UI", "--print-signal")
		if r.code != 0 || !strings.Contains(r.stderr, "Send a Signal") {
			t.Fatalf("print-signal: %+v", r)
		}
		var sig workflows.GateDecisionRequest
		if err := json.Unmarshal([]byte(r.stdout), &sig); err != nil || sig.Signature == nil {
			t.Fatalf("print-signal output is not a signed decision: %v\n%s", err, r.stdout)
		}
		// Signed for this run, this gate, bob, approve: it verifies with bob's key and no other.
		st := control.GateStatement(s.WorkflowID, s.RunID, sig, true)
		pol := operators.Policy(e.ops["alice"], e.ops["bob"])
		if _, err := pol.Verify(trust.Check{Statement: st, Signature: sig.Signature, Now: time.Now()}); err != nil {
			t.Fatalf("printed signature does not verify: %v", err)
		}
		other := control.GateStatement(s.WorkflowID, "another-run", sig, true)
		if _, err := pol.Verify(trust.Check{Statement: other, Signature: sig.Signature, Now: time.Now()}); err == nil {
			t.Fatal("the printed signature verifies for another run")
		}
		// Printing decides nothing.
		if st, err := control.Status(e.ctx(), e.c, s.WorkflowID); err != nil || len(st.Decisions) != 0 || len(st.OpenGates) != 1 {
			t.Fatalf("print-signal changed the run: %+v %v", st, err)
		}
		// The printed JSON is a valid signal input (what the web UI sends).
		temporal := filepath.Join(devserver.RepoRoot(t), "bin", "temporal")
		out, err := exec.Command(temporal, "workflow", "signal", "--workflow-id", s.WorkflowID, "--name", workflows.SignalApprove,
			"--input", r.stdout, "--address", e.srv.HostPort, "--namespace", "default").CombinedOutput()
		if err != nil {
			t.Fatalf("temporal workflow signal: %v\n%s", err, out)
		}
		rep, err := control.Report(e.ctx(), e.c, s.WorkflowID, true)
		if err != nil || rep.Status != workflows.StatusCompleted || rep.Decisions[0].By != "bob" || rep.Decisions[0].Via != "web-ui" {
			t.Fatalf("after the pasted signal: %+v %v", rep, err)
		}
	})

	t.Run("follow", func(t *testing.T) {
		e := *e
		e.t = t
		old := pollInterval
		pollInterval = 100 * time.Millisecond
		defer func() { pollInterval = old }()
		s := e.start("four", "alice")
		var buf syncBuffer
		type res struct {
			rep *workflows.Report
			err error
		}
		done := make(chan res, 1)
		go func() {
			rep, err := follow(e.ctx(), e.c, s, &buf)
			done <- res{rep, err}
		}()
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(buf.String(), "stackrun approve gated-test/four approve-plan") {
			if time.Now().After(deadline) {
				t.Fatalf("no gate line:\n%s", buf.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
		if _, err := control.Approve(e.ctx(), e.c, s.WorkflowID, workflows.GateDecisionRequest{Gate: testGate, By: "bob"}, e.signer("bob")); err != nil {
			t.Fatal(err)
		}
		r := <-done
		if r.err != nil || r.rep.Status != workflows.StatusCompleted {
			t.Fatalf("follow: %+v %v", r.rep, r.err)
		}
		out := buf.String()
		for _, want := range []string{"run WaitingApproval", "step approve-plan", "waiting-approval", `waiting for approval at gate "approve-plan"`, "two-person rule"} {
			if !strings.Contains(out, want) {
				t.Errorf("progress lacks %q:\n%s", want, out)
			}
		}
	})

	t.Run("resolve", func(t *testing.T) {
		e := *e
		e.t = t
		s, err := control.Start(e.ctx(), e.c, e.tq, stallRunbook, &StallTestInput{GatedTestInput{Meta: workflows.Meta{RequestedBy: "alice"}, Name: "five"}}, e.signer("alice"))
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			st, err := control.Status(e.ctx(), e.c, s.WorkflowID)
			if err == nil && len(st.Stalled) == 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("not stalled: %+v %v", st, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		r := e.cli("status", s.WorkflowID)
		for _, want := range []string{"Status:        Stalled (step flaky)", "Stalled steps:", "Unreachable: five is unreachable", "stackrun resolve stall-test/five flaky retry|skip|abort"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("status lacks %q", want)
			}
		}
		r = e.cli("resolve", s.WorkflowID, "flaky", "skip", "--as", "bob")
		if r.code != 1 || !strings.Contains(r.stderr, `Error: step "flaky" cannot be skipped: later steps depend on it (retry or abort)`) {
			t.Errorf("skip of a no-skip step: %+v", r)
		}
		r = e.cli("resolve", s.WorkflowID, "flaky", "later", "--as", "bob")
		if r.code != 2 {
			t.Errorf("bad action: %+v", r)
		}
		r = e.cli("resolve", s.WorkflowID, "flaky", "retry", "--as", "bob", "--comment", "it is back", "--output", "json")
		var d workflows.Decision
		if err := json.Unmarshal([]byte(r.stdout), &d); err != nil || r.code != 0 || d.Outcome != "retry" || d.By != "bob" {
			t.Fatalf("resolve retry: %v %+v", err, r)
		}
		rep, err := control.Report(e.ctx(), e.c, s.WorkflowID, true)
		if err != nil || rep.Status != workflows.StatusCompleted || rep.Steps[0].Attempts != 2 {
			t.Fatalf("report after retry: %+v %v", rep, err)
		}
	})

	t.Run("dry-run", func(t *testing.T) {
		e := *e
		e.t = t
		real := e.start("six", "alice") // open at its gate: a dry run must not be blocked by it
		dry, err := control.Start(e.ctx(), e.c, e.tq, gatedRunbook, &GatedTestInput{Meta: workflows.Meta{RequestedBy: "alice", DryRun: true}, Name: "six"}, e.signer("alice"))
		if err != nil || !strings.HasPrefix(dry.WorkflowID, "gated-test/six/dry-run-") {
			t.Fatalf("dry run: %+v %v", dry, err)
		}
		rep, err := control.Report(e.ctx(), e.c, dry.WorkflowID, true)
		if err != nil || !rep.DryRun || rep.Status != workflows.StatusCompleted || len(rep.Plan) != 1 || len(rep.Decisions) != 0 {
			t.Fatalf("dry-run report: %+v %v", rep, err)
		}
		if !strings.Contains(report.Markdown(rep), "1. act on six") {
			t.Error("plan not in the dry run's report")
		}
		_ = e.c.TerminateWorkflow(e.ctx(), real.WorkflowID, "", "test cleanup")
	})

	t.Run("cli-run", func(t *testing.T) {
		e := *e
		e.t = t
		// A real runbook started through the CLI on a task queue no worker polls: it stays
		// Planning, which is all this needs (start, conflict, list by runbook).
		e.tq = "stackrun-cli-idle"
		r := e.cli("run", "restart-service", "--host", "compute1", "--service", "nova-compute", "--reason", "test", "--as", "alice", "--output", "json")
		var started control.Started
		if err := json.Unmarshal([]byte(r.stdout), &started); err != nil || r.code != 0 || started.WorkflowID != "restart-service/compute1/nova-compute" {
			t.Fatalf("run: %v %+v", err, r)
		}
		t.Cleanup(func() { _ = e.c.TerminateWorkflow(context.Background(), started.WorkflowID, "", "test cleanup") })
		r = e.cli("run", "restart-service", "--host", "compute1", "--service", "nova-compute", "--as", "bob")
		if r.code != 1 || !strings.Contains(r.stderr, "already running: restart-service/compute1/nova-compute") {
			t.Errorf("second run: %+v", r)
		}
		r = e.cli("run", "restart-service", "--host", "compute1")
		if r.code != 2 || !strings.Contains(r.stderr, "invalid input for restart-service: service: required") {
			t.Errorf("missing flag: %+v", r)
		}
		r = e.cli("run", "post-reboot-check", "--host", "compute1", "--since", "yesterday")
		if r.code != 2 || !strings.Contains(r.stderr, "RFC 3339") {
			t.Errorf("bad time: %+v", r)
		}
		run := e.waitListed(control.Filter{Runbook: "restart-service"}, started.WorkflowID)
		if run.Status != "Planning" || run.Target != "compute1/nova-compute" || run.RequestedBy != "alice" || run.Runbook != "restart-service" {
			t.Errorf("listed %+v", run)
		}
	})
}

// syncBuffer is a bytes.Buffer safe for one writer and one reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
