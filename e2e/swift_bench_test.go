//go:build e2e && bench

package e2e

// Ring distribution benchmark: `swift-ring --distribute` (the real workflow on a dev server, an
// in-process worker, SFTP copies with atomic rename, then every node's MD5 verified) against
// Debian's parallel-scp with the same parallelism, to the lab's nodes and to 100 sshd targets on
// loopback (each chrooted into its own directory, so that both tools write distinct files).
//
//	go test -count=1 -tags e2e -run TestRingDistributionVersusParallelScp -v ./e2e/
//
// Set STACKRUN_BENCH_TARGETS to change the number of simulated targets (default 100).

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/stackrun/stackrun/config"
	"github.com/stackrun/stackrun/internal/app/control"
	"github.com/stackrun/stackrun/internal/app/workerapp"
	"github.com/stackrun/stackrun/internal/testenv/devserver"
	"github.com/stackrun/stackrun/internal/testenv/sshd"
	"github.com/stackrun/stackrun/workflows"
)

type benchTarget struct {
	name, ip string
	port     int
	root     string // chroot directory ("" = none: the lab's own hosts)
	dir      string // ring directory as the node sees it
}

// timeDistribute runs swift-ring --distribute and returns its wall time.
func timeDistribute(t *testing.T, srv *devserver.Server, cfg *config.Config, parallel int) time.Duration {
	rb, err := workflows.FindRunbook("swift-ring")
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	t0 := time.Now()
	st, err := control.Start(ctx, srv.Client, cfg.Temporal.TaskQueue, rb,
		&workflows.SwiftRingInput{Meta: workflows.Meta{RequestedBy: "alice"}, Distribute: true, Parallelism: parallel}, as(t, "alice"))
	require.NoError(t, err)
	rep, err := control.Report(ctx, srv.Client, st.WorkflowID, true)
	require.NoError(t, err)
	d := time.Since(t0)
	require.Equal(t, workflows.StatusCompleted, rep.Status, rep.Summary)
	return d
}

func timePscp(t *testing.T, targets []benchTarget, parallel int, key, knownHosts string, files []string, remoteDir string) time.Duration {
	hosts := filepath.Join(t.TempDir(), "hosts")
	var lines []string
	for _, tg := range targets {
		lines = append(lines, fmt.Sprintf("root@%s:%d", tg.ip, tg.port))
	}
	require.NoError(t, os.WriteFile(hosts, []byte(strings.Join(lines, "\n")+"\n"), 0o600))
	args := []string{"-h", hosts, "-p", strconv.Itoa(parallel), "-t", "120",
		"-x", fmt.Sprintf("-i %s -o UserKnownHostsFile=%s -o StrictHostKeyChecking=yes -o BatchMode=yes", key, knownHosts)}
	args = append(append(args, files...), remoteDir+"/")
	t0 := time.Now()
	out, err := exec.Command("parallel-scp", args...).CombinedOutput()
	d := time.Since(t0)
	require.NoError(t, err, "parallel-scp: %s", out)
	return d
}

func clearRings(t *testing.T, targets []benchTarget) {
	for _, tg := range targets[1:] {
		for _, k := range ringKinds {
			_ = os.Remove(filepath.Join(tg.root, tg.dir, k+".ring.gz"))
		}
	}
}

func checkRings(t *testing.T, targets []benchTarget, src string) {
	for _, tg := range targets {
		for _, k := range ringKinds {
			require.Equal(t, md5File(t, filepath.Join(src, k+".ring.gz")), md5File(t, filepath.Join(tg.root, tg.dir, k+".ring.gz")), "%s %s", tg.name, k)
		}
	}
}

func TestRingDistributionVersusParallelScp(t *testing.T) {
	_, err := exec.LookPath("parallel-scp")
	require.NoError(t, err, "parallel-scp missing: apt-get install pssh")
	n := 100
	if v := os.Getenv("STACKRUN_BENCH_TARGETS"); v != "" {
		n, err = strconv.Atoi(v)
		require.NoError(t, err)
	}
	const parallel = 8
	type row struct {
		what               string
		stackrun, pscp     time.Duration
		stackrunWarmSecond time.Duration
	}
	var rows []row

	// --- 1. the lab: 3 storage nodes (+ the controller, already current). -----------------
	{
		cfgPath, cfg := swiftLabConfig(t)
		ringDir := cfg.Swift.BuilderDir
		var targets []benchTarget
		for _, name := range cfg.HostNames() {
			h := cfg.Inventory[name]
			if len(cfg.Swift.Nodes[name].Devices) == 0 {
				continue
			}
			targets = append(targets, benchTarget{name: name, ip: h.Address, port: h.Port, dir: cfg.Swift.Nodes[name].SwiftDir})
		}
		// Keep the nodes' rings to restore them (they are the builder's, normally).
		saved := t.TempDir()
		for _, tg := range targets {
			for _, k := range ringKinds {
				cp(t, filepath.Join(tg.dir, k+".ring.gz"), filepath.Join(saved, tg.name+"."+k+".ring.gz"))
			}
		}
		t.Cleanup(func() {
			for _, tg := range targets {
				for _, k := range ringKinds {
					cp(t, filepath.Join(saved, tg.name+"."+k+".ring.gz"), filepath.Join(tg.dir, k+".ring.gz"))
				}
			}
		})
		srv := devserver.Start(t)
		startWorker(t, cfgPath, srv)
		stale := func() {
			for _, tg := range targets {
				for _, k := range ringKinds {
					require.NoError(t, os.WriteFile(filepath.Join(tg.dir, k+".ring.gz"), []byte("stale"), 0o644))
				}
			}
		}
		var files []string
		for _, k := range ringKinds {
			files = append(files, filepath.Join(ringDir, k+".ring.gz"))
		}
		stale()
		cold := timeDistribute(t, srv, cfg, parallel)
		stale()
		warm := timeDistribute(t, srv, cfg, parallel)
		for _, tg := range targets {
			for _, k := range ringKinds {
				require.Equal(t, md5File(t, filepath.Join(ringDir, k+".ring.gz")), md5File(t, filepath.Join(tg.dir, k+".ring.gz")))
			}
		}
		// The lab's hosts share one file system and each has its own ring directory, and
		// parallel-scp copies to one remote path: one parallel-scp per node, all at once.
		env := labEnv(t)
		stale()
		t0 := time.Now()
		errs := make(chan error, len(targets))
		for _, tg := range targets {
			go func() {
				args := []string{"-H", fmt.Sprintf("root@%s:%d", tg.ip, tg.port), "-p", strconv.Itoa(parallel),
					"-x", fmt.Sprintf("-i %s -o UserKnownHostsFile=%s -o StrictHostKeyChecking=yes -o BatchMode=yes", env["LAB_SSH_KEY"], env["LAB_KNOWN_HOSTS"])}
				args = append(append(args, files...), tg.dir+"/")
				out, err := exec.Command("parallel-scp", args...).CombinedOutput()
				if err != nil {
					err = fmt.Errorf("%v: %s", err, out)
				}
				errs <- err
			}()
		}
		for range targets {
			require.NoError(t, <-errs)
		}
		pscp := time.Since(t0)
		rows = append(rows, row{fmt.Sprintf("lab: %d storage nodes (+ controller)", len(targets)), cold, pscp, warm})
	}

	// --- 2. N sshd targets on loopback, each chrooted into its own directory. --------------
	{
		base, err := os.MkdirTemp("/run", "stackrun-bench-")
		require.NoError(t, err)
		require.NoError(t, os.Chmod(base, 0o755))
		t.Cleanup(func() { _ = os.RemoveAll(base) })
		var targets []benchTarget
		var khLines []string
		var first *sshd.Server
		for i := range n {
			root := filepath.Join(base, fmt.Sprintf("n%03d", i))
			require.NoError(t, os.MkdirAll(filepath.Join(root, "etc", "swift"), 0o755))
			ip := fmt.Sprintf("127.0.%d.%d", 3+i/250, 1+i%250)
			opts := []sshd.Option{sshd.WithLoopback(ip), sshd.WithConfig("ChrootDirectory "+root, "LogLevel ERROR")}
			if first != nil {
				opts = append(opts, sshd.WithAuthorizedKeys(first.UserSigner.PublicKey()))
			}
			s := sshd.Start(t, opts...)
			if first == nil {
				first = s
			}
			targets = append(targets, benchTarget{name: fmt.Sprintf("n%03d", i), ip: ip, port: s.Port, root: root, dir: "/etc/swift"})
			khLines = append(khLines, s.KnownHostsLine())
		}
		kh := filepath.Join(t.TempDir(), "known_hosts")
		require.NoError(t, os.WriteFile(kh, []byte(strings.Join(khLines, "\n")+"\n"), 0o600))
		// Ring-sized files on the source (n000): 3 files of 1 MiB (a part power 16-18 ring is
		// 1-4 MiB gzipped).
		src := filepath.Join(targets[0].root, "etc", "swift")
		var files []string
		for _, k := range ringKinds {
			b := make([]byte, 1<<20)
			_, _ = rand.Read(b)
			p := filepath.Join(src, k+".ring.gz")
			require.NoError(t, os.WriteFile(p, b, 0o644))
			files = append(files, p)
		}
		cfg := config.Default()
		cfg.SSH.User, cfg.SSH.KeyFile, cfg.SSH.KnownHostsFile = "root", first.UserKeyFile, kh
		cfg.Roles["storage"] = config.Role{}
		cfg.Swift.RingBuilderHost, cfg.Swift.BuilderDir, cfg.Swift.Parallelism = targets[0].name, "/etc/swift", parallel
		for _, tg := range targets {
			cfg.Inventory[tg.name] = config.Host{Address: tg.ip, Port: tg.port, Roles: []string{"storage"}}
			cfg.Swift.Nodes[tg.name] = config.SwiftNode{SwiftDir: "/etc/swift"}
		}
		require.NoError(t, cfg.ValidateFor(config.ForWorker))
		srv := devserver.Start(t)
		cfg.Trust.KeysFile = operatorKeysFile(t)
		app, err := workerapp.New(srv.Client, cfg, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})))
		require.NoError(t, err)
		require.NoError(t, app.Worker.Start())
		t.Cleanup(func() { app.Worker.Stop(); app.Close() })

		clearRings(t, targets)
		cold := timeDistribute(t, srv, cfg, parallel)
		checkRings(t, targets, src)
		clearRings(t, targets)
		warm := timeDistribute(t, srv, cfg, parallel)
		checkRings(t, targets, src)
		clearRings(t, targets)
		pscp := timePscp(t, targets[1:], parallel, first.UserKeyFile, kh, files, "/etc/swift")
		checkRings(t, targets, src)
		rows = append(rows, row{fmt.Sprintf("%d loopback sshd targets, 3 x 1 MiB", n-1), cold, pscp, warm})
	}

	t.Logf("ring distribution, parallelism %d (Stackrun: swift-ring --distribute = copy + MD5 verification of every node, through Temporal)", parallel)
	t.Logf("%-40s %14s %14s %14s %8s", "targets", "stackrun cold", "stackrun warm", "parallel-scp", "ratio")
	for _, r := range rows {
		t.Logf("%-40s %14s %14s %14s %7.2fx", r.what, r.stackrun.Round(time.Millisecond), r.stackrunWarmSecond.Round(time.Millisecond),
			r.pscp.Round(time.Millisecond), float64(r.stackrun)/float64(r.pscp))
	}
}
