//go:build bench

// Package bench measures the daily recurring check at scale: 1,000 instances (a simulated Nova
// and Placement on loopback) and 200 SSH hosts (real OpenSSH sshd processes on 127.0.3.x, at
// most 16 addresses each), through a real Temporal dev server and the real Check workflow and
// activities, and compares its SSH part with `ansible -m shell -f 5` and `parallel-ssh -p 50`
// running the same command on the same targets.
//
//	go test -tags bench -run TestDailyCheckBench -v -timeout 30m ./bench/
package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"golang.org/x/crypto/ssh"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/config/policy"
	"github.com/stackrun/stackrun/internal/infra/openstack"
	"github.com/stackrun/stackrun/internal/infra/remote"
	"github.com/stackrun/stackrun/internal/testenv/devserver"
	"github.com/stackrun/stackrun/internal/testenv/sshd"
	"github.com/stackrun/stackrun/workflows"
)

const (
	nInstances = 1000
	nHosts     = 200
	perSSHD    = 16
	extraPort  = 2200
)

// aptFixture is what `apt-get -s upgrade` prints on a host with three pending security
// updates. The targets all share this machine, whose real apt-get costs ~2 s of CPU per call,
// so every tool runs `cat` of this file instead: the benchmark measures the fan-out.
const aptFixture = `Reading package lists...
Building dependency tree...
Inst libssl3 [3.0.15-1~deb12u1] (3.0.17-1~deb12u2 Debian-Security:12/stable-security [amd64])
Inst openssl [3.0.15-1~deb12u1] (3.0.17-1~deb12u2 Debian-Security:12/stable-security [amd64])
Inst bash [5.2.15-2+b8] (5.2.15-2+b13 Debian:12.15/stable [amd64])
Inst libc6 [2.36-9+deb12u9] (2.36-9+deb12u10 Debian-Security:12/stable-security [amd64])
`

type target struct {
	name, ip string
	port     int
}

func startTargets(t *testing.T) (targets []target, keyFile, knownHosts string) {
	var first *sshd.Server
	var lines []string
	for i := 0; len(targets) < nHosts; i++ {
		ip := func(j int) string { return fmt.Sprintf("127.0.3.%d", j+1) }
		base := i * perSSHD
		var extra []string
		for j := 1; j < perSSHD && base+j < nHosts; j++ {
			extra = append(extra, fmt.Sprintf("ListenAddress %s:%d", ip(base+j), extraPort))
		}
		opts := []sshd.Option{sshd.WithLoopback(ip(base)), sshd.WithConfig(append(extra, "MaxStartups 400:30:800")...)}
		if first != nil {
			opts = append(opts, sshd.WithAuthorizedKeys(first.UserSigner.PublicKey()))
		}
		s := sshd.Start(t, opts...)
		if first == nil {
			first = s
		}
		targets = append(targets, target{fmt.Sprintf("host%03d", base), s.IP, s.Port})
		lines = append(lines, s.KnownHostsLine())
		for j := 1; j < perSSHD && base+j < nHosts; j++ {
			targets = append(targets, target{fmt.Sprintf("host%03d", base+j), ip(base + j), extraPort})
			lines = append(lines, fmt.Sprintf("[%s]:%d %s", ip(base+j), extraPort, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.HostKey)))))
		}
	}
	knownHosts = filepath.Join(t.TempDir(), "known_hosts")
	require.NoError(t, os.WriteFile(knownHosts, []byte(strings.Join(lines, "\n")+"\n"), 0o600))
	return targets, first.UserKeyFile, knownHosts
}

// fakeCloud serves the Nova and Placement calls of the daily check: 1,000 servers (10 in
// ERROR), 200 compute services (2 disabled without a reason), 200 resource providers.
func fakeCloud(t *testing.T) *httptest.Server {
	mux := http.NewServeMux()
	type fault struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	var srvs []map[string]any
	for i := range nInstances {
		s := map[string]any{"id": fmt.Sprintf("00000000-0000-0000-0000-%012d", i), "name": fmt.Sprintf("vm%04d", i),
			"status": "ACTIVE", "tenant_id": fmt.Sprintf("p%02d", i%20), "OS-EXT-SRV-ATTR:host": fmt.Sprintf("host%03d", i%nHosts),
			"flavor": map[string]any{"vcpus": 2, "ram": 4096, "disk": 20, "original_name": "m1.medium"}, "image": map[string]any{"id": "img"},
			"created": "2025-01-01T00:00:00Z", "updated": "2025-01-01T00:00:00Z"}
		if i%100 == 7 {
			s["status"] = "ERROR"
			s["fault"] = fault{500, "No valid host was found. There are not enough hosts available."}
		}
		srvs = append(srvs, s)
	}
	page, _ := json.Marshal(map[string]any{"servers": srvs})
	mux.HandleFunc("/compute/servers/detail", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(page) })
	var svcs []map[string]any
	for i := range nHosts {
		s := map[string]any{"id": fmt.Sprintf("svc-%d", i), "binary": "nova-compute", "host": fmt.Sprintf("host%03d", i), "state": "up", "status": "enabled", "zone": "nova", "updated_at": "2025-01-01T00:00:00.000000"}
		if i%100 == 3 {
			s["status"] = "disabled"
		}
		svcs = append(svcs, s)
	}
	sp, _ := json.Marshal(map[string]any{"services": svcs})
	mux.HandleFunc("/compute/os-services", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(sp) })
	var rps []map[string]any
	for i := range nHosts {
		rps = append(rps, map[string]any{"uuid": fmt.Sprintf("rp-%d", i), "name": fmt.Sprintf("host%03d", i), "generation": 1})
	}
	rp, _ := json.Marshal(map[string]any{"resource_providers": rps})
	mux.HandleFunc("/placement/resource_providers", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(rp) })
	mux.HandleFunc("/placement/resource_providers/", func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/inventories") {
			fmt.Fprint(w, `{"resource_provider_generation":1,"inventories":{"VCPU":{"total":64,"reserved":0,"allocation_ratio":4.0,"max_unit":64,"min_unit":1,"step_size":1},"MEMORY_MB":{"total":262144,"reserved":512,"allocation_ratio":1.0,"max_unit":262144,"min_unit":1,"step_size":1},"DISK_GB":{"total":2000,"reserved":0,"allocation_ratio":1.0,"max_unit":2000,"min_unit":1,"step_size":1}}}`)
			return
		}
		fmt.Fprint(w, `{"resource_provider_generation":1,"usages":{"VCPU":10,"MEMORY_MB":20480,"DISK_GB":100}}`)
	})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json") // gophercloud's pages need it
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func sc(base, typ, mv string) *gophercloud.ServiceClient {
	pc := &gophercloud.ProviderClient{TokenID: "bench", HTTPClient: http.Client{Timeout: 30 * time.Second}}
	return &gophercloud.ServiceClient{ProviderClient: pc, Endpoint: base + "/" + typ + "/", ResourceBase: base + "/" + typ + "/", Type: typ, Microversion: mv}
}

func peakRSS() string {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			return strings.TrimSpace(strings.TrimPrefix(l, "VmHWM:"))
		}
	}
	return "?"
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

func TestDailyCheckBench(t *testing.T) {
	targets, keyFile, knownHosts := startTargets(t)
	fixture := filepath.Join(t.TempDir(), "apt-upgrade.txt")
	require.NoError(t, os.WriteFile(fixture, []byte(aptFixture), 0o644))
	cloud := fakeCloud(t)
	srv := devserver.Start(t)

	inv := map[string]activities.InventoryHost{}
	for _, tg := range targets {
		inv[tg.name] = activities.InventoryHost{Address: tg.ip, Port: tg.port, Roles: []string{"compute"}, Labels: map[string]string{"rack": "r" + tg.name[len(tg.name)-1:]}}
	}
	cmds := remote.DefaultCommands()
	cmds["security_updates_debian"] = []string{"cat", fixture}
	cat, err := remote.NewCatalogue(cmds, nil, nil)
	require.NoError(t, err)
	clients := &openstack.Clients{Compute: sc(cloud.URL, "compute", "2.90"), Placement: sc(cloud.URL, "placement", "1.29")}

	runCheck := func(parallelism int) (*workflows.Report, time.Duration) {
		// A fresh worker and SSH pool per run: every run pays its handshakes, as pssh and Ansible do.
		pool, err := remote.NewPool(remote.Options{User: "root", KeyFile: keyFile, KnownHostsFile: knownHosts, ConnectTimeout: 20 * time.Second, CommandTimeout: time.Minute})
		require.NoError(t, err)
		defer pool.Close()
		tq := fmt.Sprintf("bench-%d", time.Now().UnixNano())
		w := worker.New(srv.Client, tq, worker.Options{MaxConcurrentActivityExecutionSize: 500})
		workflows.Register(w)
		w.RegisterActivity(&activities.Machine{Policy: policy.Policy{ActivityMaxAttempts: 3, DefaultParallelism: 4}})
		w.RegisterActivity(&activities.Checks{
			Clients:  func(context.Context) (*openstack.Clients, error) { return clients, nil },
			Hosts:    &activities.Hosts{Inventory: inv, Runner: pool, Catalogue: cat},
			Settings: activities.CheckSettings{OSFamilyLabel: "os_family", DefaultOSFamily: "debian", Parallelism: parallelism, ProbeTimeout: 2 * time.Minute},
		})
		require.NoError(t, w.Start())
		defer w.Stop()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		start := time.Now()
		run, err := srv.Client.ExecuteWorkflow(ctx, clientOpts(tq), workflows.Check.Type, workflows.CheckInput{Meta: workflows.Meta{RequestedBy: "bench"}, Cadence: "daily"})
		require.NoError(t, err)
		var rep workflows.Report
		require.NoError(t, run.Get(ctx, &rep))
		return &rep, time.Since(start)
	}

	rep, total := runCheck(50)
	require.Equal(t, workflows.StatusCompleted, rep.Status, rep.Summary)
	var sshStep time.Duration
	for _, s := range rep.Steps {
		if s.Name == "probe/security-updates" && s.Started != nil && s.Ended != nil {
			sshStep = s.Ended.Sub(*s.Started)
		}
	}
	var probes []activities.ProbeRun
	b, _ := json.Marshal(rep.Details["probes"])
	require.NoError(t, json.Unmarshal(b, &probes))
	failed := 0
	for _, p := range probes {
		if !p.OK {
			failed++
		}
	}
	require.Zero(t, failed, "every probe answered")
	require.Contains(t, rep.Summary, "10 critical", "10 ERROR instances")
	t.Logf("daily check: %s", rep.Summary)

	// The same command on the same 200 targets with the tools an operator would otherwise use.
	hostsFile := filepath.Join(t.TempDir(), "hosts")
	invFile := filepath.Join(t.TempDir(), "inventory.ini")
	var hl, il []string
	for _, tg := range targets {
		hl = append(hl, fmt.Sprintf("root@%s:%d", tg.ip, tg.port))
		il = append(il, fmt.Sprintf("%s ansible_host=%s ansible_port=%d", tg.name, tg.ip, tg.port))
	}
	require.NoError(t, os.WriteFile(hostsFile, []byte(strings.Join(hl, "\n")+"\n"), 0o600))
	require.NoError(t, os.WriteFile(invFile, []byte("[all]\n"+strings.Join(il, "\n")+"\n[all:vars]\nansible_user=root\nansible_python_interpreter=/usr/bin/python3\n"), 0o600))
	sshOpts := fmt.Sprintf("-i %s -o UserKnownHostsFile=%s -o StrictHostKeyChecking=yes -o BatchMode=yes", keyFile, knownHosts)
	timeCmd := func(name string, args []string, env ...string) time.Duration {
		cmd := exec.Command(name, args...)
		cmd.Env = append(os.Environ(), env...)
		start := time.Now()
		out, err := cmd.CombinedOutput()
		d := time.Since(start)
		require.NoError(t, err, "%s: %s", name, lastLines(string(out), 15))
		return d
	}
	pssh := timeCmd("parallel-ssh", []string{"-h", hostsFile, "-p", "50", "-t", "120", "-x", sshOpts, "cat", fixture})
	ansible := time.Duration(0)
	if _, err := exec.LookPath("ansible"); err == nil {
		ansible = timeCmd("ansible", []string{"all", "-i", invFile, "-m", "shell", "-a", "cat " + fixture, "-f", "5", "--private-key", keyFile},
			"ANSIBLE_SSH_ARGS=-o UserKnownHostsFile="+knownHosts+" -o StrictHostKeyChecking=yes -o ControlMaster=no", "ANSIBLE_HOST_KEY_CHECKING=True", "ANSIBLE_LOAD_CALLBACK_PLUGINS=0", "ANSIBLE_STDOUT_CALLBACK=minimal")
	} else {
		t.Errorf("ansible is not installed (apt-get install --no-install-recommends ansible-core): no comparison")
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Printf("\nDaily check over %d instances (simulated Nova/Placement) and %d SSH hosts (real sshd on loopback), load %s\n\n", nInstances, nHosts, loadavg())
	fmt.Printf("| what | time |\n| --- | --- |\n")
	fmt.Printf("| whole daily check (Temporal dev server, %d probes, parallelism 50) | %.1f s |\n", len(probes), total.Seconds())
	fmt.Printf("| its SSH part (probe/security-updates over %d hosts) | %.1f s |\n", nHosts, sshStep.Seconds())
	fmt.Printf("| parallel-ssh -p 50 (same command, same hosts) | %.1f s |\n", pssh.Seconds())
	if ansible > 0 {
		fmt.Printf("| ansible -m shell -f 5 (same command, same hosts) | %.1f s |\n", ansible.Seconds())
		fmt.Printf("\nSSH part vs Ansible: %.1fx faster (goal >= 5x); vs parallel-ssh: %.2fx its time (goal <= 1.3x)\n", ansible.Seconds()/sshStep.Seconds(), sshStep.Seconds()/pssh.Seconds())
	}
	fmt.Printf("Peak RSS of this process (worker, SSH pool, fake cloud, test harness; not the dev server or sshd): %s; Go heap in use now %.1f MiB\n",
		peakRSS(), float64(ms.HeapInuse)/(1<<20))
	require.Less(t, total, time.Minute, "the daily check completes in under a minute")
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

func clientOpts(tq string) client.StartWorkflowOptions {
	return client.StartWorkflowOptions{ID: fmt.Sprintf("check/daily/bench-%d", time.Now().UnixNano()), TaskQueue: tq}
}
