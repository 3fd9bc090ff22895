//go:build e2e

package e2e

// The OpenStack lab (lab/up.sh) as end-to-end tests see it. Every e2e test that needs the lab
// starts with requireLab(t): it finds the lab, authenticates with its clouds.yaml entry "lab",
// and fails (never skips) when the lab is not up.

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stackrun/stackrun/internal/infra/openstack"
	"github.com/stackrun/stackrun/internal/testenv/devserver"
)

// Lab describes a running lab; its facts come from $STACKRUN_LAB_DIR/lab.env (written by up.sh).
type Lab struct {
	Dir        string            // $STACKRUN_LAB_DIR, default <repo>/.state/lab
	CloudsFile string            // clouds.yaml with the entries "lab" (admin) and "lab-demo"
	Config     string            // the lab's stackrun.yaml
	KnownHosts string            // known_hosts of every lab sshd ([ip]:port ed25519)
	KeyFile    string            // private key of the lab user (root on every lab host)
	SSHPort    int               // port of every lab sshd
	Hosts      map[string]string // host name -> loopback address (controller, compute1..3, storage1..3)
	Labctl     string            // lab/bin/labctl: start|stop|restart|kill|status <host> <service|all>
	Labfail    string            // lab/bin/labfail: failure tools (host-kill, compute-down, disk-fail...)
	Env        map[string]string // every key of lab.env
	Clients    *openstack.Clients
}

// labDir is $STACKRUN_LAB_DIR or the default state directory of this clone.
func labDir(t *testing.T) string {
	t.Helper()
	if dir := os.Getenv("STACKRUN_LAB_DIR"); dir != "" {
		return dir
	}
	return filepath.Join(devserver.RepoRoot(t), ".state", "lab")
}

// requireLab returns the running lab with admin clients of the cloud "lab", or fails the test
// with a message that says how to bring the lab up.
func requireLab(t *testing.T) *Lab {
	t.Helper()
	dir := labDir(t)
	notUp := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("the OpenStack lab at %s is not up: %s (run `make lab` or lab/up.sh; lab/status.sh shows what is wrong)",
			dir, fmt.Sprintf(format, args...))
	}
	env, err := readEnvFile(filepath.Join(dir, "lab.env"))
	if err != nil {
		notUp("%v", err)
	}
	l := &Lab{
		Dir:        dir,
		CloudsFile: filepath.Join(dir, "clouds.yaml"),
		Config:     filepath.Join(dir, "stackrun.yaml"),
		KnownHosts: env["LAB_KNOWN_HOSTS"],
		KeyFile:    env["LAB_SSH_KEY"],
		Labctl:     env["LABCTL"],
		Labfail:    env["LABFAIL"],
		Hosts:      map[string]string{},
		Env:        env,
	}
	if l.SSHPort, err = strconv.Atoi(env["LAB_SSH_PORT"]); err != nil {
		notUp("lab.env: LAB_SSH_PORT %q", env["LAB_SSH_PORT"])
	}
	for k, v := range env {
		if h, ok := strings.CutPrefix(k, "LAB_IP_"); ok {
			l.Hosts[h] = v
		}
	}
	for _, p := range []string{l.CloudsFile, l.Config, l.KnownHosts, l.KeyFile, l.Labctl, l.Labfail} {
		if _, err := os.Stat(p); err != nil {
			notUp("%v", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l.Clients, err = openstack.NewClients(ctx, openstack.Options{Cloud: "lab", CloudsFile: l.CloudsFile})
	if err != nil {
		notUp("%v", err)
	}
	return l
}

// HostNames returns the lab's host names in a stable order.
func (l *Lab) HostNames() []string {
	return []string{"controller", "compute1", "compute2", "compute3", "storage1", "storage2", "storage3"}
}

// Run executes one of the lab's tools (l.Labctl, l.Labfail or a script of lab/) and returns its
// combined output; it fails the test when the tool fails.
func (l *Lab) Run(t *testing.T, tool string, args ...string) string {
	t.Helper()
	out, err := l.Exec(tool, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(tool), strings.Join(args, " "), err, out)
	}
	return out
}

// Exec is Run without failing the test (for cleanups and expected failures).
func (l *Lab) Exec(tool string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, tool, args...)
	cmd.Env = append(os.Environ(), "STACKRUN_LAB_DIR="+l.Dir)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func readEnvFile(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if k, v, ok := strings.Cut(line, "="); ok {
			env[k] = v
		}
	}
	return env, sc.Err()
}
