package trust

import (
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
)

// DefaultMaxAge is how old a signature may be when it reaches the workflow, unless the policy
// says otherwise: long enough to paste a signed JSON into the web UI, short enough that a copy
// found later is useless.
const DefaultMaxAge = 10 * time.Minute

// MaxSkew is how far in the future a signature's issue time may be (clocks differ).
const MaxSkew = 2 * time.Minute

// Policy is the key policy a run takes with its policy snapshot: who holds which keys, what the
// chat gateway may vouch for, which gates may be decided unsigned, how old a signature may be.
type Policy struct {
	// Operators and their public keys (a slice, not a map: workflows never range over maps).
	Operators []Operator `json:"operators,omitempty"`
	// Gateways are the chat gateways' keys and whom each may vouch for.
	Gateways []Gateway `json:"gateways,omitempty"`
	// UnsignedGates may be decided by an unsigned message (a signal typed into the web UI). The
	// configuration refuses two-person gates here.
	UnsignedGates []string `json:"unsigned_gates,omitempty"`
	// MaxAge is how old a signature may be (0: DefaultMaxAge).
	MaxAge time.Duration `json:"max_age,omitempty"`
}

// Operator is one person and the keys they sign with.
type Operator struct {
	Name string `json:"name"`
	Keys []Key  `json:"keys"`
}

// KeysOf returns the operator's keys (nil for an operator the policy does not list).
func (p Policy) KeysOf(name string) []Key {
	for _, o := range p.Operators {
		if o.Name == name {
			return o.Keys
		}
	}
	return nil
}

// Gateway is a chat gateway's key and its vouching rules.
type Gateway struct {
	Name  string  `json:"name"`
	Key   Key     `json:"key"`
	Vouch []Vouch `json:"vouch,omitempty"`
}

// Vouch lets a gateway speak for some operators: on some gates, and for starts and stalled steps
// of some runbooks. "*" means every one.
type Vouch struct {
	Operators []string `json:"operators"`
	Gates     []string `json:"gates,omitempty"`
	Runbooks  []string `json:"runbooks,omitempty"`
}

// Reasons of a refusal, stable words the report and the tests use.
const (
	ReasonUnsigned      = "unsigned"
	ReasonMalformed     = "malformed"
	ReasonUnknownKey    = "unknown-key"
	ReasonWrongOperator = "wrong-operator"
	ReasonBadSignature  = "bad-signature"
	ReasonExpired       = "expired"
	ReasonNotYetValid   = "not-yet-valid"
	ReasonReplayed      = "replayed"
	ReasonNotVouched    = "not-vouched"
)

// Error is a refused signature: Reason is one of the Reason* words.
type Error struct {
	Reason string
	Detail string
}

func (e *Error) Error() string {
	if e.Detail == "" {
		return "signature refused: " + e.Reason
	}
	return "signature refused (" + e.Reason + "): " + e.Detail
}

func refuse(reason, format string, args ...any) *Error {
	return &Error{Reason: reason, Detail: fmt.Sprintf(format, args...)}
}

// Verified says who signed: the operator, the key's fingerprint, and for a vouched statement
// the chat user and the gateway.
type Verified struct {
	Operator string `json:"operator"`
	Key      string `json:"key"`
	ChatUser string `json:"chat_user,omitempty"`
	Gateway  string `json:"gateway,omitempty"`
}

var nonceRE = regexp.MustCompile(`^[A-Za-z0-9_-]{16,64}$`)

// Check is one verification: the statement the workflow rebuilt (without issue time, nonce and
// chat user, which come from the signature), the signature, the run's runbook (for vouching
// rules on starts and stalled steps), and the workflow's clock.
type Check struct {
	Statement Statement
	Signature *Signature
	Runbook   string
	Now       time.Time
}

// Verify checks c against the policy: a known key of the named operator (or of a gateway
// allowed to vouch for them there), a valid ed25519 signature over the statement, an issue time
// within MaxAge. Replays are the caller's to refuse (Nonces), after Verify succeeded. It is pure:
// workflows call it in validators and handlers.
func (p Policy) Verify(c Check) (Verified, error) {
	sig := c.Signature
	if sig == nil || (sig.Sig == "" && sig.Key == "") {
		return Verified{}, refuse(ReasonUnsigned, "the message carries no signature")
	}
	raw, err := base64.StdEncoding.DecodeString(sig.Sig)
	if err != nil || len(raw) != ed25519.SignatureSize {
		return Verified{}, refuse(ReasonMalformed, "sig is not a base64 ed25519 signature")
	}
	if !nonceRE.MatchString(sig.Nonce) {
		return Verified{}, refuse(ReasonMalformed, "nonce must be 16-64 characters of [A-Za-z0-9_-]")
	}
	st := c.Statement
	st.IssuedAt, st.Nonce, st.ChatUser = sig.IssuedAt, sig.Nonce, sig.ChatUser

	var key Key
	v := Verified{Operator: st.Operator, Key: sig.Key, ChatUser: sig.ChatUser}
	if sig.ChatUser == "" {
		k, ok := findKey(p.KeysOf(st.Operator), sig.Key)
		if !ok {
			if other := p.owner(sig.Key); other != "" {
				return Verified{}, refuse(ReasonWrongOperator, "key %s is %s's, not %s's", sig.Key, other, st.Operator)
			}
			if len(p.KeysOf(st.Operator)) == 0 {
				return Verified{}, refuse(ReasonUnknownKey, "operator %q has no key in the policy", st.Operator)
			}
			return Verified{}, refuse(ReasonUnknownKey, "key %s is not one of %s's keys", sig.Key, st.Operator)
		}
		key = k
	} else {
		g, ok := p.gateway(sig.Key)
		if !ok {
			return Verified{}, refuse(ReasonUnknownKey, "key %s is no chat gateway's key", sig.Key)
		}
		if !g.vouches(st, c.Runbook) {
			return Verified{}, refuse(ReasonNotVouched, "chat gateway %s may not speak for %s on %s", g.Name, st.Operator, subject(st, c.Runbook))
		}
		key, v.Gateway = g.Key, g.Name
	}
	if !ed25519.Verify(ed25519.PublicKey(key.Public), st.SignedData(), raw) {
		return Verified{}, refuse(ReasonBadSignature, "the signature does not match this %s (another run, gate, outcome or operator, or an altered field)", st.Kind)
	}
	issued := time.Unix(st.IssuedAt, 0)
	if age := c.Now.Sub(issued); age > p.maxAge() {
		return Verified{}, refuse(ReasonExpired, "signed %s ago, more than the %s the policy allows", age.Truncate(time.Second), p.maxAge())
	}
	if issued.Sub(c.Now) > MaxSkew {
		return Verified{}, refuse(ReasonNotYetValid, "signed %s in the future", issued.Sub(c.Now).Truncate(time.Second))
	}
	return v, nil
}

func (p Policy) maxAge() time.Duration {
	if p.MaxAge <= 0 {
		return DefaultMaxAge
	}
	return p.MaxAge
}

// MaxAgeOrDefault is the policy's maximum signature age.
func (p Policy) MaxAgeOrDefault() time.Duration { return p.maxAge() }

// AllowsUnsigned reports whether the gate may be decided without a signature.
func (p Policy) AllowsUnsigned(gate string) bool { return slices.Contains(p.UnsignedGates, gate) }

func findKey(keys []Key, fp string) (Key, bool) {
	for _, k := range keys {
		if k.Fingerprint == fp && k.Valid() {
			return k, true
		}
	}
	return Key{}, false
}

// owner is the operator holding the key ("" if none).
func (p Policy) owner(fp string) string {
	for _, o := range p.Operators {
		if _, ok := findKey(o.Keys, fp); ok {
			return o.Name
		}
	}
	return ""
}

func (p Policy) gateway(fp string) (Gateway, bool) {
	for _, g := range p.Gateways {
		if g.Key.Fingerprint == fp && g.Key.Valid() {
			return g, true
		}
	}
	return Gateway{}, false
}

func (g Gateway) vouches(st Statement, runbook string) bool {
	for _, v := range g.Vouch {
		if !allows(v.Operators, st.Operator) {
			continue
		}
		switch st.Kind {
		case KindGate:
			if allows(v.Gates, st.Name) {
				return true
			}
		case KindStart, KindResolve:
			if runbook != "" && allows(v.Runbooks, runbook) {
				return true
			}
		}
	}
	return false
}

func subject(st Statement, runbook string) string {
	switch st.Kind {
	case KindGate:
		return "gate " + st.Name
	case KindResolve:
		return "steps of " + runbook
	}
	return "starts of " + runbook
}

func allows(list []string, name string) bool {
	return slices.Contains(list, "*") || slices.Contains(list, name) || slices.Contains(list, strings.ToLower(name))
}

// Nonces is a run's bookkeeping of the nonces it has accepted. It is a sorted slice, not a map,
// so that workflows stay deterministic, and it travels in the run's state. Nothing is forgotten
// within a run: only verified signatures add to it, a handful per run, and forgetting would let a
// replay through if the policy's maximum age grew later.
type Nonces struct {
	Used []string `json:"used,omitempty"`
}

// Seen reports whether the nonce was used (a replay).
func (n *Nonces) Seen(nonce string) bool {
	_, found := slices.BinarySearch(n.Used, nonce)
	return found
}

// Check refuses a replayed nonce.
func (n *Nonces) Check(nonce string) error {
	if n.Seen(nonce) {
		return refuse(ReasonReplayed, "nonce %s was already used in this run", nonce)
	}
	return nil
}

// Use records a nonce.
func (n *Nonces) Use(nonce string) {
	if i, found := slices.BinarySearch(n.Used, nonce); !found {
		n.Used = slices.Insert(n.Used, i, nonce)
	}
}
