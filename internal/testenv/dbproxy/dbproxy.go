// Package dbproxy is a deterministic fault proxy for the MySQL protocol (MariaDB): it forwards
// connections to the real server and drops one at a scripted client packet, so a test can lose
// a statement before the server sees it, or lose the server's answer after it executed it (a
// COMMIT that committed but whose OK never arrived). No seed and no timing: a rule fires on the
// first client packet whose text contains its string, once.
//
// It reads the client's side as MySQL packets (3-byte length, sequence id, payload) and copies
// the server's side as bytes. go-sql-driver sends a statement without arguments (BEGIN, COMMIT)
// as COM_QUERY text, a statement with arguments as COM_STMT_PREPARE (its SQL text) and then
// COM_STMT_EXECUTE (the arguments' values, text too for strings). TLS and the compressed
// protocol are not parsed: a connection that asks for TLS is forwarded untouched.
package dbproxy

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// When says at which side of the server a rule drops the connection.
type When int

const (
	// Before: the packet is not forwarded; both sides are closed. The server never saw it.
	Before When = iota
	// After: the packet is forwarded, the server's answer is read and thrown away, and both
	// sides are closed. The server executed it; the client never learns so.
	After
)

func (w When) String() string {
	if w == After {
		return "after"
	}
	return "before"
}

// Rule drops the connection at the first client packet (on any connection) whose payload
// contains Contains.
type Rule struct {
	Contains string
	When     When
}

// Proxy listens on 127.0.0.1 and forwards every connection to one server.
type Proxy struct {
	target string
	ln     net.Listener

	mu    sync.Mutex
	rules []Rule
	fired []bool
	conns int
	open  map[*pair]struct{}
	wg    sync.WaitGroup
}

type pair struct {
	client, server net.Conn
	swallow        atomic.Bool // After fired: the next bytes from the server are the lost answer
	once           sync.Once
}

func (c *pair) close() {
	c.once.Do(func() { c.client.Close(); c.server.Close() })
}

// Start listens on 127.0.0.1:0 and forwards to target ("host:port") with the rules.
func Start(target string, rules ...Rule) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{target: target, ln: ln, rules: rules, fired: make([]bool, len(rules)), open: map[*pair]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the listening address ("127.0.0.1:port").
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Fired says, per rule, whether it has dropped its connection.
func (p *Proxy) Fired() []bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]bool(nil), p.fired...)
}

// Conns is the number of connections accepted.
func (p *Proxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.conns
}

// Close stops listening, closes every open connection and waits for the forwarding to end.
func (p *Proxy) Close() error {
	err := p.ln.Close()
	p.mu.Lock()
	for c := range p.open {
		c.close()
	}
	p.mu.Unlock()
	p.wg.Wait()
	return err
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		cl, err := p.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.DialTimeout("tcp", p.target, 10*time.Second)
		if err != nil {
			cl.Close()
			continue
		}
		c := &pair{client: cl, server: up}
		p.mu.Lock()
		p.conns++
		p.open[c] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go p.fromServer(c)
		go p.fromClient(c)
	}
}

// match returns the first rule not yet fired that payload matches, marking it fired.
func (p *Proxy) match(payload []byte) (Rule, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, r := range p.rules {
		if !p.fired[i] && bytes.Contains(payload, []byte(r.Contains)) {
			p.fired[i] = true
			return r, true
		}
	}
	return Rule{}, false
}

func (p *Proxy) done(c *pair) {
	c.close()
	p.mu.Lock()
	delete(p.open, c)
	p.mu.Unlock()
	p.wg.Done()
}

// fromServer copies the server's bytes to the client. The client sends a command only after it
// has read the whole answer to the previous one, so once After has fired every byte read is the
// answer to the matched packet: it is dropped with the connection.
func (p *Proxy) fromServer(c *pair) {
	defer p.done(c)
	buf := make([]byte, 32<<10)
	for {
		n, err := c.server.Read(buf)
		if c.swallow.Load() {
			return
		}
		if n > 0 {
			if _, werr := c.client.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// fromClient forwards the client's packets one by one, applying the rules.
func (p *Proxy) fromClient(c *pair) {
	defer p.done(c)
	hdr := make([]byte, 4)
	first := true
	for {
		if _, err := io.ReadFull(c.client, hdr); err != nil {
			return
		}
		n := int(hdr[0]) | int(hdr[1])<<8 | int(hdr[2])<<16
		pkt := make([]byte, 4+n)
		copy(pkt, hdr)
		if _, err := io.ReadFull(c.client, pkt[4:]); err != nil {
			return
		}
		payload := pkt[4:]
		// SSLRequest: the first client packet, 32 bytes, CLIENT_SSL set; what follows is TLS.
		if first && n == 32 && binary.LittleEndian.Uint32(payload)&0x800 != 0 {
			if _, err := c.server.Write(pkt); err != nil {
				return
			}
			_, _ = io.Copy(c.server, c.client)
			return
		}
		first = false
		if r, ok := p.match(payload); ok {
			if r.When == Before {
				return
			}
			c.swallow.Store(true) // before the server can answer
		}
		if _, err := c.server.Write(pkt); err != nil {
			return
		}
	}
}
