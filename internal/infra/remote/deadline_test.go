package remote_test

import (
	"context"
	"errors"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stackrun/stackrun/internal/infra/remote"
	"github.com/stackrun/stackrun/internal/testenv/sshd"
)

// The sshd of the tests runs on this machine, so the host's processes are ours to look at. The
// pattern names one test's command only: a sleep of an odd length, so that no other process on
// a shared machine matches (a "sleep 45" in someone's shell was once taken for a survivor).
func hostPIDs(t *testing.T, pattern string) []int {
	t.Helper()
	out, _ := exec.Command("pgrep", "-f", "-x", pattern).Output()
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		if n, err := strconv.Atoi(f); err == nil {
			pids = append(pids, n)
		}
	}
	return pids
}

// killPIDs ends the processes a failed assertion left behind, by their IDs.
func killPIDs(pids []int) {
	for _, p := range pids {
		_ = exec.Command("kill", "-KILL", strconv.Itoa(p)).Run()
	}
}

func waitGone(t *testing.T, pattern string, within time.Duration) bool {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if len(hostPIDs(t, pattern)) == 0 {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// Without the host's deadline a timed-out command lives on at the host (sshd does not signal
// root sessions): the hole. With it (the default) the host kills it at the deadline, and Run
// says so.
func TestTimedOutCommandDoesNotLiveOn(t *testing.T) {
	if _, err := exec.LookPath("pgrep"); err != nil {
		t.Skip("pgrep not installed")
	}
	srv := sshd.Start(t, sshd.WithLoopback("127.0.0.51"))
	h := hostOf("compute1", srv)

	old := newPool(t, srv, func(o *remote.Options) { o.CommandTimeout = time.Second; o.NoRemoteDeadline = true })
	_, err := old.Run(context.Background(), h, build(t, "sleep", map[string]string{"seconds": "4117"}))
	require.ErrorIs(t, err, remote.ErrTimeout)
	pids := hostPIDs(t, "sleep 4117")
	killPIDs(pids)
	if srv.User == "root" {
		require.NotEmpty(t, pids, "without a host deadline the command should have lived on (root session)")
	}

	p := newPool(t, srv, func(o *remote.Options) { o.CommandTimeout = 2 * time.Second })
	start := time.Now()
	res, err := p.Run(context.Background(), h, build(t, "sleep", map[string]string{"seconds": "4217"}))
	require.ErrorIs(t, err, remote.ErrTimeout)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	// On a loaded machine our own timeout may fire just before the host's kill arrives; what
	// must hold either way is that the command does not live on.
	if !strings.Contains(err.Error(), "killed on the host at its deadline") {
		t.Logf("our timeout fired first (%v); the host's deadline must still end the command", err)
	}
	assert.True(t, remote.Retryable(err))
	assert.Less(t, time.Since(start), 4*time.Second)
	assert.Equal(t, []string{"sleep", "4217"}, res.Command, "the result names the command, not its wrapper")
	// The windows below are generous (a loaded 2-core machine starts a session late: 1 s was
	// seen to be too short); a command without the host's deadline would live over an hour.
	if !waitGone(t, "sleep 4217", 10*time.Second) {
		left := hostPIDs(t, "sleep 4217")
		killPIDs(left)
		t.Fatalf("the timed-out command still runs on the host: %v", left)
	}
	// With too little time for the host to start it in, our timeout fires first; the host's
	// deadline still ends the command right after.
	short := newPool(t, srv, func(o *remote.Options) { o.CommandTimeout = 600 * time.Millisecond })
	_, err = short.Run(context.Background(), h, build(t, "sleep", map[string]string{"seconds": "4517"}))
	require.ErrorIs(t, err, remote.ErrTimeout)
	if !waitGone(t, "sleep 4517", 10*time.Second) {
		left := hostPIDs(t, "sleep 4517")
		killPIDs(left)
		t.Fatalf("sleep 4517 outlived its deadline: %v", left)
	}

	// A worker that dies mid-command closes its connection without any signal: the host's
	// deadline still ends the command.
	p2 := newPool(t, srv, func(o *remote.Options) { o.CommandTimeout = 2 * time.Second })
	done := make(chan error, 1)
	go func() {
		_, err := p2.Run(context.Background(), h, build(t, "sleep", map[string]string{"seconds": "4317"}))
		done <- err
	}()
	require.Eventually(t, func() bool { return len(hostPIDs(t, "sleep 4317")) == 1 }, 5*time.Second, 20*time.Millisecond)
	require.NoError(t, p2.Close())
	<-done
	time.Sleep(200 * time.Millisecond)
	require.NotEmpty(t, hostPIDs(t, "sleep 4317"), "the connection is gone, the command is not (yet)")
	if !waitGone(t, "sleep 4317", 10*time.Second) {
		left := hostPIDs(t, "sleep 4317")
		killPIDs(left)
		t.Fatalf("sleep 4317 outlived its deadline: %v", left)
	}
}

// Exit statuses pass through the wrapper unchanged, and a command that dies of SIGKILL before its
// deadline is a result, not a timeout.
func TestExitCodesKeepTheirMeaning(t *testing.T) {
	srv := sshd.Start(t, sshd.WithLoopback("127.0.0.52"))
	p := newPool(t, srv, func(o *remote.Options) { o.CommandTimeout = 10 * time.Second })
	h := hostOf("compute1", srv)
	for _, c := range []struct {
		script string
		code   int
		signal string
	}{
		{"exit 0", 0, ""}, {"exit 7", 7, ""}, {"exit 124", 124, ""}, {"exit 137", 137, ""},
		{"kill -TERM $$", 128 + 15, "TERM"}, {"kill -KILL $$", 128 + 9, "KILL"},
	} {
		res, err := p.Run(context.Background(), h, remote.Command{Name: "sh", Argv: []string{"sh", "-c", c.script}})
		require.NoError(t, err, c.script)
		assert.Equal(t, c.code, res.ExitCode, c.script)
		assert.Equal(t, c.signal, res.Signal, c.script)
	}
}

// A mutating command does not start while a previous one on the same resource still runs (a
// retry after a lost connection); one on another resource, and any read-only command, do.
func TestMutatingCommandWaitsForNoPredecessor(t *testing.T) {
	srv := sshd.Start(t, sshd.WithLoopback("127.0.0.53"))
	p := newPool(t, srv, nil)
	h := hostOf("compute1", srv)
	cat, err := remote.NewCatalogue(nil, map[string][]string{
		// config-added names are mutating; {path} is the resource
		"slow_write": {"sh", "-c", "sleep 2.7", "{path}"},
	}, nil)
	require.NoError(t, err)
	mk := func(path string) remote.Command {
		cmd, err := cat.Build("slow_write", "", map[string]string{"path": path})
		require.NoError(t, err)
		require.Equal(t, "path="+path, cmd.Lock)
		return cmd
	}
	ro, err := cat.Build("ring_show", "", map[string]string{"builder": "/etc/swift/object.builder"})
	require.NoError(t, err)
	require.Empty(t, ro.Lock, "read-only commands take no lock")
	ring, err := cat.Build("ring_rebalance", "", map[string]string{"builder": "/etc/swift/object.builder"})
	require.NoError(t, err)
	require.Equal(t, "builder=/etc/swift/object.builder", ring.Lock)
	on := func(host string) string {
		cmd, err := cat.Build("slow_write", "", map[string]string{"path": "/srv/node/sdb", "host": host})
		require.NoError(t, err)
		return cmd.Lock
	}
	require.Equal(t, "path=/srv/node/sdb host=storage1", on("storage1"))
	require.NotEqual(t, on("storage1"), on("storage2"), "hosts that share a lock directory (the lab) do not lock each other out")

	first := make(chan error, 1)
	go func() {
		_, err := p.Run(context.Background(), h, mk("/srv/node/sdb"))
		first <- err
	}()
	require.Eventually(t, func() bool { return len(hostPIDs(t, "sleep 2.7")) == 1 }, 5*time.Second, 20*time.Millisecond, "the first command runs")
	start := time.Now()
	res, err := p.Run(context.Background(), h, mk("/srv/node/sdb"))
	require.ErrorIs(t, err, remote.ErrBusy)
	assert.Equal(t, remote.TypeBusy, remote.ErrorType(err))
	assert.True(t, remote.Retryable(err))
	assert.Less(t, time.Since(start), time.Second, "refused at once, not after waiting")
	assert.Equal(t, 75, res.ExitCode)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, err := p.Run(context.Background(), h, mk("/srv/node/sdc"))
		assert.NoError(t, err, "another resource is not locked")
	}()
	require.NoError(t, <-first)
	wg.Wait()
	_, err = p.Run(context.Background(), h, mk("/srv/node/sdb"))
	require.NoError(t, err, "free again once the predecessor ended")
	// A command that exits 75 itself, with output, is its own result.
	res, err = p.Run(context.Background(), h, remote.Command{Name: "x", Lock: "path=/x", Argv: []string{"sh", "-c", "echo no; exit 75"}})
	require.NoError(t, err)
	assert.Equal(t, 75, res.ExitCode)
	assert.False(t, errors.Is(err, remote.ErrBusy))
}

// A mutating command that leaves a daemon behind (qemu-storage-daemon --daemonize for
// inspect-disk) releases its lock when it exits: the daemon does not inherit the lock.
func TestLockNotInheritedByDaemon(t *testing.T) {
	srv := sshd.Start(t, sshd.WithLoopback("127.0.0.54"))
	p := newPool(t, srv, nil)
	h := hostOf("compute1", srv)
	cat, err := remote.NewCatalogue(nil, map[string][]string{
		// forks a long sleep into its own session and returns at once, as a daemon does
		"start_daemon": {"setsid", "--fork", "sh", "-c", "exec sleep 6.3 </dev/null >/dev/null 2>&1", "{path}"},
	}, nil)
	require.NoError(t, err)
	cmd, err := cat.Build("start_daemon", "", map[string]string{"path": "/run/x"})
	require.NoError(t, err)
	require.Equal(t, "path=/run/x", cmd.Lock)
	t.Cleanup(func() {
		for _, pid := range hostPIDs(t, "sleep 6.3") {
			_ = exec.Command("kill", strconv.Itoa(pid)).Run()
		}
	})
	_, err = p.Run(context.Background(), h, cmd)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(hostPIDs(t, "sleep 6.3")) == 1 }, 5*time.Second, 20*time.Millisecond, "the daemon runs")
	_, err = p.Run(context.Background(), h, cmd)
	require.NoError(t, err, "the lock went with the command that took it, not with its daemon")
	assert.Len(t, hostPIDs(t, "sleep 6.3"), 2)
}
