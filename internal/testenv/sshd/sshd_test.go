package sshd_test

import (
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/stackrun/stackrun/internal/testenv/sshd"
)

func TestStartRestartStop(t *testing.T) {
	srv := sshd.Start(t, sshd.WithLoopback("127.0.0.31"))
	cb, err := knownhosts.New(srv.KnownHostsFile)
	if err != nil {
		t.Fatal(err)
	}
	dial := func() (*ssh.Client, error) {
		return ssh.Dial("tcp", srv.Addr(), &ssh.ClientConfig{
			User: srv.User, Auth: []ssh.AuthMethod{ssh.PublicKeys(srv.UserSigner)},
			HostKeyCallback: cb, Timeout: 5 * time.Second,
		})
	}
	c, err := dial()
	if err != nil {
		t.Fatalf("dial: %v\n%s", err, srv.Log())
	}
	out, err := mustSession(t, c).Output("echo hello")
	if err != nil || string(out) != "hello\n" {
		t.Fatalf("echo: %q %v", out, err)
	}
	// Restart kills existing connections (like a reboot) and comes back on
	// the same address with the same keys.
	srv.Restart()
	waitClosed := make(chan error, 1)
	go func() { waitClosed <- c.Wait() }()
	select {
	case <-waitClosed:
	case <-time.After(5 * time.Second):
		t.Fatal("connection survived the restart")
	}
	c, err = dial()
	if err != nil {
		t.Fatalf("dial after restart: %v", err)
	}
	c.Close()
	srv.Stop()
	if _, err := dial(); err == nil {
		t.Fatal("dial after stop succeeded")
	}
	if b, _ := os.ReadFile(srv.ConfigFile); !strings.Contains(string(b), "Subsystem sftp internal-sftp") {
		t.Fatal("config lacks the sftp subsystem")
	}
}

func mustSession(t *testing.T, c *ssh.Client) *ssh.Session {
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	return s
}
