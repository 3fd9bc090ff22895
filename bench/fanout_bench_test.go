//go:build bench

package bench

// Repeated fan-out (issue 16): a long-running worker keeps its SSH connections between checks,
// so the second and later checks over 200 hosts cost no handshakes, where parallel-ssh pays 200
// every time. The check is the real Check workflow (cadence daily: its security-update probe
// over SSH on 200 hosts, in batches of 25 (HostProbes), plus 3 probes of a simulated Nova and
// Placement) on a dev server, run again and again by one worker with one SSH pool, as an hourly schedule runs it.
// Between checks the pool's connections stay idle longer than its keepalive threshold, so every
// reuse first probes the connection (keepalive@openssh.com), as after an hour.
//
//	go test -tags bench -run TestRepeatedFanOutBench -v ./bench/

import (
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
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/worker"
	"golang.org/x/crypto/ssh"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/config/policy"
	"github.com/stackrun/stackrun/internal/infra/keepalive"
	"github.com/stackrun/stackrun/internal/infra/openstack"
	"github.com/stackrun/stackrun/internal/infra/remote"
	"github.com/stackrun/stackrun/internal/testenv/devserver"
	"github.com/stackrun/stackrun/internal/testenv/sshd"
	"github.com/stackrun/stackrun/workflows"
)

const (
	fanNet    = "127.0.5" // clear of TestDailyCheckBench's 127.0.3
	fanPort   = 2201
	fanChecks = 5
	fanPSSH   = 3
)

// fanTargets starts real OpenSSH sshd processes for nHosts targets (16 addresses each) with
// verified host keys in known_hosts; it returns the targets and the sshd config files (to find
// their processes).
func fanTargets(t *testing.T) (targets []target, keyFile, knownHosts string, configs []string) {
	var first *sshd.Server
	var lines []string
	ip := func(j int) string { return fmt.Sprintf("%s.%d", fanNet, j+1) }
	// Sessions get an empty home: the targets are this machine's root, whose ~/.bashrc (which
	// bash reads for commands over SSH) may do slow things (pyenv init) that are no host's cost.
	home := t.TempDir()
	for i := 0; len(targets) < nHosts; i++ {
		base := i * perSSHD
		var extra []string
		for j := 1; j < perSSHD && base+j < nHosts; j++ {
			extra = append(extra, fmt.Sprintf("ListenAddress %s:%d", ip(base+j), fanPort))
		}
		opts := []sshd.Option{sshd.WithLoopback(ip(base)), sshd.WithConfig(append(extra, "MaxStartups 400:30:800", "SetEnv HOME="+home)...)}
		if first != nil {
			opts = append(opts, sshd.WithAuthorizedKeys(first.UserSigner.PublicKey()))
		}
		s := sshd.Start(t, opts...)
		if first == nil {
			first = s
		}
		configs = append(configs, s.ConfigFile)
		targets = append(targets, target{fmt.Sprintf("host%03d", base), s.IP, s.Port})
		lines = append(lines, s.KnownHostsLine())
		for j := 1; j < perSSHD && base+j < nHosts; j++ {
			targets = append(targets, target{fmt.Sprintf("host%03d", base+j), ip(base + j), fanPort})
			lines = append(lines, fmt.Sprintf("[%s]:%d %s", ip(base+j), fanPort, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.HostKey)))))
		}
	}
	knownHosts = filepath.Join(t.TempDir(), "known_hosts")
	require.NoError(t, os.WriteFile(knownHosts, []byte(strings.Join(lines, "\n")+"\n"), 0o600))
	return targets, first.UserKeyFile, knownHosts, configs
}

// sshdCPU is the CPU time of every sshd of the targets: the listeners, their reaped children
// (cutime) and the sessions still open. One pass over /proc: a pass per process (findPIDs for
// each of the ~200 pooled sessions' sshd) cost this process seconds of CPU per check, which
// showed as the worker's (the "later check costs more CPU than the first" of the first table).
func sshdCPU(configs []string) time.Duration {
	ents, _ := os.ReadDir("/proc")
	children := map[int][]int{}
	var masters []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		st := string(b)
		if i := strings.LastIndexByte(st, ')'); i > 0 {
			if fs := strings.Fields(st[i+2:]); len(fs) > 1 {
				pp, _ := strconv.Atoi(fs[1])
				children[pp] = append(children[pp], pid)
			}
		}
		if strings.HasPrefix(st[strings.IndexByte(st, '(')+1:], "sshd") {
			cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			if slices.ContainsFunc(configs, func(c string) bool { return strings.Contains(string(cmd), c) }) {
				masters = append(masters, pid)
			}
		}
	}
	var total time.Duration
	seen := map[int]bool{}
	var add func(pid int)
	add = func(pid int) {
		if seen[pid] {
			return
		}
		seen[pid] = true
		total += cpuWithChildren(pid)
		for _, c := range children[pid] {
			add(c)
		}
	}
	for _, m := range masters {
		add(m)
	}
	return total
}

func cpuWithChildren(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	fs := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	var ticks int64
	for _, i := range []int{11, 12, 13, 14} { // utime stime cutime cstime
		var v int64
		fmt.Sscan(fs[i], &v)
		ticks += v
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// span records when the first probe of a check began and the last ended: the check's SSH part.
type span struct {
	mu          sync.Mutex
	first, last time.Time
}

func (s *span) reset() { s.mu.Lock(); s.first, s.last = time.Time{}, time.Time{}; s.mu.Unlock() }

func (s *span) note(start, end time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.first.IsZero() || start.Before(s.first) {
		s.first = start
	}
	if end.After(s.last) {
		s.last = end
	}
}

type fanRow struct {
	what                  string
	wall, sshPart, client time.Duration
	sshd                  time.Duration
	handshakes            int64
	failed                int
	sshActs, events       int64 // SSH activities and history events of a check
}

func TestRepeatedFanOutBench(t *testing.T) {
	targets, keyFile, knownHosts, configs := fanTargets(t)
	fixture := filepath.Join(t.TempDir(), "apt-upgrade.txt")
	require.NoError(t, os.WriteFile(fixture, []byte(aptFixture), 0o644))
	cloud := fakeCloud(t)
	srv := devserver.Start(t)

	inv := map[string]activities.InventoryHost{}
	for _, tg := range targets {
		inv[tg.name] = activities.InventoryHost{Address: tg.ip, Port: tg.port, Roles: []string{"compute"}}
	}
	cmds := remote.DefaultCommands()
	cmds["security_updates_debian"] = []string{"cat", fixture}
	cat, err := remote.NewCatalogue(cmds, nil, nil)
	require.NoError(t, err)
	clients := &openstack.Clients{Compute: sc(cloud.URL, "compute", "2.90"), Placement: sc(cloud.URL, "placement", "1.29")}
	// One pool for the worker's life, as stackrun-worker has. KeepAliveIdle 1 s with 2 s between
	// checks: every reuse probes its connection first, as it would after an hour idle.
	pool, err := remote.NewPool(remote.Options{User: "root", KeyFile: keyFile, KnownHostsFile: knownHosts,
		ConnectTimeout: 20 * time.Second, CommandTimeout: 2 * time.Minute, KeepAliveIdle: time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { _ = pool.Close() })
	tq := "fanout-bench"
	// The real worker's keepalive: it heartbeats the probes (their heartbeat timeout is 20 s).
	w := worker.New(srv.Client, tq, worker.Options{MaxConcurrentActivityExecutionSize: 500,
		Interceptors: []interceptor.WorkerInterceptor{keepalive.Interceptor(0)}})
	workflows.Register(w)
	w.RegisterActivity(&activities.Machine{Policy: policy.Policy{ActivityMaxAttempts: 3, DefaultParallelism: 4}})
	checks := &activities.Checks{
		Clients:  func(context.Context) (*openstack.Clients, error) { return clients, nil },
		Hosts:    &activities.Hosts{Inventory: inv, Runner: pool, Catalogue: cat},
		Settings: activities.CheckSettings{OSFamilyLabel: "os_family", DefaultOSFamily: "debian", Parallelism: 50, ProbeTimeout: 2 * time.Minute},
	}
	w.RegisterActivity(checks)
	var sp span
	// The probes over SSH (batches of hosts), timed: the real activity inside.
	var acts atomic.Int64
	w.RegisterActivityWithOptions(func(ctx context.Context, req activities.HostProbesRequest) ([]activities.HostProbeResult, error) {
		acts.Add(1)
		start := time.Now()
		res, err := checks.HostProbes(ctx, req)
		sp.note(start, time.Now())
		return res, err
	}, activity.RegisterOptions{Name: "HostProbes", DisableAlreadyRegisteredCheck: true})
	require.NoError(t, w.Start())
	t.Cleanup(w.Stop)

	var rows []fanRow
	for i := 1; i <= fanChecks; i++ {
		time.Sleep(2 * time.Second)
		sp.reset()
		d0 := sshdCPU(configs)
		st0, c0, a0 := pool.Stats(), selfCPU(), acts.Load()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		start := time.Now()
		run, err := srv.Client.ExecuteWorkflow(ctx, clientOpts(tq), workflows.Check.Type,
			workflows.CheckInput{Meta: workflows.Meta{RequestedBy: "bench"}, Cadence: "daily", Parallelism: 50})
		require.NoError(t, err)
		var rep workflows.Report
		require.NoError(t, run.Get(ctx, &rep))
		cancel()
		wall := time.Since(start)
		require.Equal(t, workflows.StatusCompleted, rep.Status, rep.Summary)
		failed, errs := probeErrors(rep)
		if failed > 0 {
			t.Errorf("check %d: %d probe(s) failed: %s", i, failed, errs)
		}
		st1, c1 := pool.Stats(), selfCPU()
		desc, err := srv.Client.DescribeWorkflowExecution(context.Background(), run.GetID(), run.GetRunID())
		require.NoError(t, err)
		rows = append(rows, fanRow{what: fmt.Sprintf("check %d (Stackrun, one worker, pool kept)", i), wall: wall, sshPart: sp.last.Sub(sp.first),
			client: c1 - c0, sshd: sshdCPU(configs) - d0, handshakes: st1.Connects - st0.Connects, failed: failed,
			sshActs: acts.Load() - a0, events: desc.WorkflowExecutionInfo.GetHistoryLength()})
	}

	hostsFile := filepath.Join(t.TempDir(), "hosts")
	var hl []string
	for _, tg := range targets {
		hl = append(hl, fmt.Sprintf("root@%s:%d", tg.ip, tg.port))
	}
	require.NoError(t, os.WriteFile(hostsFile, []byte(strings.Join(hl, "\n")+"\n"), 0o600))
	sshOpts := fmt.Sprintf("-i %s -o UserKnownHostsFile=%s -o StrictHostKeyChecking=yes -o BatchMode=yes", keyFile, knownHosts)
	for i := 1; i <= fanPSSH; i++ {
		d0 := sshdCPU(configs)
		cmd := exec.Command("parallel-ssh", "-h", hostsFile, "-p", "50", "-t", "120", "-x", sshOpts, "cat", fixture)
		start := time.Now()
		out, err := cmd.CombinedOutput()
		wall := time.Since(start)
		ok := strings.Count(string(out), "[SUCCESS]")
		if err != nil || ok != nHosts {
			t.Errorf("parallel-ssh run %d: %d of %d hosts answered (%v): %s", i, ok, nHosts, err, lastLines(string(out), 5))
		}
		rows = append(rows, fanRow{what: fmt.Sprintf("parallel-ssh -p 50, run %d", i), wall: wall, sshPart: wall,
			client: cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(), sshd: sshdCPU(configs) - d0, handshakes: int64(nHosts), failed: nHosts - ok})
	}

	fmt.Printf("\nRepeated fan-out over %d SSH hosts (real sshd on loopback, host keys verified), %s, load %s\n\n", nHosts, time.Now().UTC().Format(time.DateOnly), loadavg())
	fmt.Printf("| run | wall | SSH part | SSH handshakes | hosts failed | SSH activities | history events | client CPU | sshd CPU (all hosts) |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, r := range rows {
		acts, events := "–", "–"
		if r.events > 0 {
			acts, events = strconv.FormatInt(r.sshActs, 10), strconv.FormatInt(r.events, 10)
		}
		fmt.Printf("| %s | %.2f s | %.2f s | %d | %d | %s | %s | %.2f s | %.2f s |\n", r.what, r.wall.Seconds(), r.sshPart.Seconds(), r.handshakes, r.failed, acts, events, r.client.Seconds(), r.sshd.Seconds())
	}
	median := func(ds []time.Duration) time.Duration { slices.Sort(ds); return ds[len(ds)/2] }
	var later, laterSSH, pssh []time.Duration
	for _, r := range rows[1:fanChecks] {
		later, laterSSH = append(later, r.wall), append(laterSSH, r.sshPart)
	}
	for _, r := range rows[fanChecks:] {
		pssh = append(pssh, r.wall)
	}
	p := median(pssh)
	fmt.Printf("\nlater checks (median of %d) vs parallel-ssh -p 50 (median of %d): whole check %.1fx faster, its SSH part %.1fx faster (goal >= 5x); first check (200 handshakes) %.2fx parallel-ssh's time\n",
		len(later), len(pssh), p.Seconds()/median(later).Seconds(), p.Seconds()/median(laterSSH).Seconds(), rows[0].wall.Seconds()/p.Seconds())
	for _, r := range rows[1:fanChecks] {
		assert.Zero(t, r.handshakes, "%s: no handshake after the first check", r.what)
	}
}

// probeErrors counts a check's failed probes and lists the first errors.
func probeErrors(rep workflows.Report) (int, string) {
	var probes []activities.ProbeRun
	b, _ := json.Marshal(rep.Details["probes"])
	_ = json.Unmarshal(b, &probes)
	var errs []string
	failed := 0
	for _, p := range probes {
		if !p.OK {
			failed++
			if len(errs) < 3 {
				errs = append(errs, p.Target+": "+p.Error)
			}
		}
	}
	return failed, strings.Join(errs, "; ")
}
