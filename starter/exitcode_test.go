package main

// The exit codes of run --wait and report, through the stackrun binary against a dev server. The
// CLI only starts the runbooks it knows, so the test worker serves restart-service's workflow
// type with outcomeRunbook: the real run machinery, and an outcome chosen by the service name.

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/internal/app/control"
	"github.com/stackrun/stackrun/workflows"
)

// Refuse fails with an error no retry and no operator can fix: the step fails, the run is Failed.
func Refuse(ctx context.Context, what string) error {
	return temporal.NewNonRetryableApplicationError(what+" refused by the test", activities.ErrTypeRefused, nil)
}

// outcomeRunbook serves restart-service's workflow type: it ends Completed (svc-ok), Failed
// (svc-fail), or waits at a gate (svc-gate*) that a rejection turns into Aborted.
var outcomeRunbook = workflows.Def[workflows.RestartServiceInput, struct{}]{
	Name: "restart-service", Short: "test",
	Steps: []string{testGate, "act"},
	Key:   func(in *workflows.RestartServiceInput) string { return in.Host + "/" + in.Service },
	Plan: func(r *workflows.Run, in *workflows.RestartServiceInput, _ *struct{}) (workflows.Approval, error) {
		r.SetPlan([]string{"act on " + in.Service})
		if strings.HasPrefix(in.Service, "svc-gate") {
			return workflows.Approval{Gate: testGate, Summary: "act on " + in.Service}, nil
		}
		return workflows.Approval{}, nil
	},
	Act: func(r *workflows.Run, in *workflows.RestartServiceInput, _ *struct{}) (string, error) {
		if in.Service != "svc-fail" {
			return "acted", nil
		}
		return "", r.Do("act", workflows.StepOptions{Target: in.Host}, func(ctx workflow.Context) error {
			return r.Exec(ctx, "act", in.Host, Refuse, nil, in.Service)
		})
	},
}.Build()

func TestExitCodes(t *testing.T) {
	e := setup(t, func(w worker.Worker) {
		w.RegisterWorkflowWithOptions(outcomeRunbook.Workflow, workflow.RegisterOptions{Name: outcomeRunbook.Type})
		w.RegisterActivity(Refuse)
	})
	run := func(service string, extra ...string) []string {
		return append([]string{"run", "restart-service", "--host", "compute1", "--service", service, "--as", "alice", "--reason", "exit codes"}, extra...)
	}
	expect := func(r result, code int, stdout, stderr string) {
		t.Helper()
		if r.code != code || !strings.Contains(r.stdout, stdout) || !strings.Contains(r.stderr, stderr) {
			t.Errorf("want exit %d, stdout with %q, stderr with %q; got %+v", code, stdout, stderr, r)
		}
	}

	// Completed: 0, with the report.
	expect(e.cli(run("svc-ok", "--wait")...), exitOK, "- **Status:** Completed", "following it")
	expect(e.cli("report", "restart-service/compute1/svc-ok"), exitOK, "- **Status:** Completed", "")

	// Failed: 3, with the report on stdout and the outcome on stderr; report says the same later.
	expect(e.cli(run("svc-fail", "--wait", "--output", "json")...), exitFailed, `"status": "Failed"`, "Error: run restart-service/compute1/svc-fail ended Failed\n")
	expect(e.cli("report", "restart-service/compute1/svc-fail", "--wait"), exitFailed, "- **Status:** Failed", "ended Failed")

	// Waiting at a gate when --wait-timeout passes: 5, and the run goes on.
	gate := "restart-service/compute1/svc-gate"
	start := time.Now()
	expect(e.cli(run("svc-gate", "--wait-timeout", "2s")...), exitNotEnded, "",
		"Error: run "+gate+" is still WaitingApproval (--wait-timeout 2s passed); it goes on: stackrun status "+gate+"\n")
	if d := time.Since(start); d < 2*time.Second || d > 15*time.Second {
		t.Errorf("--wait-timeout 2s took %s", d)
	}
	expect(e.cli("report", gate), exitNotEnded, "", "run "+gate+" is still WaitingApproval; use --wait")
	expect(e.cli("report", gate, "--wait-timeout", "1s"), exitNotEnded, "", "is still WaitingApproval (--wait-timeout 1s passed)")
	if st, err := control.Status(e.ctx(), e.c, gate); err != nil || st.Status != workflows.StatusWaitingApproval {
		t.Fatalf("the run did not go on waiting: %+v %v", st, err)
	}
	// ... rejected: Aborted, 4.
	expect(e.cli("reject", gate, testGate, "--as", "bob"), exitOK, "rejected by bob", "")
	expect(e.cli("report", gate, "--wait"), exitAborted, "- **Status:** Aborted", "Error: run "+gate+" ended Aborted\n")

	// run --wait that ends Aborted while it follows: 4.
	follow := func(service string) (*exec.Cmd, *syncBuffer, *syncBuffer) {
		args := append([]string{"--temporal-address", e.srv.HostPort, "--task-queue", e.tq}, e.withKey(run(service, "--wait"))...)
		cmd := exec.Command(stackrunBin, args...)
		cmd.Dir, cmd.Env = e.dir, []string{"HOME=" + e.dir, "XDG_CONFIG_HOME=" + e.dir}
		var out, errOut syncBuffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill() })
		e.waitGate("restart-service/compute1/" + service)
		return cmd, &out, &errOut
	}
	codeOf := func(cmd *exec.Cmd) int {
		err := cmd.Wait()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	}
	cmd, out, _ := follow("svc-gate2")
	if _, err := control.Reject(e.ctx(), e.c, "restart-service/compute1/svc-gate2", workflows.GateDecisionRequest{Gate: testGate, By: "bob", Via: "cli"}, e.signer("bob")); err != nil {
		t.Fatal(err)
	}
	if code := codeOf(cmd); code != exitAborted || !strings.Contains(out.String(), "- **Status:** Aborted") {
		t.Errorf("run --wait of a rejected run: exit %d\n%s", code, out.String())
	}

	// Ctrl-C while following: 5, the run goes on.
	cmd, _, errOut := follow("svc-gate3")
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code := codeOf(cmd); code != exitNotEnded || !strings.Contains(errOut.String(), "is still WaitingApproval (waiting stopped); it goes on") {
		t.Errorf("run --wait interrupted: exit %d\n%s", code, errOut.String())
	}

	// Ended without a report (terminated): 3.
	if err := e.c.TerminateWorkflow(e.ctx(), "restart-service/compute1/svc-gate3", "", "test"); err != nil {
		t.Fatal(err)
	}
	expect(e.cli("report", "restart-service/compute1/svc-gate3", "--wait"), exitFailed, "", "ended without a report")

	// Bad flags and unknown runs keep 2 and 1.
	expect(e.cli(run("svc-ok2", "--wait-timeout", "-1s")...), exitUsage, "", "--wait-timeout -1s: must not be negative")
	expect(e.cli("report", "restart-service/compute1/nope", "--wait-timeout", "1s"), exitError, "", "not found")
}
