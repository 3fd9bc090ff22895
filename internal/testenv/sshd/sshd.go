// Package sshd starts a real OpenSSH server for tests.
//
// Start writes an sshd_config into a temporary directory, generates an ed25519
// host key and an ed25519 user key (in Go, no ssh-keygen needed), authorizes the
// user key for the current user, runs `/usr/sbin/sshd -D -e -f <config>` on a
// loopback address and a free port, waits until the server answers with its SSH
// banner and writes a known_hosts file for it. The server is stopped (with every
// per-connection child process) on t.Cleanup.
//
//	srv := sshd.Start(t, sshd.WithLoopback("127.0.0.5"))
//	// srv.Addr(), srv.KnownHostsFile, srv.UserKeyFile, srv.User ...
//
// The test binary must be able to run sshd: as root (the usual case in CI
// containers) sshd needs /run/sshd, which Start creates. If openssh-server is
// missing the test fails (it does not skip): run `make deps`.
package sshd

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Binary is the sshd executable Start runs.
const Binary = "/usr/sbin/sshd"

// MissingMessage is the failure message when Binary does not exist.
const MissingMessage = "openssh-server is not installed: run `make deps` (apt-get install openssh-server)"

// Server is a running sshd.
type Server struct {
	// Dir is the temporary directory holding the config, keys and logs.
	Dir string
	// IP is the loopback address sshd listens on, Port its TCP port.
	IP   string
	Port int
	// User is the login name of the current user (the one authorized).
	User string
	// HostKey is the server's public host key, HostSigner its private key.
	HostKey    ssh.PublicKey
	HostSigner ssh.Signer
	// UserKeyFile is an unencrypted OpenSSH private key authorized for User;
	// UserSigner is the same key.
	UserKeyFile string
	UserSigner  ssh.Signer
	// KnownHostsFile lists HostKey for Addr().
	KnownHostsFile string
	// ConfigFile is the sshd_config, LogFile sshd's stderr.
	ConfigFile string
	LogFile    string

	t     testing.TB
	extra []string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

type options struct {
	ip       string
	extra    []string
	authKeys []ssh.PublicKey
}

// Option configures Start.
type Option func(*options)

// WithLoopback makes sshd listen on ip (a 127.0.0.0/8 address, e.g.
// "127.0.0.7"); the default is 127.0.0.1. Distinct addresses let one test run
// several servers that look like distinct hosts.
func WithLoopback(ip string) Option { return func(o *options) { o.ip = ip } }

// WithConfig appends sshd_config lines (later lines do not override earlier
// ones in sshd_config, so only use it for keywords Start does not set, or
// Match blocks).
func WithConfig(lines ...string) Option {
	return func(o *options) { o.extra = append(o.extra, lines...) }
}

// WithAuthorizedKeys authorizes more public keys (in addition to UserSigner's).
func WithAuthorizedKeys(keys ...ssh.PublicKey) Option {
	return func(o *options) { o.authKeys = append(o.authKeys, keys...) }
}

// Start starts sshd and registers its shutdown with t.Cleanup.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	if _, err := os.Stat(Binary); err != nil {
		t.Fatal(MissingMessage)
	}
	o := options{ip: "127.0.0.1"}
	for _, opt := range opts {
		opt(&o)
	}
	if ip := net.ParseIP(o.ip); ip == nil || !ip.IsLoopback() {
		t.Fatalf("sshd: %q is not a loopback address", o.ip)
	}
	if os.Geteuid() == 0 {
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			t.Fatalf("sshd: create privilege separation directory: %v", err)
		}
	}
	u, err := user.Current()
	if err != nil {
		t.Fatalf("sshd: current user: %v", err)
	}
	dir := t.TempDir()
	s := &Server{
		Dir:            dir,
		IP:             o.ip,
		User:           u.Username,
		UserKeyFile:    filepath.Join(dir, "id_ed25519"),
		KnownHostsFile: filepath.Join(dir, "known_hosts"),
		ConfigFile:     filepath.Join(dir, "sshd_config"),
		LogFile:        filepath.Join(dir, "sshd.log"),
		t:              t,
		extra:          o.extra,
	}
	hostKeyFile := filepath.Join(dir, "ssh_host_ed25519_key")
	s.HostSigner = mustWriteKey(t, hostKeyFile)
	s.HostKey = s.HostSigner.PublicKey()
	s.UserSigner = mustWriteKey(t, s.UserKeyFile)

	var ak bytes.Buffer
	ak.Write(ssh.MarshalAuthorizedKey(s.UserSigner.PublicKey()))
	for _, k := range o.authKeys {
		ak.Write(ssh.MarshalAuthorizedKey(k))
	}
	writeFile(t, filepath.Join(dir, "authorized_keys"), ak.Bytes(), 0o600)

	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		s.Port = freePort(t, s.IP)
		s.writeConfig(hostKeyFile)
		if lastErr = s.start(); lastErr == nil {
			break
		}
	}
	if lastErr != nil {
		t.Fatalf("sshd: %v\n%s", lastErr, s.Log())
	}
	writeFile(t, s.KnownHostsFile, []byte(knownhosts.Line([]string{s.Addr()}, s.HostKey)+"\n"), 0o600)
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("sshd %s log:\n%s", s.Addr(), s.Log())
		}
	})
	return s
}

// Addr is "ip:port".
func (s *Server) Addr() string { return net.JoinHostPort(s.IP, strconv.Itoa(s.Port)) }

// KnownHostsLine is the known_hosts line for this server's address and key.
func (s *Server) KnownHostsLine() string { return knownhosts.Line([]string{s.Addr()}, s.HostKey) }

// Log returns what sshd wrote to stderr so far.
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.LogFile)
	return string(b)
}

// Stop stops sshd and every connection it serves (like a host going down).
// It is safe to call more than once.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	// Per-connection sshd processes call setsid(), so neither the process
	// group nor the listener's death reaches them: find them first (before
	// they are reparented), then kill the listener and them.
	pid := s.cmd.Process.Pid
	children := descendants(pid)
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	for _, c := range children {
		_ = syscall.Kill(c, syscall.SIGTERM)
	}
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-s.done
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, c := range children {
		for alive(c) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if alive(c) {
			_ = syscall.Kill(c, syscall.SIGKILL)
		}
	}
	s.cmd = nil
}

// descendants lists the pids of every descendant of pid (from /proc).
func descendants(pid int) []int {
	entries, _ := os.ReadDir("/proc")
	kids := map[int][]int{}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may contain spaces, so cut at the last ')'.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 2 {
			continue
		}
		if pp, err := strconv.Atoi(f[1]); err == nil {
			kids[pp] = append(kids[pp], p)
		}
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, k := range kids[p] {
			out = append(out, k)
			queue = append(queue, k)
		}
	}
	return out
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i >= 0 && !bytes.HasPrefix(bytes.TrimSpace(b[i+1:]), []byte("Z"))
}

// Restart stops sshd and starts it again on the same address, port and keys.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	var err error
	for attempt := 0; attempt < 50; attempt++ { // the port may linger briefly
		if err = s.start(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatalf("sshd: restart: %v\n%s", err, s.Log())
}

func (s *Server) writeConfig(hostKeyFile string) {
	// Sessions get an empty home: the machine's root .bashrc (pyenv init) is not a host's, and a
	// stale pyenv rehash lock stalled every command 60 s and wrote into its output.
	home := filepath.Join(s.Dir, "home")
	if err := os.MkdirAll(home, 0o755); err != nil {
		s.t.Fatalf("sshd: %v", err)
	}
	cfg := []string{
		"SetEnv HOME=" + home,
		"# written by internal/testenv/sshd",
		"ListenAddress " + s.Addr(),
		"HostKey " + hostKeyFile,
		"PidFile " + filepath.Join(s.Dir, "sshd.pid"),
		"AuthorizedKeysFile " + filepath.Join(s.Dir, "authorized_keys"),
		"UsePAM no",
		"StrictModes no",
		"PubkeyAuthentication yes",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"PermitRootLogin prohibit-password",
		"Subsystem sftp internal-sftp",
		"MaxStartups 200:30:400",
		"MaxSessions 64",
		"UseDNS no",
		"PrintMotd no",
		"PrintLastLog no",
		"X11Forwarding no",
		"LogLevel VERBOSE",
	}
	// Extra lines first: for most keywords sshd uses the first value it reads.
	lines := append(append([]string{}, s.extra...), cfg...)
	if !hasKeyword(s.extra, "AllowTcpForwarding") {
		lines = append(lines, "AllowTcpForwarding yes")
	}
	// Match blocks must come last.
	var plain, match []string
	inMatch := false
	for _, l := range lines {
		if strings.HasPrefix(strings.ToLower(strings.TrimSpace(l)), "match ") {
			inMatch = true
		}
		if inMatch {
			match = append(match, l)
		} else {
			plain = append(plain, l)
		}
	}
	writeFile(s.t, s.ConfigFile, []byte(strings.Join(append(plain, match...), "\n")+"\n"), 0o600)
}

func hasKeyword(lines []string, kw string) bool {
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) > 0 && strings.EqualFold(f[0], kw) {
			return true
		}
	}
	return false
}

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	logf, err := os.OpenFile(s.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(Binary, "-D", "-e", "-f", s.ConfigFile)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", Binary, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(done)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if bannerOK(s.Addr()) {
			s.cmd, s.done = cmd, done
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("sshd exited early (%s)", cmd.ProcessState)
		default:
		}
		if time.Now().After(deadline) {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
			return fmt.Errorf("sshd did not answer on %s within 10s", s.Addr())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// bannerOK reports whether an SSH server answers on addr.
func bannerOK(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "SSH-2.0-")
}

func freePort(t testing.TB, ip string) int {
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatalf("sshd: find a free port on %s: %v", ip, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// NewKey returns a fresh ed25519 signer (for agents, "wrong key" tests, or a
// host key that does not match the known_hosts file).
func NewKey(t testing.TB) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// WriteKey writes a fresh unencrypted ed25519 OpenSSH private key to path
// (mode 0600) and returns it.
func WriteKey(t testing.TB, path string) ssh.Signer { t.Helper(); return mustWriteKey(t, path) }

func mustWriteKey(t testing.TB, path string) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "stackrun-test")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, pem.EncodeToMemory(block), 0o600)
	writeFile(t, path+".pub", ssh.MarshalAuthorizedKey(mustSigner(t, priv).PublicKey()), 0o644)
	return mustSigner(t, priv)
}

func mustSigner(t testing.TB, priv ed25519.PrivateKey) ssh.Signer {
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func writeFile(t testing.TB, path string, b []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, b, mode); err != nil {
		t.Fatal(err)
	}
}
