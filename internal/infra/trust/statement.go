package trust

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"strconv"
	"strings"
)

// Kinds of statement.
const (
	// KindStart starts a run: workflow ID, input digest, operator, time, nonce.
	KindStart = "start"
	// KindGate decides a gate: workflow ID, run ID, gate, approve|reject, operator, time, nonce.
	KindGate = "gate"
	// KindResolve decides a stalled step: workflow ID, run ID, step, retry|skip|abort, operator,
	// time, nonce.
	KindResolve = "resolve"
)

// Namespace is the SSHSIG namespace of every Stackrun signature (ssh-keygen -Y sign -n stackrun).
const Namespace = "stackrun"

// version is the first line of the canonical encoding; a change of encoding changes it.
const version = "stackrun-statement-v1"

// Statement is what an operator (or the chat gateway, vouching for one) signs. The workflow never
// takes a statement from a request: it rebuilds it from the request's fields and its own identity
// (its workflow ID and run ID, the gate it has open), so a signature for another run, another gate
// or another outcome does not verify.
type Statement struct {
	Kind       string
	WorkflowID string
	// RunID is the run decided (gate, resolve). A start has none: it is not known before.
	RunID string
	// Name is the gate (gate) or the step (resolve).
	Name string
	// Outcome is approve|reject (gate) or retry|skip|abort (resolve).
	Outcome string
	// InputDigest is Digest of the run's input (start).
	InputDigest string
	Operator    string
	// ChatUser is empty when the operator signed; "slack:U123" or "mattermost:abc" when the chat
	// gateway signed, vouching that this verified chat user is Operator.
	ChatUser string
	Comment  string
	// IssuedAt is when it was signed, in Unix seconds.
	IssuedAt int64
	Nonce    string
}

// Canonical is the statement's unambiguous encoding: a version line, then one line per field in
// a fixed order, each "name=<length>:<value>" so that no value (a comment with new lines, an ID
// with '=') can shift another.
func (s Statement) Canonical() []byte {
	var b strings.Builder
	b.WriteString(version)
	b.WriteByte('\n')
	for _, f := range []struct{ k, v string }{
		{"kind", s.Kind}, {"workflow_id", s.WorkflowID}, {"run_id", s.RunID}, {"name", s.Name},
		{"outcome", s.Outcome}, {"input_digest", s.InputDigest}, {"operator", s.Operator},
		{"chat_user", s.ChatUser}, {"comment", s.Comment},
		{"issued_at", strconv.FormatInt(s.IssuedAt, 10)}, {"nonce", s.Nonce},
	} {
		b.WriteString(f.k)
		b.WriteByte('=')
		b.WriteString(strconv.Itoa(len(f.v)))
		b.WriteByte(':')
		b.WriteString(f.v)
		b.WriteByte('\n')
	}
	return []byte(b.String())
}

// SignedData is what the key signs: OpenSSH's SSHSIG wrapping of Canonical() with namespace
// "stackrun" and SHA-512 (PROTOCOL.sshsig): "SSHSIG", string namespace, string reserved, string
// hash algorithm, string H(message).
func (s Statement) SignedData() []byte { return SSHSIGData(s.Canonical()) }

// SSHSIGData wraps message as OpenSSH's SSHSIG does before signing, in namespace "stackrun".
func SSHSIGData(message []byte) []byte {
	h := sha512.Sum512(message)
	b := []byte("SSHSIG")
	b = appendString(b, []byte(Namespace))
	b = appendString(b, nil)
	b = appendString(b, []byte("sha512"))
	return appendString(b, h[:])
}

// Digest is the input digest a start statement carries: "sha256:" and the hex SHA-256 of the
// input's JSON (the workflow and the CLI both marshal the same Go value without its signature).
func Digest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Signature travels beside a request: which key signed, when, the single-use nonce, the chat user
// when the chat gateway vouched, and the ed25519 signature (base64) of the statement the workflow
// rebuilds from the request.
type Signature struct {
	Key      string `json:"key"`
	IssuedAt int64  `json:"issued_at"`
	Nonce    string `json:"nonce"`
	ChatUser string `json:"chat_user,omitempty"`
	Sig      string `json:"sig"`
}

// MemoStartSignature is the memo field of a run that carries the Signature of its start (the
// input is what a start signs, so its signature travels beside the input, not in it).
const MemoStartSignature = "stackrun_start_signature"
