//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stackrun/stackrun/internal/app/control"
	"github.com/stackrun/stackrun/internal/infra/trust/sshsign"
	"github.com/stackrun/stackrun/internal/testenv/devserver"
	"github.com/stackrun/stackrun/workflows"
)

// The e2e tests start and decide exactly as operators do: signed. The lab's operators (alice
// and bob approve, carol starts) have key pairs in $STACKRUN_LAB_DIR/operators, made by
// lab/up.sh, whose stackrun.yaml lists them (trust.keys_file). A lab brought up before that gets
// the same three operators with keys of this test process, in a directory of its own, and every
// worker the tests start is pointed at them (STACKRUN_TRUST_KEYS_FILE).
var (
	teamOnce sync.Once
	teamDir  string
	teamErr  error
)

// operatorsDir is the directory of the operators' keys ("<name>_ed25519" and "keys").
func operatorsDir(t testing.TB) string {
	t.Helper()
	teamOnce.Do(func() {
		lab := os.Getenv("STACKRUN_LAB_DIR")
		if lab == "" {
			lab = filepath.Join(devserver.RepoRoot(t), ".state", "lab")
		}
		if _, err := os.Stat(filepath.Join(lab, "operators", "keys")); err == nil {
			teamDir = filepath.Join(lab, "operators")
			return
		}
		teamDir, teamErr = os.MkdirTemp("", "stackrun-e2e-operators-")
		if teamErr != nil {
			return
		}
		var lines []string
		for _, o := range []string{"alice", "bob", "carol"} {
			key := filepath.Join(teamDir, o+"_ed25519")
			if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", o+"@e2e", "-f", key).CombinedOutput(); err != nil {
				teamErr = fmt.Errorf("ssh-keygen: %v: %s", err, out)
				return
			}
			pub, err := os.ReadFile(key + ".pub")
			if err != nil {
				teamErr = err
				return
			}
			lines = append(lines, o+" "+strings.TrimSpace(string(pub)))
		}
		teamErr = os.WriteFile(filepath.Join(teamDir, "keys"), []byte(strings.Join(lines, "\n")+"\n"), 0o644)
	})
	if teamErr != nil {
		t.Fatalf("operators' keys: %v", teamErr)
	}
	return teamDir
}

// operatorKeysFile is the trust.keys_file every worker of the tests reads.
func operatorKeysFile(t testing.TB) string { return filepath.Join(operatorsDir(t), "keys") }

// as signs as a lab operator (alice, bob, carol).
func as(t testing.TB, operator string) control.Signer {
	t.Helper()
	k, err := sshsign.FromKeyFile(filepath.Join(operatorsDir(t), operator+"_ed25519"), nil)
	if err != nil {
		t.Fatalf("no key for %s: %v", operator, err)
	}
	return control.KeySigner{Key: k}
}

// asRequester signs as the operator who requests in.
func asRequester(t testing.TB, in workflows.Input) control.Signer {
	return as(t, in.GetMeta().RequestedBy)
}
