// Package scripts tests scripts/run.sh (make run) with a configuration of its own (no lab): the
// Temporal dev server, the worker and, when the configuration has a chat: section, the chat
// gateway come up, answer, and stop on Ctrl-C.
package scripts

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stackrun/stackrun/internal/testenv/devserver"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func listening(port int) bool {
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
	if err == nil {
		c.Close()
	}
	return err == nil
}

// binaries builds stackrun and stackrun-worker and links the Temporal CLI beside them (RUN_BIN).
func binaries(t *testing.T, root string) string {
	t.Helper()
	bin := t.TempDir()
	for pkg, out := range map[string]string{"./starter": "stackrun", "./worker": "stackrun-worker"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(bin, out), pkg)
		cmd.Dir = root
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, b)
		}
	}
	temporal := filepath.Join(root, "bin", "temporal")
	if p := os.Getenv("STACKRUN_TEMPORAL_BIN"); p != "" {
		temporal = p
	}
	if err := os.Symlink(temporal, filepath.Join(bin, "temporal")); err != nil {
		t.Fatal(err)
	}
	return bin
}

// config writes a configuration the worker accepts (no SSH target is contacted at start), with
// chat appended.
func config(t *testing.T, dir, chat string) string {
	t.Helper()
	key := filepath.Join(dir, "id_ed25519")
	if b, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, b)
	}
	known := filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(known, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`ssh:
  user: root
  key_file: %s
  known_hosts_file: %s
inventory:
  node1:
    address: 127.0.0.1
    roles: [testrole]
roles:
  testrole:
    services:
      - {name: svc-a}
policy:
  approvers: [alice, bob]
worker:
  audit_log: %s/audit.log
`, key, known, dir) + chat
	p := filepath.Join(dir, "stackrun.yaml")
	if err := os.WriteFile(p, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

type makeRun struct {
	cmd      *exec.Cmd
	out      *syncBuffer
	temporal int
	done     chan struct{} // closed when run.sh has exited
}

// start runs scripts/run.sh in its own process group (as a terminal runs make run) and waits for
// its banner.
func start(t *testing.T, root, bin, cfg string) *makeRun {
	t.Helper()
	r := &makeRun{out: &syncBuffer{}, temporal: freePort(t), done: make(chan struct{})}
	dir := filepath.Dir(cfg)
	r.cmd = exec.Command(filepath.Join(root, "scripts", "run.sh"))
	r.cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "STATE=" + filepath.Join(dir, "state"),
		"STACKRUN_CONFIG=" + cfg, "RUN_BIN=" + bin,
		fmt.Sprintf("STACKRUN_TEMPORAL_ADDRESS=127.0.0.1:%d", r.temporal), fmt.Sprintf("RUN_UI_PORT=%d", freePort(t))}
	r.cmd.Stdout, r.cmd.Stderr = r.out, r.out
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL) })
	go func() { _ = r.cmd.Wait(); close(r.done) }()
	deadline := time.Now().Add(90 * time.Second)
	for !strings.Contains(r.out.String(), "  Stop  ") {
		select {
		case <-r.done:
			t.Fatalf("make run exited:\n%s", r.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("make run did not come up:\n%s", r.out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	return r
}

// interrupt sends Ctrl-C's SIGINT to the process group and waits for run.sh and everything it
// started to end.
func (r *makeRun) interrupt(t *testing.T) string {
	t.Helper()
	pgid := r.cmd.Process.Pid
	if err := syscall.Kill(-pgid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-r.done:
	case <-time.After(60 * time.Second):
		t.Fatalf("make run did not stop on Ctrl-C:\n%s", r.out.String())
	}
	deadline := time.Now().Add(10 * time.Second)
	for syscall.Kill(-pgid, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("processes of make run are left after Ctrl-C:\n%s", r.out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	return r.out.String()
}

func TestMakeRunChatGateway(t *testing.T) {
	root := devserver.RepoRoot(t)
	bin := binaries(t, root)

	t.Run("with chat", func(t *testing.T) { // and the gateway's key (trust.chat_gateway)
		dir := t.TempDir()
		port := freePort(t)
		gwKey := filepath.Join(dir, "chat_ed25519")
		if b, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", gwKey).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v\n%s", err, b)
		}
		pub, err := os.ReadFile(gwKey + ".pub")
		if err != nil {
			t.Fatal(err)
		}
		cfg := config(t, dir, fmt.Sprintf(`trust:
  chat_gateway:
    public_key: "%s"
    private_key_file: %s
    vouch:
      - operators: ["*"]
        runbooks: [post-reboot-check]
chat:
  listen_address: 127.0.0.1:%d
  mattermost:
    token: test-token-0123456789
  users:
    - operator: alice
      mattermost: 8ifn9j3wpjgu5cz1nd8mydmzja
      roles: [oncall]
  roles:
    oncall:
      runbooks: [post-reboot-check]
`, strings.TrimSpace(string(pub)), gwKey, port))
		r := start(t, root, bin, cfg)
		url := fmt.Sprintf("http://127.0.0.1:%d", port)
		out := r.out.String()
		for _, want := range []string{
			"run: chat gateway (stackrun chat serve, log " + dir + "/state/chat.log)",
			"  Chat gateway      " + url + "   (Slack: " + url + "/slack/commands, Mattermost: " + url + "/mattermost/commands",
			"Ctrl-C stops the chat gateway, the worker, Temporal",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("make run's output lacks %q:\n%s", want, out)
			}
		}
		resp, err := http.Get(url + "/healthz")
		if err != nil {
			t.Fatalf("the chat gateway does not answer: %v\n%s", err, out)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET /healthz: %s", resp.Status)
		}
		out = r.interrupt(t)
		if !strings.Contains(out, "run: stopping the chat gateway, the worker, Temporal") {
			t.Errorf("Ctrl-C output:\n%s", out)
		}
		if listening(port) || listening(r.temporal) {
			t.Errorf("after Ctrl-C something still listens: chat %v, Temporal %v", listening(port), listening(r.temporal))
		}
	})

	t.Run("without chat", func(t *testing.T) {
		dir := t.TempDir()
		cfg := config(t, dir, "")
		r := start(t, root, bin, cfg)
		out := r.out.String()
		if want := "  Chat gateway      not configured (add a chat: section to " + cfg + "; docs/chatops.md)"; !strings.Contains(out, want) {
			t.Errorf("make run's output lacks %q:\n%s", want, out)
		}
		if strings.Contains(out, "run: chat gateway (") {
			t.Errorf("the chat gateway started without a chat: section:\n%s", out)
		}
		if _, err := os.Stat(filepath.Join(dir, "state", "chat.log")); err == nil {
			t.Error("chat.log written: the gateway ran")
		}
		out = r.interrupt(t)
		if !strings.Contains(out, "run: stopping the worker, Temporal") {
			t.Errorf("Ctrl-C output:\n%s", out)
		}
	})
}
