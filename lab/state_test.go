// Package lab holds the tests of the lab's shell scripts that need no lab: here, where up.sh
// keeps the lab's state when the clone sits in a directory the service users cannot enter
// (lib/state.sh). Bringing a whole lab up from such a clone is the manual check in lab/README.md.
package lab

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stackrun/stackrun/config"
)

type shResult struct {
	stdout, stderr string
	code           int
}

// placeState runs up.sh's placement (lib/common.sh, lib/state.sh, lab_place_state) for the state
// directory want, with nobody standing in for the service users (it exists on every machine;
// mysql, rabbitmq and swift only once the lab's packages are installed).
func placeState(t *testing.T, want, base string) shResult {
	t.Helper()
	script := `set -euo pipefail
source lib/common.sh
source lib/state.sh
lab_place_state
echo "LAB=$LAB"`
	cmd := exec.Command("bash", "-c", script)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "STACKRUN_LAB_DIR=" + want,
		"LAB_STATE_BASE=" + base, "LAB_SERVICE_USERS=nobody"}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	r := shResult{stdout: out.String(), stderr: errOut.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	t.Logf("place %s: exit %d\n%s%s", want, r.code, r.stdout, r.stderr)
	return r
}

func mkdir(t *testing.T, dir string, mode os.FileMode) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, mode); err != nil {
		t.Fatal(err)
	}
	return dir
}

// asNobody reports whether nobody may enter dir (search permission along the whole path).
func asNobody(dir string) bool {
	return exec.Command("/usr/bin/setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "test", "-x", dir).Run() == nil
}

func TestStatePlacement(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root, as the lab does (setpriv to another user)")
	}
	// t.TempDir's directories are 0700: open the way to tmp, then build the layouts below it.
	tmp := t.TempDir()
	for d := tmp; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		mkdir(t, d, 0o755)
	}
	base := filepath.Join(tmp, "var-lib-stackrun")
	open := mkdir(t, filepath.Join(tmp, "srv", "src"), 0o755)
	home := mkdir(t, filepath.Join(tmp, "home"), 0o700) // like root's home on Debian
	mkdir(t, filepath.Join(home, "src"), 0o755)
	if asNobody(filepath.Join(home, "src")) || !asNobody(open) {
		t.Fatalf("test layout: nobody must pass %s and not %s", open, home)
	}

	t.Run("reachable", func(t *testing.T) {
		want := filepath.Join(open, "stackrun", ".state", "lab")
		r := placeState(t, want, base)
		if r.code != 0 || r.stdout != "LAB="+want+"\n" || r.stderr != "" {
			t.Fatalf("a reachable state directory must stay where it is: %+v", r)
		}
		if _, err := os.Lstat(want); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("placement created %s: %v", want, err)
		}
		if _, err := os.Stat(base); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("placement created %s: %v", base, err)
		}
	})

	t.Run("private-home", func(t *testing.T) {
		want := filepath.Join(home, "src", "stackrun", ".state", "lab")
		r := placeState(t, want, base)
		if r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		target, err := os.Readlink(want)
		if err != nil {
			t.Fatalf("%s is not a link to the state: %v", want, err)
		}
		if filepath.Dir(target) != base || !strings.HasPrefix(filepath.Base(target), "lab-") {
			t.Errorf("state kept in %s, want a lab-<hash> under %s", target, base)
		}
		if !strings.HasSuffix(r.stdout, "LAB="+target+"\n") {
			t.Errorf("LAB is not the kept state: %q", r.stdout)
		}
		for _, w := range []string{"user nobody cannot reach " + want, home + " is drwx------", "linked from " + want} {
			if !strings.Contains(r.stdout, w) {
				t.Errorf("the message lacks %q: %q", w, r.stdout)
			}
		}
		if !asNobody(target) {
			t.Errorf("nobody cannot enter %s", target)
		}
		if b, err := os.ReadFile(filepath.Join(target, ".origin")); err != nil || string(b) != want+"\n" {
			t.Errorf(".origin: %q %v", b, err)
		}
		// A second run (and every lab script) follows the link: same place, nothing said.
		r = placeState(t, want, base)
		if r.code != 0 || r.stdout != "LAB="+target+"\n" {
			t.Errorf("second run: %+v", r)
		}
		// down.sh --purge removes the state and the link.
		purge := exec.Command("./down.sh", "--purge")
		purge.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "STACKRUN_LAB_DIR=" + want}
		out, err := purge.CombinedOutput()
		if err != nil {
			t.Fatalf("down.sh --purge: %v\n%s", err, out)
		}
		for _, p := range []string{target, want} {
			if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("down.sh --purge left %s: %v\n%s", p, err, out)
			}
		}
	})

	t.Run("empty-dir", func(t *testing.T) {
		want := mkdir(t, filepath.Join(home, "src", "empty", ".state", "lab"), 0o755)
		r := placeState(t, want, base)
		if fi, err := os.Lstat(want); r.code != 0 || err != nil || fi.Mode()&os.ModeSymlink == 0 {
			t.Fatalf("an empty state directory is replaced by the link: %+v %v", r, err)
		}
	})

	t.Run("existing-lab", func(t *testing.T) {
		want := mkdir(t, filepath.Join(home, "src", "old", ".state", "lab"), 0o755)
		if err := os.WriteFile(filepath.Join(want, "lab.env"), []byte("x\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		before, _ := os.ReadDir(base)
		r := placeState(t, want, base)
		if r.code != 1 || r.stdout != "" {
			t.Fatalf("an existing lab in an unreachable place must be refused: %+v", r)
		}
		for _, w := range []string{
			"the lab's state " + want + " cannot be reached by user nobody: " + home + " is drwx------ root:root",
			"lab/down.sh --purge, then run again",
			"chmod o+x " + home,
			"STACKRUN_LAB_DIR=",
		} {
			if !strings.Contains(r.stderr, w) {
				t.Errorf("the refusal lacks %q:\n%s", w, r.stderr)
			}
		}
		after, _ := os.ReadDir(base)
		if fi, err := os.Lstat(want); err != nil || !fi.IsDir() || len(after) != len(before) {
			t.Errorf("the refusal changed something: %v %v, %d -> %d entries in %s", fi, err, len(before), len(after), base)
		}
	})
}

// TestUpPlacesStateFirst: up.sh runs the placement after installing the packages (they create the
// service users), before it sources the libraries that derive paths from $LAB and before it
// writes anything under $LAB. A cheap guard on the script's order;
// that the whole lab then works from the kept state is the manual clone check (lab/README.md).
func TestUpPlacesStateFirst(t *testing.T) {
	b, err := os.ReadFile("up.sh")
	if err != nil {
		t.Fatal(err)
	}
	up := string(b)
	apt := strings.Index(up, "\napt_install ")
	place := strings.Index(up, "\nlab_place_state")
	write := strings.Index(up, `mkdir -p "$LAB`)
	if apt < 0 || place < 0 || write < 0 || !(apt < place && place < write) {
		t.Fatalf("up.sh must call apt_install, then lab_place_state, then create $LAB (at %d, %d, %d)", apt, place, write)
	}
	// configs.sh (C=...) and the others derive paths from $LAB when sourced: a library sourced
	// before the placement writes the old, unreachable path into my.cnf (seen on the first run).
	for _, lib := range []string{"services", "configs", "disks", "check", "alertmanager", "stackrun_yaml"} {
		if i := strings.Index(up, `source "$LAB_SRC/lib/`+lib+`.sh"`); i >= 0 && i < place {
			t.Errorf("up.sh sources lib/%s.sh before lab_place_state", lib)
		}
	}
	if i := strings.Index(up, `source "$LAB_SRC/lib/state.sh"`); i < 0 || i > place {
		t.Error("up.sh does not source lib/state.sh before lab_place_state")
	}
}

// TestForeignLabProcesses: up.sh kills what labctl of another clone's lab started (LAB_HOST and
// another STACKRUN_LAB_DIR in the environment), never a process that merely has
// STACKRUN_LAB_DIR (make exports it to everything it runs: other helpers' tests and tools), nor
// its own, whether named by the real path or by the link.
func TestForeignLabProcesses(t *testing.T) {
	tmp := t.TempDir()
	real := mkdir(t, filepath.Join(tmp, "kept", "lab-1"), 0o755)
	link := filepath.Join(tmp, "repo", ".state", "lab")
	mkdir(t, filepath.Dir(link), 0o755)
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(tmp, "other", ".state", "lab")
	start := func(env ...string) int {
		t.Helper()
		cmd := exec.Command("/usr/bin/sleep", "60")
		cmd.Env = env
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd.Process.Pid
	}
	procs := []struct {
		name string
		pid  int
		want string
	}{
		{"another lab's daemon", start("LAB_HOST=controller", "STACKRUN_LAB_DIR="+other), other},
		{"a process make started for another clone", start("STACKRUN_LAB_DIR=" + other), ""},
		{"our daemon", start("LAB_HOST=controller", "STACKRUN_LAB_DIR="+real), ""},
		{"our daemon, by the link", start("LAB_HOST=storage1", "STACKRUN_LAB_DIR="+link), ""},
		{"no lab at all", start("PATH=/usr/bin"), ""},
	}
	var script strings.Builder
	script.WriteString("set -euo pipefail\nsource lib/common.sh\nsource lib/state.sh\n")
	for _, p := range procs {
		fmt.Fprintf(&script, "echo \"%d=$(lab_foreign %d)\"\n", p.pid, p.pid)
	}
	cmd := exec.Command("bash", "-c", script.String())
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "STACKRUN_LAB_DIR=" + link}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, p := range procs {
		if line := fmt.Sprintf("%d=%s\n", p.pid, p.want); !strings.Contains(string(out), line) {
			t.Errorf("%s: want %q in\n%s", p.name, line, out)
		}
	}
}

// TestLabConfigChat: the lab's stackrun.yaml (lib/stackrun_yaml.sh) takes a chat: section from
// $LAB/chat.yaml and then gives the chat gateway a key and trust.chat_gateway, so that the
// configuration is complete for `stackrun chat serve` (which make run starts); without the file
// it has neither.
func TestLabConfigChat(t *testing.T) {
	write := func(lab string) *config.Config {
		t.Helper()
		script := `set -euo pipefail
source lib/common.sh; source lib/services.sh; source lib/configs.sh; source lib/alertmanager.sh; source lib/stackrun_yaml.sh
write_stackrun_yaml`
		cmd := exec.Command("bash", "-c", script)
		cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "STACKRUN_LAB_DIR=" + lab}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("write_stackrun_yaml: %v\n%s", err, out)
		}
		cfg, err := config.Load(config.LoadOptions{Path: filepath.Join(lab, "stackrun.yaml"), LookupEnv: config.MapEnv(nil)})
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	lab := t.TempDir()
	cfg := write(lab)
	if err := cfg.ValidateFor(config.ForCLI); err != nil {
		t.Fatalf("the lab's configuration: %v", err)
	}
	if cfg.Trust.ChatGateway.PublicKey != "" || cfg.Chat.Mattermost.Token != "" {
		t.Errorf("a chat gateway without chat.yaml: %+v", cfg.Trust.ChatGateway)
	}

	chat := `chat:
  mattermost:
    token: lab-token-0123456789
  users:
    - operator: alice
      mattermost: 8ifn9j3wpjgu5cz1nd8mydmzja
      roles: [oncall]
  roles:
    oncall:
      runbooks: ["*"]
      gates: ["*"]
`
	if err := os.WriteFile(filepath.Join(lab, "chat.yaml"), []byte(chat), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg = write(lab)
	if err := cfg.ValidateFor(config.ForChat); err != nil {
		t.Fatalf("the lab's configuration with chat.yaml is not complete for the gateway: %v", err)
	}
	gw := cfg.Trust.ChatGateway
	pub, err := os.ReadFile(gw.PrivateKeyFile + ".pub")
	if err != nil || !strings.HasPrefix(string(pub), gw.PublicKey+" ") || len(gw.Vouch) != 1 {
		t.Errorf("gateway key %s, public key %q, vouch %+v: %v", gw.PrivateKeyFile, gw.PublicKey, gw.Vouch, err)
	}
	if cfg.Chat.Mattermost.Token != "lab-token-0123456789" {
		t.Errorf("chat section not taken from chat.yaml: %+v", cfg.Chat)
	}
}
