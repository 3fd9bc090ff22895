package dbproxy

import (
	"bytes"
	"io"
	"net"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// echo is a stand-in server speaking MySQL framing: it greets, then answers every packet with
// "ok:" and its payload, and records what it received.
type echo struct {
	ln   net.Listener
	mu   sync.Mutex
	seen []string
	wg   sync.WaitGroup
}

func newEcho(t *testing.T) *echo {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	e := &echo{ln: ln}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.wg.Add(1)
			go func() {
				defer e.wg.Done()
				defer c.Close()
				if _, err := c.Write(frame(0, "greeting")); err != nil {
					return
				}
				for {
					seq, payload, err := readFrame(c)
					if err != nil {
						return
					}
					e.mu.Lock()
					e.seen = append(e.seen, payload)
					e.mu.Unlock()
					if _, err := c.Write(frame(seq+1, "ok:"+payload)); err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); e.wg.Wait() })
	return e
}

func (e *echo) received() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.seen...)
}

func frame(seq byte, payload string) []byte {
	n := len(payload)
	return append([]byte{byte(n), byte(n >> 8), byte(n >> 16), seq}, payload...)
}

func readFrame(r io.Reader) (byte, string, error) {
	hdr := make([]byte, 4)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return 0, "", err
	}
	b := make([]byte, int(hdr[0])|int(hdr[1])<<8|int(hdr[2])<<16)
	_, err := io.ReadFull(r, b)
	return hdr[3], string(b), err
}

// dial connects through the proxy and reads the greeting.
func dial(t *testing.T, p *Proxy) net.Conn {
	c, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	_, g, err := readFrame(c)
	require.NoError(t, err)
	require.Equal(t, "greeting", g)
	return c
}

// ask sends payload and returns the answer, or the read error.
func ask(t *testing.T, c net.Conn, payload string) (string, error) {
	_, err := c.Write(frame(0, payload))
	require.NoError(t, err)
	_, a, err := readFrame(c)
	return a, err
}

func TestForwardsPacketsUntouched(t *testing.T) {
	e := newEcho(t)
	p, err := Start(e.ln.Addr().String())
	require.NoError(t, err)
	defer p.Close()
	c := dial(t, p)
	big := string(bytes.Repeat([]byte("x"), 200<<10)) // spans many reads
	for _, q := range []string{"\x03SELECT 1", big, "\x03COMMIT"} {
		a, err := ask(t, c, q)
		require.NoError(t, err)
		assert.Equal(t, "ok:"+q, a)
	}
	assert.Equal(t, []string{"\x03SELECT 1", big, "\x03COMMIT"}, e.received())
	assert.Empty(t, p.Fired())
}

// Before: the server never sees the packet, the client's connection ends without an answer,
// and the rule fires once only: the next connection's same packet goes through.
func TestDropBeforeForwarding(t *testing.T) {
	e := newEcho(t)
	p, err := Start(e.ln.Addr().String(), Rule{Contains: "UPDATE instances", When: Before})
	require.NoError(t, err)
	defer p.Close()
	c := dial(t, p)
	a, err := ask(t, c, "\x03BEGIN")
	require.NoError(t, err)
	assert.Equal(t, "ok:\x03BEGIN", a)
	_, err = ask(t, c, "\x16UPDATE instances SET host = ?")
	require.Error(t, err, "the connection is dropped")
	assert.Equal(t, []bool{true}, p.Fired())

	c2 := dial(t, p)
	a, err = ask(t, c2, "\x16UPDATE instances SET host = ?")
	require.NoError(t, err)
	assert.Equal(t, "ok:\x16UPDATE instances SET host = ?", a)
	assert.Equal(t, []string{"\x03BEGIN", "\x16UPDATE instances SET host = ?"}, e.received(), "the first UPDATE never reached the server")
	assert.Equal(t, 2, p.Conns())
}

// After: the server receives the packet and answers; the answer is lost with the connection.
func TestDropAfterTheServerAnswered(t *testing.T) {
	e := newEcho(t)
	p, err := Start(e.ln.Addr().String(), Rule{Contains: "COMMIT", When: After})
	require.NoError(t, err)
	defer p.Close()
	c := dial(t, p)
	_, err = ask(t, c, "\x03COMMIT")
	require.Error(t, err, "the answer is lost")
	assert.Equal(t, []string{"\x03COMMIT"}, e.received(), "the server got the COMMIT")
	assert.Equal(t, []bool{true}, p.Fired())

	c2 := dial(t, p)
	a, err := ask(t, c2, "\x03COMMIT")
	require.NoError(t, err)
	assert.Equal(t, "ok:\x03COMMIT", a)
}
