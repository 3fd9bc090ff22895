package chat

import (
	"crypto/ecdsa"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/slack-go/slack"
)

// MaxBody is the largest request body the gateway reads.
const MaxBody = 1 << 20

// ReplayWindow is how far a Slack request's timestamp may be from now (Slack's own rule), and how
// long a signature is remembered to refuse replays.
const ReplayWindow = 5 * time.Minute

// Errors of request verification; the HTTP answer names them.
var (
	ErrBadSignature = errors.New("request signature does not verify")
	ErrExpired      = errors.New("request timestamp is more than 5 minutes from now (expired or replayed)")
	ErrReplayed     = errors.New("request was already received (replayed)")
	ErrBadToken     = errors.New("request token does not match")
	ErrMissing      = errors.New("request carries no signature or timestamp")
)

// SlackVerifier checks Slack's v0 request signatures: HMAC-SHA256 over "v0:<timestamp>:<body>"
// with the app's signing secret (slack-go's SecretsVerifier: constant-time compare, 5-minute
// window), and refuses a signature seen before within the window (a replay).
type SlackVerifier struct {
	Secret string

	mu   sync.Mutex
	seen map[string]time.Time // signature -> when it may be forgotten
}

// Verify reads the body (at most MaxBody) and checks the request. It returns the body.
func (v *SlackVerifier) Verify(r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxBody+1))
	if err != nil {
		return nil, fmt.Errorf("read request: %w", err)
	}
	if len(body) > MaxBody {
		return nil, errors.New("request body too large")
	}
	sv, err := slack.NewSecretsVerifier(r.Header, v.Secret)
	switch {
	case errors.Is(err, slack.ErrExpiredTimestamp):
		return nil, ErrExpired
	case errors.Is(err, slack.ErrMissingHeaders):
		return nil, ErrMissing
	case err != nil:
		return nil, fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	if _, err := sv.Write(body); err != nil {
		return nil, err
	}
	if err := sv.Ensure(); err != nil {
		return nil, ErrBadSignature
	}
	if !v.remember(r.Header.Get("X-Slack-Signature")) {
		return nil, ErrReplayed
	}
	return body, nil
}

// remember records a verified signature; false when it was already seen within the window.
func (v *SlackVerifier) remember(sig string) bool {
	now := time.Now()
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.seen == nil {
		v.seen = map[string]time.Time{}
	}
	for s, until := range v.seen {
		if now.After(until) {
			delete(v.seen, s)
		}
	}
	if _, dup := v.seen[sig]; dup {
		return false
	}
	// A timestamp may be up to ReplayWindow in the future too: keep it twice as long.
	v.seen[sig] = now.Add(2 * ReplayWindow)
	return true
}

// SignSlack computes Slack's X-Slack-Signature for a body and timestamp, as Slack does. Tests and
// tools use it to build requests.
func SignSlack(secret string, ts int64, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	fmt.Fprintf(m, "v0:%d:", ts)
	m.Write(body)
	return "v0=" + hex.EncodeToString(m.Sum(nil))
}

// TokenMatches compares a Mattermost token in constant time.
func TokenMatches(got, want string) bool {
	if want == "" || got == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// ActionSigner signs the context of the buttons the worker posts to Mattermost, which sends it
// back unchanged and unsigned when a button is pressed: the signature (HMAC-SHA256 with the
// Mattermost token) proves the gateway's own message carried that action for that run, that gate,
// until that expiry, and (for a button meant for one user) for that user.
type ActionSigner struct{ Key string }

// Sign returns the hex HMAC of the fields.
func (s ActionSigner) Sign(fields ...string) string {
	m := hmac.New(sha256.New, []byte(s.Key))
	m.Write([]byte(strings.Join(fields, "\x00")))
	return hex.EncodeToString(m.Sum(nil))
}

// Verify checks a signature in constant time.
func (s ActionSigner) Verify(sig string, fields ...string) bool {
	if s.Key == "" {
		return false
	}
	want := s.Sign(fields...)
	return subtle.ConstantTimeCompare([]byte(sig), []byte(want)) == 1
}

// contextVersion is the first field a button context signs; a change of fields changes it.
const contextVersion = "stackrun-button-v2"

// SignContext fills c.Sig: the HMAC over the version, action, workflow ID, run ID, gate or step,
// expiry and user ("" = any user the directory lists, for messages posted to a channel).
func (s ActionSigner) SignContext(c MattermostContext) MattermostContext {
	c.Sig = s.Sign(c.fields()...)
	return c
}

// VerifyContext checks a pressed button's context: its signature, its expiry, and its user.
func (s ActionSigner) VerifyContext(c MattermostContext, userID string, now time.Time) error {
	if !s.Verify(c.Sig, c.fields()...) {
		return ErrBadSignature
	}
	if now.Unix() > c.Exp {
		return ErrButtonExpired
	}
	if c.User != "" && c.User != userID {
		return ErrButtonUser
	}
	return nil
}

func (c MattermostContext) fields() []string {
	return []string{contextVersion, c.Action, c.Run, c.RunID, c.Name, strconv.FormatInt(c.Exp, 10), c.User}
}

// Errors of Mattermost buttons and trigger IDs.
var (
	ErrButtonExpired = errors.New("this button has expired: use the newer message, or the slash command")
	ErrButtonUser    = errors.New("this button was sent to another user")
	ErrNoTrigger     = errors.New("request carries no Mattermost trigger_id: replays could not be bounded")
	ErrBadTrigger    = errors.New("request's trigger_id does not verify")
)

// TriggerVerifier bounds Mattermost replays. Mattermost sends no signature with slash commands and
// button presses, only a static token; but every request carries a trigger_id that Mattermost
// builds as base64("<id>:<user id>:<unix ms>:" + base64(ECDSA-SHA256 signature)) with its
// asymmetric signing key. The verifier refuses a trigger for another user than the request names,
// one older than ReplayWindow, one seen before, and, when PublicKey (Mattermost's
// AsymmetricSigningPublicKey, from /api/v4/config/client?format=old) is set, one whose signature
// does not verify: then the user of a request is proven by Mattermost, not only claimed.
type TriggerVerifier struct {
	PublicKey *ecdsa.PublicKey
	// Now is the clock (nil: time.Now).
	Now func() time.Time

	mu   sync.Mutex
	seen map[string]time.Time
}

// ParseMattermostKey parses Mattermost's AsymmetricSigningPublicKey (base64 of a DER PKIX key).
func ParseMattermostKey(b64 string) (*ecdsa.PublicKey, error) {
	der, err := base64.StdEncoding.DecodeString(strings.TrimSpace(b64))
	if err != nil {
		return nil, fmt.Errorf("mattermost signing key: not base64: %v", err)
	}
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("mattermost signing key: %v", err)
	}
	ek, ok := k.(*ecdsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("mattermost signing key: %T is not an ECDSA key", k)
	}
	return ek, nil
}

// Verify checks one trigger ID for the user the request names and remembers it.
func (v *TriggerVerifier) Verify(triggerID, userID string) error {
	if triggerID == "" {
		return ErrNoTrigger
	}
	raw, err := base64.StdEncoding.DecodeString(triggerID)
	if err != nil {
		return fmt.Errorf("%w: not base64", ErrBadTrigger)
	}
	parts := strings.SplitN(string(raw), ":", 4)
	if len(parts) != 4 || parts[0] == "" {
		return fmt.Errorf("%w: not <id>:<user>:<time>:<signature>", ErrBadTrigger)
	}
	if parts[1] != userID {
		return fmt.Errorf("%w: it is for another user than the request names", ErrBadTrigger)
	}
	ms, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil {
		return fmt.Errorf("%w: bad time", ErrBadTrigger)
	}
	if v.PublicKey != nil {
		sig, err := base64.StdEncoding.DecodeString(parts[3])
		data := strings.Join(parts[:3], ":") + ":"
		sum := sha256.Sum256([]byte(data))
		if err != nil || !ecdsa.VerifyASN1(v.PublicKey, sum[:], sig) {
			return fmt.Errorf("%w: Mattermost's signature does not match", ErrBadTrigger)
		}
	}
	now := time.Now()
	if v.Now != nil {
		now = v.Now()
	}
	at := time.UnixMilli(ms)
	if d := now.Sub(at); d > ReplayWindow || d < -ReplayWindow {
		return ErrExpired
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.seen == nil {
		v.seen = map[string]time.Time{}
	}
	for t, until := range v.seen {
		if now.After(until) {
			delete(v.seen, t)
		}
	}
	if _, dup := v.seen[triggerID]; dup {
		return ErrReplayed
	}
	v.seen[triggerID] = now.Add(2 * ReplayWindow)
	return nil
}

// MattermostTrigger builds a trigger ID exactly as Mattermost does (model.GenerateTriggerId), for
// tests and tools: key nil leaves the signature part a dummy.
func MattermostTrigger(userID string, at time.Time, key *ecdsa.PrivateKey) (string, error) {
	id := make([]byte, 13)
	if _, err := rand.Read(id); err != nil {
		return "", err
	}
	data := strings.Join([]string{hex.EncodeToString(id), userID, strconv.FormatInt(at.UnixMilli(), 10)}, ":") + ":"
	sig := []byte("unsigned")
	if key != nil {
		sum := sha256.Sum256([]byte(data))
		var err error
		if sig, err = ecdsa.SignASN1(rand.Reader, key, sum[:]); err != nil {
			return "", err
		}
	}
	return base64.StdEncoding.EncodeToString([]byte(data + base64.StdEncoding.EncodeToString(sig))), nil
}
