//go:build cluster

package cluster

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/stackrun/stackrun/config"
	"github.com/stackrun/stackrun/internal/app/control"
	"github.com/stackrun/stackrun/internal/infra/audit"
	"github.com/stackrun/stackrun/internal/testenv/devserver"
	"github.com/stackrun/stackrun/internal/testenv/sshd"
	"github.com/stackrun/stackrun/internal/testenv/svcctl"
	"github.com/stackrun/stackrun/workflows"
)

// The test cluster's addresses: its own /24, clear of `make cluster` (127.0.40) and the lab.
const (
	clusterNet = "127.0.41"
	frontend   = clusterNet + ".2:7233"
	uiURL      = "http://" + clusterNet + ".7:8233"
	promURL    = "http://" + clusterNet + ".11:9090"
	amURL      = "http://" + clusterNet + ".12:9093"
	hostIP     = clusterNet + ".31" // the sshd "host" the runbook acts on
)

// rig is a cluster started by scripts/cluster/up.sh in a temporary folder, with a real sshd
// host whose services a svcctl stand-in drives.
type rig struct {
	t       *testing.T
	root    string
	dir     string
	cluster string   // $STACKRUN_CLUSTER_DIR
	state   string   // svcctl's state folder: <service>.running, .actions, .hold
	env     []string // environment of up.sh, down.sh and the CLI
	config  string   // the cluster's stackrun.yaml (operator certificate)
	keys    string   // the operators' private keys: <name>_ed25519
	client  client.Client
}

// svcHold wraps svcctl: after a stop took effect it blocks while <service>.hold exists, so that
// the test can kill the worker that runs the step after the change and before it reports.
const svcHold = `#!/bin/sh
dir=$(dirname "$0")/state
"$(dirname "$0")/svcctl-real" "$@" || exit $?
if [ "$1" = stop ]; then
  i=0
  while [ -e "$dir/$2.hold" ] && [ $i -lt 6000 ]; do sleep 0.1; i=$((i + 1)); done
fi
`

// newRig starts the cluster with the sshd host's configuration as its base.
func newRig(t *testing.T) *rig {
	r := prepareRig(t)
	r.start(r.sshdBase())
	return r
}

// prepareRig checks the binaries, builds the worker and the CLI into a temporary folder and
// returns a rig that has not started anything yet.
func prepareRig(t *testing.T) *rig {
	root := devserver.RepoRoot(t)
	for _, b := range []string{"temporal", "temporal-server", "temporal-sql-tool", "temporal-ui-server"} {
		if _, err := os.Stat(filepath.Join(root, "bin", b)); err != nil {
			t.Fatalf("bin/%s missing: run `make cluster-bins bin/temporal`", b)
		}
	}
	if os.Geteuid() != 0 {
		t.Fatal("the cluster test runs PostgreSQL as the postgres user: run it as root")
	}
	dir := t.TempDir()
	// PostgreSQL (user postgres) keeps its datadir below: the temporary folders must be traversable.
	require.NoError(t, os.Chmod(dir, 0o755))
	require.NoError(t, os.Chmod(filepath.Dir(dir), 0o755))
	r := &rig{t: t, root: root, dir: dir, cluster: filepath.Join(dir, "cluster"), state: filepath.Join(dir, "state")}
	bin := filepath.Join(dir, "bin")
	require.NoError(t, os.MkdirAll(bin, 0o755))
	require.NoError(t, os.MkdirAll(r.state, 0o755))
	for _, b := range []string{"temporal", "temporal-server", "temporal-sql-tool", "temporal-ui-server"} {
		require.NoError(t, os.Symlink(filepath.Join(root, "bin", b), filepath.Join(bin, b)))
	}
	for pkg, out := range map[string]string{"./worker": "stackrun-worker", "./starter": "stackrun"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(bin, out), pkg)
		cmd.Dir = root
		b, err := cmd.CombinedOutput()
		require.NoError(t, err, "go build %s: %s", pkg, b)
	}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "STACKRUN_") { // nothing of the caller's lab or cluster
			r.env = append(r.env, kv)
		}
	}
	r.env = append(r.env, "STACKRUN_CLUSTER_DIR="+r.cluster, "STACKRUN_CLUSTER_NET="+clusterNet,
		"STACKRUN_CLUSTER_BIN="+bin, "STACKRUN_CLUSTER_SHARDS=8",
		// Prometheus every 2 s, and the stalled-step alert after 5 s, so that the test sees it.
		"STACKRUN_CLUSTER_SCRAPE_INTERVAL=2s", "STACKRUN_CLUSTER_STALL_ALERT_SECONDS=5")
	r.config = filepath.Join(r.cluster, "stackrun.yaml")
	r.keys = filepath.Join(r.cluster, "operators")
	return r
}

// sshdBase starts the sshd "host" node1 (services svc-a and svc-b, driven by svcctl) and writes
// the base configuration that names it.
func (r *rig) sshdBase() string {
	t, dir := r.t, r.dir
	host := sshd.Start(t, sshd.WithLoopback(hostIP))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "svcctl-real"), []byte(svcctl.Script), 0o755))
	ctl := filepath.Join(dir, "svcctl")
	require.NoError(t, os.WriteFile(ctl, []byte(svcHold), 0o755))
	for _, svc := range []string{"svc-a", "svc-b"} {
		require.NoError(t, os.WriteFile(filepath.Join(r.state, svc+".running"), nil, 0o644))
	}
	base := filepath.Join(dir, "base.yaml")
	require.NoError(t, os.WriteFile(base, fmt.Appendf(nil, `ssh:
  user: %[1]s
  key_file: %[2]s
  known_hosts_file: %[3]s
inventory:
  node1:
    address: %[4]s
    port: %[5]d
    roles: [testrole]
roles:
  testrole:
    services:
      - {name: svc-a}
      - {name: svc-b}
commands:
  service_start: [%[6]s, start, "{service}"]
  service_stop: [%[6]s, stop, "{service}"]
  service_status: [%[6]s, status, "{service}"]
policy:
  approvers: [alice, bob]
  two_person_gates: [approve-restart]
  gate_timeout: 1h
  activity_max_attempts: 3
`, host.User, host.UserKeyFile, host.KnownHostsFile, host.IP, host.Port, ctl), 0o644))
	return base
}

// start runs up.sh with base as the Stackrun configuration the cluster's is made from, and
// dials the frontend with the admin certificate.
func (r *rig) start(base string) {
	t := r.t
	r.env = append(r.env, "STACKRUN_CONFIG="+base)
	start := time.Now()
	t.Cleanup(r.down)
	r.up()
	t.Logf("cluster cold start (up.sh, fresh state): %s", time.Since(start).Round(100*time.Millisecond))
	cfg, err := config.Load(config.LoadOptions{Path: r.config, LookupEnv: config.MapEnv(nil)})
	require.NoError(t, err)
	cfg.Temporal.TLS.CertFile, cfg.Temporal.TLS.KeyFile = r.tls("temporal-admin.pem"), r.tls("temporal-admin.key")
	r.client, err = control.Dial(cfg, control.DialOptions{Identity: "cluster-test"})
	require.NoError(t, err)
	t.Cleanup(r.client.Close)
}

// with returns the rig for a subtest (its failures must stop that subtest's goroutine).
func (r *rig) with(t *testing.T) *rig {
	c := *r
	c.t = t
	return &c
}

func (r *rig) tls(name string) string { return filepath.Join(r.cluster, "tls", name) }

// keyOf is the private key of an operator. Without a trust: block in the base configuration,
// up.sh makes alice, bob and carol key pairs in $STACKRUN_CLUSTER_DIR/operators and lists them in
// trust.keys_file; on the lab's configuration they are the lab's ($STACKRUN_LAB_DIR/operators).
func (r *rig) keyOf(operator string) string {
	return filepath.Join(r.keys, operator+"_ed25519")
}

// script runs scripts/cluster/<name> with the rig's environment.
func (r *rig) script(name string, args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(r.root, "scripts", "cluster", name), args...)
	cmd.Env = r.env
	b, err := cmd.CombinedOutput()
	return string(b), err
}

// up runs up.sh: it (re)starts whatever is not running, and waits for all of it.
func (r *rig) up() {
	r.t.Helper()
	out, err := r.script("up.sh")
	require.NoError(r.t, err, "up.sh:\n%s\n%s", out, r.logs())
}

func (r *rig) down() {
	if r.t.Failed() {
		r.t.Logf("cluster logs (tails):\n%s", r.logs())
	}
	if out, err := r.script("down.sh", "--purge"); err != nil {
		r.t.Errorf("down.sh: %v\n%s", err, out)
	}
}

// logs returns the last lines of every log of the cluster.
func (r *rig) logs() string {
	var b strings.Builder
	files, _ := filepath.Glob(filepath.Join(r.cluster, "log", "*.log"))
	for _, f := range files {
		data, _ := os.ReadFile(f)
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		if len(lines) > 8 {
			lines = lines[len(lines)-8:]
		}
		fmt.Fprintf(&b, "== %s\n", filepath.Base(f))
		for _, l := range lines {
			if len(l) > 400 {
				l = l[:400] + "…"
			}
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// pid is the process up.sh recorded for name, 0 when it does not run.
func (r *rig) pid(name string) int {
	b, err := os.ReadFile(filepath.Join(r.cluster, "run", name+".pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.Fields(string(b))[0])
	if pid == 0 || !alive(pid) {
		return 0
	}
	return pid
}

// alive: pid runs and is not a zombie (a SIGKILLed worker up.sh detached stays one until
// whoever adopted it reaps it; kill(pid, 0) still succeeds on it).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] != 'Z' && s[i+2] != 'X'
}

// kill signals the process of name and waits until it is gone.
func (r *rig) kill(name string, sig syscall.Signal) {
	r.t.Helper()
	pid := r.pid(name)
	require.NotZero(r.t, pid, "%s is not running", name)
	r.killPID(pid, sig)
	r.t.Logf("%s (pid %d): %s", name, pid, sig)
}

func (r *rig) killPID(pid int, sig syscall.Signal) {
	r.t.Helper()
	require.NoError(r.t, syscall.Kill(pid, sig))
	require.Eventually(r.t, func() bool { return !alive(pid) }, 40*time.Second, 50*time.Millisecond, "pid %d still runs after %s", pid, sig)
}

// cli runs the stackrun CLI with the cluster's configuration (the operators' certificate).
func (r *rig) cli(args ...string) (string, string, int) {
	return r.cliWith(r.config, args...)
}

// cliWith runs the CLI with the configuration cfg. Starts and decisions are signed as operators
// sign them: "--as NAME" gets "--key" with NAME's private key (keyOf) unless args name one.
func (r *rig) cliWith(cfg string, args ...string) (string, string, int) {
	if i := slices.Index(args, "--as"); i >= 0 && i+1 < len(args) && !slices.Contains(args, "--key") {
		args = append(args, "--key", r.keyOf(args[i+1]))
	}
	cmd := exec.Command(filepath.Join(r.dir, "bin", "stackrun"), append([]string{"--config", cfg}, args...)...)
	cmd.Env = r.env
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		r.t.Fatalf("stackrun %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

func (r *rig) mustCLI(args ...string) string {
	r.t.Helper()
	out, errs, code := r.cli(args...)
	require.Equal(r.t, 0, code, "stackrun %v:\nstdout: %s\nstderr: %s", args, out, errs)
	return out
}

// waitStatus polls `stackrun status` until cond holds.
func (r *rig) waitStatus(id, what string, cond func(workflows.Status) bool) workflows.Status {
	r.t.Helper()
	return r.waitStatusFor(id, what, 90*time.Second, cond)
}

func (r *rig) waitStatusFor(id, what string, timeout time.Duration, cond func(workflows.Status) bool) workflows.Status {
	r.t.Helper()
	var st workflows.Status
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		out, _, code := r.cli("status", id, "--output", "json", "--timeout", "10s")
		if code == 0 && json.Unmarshal([]byte(out), &st) == nil && cond(st) {
			return st
		}
		time.Sleep(500 * time.Millisecond)
	}
	r.t.Fatalf("run %s: %s not reached; last status %+v\n%s", id, what, st, r.logs())
	return st
}

func (r *rig) actions(svc string) string {
	b, _ := os.ReadFile(filepath.Join(r.state, svc+".actions"))
	return strings.TrimSpace(string(b))
}

// auditRecords reads a worker's audit log (JSON lines).
func (r *rig) auditRecords(worker string) []audit.Record {
	f, err := os.Open(filepath.Join(r.cluster, "log", "audit-"+worker+".log"))
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []audit.Record
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var rec audit.Record
		if json.Unmarshal(sc.Bytes(), &rec) == nil {
			out = append(out, rec)
		}
	}
	return out
}

// psql runs a query on the cluster's PostgreSQL as postgres, through its socket (-At output).
func (r *rig) psql(db, query string) string {
	r.t.Helper()
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/psql")
	require.NotEmpty(r.t, bins, "no PostgreSQL client")
	sort.Strings(bins)
	out, err := exec.Command(bins[len(bins)-1], "-h", filepath.Join(r.cluster, "pg", "run"), "-p", "5433", "-U", "postgres",
		"-X", "-At", "-v", "ON_ERROR_STOP=1", "-d", db, "-c", query).CombinedOutput()
	require.NoError(r.t, err, "psql %s: %s", query, out)
	return strings.TrimSpace(string(out))
}

// historyAddr is the RPC address of each history service (their host identities).
var historyAddr = map[string]string{"history-1": clusterNet + ".3:7234", "history-2": clusterNet + ".4:7234"}

// shardOwner is the history service that owns the shard of run id, from Temporal's own
// tables: the shard of the run's execution row, and the owner recorded in that shard's row
// (ShardInfo.owner, the owner's host identity, written when a history service acquires it).
func (r *rig) shardOwner(id string) (shard int, owner string) {
	r.t.Helper()
	shard, err := strconv.Atoi(r.psql("temporal", "SELECT shard_id FROM executions WHERE workflow_id = '"+id+"' LIMIT 1"))
	require.NoError(r.t, err, "the run %s has an execution row", id)
	data, err := hex.DecodeString(r.psql("temporal", fmt.Sprintf("SELECT encode(data, 'hex') FROM shards WHERE shard_id = %d", shard)))
	require.NoError(r.t, err)
	for name, addr := range historyAddr {
		if bytes.Contains(data, []byte(addr)) {
			return shard, name
		}
	}
	return shard, ""
}

// pendingActivity returns the run's pending activity of type name (nil if none).
func (r *rig) pendingActivity(id, name string) (attempt int32, workerIdentity string, ok bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, err := r.client.DescribeWorkflowExecution(ctx, id, "")
	if err != nil {
		return 0, "", false
	}
	for _, pa := range d.GetPendingActivities() {
		if pa.GetActivityType().GetName() == name {
			return pa.GetAttempt(), pa.GetLastWorkerIdentity(), true
		}
	}
	return 0, "", false
}

// pollsSince: the Stackrun worker with this PID has polled the task queue (workflow or activity
// tasks) since t, as the matching service records it.
func (r *rig) pollsSince(pid int, t time.Time) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, tq := range []enumspb.TaskQueueType{enumspb.TASK_QUEUE_TYPE_WORKFLOW, enumspb.TASK_QUEUE_TYPE_ACTIVITY} {
		d, err := r.client.DescribeTaskQueue(ctx, "stackrun", tq)
		if err != nil {
			return false
		}
		for _, p := range d.GetPollers() {
			if strings.HasSuffix(p.GetIdentity(), "/"+strconv.Itoa(pid)) && p.GetLastAccessTime().AsTime().After(t) {
				return true
			}
		}
	}
	return false
}

// dial tries a client connection to the frontend with tc, as a Stackrun process would.
func dial(tc *tls.Config) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.DialContext(ctx, client.Options{HostPort: frontend, ConnectionOptions: client.ConnectionOptions{TLS: tc}})
	if err == nil {
		c.Close()
	}
	return err
}
