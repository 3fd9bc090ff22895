package remote_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/stackrun/stackrun/internal/infra/remote"
	"github.com/stackrun/stackrun/internal/testenv/sshd"
)

// testCommands extends the default catalogue with commands the tests need.
var testCommands = map[string][]string{
	"sleep": {"sleep", "{seconds}"},
	"zeros": {"head", "-c", "{count}", "/dev/zero"},
}

func catalogue(t testing.TB) *remote.Catalogue {
	cat, err := remote.NewCatalogue(nil, testCommands, nil)
	require.NoError(t, err)
	return cat
}

func build(t testing.TB, name string, args map[string]string) remote.Command {
	cmd, err := catalogue(t).Build(name, "", args)
	require.NoError(t, err)
	return cmd
}

func hostOf(name string, s *sshd.Server) remote.Host {
	return remote.Host{Name: name, Address: s.IP, Port: s.Port}
}

// dialCounter is an Options.DialContext that records every address dialed.
type dialCounter struct {
	mu    sync.Mutex
	addrs []string
}

func (d *dialCounter) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	d.mu.Lock()
	d.addrs = append(d.addrs, addr)
	d.mu.Unlock()
	var nd net.Dialer
	return nd.DialContext(ctx, network, addr)
}

func (d *dialCounter) dialed() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.addrs...)
}

func newPool(t testing.TB, s *sshd.Server, edit func(*remote.Options)) *remote.Pool {
	t.Helper()
	opts := remote.Options{
		User:           s.User,
		KeyFile:        s.UserKeyFile,
		KnownHostsFile: s.KnownHostsFile,
		ConnectTimeout: 5 * time.Second,
		CommandTimeout: 20 * time.Second,
		LockDir:        t.TempDir(),
	}
	if edit != nil {
		edit(&opts)
	}
	p, err := remote.NewPool(opts)
	require.NoError(t, err)
	t.Cleanup(func() { p.Close() })
	return p
}

func writeKnownHosts(t testing.TB, lines ...string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "known_hosts")
	require.NoError(t, os.WriteFile(f, []byte(strings.Join(lines, "\n")+"\n"), 0o600))
	return f
}

func TestRunCommand(t *testing.T) {
	srv := sshd.Start(t, sshd.WithLoopback("127.0.0.11"))
	p := newPool(t, srv, nil)
	h := hostOf("compute1", srv)

	res, err := p.Run(context.Background(), h, build(t, "uptime", nil))
	require.NoError(t, err)
	assert.Equal(t, 0, res.ExitCode)
	assert.True(t, res.OK())
	assert.Equal(t, "compute1", res.Host)
	assert.Equal(t, []string{"cat", "/proc/uptime"}, res.Command)
	assert.Regexp(t, `^[0-9.]+ [0-9.]+\n$`, res.Stdout)
	assert.Empty(t, res.Stderr)
	assert.False(t, res.Truncated)
	assert.Greater(t, res.Duration, time.Duration(0))

	// Arguments reach the program verbatim: the remote shell interprets
	// nothing (this Command bypasses the catalogue on purpose).
	hostile := []string{"a;b", "$(id)", "`id`", "it's", "two words", "x\ny", `"\$HOME"`, "*", "--"}
	res, err = p.Run(context.Background(), h, remote.Command{Name: "printf", Argv: append([]string{"printf", `%s\000`}, hostile...)})
	require.NoError(t, err)
	assert.Equal(t, strings.Join(hostile, "\x00")+"\x00", res.Stdout)
}

func TestRunNonZeroExit(t *testing.T) {
	srv := sshd.Start(t, sshd.WithLoopback("127.0.0.12"))
	p := newPool(t, srv, nil)
	h := hostOf("compute1", srv)

	res, err := p.Run(context.Background(), h, build(t, "list_dir", map[string]string{"path": "/nonexistent/dir"}))
	require.NoError(t, err, "a non-zero exit is a result, not an error")
	assert.Equal(t, 2, res.ExitCode)
	assert.False(t, res.OK())
	assert.Contains(t, res.Stderr, "No such file")

	res, err = p.Run(context.Background(), h, remote.Command{Name: "exit3", Argv: []string{"sh", "-c", "echo out; echo err >&2; exit 3"}})
	require.NoError(t, err)
	assert.Equal(t, 3, res.ExitCode)
	assert.Equal(t, "out\n", res.Stdout)
	assert.Equal(t, "err\n", res.Stderr)

	res, err = p.Run(context.Background(), h, remote.Command{Name: "selfkill", Argv: []string{"sh", "-c", "kill -TERM $$"}})
	require.NoError(t, err)
	assert.Equal(t, 128+15, res.ExitCode)
}

func TestUnknownHostKeyRefused(t *testing.T) {
	srv := sshd.Start(t, sshd.WithLoopback("127.0.0.13"))
	other := sshd.NewKey(t).PublicKey()
	// known_hosts knows another host, not this one.
	kh := writeKnownHosts(t, "[127.0.0.99]:22 "+strings.TrimSpace(string(ssh.MarshalAuthorizedKey(other))))
	p := newPool(t, srv, func(o *remote.Options) { o.KnownHostsFile = kh })

	_, err := p.Run(context.Background(), hostOf("compute1", srv), build(t, "uptime", nil))
	require.Error(t, err)
	assert.ErrorIs(t, err, remote.ErrHostKeyUnknown)
	assert.NotErrorIs(t, err, remote.ErrHostKeyMismatch)
	assert.False(t, remote.Retryable(err))
	assert.Equal(t, remote.TypeHostKeyUnknown, remote.ErrorType(err))
	msg := err.Error()
	assert.Contains(t, msg, "compute1")
	assert.Contains(t, msg, srv.Addr())
	assert.Contains(t, msg, ssh.FingerprintSHA256(srv.HostKey))
	assert.Contains(t, msg, "unknown")
	var hk *remote.HostKeyError
	require.ErrorAs(t, err, &hk)
	assert.Equal(t, "ssh-ed25519", hk.KeyType)
	assert.Equal(t, 0, p.Stats().Open)
}

func TestChangedHostKeyRefused(t *testing.T) {
	srv := sshd.Start(t, sshd.WithLoopback("127.0.0.14"))
	old := sshd.NewKey(t).PublicKey()
	kh := writeKnownHosts(t, "["+srv.IP+"]:"+strconv.Itoa(srv.Port)+" "+strings.TrimSpace(string(ssh.MarshalAuthorizedKey(old))))
	p := newPool(t, srv, func(o *remote.Options) { o.KnownHostsFile = kh })

	_, err := p.Run(context.Background(), hostOf("compute1", srv), build(t, "uptime", nil))
	require.Error(t, err)
	assert.ErrorIs(t, err, remote.ErrHostKeyMismatch)
	assert.False(t, remote.Retryable(err))
	msg := err.Error()
	assert.Contains(t, msg, "CHANGED")
	assert.Contains(t, msg, "compute1")
	assert.Contains(t, msg, srv.Addr())
	assert.Contains(t, msg, ssh.FingerprintSHA256(srv.HostKey), "offered key")
	assert.Contains(t, msg, ssh.FingerprintSHA256(old), "known key")
	assert.Contains(t, msg, kh+":1")

	// known_hosts has only an ECDSA key; the host offers only ed25519: still
	// a mismatch that names the offered key, not an obscure handshake error.
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	epub, err := ssh.NewPublicKey(&ek.PublicKey)
	require.NoError(t, err)
	kh2 := writeKnownHosts(t, "["+srv.IP+"]:"+strconv.Itoa(srv.Port)+" "+strings.TrimSpace(string(ssh.MarshalAuthorizedKey(epub))))
	p2 := newPool(t, srv, func(o *remote.Options) { o.KnownHostsFile = kh2 })
	_, err = p2.Run(context.Background(), hostOf("compute1", srv), build(t, "uptime", nil))
	require.ErrorIs(t, err, remote.ErrHostKeyMismatch)
	assert.Contains(t, err.Error(), ssh.FingerprintSHA256(srv.HostKey))
	assert.Contains(t, err.Error(), "ecdsa-sha2-nistp256")
	assert.False(t, strings.HasPrefix(err.Error(), "ssh:"), err.Error())
}

func TestWrongUserKeyRefused(t *testing.T) {
	srv := sshd.Start(t, sshd.WithLoopback("127.0.0.15"))
	wrong := filepath.Join(t.TempDir(), "id_wrong")
	sshd.WriteKey(t, wrong)
	p := newPool(t, srv, func(o *remote.Options) { o.KeyFile = wrong })

	_, err := p.Run(context.Background(), hostOf("compute1", srv), build(t, "uptime", nil))
	require.Error(t, err)
	assert.ErrorIs(t, err, remote.ErrAuth)
	assert.False(t, remote.Retryable(err))
	assert.Contains(t, err.Error(), "compute1")
}

// TestHostileArgumentsRefusedBeforeConnecting proves validation happens before
// any dial: the pool points at an address where nothing listens and counts
// dials; hostile values fail with ErrInvalidArgument and zero dials, and one
// valid command afterwards does dial (and fails with ErrConnect).
func TestHostileArgumentsRefusedBeforeConnecting(t *testing.T) {
	kh := writeKnownHosts(t, "# empty")
	key := filepath.Join(t.TempDir(), "id")
	sshd.WriteKey(t, key)
	dc := &dialCounter{}
	p, err := remote.NewPool(remote.Options{User: "root", KeyFile: key, KnownHostsFile: kh, DialContext: dc.dial, ConnectTimeout: 2 * time.Second})
	require.NoError(t, err)
	defer p.Close()
	nowhere := remote.Host{Name: "nowhere", Address: "127.0.0.1", Port: 1}
	cat := catalogue(t)

	// buildAndRun is what an activity does.
	buildAndRun := func(name string, args map[string]string, list ...string) error {
		cmd, err := cat.Build(name, "", args, list...)
		if err != nil {
			return err
		}
		_, err = p.Run(context.Background(), nowhere, cmd)
		return err
	}
	hostile := map[string]string{
		"semicolon": "nova; reboot", "subst": "$(reboot)", "backtick": "`reboot`", "dotdot": "../etc",
		"newline": "nova\nreboot", "space": "nova compute", "long": strings.Repeat("a", 300), "nul": "nova\x00",
		"option": "--now", "pipe": "a|b", "amp": "a&&b", "glob": "nova*",
	}
	for what, v := range hostile {
		err := buildAndRun("service_stop", map[string]string{"service": v})
		assert.ErrorIs(t, err, remote.ErrInvalidArgument, what)
		if what == "option" || what == "long" {
			continue // fine inside a path ("/var/log/--now"); over-long paths are checked below
		}
		err = buildAndRun("log_tail", map[string]string{"lines": "10", "log": "/var/log/" + v})
		assert.ErrorIs(t, err, remote.ErrInvalidArgument, what)
		err = buildAndRun("md5sum", nil, "/etc/swift/object.ring.gz", "/srv/"+v)
		assert.ErrorIs(t, err, remote.ErrInvalidArgument, what)
		_, err = p.CopyFile(context.Background(), nowhere, strings.NewReader("x"), "/etc/swift/"+v, 0o644)
		assert.ErrorIs(t, err, remote.ErrInvalidArgument, what)
		_, err = p.Checksum(context.Background(), nowhere, "/tmp/../"+v)
		assert.ErrorIs(t, err, remote.ErrInvalidArgument, what)
	}
	err = buildAndRun("log_tail", map[string]string{"lines": "10", "log": "/var/log/nova/../../../etc/shadow"})
	assert.ErrorIs(t, err, remote.ErrInvalidArgument)
	err = buildAndRun("umount", map[string]string{"path": "/" + strings.Repeat("x/", 2100) + "y"})
	assert.ErrorIs(t, err, remote.ErrInvalidArgument)
	// Run itself refuses what cannot be sent.
	_, err = p.Run(context.Background(), nowhere, remote.Command{Name: "nul", Argv: []string{"echo", "a\x00b"}})
	assert.ErrorIs(t, err, remote.ErrInvalidArgument)
	_, err = p.Run(context.Background(), nowhere, remote.Command{Name: "empty"})
	assert.ErrorIs(t, err, remote.ErrInvalidArgument)

	assert.Empty(t, dc.dialed(), "no connection may be attempted for invalid arguments")
	assert.Equal(t, int64(0), p.Stats().Dials)

	// Control: a valid command does try to connect.
	err = buildAndRun("service_stop", map[string]string{"service": "nova-compute"})
	assert.ErrorIs(t, err, remote.ErrConnect)
	assert.True(t, remote.Retryable(err))
	assert.Equal(t, []string{"127.0.0.1:1"}, dc.dialed())
}

func TestCommandTimeout(t *testing.T) {
	srv := sshd.Start(t, sshd.WithLoopback("127.0.0.16"))
	p := newPool(t, srv, func(o *remote.Options) { o.CommandTimeout = time.Second })
	h := hostOf("compute1", srv)

	start := time.Now()
	res, err := p.Run(context.Background(), h, build(t, "sleep", map[string]string{"seconds": "5"}))
	elapsed := time.Since(start)
	require.Error(t, err)
	assert.ErrorIs(t, err, remote.ErrTimeout)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.True(t, remote.Retryable(err))
	// The host's deadline (deadline.go) ends it a margin before ours.
	assert.Less(t, elapsed, 3500*time.Millisecond)
	assert.GreaterOrEqual(t, elapsed, 100*time.Millisecond)
	assert.Equal(t, "compute1", res.Host)

	// The caller's context counts too.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = p.Run(ctx, h, build(t, "sleep", map[string]string{"seconds": "5"}))
	assert.ErrorIs(t, err, remote.ErrTimeout)

	// A session our own timeout ended may live on at the server until the host's deadline (sshd
	// does not signal root sessions), so its connection is retired; a command the host's deadline
	// ended keeps it. Either way the next commands work, on at most one new connection each.
	res, err = p.Run(context.Background(), h, build(t, "uptime", nil))
	require.NoError(t, err)
	assert.Equal(t, 0, res.ExitCode)
	dials := p.Stats().Dials
	assert.LessOrEqual(t, dials, int64(3))
	res, err = p.Run(context.Background(), h, build(t, "uptime", nil))
	require.NoError(t, err)
	assert.Equal(t, dials, p.Stats().Dials, "a healthy connection is reused")

	// Without the host's deadline, every timed-out session retires its connection.
	old := newPool(t, srv, func(o *remote.Options) { o.CommandTimeout = time.Second; o.NoRemoteDeadline = true })
	start = time.Now()
	_, err = old.Run(context.Background(), h, build(t, "sleep", map[string]string{"seconds": "5"}))
	assert.ErrorIs(t, err, remote.ErrTimeout)
	assert.GreaterOrEqual(t, time.Since(start), time.Second)
	_, err = old.Run(context.Background(), h, build(t, "uptime", nil))
	require.NoError(t, err)
	assert.Equal(t, int64(2), old.Stats().Dials)
}

func TestConnectTimeout(t *testing.T) {
	// A listener that accepts and never speaks: the handshake must give up.
	l, err := net.Listen("tcp", "127.0.0.17:0")
	require.NoError(t, err)
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	key := filepath.Join(t.TempDir(), "id")
	sshd.WriteKey(t, key)
	p, err := remote.NewPool(remote.Options{User: "root", KeyFile: key, KnownHostsFile: writeKnownHosts(t, "# empty"), ConnectTimeout: 500 * time.Millisecond})
	require.NoError(t, err)
	defer p.Close()
	a := l.Addr().(*net.TCPAddr)
	start := time.Now()
	_, err = p.Run(context.Background(), remote.Host{Name: "mute", Address: a.IP.String(), Port: a.Port}, build(t, "uptime", nil))
	assert.ErrorIs(t, err, remote.ErrConnect)
	assert.Contains(t, err.Error(), "timed out")
	assert.Less(t, time.Since(start), 2*time.Second)
}

func TestOutputCap(t *testing.T) {
	srv := sshd.Start(t, sshd.WithLoopback("127.0.0.18"))
	p := newPool(t, srv, func(o *remote.Options) { o.MaxOutputBytes = 1000 })
	h := hostOf("compute1", srv)

	res, err := p.Run(context.Background(), h, build(t, "zeros", map[string]string{"count": "5000000"}))
	require.NoError(t, err)
	assert.Equal(t, 0, res.ExitCode, "the command runs to the end; extra output is discarded")
	assert.Len(t, res.Stdout, 1000)
	assert.True(t, res.Truncated)

	res, err = p.Run(context.Background(), h, remote.Command{Name: "err", Argv: []string{"sh", "-c", "head -c 3000 /dev/zero >&2; echo ok"}})
	require.NoError(t, err)
	assert.Len(t, res.Stderr, 1000)
	assert.Equal(t, "ok\n", res.Stdout)
	assert.True(t, res.Truncated)

	res, err = p.Run(context.Background(), h, build(t, "zeros", map[string]string{"count": "1000"}))
	require.NoError(t, err)
	assert.Len(t, res.Stdout, 1000)
	assert.False(t, res.Truncated, "exactly the limit is not truncated")
}

func TestConnectionReuse(t *testing.T) {
	srv := sshd.Start(t, sshd.WithLoopback("127.0.0.19"))
	dc := &dialCounter{}
	p := newPool(t, srv, func(o *remote.Options) { o.DialContext = dc.dial })
	h := hostOf("compute1", srv)

	for i := 0; i < 2; i++ {
		_, err := p.Run(context.Background(), h, build(t, "uptime", nil))
		require.NoError(t, err)
	}
	assert.Equal(t, int64(1), p.Stats().Dials)
	assert.Len(t, dc.dialed(), 1)

	// Many concurrent commands (more than MaxSessionsPerHost and sshd's
	// MaxSessions default) share the one connection.
	var wg sync.WaitGroup
	var failed atomic.Int32
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if res, err := p.Run(context.Background(), h, build(t, "uptime", nil)); err != nil || res.ExitCode != 0 {
				t.Log(err)
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	assert.Zero(t, failed.Load())
	st := p.Stats()
	assert.Equal(t, int64(1), st.Dials)
	assert.Equal(t, int64(1), st.Connects)
	assert.Equal(t, 1, st.Open)
}

func TestReconnectAfterServerRestart(t *testing.T) {
	srv := sshd.Start(t, sshd.WithLoopback("127.0.0.20"))
	p := newPool(t, srv, nil)
	h := hostOf("compute1", srv)

	_, err := p.Run(context.Background(), h, build(t, "uptime", nil))
	require.NoError(t, err)

	srv.Restart() // kills sshd and its connection children, like a reboot
	res, err := p.Run(context.Background(), h, build(t, "uptime", nil))
	require.NoError(t, err)
	assert.Equal(t, 0, res.ExitCode)
	st := p.Stats()
	assert.Equal(t, int64(2), st.Dials)
	assert.Equal(t, int64(1), st.Reconnects)

	// And SFTP on the new connection.
	_, err = p.Checksum(context.Background(), h, srv.ConfigFile)
	require.NoError(t, err)
	srv.Restart()
	_, err = p.Checksum(context.Background(), h, srv.ConfigFile)
	require.NoError(t, err)
	assert.Equal(t, int64(3), p.Stats().Dials)

	// With a keepalive probe before every reuse, the dead connection is
	// noticed before a session is tried.
	pk := newPool(t, srv, func(o *remote.Options) { o.KeepAliveIdle = time.Nanosecond })
	_, err = pk.Run(context.Background(), h, build(t, "uptime", nil))
	require.NoError(t, err)
	_, err = pk.Run(context.Background(), h, build(t, "uptime", nil))
	require.NoError(t, err)
	assert.Equal(t, int64(0), pk.Stats().Reconnects, "a live connection answers the probe")
	srv.Restart()
	_, err = pk.Run(context.Background(), h, build(t, "uptime", nil))
	require.NoError(t, err)
	assert.Equal(t, int64(1), pk.Stats().Reconnects)
	assert.Equal(t, int64(2), pk.Stats().Dials)

	// While the server is down: a retryable connect error.
	srv.Stop()
	_, err = p.Run(context.Background(), h, build(t, "uptime", nil))
	assert.ErrorIs(t, err, remote.ErrConnect)
	assert.True(t, remote.Retryable(err))
}

func TestJumpHost(t *testing.T) {
	jump := sshd.Start(t, sshd.WithLoopback("127.0.0.21"))
	// The target trusts the same user key as the jump host.
	target := sshd.Start(t, sshd.WithLoopback("127.0.0.22"), sshd.WithAuthorizedKeys(jump.UserSigner.PublicKey()))
	kh := writeKnownHosts(t, jump.KnownHostsLine(), target.KnownHostsLine())
	jh := hostOf("bastion", jump)
	dc := &dialCounter{}
	p := newPool(t, jump, func(o *remote.Options) {
		o.KnownHostsFile, o.Jump, o.DialContext = kh, &jh, dc.dial
	})
	th := hostOf("compute1", target)

	for i := 0; i < 2; i++ {
		res, err := p.Run(context.Background(), th, build(t, "uptime", nil))
		require.NoError(t, err)
		assert.Equal(t, 0, res.ExitCode)
	}
	// Only the jump host was dialed over TCP; the target through it.
	assert.Equal(t, []string{jump.Addr()}, dc.dialed())
	assert.Equal(t, int64(2), p.Stats().Connects)
	assert.Contains(t, target.Log(), "Accepted publickey")
	sum, err := p.Checksum(context.Background(), th, target.ConfigFile)
	require.NoError(t, err)
	assert.NotEmpty(t, sum.MD5)

	t.Run("target key verified", func(t *testing.T) {
		p := newPool(t, jump, func(o *remote.Options) { o.KnownHostsFile, o.Jump = writeKnownHosts(t, jump.KnownHostsLine()), &jh })
		_, err := p.Run(context.Background(), th, build(t, "uptime", nil))
		assert.ErrorIs(t, err, remote.ErrHostKeyUnknown)
		assert.Contains(t, err.Error(), "compute1")
		assert.Contains(t, err.Error(), ssh.FingerprintSHA256(target.HostKey))
	})
	t.Run("jump key verified", func(t *testing.T) {
		p := newPool(t, jump, func(o *remote.Options) { o.KnownHostsFile, o.Jump = writeKnownHosts(t, target.KnownHostsLine()), &jh })
		_, err := p.Run(context.Background(), th, build(t, "uptime", nil))
		assert.ErrorIs(t, err, remote.ErrHostKeyUnknown)
		assert.Contains(t, err.Error(), "bastion")
		assert.Contains(t, err.Error(), ssh.FingerprintSHA256(jump.HostKey))
	})
	t.Run("path goes through the jump host", func(t *testing.T) {
		// A jump host that refuses forwarding: the target cannot be reached.
		closed := sshd.Start(t, sshd.WithLoopback("127.0.0.23"), sshd.WithConfig("AllowTcpForwarding no"))
		ch := hostOf("closed-bastion", closed)
		p := newPool(t, closed, func(o *remote.Options) {
			o.KnownHostsFile, o.Jump = writeKnownHosts(t, closed.KnownHostsLine(), target.KnownHostsLine()), &ch
		})
		_, err := p.Run(context.Background(), th, build(t, "uptime", nil))
		assert.ErrorIs(t, err, remote.ErrConnect)
		assert.Contains(t, err.Error(), "closed-bastion")
	})
}

func TestSFTPCopyChecksumAtomicRename(t *testing.T) {
	srv := sshd.Start(t, sshd.WithLoopback("127.0.0.24"))
	p := newPool(t, srv, nil)
	h := hostOf("storage1", srv)
	ctx := context.Background()
	dir := filepath.Join(srv.Dir, "etc-swift") // same machine: check the result on disk
	require.NoError(t, os.Mkdir(dir, 0o755))
	dst := filepath.Join(dir, "object.ring.gz")

	data := make([]byte, 3<<20+17)
	_, _ = rand.Read(data)
	sum, err := p.CopyFile(ctx, h, bytes.NewReader(data), dst, 0o640)
	require.NoError(t, err)
	m, s := md5.Sum(data), sha256.Sum256(data)
	assert.Equal(t, remote.FileSum{Size: int64(len(data)), MD5: hex.EncodeToString(m[:]), SHA256: hex.EncodeToString(s[:])}, sum)
	got, err := os.ReadFile(dst)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(data, got))
	fi, err := os.Stat(dst)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o640), fi.Mode().Perm())
	inode := fi.Sys().(*syscall.Stat_t).Ino

	remoteSum, err := p.Checksum(ctx, h, dst)
	require.NoError(t, err)
	assert.Equal(t, sum, remoteSum)
	back, err := p.ReadFile(ctx, h, dst, 0)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(data, back))
	_, err = p.ReadFile(ctx, h, dst, 1024)
	assert.ErrorContains(t, err, "limit")

	// Overwrite: a new file is renamed over the old one (new inode), so
	// readers see the old or the new ring, never a partial one.
	local := filepath.Join(t.TempDir(), "new.ring.gz")
	require.NoError(t, os.WriteFile(local, []byte("new ring"), 0o600))
	sum2, err := p.CopyLocalFile(ctx, h, local, dst, 0o644)
	require.NoError(t, err)
	assert.Equal(t, int64(8), sum2.Size)
	got, _ = os.ReadFile(dst)
	assert.Equal(t, "new ring", string(got))
	fi, _ = os.Stat(dst)
	assert.NotEqual(t, inode, fi.Sys().(*syscall.Stat_t).Ino, "replaced by rename, not rewritten in place")

	// A cancelled copy leaves the target alone and no temporary file behind.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = p.CopyFile(cctx, h, bytes.NewReader(data), dst, 0o644)
	assert.Error(t, err)
	got, _ = os.ReadFile(dst)
	assert.Equal(t, "new ring", string(got))
	entries, _ := os.ReadDir(dir)
	require.Len(t, entries, 1, "temporary files must not be left behind")
	assert.Equal(t, "object.ring.gz", entries[0].Name())

	// Errors: missing file, missing directory.
	_, err = p.Checksum(ctx, h, filepath.Join(dir, "missing.ring.gz"))
	assert.ErrorIs(t, err, fs.ErrNotExist)
	_, err = p.CopyFile(ctx, h, strings.NewReader("x"), filepath.Join(dir, "nodir", "f"), 0o644)
	assert.Error(t, err)
	assert.Equal(t, int64(1), p.Stats().Dials, "SFTP uses the pooled connection")
}

func TestAgentAuth(t *testing.T) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	pub, err := ssh.NewPublicKey(priv.Public())
	require.NoError(t, err)
	srv := sshd.Start(t, sshd.WithLoopback("127.0.0.25"), sshd.WithAuthorizedKeys(pub))

	keyring := agent.NewKeyring()
	require.NoError(t, keyring.Add(agent.AddedKey{PrivateKey: priv, Comment: "test"}))
	sock := filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", sock)
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	var served atomic.Int32
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			served.Add(1)
			go func() { defer c.Close(); _ = agent.ServeAgent(keyring, c) }()
		}
	}()
	t.Setenv("SSH_AUTH_SOCK", sock)

	p := newPool(t, srv, func(o *remote.Options) { o.KeyFile, o.UseAgent = "", true })
	res, err := p.Run(context.Background(), hostOf("compute1", srv), build(t, "uptime", nil))
	require.NoError(t, err)
	assert.Equal(t, 0, res.ExitCode)
	assert.Equal(t, int32(1), served.Load())

	// An agent without the right key: authentication fails.
	require.NoError(t, keyring.RemoveAll())
	p2 := newPool(t, srv, func(o *remote.Options) { o.KeyFile, o.UseAgent = "", true })
	_, err = p2.Run(context.Background(), hostOf("compute1", srv), build(t, "uptime", nil))
	assert.ErrorIs(t, err, remote.ErrAuth)
}

func TestNewPoolRequiresKnownHostsAndAuth(t *testing.T) {
	_, err := remote.NewPool(remote.Options{User: "root", KeyFile: "/nonexistent"})
	assert.ErrorContains(t, err, "known_hosts")
	_, err = remote.NewPool(remote.Options{User: "root", KnownHostsFile: writeKnownHosts(t, "# empty")})
	assert.ErrorContains(t, err, "no authentication")
	t.Setenv("SSH_AUTH_SOCK", "")
	_, err = remote.NewPool(remote.Options{User: "root", UseAgent: true, KnownHostsFile: writeKnownHosts(t, "# empty")})
	assert.ErrorContains(t, err, "SSH_AUTH_SOCK")
}

func TestClosedPool(t *testing.T) {
	srv := sshd.Start(t, sshd.WithLoopback("127.0.0.26"))
	p := newPool(t, srv, nil)
	require.NoError(t, p.Close())
	_, err := p.Run(context.Background(), hostOf("compute1", srv), build(t, "uptime", nil))
	assert.ErrorIs(t, err, remote.ErrClosed)
	assert.False(t, remote.Retryable(err))
}
