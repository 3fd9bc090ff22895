// Package chattest is the test rig of the chat gateway and the web-UI tests: a real Temporal dev
// server (optionally with its web UI), a real OpenSSH sshd standing for a host whose services a
// small controller script drives, the real stackrun-worker binary with a configuration that
// has a chat section, and receivers for the notifications the worker posts. Runs the real
// restart-service runbook (gate approve-restart, under the two-person rule here).
package chattest

import (
	"encoding/json"
	"fmt"
	"github.com/stackrun/stackrun/internal/testenv/svcctl"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stackrun/stackrun/internal/testenv/devserver"
	"github.com/stackrun/stackrun/internal/testenv/operators"
	"github.com/stackrun/stackrun/internal/testenv/sshd"
)

// Secrets of the rig's chat configuration.
const (
	SlackSecret     = "rig-slack-signing-secret"
	MattermostToken = "rig-mattermost-token"
)

// Users of the rig: chat IDs and the operators they map to.
//   - alice (UALICE, mattermost "alicemm"), bob (UBOB, "bobmm"): role oncall (restart-service,
//     gate approve-restart); both in policy.approvers.
//   - dave (UDAVE): chat role approver (every gate) but NOT in policy.approvers: the workflow's
//     validator refuses him.
//   - erin (UERIN): chat role viewer (post-reboot-check only, no gates): the gateway refuses her.
const usersYAML = `  users:
    - {operator: alice, slack: UALICE, mattermost: alicemm, roles: [oncall]}
    - {operator: bob, slack: UBOB, mattermost: bobmm, roles: [oncall]}
    - {operator: dave, slack: UDAVE, roles: [approver]}
    - {operator: erin, slack: UERIN, roles: [viewer]}
  roles:
    oncall: {runbooks: [restart-service], gates: [approve-restart]}
    approver: {gates: ["*"]}
    viewer: {runbooks: [post-reboot-check]}
`

// Operators of the rig with keys (the worker's trust.operators), and the chat gateway's key
// (trust.chat_gateway, vouching for every listed user on approve-restart and restart-service).
var (
	Alice   = operators.Must("alice")
	Bob     = operators.Must("bob")
	Gateway = operators.Must("chat")
)

// Options shape the rig.
type Options struct {
	// UI starts the dev server's web UI (Rig.Server.UIURL).
	UI bool
	// PublicURL is chat.public_url (where Mattermost buttons post); may be "".
	PublicURL string
}

// Rig is a running rig.
type Rig struct {
	T        *testing.T
	Dir      string
	State    string // the fake host's service state
	Config   string // stackrun.yaml
	Bin      string // stackrun and stackrun-worker binaries
	Server   *devserver.Server
	Received *Receiver // notifications: /slack, /mattermost, /webhook
	worker   *exec.Cmd
}

// New starts the rig; everything stops when the test ends.
func New(t *testing.T, o Options) *Rig {
	t.Helper()
	var dopts []devserver.Option
	if o.UI {
		dopts = append(dopts, devserver.WithUI())
	}
	srv := devserver.Start(t, dopts...)
	host := sshd.Start(t, sshd.WithLoopback("127.0.0.41"))
	dir := t.TempDir()
	r := &Rig{T: t, Dir: dir, State: filepath.Join(dir, "state"), Bin: filepath.Join(dir, "bin"), Server: srv, Received: NewReceiver(t)}
	for _, d := range []string{r.State, r.Bin} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	BuildBinaries(t, r.Bin)
	ctl := filepath.Join(dir, "svcctl")
	must(t, os.WriteFile(ctl, []byte(svcctl.Script), 0o755))
	for _, s := range []string{"svc-a", "svc-b"} {
		must(t, os.WriteFile(filepath.Join(r.State, s+".running"), nil, 0o644))
	}
	cfg := fmt.Sprintf(`temporal:
  address: %[1]s
ssh:
  user: %[2]s
  key_file: %[3]s
  known_hosts_file: %[4]s
inventory:
  node1:
    address: %[5]s
    port: %[6]d
    roles: [testrole]
roles:
  testrole:
    services:
      - {name: svc-a, log: %[7]s/svc-a.log, amqp: true}
      - {name: svc-b}
commands:
  service_start: [%[8]s, start, "{service}"]
  service_stop: [%[8]s, stop, "{service}"]
  service_status: [%[8]s, status, "{service}"]
policy:
  approvers: [alice, bob]
  two_person_gates: [approve-restart]
  gate_timeout: 1h
  activity_max_attempts: 2
worker:
  audit_log: %[9]s/audit.log
chat:
  listen_address: 127.0.0.1:0
  public_url: "%[10]s"
  web_ui_url: "%[11]s"
  webhook_url: %[12]s/webhook
  slack:
    signing_secret_file: %[9]s/slack-secret
    webhook_url: %[12]s/slack
  mattermost:
    token_file: %[9]s/mm-token
    webhook_url: %[12]s/mattermost
%[13]s`, srv.HostPort, host.User, host.UserKeyFile, host.KnownHostsFile, host.IP, host.Port, r.State, ctl, dir,
		o.PublicURL, srv.UIURL, r.Received.URL, usersYAML)
	must(t, os.WriteFile(filepath.Join(dir, "slack-secret"), []byte(SlackSecret+"\n"), 0o600))
	must(t, os.WriteFile(filepath.Join(dir, "mm-token"), []byte(MattermostToken+"\n"), 0o600))
	cfg += fmt.Sprintf(`trust:
  operators:
    - {name: alice, keys: [%q]}
    - {name: bob, keys: [%q]}
  chat_gateway:
    public_key: %q
    private_key_file: %s
    vouch:
      - {operators: ["*"], gates: [approve-restart], runbooks: [restart-service, post-reboot-check]}
`, Alice.AuthorizedKey(), Bob.AuthorizedKey(), Gateway.AuthorizedKey(), Gateway.WriteKeyFile(t, dir))
	r.Config = filepath.Join(dir, "stackrun.yaml")
	must(t, os.WriteFile(r.Config, []byte(cfg), 0o644))
	r.StartWorker()
	t.Cleanup(r.StopWorker)
	return r
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// BuildBinaries builds stackrun-worker and stackrun into dir.
func BuildBinaries(t *testing.T, dir string) {
	t.Helper()
	root := devserver.RepoRoot(t)
	for pkg, out := range map[string]string{"./worker": "stackrun-worker", "./starter": "stackrun"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, out), pkg)
		cmd.Dir = root
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, b)
		}
	}
}

// StartWorker starts the real worker binary on the rig's configuration.
func (r *Rig) StartWorker() {
	cmd := exec.Command(filepath.Join(r.Bin, "stackrun-worker"), "--config", r.Config, "--log-level", "info")
	logf, err := os.OpenFile(filepath.Join(r.Dir, "worker.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	must(r.T, err)
	cmd.Stdout, cmd.Stderr = logf, logf
	must(r.T, cmd.Start())
	r.worker = cmd
}

// StopWorker stops it (SIGTERM) and prints its log when the test failed.
func (r *Rig) StopWorker() {
	if r.worker == nil || r.worker.Process == nil {
		return
	}
	_ = r.worker.Process.Signal(syscall.SIGTERM)
	_, _ = r.worker.Process.Wait()
	r.worker = nil
	if r.T.Failed() {
		r.T.Logf("worker log:\n%s", r.WorkerLog())
	}
}

// WorkerLog is the end of the worker's log.
func (r *Rig) WorkerLog() string {
	b, _ := os.ReadFile(filepath.Join(r.Dir, "worker.log"))
	if len(b) > 6000 {
		b = b[len(b)-6000:]
	}
	return string(b)
}

// Actions is what the fake host did to a service ("stop\nstart").
func (r *Rig) Actions(svc string) string {
	b, _ := os.ReadFile(filepath.Join(r.State, svc+".actions"))
	return strings.TrimSpace(string(b))
}

// Post is one request a Receiver got.
type Post struct {
	Path string
	Body []byte
}

// Receiver is an HTTP server that records every POST (notification webhooks, response URLs).
type Receiver struct {
	URL string
	mu  sync.Mutex
	got []Post
	new chan struct{}
}

// NewReceiver starts one; it stops when the test ends.
func NewReceiver(t *testing.T) *Receiver {
	rc := &Receiver{new: make(chan struct{}, 1)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.got = append(rc.got, Post{Path: r.URL.Path, Body: b})
		rc.mu.Unlock()
		select {
		case rc.new <- struct{}{}:
		default:
		}
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(srv.Close)
	rc.URL = srv.URL
	return rc
}

// Posts returns what was received on path so far.
func (rc *Receiver) Posts(path string) []Post {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []Post
	for _, p := range rc.got {
		if p.Path == path {
			out = append(out, p)
		}
	}
	return out
}

// WaitFor waits until a post on path satisfies match (its body decoded as JSON into a map) and
// returns its body; it fails the test after timeout.
func (rc *Receiver) WaitFor(t *testing.T, path string, timeout time.Duration, what string, match func(body []byte) bool) []byte {
	t.Helper()
	deadline := time.After(timeout)
	for {
		for _, p := range rc.Posts(path) {
			if match(p.Body) {
				return p.Body
			}
		}
		select {
		case <-rc.new:
		case <-time.After(200 * time.Millisecond):
		case <-deadline:
			var all []string
			for _, p := range rc.Posts(path) {
				all = append(all, string(p.Body))
			}
			t.Fatalf("%s: no matching POST on %s within %s; got:\n%s", what, path, timeout, strings.Join(all, "\n"))
			return nil
		}
	}
}

// JSONField decodes body and returns the string at a top-level key ("" when absent).
func JSONField(body []byte, key string) string {
	var m map[string]any
	if json.Unmarshal(body, &m) != nil {
		return ""
	}
	s, _ := m[key].(string)
	return s
}
