package sshsign_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stackrun/stackrun/internal/infra/trust"
	"github.com/stackrun/stackrun/internal/infra/trust/sshsign"
)

func need(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (make deps installs openssh-client)", tool)
		}
	}
}

// keygen makes an ed25519 key pair with OpenSSH's ssh-keygen, as an operator would.
func keygen(t *testing.T, dir, name, passphrase string) (priv string, pub trust.Key) {
	t.Helper()
	priv = filepath.Join(dir, name)
	out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-C", name+"@test", "-f", priv).CombinedOutput()
	if err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	line, err := os.ReadFile(priv + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	pub, err = trust.ParseAuthorizedKey(string(line))
	if err != nil {
		t.Fatal(err)
	}
	return priv, pub
}

var stmt = trust.Statement{Kind: trust.KindGate, WorkflowID: "swift-disk/storage1/sdb", RunID: "0193-run",
	Name: "overwrite-disk", Outcome: "approve", Operator: "alice"}

func verify(t *testing.T, pub trust.Key, sig trust.Signature) {
	t.Helper()
	p := trust.Policy{Operators: []trust.Operator{{Name: "alice", Keys: []trust.Key{pub}}}}
	if _, err := p.Verify(trust.Check{Statement: stmt, Signature: &sig, Now: time.Unix(sig.IssuedAt, 0)}); err != nil {
		t.Fatal(err)
	}
}

func TestKeyFileAndOpenSSHFingerprint(t *testing.T) {
	need(t, "ssh-keygen")
	dir := t.TempDir()
	priv, pub := keygen(t, dir, "alice", "")
	s, err := sshsign.FromKeyFile(priv, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.Key().Fingerprint != pub.Fingerprint {
		t.Fatalf("key file gives %s, .pub gives %s", s.Key().Fingerprint, pub.Fingerprint)
	}
	// The fingerprint is the one `ssh-keygen -lf` prints.
	out, err := exec.Command("ssh-keygen", "-l", "-E", "sha256", "-f", priv+".pub").Output()
	if err != nil {
		t.Fatal(err)
	}
	if f := strings.Fields(string(out)); len(f) < 2 || f[1] != pub.Fingerprint {
		t.Fatalf("ssh-keygen -lf: %q, we say %s", out, pub.Fingerprint)
	}
	sig, err := sshsign.Sign(s, stmt, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	verify(t, pub, sig)
	// Two signatures of the same statement differ in their nonce.
	sig2, _ := sshsign.Sign(s, stmt, time.Now())
	if sig2.Nonce == sig.Nonce || len(sig.Nonce) != 22 {
		t.Fatalf("nonces %q and %q", sig.Nonce, sig2.Nonce)
	}
}

func TestEncryptedKeyFile(t *testing.T) {
	need(t, "ssh-keygen")
	priv, pub := keygen(t, t.TempDir(), "alice", "correct horse")
	if _, err := sshsign.FromKeyFile(priv, nil); !errors.Is(err, sshsign.ErrEncrypted) {
		t.Fatalf("want ErrEncrypted, got %v", err)
	}
	if _, err := sshsign.FromKeyFile(priv, []byte("wrong")); err == nil {
		t.Fatal("wrong passphrase accepted")
	}
	s, err := sshsign.FromKeyFile(priv, []byte("correct horse"))
	if err != nil {
		t.Fatal(err)
	}
	sig, err := sshsign.Sign(s, stmt, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	verify(t, pub, sig)
}

// OpenSSH's own `ssh-keygen -Y sign -n stackrun` over the canonical statement makes the very
// signature we make (ed25519 is deterministic): our SSHSIG wrapping is OpenSSH's.
func TestSameSignatureAsSSHKeygen(t *testing.T) {
	need(t, "ssh-keygen")
	dir := t.TempDir()
	priv, pub := keygen(t, dir, "alice", "")
	s, err := sshsign.FromKeyFile(priv, nil)
	if err != nil {
		t.Fatal(err)
	}
	st := stmt
	st.IssuedAt, st.Nonce = 1764583200, "AAAAAAAAAAAAAAAAAAAAAA"
	msg := filepath.Join(dir, "statement")
	if err := os.WriteFile(msg, st.Canonical(), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("ssh-keygen", "-Y", "sign", "-f", priv, "-n", trust.Namespace, msg).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen -Y sign: %v: %s", err, out)
	}
	armored, err := os.ReadFile(msg + ".sig")
	if err != nil {
		t.Fatal(err)
	}
	theirs := rawFromSSHSIG(t, armored)
	ours, err := s.SignData(st.SignedData())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(theirs, ours) {
		t.Fatalf("ssh-keygen's signature differs from ours:\n%x\n%x", theirs, ours)
	}
	verify(t, pub, trust.Signature{Key: pub.Fingerprint, IssuedAt: st.IssuedAt, Nonce: st.Nonce, Sig: base64.StdEncoding.EncodeToString(theirs)})
}

// rawFromSSHSIG takes the raw ed25519 signature out of an armored SSHSIG file.
func rawFromSSHSIG(t *testing.T, armored []byte) []byte {
	t.Helper()
	blk, _ := pem.Decode(armored)
	if blk == nil || blk.Type != "SSH SIGNATURE" {
		t.Fatalf("not an SSH SIGNATURE: %s", armored)
	}
	b := blk.Bytes
	if !bytes.HasPrefix(b, []byte("SSHSIG")) {
		t.Fatal("no SSHSIG magic")
	}
	b = b[6+4:] // magic, version
	str := func() []byte {
		n := binary.BigEndian.Uint32(b)
		s := b[4 : 4+n]
		b = b[4+n:]
		return s
	}
	_ = str() // public key
	if ns := string(str()); ns != trust.Namespace {
		t.Fatalf("namespace %q", ns)
	}
	_ = str() // reserved
	if h := string(str()); h != "sha512" {
		t.Fatalf("hash %q", h)
	}
	sig := str()
	b = sig
	if f := string(str()); f != trust.KeyTypeEd25519 {
		t.Fatalf("signature format %q", f)
	}
	return str()
}

// A real ssh-agent signs; a second key in it needs the policy to say which one is ours.
func TestAgent(t *testing.T) {
	need(t, "ssh-keygen", "ssh-agent", "ssh-add")
	dir := t.TempDir()
	sock := filepath.Join(dir, "agent.sock")
	ctx, cancel := context.WithCancel(context.Background())
	agentCmd := exec.CommandContext(ctx, "ssh-agent", "-D", "-a", sock)
	if err := agentCmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = agentCmd.Wait() })
	for i := 0; i < 100; i++ {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, _, err := sshsign.FromAgent(sock, nil); err == nil || !strings.Contains(err.Error(), "no ed25519 key") {
		t.Fatalf("empty agent: %v", err)
	}
	add := func(priv string) {
		cmd := exec.Command("ssh-add", priv)
		cmd.Env = append(os.Environ(), "SSH_AUTH_SOCK="+sock)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("ssh-add: %v: %s", err, out)
		}
	}
	alicePriv, alicePub := keygen(t, dir, "alice", "")
	add(alicePriv)
	s, closeAgent, err := sshsign.FromAgent(sock, nil)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := sshsign.Sign(s, stmt, time.Now())
	closeAgent()
	if err != nil {
		t.Fatal(err)
	}
	verify(t, alicePub, sig)

	otherPriv, otherPub := keygen(t, dir, "other", "")
	add(otherPriv)
	if _, _, err := sshsign.FromAgent(sock, nil); err == nil || !strings.Contains(err.Error(), "2 ed25519 keys") {
		t.Fatalf("two keys, no choice: %v", err)
	}
	s, closeAgent, err = sshsign.FromAgent(sock, []string{otherPub.Fingerprint})
	if err != nil {
		t.Fatal(err)
	}
	defer closeAgent()
	if s.Key().Fingerprint != otherPub.Fingerprint {
		t.Fatalf("picked %s", s.Key().Fingerprint)
	}
	if _, _, err := sshsign.FromAgent(sock, []string{"SHA256:nothere"}); err == nil {
		t.Fatal("a fingerprint the agent does not hold was accepted")
	}
}
