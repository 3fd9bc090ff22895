// Package trust is the pure, deterministic half of Stackrun's verified identities: the canonical
// encoding of what an operator signs (a Statement), ed25519 public keys in the OpenSSH
// authorized_keys format operators already have, and the verification a workflow does in its
// update validator and signal handler against the key policy of its run.
//
// It imports no I/O package and no x/crypto/ssh: workflows import it. Signing (ssh-agent or a
// private key file) is the clients' business, in package trust/sshsign.
//
// What is signed is OpenSSH's SSHSIG wrapping (namespace "stackrun") of the statement's canonical
// encoding, so a signature made here can never pass for an SSH login signature or for another
// program's SSHSIG signature, and `ssh-keygen -Y sign -n stackrun` over Canonical() makes the same
// raw signature (a test checks it).
package trust

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// KeyTypeEd25519 is the only key type Stackrun accepts for operators and the chat gateway.
const KeyTypeEd25519 = "ssh-ed25519"

// Key is one ed25519 public key: the raw 32 bytes and the fingerprint OpenSSH prints for it
// (`ssh-keygen -lf`: "SHA256:" and the unpadded base64 of the SHA-256 of the key's wire form).
type Key struct {
	Fingerprint string `json:"fingerprint"`
	Public      []byte `json:"public"`
	// Comment is the authorized_keys comment, informational only.
	Comment string `json:"comment,omitempty"`
}

// NewKey builds the Key of a raw ed25519 public key.
func NewKey(pub ed25519.PublicKey, comment string) (Key, error) {
	if len(pub) != ed25519.PublicKeySize {
		return Key{}, fmt.Errorf("ed25519 public key has %d bytes, want %d", len(pub), ed25519.PublicKeySize)
	}
	return Key{Fingerprint: Fingerprint(pub), Public: append([]byte(nil), pub...), Comment: comment}, nil
}

// Valid reports whether the key holds 32 bytes that match its fingerprint (a policy snapshot
// that went through JSON is checked again before use).
func (k Key) Valid() bool {
	return len(k.Public) == ed25519.PublicKeySize && k.Fingerprint == Fingerprint(k.Public)
}

// wire is the SSH wire form of an ed25519 public key: string "ssh-ed25519", string key.
func wire(pub []byte) []byte {
	b := appendString(nil, []byte(KeyTypeEd25519))
	return appendString(b, pub)
}

func appendString(b, s []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

// Fingerprint is OpenSSH's SHA256 fingerprint of an ed25519 public key.
func Fingerprint(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(wire(pub))
	return "SHA256:" + base64.RawStdEncoding.EncodeToString(sum[:])
}

// AuthorizedKey renders the key as one authorized_keys line.
func (k Key) AuthorizedKey() string {
	s := KeyTypeEd25519 + " " + base64.StdEncoding.EncodeToString(wire(k.Public))
	if k.Comment != "" {
		s += " " + k.Comment
	}
	return s
}

// ErrKeyType is returned for any key that is not ssh-ed25519.
var ErrKeyType = errors.New("only ssh-ed25519 keys are accepted")

// ParseAuthorizedKey parses one line in OpenSSH's authorized_keys format: optional options, the
// key type, the base64 key, an optional comment. Only ssh-ed25519 keys are accepted (RSA and
// ECDSA keys are refused with ErrKeyType, so that verification stays crypto/ed25519 alone).
// Options such as from="..." are not enforced here; a line with options is refused, so that
// nobody believes they are.
func ParseAuthorizedKey(line string) (Key, error) {
	line = strings.TrimSpace(line)
	if line == "" || strings.HasPrefix(line, "#") {
		return Key{}, errors.New("empty line: want \"ssh-ed25519 AAAA... comment\"")
	}
	fields := strings.Fields(line)
	if len(fields) < 2 {
		return Key{}, errors.New("want \"ssh-ed25519 AAAA... [comment]\"")
	}
	typ, b64 := fields[0], fields[1]
	if typ != KeyTypeEd25519 {
		if strings.HasPrefix(typ, "ssh-") || strings.HasPrefix(typ, "ecdsa-") || strings.HasPrefix(typ, "sk-") {
			return Key{}, fmt.Errorf("%w (got %s): make one with ssh-keygen -t ed25519", ErrKeyType, typ)
		}
		return Key{}, fmt.Errorf("%q is not a key type: authorized_keys options are not supported, want \"ssh-ed25519 AAAA... [comment]\"", typ)
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return Key{}, fmt.Errorf("key is not base64: %v", err)
	}
	pub, err := parseWire(raw)
	if err != nil {
		return Key{}, err
	}
	return NewKey(pub, strings.Join(fields[2:], " "))
}

func parseWire(b []byte) (ed25519.PublicKey, error) {
	read := func() ([]byte, bool) {
		if len(b) < 4 {
			return nil, false
		}
		n := binary.BigEndian.Uint32(b)
		if uint64(len(b)-4) < uint64(n) {
			return nil, false
		}
		s := b[4 : 4+n]
		b = b[4+n:]
		return s, true
	}
	typ, ok := read()
	if !ok {
		return nil, errors.New("key blob is truncated")
	}
	if string(typ) != KeyTypeEd25519 {
		return nil, fmt.Errorf("%w (the blob says %q)", ErrKeyType, typ)
	}
	pub, ok := read()
	if !ok || len(b) != 0 {
		return nil, errors.New("key blob is malformed")
	}
	if len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("ed25519 key has %d bytes, want %d", len(pub), ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(pub), nil
}
