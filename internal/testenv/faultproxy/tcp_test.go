package faultproxy

import (
	"bufio"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A cut connection ends mid-conversation; an uncut one carries everything.
func TestTCPCutsMidStream(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { // echo lines
				defer c.Close()
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					_, _ = c.Write(append(sc.Bytes(), '\n'))
				}
			}()
		}
	}()
	talk := func(addr string, lines int) int {
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		defer c.Close()
		r := bufio.NewReader(c)
		n := 0
		for i := 0; i < lines; i++ {
			if _, err := c.Write([]byte("ping\n")); err != nil {
				return n
			}
			_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
			if _, err := r.ReadString('\n'); err != nil {
				return n
			}
			n++
			time.Sleep(10 * time.Millisecond)
		}
		return n
	}

	cutter := NewTCP(1, 1, 50*time.Millisecond)
	defer cutter.Close()
	addr, err := cutter.Forward(ln.Addr().String())
	require.NoError(t, err)
	require.Less(t, talk(addr, 50), 50, "a connection chosen for a cut carried the whole conversation")
	cutter.Enable(false)
	require.Equal(t, 50, talk(addr, 50))
	conns, cuts := cutter.Counts()
	require.Equal(t, 2, conns)
	require.Equal(t, 1, cuts)
}

// ForwardOn listens on the address it is given (a lab host's own), not 127.0.0.1, and forwards.
func TestTCPForwardOnListensOnItsAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			_, _ = c.Write([]byte("hello\n"))
			c.Close()
		}
	}()
	p := NewTCP(1, 0, time.Second)
	defer p.Close()
	front, err := p.ForwardOn("127.0.0.7", ln.Addr().String())
	require.NoError(t, err)
	host, _, err := net.SplitHostPort(front)
	require.NoError(t, err)
	require.Equal(t, "127.0.0.7", host)
	c, err := net.Dial("tcp", front)
	require.NoError(t, err)
	defer c.Close()
	line, err := bufio.NewReader(c).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "hello\n", line)
}
