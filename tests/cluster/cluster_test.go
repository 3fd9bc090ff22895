//go:build cluster

// Package cluster proves Stackrun on the production shape: a Temporal cluster on PostgreSQL with
// its services as separate processes (frontend, two history, matching, internal worker), mutual
// TLS, the web UI, two Stackrun workers and the chat gateway, all started by scripts/cluster/up.sh
// (what `make cluster` runs) in a temporary folder on 127.0.41.0/24. Run by `make test-cluster`
// (part of `make test`); needs root (PostgreSQL runs as the postgres user) and `make cluster-bins`.
package cluster

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/stackrun/stackrun/workflows"
)

func TestCluster(t *testing.T) {
	r := newRig(t)
	t.Run("mutual TLS: a client without the CA's certificate is refused", func(t *testing.T) { testTLS(t, r.with(t)) })
	t.Run("authorization: the frontend grants by certificate CN; strangers and viewers cannot act", func(t *testing.T) { testAuthz(t, r.with(t)) })
	t.Run("a run survives history, matching, PostgreSQL, worker and frontend failures", func(t *testing.T) { testFailures(t, r.with(t)) })
	t.Run("Prometheus scrapes every process; a stalled step alerts into Alertmanager", func(t *testing.T) { testMetrics(t, r.with(t)) })
	t.Run("backup and restore of the Temporal databases", func(t *testing.T) { testBackup(t, r.with(t)) })
}

func testTLS(t *testing.T, r *rig) {
	caPEM, err := os.ReadFile(r.tls("ca.pem"))
	require.NoError(t, err)
	roots := x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM(caPEM))
	base := func() *tls.Config {
		return &tls.Config{RootCAs: roots, ServerName: "temporal-frontend", MinVersion: tls.VersionTLS12}
	}
	pair := func(name string) tls.Certificate {
		c, err := tls.LoadX509KeyPair(r.tls(name+".pem"), r.tls(name+".key"))
		require.NoError(t, err)
		return c
	}

	// Plaintext: no TLS at all.
	require.Error(t, dial(nil), "plaintext must be refused")
	// TLS, the right CA, but no client certificate.
	err = dial(base())
	require.Error(t, err, "a client without a certificate must be refused")
	// TLS 1.3 sends the server's refusal after the handshake: the client sees the alert
	// ("certificate required") or, if it writes first, the connection closing.
	require.Regexp(t, "certificate required|broken pipe|connection reset|EOF", err.Error())
	// A client certificate from another CA (self-signed).
	tc := base()
	tc.Certificates = []tls.Certificate{selfSigned(t, "intruder")}
	require.Error(t, dial(tc), "a certificate not signed by the cluster CA must be refused")
	// The cluster CA's frontend certificate is for servers only (no clientAuth usage).
	tc = base()
	tc.Certificates = []tls.Certificate{pair("frontend")}
	require.Error(t, dial(tc), "a server certificate must not pass as a client certificate")
	// The wrong server name: the client refuses the frontend.
	tc = base()
	tc.ServerName = "someone-else"
	tc.Certificates = []tls.Certificate{pair("stackrun-operator")}
	require.Error(t, dial(tc), "a frontend whose certificate does not name it must be refused")
	// The operators' certificate passes.
	tc = base()
	tc.Certificates = []tls.Certificate{pair("stackrun-operator")}
	require.NoError(t, dial(tc))

	// The Stackrun CLI: with the cluster's configuration it works; without the client
	// certificate it fails and says why.
	r.mustCLI("list")
	cfg, err := os.ReadFile(r.config)
	require.NoError(t, err)
	var kept []string
	for _, l := range strings.Split(string(cfg), "\n") {
		if !strings.Contains(l, "cert_file:") && !strings.Contains(l, "key_file: "+r.tls("")) {
			kept = append(kept, l)
		}
	}
	noCert := filepath.Join(r.dir, "no-cert.yaml")
	require.NoError(t, os.WriteFile(noCert, []byte(strings.Join(kept, "\n")), 0o600))
	_, errs, code := r.cliWith(noCert, "list", "--timeout", "10s")
	require.NotEqual(t, 0, code)
	require.Contains(t, errs, "set temporal.tls.cert_file and temporal.tls.key_file", "the CLI names the setting")
	t.Logf("CLI without a client certificate: %s", strings.TrimSpace(errs))

	// The web UI reaches the frontend with its own client certificate.
	resp, err := http.Get(uiURL + "/api/v1/namespaces")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	require.Contains(t, string(body), `"name": "default"`)
}

func selfSigned(t *testing.T, cn string) tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// testFailures runs restart-service on the sshd host through the cluster and breaks the cluster
// at each stage: the run must complete and the service be stopped and started exactly once.
func testFailures(t *testing.T, r *rig) {
	const id = "restart-service/node1/svc-a"
	hold := filepath.Join(r.state, "svc-a.hold")
	require.NoError(t, os.WriteFile(hold, nil, 0o644))
	r.mustCLI("run", "restart-service", "--host", "node1", "--service", "svc-a", "--as", "alice", "--reason", "cluster drill")
	gateOpen := func(st workflows.Status) bool {
		return st.Status == workflows.StatusWaitingApproval && len(st.OpenGates) == 1
	}
	r.waitStatus(id, "WaitingApproval", gateOpen)

	// 1. The matching service dies while the run waits at its gate; it comes back (up.sh, as
	// systemd would restart it) and the run still answers and waits.
	r.kill("matching", syscall.SIGKILL)
	time.Sleep(3 * time.Second)
	r.up()
	r.waitStatus(id, "gate still open after matching restarted", gateOpen)

	// 2. PostgreSQL restarts (fast shutdown, 10 s down) while the run waits at its gate.
	r.kill("postgresql", syscall.SIGINT)
	time.Sleep(10 * time.Second)
	r.up()
	r.waitStatus(id, "gate still open after PostgreSQL restarted", gateOpen)

	// 3. The history service that owns the run's shard is killed; the other takes the shard and
	// the approval goes through it.
	shard, owner := r.shardOwner(id)
	require.NotEmpty(t, owner, "shard %d has an owner", shard)
	r.kill(owner, syscall.SIGKILL)
	start := time.Now()
	r.mustCLI("approve", id, workflows.GateApproveRestart, "--as", "bob", "--comment", "drill")
	t.Logf("approval with %s (owner of shard %d) dead took %s", owner, shard, time.Since(start).Round(10*time.Millisecond))
	_, now := r.shardOwner(id)
	require.NotEqual(t, owner, now, "the other history service owns shard %d now", shard)
	require.NotEmpty(t, now)

	// 4. The stop takes effect and its step is held: find the worker that runs it.
	var identity, last string
	for deadline := time.Now().Add(3 * time.Minute); ; time.Sleep(200 * time.Millisecond) {
		attempt, who, ok := r.pendingActivity(id, "SetService")
		identity, last = who, fmt.Sprintf("pending=%v attempt=%d worker=%q actions=%q", ok, attempt, who, r.actions("svc-a"))
		if ok && attempt == 1 && who != "" && r.actions("svc-a") == "stop" {
			break
		}
		if time.Now().After(deadline) {
			out, _, _ := r.cli("status", id)
			t.Fatalf("the stop step should run and be held: %s\n%s", last, out)
		}
	}
	pid, err := strconv.Atoi(identity[strings.LastIndexByte(identity, '/')+1:])
	require.NoError(t, err, identity)
	victim, survivor := "stackrun-worker-1", "stackrun-worker-2"
	if r.pid(victim) != pid {
		victim, survivor = survivor, victim
	}
	require.Equal(t, pid, r.pid(victim), "the stop runs on %s, one of the cluster's workers", identity)
	survivorPID := r.pid(survivor)

	// 5. The killed history service comes back; then, with the stop step in flight, the one that
	// owns the run's shard now is killed, and the other takes it over.
	r.up()
	shard, owner = r.shardOwner(id)
	require.NotEmpty(t, owner, "shard %d has an owner", shard)
	r.kill(owner, syscall.SIGKILL)
	require.Eventually(t, func() bool { _, now := r.shardOwner(id); return now != "" && now != owner }, 60*time.Second, 500*time.Millisecond,
		"the other history service takes shard %d from %s", shard, owner)
	t.Logf("mid-step: %s (owner of shard %d) SIGKILLed; the shard moved", owner, shard)

	// 6. The worker in the middle of the stop is killed; the hold is lifted.
	r.killPID(pid, syscall.SIGKILL)
	t.Logf("%s (pid %d) SIGKILLed in the middle of the stop step", victim, pid)
	require.NoError(t, os.Remove(hold))
	killedAt := time.Now()

	// 7. While the stop's attempt waits out its timeout, the frontend is down for 60 s: the CLI
	// says so clearly; the surviving worker keeps running and polls again once it is back.
	survivorLog := filepath.Join(r.cluster, "log", survivor+".log")
	logBefore, _ := os.ReadFile(survivorLog)
	r.kill("frontend", syscall.SIGKILL)
	_, errs, code := r.cli("list", "--timeout", "5s")
	require.NotEqual(t, 0, code)
	t.Logf("CLI with the frontend down: %s", strings.TrimSpace(errs))
	require.Contains(t, errs, frontend, "the CLI names the address it cannot reach")
	time.Sleep(60 * time.Second)
	require.Equal(t, survivorPID, r.pid(survivor), "%s survives 60 s without a frontend", survivor)
	// The surviving worker said so in its log, naming the frontend it cannot reach.
	logAll, _ := os.ReadFile(survivorLog)
	var said []string
	for _, l := range strings.Split(string(logAll[min(len(logBefore), len(logAll)):]), "\n") {
		if strings.Contains(l, frontend) || strings.Contains(strings.ToLower(l), "unavailable") {
			said = append(said, l)
		}
	}
	require.NotEmpty(t, said, "%s logs that the frontend is unreachable", survivor)
	t.Logf("%s with the frontend down (%d lines), e.g.: %.300s", survivor, len(said), said[0])
	frontendBack := time.Now()
	r.up() // the frontend, the history service and the killed worker come back; the survivor is left as is
	require.Equal(t, survivorPID, r.pid(survivor), "%s was not restarted", survivor)
	// It polls again by itself.
	require.Eventually(t, func() bool { return r.pollsSince(survivorPID, frontendBack) }, 60*time.Second, time.Second,
		"%s (pid %d) polls the task queue again without a restart", survivor, survivorPID)

	// 8. The run completes: the stop's second attempt finds the service stopped and does not
	// stop it again; the start happens once.
	var rep workflows.Report
	out := r.mustCLI("report", id, "--wait", "--format", "json", "--timeout", "10m")
	require.NoError(t, json.Unmarshal([]byte(out), &rep), out)
	t.Logf("run completed %s after the worker was killed: %s", time.Since(killedAt).Round(time.Second), rep.Summary)
	require.Equal(t, workflows.StatusCompleted, rep.Status, rep.Summary)
	require.Equal(t, "stop\nstart", r.actions("svc-a"), "stopped once and started once")
	require.Equal(t, "bob", rep.Decisions[0].By)
	// The audit logs: SetService succeeded exactly twice (the stop, whose retry found the service
	// stopped, and the start). The held stop attempt either never finished (its worker was killed)
	// or was timed out by Temporal first (its heartbeats failed while its shard moved) and ended
	// in an error; nothing else may fail.
	var attempts []string
	ok := 0
	for _, w := range []string{"stackrun-worker-1", "stackrun-worker-2"} {
		for _, rec := range r.auditRecords(w) {
			if rec.WorkflowID != id || rec.Activity != "SetService" {
				continue
			}
			attempts = append(attempts, fmt.Sprintf("%s#%d:%s@%s", w, rec.Attempt, rec.Result, rec.Time.Format("15:04:05")))
			if rec.Result == "ok" {
				ok++
			} else {
				require.True(t, w == victim && rec.Attempt == 1 && rec.Time.Before(killedAt),
					"only the held stop attempt may have failed: %v", attempts)
			}
		}
	}
	t.Logf("SetService attempts recorded: %v", attempts)
	require.Equal(t, 2, ok, "the stop and the start succeeded once each: %v", attempts)

	out, err = r.script("status.sh")
	require.NoError(t, err, "every process is back:\n%s", out)
	t.Logf("cluster after the drill:\n%s", out)
}

// testBackup: a pg_dump backup (scripts/cluster/backup.sh) restored under a stopped cluster brings
// back the state of its moment: a run terminated after the backup is running again.
func testBackup(t *testing.T, r *rig) {
	const id = "backup-probe"
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// A workflow type no worker serves, on a queue of its own: it stays open until terminated.
	_, err := r.client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: "backup-probe"}, "BackupProbe")
	require.NoError(t, err)
	out, err := r.script("backup.sh")
	require.NoError(t, err, out)
	dirs, _ := filepath.Glob(filepath.Join(r.cluster, "backup", "*"))
	require.Len(t, dirs, 1, out)
	require.NoError(t, r.client.TerminateWorkflow(ctx, id, "", "after the backup"))
	status := func() enumspb.WorkflowExecutionStatus {
		d, err := r.client.DescribeWorkflowExecution(ctx, id, "")
		require.NoError(t, err)
		return d.GetWorkflowExecutionInfo().GetStatus()
	}
	require.Equal(t, enumspb.WORKFLOW_EXECUTION_STATUS_TERMINATED, status())
	start := time.Now()
	out, err = r.script("backup.sh", "--restore", dirs[0])
	require.NoError(t, err, out)
	t.Logf("restore and restart took %s", time.Since(start).Round(100*time.Millisecond))
	require.Eventually(t, func() bool { return status() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING }, 30*time.Second, 500*time.Millisecond,
		"the restored database has the run as it was at the backup")
	require.NoError(t, r.client.TerminateWorkflow(ctx, id, "", "test done"))
}

// promQuery runs an instant query on the cluster's Prometheus and returns label set -> value.
func promQuery(t *testing.T, q string) map[string]string {
	resp, err := http.Get(promURL + "/api/v1/query?query=" + url.QueryEscape(q))
	require.NoError(t, err)
	defer resp.Body.Close()
	var out struct {
		Status string
		Data   struct {
			Result []struct {
				Metric map[string]string
				Value  []any
			}
		}
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
	require.Equal(t, "success", out.Status, q)
	m := map[string]string{}
	for _, r := range out.Data.Result {
		keys := make([]string, 0, len(r.Metric))
		for k, v := range r.Metric {
			keys = append(keys, k+"="+v)
		}
		sort.Strings(keys)
		m[strings.Join(keys, ",")] = fmt.Sprint(r.Value[1])
	}
	return m
}

// testMetrics: Debian's Prometheus (started by up.sh) scrapes the five Temporal services and both
// workers; a run whose step stalls shows in Stackrun's metrics and the StackrunStepStalled rule
// (deploy/prometheus/stackrun-rules.yml, 5 s here) fires into the cluster's Alertmanager.
func testMetrics(t *testing.T, r *rig) {
	require.Eventually(t, func() bool {
		up := promQuery(t, `count by (job) (up == 1)`)
		return up["job=temporal"] == "5" && up["job=stackrun-worker"] == "2"
	}, 60*time.Second, time.Second, "every target up: %v", promQuery(t, `up`))

	const id = "restart-service/node1/svc-b"
	flag := filepath.Join(r.state, "svc-b.fail-start")
	require.NoError(t, os.WriteFile(flag, nil, 0o644))
	r.mustCLI("run", "restart-service", "--host", "node1", "--service", "svc-b", "--as", "alice", "--reason", "alert drill")
	r.waitStatus(id, "WaitingApproval", func(st workflows.Status) bool { return st.Status == workflows.StatusWaitingApproval })
	require.Eventually(t, func() bool {
		return len(promQuery(t, `max by (workflow_id, gate) (stackrun_gate_waiting_seconds{workflow_id="`+id+`"})`)) == 1
	}, 60*time.Second, time.Second, "the open gate reaches Prometheus")
	r.mustCLI("approve", id, workflows.GateApproveRestart, "--as", "bob")
	r.waitStatus(id, "Stalled", func(st workflows.Status) bool { return st.Status == workflows.StatusStalled })

	// The alert, in Alertmanager.
	var alerts []struct {
		Labels map[string]string
		Status struct{ State string }
	}
	require.Eventually(t, func() bool {
		resp, err := http.Get(amURL + "/api/v2/alerts?filter=" + url.QueryEscape(`alertname="StackrunStepStalled"`))
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		alerts = nil
		_ = json.NewDecoder(resp.Body).Decode(&alerts)
		for _, a := range alerts {
			if a.Labels["workflow_id"] == id && a.Labels["step"] == "start" && a.Status.State == "active" {
				return true
			}
		}
		return false
	}, 90*time.Second, time.Second, "StackrunStepStalled fires for %s", id)
	t.Logf("Alertmanager: %+v", alerts)
	failures := promQuery(t, `sum by (activity, error_type) (stackrun_activity_failures_total{activity="SetService"})`)
	require.NotEmpty(t, failures, "the failed starts are counted")
	t.Logf("activity failures in Prometheus: %v", failures)
	require.Equal(t, map[string]string{"runbook=restart-service,status=Stalled": "1"},
		promQuery(t, `max by (runbook, status) (stackrun_runs_open{status="Stalled"})`))

	// Resolved, the run completes and the stalled series goes away.
	require.NoError(t, os.Remove(flag))
	r.mustCLI("resolve", id, "start", "retry", "--as", "bob")
	var rep workflows.Report
	out := r.mustCLI("report", id, "--wait", "--format", "json")
	require.NoError(t, json.Unmarshal([]byte(out), &rep), out)
	require.Equal(t, workflows.StatusCompleted, rep.Status, rep.Summary)
	require.Equal(t, "stop\nstart", r.actions("svc-b"))
	require.Eventually(t, func() bool {
		return len(promQuery(t, `stackrun_step_stalled_seconds{workflow_id="`+id+`"}`)) == 0
	}, 60*time.Second, time.Second, "the stalled step leaves the metrics once resolved")
}
