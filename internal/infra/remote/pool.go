package remote

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Host is an inventory entry.
type Host struct {
	Name    string // inventory name, used in results and errors
	Address string // IP or DNS name, as written in known_hosts
	Port    int    // 0 means 22
}

// Addr is "address:port", the form checked against known_hosts.
func (h Host) Addr() string {
	port := h.Port
	if port == 0 {
		port = 22
	}
	return net.JoinHostPort(h.Address, strconv.Itoa(port))
}

func (h Host) label() string {
	if h.Name != "" {
		return h.Name
	}
	return h.Address
}

// Options configure a Pool. Zero durations and sizes take the defaults noted.
type Options struct {
	User     string // login user (default: the current user)
	KeyFile  string // unencrypted private key file (~/ is expanded)
	UseAgent bool   // also offer the keys of the ssh-agent at AgentSocket
	// AgentSocket is the agent's unix socket (default: $SSH_AUTH_SOCK).
	AgentSocket string
	// KnownHostsFile is required: every host key (target and jump host) is
	// verified against it; unknown or changed keys are refused.
	KnownHostsFile string
	Jump           *Host  // optional jump host: every target is reached through it
	JumpUser       string // user on the jump host (default: User)

	ConnectTimeout time.Duration // TCP connect + SSH handshake (default 10s)
	CommandTimeout time.Duration // per Run, on top of the caller's context (default 2m)
	// NoRemoteDeadline runs commands without `timeout -s KILL` on the host (hosts without GNU
	// coreutils). Then a timed-out command may live on at the host: see deadline.go.
	NoRemoteDeadline bool
	// LockDir is the directory of the hosts' lock files of mutating commands (default
	// DefaultLockDir); the SSH user must be able to create files there.
	LockDir        string
	MaxOutputBytes int // cap for stdout and for stderr, each (default 1 MiB)
	// MaxSessionsPerHost bounds concurrent Runs on one connection (default 8;
	// OpenSSH's MaxSessions default is 10 and SFTP uses one session).
	MaxSessionsPerHost int
	// KeepAliveIdle: a connection idle for longer is probed (keepalive
	// request) before reuse and replaced if it does not answer (default 30s,
	// negative disables the probe; a failed session open is always retried
	// once on a new connection).
	KeepAliveIdle time.Duration
	// DialContext opens TCP connections (default: net.Dialer). Tests use it to
	// count or refuse dials; it is also the hook for custom networking.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Stats are counters for monitoring and tests.
type Stats struct {
	Dials      int64 // TCP connections attempted (through DialContext)
	Connects   int64 // SSH connections established (targets and jump host)
	Reconnects int64 // connections replaced because they had died
	Open       int   // connections currently open
}

// Pool keeps one SSH connection per host (keyed by user and address) and is
// safe for concurrent use. Connections are made on first use, reused after, and
// replaced when they die.
type Pool struct {
	opts     Options
	hostKeys ssh.HostKeyCallback
	probeKey ssh.PublicKey
	signers  []ssh.Signer // from KeyFile

	mu     sync.Mutex
	closed bool
	conns  map[string]*conn

	dials, connects, reconnects atomic.Int64
}

// NewPool checks opts, loads the key file and known_hosts, and returns an
// empty pool. It makes no connection.
func NewPool(opts Options) (*Pool, error) {
	if opts.User == "" {
		u, err := user.Current()
		if err != nil {
			return nil, fmt.Errorf("remote: no user given and current user unknown: %w", err)
		}
		opts.User = u.Username
	}
	if opts.JumpUser == "" {
		opts.JumpUser = opts.User
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = 10 * time.Second
	}
	if opts.CommandTimeout <= 0 {
		opts.CommandTimeout = 2 * time.Minute
	}
	if opts.MaxOutputBytes <= 0 {
		opts.MaxOutputBytes = 1 << 20
	}
	if opts.MaxSessionsPerHost <= 0 {
		opts.MaxSessionsPerHost = 8
	}
	if opts.KeepAliveIdle == 0 {
		opts.KeepAliveIdle = 30 * time.Second
	}
	if opts.DialContext == nil {
		opts.DialContext = (&net.Dialer{KeepAlive: 30 * time.Second}).DialContext
	}
	if opts.KnownHostsFile == "" {
		return nil, errors.New("remote: a known_hosts file is required (host keys are always verified)")
	}
	opts.KnownHostsFile = expandHome(opts.KnownHostsFile)
	cb, err := knownhosts.New(opts.KnownHostsFile)
	if err != nil {
		return nil, fmt.Errorf("remote: known_hosts: %w", err)
	}
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	probe, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil, err
	}
	var signers []ssh.Signer
	if opts.KeyFile != "" {
		opts.KeyFile = expandHome(opts.KeyFile)
		b, err := os.ReadFile(opts.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("remote: key file: %w", err)
		}
		s, err := ssh.ParsePrivateKey(b)
		var pm *ssh.PassphraseMissingError
		if errors.As(err, &pm) {
			return nil, fmt.Errorf("remote: key file %s is encrypted: load it into ssh-agent and set use_agent", opts.KeyFile)
		}
		if err != nil {
			return nil, fmt.Errorf("remote: key file %s: %w", opts.KeyFile, err)
		}
		signers = []ssh.Signer{s}
	}
	if opts.UseAgent && opts.AgentSocket == "" {
		opts.AgentSocket = os.Getenv("SSH_AUTH_SOCK")
		if opts.AgentSocket == "" {
			return nil, errors.New("remote: use_agent is set but SSH_AUTH_SOCK is empty")
		}
	}
	if !opts.UseAgent && opts.KeyFile == "" {
		return nil, errors.New("remote: no authentication: set a key file or use the agent")
	}
	return &Pool{opts: opts, hostKeys: cb, probeKey: probe, signers: signers, conns: map[string]*conn{}}, nil
}

func expandHome(p string) string {
	if strings.HasPrefix(p, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			return filepath.Join(home, p[2:])
		}
	}
	return p
}

// Close closes every connection. Later calls fail with ErrClosed.
func (p *Pool) Close() error {
	p.mu.Lock()
	p.closed = true
	conns := p.conns
	p.conns = map[string]*conn{}
	p.mu.Unlock()
	for _, c := range conns {
		c.mu.Lock()
		c.drop()
		c.mu.Unlock()
	}
	return nil
}

// Stats returns the pool's counters.
func (p *Pool) Stats() Stats {
	s := Stats{Dials: p.dials.Load(), Connects: p.connects.Load(), Reconnects: p.reconnects.Load()}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.mu.Lock()
		if c.live != nil && !c.live.dead() {
			s.Open++
		}
		c.mu.Unlock()
	}
	return s
}

// conn is the pool entry for one user@address.
type conn struct {
	host   Host
	user   string
	isJump bool
	sem    chan struct{} // bounds concurrent sessions

	mu       sync.Mutex // guards the fields below and serializes dialing
	live     *liveClient
	sftp     *sftp.Client // on live
	retired  []*liveClient
	lastUsed time.Time
}

// liveClient is one SSH connection. It counts the sessions in flight on it;
// a retired client takes no new sessions and closes when the last one ends.
type liveClient struct {
	*ssh.Client
	done chan struct{} // closed when the connection ends

	mu      sync.Mutex
	active  int
	retired bool
}

func (l *liveClient) dead() bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}

// acquire registers a session; false if l is retired.
func (l *liveClient) acquire() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.retired {
		return false
	}
	l.active++
	return true
}

func (l *liveClient) release() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.active--
	if l.retired && l.active == 0 {
		_ = l.Close()
	}
}

func (l *liveClient) retire() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.retired = true
	if l.active == 0 {
		_ = l.Close()
	}
}

func (l *liveClient) isRetired() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.retired
}

// drop closes every client of c (with c.mu held).
func (c *conn) drop() {
	if c.sftp != nil {
		_ = c.sftp.Close()
		c.sftp = nil
	}
	if c.live != nil {
		_ = c.live.Close()
		c.live = nil
	}
	for _, l := range c.retired {
		_ = l.Close()
	}
	c.retired = nil
}

// detach stops handing out c.live (with c.mu held): it is retired, so it
// closes once its sessions in flight end (at once if there are none).
func (c *conn) detach() {
	if c.live == nil {
		return
	}
	c.live.retire()
	c.sftp = nil // its channel closes with the connection
	kept := c.retired[:0]
	for _, l := range c.retired {
		if !l.dead() {
			kept = append(kept, l)
		}
	}
	c.retired = append(kept, c.live)
	c.live = nil
}

func (p *Pool) entry(h Host, user string, isJump bool) (*conn, error) {
	key := user + "@" + h.Addr()
	if isJump {
		key = "jump:" + key
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, fmt.Errorf("remote: %s: %w", h.label(), ErrClosed)
	}
	c, ok := p.conns[key]
	if !ok {
		c = &conn{host: h, user: user, isJump: isJump, sem: make(chan struct{}, p.opts.MaxSessionsPerHost)}
		p.conns[key] = c
	}
	return c, nil
}

// client returns c's live client with a session slot acquired (the caller
// must release it), connecting or reconnecting as needed.
func (p *Pool) client(ctx context.Context, c *conn) (*liveClient, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if l := c.live; l != nil {
		idle := time.Since(c.lastUsed)
		switch {
		case l.dead():
			p.reconnects.Add(1)
		case l.isRetired():
		case p.opts.KeepAliveIdle > 0 && idle > p.opts.KeepAliveIdle && !p.probe(l):
			p.reconnects.Add(1)
		default:
			if l.acquire() {
				c.lastUsed = time.Now()
				return l, nil
			}
		}
		c.detach()
	}
	l, err := p.connect(ctx, c)
	if err != nil {
		return nil, err
	}
	l.acquire()
	c.live, c.lastUsed = l, time.Now()
	return l, nil
}

// discard stops using l if it is still c's client (after a failure on it).
func (p *Pool) discard(c *conn, l *liveClient) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.live == l {
		c.detach()
		p.reconnects.Add(1)
	}
}

// retire stops handing out l for new sessions (after a timeout left a session
// behind on it); it closes when its sessions end.
func (p *Pool) retire(c *conn, l *liveClient) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.live == l {
		c.detach()
	}
}

// probe sends a keepalive request; any reply means the connection is alive.
func (p *Pool) probe(l *liveClient) bool {
	res := make(chan error, 1)
	go func() {
		_, _, err := l.SendRequest("keepalive@openssh.com", true, nil)
		res <- err
	}()
	select {
	case err := <-res:
		return err == nil
	case <-time.After(p.opts.ConnectTimeout):
		_ = l.Close()
		return false
	}
}

// handshake dials addr (directly or through the jump host) and runs the SSH
// handshake, bounded by ctx.
func (p *Pool) handshake(ctx context.Context, c *conn, addr string, algos []string) (ssh.Conn, <-chan ssh.NewChannel, <-chan *ssh.Request, error) {
	var nc net.Conn
	var err error
	if p.opts.Jump != nil && !c.isJump {
		nc, err = p.dialViaJump(ctx, addr)
	} else {
		p.dials.Add(1)
		nc, err = p.opts.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return nil, nil, nil, err
	}
	auth, release, err := p.auth()
	if err != nil {
		nc.Close()
		return nil, nil, nil, fmt.Errorf("remote: %s: %w: %v", c.host.label(), ErrAuth, err)
	}
	defer release()
	cfg := &ssh.ClientConfig{
		User:              c.user,
		Auth:              auth,
		HostKeyCallback:   p.verifyHostKey(c.host),
		HostKeyAlgorithms: algos,
		Timeout:           p.opts.ConnectTimeout,
	}
	// The handshake has no context: close the socket if ctx ends first.
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	sc, chans, reqs, err := ssh.NewClientConn(nc, addr, cfg)
	if !stop() && err == nil {
		sc.Close()
		err = ctx.Err()
	}
	if err != nil {
		nc.Close()
		return nil, nil, nil, err
	}
	return sc, chans, reqs, nil
}

func (p *Pool) connect(ctx context.Context, c *conn) (*liveClient, error) {
	ctx, cancel := context.WithTimeout(ctx, p.opts.ConnectTimeout)
	defer cancel()
	addr := c.host.Addr()
	fail := func(err error) error {
		switch {
		case strings.Contains(err.Error(), "unable to authenticate"):
			return fmt.Errorf("remote: %s (%s) as %s: %w: %v", c.host.label(), addr, c.user, ErrAuth, err)
		case ctx.Err() != nil:
			return fmt.Errorf("remote: connect to %s (%s): %w: timed out after %s (%v)", c.host.label(), addr, ErrConnect, p.opts.ConnectTimeout, err)
		}
		return fmt.Errorf("remote: connect to %s (%s): %w: %v", c.host.label(), addr, ErrConnect, err)
	}

	algos := p.knownAlgorithms(addr)
	sc, chans, reqs, err := p.handshake(ctx, c, addr, algos)
	if err != nil && algos != nil && strings.Contains(err.Error(), "no common algorithm for host key") {
		// The host offers none of the key types known_hosts has for it:
		// handshake again unrestricted to learn (and report) the key it has.
		sc, chans, reqs, err = p.handshake(ctx, c, addr, nil)
	}
	if err != nil {
		var hk *HostKeyError
		switch {
		case errors.As(err, &hk):
			return nil, hk
		case errors.Is(err, ErrAuth), errors.Is(err, ErrConnect), errors.Is(err, ErrClosed):
			return nil, err // already described (e.g. by the jump host)
		}
		return nil, fail(err)
	}
	p.connects.Add(1)
	l := &liveClient{Client: ssh.NewClient(sc, chans, reqs), done: make(chan struct{})}
	go func() { _ = l.Wait(); close(l.done) }()
	return l, nil
}

// dialViaJump opens a direct-tcpip channel to addr through the jump host,
// reconnecting to the jump host once if its connection has died.
func (p *Pool) dialViaJump(ctx context.Context, addr string) (net.Conn, error) {
	j, err := p.entry(*p.opts.Jump, p.opts.JumpUser, true)
	if err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		l, err := p.client(ctx, j)
		if err != nil {
			return nil, err
		}
		nc, err := l.DialContext(ctx, "tcp", addr)
		l.release() // the tunnel lives on; the slot only guards retirement
		if err == nil {
			return nc, nil
		}
		var oce *ssh.OpenChannelError
		if errors.As(err, &oce) || ctx.Err() != nil || attempt > 0 {
			// The jump host is alive but refused (or we ran out of time).
			return nil, fmt.Errorf("remote: via jump host %s: %w: %v", p.opts.Jump.label(), ErrConnect, err)
		}
		p.discard(j, l)
	}
}

// auth returns the auth methods for one handshake; release closes the agent
// connection afterwards.
func (p *Pool) auth() ([]ssh.AuthMethod, func(), error) {
	if !p.opts.UseAgent {
		return []ssh.AuthMethod{ssh.PublicKeys(p.signers...)}, func() {}, nil
	}
	ac, err := net.Dial("unix", p.opts.AgentSocket)
	if err != nil {
		if len(p.signers) > 0 {
			return []ssh.AuthMethod{ssh.PublicKeys(p.signers...)}, func() {}, nil
		}
		return nil, nil, fmt.Errorf("ssh-agent at %s: %v", p.opts.AgentSocket, err)
	}
	ag := agent.NewClient(ac)
	// One publickey method with all keys: x/crypto tries each method once.
	cb := ssh.PublicKeysCallback(func() ([]ssh.Signer, error) {
		s, err := ag.Signers()
		if err != nil && len(p.signers) == 0 {
			return nil, err
		}
		return append(p.signers, s...), nil
	})
	return []ssh.AuthMethod{cb}, func() { ac.Close() }, nil
}

// verifyHostKey checks the offered key against known_hosts and turns
// knownhosts errors into *HostKeyError.
func (p *Pool) verifyHostKey(h Host) ssh.HostKeyCallback {
	return func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		err := p.hostKeys(hostname, remote, key)
		if err == nil {
			return nil
		}
		hk := &HostKeyError{
			Host: h.label(), Address: hostname, KeyType: key.Type(),
			Fingerprint: ssh.FingerprintSHA256(key), File: p.opts.KnownHostsFile,
		}
		var ke *knownhosts.KeyError
		var re *knownhosts.RevokedError
		switch {
		case errors.As(err, &re):
			hk.Revoked, hk.kind = true, ErrHostKeyMismatch
			hk.Known = []string{fmt.Sprintf("%s:%d %s %s (revoked)", re.Revoked.Filename, re.Revoked.Line, re.Revoked.Key.Type(), ssh.FingerprintSHA256(re.Revoked.Key))}
		case errors.As(err, &ke) && len(ke.Want) == 0:
			hk.kind = ErrHostKeyUnknown
		case errors.As(err, &ke):
			hk.kind = ErrHostKeyMismatch
			for _, w := range ke.Want {
				hk.Known = append(hk.Known, fmt.Sprintf("%s:%d %s %s", w.Filename, w.Line, w.Key.Type(), ssh.FingerprintSHA256(w.Key)))
			}
		default:
			return fmt.Errorf("remote: verify host key of %s (%s): %w", h.label(), hostname, err)
		}
		return hk
	}
}

// knownAlgorithms returns the host key algorithms of the keys known_hosts has
// for addr, so that the server offers one of those (otherwise a host with an
// ed25519 entry could offer its ECDSA key and look like a mismatch). Nil (the
// defaults) when the host is unknown.
func (p *Pool) knownAlgorithms(addr string) []string {
	err := p.hostKeys(addr, fakeAddr(addr), p.probeKey)
	var ke *knownhosts.KeyError
	if !errors.As(err, &ke) || len(ke.Want) == 0 {
		return nil
	}
	var algos []string
	seen := map[string]bool{}
	add := func(a string) {
		if !seen[a] {
			seen[a] = true
			algos = append(algos, a)
		}
	}
	for _, w := range ke.Want {
		switch t := w.Key.Type(); t {
		case ssh.KeyAlgoRSA:
			add(ssh.KeyAlgoRSASHA512)
			add(ssh.KeyAlgoRSASHA256)
			add(ssh.KeyAlgoRSA)
		default:
			add(t)
		}
	}
	return algos
}

type fakeAddr string

func (a fakeAddr) Network() string { return "tcp" }
func (a fakeAddr) String() string  { return string(a) }
