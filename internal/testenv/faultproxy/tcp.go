package faultproxy

import (
	"io"
	"math/rand"
	"net"
	"sync"
	"time"
)

// TCP forwards connections (SSH, MariaDB) and cuts a share of them mid-stream: with
// probability Rate a connection is closed both ways after a delay drawn from [0, CutWithin),
// whatever is being said on it (a command half run, a query half answered).
type TCP struct {
	Rate      float64
	CutWithin time.Duration

	mu      sync.Mutex
	rnd     *rand.Rand
	lns     []net.Listener
	conns   int
	cuts    int
	enabled bool
}

// NewTCP returns a TCP fault proxy with its seed; faults are on (see Enable).
func NewTCP(seed int64, rate float64, cutWithin time.Duration) *TCP {
	return &TCP{Rate: rate, CutWithin: cutWithin, rnd: rand.New(rand.NewSource(seed)), enabled: true}
}

// Enable turns the cuts on or off.
func (p *TCP) Enable(on bool) {
	p.mu.Lock()
	p.enabled = on
	p.mu.Unlock()
}

// Counts returns the connections seen and the connections cut.
func (p *TCP) Counts() (conns, cuts int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.conns, p.cuts
}

// Forward listens on 127.0.0.1 and forwards every connection to target ("host:port"); it
// returns the listening address.
func (p *TCP) Forward(target string) (string, error) { return p.ForwardOn("127.0.0.1", target) }

// ForwardOn is Forward listening on ip (a port of its own): a lab host's own loopback address,
// so that what else reaches the host by its address (a ping, a port check) still reaches it.
func (p *TCP) ForwardOn(ip, target string) (string, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return "", err
	}
	p.mu.Lock()
	p.lns = append(p.lns, ln)
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(c, target)
		}
	}()
	return ln.Addr().String(), nil
}

func (p *TCP) serve(c net.Conn, target string) {
	defer c.Close()
	up, err := net.DialTimeout("tcp", target, 10*time.Second)
	if err != nil {
		return
	}
	defer up.Close()
	p.mu.Lock()
	p.conns++
	var cut time.Duration = -1
	if p.enabled && p.rnd.Float64() < p.Rate {
		p.cuts++
		cut = time.Duration(p.rnd.Int63n(int64(p.CutWithin) + 1))
	}
	p.mu.Unlock()
	if cut >= 0 {
		t := time.AfterFunc(cut, func() { _ = c.Close(); _ = up.Close() })
		defer t.Stop()
	}
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
	<-done
}

// Close stops listening (connections in flight end with their peers).
func (p *TCP) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, ln := range p.lns {
		_ = ln.Close()
	}
	p.lns = nil
}
