package trust_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/stackrun/stackrun/internal/infra/trust"
	"github.com/stackrun/stackrun/internal/infra/trust/sshsign"
)

type operator struct {
	name   string
	signer sshsign.Signer
}

func newOperator(t *testing.T, name string) operator {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := sshsign.FromPrivateKey(priv, name+"@laptop")
	if err != nil {
		t.Fatal(err)
	}
	return operator{name: name, signer: s}
}

var now = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

func gateStatement(by string) trust.Statement {
	return trust.Statement{Kind: trust.KindGate, WorkflowID: "evacuate/compute1", RunID: "run-1",
		Name: "approve-plan", Outcome: "approve", Operator: by, Comment: "plan checked"}
}

func policyOf(ops ...operator) trust.Policy {
	var p trust.Policy
	for _, o := range ops {
		p.Operators = append(p.Operators, trust.Operator{Name: o.name, Keys: []trust.Key{o.signer.Key()}})
	}
	return p
}

func sign(t *testing.T, o operator, st trust.Statement, at time.Time) *trust.Signature {
	t.Helper()
	sig, err := sshsign.Sign(o.signer, st, at)
	if err != nil {
		t.Fatal(err)
	}
	return &sig
}

func wantReason(t *testing.T, err error, reason string) {
	t.Helper()
	var te *trust.Error
	if !errors.As(err, &te) {
		t.Fatalf("want a refusal %q, got %v", reason, err)
	}
	if te.Reason != reason {
		t.Fatalf("want reason %q, got %q (%v)", reason, te.Reason, err)
	}
}

func TestRoundTripEveryKind(t *testing.T) {
	alice := newOperator(t, "alice")
	p := policyOf(alice)
	for _, st := range []trust.Statement{
		gateStatement("alice"),
		{Kind: trust.KindResolve, WorkflowID: "swift-disk/s1/sdb", RunID: "r2", Name: "mkfs", Outcome: "retry", Operator: "alice"},
		{Kind: trust.KindStart, WorkflowID: "recover-host/compute2", InputDigest: trust.Digest([]byte(`{"host":"compute2"}`)), Operator: "alice"},
	} {
		sig := sign(t, alice, st, now)
		v, err := p.Verify(trust.Check{Statement: st, Signature: sig, Now: now.Add(time.Minute)})
		if err != nil {
			t.Fatalf("%s: %v", st.Kind, err)
		}
		if v.Operator != "alice" || v.Key != alice.signer.Key().Fingerprint || v.ChatUser != "" {
			t.Fatalf("%s: verified %+v", st.Kind, v)
		}
	}
}

func TestWrongKey(t *testing.T) {
	alice, bob, mallory := newOperator(t, "alice"), newOperator(t, "bob"), newOperator(t, "mallory")
	p := policyOf(alice, bob)
	// bob's key over a statement that names alice: --as alice with bob's key.
	st := gateStatement("alice")
	_, err := p.Verify(trust.Check{Statement: st, Signature: sign(t, bob, st, now), Now: now})
	wantReason(t, err, trust.ReasonWrongOperator)
	// a key the policy does not know at all.
	_, err = p.Verify(trust.Check{Statement: st, Signature: sign(t, mallory, st, now), Now: now})
	wantReason(t, err, trust.ReasonUnknownKey)
	// a key claimed to be alice's (her fingerprint) but made by mallory.
	sig := sign(t, mallory, st, now)
	sig.Key = alice.signer.Key().Fingerprint
	_, err = p.Verify(trust.Check{Statement: st, Signature: sig, Now: now})
	wantReason(t, err, trust.ReasonBadSignature)
	// an operator the policy lists without keys.
	st.Operator = "carol"
	_, err = p.Verify(trust.Check{Statement: st, Signature: sign(t, mallory, st, now), Now: now})
	wantReason(t, err, trust.ReasonUnknownKey)
}

func TestUnsignedAndMalformed(t *testing.T) {
	alice := newOperator(t, "alice")
	p := policyOf(alice)
	st := gateStatement("alice")
	_, err := p.Verify(trust.Check{Statement: st, Now: now})
	wantReason(t, err, trust.ReasonUnsigned)
	_, err = p.Verify(trust.Check{Statement: st, Signature: &trust.Signature{}, Now: now})
	wantReason(t, err, trust.ReasonUnsigned)
	good := sign(t, alice, st, now)
	for name, mutate := range map[string]func(s *trust.Signature){
		"sig not base64": func(s *trust.Signature) { s.Sig = "!!" },
		"sig too short":  func(s *trust.Signature) { s.Sig = "AAAA" },
		"nonce short":    func(s *trust.Signature) { s.Nonce = "abc" },
		"nonce newline":  func(s *trust.Signature) { s.Nonce = "abcdefghijklmnop\n" },
	} {
		s := *good
		mutate(&s)
		_, err := p.Verify(trust.Check{Statement: st, Signature: &s, Now: now})
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		wantReason(t, err, trust.ReasonMalformed)
	}
}

// Every field of the statement is covered: changing any one after signing breaks the signature.
func TestAlteredField(t *testing.T) {
	alice := newOperator(t, "alice")
	p := policyOf(alice)
	base := gateStatement("alice")
	sig := sign(t, alice, base, now)
	for name, mutate := range map[string]func(s *trust.Statement){
		"kind":        func(s *trust.Statement) { s.Kind = trust.KindResolve },
		"workflow_id": func(s *trust.Statement) { s.WorkflowID = "evacuate/compute2" },
		"run_id":      func(s *trust.Statement) { s.RunID = "run-2" },
		"name":        func(s *trust.Statement) { s.Name = "maintenance-done" },
		"outcome":     func(s *trust.Statement) { s.Outcome = "reject" },
		"input":       func(s *trust.Statement) { s.InputDigest = trust.Digest([]byte("x")) },
		"comment":     func(s *trust.Statement) { s.Comment = "plan checked, go" },
		"shifted":     func(s *trust.Statement) { s.Name, s.Outcome = "approve-pla", "napprove" },
	} {
		st := base
		mutate(&st)
		if _, err := p.Verify(trust.Check{Statement: st, Signature: sig, Now: now}); err == nil {
			t.Errorf("altered %s: accepted", name)
		} else {
			wantReason(t, err, trust.ReasonBadSignature)
		}
	}
	// The signature's own fields are signed too.
	for name, mutate := range map[string]func(s *trust.Signature){
		"issued_at": func(s *trust.Signature) { s.IssuedAt++ },
		"nonce":     func(s *trust.Signature) { s.Nonce = strings.Repeat("A", 22) },
	} {
		s := *sig
		mutate(&s)
		if _, err := p.Verify(trust.Check{Statement: base, Signature: &s, Now: now}); err == nil {
			t.Errorf("altered signature %s: accepted", name)
		} else {
			wantReason(t, err, trust.ReasonBadSignature)
		}
	}
}

func TestAnotherRun(t *testing.T) {
	alice := newOperator(t, "alice")
	p := policyOf(alice)
	old := gateStatement("alice")
	sig := sign(t, alice, old, now)
	// The next run on the same target has the same workflow ID and gate, another run ID.
	next := old
	next.RunID = "run-after-run-1"
	_, err := p.Verify(trust.Check{Statement: next, Signature: sig, Now: now})
	wantReason(t, err, trust.ReasonBadSignature)
}

func TestExpiredAndFuture(t *testing.T) {
	alice := newOperator(t, "alice")
	p := policyOf(alice)
	p.MaxAge = 5 * time.Minute
	st := gateStatement("alice")
	sig := sign(t, alice, st, now)
	if _, err := p.Verify(trust.Check{Statement: st, Signature: sig, Now: now.Add(5 * time.Minute)}); err != nil {
		t.Fatalf("at the limit: %v", err)
	}
	_, err := p.Verify(trust.Check{Statement: st, Signature: sig, Now: now.Add(5*time.Minute + time.Second)})
	wantReason(t, err, trust.ReasonExpired)
	_, err = p.Verify(trust.Check{Statement: st, Signature: sig, Now: now.Add(-trust.MaxSkew - time.Second)})
	wantReason(t, err, trust.ReasonNotYetValid)
	// The default maximum age applies when the policy sets none.
	p.MaxAge = 0
	_, err = p.Verify(trust.Check{Statement: st, Signature: sig, Now: now.Add(trust.DefaultMaxAge + time.Second)})
	wantReason(t, err, trust.ReasonExpired)
}

func TestReplayedNonce(t *testing.T) {
	alice := newOperator(t, "alice")
	p := policyOf(alice)
	st := gateStatement("alice")
	sig := sign(t, alice, st, now)
	var used trust.Nonces
	accept := func() error {
		if _, err := p.Verify(trust.Check{Statement: st, Signature: sig, Now: now}); err != nil {
			return err
		}
		if err := used.Check(sig.Nonce); err != nil {
			return err
		}
		used.Use(sig.Nonce)
		return nil
	}
	if err := accept(); err != nil {
		t.Fatal(err)
	}
	wantReason(t, accept(), trust.ReasonReplayed)
	// Bookkeeping is deterministic: sorted, no duplicates, survives JSON (workflow state).
	for _, n := range []string{"zzzzzzzzzzzzzzzz", "aaaaaaaaaaaaaaaa", "zzzzzzzzzzzzzzzz"} {
		used.Use(n)
	}
	b, _ := json.Marshal(used)
	var back trust.Nonces
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Used) != 3 || !slices.IsSorted(back.Used) || !back.Seen(sig.Nonce) || !back.Seen("aaaaaaaaaaaaaaaa") || back.Seen("bbbbbbbbbbbbbbbb") {
		t.Fatalf("nonces after JSON: %v", back.Used)
	}
}

func TestGatewayVouching(t *testing.T) {
	alice, bob := newOperator(t, "alice"), newOperator(t, "bob")
	gw := newOperator(t, "chat")
	p := policyOf(alice, bob)
	p.Gateways = []trust.Gateway{{Name: "chat", Key: gw.signer.Key(), Vouch: []trust.Vouch{
		{Operators: []string{"alice"}, Gates: []string{"approve-plan"}, Runbooks: []string{"evacuate-host"}},
	}}}
	vouched := func(st trust.Statement, chatUser string) *trust.Signature {
		st.ChatUser = chatUser
		return sign(t, gw, st, now)
	}
	st := gateStatement("alice")
	v, err := p.Verify(trust.Check{Statement: st, Signature: vouched(st, "slack:U1"), Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if v.ChatUser != "slack:U1" || v.Gateway != "chat" || v.Key != gw.signer.Key().Fingerprint {
		t.Fatalf("verified %+v", v)
	}
	// Not for bob, not on another gate.
	_, err = p.Verify(trust.Check{Statement: gateStatement("bob"), Signature: vouched(gateStatement("bob"), "slack:U2"), Now: now})
	wantReason(t, err, trust.ReasonNotVouched)
	other := gateStatement("alice")
	other.Name = "confirm-host-dead"
	_, err = p.Verify(trust.Check{Statement: other, Signature: vouched(other, "slack:U1"), Now: now})
	wantReason(t, err, trust.ReasonNotVouched)
	// Starts and resolves by runbook.
	start := trust.Statement{Kind: trust.KindStart, WorkflowID: "evacuate/compute1", InputDigest: trust.Digest(nil), Operator: "alice"}
	if _, err := p.Verify(trust.Check{Statement: start, Signature: vouched(start, "slack:U1"), Runbook: "evacuate-host", Now: now}); err != nil {
		t.Fatal(err)
	}
	_, err = p.Verify(trust.Check{Statement: start, Signature: vouched(start, "slack:U1"), Runbook: "recover-host", Now: now})
	wantReason(t, err, trust.ReasonNotVouched)
	// The chat user is signed: another one does not verify.
	sig := vouched(st, "slack:U1")
	sig.ChatUser = "slack:U9"
	_, err = p.Verify(trust.Check{Statement: st, Signature: sig, Now: now})
	wantReason(t, err, trust.ReasonBadSignature)
	// An operator's key cannot vouch; the gateway's key cannot sign as an operator.
	_, err = p.Verify(trust.Check{Statement: st, Signature: vouched(st, ""), Now: now})
	wantReason(t, err, trust.ReasonUnknownKey)
	aliceSays := gateStatement("alice")
	aliceSays.ChatUser = "slack:U1"
	_, err = p.Verify(trust.Check{Statement: st, Signature: sign(t, alice, aliceSays, now), Now: now})
	wantReason(t, err, trust.ReasonUnknownKey)
}

func TestPolicySurvivesJSON(t *testing.T) {
	alice := newOperator(t, "alice")
	p := policyOf(alice)
	p.MaxAge = time.Minute
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var back trust.Policy
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	st := gateStatement("alice")
	if _, err := back.Verify(trust.Check{Statement: st, Signature: sign(t, alice, st, now), Now: now}); err != nil {
		t.Fatal(err)
	}
	// A snapshot whose key bytes do not match their fingerprint is not used.
	back.Operators[0].Keys[0].Public[0] ^= 1
	_, err = back.Verify(trust.Check{Statement: st, Signature: sign(t, alice, st, now), Now: now})
	wantReason(t, err, trust.ReasonUnknownKey)
}

func TestAuthorizedKeysAndFingerprints(t *testing.T) {
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp))) + " alice@laptop"
	k, err := trust.ParseAuthorizedKey(line)
	if err != nil {
		t.Fatal(err)
	}
	if k.Fingerprint != ssh.FingerprintSHA256(sp) {
		t.Fatalf("fingerprint %s, x/crypto/ssh says %s", k.Fingerprint, ssh.FingerprintSHA256(sp))
	}
	if k.Comment != "alice@laptop" || k.AuthorizedKey() != line {
		t.Fatalf("round trip: %q -> %q", line, k.AuthorizedKey())
	}
	for name, bad := range map[string]string{
		"rsa":       "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC alice",
		"ecdsa":     "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTY alice",
		"options":   `from="10.0.0.1" ` + line,
		"not b64":   "ssh-ed25519 ***",
		"truncated": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA",
		"empty":     "",
		"mislabel":  "ssh-ed25519 " + strings.Fields(string(ssh.MarshalAuthorizedKey(rsaLike(t))))[1],
	} {
		if _, err := trust.ParseAuthorizedKey(bad); err == nil {
			t.Errorf("%s: accepted %q", name, bad)
		}
	}
}

// rsaLike is a key of another type (ECDSA via x/crypto/ssh's test-free path: a second ed25519
// blob relabelled is caught by the length check, so use a real non-ed25519 blob).
func rsaLike(t *testing.T) ssh.PublicKey {
	t.Helper()
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte("ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEmKSENjQEezOmxkZMy7opKgwFB9nkt5YRrYMjNuG5N87uRgg6CLrbo5wAdT/y6v0mKV0U2w0WZ2YB/++Tpockg= x"))
	if err != nil {
		t.Fatal(err)
	}
	return k
}
