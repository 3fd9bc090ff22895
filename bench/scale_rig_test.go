//go:build bench

package bench

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/stackrun/stackrun/config"
	"github.com/stackrun/stackrun/internal/app/control"
	"github.com/stackrun/stackrun/internal/testenv/devserver"
	"github.com/stackrun/stackrun/internal/testenv/operators"
)

// The scale bench's Temporal: the dev server, or a cluster that scripts/cluster/up.sh starts in a
// temporary folder on its own /24 (clear of make cluster's 127.0.40, the cluster test's 127.0.41
// and the lab), with the production settings of make cluster (mTLS, 16 shards, PostgreSQL).
const scaleClusterNet = "127.0.42"

// temporalSide is one Temporal under test.
type temporalSide struct {
	name    string
	client  client.Client
	address string
	// tls is the temporal.tls block of the workers' configuration ("" for none).
	tls string
	// metrics is the frontend's Prometheus endpoint.
	metrics string
	// pids are the server's processes (the dev server; or the five services and PostgreSQL).
	pids func() []int
}

func devSide(t *testing.T) *temporalSide {
	port := freePort(t)
	srv := devserver.Start(t, func(o *devserverOptions) { o.ExtraArgs = append(o.ExtraArgs, "--metrics-port", strconv.Itoa(port)) })
	hp := srv.HostPort
	return &temporalSide{name: "dev server", client: srv.Client, address: hp,
		metrics: fmt.Sprintf("http://127.0.0.1:%d/metrics", port),
		pids: func() []int {
			return findPIDs(func(cmdline string) bool {
				return strings.Contains(cmdline, "start-dev") && strings.Contains(cmdline, strings.Split(hp, ":")[1])
			})
		}}
}

// clusterSide runs up.sh with its own state folder, net and binaries, and down.sh --purge at the
// end. Its two Stackrun workers and the gateway poll the task queue "stackrun"; the bench's
// worker uses its own queue.
func clusterSide(t *testing.T, tm team) *temporalSide {
	root := devserver.RepoRoot(t)
	if os.Geteuid() != 0 {
		t.Fatal("the cluster runs PostgreSQL as the postgres user: run the bench as root")
	}
	dir := t.TempDir()
	require.NoError(t, os.Chmod(dir, 0o755))
	require.NoError(t, os.Chmod(filepath.Dir(dir), 0o755))
	bin := filepath.Join(dir, "bin")
	require.NoError(t, os.MkdirAll(bin, 0o755))
	for _, b := range []string{"temporal", "temporal-server", "temporal-sql-tool", "temporal-ui-server"} {
		if _, err := os.Stat(filepath.Join(root, "bin", b)); err != nil {
			t.Fatalf("bin/%s missing: run `make cluster-bins bin/temporal`", b)
		}
		require.NoError(t, os.Symlink(filepath.Join(root, "bin", b), filepath.Join(bin, b)))
	}
	for pkg, out := range map[string]string{"./worker": "stackrun-worker", "./starter": "stackrun"} {
		goBuild(t, root, pkg, filepath.Join(bin, out))
	}
	cluster := filepath.Join(dir, "cluster")
	// up.sh's base configuration: the cluster's own workers and gateway need keys to start (the
	// gateway signs what it vouches for); they poll the queue "stackrun", not the bench's.
	var keys []string
	for _, k := range []string{"id_ed25519", "chat_ed25519"} {
		p := filepath.Join(dir, k)
		out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", k, "-f", p).CombinedOutput()
		require.NoError(t, err, "%s", out)
		keys = append(keys, p)
	}
	gwPub, err := os.ReadFile(keys[1] + ".pub")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "known_hosts"), nil, 0o600))
	base := filepath.Join(dir, "base.yaml")
	require.NoError(t, os.WriteFile(base, fmt.Appendf(nil, `ssh:
  key_file: %s
  known_hosts_file: %s/known_hosts
policy:
  approvers: [alice, bob]
trust:
  operators:
    - {name: alice, keys: [%q]}
    - {name: bob, keys: [%q]}
  chat_gateway:
    public_key: %q
    private_key_file: %s
`, keys[0], dir, tm.alice.AuthorizedKey(), tm.bob.AuthorizedKey(), strings.TrimSpace(string(gwPub)), keys[1]), 0o600))
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "STACKRUN_") {
			env = append(env, kv)
		}
	}
	env = append(env, "STACKRUN_CLUSTER_DIR="+cluster, "STACKRUN_CLUSTER_NET="+scaleClusterNet, "STACKRUN_CLUSTER_BIN="+bin, "STACKRUN_CONFIG="+base)
	script := func(name string, args ...string) (string, error) {
		cmd := exec.Command(filepath.Join(root, "scripts", "cluster", name), args...)
		cmd.Env = env
		b, err := cmd.CombinedOutput()
		return string(b), err
	}
	t.Cleanup(func() {
		if out, err := script("down.sh", "--purge"); err != nil {
			t.Errorf("down.sh: %v\n%s", err, out)
		}
	})
	start := time.Now()
	out, err := script("up.sh")
	require.NoError(t, err, "up.sh:\n%s", lastLines(out, 30))
	t.Logf("cluster up in %s", time.Since(start).Round(100*time.Millisecond))
	tlsDir := filepath.Join(cluster, "tls")
	tlsBlock := func(cert string) string {
		return fmt.Sprintf("  tls:\n    enabled: true\n    ca_file: %s/ca.pem\n    cert_file: %s/%s.pem\n    key_file: %s/%s.key\n    server_name: temporal-frontend\n",
			tlsDir, tlsDir, cert, tlsDir, cert)
	}
	addr := scaleClusterNet + ".2:7233"
	cfgFile := filepath.Join(dir, "admin.yaml")
	require.NoError(t, os.WriteFile(cfgFile, []byte("temporal:\n  address: "+addr+"\n  namespace: default\n  task_queue: scale\n"+tlsBlock("temporal-admin")), 0o600))
	cfg, err := config.Load(config.LoadOptions{Path: cfgFile, LookupEnv: config.MapEnv(nil)})
	require.NoError(t, err)
	c, err := control.Dial(cfg, control.DialOptions{Identity: "scale-bench"})
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return &temporalSide{name: "cluster", client: c, address: addr, tls: tlsBlock("stackrun-worker"),
		metrics: "http://" + scaleClusterNet + ".2:9090/metrics",
		pids: func() []int {
			var pids []int
			for _, n := range []string{"frontend", "history-1", "history-2", "matching", "internal-worker", "postgresql"} {
				b, err := os.ReadFile(filepath.Join(cluster, "run", n+".pid"))
				if err != nil {
					continue
				}
				pid, _ := strconv.Atoi(strings.Fields(string(b))[0])
				pids = append(pids, pid)
				if n == "postgresql" {
					pids = append(pids, findPIDs(func(string) bool { return false }, pid)...)
				}
			}
			return pids
		}}
}

func goBuild(t *testing.T, root, pkg, out string) {
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = root
	b, err := cmd.CombinedOutput()
	require.NoError(t, err, "go build %s: %s", pkg, b)
}

// team is the bench's operators: alice starts, bob approves.
type team struct{ alice, bob operators.Operator }

func (tm team) signer(o operators.Operator) control.Signer { return control.KeySigner{Key: o.Signer} }

// workerConfig writes the scale worker's stackrun.yaml: nHosts compute hosts, the team's keys.
func workerConfig(t *testing.T, side *temporalSide, tq string, nHosts int, tm team, cache string) string {
	dir := t.TempDir()
	key := filepath.Join(dir, "id_ed25519")
	out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key).CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "known_hosts"), nil, 0o600))
	var b strings.Builder
	fmt.Fprintf(&b, "temporal:\n  address: %s\n  namespace: default\n  task_queue: %s\n%s", side.address, tq, side.tls)
	fmt.Fprintf(&b, "ssh:\n  user: root\n  key_file: %s\n  known_hosts_file: %s/known_hosts\n", key, dir)
	b.WriteString("roles:\n  compute:\n    services:\n      - {name: nova-compute, log: /var/log/nova/nova-compute.log, amqp: true}\n")
	b.WriteString("policy:\n  approvers: [alice, bob]\n  max_hosts_out_of_service: 20\n  gate_timeout: 4h\n  activity_max_attempts: 3\n")
	fmt.Fprintf(&b, "trust:\n  operators:\n    - {name: alice, keys: [%q]}\n    - {name: bob, keys: [%q]}\n", tm.alice.AuthorizedKey(), tm.bob.AuthorizedKey())
	fmt.Fprintf(&b, "worker:\n  audit_log: %s/audit.log\n", dir)
	if cache != "" {
		fmt.Fprintf(&b, "  workflow_cache_size: %s\n", cache)
	}
	b.WriteString("inventory:\n")
	for i := range nHosts {
		fmt.Fprintf(&b, "  %s: {address: 10.%d.%d.%d, roles: [compute], labels: {rack: r%d}}\n", hostName(i), 1+i/65536, (i/256)%256, i%256, i%40)
	}
	p := filepath.Join(dir, "stackrun.yaml")
	require.NoError(t, os.WriteFile(p, []byte(b.String()), 0o600))
	return p
}

func hostName(i int) string { return fmt.Sprintf("host%05d", i) }

// scaleWorker is one running bench/scaleworker process.
type scaleWorker struct {
	cmd   *exec.Cmd
	first string // its SCALE_FIRST file
	log   string
}

func startWorker(t *testing.T, bin, cfg string) *scaleWorker {
	dir := t.TempDir()
	w := &scaleWorker{first: filepath.Join(dir, "first.log"), log: filepath.Join(dir, "worker.log")}
	w.cmd = exec.Command(bin)
	w.cmd.Env = append(os.Environ(), "STACKRUN_CONFIG="+cfg, "SCALE_FIRST="+w.first)
	f, err := os.Create(w.log)
	require.NoError(t, err)
	w.cmd.Stdout, w.cmd.Stderr = f, f
	require.NoError(t, w.cmd.Start())
	t.Cleanup(w.stop)
	return w
}

func (w *scaleWorker) pid() int { return w.cmd.Process.Pid }

func (w *scaleWorker) stop() {
	if w.cmd.ProcessState != nil {
		return
	}
	_ = w.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = w.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = w.cmd.Process.Kill()
		<-done
	}
}

// firstSteps reads the worker's SCALE_FIRST file: workflow ID -> when its first step reached the world.
func (w *scaleWorker) firstSteps() map[string]time.Time {
	out := map[string]time.Time{}
	f, err := os.Open(w.first)
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 2 {
			continue
		}
		ns, _ := strconv.ParseInt(fs[0], 10, 64)
		out[fs[1]] = time.Unix(0, ns)
	}
	return out
}

// usage is a process's (or processes') CPU time and memory.
type usage struct {
	cpu      time.Duration
	rss, hwm int64 // KiB
}

func procUsage(pids ...int) usage {
	var u usage
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		s := string(b)
		fs := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		ut, _ := strconv.ParseInt(fs[11], 10, 64)
		st, _ := strconv.ParseInt(fs[12], 10, 64)
		u.cpu += time.Duration(ut+st) * 10 * time.Millisecond // USER_HZ = 100
		st2, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		for _, l := range strings.Split(string(st2), "\n") {
			f := strings.Fields(l)
			if len(f) >= 2 && f[0] == "VmRSS:" {
				v, _ := strconv.ParseInt(f[1], 10, 64)
				u.rss += v
			}
			if len(f) >= 2 && f[0] == "VmHWM:" {
				v, _ := strconv.ParseInt(f[1], 10, 64)
				u.hwm += v
			}
		}
	}
	return u
}

// findPIDs lists the processes whose command line matches, or (with parents) the children of
// those parents.
func findPIDs(match func(cmdline string) bool, parents ...int) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if len(parents) > 0 {
			b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
			s := string(b)
			if i := strings.LastIndexByte(s, ')'); i > 0 {
				fs := strings.Fields(s[i+2:])
				if len(fs) > 1 && fs[1] == strconv.Itoa(parents[0]) {
					out = append(out, pid)
				}
			}
			continue
		}
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if match(strings.ReplaceAll(string(b), "\x00", " ")) {
			out = append(out, pid)
		}
	}
	return out
}

var sampleRE = regexp.MustCompile(`^(\w+)\{([^}]*)\} ([0-9.e+]+)$`)

// counters scrapes a Prometheus endpoint: the frontend's requests by operation ("req/<op>") and
// the persistence requests of every service ("persistence").
func counters(t *testing.T, url string) map[string]float64 {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err, "scrape %s", url)
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		m := sampleRE.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		v, _ := strconv.ParseFloat(m[3], 64)
		switch m[1] {
		case "service_requests":
			if strings.Contains(m[2], `service_name="frontend"`) {
				if op := regexp.MustCompile(`operation="(\w+)"`).FindStringSubmatch(m[2]); op != nil {
					out["req/"+op[1]] += v
				}
			}
		case "persistence_requests":
			out["persistence"] += v
		}
	}
	return out
}
