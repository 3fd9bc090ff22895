package config

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/stackrun/stackrun/internal/infra/trust"
)

// Trust says who may sign what: each operator's ed25519 public keys (OpenSSH authorized_keys
// lines), the chat gateway's key and whom it may vouch for, the gates that may be decided
// unsigned, and how old a signature may be. The worker turns it into the key policy every run
// snapshots at its start (and asks again before it accepts a decision, so a revoked key stops
// working in waiting runs at once). Clients only read SigningKeyFile.
type Trust struct {
	// Operators and their public keys.
	Operators []TrustOperator `mapstructure:"operators" yaml:"operators" json:"operators"`
	// KeysFile adds keys from a file, one "<operator> ssh-ed25519 AAAA... [comment]" per line
	// ('#' starts a comment): rotate keys without editing this file. The worker reads it again
	// whenever it changes.
	KeysFile string `mapstructure:"keys_file" yaml:"keys_file,omitempty" json:"keys_file,omitempty"`
	// ChatGateway is the chat gateway's key pair and what it may vouch for.
	ChatGateway TrustGateway `mapstructure:"chat_gateway" yaml:"chat_gateway" json:"chat_gateway"`
	// UnsignedGates may be decided by an unsigned signal (the Temporal web UI's "Send a Signal"
	// without a signed JSON). Never a two-person gate. Default none.
	UnsignedGates []string `mapstructure:"unsigned_gates" yaml:"unsigned_gates" json:"unsigned_gates"`
	// MaxSignatureAge is how old a signature may be when the run receives it (default 10m).
	MaxSignatureAge time.Duration `mapstructure:"max_signature_age" yaml:"max_signature_age" json:"max_signature_age"`
	// SigningKeyFile is the CLI's private key (OpenSSH format, ed25519) when it does not sign
	// through ssh-agent; --key overrides it.
	SigningKeyFile string `mapstructure:"signing_key_file" yaml:"signing_key_file,omitempty" json:"signing_key_file,omitempty"`
}

// TrustOperator is one operator's keys.
type TrustOperator struct {
	Name string   `mapstructure:"name" yaml:"name" json:"name"`
	Keys []string `mapstructure:"keys" yaml:"keys" json:"keys"`
}

// TrustGateway is the chat gateway's key: the worker needs PublicKey, the gateway
// PrivateKeyFile. Vouch lists whom it may speak for, on which gates and runbooks.
type TrustGateway struct {
	PublicKey      string       `mapstructure:"public_key" yaml:"public_key" json:"public_key"`
	PrivateKeyFile string       `mapstructure:"private_key_file" yaml:"private_key_file,omitempty" json:"private_key_file,omitempty"`
	Vouch          []TrustVouch `mapstructure:"vouch" yaml:"vouch" json:"vouch"`
}

// TrustVouch is one rule: the gateway may vouch for these operators ("*": every one) on these
// gates, and for starts and stalled steps of these runbooks.
type TrustVouch struct {
	Operators []string `mapstructure:"operators" yaml:"operators" json:"operators"`
	Gates     []string `mapstructure:"gates" yaml:"gates" json:"gates"`
	Runbooks  []string `mapstructure:"runbooks" yaml:"runbooks" json:"runbooks"`
}

// DefaultMaxSignatureAge is trust.max_signature_age's default.
const DefaultMaxSignatureAge = trust.DefaultMaxAge

// MaxMaxSignatureAge bounds trust.max_signature_age: a signature is a one-off, not a credential.
const MaxMaxSignatureAge = 24 * time.Hour

// ChatGatewayName names the chat gateway in verified decisions.
const ChatGatewayName = "chat"

func defaultTrust() Trust { return Trust{MaxSignatureAge: DefaultMaxSignatureAge} }

// KeyPolicy builds the key policy runs verify against: every key parsed, the keys file read.
// The worker calls it at start and whenever the files change.
func (c *Config) KeyPolicy() (trust.Policy, error) {
	var ps Problems
	p := c.keyPolicy(&ps)
	if len(ps) > 0 {
		return trust.Policy{}, ps
	}
	return p, nil
}

func (c *Config) keyPolicy(ps *Problems) trust.Policy {
	t := c.Trust
	p := trust.Policy{UnsignedGates: slices.Clone(t.UnsignedGates), MaxAge: t.MaxSignatureAge}
	byName := map[string]int{}
	owner := map[string]string{} // fingerprint -> operator
	add := func(key, name, line string) {
		k, err := trust.ParseAuthorizedKey(line)
		if err != nil {
			ps.add(key, "%v", err)
			return
		}
		if prev, dup := owner[k.Fingerprint]; dup && prev != name {
			ps.add(key, "key %s is already %s's: every key names one operator", k.Fingerprint, prev)
			return
		} else if dup {
			return
		}
		owner[k.Fingerprint] = name
		i, ok := byName[name]
		if !ok {
			i = len(p.Operators)
			byName[name] = i
			p.Operators = append(p.Operators, trust.Operator{Name: name})
		}
		p.Operators[i].Keys = append(p.Operators[i].Keys, k)
	}
	seen := map[string]bool{}
	for i, o := range t.Operators {
		key := fmt.Sprintf("trust.operators[%d]", i)
		if !operatorRE.MatchString(o.Name) {
			ps.add(key+".name", "%q is not a valid operator name (letters, digits, '._@-', at most 64)", o.Name)
			continue
		}
		if seen[o.Name] {
			ps.add(key+".name", "operator %q listed twice", o.Name)
		}
		seen[o.Name] = true
		if len(o.Keys) == 0 {
			ps.add(key+".keys", "required: at least one ssh-ed25519 public key")
		}
		for j, line := range o.Keys {
			add(fmt.Sprintf("%s.keys[%d]", key, j), o.Name, line)
		}
	}
	if t.KeysFile != "" {
		b, err := os.ReadFile(t.KeysFile)
		if err != nil {
			ps.add("trust.keys_file", "%v", err)
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for n := 1; sc.Scan(); n++ {
			line := strings.TrimSpace(sc.Text())
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			name, rest, _ := strings.Cut(line, " ")
			key := fmt.Sprintf("trust.keys_file line %d", n)
			if !operatorRE.MatchString(name) {
				ps.add(key, "want \"<operator> ssh-ed25519 AAAA... [comment]\", got an operator name %q", name)
				continue
			}
			add(key, name, rest)
		}
	}
	// Sorted by name: the snapshot is the same whatever the order of the file.
	slices.SortFunc(p.Operators, func(a, b trust.Operator) int { return strings.Compare(a.Name, b.Name) })

	gw := t.ChatGateway
	if gw.PublicKey != "" {
		k, err := trust.ParseAuthorizedKey(gw.PublicKey)
		switch {
		case err != nil:
			ps.add("trust.chat_gateway.public_key", "%v", err)
		case owner[k.Fingerprint] != "":
			ps.add("trust.chat_gateway.public_key", "is %s's key: the gateway needs a key of its own", owner[k.Fingerprint])
		default:
			g := trust.Gateway{Name: ChatGatewayName, Key: k}
			for _, v := range gw.Vouch {
				g.Vouch = append(g.Vouch, trust.Vouch{Operators: slices.Clone(v.Operators), Gates: slices.Clone(v.Gates), Runbooks: slices.Clone(v.Runbooks)})
			}
			p.Gateways = append(p.Gateways, g)
		}
	}
	return p
}

func (c *Config) validateTrust(ps *Problems, p Purpose) {
	t := c.Trust
	pol := c.keyPolicy(ps)
	if t.MaxSignatureAge <= 0 || t.MaxSignatureAge > MaxMaxSignatureAge {
		ps.add("trust.max_signature_age", "%v: must be between 1s and %v", t.MaxSignatureAge, MaxMaxSignatureAge)
	}
	for i, g := range t.UnsignedGates {
		key := fmt.Sprintf("trust.unsigned_gates[%d]", i)
		switch {
		case !chatNameRE.MatchString(g) || g == "*":
			ps.add(key, "%q is not a gate name (\"*\" is not allowed here: name each gate)", g)
		case slices.Contains(c.Policy.TwoPersonGates, g):
			ps.add(key, "gate %q is a two-person gate (policy.two_person_gates): it is never decided unsigned", g)
		}
	}
	// An approver without a key could approve nothing: say so while trust is being set up.
	if len(pol.Operators) > 0 {
		for i, a := range c.Policy.Approvers {
			if len(pol.KeysOf(a)) == 0 && !gatewayVouchesFor(t.ChatGateway, a) {
				ps.add(fmt.Sprintf("policy.approvers[%d]", i), "%s has no key under trust.operators (or trust.keys_file) and the chat gateway may not vouch for them: every approval by %s would be refused", a, a)
			}
		}
	}
	gw := t.ChatGateway
	if len(gw.Vouch) > 0 && gw.PublicKey == "" {
		ps.add("trust.chat_gateway.public_key", "required with trust.chat_gateway.vouch")
	}
	for i, v := range gw.Vouch {
		key := fmt.Sprintf("trust.chat_gateway.vouch[%d]", i)
		if len(v.Operators) == 0 {
			ps.add(key+".operators", "required: the operators (or \"*\") the gateway may vouch for")
		}
		for j, o := range v.Operators {
			if o != "*" && !operatorRE.MatchString(o) {
				ps.add(fmt.Sprintf("%s.operators[%d]", key, j), "%q is not an operator name or \"*\"", o)
			}
		}
		if len(v.Gates) == 0 && len(v.Runbooks) == 0 {
			ps.add(key, "allows nothing: list gates and/or runbooks (\"*\" for all)")
		}
		for j, g := range v.Gates {
			if !chatNameRE.MatchString(g) {
				ps.add(fmt.Sprintf("%s.gates[%d]", key, j), "%q is not a gate name or \"*\"", g)
			}
		}
		for j, rb := range v.Runbooks {
			if !chatNameRE.MatchString(rb) {
				ps.add(fmt.Sprintf("%s.runbooks[%d]", key, j), "%q is not a runbook name or \"*\"", rb)
			}
		}
	}
	if t.SigningKeyFile != "" && p != ForWorker {
		checkFile(ps, "trust.signing_key_file", t.SigningKeyFile)
	}
	// The gateway's private key is parsed (and matched with public_key) by chat.GatewayKey when
	// `chat serve` starts: config stays free of the SSH packages.
	if p == ForChat {
		switch {
		case gw.PrivateKeyFile == "":
			ps.add("trust.chat_gateway.private_key_file", "required: the gateway signs every decision and start it vouches for")
		case gw.PublicKey == "":
			ps.add("trust.chat_gateway.public_key", "required: the worker verifies what the gateway signs with it")
		default:
			checkFile(ps, "trust.chat_gateway.private_key_file", gw.PrivateKeyFile)
		}
	}
}

func gatewayVouchesFor(gw TrustGateway, operator string) bool {
	if gw.PublicKey == "" {
		return false
	}
	for _, v := range gw.Vouch {
		if slices.Contains(v.Operators, "*") || slices.Contains(v.Operators, operator) {
			return true
		}
	}
	return false
}
