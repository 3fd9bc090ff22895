package main

// Integration tests through real parts: a Temporal dev server (bin/temporal), the real worker
// binary, the real CLI binary, and a real OpenSSH sshd whose "services" are driven by a small
// controller script (there is no systemd here; the OpenStack lab's end-to-end tests use real
// services). Run by `make test` (plain `go test`, no build tag).

import (
	"encoding/json"
	"fmt"
	"github.com/stackrun/stackrun/internal/testenv/svcctl"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/stackrun/stackrun/internal/testenv/devserver"
	"github.com/stackrun/stackrun/internal/testenv/operators"
	"github.com/stackrun/stackrun/internal/testenv/sshd"
	"github.com/stackrun/stackrun/workflows"
)

type rig struct {
	t        *testing.T
	dir      string
	state    string
	config   string
	bin      string
	temporal string
	address  string
	worker   *exec.Cmd
	// team are the operators with keys (trust.operators); cli signs as the --as operator.
	team *operators.Team
}

func buildBinaries(t *testing.T, dir string) {
	root := devserver.RepoRoot(t)
	for pkg, out := range map[string]string{"./worker": "stackrun-worker", "./starter": "stackrun"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, out), pkg)
		cmd.Dir = root
		b, err := cmd.CombinedOutput()
		require.NoError(t, err, "go build %s: %s", pkg, b)
	}
}

func newRig(t *testing.T) *rig {
	srv := devserver.Start(t)
	host := sshd.Start(t, sshd.WithLoopback("127.0.0.31"))
	dir := t.TempDir()
	r := &rig{t: t, dir: dir, state: filepath.Join(dir, "state"), bin: filepath.Join(dir, "bin"),
		temporal: filepath.Join(devserver.RepoRoot(t), "bin", "temporal"), address: srv.HostPort,
		team: operators.NewTeam(t, dir, "alice", "bob", "carol")}
	require.NoError(t, os.MkdirAll(r.state, 0o755))
	require.NoError(t, os.MkdirAll(r.bin, 0o755))
	buildBinaries(t, r.bin)
	ctl := filepath.Join(dir, "svcctl")
	require.NoError(t, os.WriteFile(ctl, []byte(svcctl.Script), 0o755))
	for _, s := range []string{"svc-a", "svc-c"} {
		require.NoError(t, os.WriteFile(filepath.Join(r.state, s+".running"), nil, 0o644))
		line := time.Now().UTC().Format("2006-01-02 15:04:05") + ".001 4242 INFO oslo.messaging._drivers.impl_rabbit [-] Connected to AMQP server on 127.0.0.1:5672 via [amqp] client with port 40000.\n"
		require.NoError(t, os.WriteFile(filepath.Join(r.state, s+".log"), []byte(line), 0o644))
	}
	cfg := fmt.Sprintf(`temporal:
  address: %[1]s
ssh:
  user: %[2]s
  key_file: %[3]s
  known_hosts_file: %[4]s
inventory:
  node1:
    address: %[5]s
    port: %[6]d
    roles: [testrole]
    labels: {rack: r1}
roles:
  testrole:
    services:
      - {name: svc-a, log: %[7]s/svc-a.log, amqp: true}
      - {name: svc-b}
      - {name: svc-c, log: %[7]s/svc-c.log, amqp: true}
commands:
  service_start: [%[8]s, start, "{service}"]
  service_stop: [%[8]s, stop, "{service}"]
  service_status: [%[8]s, status, "{service}"]
policy:
  approvers: [alice, bob]
  two_person_gates: [approve-restart]
  gate_timeout: 1h
  activity_max_attempts: 2
worker:
  audit_log: %[9]s/audit.log
outage:
  tiers:
    - {priority: 1, name: internal network, roles: ["*"], host_verify: [reachable]}
    - priority: 10
      name: message queue and database
      roles: [testrole]
      services:
        - {name: svc-b, verify: [process]}
        - {name: svc-a, verify: [process, amqp]}
    - {priority: 20, name: cinder-scheduler, roles: [testrole], services: [{name: cinder-scheduler, verify: [process]}]}
trust:
%[10]s`, srv.HostPort, host.User, host.UserKeyFile, host.KnownHostsFile, host.IP, host.Port, r.state, ctl, dir, r.team.OperatorsYAML())
	r.config = filepath.Join(dir, "stackrun.yaml")
	require.NoError(t, os.WriteFile(r.config, []byte(cfg), 0o644))
	r.startWorker()
	t.Cleanup(func() { r.killWorker(syscall.SIGTERM) })
	return r
}

func (r *rig) startWorker() {
	cmd := exec.Command(filepath.Join(r.bin, "stackrun-worker"), "--config", r.config, "--log-level", "warn")
	logf, err := os.OpenFile(filepath.Join(r.dir, "worker.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	require.NoError(r.t, err)
	cmd.Stdout, cmd.Stderr = logf, logf
	require.NoError(r.t, cmd.Start())
	r.worker = cmd
}

func (r *rig) killWorker(sig syscall.Signal) {
	if r.worker == nil || r.worker.Process == nil {
		return
	}
	_ = r.worker.Process.Signal(sig)
	_, _ = r.worker.Process.Wait()
	r.worker = nil
}

// cli runs the stackrun CLI against the rig and returns stdout, stderr and the exit code.
func (r *rig) cli(args ...string) (string, string, int) {
	cmd := exec.Command(filepath.Join(r.bin, "stackrun"), append([]string{"--config", r.config}, r.team.WithKey(args)...)...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		r.t.Fatalf("run stackrun %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

func (r *rig) mustCLI(args ...string) string {
	out, errs, code := r.cli(args...)
	require.Equal(r.t, 0, code, "stackrun %v failed:\nstdout: %s\nstderr: %s", args, out, errs)
	return out
}

func (r *rig) status(id string) workflows.Status {
	var st workflows.Status
	require.NoError(r.t, json.Unmarshal([]byte(r.mustCLI("status", id, "--output", "json")), &st))
	return st
}

// waitFor polls the run's status until cond holds.
func (r *rig) waitFor(id string, what string, cond func(workflows.Status) bool) workflows.Status {
	deadline := time.Now().Add(90 * time.Second)
	var st workflows.Status
	for time.Now().Before(deadline) {
		out, _, code := r.cli("status", id, "--output", "json")
		if code == 0 && json.Unmarshal([]byte(out), &st) == nil && cond(st) {
			return st
		}
		time.Sleep(500 * time.Millisecond)
	}
	r.t.Fatalf("run %s: %s not reached; last status %+v\nworker log:\n%s", id, what, st, r.workerLog())
	return st
}

func (r *rig) workerLog() string {
	b, _ := os.ReadFile(filepath.Join(r.dir, "worker.log"))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

func (r *rig) report(id string) workflows.Report {
	var rep workflows.Report
	out := r.mustCLI("report", id, "--wait", "--format", "json")
	require.NoError(r.t, json.Unmarshal([]byte(out), &rep), out)
	return rep
}

func (r *rig) actions(svc string) string {
	b, _ := os.ReadFile(filepath.Join(r.state, svc+".actions"))
	return strings.TrimSpace(string(b))
}

// saveHistory refreshes workflows/testdata/<name> from a real run when STACKRUN_UPDATE_HISTORY is
// set; the replay test in workflows/ replays those histories against the current code.
func (r *rig) saveHistory(id, name string) {
	if os.Getenv("STACKRUN_UPDATE_HISTORY") == "" {
		return
	}
	out, err := exec.Command(r.temporal, "workflow", "show", "--address", r.address, "--workflow-id", id, "--output", "json").Output()
	require.NoError(r.t, err)
	require.NoError(r.t, os.WriteFile(filepath.Join(devserver.RepoRoot(r.t), "workflows", "testdata", name), out, 0o644))
}

func waiting(st workflows.Status) bool { return st.Status == workflows.StatusWaitingApproval }

func TestIntegration(t *testing.T) {
	r := newRig(t)

	t.Run("post-reboot-check over real SSH", func(t *testing.T) {
		out := r.mustCLI("run", "post-reboot-check", "--host", "node1", "--as", "carol", "--wait", "--output", "json")
		require.Contains(t, out, "post-reboot-check/node1")
		rep := r.report("post-reboot-check/node1")
		require.Equal(t, workflows.StatusCompleted, rep.Status, rep.Summary)
		require.Equal(t, "1 critical, 0 warning finding(s)", rep.Summary, "%+v", rep.Findings)
		require.Equal(t, "node1/svc-b", rep.Findings[0].Subject)
		r.saveHistory("post-reboot-check/node1", "post_reboot_check.json")
	})

	t.Run("bad input changes nothing", func(t *testing.T) {
		_, errs, code := r.cli("run", "restart-service", "--host", "node1;reboot", "--service", "svc-a", "--as", "alice")
		require.NotEqual(t, 0, code)
		require.Contains(t, errs, "host")
		_, errs, code = r.cli("run", "restart-service", "--host", "node1", "--service", "$(id)", "--as", "alice")
		require.NotEqual(t, 0, code)
		require.Contains(t, errs, "service")
		require.Empty(t, r.actions("svc-a"))
	})

	t.Run("approve with the CLI, two-person rule enforced", func(t *testing.T) {
		id := "restart-service/node1/svc-a"
		r.mustCLI("run", "restart-service", "--host", "node1", "--service", "svc-a", "--as", "alice", "--reason", "config change")
		r.waitFor(id, "WaitingApproval", waiting)
		require.Eventually(t, func() bool {
			out, _, code := r.cli("list", "--status", "WaitingApproval", "--output", "json")
			return code == 0 && strings.Contains(out, id)
		}, 30*time.Second, 500*time.Millisecond, "stackrun list --status WaitingApproval finds the run")
		_, errs, code := r.cli("approve", id, workflows.GateApproveRestart, "--as", "alice")
		require.NotEqual(t, 0, code)
		require.Contains(t, errs, "may not approve the destructive gate")
		require.Empty(t, r.actions("svc-a"), "a refused approval changes nothing")
		r.mustCLI("approve", id, workflows.GateApproveRestart, "--as", "bob", "--comment", "ok")
		rep := r.report(id)
		require.Equal(t, workflows.StatusCompleted, rep.Status, rep.Summary)
		require.Equal(t, "stop\nstart", r.actions("svc-a"))
		require.Equal(t, "bob", rep.Decisions[0].By)
		r.saveHistory(id, "restart_service.json")
	})

	t.Run("approve by temporal workflow signal (the web UI's path)", func(t *testing.T) {
		id := "restart-service/node1/svc-c"
		r.mustCLI("run", "restart-service", "--host", "node1", "--service", "svc-c", "--as", "alice")
		r.waitFor(id, "WaitingApproval", waiting)
		// A name typed into the signal's input proves nothing: refused, recorded.
		out, err := exec.Command(r.temporal, "workflow", "signal", "--address", r.address, "--workflow-id", id,
			"--name", workflows.SignalApprove, "--input", `{"gate":"approve-restart","by":"bob","via":"temporal-cli"}`).CombinedOutput()
		require.NoError(t, err, string(out))
		st := r.waitFor(id, "the unsigned signal refused", func(s workflows.Status) bool { return len(s.Refused) == 1 })
		require.Contains(t, st.Refused[0].Reason, "(unsigned)")
		// The signed JSON of --print-signal, as pasted into the web UI.
		signed := r.mustCLI("approve", id, workflows.GateApproveRestart, "--as", "bob", "--print-signal")
		out, err = exec.Command(r.temporal, "workflow", "signal", "--address", r.address, "--workflow-id", id,
			"--name", workflows.SignalApprove, "--input", signed).CombinedOutput()
		require.NoError(t, err, string(out))
		rep := r.report(id)
		require.Equal(t, workflows.StatusCompleted, rep.Status, rep.Summary)
		require.Equal(t, "web-ui", rep.Decisions[0].Via)
		require.Equal(t, r.team.Ops["bob"].Fingerprint(), rep.Decisions[0].Key)
	})

	t.Run("stalled step resolved with retry", func(t *testing.T) {
		id := "restart-service/node1/svc-c"
		flag := filepath.Join(r.state, "svc-c.fail-start")
		require.NoError(t, os.WriteFile(flag, nil, 0o644))
		r.mustCLI("run", "restart-service", "--host", "node1", "--service", "svc-c", "--as", "alice")
		r.waitFor(id, "WaitingApproval", waiting)
		r.mustCLI("approve", id, workflows.GateApproveRestart, "--as", "bob")
		st := r.waitFor(id, "Stalled", func(s workflows.Status) bool { return s.Status == workflows.StatusStalled })
		require.Equal(t, "start", st.Stalled[0].Step)
		require.Contains(t, st.Stalled[0].Error, "failed")
		_, errs, code := r.cli("resolve", id, "start", "skip", "--as", "bob")
		require.NotEqual(t, 0, code)
		require.Contains(t, errs, "cannot be skipped")
		require.NoError(t, os.Remove(flag))
		r.mustCLI("resolve", id, "start", "retry", "--as", "bob")
		rep := r.report(id)
		require.Equal(t, workflows.StatusCompleted, rep.Status, rep.Summary)
	})

	t.Run("worker killed while a run waits; a new worker completes it", func(t *testing.T) {
		id := "restart-service/node1/svc-a"
		before := r.actions("svc-a")
		r.mustCLI("run", "restart-service", "--host", "node1", "--service", "svc-a", "--as", "alice")
		r.waitFor(id, "WaitingApproval", waiting)
		r.killWorker(syscall.SIGKILL)
		r.startWorker()
		r.mustCLI("approve", id, workflows.GateApproveRestart, "--as", "bob")
		rep := r.report(id)
		require.Equal(t, workflows.StatusCompleted, rep.Status, rep.Summary)
		require.Equal(t, before+"\nstop\nstart", r.actions("svc-a"), "stopped and started exactly once")
	})

	t.Run("outage-recovery over real SSH: start what is down, stall, retry", func(t *testing.T) {
		id := "outage-recovery/cloud"
		flag := filepath.Join(r.state, "svc-b.fail-start")
		require.NoError(t, os.WriteFile(flag, nil, 0o644))
		beforeA := r.actions("svc-a")
		r.mustCLI("run", "outage-recovery", "--as", "alice", "--reason", "power back")
		st := r.waitFor(id, "Stalled", func(s workflows.Status) bool { return s.Status == workflows.StatusStalled })
		require.Equal(t, "tier-10", st.Stalled[0].Step)
		require.NoError(t, os.Remove(flag))
		r.mustCLI("resolve", id, "tier-10", "retry", "--as", "bob")
		rep := r.report(id)
		require.Equal(t, workflows.StatusCompleted, rep.Status, rep.Summary)
		require.Equal(t, "start", r.actions("svc-b"), "started once")
		require.Equal(t, beforeA, r.actions("svc-a"), "running already: not touched")
		b, err := json.Marshal(rep.Details["tiers"])
		require.NoError(t, err)
		var tiers []workflows.OutageTierReport
		require.NoError(t, json.Unmarshal(b, &tiers))
		require.Len(t, tiers, 3)
		require.Equal(t, "verified", tiers[0].State)
		require.Equal(t, []string{"svc-b@node1"}, tiers[1].Started)
		require.Equal(t, []string{"svc-a@node1"}, tiers[1].AlreadyUp)
		require.Equal(t, "empty", tiers[2].State)
		r.saveHistory(id, "outage_recovery.json")
	})

	t.Run("audit log records every activity", func(t *testing.T) {
		b, err := os.ReadFile(filepath.Join(r.dir, "audit.log"))
		require.NoError(t, err)
		require.Contains(t, string(b), `"activity":"SetService"`)
		require.Contains(t, string(b), `"workflow_id":"restart-service/node1/svc-a"`)
	})
}
