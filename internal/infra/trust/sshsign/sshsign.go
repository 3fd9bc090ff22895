// Package sshsign signs Stackrun statements for clients (the CLI, the chat gateway): with a key
// held by ssh-agent (golang.org/x/crypto/ssh/agent) or with an OpenSSH private key file. Only
// ed25519 keys are used. Workflows never import this package; they verify with package trust.
package sshsign

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/stackrun/stackrun/internal/infra/trust"
)

// Signer signs with one ed25519 key.
type Signer interface {
	// Key is the public key (and its fingerprint) the policy must list.
	Key() trust.Key
	// SignData returns the raw 64-byte ed25519 signature of data.
	SignData(data []byte) ([]byte, error)
}

// Sign signs the statement: it sets the issue time (now, in Unix seconds), a fresh random nonce
// and the chat user, and returns the Signature to send beside the request.
func Sign(s Signer, st trust.Statement, now time.Time) (trust.Signature, error) {
	nonce, err := NewNonce()
	if err != nil {
		return trust.Signature{}, err
	}
	st.IssuedAt, st.Nonce = now.Unix(), nonce
	raw, err := s.SignData(st.SignedData())
	if err != nil {
		return trust.Signature{}, err
	}
	return trust.Signature{
		Key: s.Key().Fingerprint, IssuedAt: st.IssuedAt, Nonce: nonce, ChatUser: st.ChatUser,
		Sig: base64.StdEncoding.EncodeToString(raw),
	}, nil
}

// NewNonce returns 128 random bits, base64url without padding (22 characters).
func NewNonce() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("nonce: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// keySigner signs with a private key in memory.
type keySigner struct {
	priv ed25519.PrivateKey
	key  trust.Key
}

func (k *keySigner) Key() trust.Key { return k.key }

func (k *keySigner) SignData(data []byte) ([]byte, error) { return ed25519.Sign(k.priv, data), nil }

// FromPrivateKey signs with an ed25519 private key (tests, the chat gateway's own key).
func FromPrivateKey(priv ed25519.PrivateKey, comment string) (Signer, error) {
	key, err := trust.NewKey(priv.Public().(ed25519.PublicKey), comment)
	if err != nil {
		return nil, err
	}
	return &keySigner{priv: priv, key: key}, nil
}

// ErrEncrypted is returned for a passphrase-protected key file read without a passphrase.
var ErrEncrypted = errors.New("the key file is protected by a passphrase: add it to ssh-agent (ssh-add) and sign through the agent")

// FromKeyFile reads an OpenSSH ed25519 private key file (as ssh-keygen -t ed25519 writes it).
// passphrase may be nil for an unencrypted key.
func FromKeyFile(path string, passphrase []byte) (Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	var raw any
	if passphrase != nil {
		raw, err = ssh.ParseRawPrivateKeyWithPassphrase(b, passphrase)
	} else {
		raw, err = ssh.ParseRawPrivateKey(b)
	}
	var missing *ssh.PassphraseMissingError
	if errors.As(err, &missing) {
		return nil, fmt.Errorf("signing key %s: %w", path, ErrEncrypted)
	}
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	var priv ed25519.PrivateKey
	switch k := raw.(type) {
	case ed25519.PrivateKey:
		priv = k
	case *ed25519.PrivateKey:
		priv = *k
	default:
		return nil, fmt.Errorf("signing key %s: %w (got %T)", path, trust.ErrKeyType, raw)
	}
	return FromPrivateKey(priv, path)
}

// agentSigner signs through ssh-agent.
type agentSigner struct {
	ag   agent.Agent
	pub  ssh.PublicKey
	key  trust.Key
	conn net.Conn
}

func (a *agentSigner) Key() trust.Key { return a.key }

func (a *agentSigner) SignData(data []byte) ([]byte, error) {
	sig, err := a.ag.Sign(a.pub, data)
	if err != nil {
		return nil, fmt.Errorf("ssh-agent refused to sign with %s: %w", a.key.Fingerprint, err)
	}
	if sig.Format != trust.KeyTypeEd25519 || len(sig.Blob) != ed25519.SignatureSize {
		return nil, fmt.Errorf("ssh-agent returned a %s signature, want ssh-ed25519", sig.Format)
	}
	return sig.Blob, nil
}

// Close closes the connection to the agent.
func (a *agentSigner) Close() error { return a.conn.Close() }

// AgentKeys lists the ed25519 keys the agent at socket holds.
func AgentKeys(socket string) ([]trust.Key, error) {
	ag, conn, err := dialAgent(socket)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	keys, _, err := agentKeys(ag)
	return keys, err
}

func dialAgent(socket string) (agent.Agent, net.Conn, error) {
	if socket == "" {
		socket = os.Getenv("SSH_AUTH_SOCK")
	}
	if socket == "" {
		return nil, nil, errors.New("no ssh-agent: SSH_AUTH_SOCK is not set (start one, ssh-add your key, or pass --key <file>)")
	}
	conn, err := net.Dial("unix", socket)
	if err != nil {
		return nil, nil, fmt.Errorf("ssh-agent at %s: %w", socket, err)
	}
	return agent.NewClient(conn), conn, nil
}

func agentKeys(ag agent.Agent) ([]trust.Key, []ssh.PublicKey, error) {
	list, err := ag.List()
	if err != nil {
		return nil, nil, fmt.Errorf("ssh-agent: list keys: %w", err)
	}
	var keys []trust.Key
	var pubs []ssh.PublicKey
	for _, k := range list {
		if k.Format != ssh.KeyAlgoED25519 {
			continue
		}
		pub, err := ssh.ParsePublicKey(k.Blob)
		if err != nil {
			continue
		}
		cp, ok := pub.(ssh.CryptoPublicKey)
		if !ok {
			continue
		}
		edpub, ok := cp.CryptoPublicKey().(ed25519.PublicKey)
		if !ok {
			continue
		}
		key, err := trust.NewKey(edpub, k.Comment)
		if err != nil {
			continue
		}
		keys = append(keys, key)
		pubs = append(pubs, pub)
	}
	return keys, pubs, nil
}

// FromAgent signs through the ssh-agent at socket ("" means $SSH_AUTH_SOCK) with the first of
// its ed25519 keys whose fingerprint is in want; with want empty, the agent must hold exactly
// one ed25519 key. Close the returned Signer's agent connection with Close when done.
func FromAgent(socket string, want []string) (Signer, func() error, error) {
	ag, conn, err := dialAgent(socket)
	if err != nil {
		return nil, nil, err
	}
	keys, pubs, err := agentKeys(ag)
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	pick := -1
	switch {
	case len(want) > 0:
		for i, k := range keys {
			if slices.Contains(want, k.Fingerprint) {
				pick = i
				break
			}
		}
		if pick < 0 {
			conn.Close()
			return nil, nil, fmt.Errorf("ssh-agent holds none of your keys in the policy (%s); it holds %s: ssh-add the right one or pass --key <file>",
				strings.Join(want, ", "), fingerprints(keys))
		}
	case len(keys) == 1:
		pick = 0
	case len(keys) == 0:
		conn.Close()
		return nil, nil, errors.New("ssh-agent holds no ed25519 key: ssh-add one (ssh-keygen -t ed25519) or pass --key <file>")
	default:
		conn.Close()
		return nil, nil, fmt.Errorf("ssh-agent holds %d ed25519 keys (%s) and the policy names none for you: list yours under trust.operators or pass --key <file>",
			len(keys), fingerprints(keys))
	}
	s := &agentSigner{ag: ag, pub: pubs[pick], key: keys[pick], conn: conn}
	return s, s.Close, nil
}

func fingerprints(keys []trust.Key) string {
	if len(keys) == 0 {
		return "no ed25519 key"
	}
	fps := make([]string, len(keys))
	for i, k := range keys {
		fps[i] = k.Fingerprint
	}
	return strings.Join(fps, ", ")
}
