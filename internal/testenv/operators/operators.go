// Package operators makes operators with ed25519 key pairs for tests: the authorized_keys line
// the policy lists, a signer, and the OpenSSH private key file the CLI reads with --key.
package operators

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/stackrun/stackrun/internal/infra/trust"
	"github.com/stackrun/stackrun/internal/infra/trust/sshsign"
)

// Operator is a test operator and their key pair.
type Operator struct {
	Name   string
	Priv   ed25519.PrivateKey
	Signer sshsign.Signer
}

// New makes an operator with a fresh key.
func New(t testing.TB, name string) Operator {
	t.Helper()
	o, err := newOperator(name)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// Must makes an operator with a fresh key, for package-level fixtures; it panics on failure.
func Must(name string) Operator {
	o, err := newOperator(name)
	if err != nil {
		panic(err)
	}
	return o
}

func newOperator(name string) (Operator, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return Operator{}, err
	}
	s, err := sshsign.FromPrivateKey(priv, name+"@test")
	if err != nil {
		return Operator{}, err
	}
	return Operator{Name: name, Priv: priv, Signer: s}, nil
}

// Key is the public key as the policy holds it.
func (o Operator) Key() trust.Key { return o.Signer.Key() }

// AuthorizedKey is the public key as one authorized_keys line.
func (o Operator) AuthorizedKey() string { return o.Key().AuthorizedKey() }

// Fingerprint is the key's SHA256 fingerprint.
func (o Operator) Fingerprint() string { return o.Key().Fingerprint }

// Sign signs a statement now.
func (o Operator) Sign(t testing.TB, st trust.Statement) *trust.Signature {
	return o.SignAt(t, st, time.Now())
}

// SignAt signs a statement as if at the given time.
func (o Operator) SignAt(t testing.TB, st trust.Statement, at time.Time) *trust.Signature {
	t.Helper()
	sig, err := sshsign.Sign(o.Signer, st, at)
	if err != nil {
		t.Fatal(err)
	}
	return &sig
}

// WriteKeyFile writes the private key in OpenSSH format (mode 0600) into dir and returns its path.
func (o Operator) WriteKeyFile(t testing.TB, dir string) string {
	t.Helper()
	blk, err := ssh.MarshalPrivateKey(o.Priv, o.Name+"@test")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, strings.ReplaceAll(o.Name, "/", "_")+"_ed25519")
	if err := os.WriteFile(p, pem.EncodeToMemory(blk), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Policy is a key policy listing the operators.
func Policy(ops ...Operator) trust.Policy {
	var p trust.Policy
	for _, o := range ops {
		p.Operators = append(p.Operators, trust.Operator{Name: o.Name, Keys: []trust.Key{o.Key()}})
	}
	return p
}

// Team is a set of operators whose private key files are in one directory: what a test rig
// writes into trust.operators and what its CLI calls sign with.
type Team struct {
	Dir string
	Ops map[string]Operator
	// keys are the key files by operator.
	keys map[string]string
}

// NewTeam makes the operators and writes their key files into dir.
func NewTeam(t testing.TB, dir string, names ...string) *Team {
	t.Helper()
	tm := &Team{Dir: dir, Ops: map[string]Operator{}, keys: map[string]string{}}
	for _, n := range names {
		o := New(t, n)
		tm.Ops[n] = o
		tm.keys[n] = o.WriteKeyFile(t, dir)
	}
	return tm
}

// KeyFile is the private key file of an operator ("" for one not in the team).
func (tm *Team) KeyFile(name string) string { return tm.keys[name] }

// OperatorsYAML is the trust.operators list of the team, indented for a "trust:" section.
func (tm *Team) OperatorsYAML() string {
	var b strings.Builder
	b.WriteString("  operators:\n")
	for _, n := range sortedNames(tm.Ops) {
		b.WriteString("    - {name: " + n + ", keys: [\"" + tm.Ops[n].AuthorizedKey() + "\"]}\n")
	}
	return b.String()
}

// WithKey appends "--key <file>" for the operator named by "--as" in args (when in the team), so
// that a CLI call signs as the operator it names.
func (tm *Team) WithKey(args []string) []string {
	for i, a := range args {
		if a == "--as" && i+1 < len(args) {
			if f := tm.keys[args[i+1]]; f != "" {
				return append(append([]string(nil), args...), "--key", f)
			}
		}
	}
	return args
}

func sortedNames(m map[string]Operator) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
